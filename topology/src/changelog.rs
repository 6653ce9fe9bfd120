//! The changelog's record format, and reading it back into complete batches.
//!
//! A task's commit writes, per store that changed, the batch's changed keys (value, or
//! a tombstone for a delete) and then a commit marker. Data records carry the task's
//! epoch and batch number in headers; the marker carries the next input offsets. A
//! reader applies everything up to a marker as one unit. Records after the last
//! marker (the "tail") are a batch whose commit did not finish: the restoring task
//! decides whether it committed (another store has its marker) or was abandoned, and
//! in the second case rewrites the committed values of those keys before processing
//! (see [`crate::task::restore`]), so "apply up to the last marker" stays right even
//! after compaction has removed older markers.

use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message;
use weir_proto::CommitMarker;

use crate::kafka::{KafkaError, Record, RecordAndOffset, TopicPartition};
use crate::task::fetcher;

/// Key of every commit marker; a NUL first byte keeps it apart from store keys in
/// practice, and the marker header decides.
pub(crate) const MARKER_KEY: &[u8] = b"\0weir-commit";
pub(crate) const MARKER_HEADER: &str = "weir-marker";
pub(crate) const EPOCH_HEADER: &str = "weir-epoch";
pub(crate) const BATCH_HEADER: &str = "weir-batch";

/// A batch identity: the task owner's epoch and the batch's number within it.
pub type BatchId = (u64, u64);

/// One changelog record, understood.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ChangelogEntry {
    Data {
        key: Bytes,
        value: Option<Bytes>,
        batch: BatchId,
    },
    Marker(CommitMarker),
}

/// The Kafka record of one changed key (`None`: a delete) in batch `batch`. Public for
/// tools that seed a changelog, like the bench; a batch is only applied once its
/// [`marker_record`] follows.
pub fn data_record(key: &[u8], value: Option<&[u8]>, batch: BatchId, timestamp_ms: i64) -> Record {
    Record {
        key: Some(key.to_vec()),
        value: value.map(<[u8]>::to_vec),
        headers: BTreeMap::from([
            (EPOCH_HEADER.to_owned(), batch.0.to_be_bytes().to_vec()),
            (BATCH_HEADER.to_owned(), batch.1.to_be_bytes().to_vec()),
        ]),
        timestamp: timestamp(timestamp_ms),
    }
}

/// Bytes a [`data_record`] adds to its key and value: the two 8-byte headers and their
/// names.
pub(crate) const DATA_HEADER_BYTES: usize = EPOCH_HEADER.len() + BATCH_HEADER.len() + 16;

/// The Kafka record of a commit marker: it closes the batch `marker` names and carries
/// the next input offsets a restored task starts from. Public for tools that seed a
/// changelog, like the bench.
pub fn marker_record(marker: &CommitMarker, timestamp_ms: i64) -> Record {
    Record {
        key: Some(MARKER_KEY.to_vec()),
        value: Some(marker.encode_to_vec()),
        headers: BTreeMap::from([
            (MARKER_HEADER.to_owned(), Vec::new()),
            (EPOCH_HEADER.to_owned(), marker.epoch.to_be_bytes().to_vec()),
            (
                BATCH_HEADER.to_owned(),
                marker.batch_number.to_be_bytes().to_vec(),
            ),
        ]),
        timestamp: timestamp(timestamp_ms),
    }
}

/// Reads one changelog record back, taking its key and value without copying them; an
/// error with a reason when it is not weir's.
pub(crate) fn parse(record: RecordAndOffset) -> Result<ChangelogEntry, String> {
    let headers = &record.record.headers;
    if headers.contains_key(MARKER_HEADER) {
        let value = record.record.value.as_deref().unwrap_or_default();
        return CommitMarker::decode(value)
            .map(ChangelogEntry::Marker)
            .map_err(|e| {
                format!(
                    "commit marker at offset {} does not decode: {e}",
                    record.offset
                )
            });
    }
    let epoch = header_u64(headers, EPOCH_HEADER).ok_or_else(|| {
        format!(
            "changelog record at offset {} has no {EPOCH_HEADER} header",
            record.offset
        )
    })?;
    let batch = header_u64(headers, BATCH_HEADER).ok_or_else(|| {
        format!(
            "changelog record at offset {} has no {BATCH_HEADER} header",
            record.offset
        )
    })?;
    let key = record
        .record
        .key
        .ok_or_else(|| format!("changelog record at offset {} has no key", record.offset))?;
    Ok(ChangelogEntry::Data {
        key: Bytes::from(key),
        value: record.record.value.map(Bytes::from),
        batch: (epoch, batch),
    })
}

fn header_u64(headers: &BTreeMap<String, Vec<u8>>, name: &str) -> Option<u64> {
    let bytes: [u8; 8] = headers.get(name)?.as_slice().try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

fn timestamp(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Groups a changelog's records into complete batches: data accumulates until a
/// marker, which closes the data of its own batch and of every earlier one as one unit
/// to apply. Data of a later batch stays pending: a writer may append the next batch's
/// data in the same request as a marker, and a retry of that request repeats the marker
/// after some of that data.
#[derive(Debug, Default)]
pub(crate) struct BatchAssembler {
    /// Data since the last marker, in changelog order.
    pending: Vec<(Bytes, Option<Bytes>, BatchId)>,
}

/// A unit of changes ready to apply: everything up to a commit marker, in changelog
/// order. A key may appear more than once; applied in order, its last write wins (as
/// in a RocksDB WriteBatch), so no per-key sorting is spent on restore's hot path.
#[derive(Debug)]
pub(crate) struct CompleteBatch {
    pub(crate) changes: Vec<(Bytes, Option<Bytes>)>,
}

impl BatchAssembler {
    /// Adds one entry; a marker closes and returns the batch.
    pub(crate) fn push(&mut self, entry: ChangelogEntry) -> Option<CompleteBatch> {
        match entry {
            ChangelogEntry::Data { key, value, batch } => {
                self.pending.push((key, value, batch));
                None
            }
            ChangelogEntry::Marker(marker) => {
                let closed = (marker.epoch, marker.batch_number);
                let pending = std::mem::take(&mut self.pending);
                let changes = if pending.iter().all(|(_, _, batch)| *batch <= closed) {
                    pending
                        .into_iter()
                        .map(|(key, value, _)| (key, value))
                        .collect()
                } else {
                    let mut changes = Vec::new();
                    for (key, value, batch) in pending {
                        if batch <= closed {
                            changes.push((key, value));
                        } else {
                            self.pending.push((key, value, batch));
                        }
                    }
                    changes
                };
                Some(CompleteBatch { changes })
            }
        }
    }

    /// Whether data is waiting for a marker.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Data records after the last marker, last write per key, with the batch each
    /// belongs to.
    pub(crate) fn into_tail(self) -> BTreeMap<Bytes, (Option<Bytes>, BatchId)> {
        self.pending
            .into_iter()
            .map(|(key, value, batch)| (key, (value, batch)))
            .collect()
    }
}

/// Largest fetch while reading a changelog to its end.
const READ_FETCH_BYTES: i32 = 8 * 1024 * 1024;

/// A store partition's committed contents, read from its changelog partition up to the
/// high watermark seen at the start: every complete batch applied in order, an
/// unfinished tail left out. This is what a restoring task (or a global replica) would
/// hold, read from outside the instance that owns the store. It reads as restore does
/// ([`fetcher::read_range`]), so a fetch a loaded broker answers empty below its end
/// is asked again rather than taken for the end.
pub async fn read_committed(
    changelog: &TopicPartition,
) -> Result<BTreeMap<Bytes, Bytes>, KafkaError> {
    let end = changelog.high_watermark().await?;
    let start = changelog.earliest_offset().await?;
    let mut contents = BTreeMap::new();
    let mut assembler = BatchAssembler::default();
    let mut range = fetcher::read_range(changelog.clone(), start, end, READ_FETCH_BYTES);
    while let Some(records) = range.next().await {
        for record in records? {
            let Ok(entry) = parse(record) else { continue };
            if let Some(batch) = assembler.push(entry) {
                for (key, value) in batch.changes {
                    match value {
                        Some(value) => contents.insert(key, value),
                        None => contents.remove(&key),
                    };
                }
            }
        }
    }
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(record: Record, offset: i64) -> ChangelogEntry {
        match parse(RecordAndOffset { record, offset }) {
            Ok(entry) => entry,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn records_round_trip_through_the_format() {
        let data = read(data_record(b"k", Some(b"v"), (3, 9), 0), 0);
        assert_eq!(
            data,
            ChangelogEntry::Data {
                key: Bytes::from_static(b"k"),
                value: Some(Bytes::from_static(b"v")),
                batch: (3, 9)
            }
        );
        let tombstone = read(data_record(b"k", None, (3, 9), 0), 1);
        assert!(matches!(
            tombstone,
            ChangelogEntry::Data { value: None, .. }
        ));
        let marker = CommitMarker {
            next_input_offset: 42,
            epoch: 3,
            batch_number: 9,
            next_input_offsets: BTreeMap::new(),
        };
        assert_eq!(
            read(marker_record(&marker, 0), 2),
            ChangelogEntry::Marker(marker)
        );
    }

    #[test]
    fn foreign_records_are_rejected_with_their_offset() {
        let record = Record {
            key: Some(b"k".to_vec()),
            value: None,
            headers: BTreeMap::new(),
            timestamp: timestamp(0),
        };
        let error = parse(RecordAndOffset { record, offset: 17 }).err();
        assert_eq!(
            error.as_deref(),
            Some("changelog record at offset 17 has no weir-epoch header")
        );
    }

    #[test]
    fn assembler_applies_up_to_each_marker_and_keeps_the_tail() {
        let mut assembler = BatchAssembler::default();
        let data = |k: &'static [u8], v: Option<&'static [u8]>, b: u64| ChangelogEntry::Data {
            key: Bytes::from_static(k),
            value: v.map(Bytes::from_static),
            batch: (1, b),
        };
        let marker = |b: u64| {
            ChangelogEntry::Marker(CommitMarker {
                next_input_offset: i64::try_from(b).unwrap_or_default() * 10,
                epoch: 1,
                batch_number: b,
                next_input_offsets: BTreeMap::new(),
            })
        };
        assert!(assembler.push(data(b"a", Some(b"1"), 0)).is_none());
        assert!(assembler.push(data(b"a", Some(b"2"), 0)).is_none());
        assert!(assembler.push(data(b"b", None, 0)).is_none());
        let batch = assembler.push(marker(0)).map(|b| b.changes);
        assert_eq!(
            batch,
            Some(vec![
                (Bytes::from_static(b"a"), Some(Bytes::from_static(b"1"))),
                (Bytes::from_static(b"a"), Some(Bytes::from_static(b"2"))),
                (Bytes::from_static(b"b"), None)
            ]),
            "in changelog order, so applying them in order leaves a's last write"
        );
        assert!(assembler.push(data(b"c", Some(b"3"), 1)).is_none());
        // Batch 0's marker again (a retried request that also carried batch 1's data):
        // it closes nothing of batch 1.
        let repeated = assembler.push(marker(0)).map(|b| b.changes);
        assert_eq!(repeated, Some(Vec::new()));
        assert!(assembler.push(data(b"c", Some(b"4"), 1)).is_none());
        let tail = assembler.into_tail();
        assert_eq!(
            tail,
            BTreeMap::from([(
                Bytes::from_static(b"c"),
                (Some(Bytes::from_static(b"4")), (1, 1))
            )]),
            "the tail keeps each key's last write"
        );
    }
}
