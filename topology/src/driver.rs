//! A broker-free way to run a topology (Kafka Streams' `TopologyTestDriver`): pipe
//! records in, move a simulated wall clock for timers, and look at the outputs, the
//! changelog records and the store contents. Processing is the same code the Kafka
//! tasks run; each piped record is committed on its own.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use weir_state::{Checkpoint, StateOptions, StateResources, TaskDb};

use crate::error::RuntimeError;
use crate::global::GlobalStores;
use crate::metrics::TaskMetrics;
use crate::processor::{InputRecord, OutputRecord};
use crate::store::StoreHandle;
use crate::task::RecordOutcome;
use crate::task::StampedOutput;
use crate::task::core::{TaskCore, TaskCoreParts};
use crate::topology::Topology;

/// How many records fed back to source topics (timers, loops) one pipe may cause.
const MAX_FEEDBACK: usize = 100_000;

/// One record written to a changelog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogRecord {
    pub topic: String,
    pub partition: i32,
    pub key: Bytes,
    /// `None` is a tombstone.
    pub value: Option<Bytes>,
}

/// Runs a topology in memory and on a local RocksDB, without Kafka.
pub struct TopologyTestDriver {
    topology: Topology,
    cluster_id: String,
    tasks: BTreeMap<(usize, i32), TaskCore>,
    globals: GlobalStores,
    /// Topology store index -> position in `globals`.
    global_index: BTreeMap<usize, usize>,
    next_offsets: BTreeMap<(String, i32), i64>,
    outputs: Vec<StampedOutput>,
    /// How many of `outputs` have been looked at for records to feed back.
    fed_back: usize,
    changelog: Vec<ChangelogRecord>,
    global_positions: i64,
    wall_clock_ms: i64,
    _state_dir: PathBuf,
}

impl std::fmt::Debug for TopologyTestDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyTestDriver")
            .field("topology", &self.topology)
            .field("outputs", &self.outputs.len())
            .finish_non_exhaustive()
    }
}

impl TopologyTestDriver {
    /// Opens every task of every sub-topology under `state_dir` (use a temp dir).
    pub fn new(
        topology: Topology,
        cluster_id: &str,
        state_dir: &Path,
    ) -> Result<Self, RuntimeError> {
        topology.validate()?;
        let resources = StateResources::new(&StateOptions {
            block_cache_bytes: 8 * 1024 * 1024,
            write_buffer_bytes: 8 * 1024 * 1024,
            ..StateOptions::default()
        });
        let global_specs: Vec<(Arc<str>, String)> = topology
            .globals
            .iter()
            .map(|&i| {
                let name = Arc::clone(&topology.stores[i].name);
                let topic = Topology::changelog_topic(cluster_id, &name);
                (name, topic)
            })
            .collect();
        let globals = GlobalStores::open(state_dir, &global_specs, &resources)?;
        let global_index = topology
            .globals
            .iter()
            .enumerate()
            .map(|(pos, &i)| (i, pos))
            .collect();
        let mut tasks = BTreeMap::new();
        for (index, sub) in topology.subtopologies.iter().enumerate() {
            for partition in 0..sub.partitions() {
                let id = format!("{}-{partition}", sub.name);
                let names = topology.task_store_names(sub);
                let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let db = TaskDb::open(&state_dir.join(&id), &name_refs, &resources)?;
                let store_ids = topology.store_ids(sub, &db);
                let timer_store = db
                    .store_id(&sub.timer_store_name())
                    .ok_or_else(|| RuntimeError::Internal("timer store missing".to_owned()))?;
                let mut core = TaskCore::new(TaskCoreParts {
                    partition,
                    db,
                    processor: (sub.factory)(partition),
                    store_ids,
                    timer_store,
                    globals: globals.clone(),
                    dead_letter_topic: format!("{cluster_id}_dead-letter"),
                    timer_topic: Arc::from(sub.sources[0].topic.as_str()),
                    metrics: TaskMetrics::new(&id),
                });
                core.init().map_err(|e| RuntimeError::Processing {
                    task: id.clone(),
                    reason: e.to_string(),
                })?;
                tasks.insert((index, partition), core);
            }
        }
        Ok(Self {
            topology,
            cluster_id: cluster_id.to_owned(),
            tasks,
            globals,
            global_index,
            next_offsets: BTreeMap::new(),
            outputs: Vec::new(),
            fed_back: 0,
            changelog: Vec::new(),
            global_positions: 0,
            wall_clock_ms: 0,
            _state_dir: state_dir.to_owned(),
        })
    }

    /// Processes one record on `topic`/`partition` and commits it, then processes any
    /// records it (or timers) sent to source topics. Returns what happened to it.
    pub fn pipe(
        &mut self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
        timestamp_ms: i64,
    ) -> Result<RecordOutcome, RuntimeError> {
        let record = OutputRecord {
            topic: topic.to_owned(),
            partition,
            key: key.map(Bytes::copy_from_slice),
            value: value.map(Bytes::copy_from_slice),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Bytes::copy_from_slice(v)))
                .collect(),
        };
        let outcome = self.process_one(&record, timestamp_ms)?;
        self.drain_feedback()?;
        Ok(outcome)
    }

    /// Moves the simulated wall clock to `now_ms` and fires every due timer; their
    /// records are processed like any input.
    pub fn advance_wall_clock(&mut self, now_ms: i64) -> Result<(), RuntimeError> {
        self.wall_clock_ms = self.wall_clock_ms.max(now_ms);
        let keys: Vec<(usize, i32)> = self.tasks.keys().copied().collect();
        for key in keys {
            let now_ms = self.wall_clock_ms;
            let fired =
                self.task(key)?
                    .fire_due_timers(now_ms)
                    .map_err(|e| RuntimeError::Processing {
                        task: format!("{key:?}"),
                        reason: e.to_string(),
                    })?;
            if fired > 0 {
                self.commit(key)?;
            }
        }
        self.drain_feedback()
    }

    /// Every committed output, in order, dead letters included.
    pub fn outputs(&self) -> &[StampedOutput] {
        &self.outputs
    }

    /// Committed outputs to one topic, in order.
    pub fn outputs_to(&self, topic: &str) -> Vec<&StampedOutput> {
        self.outputs
            .iter()
            .filter(|o| o.record.topic == topic)
            .collect()
    }

    /// Takes the outputs seen so far.
    pub fn take_outputs(&mut self) -> Vec<StampedOutput> {
        self.fed_back = 0;
        std::mem::take(&mut self.outputs)
    }

    /// Every record written to a store's changelog, in order.
    pub fn changelog(&self, store: &str) -> Vec<&ChangelogRecord> {
        let topic = Topology::changelog_topic(&self.cluster_id, store);
        self.changelog.iter().filter(|c| c.topic == topic).collect()
    }

    /// Every entry of a store on one partition, in key order.
    pub fn store_contents<V: Message + Default>(
        &self,
        store: &StoreHandle<V>,
        partition: i32,
    ) -> Result<Vec<(Bytes, V)>, RuntimeError> {
        let owner = self.topology.stores[store.index].owner.ok_or_else(|| {
            RuntimeError::Internal(format!("store {} has no owner", store.name()))
        })?;
        let core = self.tasks.get(&(owner, partition)).ok_or_else(|| {
            RuntimeError::Internal(format!(
                "no partition {partition} for store {}",
                store.name()
            ))
        })?;
        let id = core
            .db
            .store_id(store.name())
            .ok_or_else(|| RuntimeError::Internal(format!("store {} missing", store.name())))?;
        core.db
            .scan_all(id)?
            .into_iter()
            .map(|(key, bytes)| {
                V::decode(bytes.as_ref()).map(|v| (key, v)).map_err(|e| {
                    RuntimeError::Internal(format!(
                        "store {} value does not decode: {e}",
                        store.name()
                    ))
                })
            })
            .collect()
    }

    fn process_one(
        &mut self,
        record: &OutputRecord,
        timestamp_ms: i64,
    ) -> Result<RecordOutcome, RuntimeError> {
        let key = self.task_for(&record.topic, record.partition)?;
        let offset = self
            .next_offsets
            .entry((record.topic.clone(), record.partition))
            .or_insert(0);
        let input = InputRecord {
            topic: Arc::from(record.topic.as_str()),
            partition: record.partition,
            offset: *offset,
            timestamp_ms,
            key: record.key.clone(),
            value: record.value.clone(),
            headers: record.headers.clone(),
        };
        *offset += 1;
        let outcome = self
            .task(key)?
            .process(&input)
            .map_err(|e| RuntimeError::Processing {
                task: format!("{}-{}", self.topology.subtopologies[key.0].name, key.1),
                reason: e.to_string(),
            })?;
        self.commit(key)?;
        Ok(outcome)
    }

    /// The driver's commit: outputs and changelog records are captured, then the
    /// batch is written to RocksDB and global replicas see the owner's changes.
    fn commit(&mut self, key: (usize, i32)) -> Result<(), RuntimeError> {
        let cluster_id = self.cluster_id.clone();
        let core = self.task(key)?;
        let batch = core.take_batch();
        let mut changes: Vec<(String, Bytes, Option<Bytes>)> = Vec::new();
        for (store, entries) in core.db.freeze_pending() {
            let name = core.store_name(store);
            changes.extend(entries.into_iter().map(|(k, v)| (name.to_owned(), k, v)));
        }
        core.db.commit_oldest_frozen(&Checkpoint::default())?;
        self.outputs.extend(batch.outputs);
        let mut global_changes: BTreeMap<usize, Vec<(Bytes, Option<Bytes>)>> = BTreeMap::new();
        for (name, k, v) in changes {
            self.changelog.push(ChangelogRecord {
                topic: Topology::changelog_topic(&cluster_id, &name),
                partition: key.1,
                key: k.clone(),
                value: v.clone(),
            });
            if let Some(index) = self.topology.stores.iter().position(|s| *s.name == *name)
                && let Some(&position) = self.global_index.get(&index)
            {
                global_changes.entry(position).or_default().push((k, v));
            }
        }
        for (position, changes) in global_changes {
            self.global_positions += 1;
            let replica = &self.globals.replicas()[position];
            GlobalStores::apply(replica, changes, self.global_positions)?;
        }
        Ok(())
    }

    /// Processes outputs addressed to source topics, as the broker would deliver them.
    fn drain_feedback(&mut self) -> Result<(), RuntimeError> {
        let mut queue: VecDeque<StampedOutput> = VecDeque::new();
        let mut fed = 0;
        loop {
            for output in &self.outputs[self.fed_back..] {
                if self.is_source(&output.record.topic) {
                    queue.push_back(output.clone());
                }
            }
            self.fed_back = self.outputs.len();
            let Some(next) = queue.pop_front() else {
                return Ok(());
            };
            fed += 1;
            if fed > MAX_FEEDBACK {
                return Err(RuntimeError::Internal(format!(
                    "more than {MAX_FEEDBACK} records fed back to source topics; a processor loops"
                )));
            }
            self.process_one(&next.record, next.timestamp_ms)?;
        }
    }

    fn is_source(&self, topic: &str) -> bool {
        self.topology
            .subtopologies
            .iter()
            .any(|s| s.sources.iter().any(|src| src.topic == topic))
    }

    fn task_for(&self, topic: &str, partition: i32) -> Result<(usize, i32), RuntimeError> {
        let index = self
            .topology
            .subtopologies
            .iter()
            .position(|s| s.sources.iter().any(|src| src.topic == topic))
            .ok_or_else(|| {
                RuntimeError::Internal(format!("topic {topic} is not a source of this topology"))
            })?;
        if partition < 0 || partition >= self.topology.subtopologies[index].partitions() {
            return Err(RuntimeError::Internal(format!(
                "topic {topic} has no partition {partition}"
            )));
        }
        Ok((index, partition))
    }

    fn task(&mut self, key: (usize, i32)) -> Result<&mut TaskCore, RuntimeError> {
        self.tasks
            .get_mut(&key)
            .ok_or_else(|| RuntimeError::Internal(format!("no task {key:?}")))
    }
}
