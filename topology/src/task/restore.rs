//! Restore: bring a task's RocksDB up to date from its changelogs before it processes.
//!
//! Each store's changelog partition is read from the checkpointed position (or its
//! start) to the high watermark, the next fetch under way while a record set is
//! applied ([`fetcher::read_range`]); complete batches go to RocksDB in large
//! WriteBatches.
//! What follows a store's last marker is its tail: a batch whose commit was cut short.
//! Because every store's data is acknowledged before any store's marker is written, a
//! tail batch whose marker reached *another* store did commit, and is applied. Any
//! other tail batch was abandoned: its keys get their committed values written back to
//! the changelog (compensation) before new work starts, followed by markers of the new
//! epoch, so a later reader that applies "everything up to the last marker" is right.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_proto::CommitMarker;
use weir_state::{Checkpoint, StoreId, TaskDb};

use crate::blocking;
use crate::changelog::{self, BatchAssembler, BatchId, ChangelogEntry};
use crate::error::RuntimeError;
use crate::kafka::TopicPartition;
use crate::metrics::TaskMetrics;
use crate::task::fetcher;

/// Changes applied to RocksDB per WriteBatch during restore.
const RESTORE_WRITE_BATCH: usize = 50_000;
/// Bytes per fetch during restore.
const RESTORE_FETCH_BYTES: i32 = 16 * 1024 * 1024;

/// Checkpoint name of a source topic's next input offset.
pub(crate) fn input_position(topic: &str) -> String {
    format!("input/{topic}")
}

/// Checkpoint name of a store's changelog position (the offset after its last marker).
pub(crate) fn changelog_position(store: &str) -> String {
    format!("changelog/{store}")
}

/// Changed keys (value, or `None` for a delete) per store.
pub(crate) type StoreChanges = BTreeMap<StoreId, Vec<(Bytes, Option<Bytes>)>>;

/// Checkpoint name of the task's epoch.
pub(crate) const EPOCH: &str = "epoch";

/// Where a restored task stands.
#[derive(Debug)]
pub(crate) struct Restored {
    /// Next offset to read per source topic.
    pub(crate) next_offsets: BTreeMap<String, i64>,
    /// The checkpoint as restored (changelog positions included).
    pub(crate) checkpoint: Checkpoint,
    /// The epoch this run of the task writes with.
    pub(crate) epoch: u64,
    /// Keys to write back, per store, before processing (abandoned batches); `None`
    /// when no store had a tail.
    pub(crate) compensation: Option<StoreChanges>,
    /// Changelog records read.
    pub(crate) records: u64,
}

/// Restores every store of `db` from its changelog partition.
pub(crate) async fn restore(
    task: &str,
    db: &mut TaskDb,
    changelogs: &BTreeMap<StoreId, TopicPartition>,
    metrics: &TaskMetrics,
) -> Result<Restored, RuntimeError> {
    let started = Instant::now();
    let mut checkpoint = db.checkpoint()?.unwrap_or_default();
    let mut starts = BTreeMap::new();
    let mut remaining = 0_i64;
    for (&store, handle) in changelogs {
        let name = changelog_position(db.store_name(store));
        let start = match checkpoint.get(&name) {
            Some(position) => position,
            None => handle.earliest_offset().await?,
        };
        let end = handle.high_watermark().await?;
        if start > end {
            return Err(RuntimeError::CheckpointPastChangelog {
                task: task.to_owned(),
                topic: handle.topic().to_owned(),
                partition: handle.partition(),
                checkpoint: start,
                end,
            });
        }
        remaining += end - start;
        starts.insert(store, (start, end));
    }
    metrics.restore_remaining.set(remaining as f64);
    if remaining > 0 {
        tracing::info!(task, records = remaining, "restoring state from changelogs");
    }

    let mut markers_seen: BTreeSet<BatchId> = BTreeSet::new();
    let mut latest: Option<CommitMarker> = None;
    let mut tails = BTreeMap::new();
    let mut records_read = 0_u64;
    let mut last_progress = Instant::now();
    for (&store, handle) in changelogs {
        let (start, end) = starts[&store];
        let position_name = changelog_position(db.store_name(store));
        let mut assembler = BatchAssembler::default();
        // Complete batches not yet written, in changelog order (applied in order, each
        // key's last write wins).
        let mut ready: Vec<(Bytes, Option<Bytes>)> = Vec::new();
        let mut offset = start;
        let mut applied_position = start;
        let mut range = fetcher::read_range(handle.clone(), start, end, RESTORE_FETCH_BYTES);
        while let Some(records) = range.next().await {
            let mut fetched = 0_u64;
            for record in records? {
                offset = record.offset + 1;
                fetched += 1;
                let entry = changelog::parse(record).map_err(|reason| RuntimeError::Changelog {
                    task: task.to_owned(),
                    topic: handle.topic().to_owned(),
                    partition: handle.partition(),
                    reason,
                })?;
                if let ChangelogEntry::Marker(marker) = &entry {
                    markers_seen.insert((marker.epoch, marker.batch_number));
                    if latest.as_ref().is_none_or(|l| {
                        (l.epoch, l.batch_number) < (marker.epoch, marker.batch_number)
                    }) {
                        latest = Some(marker.clone());
                    }
                }
                if let Some(batch) = assembler.push(entry) {
                    ready.extend(batch.changes);
                    // A later batch's data before this marker is not applied yet: a
                    // restore from here must read it again.
                    if !assembler.has_pending() {
                        applied_position = offset;
                    }
                }
            }
            if ready.len() >= RESTORE_WRITE_BATCH {
                checkpoint.set(position_name.clone(), applied_position);
                write(db, store, std::mem::take(&mut ready), &checkpoint, metrics)?;
            }
            records_read += fetched;
            metrics.restore_records.increment(fetched);
            metrics
                .restore_remaining
                .set((remaining - (offset - start)).max(0) as f64);
            if last_progress.elapsed() >= Duration::from_secs(5) {
                tracing::info!(
                    task,
                    store = db.store_name(store),
                    offset,
                    end,
                    "restore progress"
                );
                last_progress = Instant::now();
            }
        }
        checkpoint.set(position_name, applied_position);
        write(db, store, ready, &checkpoint, metrics)?;
        remaining -= end - start;
        let tail = assembler.into_tail();
        if !tail.is_empty() {
            tails.insert(store, tail);
        }
    }
    metrics.restore_remaining.set(0.0);

    // Tail batches: committed if some store holds their marker, abandoned otherwise.
    let mut compensation = BTreeMap::new();
    let mut max_epoch = checkpoint
        .get(EPOCH)
        .and_then(|e| u64::try_from(e).ok())
        .unwrap_or(0);
    for (store, tail) in &tails {
        let split = split_tail(tail, &markers_seen);
        max_epoch = max_epoch.max(split.max_epoch);
        write(db, *store, split.committed, &checkpoint, metrics)?;
        let mut rewrite = Vec::with_capacity(split.abandoned.len());
        for key in split.abandoned {
            let value = db.get_raw(*store, &key)?;
            rewrite.push((key, value));
        }
        compensation.insert(*store, rewrite);
    }
    if let Some(marker) = &latest {
        max_epoch = max_epoch.max(marker.epoch);
    }
    let mut next_offsets: BTreeMap<String, i64> = checkpoint
        .positions
        .iter()
        .filter_map(|(name, &offset)| {
            name.strip_prefix("input/")
                .map(|topic| (topic.to_owned(), offset))
        })
        .collect();
    if let Some(marker) = &latest {
        for (topic, &offset) in &marker.next_input_offsets {
            let next = next_offsets.entry(topic.clone()).or_insert(offset);
            *next = (*next).max(offset);
        }
    }
    for (topic, &offset) in &next_offsets {
        checkpoint.set(input_position(topic), offset);
    }
    let epoch = max_epoch + 1;
    checkpoint.set(EPOCH, i64::try_from(epoch).unwrap_or(i64::MAX));
    // The new epoch is made durable before anything is written under it.
    blocking::run(|| db.persist_checkpoint(&checkpoint))?;
    if records_read > 0 || !tails.is_empty() {
        tracing::info!(
            task,
            records = records_read,
            abandoned_keys = compensation.values().map(Vec::len).sum::<usize>(),
            epoch,
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "restore finished"
        );
    }
    Ok(Restored {
        next_offsets,
        checkpoint,
        epoch,
        compensation: (!tails.is_empty()).then_some(compensation),
        records: records_read,
    })
}

/// A store's tail, sorted into what committed and what was abandoned.
#[derive(Debug, PartialEq, Eq)]
struct SplitTail {
    /// Changes of batches whose marker some store holds: apply them.
    committed: BTreeMap<Bytes, Option<Bytes>>,
    /// Keys of batches no store has a marker for: rewrite their committed values.
    abandoned: Vec<Bytes>,
    /// Highest epoch among the tail's records.
    max_epoch: u64,
}

/// A tail batch committed exactly when a marker for it reached some store: every
/// store's data is acknowledged before any store's marker is written.
fn split_tail(
    tail: &BTreeMap<Bytes, (Option<Bytes>, BatchId)>,
    markers_seen: &BTreeSet<BatchId>,
) -> SplitTail {
    let mut split = SplitTail {
        committed: BTreeMap::new(),
        abandoned: Vec::new(),
        max_epoch: 0,
    };
    for (key, (value, batch)) in tail {
        split.max_epoch = split.max_epoch.max(batch.0);
        if markers_seen.contains(batch) {
            split.committed.insert(key.clone(), value.clone());
        } else {
            split.abandoned.push(key.clone());
        }
    }
    split
}

/// Writes `changes` to `store` in the order given (a key's last write wins), with the
/// checkpoint.
fn write(
    db: &mut TaskDb,
    store: StoreId,
    changes: impl IntoIterator<Item = (Bytes, Option<Bytes>)>,
    checkpoint: &Checkpoint,
    metrics: &TaskMetrics,
) -> Result<(), RuntimeError> {
    let mut changes = changes.into_iter().peekable();
    if changes.peek().is_none() {
        return Ok(());
    }
    let bytes =
        blocking::run(|| db.apply_restored(changes.map(|(k, v)| (store, k, v)), checkpoint))?;
    metrics.store_bytes_written.increment(bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_batches_commit_only_when_some_store_holds_their_marker() {
        let key = |k: &'static str| Bytes::from_static(k.as_bytes());
        let tail = BTreeMap::from([
            (key("a"), (Some(key("1")), (3, 7))),
            (key("b"), (None, (3, 7))),
            (key("c"), (Some(key("2")), (3, 8))),
            (key("d"), (Some(key("3")), (2, 9))),
        ]);
        // Batch (3, 7) reached another store's changelog; (3, 8) and (2, 9) did not.
        let markers = BTreeSet::from([(3, 6), (3, 7)]);
        let split = split_tail(&tail, &markers);
        assert_eq!(
            split,
            SplitTail {
                committed: BTreeMap::from([(key("a"), Some(key("1"))), (key("b"), None)]),
                abandoned: vec![key("c"), key("d")],
                max_epoch: 3,
            }
        );
        assert_eq!(split_tail(&BTreeMap::new(), &markers).max_epoch, 0);
    }
}
