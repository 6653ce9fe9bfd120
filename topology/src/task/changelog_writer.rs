//! The second half of a commit, behind the task. Once a batch's outputs are acknowledged
//! the task freezes its changes and hands the batch over; the writer produces the
//! batch's changelog records, awaits them, writes a commit marker to each changed store's
//! changelog, awaits those, and reports the batch durable, so the task can write it to
//! RocksDB. Meanwhile the task processes the next batch and produces its outputs.
//!
//! Batches are written one after the other: a batch's changelog records never go before
//! the previous batch's markers, which is the order restore relies on
//! ([`crate::changelog`]). A batch's outputs may reach the broker before the previous
//! batch's markers; both batches are replayed if the task dies before those markers are
//! acknowledged, as any uncommitted batch is.

use std::collections::BTreeMap;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use weir_proto::CommitMarker;
use weir_state::StoreId;

use crate::changelog::{self, BatchId};
use crate::error::RuntimeError;
use crate::kafka::{Record, TopicPartition};
use crate::task::commit_retry::{CommitRetries, produce_retrying};

/// Most batches handed over and not yet durable; the task waits for the oldest before
/// handing over another, so its frozen changes stay bounded.
pub(crate) const MAX_BATCHES_IN_FLIGHT: usize = 2;

/// A batch whose outputs are acknowledged (or parked), with its changelog records.
#[derive(Debug)]
pub(crate) struct FrozenBatch {
    pub(crate) id: BatchId,
    /// The changelog records of the changed keys, per changelog partition.
    pub(crate) data: Vec<(TopicPartition, Vec<Record>)>,
    /// Every changed store with its changelog partition: each gets a marker.
    pub(crate) changed: Vec<(StoreId, TopicPartition)>,
    /// The next input offset per source topic once the batch is durable.
    pub(crate) next_offsets: BTreeMap<String, i64>,
    pub(crate) timestamp_ms: i64,
    /// For the commit metrics: when the commit started, and the batch's input records.
    pub(crate) started: Instant,
    pub(crate) records: u64,
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
            while let Some(batch) = to_write.recv().await {
                let written = write_batch(&retries, batch).await;
                let failed = written.is_err();
                if durable_tx.send(written).await.is_err() || failed {
                    return;
                }
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

/// Writes one batch: its changelog records, then its markers (also how a task repairs
/// its changelog before it starts the writer).
pub(crate) async fn write_batch(
    retries: &CommitRetries,
    batch: FrozenBatch,
) -> Result<DurableBatch, RuntimeError> {
    produce_retrying(retries.step("produce changelog"), &batch.data).await?;
    let changelog_positions = write_markers(
        retries,
        &batch.changed,
        batch.id,
        &batch.next_offsets,
        batch.timestamp_ms,
    )
    .await?;
    Ok(DurableBatch {
        next_offsets: batch.next_offsets,
        changelog_positions,
        started: batch.started,
        records: batch.records,
    })
}

/// Writes a commit marker carrying the next input offsets to the changelog of each of
/// `stores` (whose data is acknowledged); returns per store the offset after it.
async fn write_markers(
    retries: &CommitRetries,
    stores: &[(StoreId, TopicPartition)],
    batch_id: BatchId,
    next_offsets: &BTreeMap<String, i64>,
    timestamp_ms: i64,
) -> Result<Vec<(StoreId, i64)>, RuntimeError> {
    if stores.is_empty() {
        return Ok(Vec::new());
    }
    let marker = CommitMarker {
        next_input_offset: if next_offsets.len() == 1 {
            next_offsets.values().next().copied().unwrap_or_default()
        } else {
            0
        },
        epoch: batch_id.0,
        batch_number: batch_id.1,
        next_input_offsets: next_offsets.clone(),
    };
    let markers: Vec<(TopicPartition, Vec<Record>)> = stores
        .iter()
        .map(|(_, partition)| {
            (
                partition.clone(),
                vec![changelog::marker_record(&marker, timestamp_ms)],
            )
        })
        .collect();
    let offsets = produce_retrying(retries.step("produce commit markers"), &markers).await?;
    Ok(stores
        .iter()
        .zip(offsets)
        .filter_map(|((store, _), offsets)| Some((*store, offsets.last()? + 1)))
        .collect())
}
