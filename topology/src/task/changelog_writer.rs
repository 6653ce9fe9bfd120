//! The second half of a commit, behind the task. Once a batch's outputs are acknowledged
//! the task freezes its changes and hands the batch over; the writer produces the
//! batch's changelog records, awaits them, writes a commit marker to each changed store's
//! changelog, awaits those, and reports the batch durable, so the task can write it to
//! RocksDB. Meanwhile the task processes the next batch and produces its outputs.
//!
//! Batches are written one after the other: a batch's changelog records never go before
//! the previous batch's markers, which is the order restore relies on
//! ([`crate::changelog`]). When the next batch is already waiting as a batch's markers
//! fall due, its changelog records go in the same request, after the markers: one
//! request per partition and batch instead of two. A retry of such a request may repeat
//! a marker after some of the next batch's records, which is harmless: a marker closes
//! only its own batch and earlier ones. A batch's outputs may reach the broker before
//! the previous batch's markers; both batches are replayed if the task dies before those
//! markers are acknowledged, as any uncommitted batch is.

use std::collections::BTreeMap;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use weir_proto::CommitMarker;
use weir_state::StoreId;

use bytes::Bytes;

use crate::changelog::{self, BatchId};
use crate::error::RuntimeError;
use crate::kafka::{Record, TopicPartition};
use crate::task::collector::ToRecord;
use crate::task::commit_retry::{CommitRetries, produce_retrying};

/// Most batches handed over and not yet durable; the task waits for the oldest before
/// handing over another, so its frozen changes stay bounded.
pub(crate) const MAX_BATCHES_IN_FLIGHT: usize = 2;

/// A batch whose outputs are acknowledged (or parked), with its changes.
#[derive(Debug)]
pub(crate) struct FrozenBatch {
    pub(crate) id: BatchId,
    /// Every store that gets a marker, with the batch's changes to it.
    pub(crate) stores: Vec<StoreWrites>,
    /// The next input offset per source topic once the batch is durable.
    pub(crate) next_offsets: BTreeMap<String, i64>,
    pub(crate) timestamp_ms: i64,
    /// For the commit metrics: when the commit started, and the batch's input records.
    pub(crate) started: Instant,
    pub(crate) records: u64,
}

/// One store of a committing batch: its changelog partition and the batch's changes to
/// it (last write per key, `None` a delete), which may be none (a repair marks every
/// store).
#[derive(Debug)]
pub(crate) struct StoreWrites {
    pub(crate) store: StoreId,
    pub(crate) changelog: TopicPartition,
    pub(crate) changes: Vec<(Bytes, Option<Bytes>)>,
}

/// A batch whose changelog records and markers are acknowledged.
#[derive(Debug)]
pub(crate) struct DurableBatch {
    pub(crate) next_offsets: BTreeMap<String, i64>,
    /// Per changed store, the changelog offset after its marker.
    pub(crate) changelog_positions: Vec<(StoreId, i64)>,
    pub(crate) started: Instant,
    pub(crate) records: u64,
}

/// The writer of one task: batches go in, durable batches come out in the same order.
/// Dropping it stops the writing.
#[derive(Debug)]
pub(crate) struct ChangelogWriter {
    batches: mpsc::Sender<FrozenBatch>,
    durable: mpsc::Receiver<Result<DurableBatch, RuntimeError>>,
    in_flight: usize,
    _writer: JoinSet<()>,
}

impl ChangelogWriter {
    pub(crate) fn start(retries: CommitRetries) -> Self {
        let (batches, mut to_write) = mpsc::channel::<FrozenBatch>(MAX_BATCHES_IN_FLIGHT);
        let (durable_tx, durable) = mpsc::channel(MAX_BATCHES_IN_FLIGHT);
        let mut writer = JoinSet::new();
        writer.spawn(async move {
            // The batch whose changelog records are acknowledged, its markers not yet.
            let mut unmarked: Option<FrozenBatch> = None;
            loop {
                let next = if unmarked.is_some() {
                    // Its markers are due: the next batch's records go along only if
                    // that batch is waiting already.
                    to_write.try_recv().ok()
                } else {
                    match to_write.recv().await {
                        Some(batch) => Some(batch),
                        None => return,
                    }
                };
                match write_step(&retries, unmarked.take(), next.as_ref()).await {
                    Ok(Some(durable)) => {
                        if durable_tx.send(Ok(durable)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(error) => {
                        let _ = durable_tx.send(Err(error)).await;
                        return;
                    }
                }
                unmarked = next;
            }
        });
        Self {
            batches,
            durable,
            in_flight: 0,
            _writer: writer,
        }
    }

    /// Batches handed over and not yet taken back durable.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Hands a batch over. The caller keeps fewer than [`MAX_BATCHES_IN_FLIGHT`] in
    /// flight, taking the oldest back with [`durable`](Self::durable) first.
    pub(crate) async fn submit(&mut self, batch: FrozenBatch) -> Result<(), RuntimeError> {
        self.batches.send(batch).await.map_err(|_| writer_gone())?;
        self.in_flight += 1;
        Ok(())
    }

    /// The oldest batch in flight once it is durable, or the error that stopped the
    /// writer. Waits forever when nothing is in flight.
    pub(crate) async fn durable(&mut self) -> Result<DurableBatch, RuntimeError> {
        if self.in_flight == 0 {
            return std::future::pending().await;
        }
        let durable = self.durable.recv().await.ok_or_else(writer_gone)?;
        self.in_flight -= 1;
        durable
    }

    /// The oldest batch in flight if it is durable already.
    pub(crate) fn try_durable(&mut self) -> Option<Result<DurableBatch, RuntimeError>> {
        let durable = self.durable.try_recv().ok()?;
        self.in_flight -= 1;
        Some(durable)
    }
}

fn writer_gone() -> RuntimeError {
    RuntimeError::Internal("the task's changelog writer stopped".to_owned())
}

/// Writes one batch on its own: its changelog records, then its markers (how a task
/// repairs its changelog before it starts the writer).
pub(crate) async fn write_batch(
    retries: &CommitRetries,
    batch: FrozenBatch,
) -> Result<DurableBatch, RuntimeError> {
    write_step(retries, None, Some(&batch)).await?;
    write_step(retries, Some(batch), None)
        .await?
        .ok_or_else(|| RuntimeError::Internal("a marked batch was not reported durable".to_owned()))
}

/// One record of a changelog request: a marker, or a changed key of a batch.
enum ChangelogWrite<'a> {
    Marker(&'a Record),
    Data(&'a (Bytes, Option<Bytes>), &'a FrozenBatch),
}

impl ToRecord for ChangelogWrite<'_> {
    fn to_record(&self) -> Record {
        match self {
            Self::Marker(marker) => (*marker).clone(),
            Self::Data((key, value), batch) => {
                changelog::data_record(key, value.as_deref(), batch.id, batch.timestamp_ms)
            }
        }
    }

    fn approximate_size(&self) -> usize {
        match self {
            Self::Marker(marker) => marker.approximate_size(),
            Self::Data((key, value), _) => {
                key.len() + value.as_ref().map_or(0, Bytes::len) + changelog::DATA_HEADER_BYTES
            }
        }
    }
}

/// One round of writes, every partition at once: the commit markers of `marked` (whose
/// changelog records are acknowledged), then the changelog records of `data`, in one
/// request per partition. Returns `marked` as a durable batch.
async fn write_step(
    retries: &CommitRetries,
    marked: Option<FrozenBatch>,
    data: Option<&FrozenBatch>,
) -> Result<Option<DurableBatch>, RuntimeError> {
    let marker = marked
        .as_ref()
        .map(|batch| changelog::marker_record(&commit_marker(batch), batch.timestamp_ms));
    // One group per changelog partition: the marked batch's stores first, in its order,
    // each with its marker; a store the data batch also changed adds its records there,
    // after the marker.
    let marked_stores: &[StoreWrites] = marked.as_ref().map_or(&[], |batch| &batch.stores);
    let mut groups: Vec<(TopicPartition, Vec<ChangelogWrite<'_>>)> = Vec::new();
    if let Some(marker) = &marker {
        groups.extend(marked_stores.iter().map(|writes| {
            (
                writes.changelog.clone(),
                vec![ChangelogWrite::Marker(marker)],
            )
        }));
    }
    if let Some(batch) = data {
        for writes in batch.stores.iter().filter(|w| !w.changes.is_empty()) {
            let records = writes
                .changes
                .iter()
                .map(|change| ChangelogWrite::Data(change, batch));
            match marked_stores.iter().position(|m| m.store == writes.store) {
                Some(index) => groups[index].1.extend(records),
                None => groups.push((writes.changelog.clone(), records.collect())),
            }
        }
    }
    let offsets = if groups.is_empty() {
        Vec::new()
    } else {
        let step = match (&marked, data) {
            (Some(_), Some(_)) => "produce commit markers and changelog",
            (Some(_), None) => "produce commit markers",
            (None, _) => "produce changelog",
        };
        produce_retrying(retries.step(step), &groups).await?
    };
    Ok(marked.map(|batch| {
        // Each marked store's group comes first, in its order, marker first.
        let changelog_positions = batch
            .stores
            .iter()
            .zip(&offsets)
            .filter_map(|(writes, offsets)| Some((writes.store, offsets.first()? + 1)))
            .collect();
        DurableBatch {
            next_offsets: batch.next_offsets,
            changelog_positions,
            started: batch.started,
            records: batch.records,
        }
    }))
}

/// The commit marker of a batch: its identity and the next input offsets.
fn commit_marker(batch: &FrozenBatch) -> CommitMarker {
    let next_offsets = &batch.next_offsets;
    CommitMarker {
        next_input_offset: if next_offsets.len() == 1 {
            next_offsets.values().next().copied().unwrap_or_default()
        } else {
            0
        },
        epoch: batch.id.0,
        batch_number: batch.id.1,
        next_input_offsets: next_offsets.clone(),
    }
}
