//! The processor of one model version: it keeps the version's table (the latest record
//! per key) and copies each record of the ingestion topic to the input topic of every
//! flow that reads this version.
//!
//! It reads two kinds of source, co-partitioned:
//! - the ingestion topic `{Model}_{major}_{minor}`: each record is checked against the
//!   model ([`super::record::validate`]), written to the table under its key, and
//!   forwarded (canonical bytes, same key, same partition) to each flow's input topic,
//!   in the manifest's flow order, from the flow's start position on (below);
//! - the output topic of the migration flow into this version: each record is checked
//!   against the model and written to the table only. It is not copied to this
//!   version's flows: a record reaches a model version once (the RFD's reason for
//!   migrations writing to tables).
//!
//! A record is refused (dead-lettered with the reason, and nothing of it is kept) when
//! it does not match the model, or carries a Kafka key other than its key field's value
//! (it would be in the wrong partition for its key). A record without a Kafka key takes
//! its key field's value as key.
//!
//! A delete (a tombstone: a text key, no value) removes the key's row from the table
//! and, from the ingestion topic, goes on to each flow's input like any record (from
//! the flow's start position on); from a migration's output it only removes the row.
//! The cut-over needs nothing more: a row deleted before a load reaches it is not
//! there to load, and a row loaded before its delete is followed by the tombstone in
//! the flow's input. A record with neither key nor value is refused.
//!
//! It also runs the initial load of each flow from this version, per partition, as
//! [`super::cutover`] describes and argues: the progress of each flow is a row of the
//! version's `{table}-initial-load` store (keyed by flow name, changelogged like any
//! store). The first ingestion record after a flow appears starts it at that record's
//! offset `P` (or a start record: a record with the [`START_HEADER`] header, which is
//! not data and only starts what has not started). Live records from `P` on are copied
//! at once; a flow with an initial load also gets a timer, whose ticks copy a bounded
//! chunk of table rows in key order (the rows the live path has not copied), each tick
//! scheduling the next until the scan passes the last key. Timers come back on the
//! ingestion topic (the runtime's timers use a task's first source) and are not data;
//! a consumer of that topic outside weir sees them (keyed by the flow name, with the
//! runtime's timer header and the load's start offset as an 8-byte big-endian value: a
//! tick of an earlier load of the same flow name is passed over).
//!
//! The progress of a flow no longer declared is removed (by the first record each
//! process handles on the partition), and so is the progress of the flow a forget
//! record ([`FORGET_HEADER`], written by `weir flows apply` when it removes a flow)
//! names, when the record is reached: a flow declared again under that name is created
//! again, with a load of its own, whether or not a process ran without it in between.
//!
//! Progress is reported as log lines (start, end) and metrics: [`LOAD_RECORDS_METRIC`],
//! [`LOAD_SKIPPED_METRIC`] (counters by `flow`) and [`LOAD_DONE_METRIC`] (a gauge by
//! `flow` and `partition`, 1 once loaded or for a flow without a load).

use std::sync::Arc;

use bytes::Bytes;

use weir_proto::{DataModel, InitialLoadProgress, TableRow};
use weir_topology::{
    InputRecord, OutputRecord, ProcessingError, Processor, ProcessorContext, StoreHandle,
};

use super::cutover::{Cutover, CutoverError, LiveDecision};
use super::record;
use super::topology::{
    FORGET_HEADER, FlowsOptions, LOAD_DONE_METRIC, LOAD_RECORDS_METRIC, LOAD_SKIPPED_METRIC,
    START_HEADER,
};

/// A flow that reads this version: its input topic, and whether it loads the history.
#[derive(Debug, Clone)]
pub(super) struct FlowFeed {
    pub(super) flow: String,
    pub(super) input_topic: String,
    pub(super) initial_load: bool,
}

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
    flows: Arc<Vec<FlowFeed>>,
    progress: StoreHandle<InitialLoadProgress>,
    ingestion_topic: Arc<str>,
    options: FlowsOptions,
    /// Per flow, whether this process has set its done gauge for this partition yet
    /// (the gauge is not state: after a restart it is set again from the progress).
    reported: Vec<bool>,
    /// Whether this process has removed the progress of flows no longer declared.
    cleaned: bool,
}

/// What an [`IngestProcessor`] is built from, besides its model.
#[derive(Debug, Clone)]
pub(super) struct IngestParts {
    pub(super) table: StoreHandle<TableRow>,
    pub(super) sources: Arc<Vec<(Arc<str>, TableSource)>>,
    pub(super) flows: Arc<Vec<FlowFeed>>,
    pub(super) progress: StoreHandle<InitialLoadProgress>,
    pub(super) ingestion_topic: Arc<str>,
    pub(super) options: FlowsOptions,
}

impl IngestProcessor {
    pub(super) fn new(name: String, model: Arc<DataModel>, parts: IngestParts) -> Self {
        Self {
            name,
            model,
            table: parts.table,
            sources: parts.sources,
            flows: Arc::clone(&parts.flows),
            progress: parts.progress,
            ingestion_topic: parts.ingestion_topic,
            options: parts.options,
            reported: vec![false; parts.flows.len()],
            cleaned: false,
        }
    }

    /// The cut-over of each flow on this partition, starting (at `input`'s offset) the
    /// flows that have not started.
    fn cutovers(
        &mut self,
        ctx: &mut ProcessorContext<'_, '_>,
        input: &InputRecord,
    ) -> Result<Vec<Cutover>, ProcessingError> {
        if !self.cleaned {
            // A flow removed from the manifest leaves its progress behind; were it
            // declared again, it would be a new flow with a load of its own.
            for (flow, _) in ctx.scan_prefix(&self.progress, b"")? {
                if !self
                    .flows
                    .iter()
                    .any(|f| f.flow.as_bytes() == flow.as_ref())
                {
                    tracing::info!(
                        flow = %String::from_utf8_lossy(&flow),
                        table = %self.name,
                        partition = input.partition,
                        "initial load progress of a flow no longer declared removed"
                    );
                    ctx.delete(&self.progress, &flow)?;
                }
            }
            self.cleaned = true;
        }
        let mut cutovers = Vec::with_capacity(self.flows.len());
        for (feed, reported) in self.flows.iter().zip(self.reported.iter_mut()) {
            if let Some(progress) = ctx.get(&self.progress, feed.flow.as_bytes())? {
                if !*reported {
                    done_gauge(&feed.flow, input.partition, progress.done);
                    *reported = true;
                }
                cutovers.push(Cutover::resume(progress));
                continue;
            }
            let partition = input.partition;
            let cutover = if feed.initial_load {
                let cutover =
                    Cutover::start(feed.flow.clone(), partition, input.offset).map_err(fatal)?;
                ctx.schedule(
                    input.timestamp_ms.saturating_add(self.options.load_tick_ms),
                    feed.flow.clone().into_bytes(),
                    input.offset.to_be_bytes().to_vec(),
                );
                tracing::info!(
                    flow = %feed.flow,
                    table = %self.name,
                    partition,
                    position = input.offset,
                    "initial load started: live records from this offset on, history from the table"
                );
                cutover
            } else {
                tracing::info!(
                    flow = %feed.flow,
                    table = %self.name,
                    partition,
                    position = input.offset,
                    "flow started live at this offset, without initial load"
                );
                Cutover::live_only(feed.flow.clone(), partition, input.offset)
            };
            done_gauge(&feed.flow, partition, cutover.is_done());
            *reported = true;
            ctx.put(&self.progress, feed.flow.as_bytes(), cutover.progress())?;
            cutovers.push(cutover);
        }
        Ok(cutovers)
    }

    /// One tick of the initial load of the flow named by the timer's key: a chunk of
    /// table rows after the scan position, then the next tick or the end.
    fn tick(
        &self,
        ctx: &mut ProcessorContext<'_, '_>,
        input: &InputRecord,
    ) -> Result<(), ProcessingError> {
        let flow = input.key.as_deref().unwrap_or_default();
        let Some(feed) = self.flows.iter().find(|f| f.flow.as_bytes() == flow) else {
            // A timer of a flow that is gone.
            return Ok(());
        };
        let Some(progress) = ctx.get(&self.progress, flow)? else {
            return Ok(());
        };
        if let Ok(start) = <[u8; 8]>::try_from(input.value.as_deref().unwrap_or_default())
            && i64::from_be_bytes(start) != progress.snapshot_position
        {
            // A tick of an earlier load of this flow name, forgotten since.
            return Ok(());
        }
        let mut cutover = Cutover::resume(progress);
        if cutover.is_done() {
            return Ok(());
        }
        let chunk = self.options.load_chunk.max(1);
        let (rows, last) = next_chunk(cutover.scan_after(), chunk, |from, to| {
            ctx.scan_range(&self.table, from, to)
        })?;
        let (mut loaded, mut skipped) = (0u64, 0u64);
        for (key, row) in &rows {
            let ingestion_offset =
                (*row.source_topic == *self.ingestion_topic).then_some(row.source_offset);
            if cutover.should_load(key, ingestion_offset) {
                ctx.forward(OutputRecord::new(
                    feed.input_topic.clone(),
                    input.partition,
                    key.clone(),
                    row.value.clone(),
                ));
                cutover.loaded(key).map_err(fatal)?;
                loaded += 1;
            } else {
                cutover.skipped(key).map_err(fatal)?;
                skipped += 1;
            }
        }
        if last {
            cutover.finish().map_err(fatal)?;
            tracing::info!(
                flow = %feed.flow,
                table = %self.name,
                partition = input.partition,
                records_loaded = cutover.progress().records_loaded,
                "initial load done"
            );
        } else {
            ctx.schedule(
                input.timestamp_ms.saturating_add(self.options.load_tick_ms),
                flow.to_vec(),
                cutover.progress().snapshot_position.to_be_bytes().to_vec(),
            );
            tracing::debug!(
                flow = %feed.flow,
                table = %self.name,
                partition = input.partition,
                records_loaded = cutover.progress().records_loaded,
                "initial load tick"
            );
        }
        ctx.put(&self.progress, flow, cutover.progress())?;
        metrics::counter!(LOAD_RECORDS_METRIC, "flow" => feed.flow.clone()).increment(loaded);
        metrics::counter!(LOAD_SKIPPED_METRIC, "flow" => feed.flow.clone()).increment(skipped);
        done_gauge(&feed.flow, input.partition, cutover.is_done());
        Ok(())
    }

    /// `{name}{from}: {reason}`, where `from` names the migration flow for a record
    /// of its output (formatted only when a record is refused).
    fn refuse(&self, source: &TableSource, reason: impl std::fmt::Display) -> ProcessingError {
        let name = &self.name;
        ProcessingError::record(match source {
            TableSource::Ingestion => format!("{name}: {reason}"),
            TableSource::Migration { flow } => {
                format!("{name} (from migration flow {flow:?}): {reason}")
            }
        })
    }

    /// Writes a record's row to the table; returns its key and canonical value.
    fn put_row(
        &self,
        ctx: &mut ProcessorContext<'_, '_>,
        input: &InputRecord,
        source: &TableSource,
        value: &[u8],
    ) -> Result<record::ValidRecord, ProcessingError> {
        let valid = record::validate(&self.model, value).map_err(|e| self.refuse(source, e))?;
        if let Some(key) = &input.key
            && key.as_ref() != valid.key.as_slice()
        {
            return Err(self.refuse(
                source,
                format_args!(
                    "the record's Kafka key {:?} differs from its key field {:?} value {:?}",
                    String::from_utf8_lossy(key),
                    self.model.key_field,
                    String::from_utf8_lossy(&valid.key)
                ),
            ));
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
        Ok(valid)
    }

    /// A tombstone: removes its key's row from the table; returns the key.
    fn delete_row(
        &self,
        ctx: &mut ProcessorContext<'_, '_>,
        input: &InputRecord,
        source: &TableSource,
    ) -> Result<Bytes, ProcessingError> {
        let Some(key) = input
            .key
            .as_ref()
            .filter(|k| std::str::from_utf8(k).is_ok())
        else {
            return Err(self.refuse(
                source,
                "a record without a value must have a text key (a delete)",
            ));
        };
        ctx.delete(&self.table, key)?;
        Ok(key.clone())
    }

    /// Passes a record of the ingestion topic (`value`, or a delete without one) on to
    /// the input of each flow whose cut-over copies it live.
    fn feed_flows(
        &mut self,
        ctx: &mut ProcessorContext<'_, '_>,
        input: &InputRecord,
        key: Bytes,
        value: Option<Bytes>,
    ) -> Result<(), ProcessingError> {
        let cutovers = self.cutovers(ctx, input)?;
        for (feed, cutover) in self.flows.iter().zip(&cutovers) {
            if cutover.live(input.offset) == LiveDecision::Copy {
                ctx.forward(OutputRecord::keyed(
                    feed.input_topic.clone(),
                    input.partition,
                    key.clone(),
                    value.clone(),
                ));
            }
        }
        Ok(())
    }

    /// A forget record: drops the progress of the flow it names on this partition, then
    /// starts (at this offset) every declared flow without progress, that one included
    /// if this process still runs it.
    fn forget(
        &mut self,
        ctx: &mut ProcessorContext<'_, '_>,
        input: &InputRecord,
    ) -> Result<(), ProcessingError> {
        let flow = input.value.as_deref().unwrap_or_default();
        if ctx.get(&self.progress, flow)?.is_some() {
            tracing::info!(
                flow = %String::from_utf8_lossy(flow),
                table = %self.name,
                partition = input.partition,
                offset = input.offset,
                "initial load progress of a removed flow dropped (forget record)"
            );
            ctx.delete(&self.progress, flow)?;
        }
        if let Some(at) = self.flows.iter().position(|f| f.flow.as_bytes() == flow) {
            self.reported[at] = false;
        }
        self.cutovers(ctx, input)?;
        Ok(())
    }
}

/// The next `chunk` entries strictly after `after` (from the first with `None`), and
/// whether they are the last ones, through `scan(from, to)` (every entry in
/// `[from, to)`, in key order). Keys are UTF-8 text ([`record::validate`]), which never
/// holds a 0xFF byte, so `[0xFF]` bounds them all.
///
/// A scan reads its whole range, so the range is narrowed first: the keys that extend
/// a prefix of `after`, from the longest prefix to the shortest, until one range holds
/// more than `chunk` entries. Each such range is an initial part of the whole rest
/// (`[after, prefix end)`), so its first `chunk` entries are the rest's; a tick reads
/// about `chunk` times the key's fan-out instead of the whole rest of the table. The
/// first tick, with no `after`, reads the whole table once.
fn next_chunk<V>(
    after: Option<&[u8]>,
    chunk: usize,
    mut scan: impl FnMut(&[u8], &[u8]) -> Result<Vec<(bytes::Bytes, V)>, ProcessingError>,
) -> Result<(Vec<(bytes::Bytes, V)>, bool), ProcessingError> {
    let from = after.map_or_else(Vec::new, |last| [last, &[0u8][..]].concat());
    if let Some(last) = after {
        for len in (1..=last.len()).rev() {
            let mut end = last[..len].to_vec();
            match end.last_mut() {
                Some(byte) if *byte < 0xFF => *byte += 1,
                _ => continue,
            }
            let mut rows = scan(&from, &end)?;
            if rows.len() > chunk {
                rows.truncate(chunk);
                return Ok((rows, false));
            }
        }
    }
    let mut rows = scan(&from, &[0xFF])?;
    let last = rows.len() <= chunk;
    rows.truncate(chunk);
    Ok((rows, last))
}

fn done_gauge(flow: &str, partition: i32, done: bool) {
    metrics::gauge!(LOAD_DONE_METRIC, "flow" => flow.to_owned(), "partition" => partition.to_string())
        .set(if done { 1.0 } else { 0.0 });
}

fn fatal(error: CutoverError) -> ProcessingError {
    ProcessingError::Fatal(error.to_string())
}

impl Processor for IngestProcessor {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, '_>,
        input: &InputRecord,
    ) -> Result<(), ProcessingError> {
        if input.is_timer() {
            return self.tick(ctx, input);
        }
        if *input.topic == *self.ingestion_topic {
            if input.header(FORGET_HEADER).is_some() {
                return self.forget(ctx, input);
            }
            if input.header(START_HEADER).is_some() {
                self.cutovers(ctx, input)?;
                return Ok(());
            }
        }
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
        let (key, value) = match &input.value {
            Some(value) => {
                let valid = self.put_row(ctx, input, source, value)?;
                (Bytes::from(valid.key), Some(Bytes::from(valid.value)))
            }
            None => (self.delete_row(ctx, input, source)?, None),
        };
        if *source == TableSource::Ingestion {
            self.feed_flows(ctx, input, key, value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::collections::BTreeMap;

    #[test]
    fn chunks_cover_every_key_once_in_order_reading_narrow_ranges() {
        let keys: Vec<String> = (0..2_000)
            .map(|i| format!("user-{i}"))
            .chain(["a".to_owned(), "zz".to_owned(), "user-1\u{0}".to_owned()])
            .collect();
        let table: BTreeMap<Bytes, ()> = keys
            .iter()
            .map(|k| (Bytes::from(k.clone().into_bytes()), ()))
            .collect();
        for chunk in [1, 7, 500, 5_000] {
            let read = Cell::new(0usize);
            let scan = |from: &[u8], to: &[u8]| {
                let rows: Vec<(Bytes, ())> = table
                    .range::<[u8], _>((
                        std::ops::Bound::Included(from),
                        std::ops::Bound::Excluded(to),
                    ))
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                read.set(read.get() + rows.len());
                Ok(rows)
            };
            let mut seen: Vec<Bytes> = Vec::new();
            let mut ticks = 0;
            loop {
                let after = seen.last().cloned();
                let (rows, last) = next_chunk(after.as_deref(), chunk, scan).expect("scan");
                assert!(rows.len() <= chunk);
                seen.extend(rows.into_iter().map(|(k, ())| k));
                ticks += 1;
                if last {
                    break;
                }
            }
            let all: Vec<Bytes> = table.keys().cloned().collect();
            assert_eq!(seen, all, "chunk {chunk}");
            assert_eq!(ticks, all.len().div_ceil(chunk));
            if chunk == 7 {
                // Narrow ranges: far less than the whole rest per tick.
                assert!(read.get() < 60 * all.len(), "read {}", read.get());
            }
        }
    }
}
