//! Parked outputs: output records whose destination topic or partition does not exist
//! wait in the task's `{sub-topology}-parked` store, written and changelogged with the
//! batch like any state, until the destination exists; then they are produced in order
//! and deleted in the batch that commits after the broker acknowledged them.
//!
//! Keys: destination topic, a NUL, the partition, then the epoch, batch number and
//! index within the batch of the commit that parked the record, all big-endian. So a
//! destination's records sort in the order they were parked, across batches and
//! restarts (every open of a task writes with a higher epoch).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use weir_proto::ParkedRecord;
use weir_state::{KeyDisplay, RecordState, StateError, StoreId, TaskDb};

use crate::changelog::BatchId;
use crate::error::RuntimeError;
use crate::kafka::Record;
use crate::metrics::TaskMetrics;
use crate::task::collector::{Destination, Outgoing, ToRecord};

/// How often a task tries again to produce to a parked destination, with or without
/// input.
pub(crate) const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// How often the log reminds that a destination is still parked.
const REMINDER_INTERVAL: Duration = Duration::from_secs(30);
/// Bytes after the topic and its NUL: partition (4), epoch (8), batch (8), index (4).
const SUFFIX_LEN: usize = 4 + 8 + 8 + 4;

/// The store key of the `index`th record parked for `destination` by batch `batch`.
pub(crate) fn parked_key(destination: &Destination, batch: BatchId, index: u32) -> Vec<u8> {
    let mut key = destination_prefix(destination);
    key.extend_from_slice(&batch.0.to_be_bytes());
    key.extend_from_slice(&batch.1.to_be_bytes());
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// The prefix every key of `destination` starts with: topic, NUL, partition.
pub(crate) fn destination_prefix(destination: &Destination) -> Vec<u8> {
    let (topic, partition) = destination;
    let mut key = Vec::with_capacity(topic.len() + 1 + SUFFIX_LEN);
    key.extend_from_slice(topic.as_bytes());
    key.push(0);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

/// The destination a key belongs to (`None` for a key this module did not write).
fn destination_of(key: &[u8]) -> Option<Destination> {
    if key.len() < SUFFIX_LEN + 1 {
        return None;
    }
    let (head, suffix) = key.split_at(key.len() - SUFFIX_LEN);
    let topic = head.strip_suffix(&[0])?;
    let partition = i32::from_be_bytes(suffix[..4].try_into().ok()?);
    Some((String::from_utf8(topic.to_vec()).ok()?, partition))
}

/// A record as it is kept in the parked store.
pub(crate) fn to_parked(destination: &Destination, record: &Outgoing) -> ParkedRecord {
    let Record {
        key,
        value,
        headers,
        ..
    } = record.to_record();
    ParkedRecord {
        topic: destination.0.clone(),
        partition: destination.1,
        key,
        value,
        headers,
        timestamp_ms: record.timestamp_ms,
    }
}

/// The record to produce for a parked one: the same key, value, headers and timestamp.
pub(crate) fn from_parked(parked: ParkedRecord) -> Outgoing {
    Outgoing {
        key: parked.key.map(Bytes::from),
        value: parked.value.map(Bytes::from),
        headers: parked
            .headers
            .into_iter()
            .map(|(name, value)| (name, Bytes::from(value)))
            .collect(),
        timestamp_ms: parked.timestamp_ms,
    }
}

/// Writes `records` for `destination` into the parked store, in order, keyed after
/// everything parked by earlier batches.
pub(crate) fn park(
    state: &mut RecordState<'_>,
    store: StoreId,
    destination: &Destination,
    batch: BatchId,
    records: &[Outgoing],
) {
    for (index, record) in records.iter().enumerate() {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let key = parked_key(destination, batch, index);
        state.put(store, &key, &to_parked(destination, record));
    }
}

/// One destination that does not exist (yet).
#[derive(Debug)]
struct Waiting {
    records: u64,
    last_reminder: Instant,
    since: Instant,
}

/// What a commit did to the parked store, applied to [`ParkedOutputs`] once the commit
/// is durable.
#[derive(Debug, Default)]
pub(crate) struct ParkingOutcome {
    /// Records newly parked per destination, with the error that parked them when the
    /// destination was not parked before.
    pub(crate) parked: BTreeMap<Destination, (u64, Option<String>)>,
    /// Destinations whose parked records were all produced, with how many.
    pub(crate) drained: BTreeMap<Destination, u64>,
}

impl ParkingOutcome {
    pub(crate) fn is_empty(&self) -> bool {
        self.parked.is_empty() && self.drained.is_empty()
    }
}

/// A task's parked destinations, kept in memory alongside the parked store.
#[derive(Debug)]
pub(crate) struct ParkedOutputs {
    task: String,
    store: StoreId,
    waiting: BTreeMap<Destination, Waiting>,
    last_retry: Option<Instant>,
    /// Topics whose gauge this task has set, so a drained one is set back to 0.
    gauged_topics: BTreeSet<String>,
    metrics: TaskMetrics,
}

impl ParkedOutputs {
    /// The parked destinations as the store holds them (after restore).
    pub(crate) fn load(
        task: &str,
        db: &TaskDb,
        store: StoreId,
        metrics: &TaskMetrics,
    ) -> Result<Self, RuntimeError> {
        let mut counts: BTreeMap<Destination, u64> = BTreeMap::new();
        for (key, _) in db.scan_all(store)? {
            let destination = destination_of(&key).ok_or_else(|| {
                RuntimeError::Internal(format!(
                    "task {task}: parked store {} holds foreign key {}",
                    db.store_name(store),
                    KeyDisplay(&key)
                ))
            })?;
            *counts.entry(destination).or_default() += 1;
        }
        let now = Instant::now();
        let mut parked = Self {
            task: task.to_owned(),
            store,
            waiting: BTreeMap::new(),
            last_retry: None,
            gauged_topics: BTreeSet::new(),
            metrics: metrics.clone(),
        };
        for (destination, records) in counts {
            tracing::warn!(
                task,
                topic = %destination.0,
                partition = destination.1,
                records,
                "output records parked by an earlier run wait for their topic"
            );
            parked.waiting.insert(
                destination,
                Waiting {
                    records,
                    last_reminder: now,
                    since: now,
                },
            );
        }
        parked.set_gauges();
        Ok(parked)
    }

    /// The parked store's id.
    pub(crate) fn store(&self) -> StoreId {
        self.store
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Whether records for `destination` must be parked behind older ones.
    pub(crate) fn contains(&self, destination: &Destination) -> bool {
        self.waiting.contains_key(destination)
    }

    pub(crate) fn destinations(&self) -> Vec<Destination> {
        self.waiting.keys().cloned().collect()
    }

    /// Whether some destination is parked and the last retry is [`RETRY_INTERVAL`] old.
    pub(crate) fn retry_due(&self, now: Instant) -> bool {
        !self.waiting.is_empty()
            && self
                .last_retry
                .is_none_or(|last| now.duration_since(last) >= RETRY_INTERVAL)
    }

    /// Notes that the parked destinations were retried at `now`.
    pub(crate) fn retried(&mut self, now: Instant) {
        self.last_retry = Some(now);
    }

    /// Notes that `destination` is still missing, reminding the log every
    /// [`REMINDER_INTERVAL`].
    pub(crate) fn still_missing(&mut self, destination: &Destination, error: &str, now: Instant) {
        let Some(waiting) = self.waiting.get_mut(destination) else {
            return;
        };
        if now.duration_since(waiting.last_reminder) >= REMINDER_INTERVAL {
            waiting.last_reminder = now;
            let (topic, partition) = destination;
            tracing::error!(
                task = %self.task,
                topic = %topic,
                partition,
                records = waiting.records,
                parked_for_s = now.duration_since(waiting.since).as_secs(),
                error,
                "output topic {topic} partition {partition} still does not exist; its records stay parked"
            );
        }
    }

    /// Every record parked for `destination`, in order, with its key.
    pub(crate) fn read(
        &self,
        db: &TaskDb,
        destination: &Destination,
    ) -> Result<Vec<(Bytes, Outgoing)>, RuntimeError> {
        let prefix = destination_prefix(destination);
        let mut records = Vec::new();
        for (key, value) in db.scan_prefix_raw(self.store, &prefix)? {
            let parked = ParkedRecord::decode(value).map_err(|source| StateError::Decode {
                store: db.store_name(self.store).to_owned(),
                key: KeyDisplay(&key).to_string(),
                source,
            })?;
            records.push((key, from_parked(parked)));
        }
        Ok(records)
    }

    /// Takes in what a commit did, once it is durable: logs each newly parked
    /// destination once, each drained one, and updates the metrics.
    pub(crate) fn apply(&mut self, outcome: ParkingOutcome) {
        let now = Instant::now();
        for (destination, sent) in outcome.drained {
            if let Some(waiting) = self.waiting.remove(&destination) {
                tracing::info!(
                    task = %self.task,
                    topic = %destination.0,
                    partition = destination.1,
                    records = sent,
                    parked_for_s = now.duration_since(waiting.since).as_secs(),
                    "output topic {} partition {} exists now; its {sent} parked records were produced",
                    destination.0,
                    destination.1
                );
            }
        }
        for (destination, (records, error)) in outcome.parked {
            self.metrics
                .output_parked(&destination.0)
                .increment(records);
            let (topic, partition) = &destination;
            match self.waiting.get_mut(&destination) {
                Some(waiting) => waiting.records += records,
                None => {
                    tracing::error!(
                        task = %self.task,
                        topic = %topic,
                        partition,
                        records,
                        error = error.as_deref().unwrap_or_default(),
                        "output topic {topic} partition {partition} does not exist; its records are parked until it does"
                    );
                    self.waiting.insert(
                        destination.clone(),
                        Waiting {
                            records,
                            last_reminder: now,
                            since: now,
                        },
                    );
                }
            }
        }
        self.set_gauges();
    }

    /// Sets the records-waiting gauge of every topic this task parked for since it
    /// opened (0 once drained).
    fn set_gauges(&mut self) {
        let mut per_topic: BTreeMap<String, u64> = self
            .gauged_topics
            .iter()
            .map(|topic| (topic.clone(), 0))
            .collect();
        for ((topic, _), waiting) in &self.waiting {
            *per_topic.entry(topic.clone()).or_default() += waiting.records;
        }
        for (topic, records) in per_topic {
            self.metrics
                .output_parked_records(&topic)
                .set(records as f64);
            self.gauged_topics.insert(topic);
        }
    }
}

#[cfg(test)]
mod tests {
    use weir_state::{StateOptions, StateResources};

    use super::*;

    fn destination(topic: &str, partition: i32) -> Destination {
        (topic.to_owned(), partition)
    }

    fn record(n: u8, weir_id: &str) -> Outgoing {
        Outgoing {
            key: Some(Bytes::from(vec![b'k', n])),
            value: n.is_multiple_of(2).then(|| Bytes::from(vec![n; 3])),
            headers: BTreeMap::from([
                ("weir-id".to_owned(), Bytes::from(weir_id.to_owned())),
                ("other".to_owned(), Bytes::new()),
            ]),
            timestamp_ms: 1_700_000_000_000 + i64::from(n),
        }
    }

    #[test]
    fn keys_sort_by_destination_then_epoch_batch_and_index() {
        let a = destination("out", 0);
        let mut keys = vec![
            parked_key(&a, (2, 0), 0),
            parked_key(&a, (1, 300), 1),
            parked_key(&a, (1, 300), 0),
            parked_key(&a, (1, 7), 256),
            parked_key(&destination("out", 1), (0, 0), 0),
            parked_key(&destination("out-b", 0), (0, 0), 0),
            parked_key(&destination("ou", 9), (9, 9), 9),
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![
                parked_key(&destination("ou", 9), (9, 9), 9),
                parked_key(&a, (1, 7), 256),
                parked_key(&a, (1, 300), 0),
                parked_key(&a, (1, 300), 1),
                parked_key(&a, (2, 0), 0),
                parked_key(&destination("out", 1), (0, 0), 0),
                parked_key(&destination("out-b", 0), (0, 0), 0),
            ]
        );
        // A destination's prefix covers its own keys only.
        let prefix = destination_prefix(&a);
        let covered: Vec<bool> = keys.iter().map(|k| k.starts_with(&prefix)).collect();
        assert_eq!(covered, vec![false, true, true, true, true, false, false]);
    }

    #[test]
    fn keys_name_their_destination() {
        let key = parked_key(&destination("tenant_out", 12), (3, 4), 5);
        assert_eq!(destination_of(&key), Some(destination("tenant_out", 12)));
        assert_eq!(destination_of(b"short"), None);
        assert_eq!(destination_of(&[b'x'; SUFFIX_LEN + 3]), None, "no NUL");
    }

    #[test]
    fn records_round_trip_through_the_store_format() {
        for n in 0..2 {
            let original = record(n, "in:0:41:0");
            let bytes = to_parked(&destination("out", 2), &original).encode_to_vec();
            let decoded = ParkedRecord::decode(bytes.as_slice()).map(from_parked);
            assert_eq!(decoded.ok(), Some(original));
        }
        let empty = Outgoing {
            key: Some(Bytes::new()),
            value: None,
            headers: BTreeMap::new(),
            timestamp_ms: 0,
        };
        let bytes = to_parked(&destination("out", 0), &empty).encode_to_vec();
        let decoded = ParkedRecord::decode(bytes.as_slice()).map(from_parked);
        assert_eq!(decoded.ok(), Some(empty), "an empty key is not a null key");
    }

    #[test]
    fn parked_records_read_back_in_order_and_load_counts_them() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let resources = StateResources::new(&StateOptions::default());
        let mut db =
            TaskDb::open(dir.path(), &["t-parked"], &resources).unwrap_or_else(|e| panic!("{e}"));
        let store = db
            .store_id("t-parked")
            .unwrap_or_else(|| panic!("no store"));
        let out = destination("out", 1);
        let other = destination("other", 0);
        let first: Vec<Outgoing> = (0..3).map(|n| record(n, &format!("in:1:{n}:0"))).collect();
        let second: Vec<Outgoing> = (3..5).map(|n| record(n, &format!("in:1:{n}:0"))).collect();
        let mut state = db.record();
        // Parked by a later batch first: the key, not the write order, decides.
        park(&mut state, store, &out, (1, 9), &second);
        park(&mut state, store, &out, (1, 2), &first);
        park(&mut state, store, &other, (1, 2), &first[..1]);
        state.finish().unwrap_or_else(|e| panic!("{e}"));

        let metrics = TaskMetrics::new("t-1");
        let parked =
            ParkedOutputs::load("t-1", &db, store, &metrics).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parked.destinations(), vec![other.clone(), out.clone()]);
        assert_eq!(parked.waiting[&out].records, 5);
        assert_eq!(parked.waiting[&other].records, 1);
        let read: Vec<Outgoing> = parked
            .read(&db, &out)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        let expected: Vec<Outgoing> = first.iter().chain(&second).cloned().collect();
        assert_eq!(read, expected);
    }

    #[test]
    fn destinations_unpark_once_drained() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let resources = StateResources::new(&StateOptions::default());
        let db =
            TaskDb::open(dir.path(), &["t-parked"], &resources).unwrap_or_else(|e| panic!("{e}"));
        let store = db
            .store_id("t-parked")
            .unwrap_or_else(|| panic!("no store"));
        let metrics = TaskMetrics::new("t-2");
        let mut parked =
            ParkedOutputs::load("t-2", &db, store, &metrics).unwrap_or_else(|e| panic!("{e}"));
        let now = Instant::now();
        assert!(!parked.retry_due(now), "nothing parked, nothing to retry");
        let out = destination("out", 0);
        let mut outcome = ParkingOutcome::default();
        outcome.parked.insert(
            out.clone(),
            (2, Some("topic out does not exist".to_owned())),
        );
        parked.apply(outcome);
        assert!(parked.contains(&out));
        assert!(parked.retry_due(now));
        parked.retried(now);
        assert!(!parked.retry_due(now));
        assert!(parked.retry_due(now + RETRY_INTERVAL));
        let mut outcome = ParkingOutcome::default();
        outcome.parked.insert(out.clone(), (3, None));
        parked.apply(outcome);
        assert_eq!(parked.waiting[&out].records, 5);
        let mut outcome = ParkingOutcome::default();
        outcome.drained.insert(out.clone(), 5);
        parked.apply(outcome);
        assert!(parked.is_empty());
        assert!(!parked.contains(&out));
    }
}
