//! The processor of one model version: it keeps the version's table (the latest record
//! per key) and copies each record of the ingestion topic to the input topic of every
//! flow that reads this version.
//!
//! It reads two kinds of source, co-partitioned:
//! - the ingestion topic `{Model}_{major}_{minor}`: each record is checked against the
//!   model ([`super::record::validate`]), written to the table under its key, and
//!   forwarded (canonical bytes, same key, same partition) to each flow's input topic,
//!   in the manifest's flow order;
//! - the output topic of the migration flow into this version: each record is checked
//!   against the model and written to the table only. It is not copied to this
//!   version's flows: a record reaches a model version once (the RFD's reason for
//!   migrations writing to tables).
//!
//! A record is refused (dead-lettered with the reason, and nothing of it is kept) when
//! it has no value (deletes are not supported yet), does not match the model, or carries
//! a Kafka key other than its key field's value (it would be in the wrong partition for
//! its key). A record without a Kafka key takes its key field's value as key.

use std::sync::Arc;

use weir_proto::{DataModel, TableRow};
use weir_topology::{
    InputRecord, OutputRecord, ProcessingError, Processor, ProcessorContext, StoreHandle,
};

use super::record;

/// Where a source topic of a model version's sub-topology comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TableSource {
    /// The version's own ingestion topic.
    Ingestion,
    /// The output topic of the named migration flow into this version.
    Migration { flow: String },
}

/// Keeps one model version's table and feeds its flows.
#[derive(Debug)]
pub(super) struct IngestProcessor {
    /// `UserActivity 0.1`, for reasons.
    name: String,
    model: Arc<DataModel>,
    table: StoreHandle<TableRow>,
    sources: Arc<Vec<(Arc<str>, TableSource)>>,
    flow_inputs: Arc<Vec<String>>,
}

impl IngestProcessor {
    pub(super) fn new(
        name: String,
        model: Arc<DataModel>,
        table: StoreHandle<TableRow>,
        sources: Arc<Vec<(Arc<str>, TableSource)>>,
        flow_inputs: Arc<Vec<String>>,
    ) -> Self {
        Self {
            name,
            model,
            table,
            sources,
            flow_inputs,
        }
    }
}

impl Processor for IngestProcessor {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, '_>,
        input: &InputRecord,
    ) -> Result<(), ProcessingError> {
        let source = self
            .sources
            .iter()
            .find(|(topic, _)| *topic == input.topic)
            .map(|(_, source)| source)
            .ok_or_else(|| {
                ProcessingError::Fatal(format!(
                    "{}: {} is not a source of this table",
                    self.name, input.topic
                ))
            })?;
        let from = match source {
            TableSource::Ingestion => String::new(),
            TableSource::Migration { flow } => format!(" (from migration flow {flow:?})"),
        };
        let Some(value) = &input.value else {
            return Err(ProcessingError::record(format!(
                "{}{from}: a record without a value; deletes are not supported",
                self.name
            )));
        };
        let valid = record::validate(&self.model, value)
            .map_err(|e| ProcessingError::record(format!("{}{from}: {e}", self.name)))?;
        if let Some(key) = &input.key
            && key.as_ref() != valid.key.as_slice()
        {
            return Err(ProcessingError::record(format!(
                "{}{from}: the record's Kafka key {:?} differs from its key field {:?} value {:?}",
                self.name,
                String::from_utf8_lossy(key),
                self.model.key_field,
                String::from_utf8_lossy(&valid.key)
            )));
        }
        ctx.put(
            &self.table,
            &valid.key,
            &TableRow {
                value: valid.value.clone(),
                source_topic: input.topic.to_string(),
                source_offset: input.offset,
            },
        )?;
        if *source == TableSource::Ingestion {
            for topic in self.flow_inputs.iter() {
                ctx.forward(OutputRecord::new(
                    topic.clone(),
                    input.partition,
                    valid.key.clone(),
                    valid.value.clone(),
                ));
            }
        }
        Ok(())
    }
}
