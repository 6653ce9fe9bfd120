//! The processors of one flow: the transform, from the flow's input topic to its output
//! topic, and, for a regular flow, the copier from its output topic to the target
//! model's ingestion topic.
//!
//! The transform checks each input record against the source model (records may be
//! produced to the input topic directly, to exercise a flow alone), runs the registered
//! transform on it, and checks each result against the target model, whose key field
//! gives the result's key. The results go to the output topic's partition with the
//! input's partition number (the output topic has the source's partition count). A
//! record is all or nothing: if the transform fails or any result does not match the
//! target model, the input is dead-lettered with the reason and no result is written.
//! A migration must keep each record's key (a migration result is written to partition
//! `p` of the target table, where its key must already live); a result with another key
//! is refused the same way.
//!
//! A delete (a tombstone: a key, no value) is not transformed: it goes on to the output
//! topic with its key, so it deletes the same key in the target. (A transform that
//! changes keys leaves its results of the deleted record in place.)
//!
//! The copier writes each output record unchanged to the target ingestion topic's
//! partition that Kafka's default partitioner picks for its key: where a producer would
//! have put a record of that key, so the target table has each key in one partition.
//! Deletes are copied the same way.

use std::sync::Arc;

use serde_json::Value;
use weir_proto::DataModel;
use weir_topology::{InputRecord, OutputRecord, ProcessingError, Processor, ProcessorContext};

use super::record;
use super::transform::TransformRegistry;
use crate::topics::partition_for_key;

/// Runs one flow's transform.
#[derive(Debug, Clone)]
pub(super) struct FlowProcessor {
    flow: String,
    transform: String,
    registry: Arc<TransformRegistry>,
    source: Arc<DataModel>,
    target: Arc<DataModel>,
    output_topic: String,
    migration: bool,
}

impl FlowProcessor {
    pub(super) fn new(
        flow: String,
        transform: String,
        registry: Arc<TransformRegistry>,
        source: Arc<DataModel>,
        target: Arc<DataModel>,
        output_topic: String,
        migration: bool,
    ) -> Self {
        Self {
            flow,
            transform,
            registry,
            source,
            target,
            output_topic,
            migration,
        }
    }

    fn refuse(&self, reason: impl std::fmt::Display) -> ProcessingError {
        ProcessingError::record(format!("flow {:?}: {reason}", self.flow))
    }
}

impl Processor for FlowProcessor {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, '_>,
        input: &InputRecord,
    ) -> Result<(), ProcessingError> {
        let Some(bytes) = &input.value else {
            let Some(key) = &input.key else {
                return Err(self.refuse("an input record with neither key nor value"));
            };
            ctx.forward(OutputRecord::keyed(
                self.output_topic.clone(),
                input.partition,
                key.clone(),
                None,
            ));
            return Ok(());
        };
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| self.refuse(format_args!("input record is not JSON: {e}")))?;
        let input_record = record::validate_value(&self.source, &value)
            .map_err(|e| self.refuse(format_args!("input record: {e}")))?;
        let results = self
            .registry
            .apply(&self.transform, &value)
            .map_err(|e| self.refuse(e))?;
        let mut outputs = Vec::with_capacity(results.len());
        for (i, result) in results.iter().enumerate() {
            let valid = record::validate_value(&self.target, result)
                .map_err(|e| self.refuse(format_args!("result {i} of the transform: {e}")))?;
            if self.migration && valid.key != input_record.key {
                return Err(self.refuse(format_args!(
                    "result {i} of the migration has key {:?}, but the record's key is {:?}; \
                     a migration keeps the key",
                    String::from_utf8_lossy(&valid.key),
                    String::from_utf8_lossy(&input_record.key)
                )));
            }
            outputs.push(OutputRecord::new(
                self.output_topic.clone(),
                input.partition,
                valid.key,
                valid.value,
            ));
        }
        for output in outputs {
            ctx.forward(output);
        }
        Ok(())
    }
}

/// Copies a regular flow's output to its target's ingestion topic.
#[derive(Debug, Clone)]
pub(super) struct CopyProcessor {
    flow: String,
    target_topic: String,
    target_partitions: i32,
}

impl CopyProcessor {
    pub(super) fn new(flow: String, target_topic: String, target_partitions: i32) -> Self {
        Self {
            flow,
            target_topic,
            target_partitions,
        }
    }
}

impl Processor for CopyProcessor {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, '_>,
        input: &InputRecord,
    ) -> Result<(), ProcessingError> {
        let Some(key) = &input.key else {
            return Err(ProcessingError::record(format!(
                "flow {:?}: an output record without a key cannot be copied to {}",
                self.flow, self.target_topic
            )));
        };
        ctx.forward(OutputRecord::keyed(
            self.target_topic.clone(),
            partition_for_key(key, self.target_partitions),
            key.clone(),
            input.value.clone(),
        ));
        Ok(())
    }
}
