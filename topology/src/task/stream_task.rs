//! A running task: one partition of a sub-topology's sources, its RocksDB store and its
//! changelog partitions. It restores, then loops: fetch, process into a batch, and
//! commit the batch by the protocol in [`StreamTask::commit`], parking the outputs of
//! destinations that do not exist ([`crate::task::parked`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_proto::CommitMarker;
use weir_state::{Checkpoint, StateResources, StoreId, TaskDb};

use crate::changelog::{self, BatchId};
use crate::config::RuntimeConfig;
use crate::error::RuntimeError;
use crate::global::GlobalStores;
use crate::kafka::{KafkaClient, KafkaError, Record, RecordAndOffset, TopicPartition};
use crate::metrics::{StoreSizeSampler, TaskMetrics};
use crate::processor::{InputRecord, ProcessingError};
use crate::state_dir;
use crate::task::collector::{Destination, RecordCollector};
use crate::task::core::{Batch, StampedOutput, TaskCore, TaskCoreParts};
use crate::task::parked::{self, ParkedOutputs, ParkingOutcome};
use crate::task::restore::{self, Restored, StoreChanges};
use crate::topology::{SubTopology, Topology};

/// Bytes per input fetch.
const FETCH_BYTES: i32 = 4 * 1024 * 1024;
/// How long a commit keeps retrying an unreachable broker once shutdown is requested.
const SHUTDOWN_COMMIT_GRACE: Duration = Duration::from_secs(10);
/// Longest pause between retries of a failed Kafka operation.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a batch waits for global stores to catch up before going on with a warning.
const GLOBAL_CATCH_UP_WAIT: Duration = Duration::from_secs(30);

/// One source partition being read.
#[derive(Debug)]
struct Source {
    topic: Arc<str>,
    handle: TopicPartition,
    position: i64,
    lag: metrics::Gauge,
}

/// A task with Kafka I/O around its [`TaskCore`].
pub(crate) struct StreamTask {
    id: String,
    config: Arc<RuntimeConfig>,
    core: TaskCore,
    sources: Vec<Source>,
    changelogs: BTreeMap<StoreId, TopicPartition>,
    checkpoint: Checkpoint,
    collector: RecordCollector,
    client: KafkaClient,
    globals: GlobalStores,
    /// Handles on the global stores' changelogs, opened on first use and kept, so a
    /// batch's catch-up costs one fetch, not a metadata lookup.
    global_changelogs: Vec<Option<TopicPartition>>,
    /// Destinations that do not exist and the records waiting for them.
    parked: ParkedOutputs,
    epoch: u64,
    batch_number: u64,
    stop: tokio::sync::watch::Receiver<bool>,
    store_sizes: StoreSizeSampler,
}

impl StreamTask {
    /// Opens the task's state (rebuilding an unreadable directory), restores it from its
    /// changelogs, and repairs any batch a crash cut short.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn open(
        config: Arc<RuntimeConfig>,
        topology: &Topology,
        subtopology: &SubTopology,
        partition: i32,
        client: KafkaClient,
        globals: GlobalStores,
        resources: &StateResources,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Self, RuntimeError> {
        let id = format!("{}-{partition}", subtopology.name);
        let path = config.state_dir.join(&id);
        let store_names = topology.task_store_names(subtopology);
        let names: Vec<&str> = store_names.iter().map(String::as_str).collect();
        let metrics = TaskMetrics::new(&id);

        let mut db = state_dir::open_or_rebuild(&id, &path, &names, resources)?;
        let mut changelogs = BTreeMap::new();
        for name in &store_names {
            let store = store_id(&db, name)?;
            let topic = Topology::changelog_topic(&config.cluster_id, name);
            changelogs.insert(store, client.partition(&topic, partition).await?);
        }
        let restored = match restore::restore(&id, &mut db, &changelogs, &metrics).await {
            Err(error @ RuntimeError::CheckpointPastChangelog { .. }) => {
                tracing::warn!(task = %id, %error, "discarding local state and restoring from the changelog");
                drop(db);
                TaskDb::destroy(&path)?;
                db = state_dir::open_or_rebuild(&id, &path, &names, resources)?;
                restore::restore(&id, &mut db, &changelogs, &metrics).await?
            }
            other => other?,
        };

        let store_ids = topology.store_ids(subtopology, &db);
        let mut sources = Vec::new();
        for source in &subtopology.sources {
            let handle = client.partition(&source.topic, partition).await?;
            let position = match restored.next_offsets.get(&source.topic) {
                Some(&offset) => offset,
                None => handle.earliest_offset().await?,
            };
            sources.push(Source {
                topic: Arc::from(source.topic.as_str()),
                lag: metrics.records_lag(&source.topic, partition),
                handle,
                position,
            });
        }
        let timer_topic = Arc::clone(&sources[0].topic);
        let timer_store = store_id(&db, &subtopology.timer_store_name())?;
        let parked_store = store_id(&db, &subtopology.parked_store_name())?;
        let parked = ParkedOutputs::load(&id, &db, parked_store, &metrics)?;
        let Restored {
            checkpoint,
            epoch,
            compensation,
            records: restored_records,
            ..
        } = restored;
        let store_sizes = StoreSizeSampler::new(&id, &db);
        let core = TaskCore::new(TaskCoreParts {
            partition,
            db,
            processor: (subtopology.factory)(partition),
            store_ids,
            timer_store,
            globals: globals.clone(),
            dead_letter_topic: config.dead_letter_topic(),
            timer_topic,
            metrics,
        });
        let mut task = Self {
            id,
            config,
            core,
            sources,
            changelogs,
            checkpoint,
            collector: RecordCollector::new(client.clone()),
            client,
            global_changelogs: vec![None; globals.replicas().len()],
            globals,
            parked,
            epoch,
            batch_number: 0,
            stop,
            store_sizes,
        };
        if let Some(compensation) = compensation {
            task.repair(compensation).await?;
        }
        task.core.init().map_err(|error| fatal(&task.id, &error))?;
        task.store_sizes.sample_if_due(&task.core.db);
        tracing::info!(task = %task.id, epoch, restored_records, "task ready");
        Ok(task)
    }

    /// A read handle on the task's committed state, valid until the task closes.
    pub(crate) fn reader(&self) -> weir_state::TaskDbReader {
        self.core.db.reader()
    }

    /// Processes until asked to stop, then commits what is in flight and flushes, so
    /// the next start replays nothing.
    pub(crate) async fn run(mut self) -> Result<(), RuntimeError> {
        let mut batch_started = Instant::now();
        let mut next_source = 0;
        loop {
            // A dropped runtime counts as a stop request.
            if *self.stop.borrow() || self.stop.has_changed().is_err() {
                self.commit().await?;
                self.core.db.flush()?;
                tracing::info!(task = %self.id, "task stopped cleanly");
                return Ok(());
            }
            // While outputs are parked, commit at least as often as they are retried.
            let interval = if self.parked.is_empty() {
                self.config.commit_interval
            } else {
                self.config.commit_interval.min(parked::RETRY_INTERVAL)
            };
            let deadline = batch_started + interval;
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            let source = next_source % self.sources.len();
            next_source += 1;
            let records = self.fetch(source, wait).await;
            if !records.is_empty() {
                if self.core.batch.records == 0 {
                    self.catch_up_globals().await;
                }
                for record in records {
                    let input = to_input(&self.sources[source].topic, self.core.partition, record);
                    self.sources[source].position = input.offset + 1;
                    if let Err(error) = self.core.process(&input) {
                        self.core.db.discard_pending();
                        return Err(fatal(&self.id, &error));
                    }
                }
            }
            if self.core.batch.records >= self.config.max_batch_records
                || Instant::now() >= deadline
            {
                self.commit().await?;
                self.store_sizes.sample_if_due(&self.core.db);
                batch_started = Instant::now();
            }
        }
    }

    /// Commits the open batch. The order is the invariant that makes state exactly-once
    /// without broker transactions (ARCHITECTURE.md):
    /// 1. produce every output record and await the acknowledgements, except those of
    ///    a destination that does not exist (or has parked records): they are written
    ///    to the parked store as changes of this batch; a parked destination that
    ///    exists again is produced first, and its parked records deleted in this batch;
    /// 2. produce the changelog records (changed keys, tombstones), await them, then a
    ///    commit marker per changed store carrying the next input offsets, await those;
    /// 3. write the state changes, next input offsets and changelog positions to
    ///    RocksDB in one WriteBatch.
    ///
    /// An input offset counts as processed only once step 3 has run for it.
    async fn commit(&mut self) -> Result<(), RuntimeError> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        self.core
            .fire_due_timers(now_ms)
            .map_err(|e| fatal(&self.id, &e))?;
        let batch = self.core.take_batch();
        let retry_parked = self.parked.retry_due(Instant::now());
        if batch.is_empty() && !retry_parked {
            return Ok(());
        }
        let started = Instant::now();
        let outcome = match self.commit_batch(&batch, retry_parked).await {
            Ok(outcome) => outcome,
            Err(error) => {
                self.core.db.discard_pending();
                return Err(error);
            }
        };
        if !outcome.is_empty() {
            self.parked.apply(outcome);
        }
        self.core
            .metrics
            .commit_latency
            .record(started.elapsed().as_secs_f64());
        self.core
            .metrics
            .commit_batch_records
            .record(batch.records as f64);
        Ok(())
    }

    async fn commit_batch(
        &mut self,
        batch: &Batch,
        retry_parked: bool,
    ) -> Result<ParkingOutcome, RuntimeError> {
        let batch_id = (self.epoch, self.batch_number);

        // 1. Outputs (and the parked store's changes).
        let outputs = group_outputs(&batch.outputs);
        let (outcome, parked_changes) = self.deliver(outputs, batch_id, retry_parked).await?;

        // 2. Changelog data, then markers.
        let mut next_offsets: BTreeMap<String, i64> = self
            .sources
            .iter()
            .map(|s| (s.topic.to_string(), s.position))
            .collect();
        for (topic, &offset) in &batch.next_offsets {
            next_offsets.insert(topic.to_string(), offset);
        }
        let mut by_store = StoreChanges::new();
        for ((store, key), value) in &batch.changes {
            by_store
                .entry(*store)
                .or_default()
                .push((key.clone(), value.clone()));
        }
        for (key, value) in parked_changes {
            by_store
                .entry(self.parked.store())
                .or_default()
                .push((key, value));
        }
        self.write_changelog(by_store, batch_id, &next_offsets, batch.last_timestamp_ms)
            .await?;

        // 3. RocksDB: state, input offsets and changelog positions together.
        for (topic, offset) in &next_offsets {
            self.checkpoint.set(restore::input_position(topic), *offset);
        }
        let bytes = self.core.db.commit_pending(&self.checkpoint)?;
        self.core.metrics.store_bytes_written.increment(bytes);
        self.batch_number += 1;
        Ok(outcome)
    }

    /// Step 1 of a commit: produces the batch's outputs and, when `retry_parked`, the
    /// records of parked destinations that exist again (before their new records). The
    /// records of a destination that does not exist, or is still parked, are parked
    /// behind the older ones. Returns what changed for the parked destinations and the
    /// parked store's changes, which the caller commits with the batch.
    async fn deliver(
        &mut self,
        outputs: BTreeMap<Destination, Vec<Record>>,
        batch_id: BatchId,
        retry_parked: bool,
    ) -> Result<(ParkingOutcome, Vec<(Bytes, Option<Bytes>)>), RuntimeError> {
        let mut sends: BTreeMap<Destination, Vec<Record>> = BTreeMap::new();
        // Keys of the parked records at the front of `sends`, per draining destination.
        let mut draining: BTreeMap<Destination, Vec<Bytes>> = BTreeMap::new();
        if retry_parked {
            let now = Instant::now();
            self.parked.retried(now);
            for destination in self.parked.destinations() {
                // Reading the parked records is worth it only once the partition exists.
                if let Err(error) = self.collector.handle(&destination).await {
                    self.parked
                        .still_missing(&destination, &error.to_string(), now);
                    continue;
                }
                let (keys, records) = self
                    .parked
                    .read(&self.core.db, &destination)?
                    .into_iter()
                    .unzip();
                draining.insert(destination.clone(), keys);
                sends.insert(destination, records);
            }
        }
        let mut to_park: BTreeMap<Destination, (Vec<Record>, Option<String>)> = BTreeMap::new();
        for (destination, records) in outputs {
            if self.parked.contains(&destination) && !draining.contains_key(&destination) {
                to_park.insert(destination, (records, None));
            } else {
                sends.entry(destination).or_default().extend(records);
            }
        }

        let results = self.send_outputs(&sends, &draining).await?;
        let mut outcome = ParkingOutcome::default();
        for (destination, result) in results {
            let Some(mut records) = sends.remove(&destination) else {
                continue;
            };
            let parked_before = draining.get(&destination).map_or(0, Vec::len);
            match result {
                Ok(()) => {
                    self.core
                        .metrics
                        .output_records(&destination.0)
                        .increment(records.len() as u64);
                    if draining.contains_key(&destination) {
                        outcome.drained.insert(destination, parked_before as u64);
                    }
                }
                Err(error) => {
                    // Parked records stay; this batch's records queue up behind them.
                    draining.remove(&destination);
                    self.collector.forget(&destination);
                    let new = records.split_off(parked_before.min(records.len()));
                    if !new.is_empty() {
                        let first =
                            (!self.parked.contains(&destination)).then(|| error.to_string());
                        to_park.insert(destination, (new, first));
                    }
                }
            }
        }

        let store = self.parked.store();
        let mut state = self.core.db.record();
        for keys in draining.values() {
            for key in keys {
                state.delete(store, key);
            }
        }
        for (destination, (records, first_error)) in to_park {
            parked::park(&mut state, store, &destination, batch_id, &records);
            outcome
                .parked
                .insert(destination, (records.len() as u64, first_error));
        }
        let changes = state
            .finish()?
            .into_vec()
            .into_iter()
            .map(|change| (change.key, change.value))
            .collect();
        Ok((outcome, changes))
    }

    /// Produces every group, each destination on its own: a destination that does not
    /// exist, or a draining one that fails for any reason, is settled with its error
    /// (its records get parked); any other failure is retried until it succeeds, as
    /// every commit step is.
    async fn send_outputs(
        &mut self,
        groups: &BTreeMap<Destination, Vec<Record>>,
        draining: &BTreeMap<Destination, Vec<Bytes>>,
    ) -> Result<BTreeMap<Destination, Result<(), KafkaError>>, RuntimeError> {
        let mut pending: BTreeSet<&Destination> = groups.keys().collect();
        let mut settled = BTreeMap::new();
        let mut backoff = Duration::from_millis(100);
        let mut give_up_at: Option<Instant> = None;
        while !pending.is_empty() {
            let attempt: Vec<(&Destination, &[Record])> = groups
                .iter()
                .filter(|(d, _)| pending.contains(d))
                .map(|(d, records)| (d, records.as_slice()))
                .collect();
            let results = self.collector.send_each(attempt).await;
            let mut failure = None;
            for (destination, result) in results {
                match result {
                    Ok(_) => {
                        pending.remove(&destination);
                        settled.insert(destination, Ok(()));
                    }
                    Err(error)
                        if error.is_unknown_topic_or_partition()
                            || draining.contains_key(&destination) =>
                    {
                        pending.remove(&destination);
                        settled.insert(destination, Err(error));
                    }
                    Err(error) => failure = Some(error),
                }
            }
            let Some(error) = failure else { continue };
            self.core
                .metrics
                .kafka_retries("produce outputs")
                .increment(1);
            if *self.stop.borrow() {
                let limit =
                    *give_up_at.get_or_insert_with(|| Instant::now() + SHUTDOWN_COMMIT_GRACE);
                if Instant::now() >= limit {
                    return Err(RuntimeError::ShutdownCommit {
                        task: self.id.clone(),
                        reason: error.to_string(),
                    });
                }
            }
            tracing::warn!(task = %self.id, %error, retry_in_ms = backoff.as_millis() as u64, "produce outputs failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        Ok(settled)
    }

    /// Writes changed keys per store, then a marker to each of those stores, and moves
    /// the checkpoint's changelog positions past the markers.
    async fn write_changelog(
        &mut self,
        by_store: StoreChanges,
        batch_id: BatchId,
        next_offsets: &BTreeMap<String, i64>,
        timestamp_ms: i64,
    ) -> Result<(), RuntimeError> {
        if by_store.is_empty() {
            return Ok(());
        }
        let mut data: BTreeMap<Destination, Vec<Record>> = BTreeMap::new();
        let mut markers: BTreeMap<Destination, Vec<Record>> = BTreeMap::new();
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
        let mut destinations = BTreeMap::new();
        for (store, changes) in by_store {
            let handle = &self.changelogs[&store];
            let destination = (handle.topic().to_owned(), handle.partition());
            let records = changes
                .into_iter()
                .map(|(key, value)| changelog::data_record(key, value, batch_id, timestamp_ms))
                .collect();
            data.insert(destination.clone(), records);
            markers.insert(
                destination.clone(),
                vec![changelog::marker_record(&marker, timestamp_ms)],
            );
            destinations.insert(destination, store);
        }
        self.send_with_retry("produce changelog", &data).await?;
        let offsets = self
            .send_with_retry("produce commit markers", &markers)
            .await?;
        for (destination, offsets) in offsets {
            if let (Some(store), Some(offset)) = (destinations.get(&destination), offsets.last()) {
                let name = restore::changelog_position(self.core.store_name(*store));
                self.checkpoint.set(name, offset + 1);
            }
        }
        Ok(())
    }

    /// After a restore found cut-short batches: writes the committed values of the
    /// abandoned keys back, then a marker of the new epoch to every store, and commits.
    async fn repair(
        &mut self,
        compensation: BTreeMap<StoreId, Vec<(Bytes, Option<Bytes>)>>,
    ) -> Result<(), RuntimeError> {
        let keys: usize = compensation.values().map(Vec::len).sum();
        tracing::warn!(task = %self.id, keys, epoch = self.epoch, "repairing changelog after an interrupted commit");
        let mut by_store: BTreeMap<StoreId, Vec<(Bytes, Option<Bytes>)>> = self
            .changelogs
            .keys()
            .map(|&store| (store, Vec::new()))
            .collect();
        for (store, changes) in compensation {
            by_store.insert(store, changes);
        }
        let next_offsets: BTreeMap<String, i64> = self
            .sources
            .iter()
            .map(|s| (s.topic.to_string(), s.position))
            .collect();
        let now_ms = chrono::Utc::now().timestamp_millis();
        self.write_changelog(by_store, (self.epoch, 0), &next_offsets, now_ms)
            .await?;
        self.core
            .db
            .apply_restored(std::iter::empty(), &self.checkpoint)?;
        self.core.db.flush()?;
        self.batch_number = 1;
        Ok(())
    }

    async fn send_with_retry(
        &mut self,
        what: &'static str,
        groups: &BTreeMap<Destination, Vec<Record>>,
    ) -> Result<BTreeMap<Destination, Vec<i64>>, RuntimeError> {
        if groups.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut backoff = Duration::from_millis(100);
        let mut give_up_at: Option<Instant> = None;
        loop {
            match self.collector.send(groups).await {
                Ok(offsets) => return Ok(offsets),
                Err(error) => {
                    self.core.metrics.kafka_retries(what).increment(1);
                    if *self.stop.borrow() {
                        let limit = *give_up_at
                            .get_or_insert_with(|| Instant::now() + SHUTDOWN_COMMIT_GRACE);
                        if Instant::now() >= limit {
                            return Err(RuntimeError::ShutdownCommit {
                                task: self.id.clone(),
                                reason: error.to_string(),
                            });
                        }
                    }
                    tracing::warn!(task = %self.id, %error, retry_in_ms = backoff.as_millis() as u64, "{what} failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Fetches the next records of one source, waiting up to `wait`; a Kafka error is
    /// logged, counted and answered with an empty fetch after a pause.
    async fn fetch(&mut self, source: usize, wait: Duration) -> Vec<RecordAndOffset> {
        let position = self.sources[source].position;
        let handle = self.sources[source].handle.clone();
        let fetched = tokio::select! {
            result = handle.fetch(position, FETCH_BYTES, wait) => result,
            _ = self.stop.changed() => return Vec::new(),
        };
        match fetched {
            Ok((records, high_watermark)) if records.is_empty() && position > high_watermark => {
                // A position past the log's end: the topic was deleted and created again,
                // or the broker lost records. Nothing would ever arrive at it, so read the
                // partition again from its first offset rather than stall without a word.
                let topic = Arc::clone(&self.sources[source].topic);
                match handle.earliest_offset().await {
                    Ok(earliest) => {
                        tracing::error!(
                            task = %self.id, %topic, partition = handle.partition(), position,
                            high_watermark, earliest,
                            "input position is past the end of its partition (the topic was \
                             recreated or lost records); reading it again from its first offset"
                        );
                        self.sources[source].position = earliest;
                    }
                    Err(error) => {
                        self.core.metrics.kafka_retries("fetch input").increment(1);
                        tracing::warn!(task = %self.id, %error, "list earliest offset failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                Vec::new()
            }
            Ok((records, high_watermark)) => {
                let source = &self.sources[source];
                let read_to = records.last().map_or(position, |r| r.offset + 1);
                source.lag.set((high_watermark - read_to).max(0) as f64);
                records
                    .into_iter()
                    .filter(|r| r.offset >= position)
                    .collect()
            }
            Err(error) => {
                self.core.metrics.kafka_retries("fetch input").increment(1);
                tracing::warn!(task = %self.id, %error, "fetch failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                Vec::new()
            }
        }
    }

    /// Waits until every global replica has read its changelog up to the high watermark
    /// seen now (the guarantee documented in [`crate::global`]).
    async fn catch_up_globals(&mut self) {
        let globals = self.globals.clone();
        for (index, replica) in globals.replicas().iter().enumerate() {
            let end = match self.global_changelog(index, &replica.changelog_topic).await {
                Ok(handle) => handle.high_watermark().await,
                Err(e) => Err(e),
            };
            match end {
                Ok(end) => {
                    if tokio::time::timeout(GLOBAL_CATCH_UP_WAIT, replica.wait_for(end))
                        .await
                        .is_err()
                    {
                        tracing::warn!(task = %self.id, store = %replica.name, end, "global store is behind its changelog; processing anyway");
                    }
                }
                Err(error) => {
                    tracing::warn!(task = %self.id, store = %replica.name, %error, "cannot read global store changelog end");
                }
            }
        }
    }

    /// The handle on global store `index`'s changelog, opened once.
    async fn global_changelog(
        &mut self,
        index: usize,
        topic: &str,
    ) -> Result<TopicPartition, KafkaError> {
        if let Some(handle) = &self.global_changelogs[index] {
            return Ok(handle.clone());
        }
        let handle = self.client.partition(topic, 0).await?;
        self.global_changelogs[index] = Some(handle.clone());
        Ok(handle)
    }
}

/// A batch's outputs as Kafka records, grouped by destination in batch order.
fn group_outputs(outputs: &[StampedOutput]) -> BTreeMap<Destination, Vec<Record>> {
    let mut grouped: BTreeMap<Destination, Vec<Record>> = BTreeMap::new();
    for output in outputs {
        let record = &output.record;
        grouped
            .entry((record.topic.clone(), record.partition))
            .or_default()
            .push(Record {
                key: record.key.as_ref().map(|k| k.to_vec()),
                value: record.value.as_ref().map(|v| v.to_vec()),
                headers: record
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_vec()))
                    .collect(),
                timestamp: chrono::DateTime::from_timestamp_millis(output.timestamp_ms)
                    .unwrap_or_default(),
            });
    }
    grouped
}

fn store_id(db: &TaskDb, name: &str) -> Result<StoreId, RuntimeError> {
    db.store_id(name)
        .ok_or_else(|| RuntimeError::Internal(format!("store {name} missing from its task db")))
}

fn fatal(task: &str, error: &ProcessingError) -> RuntimeError {
    RuntimeError::Processing {
        task: task.to_owned(),
        reason: error.to_string(),
    }
}

/// An rskafka record as the processor's input.
pub(crate) fn to_input(topic: &Arc<str>, partition: i32, record: RecordAndOffset) -> InputRecord {
    InputRecord {
        topic: Arc::clone(topic),
        partition,
        offset: record.offset,
        timestamp_ms: record.record.timestamp.timestamp_millis(),
        key: record.record.key.map(Bytes::from),
        value: record.record.value.map(Bytes::from),
        headers: record
            .record
            .headers
            .into_iter()
            .map(|(k, v)| (k, Bytes::from(v)))
            .collect(),
    }
}
