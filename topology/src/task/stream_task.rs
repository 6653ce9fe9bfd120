//! A running task: one partition of a sub-topology's sources, its RocksDB store and its
//! changelog partitions. It restores, then loops: take the records its fetch loops read
//! ahead ([`crate::task::fetcher`]), process them into a batch, and commit the batch by
//! the protocol in [`StreamTask::commit`] once it is caught up with its input, full, or
//! old enough, parking the outputs of destinations that do not exist
//! ([`crate::task::parked`]). A batch's changelog writes go on behind the task
//! ([`crate::task::changelog_writer`]) while it processes the next batch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_state::{Checkpoint, StateResources, StoreId, TaskDb};

use crate::blocking;
use crate::changelog::BatchId;
use crate::config::RuntimeConfig;
use crate::error::RuntimeError;
use crate::global::GlobalStores;
use crate::kafka::{KafkaClient, KafkaError, RecordAndOffset, TopicPartition};
use crate::metrics::{StoreSizeSampler, TaskMetrics};
use crate::processor::{InputRecord, ProcessingError};
use crate::state_dir;
use crate::task::changelog_writer::{
    self, ChangelogWriter, DurableBatch, FrozenBatch, MAX_BATCHES_IN_FLIGHT, StoreWrites,
};
use crate::task::collector::{Destination, Outgoing, RecordCollector};
use crate::task::commit_retry::CommitRetries;
use crate::task::core::{Batch, StampedOutput, TaskCore, TaskCoreParts};
use crate::task::fetcher::{Fetched, Prefetcher, SourceFetch};
use crate::task::parked::{self, ParkedOutputs, ParkingOutcome};
use crate::task::restore::{self, Restored, StoreChanges};
use crate::topology::{SubTopology, Topology};

/// How long a batch waits for global stores to catch up before going on with a warning.
const GLOBAL_CATCH_UP_WAIT: Duration = Duration::from_secs(30);

/// One source partition being read.
#[derive(Debug)]
struct Source {
    topic: Arc<str>,
    /// Next offset to process (the fetch loop may have read further).
    position: i64,
}

/// What the task loop woke up for.
enum Wake {
    /// Records to process, or `None` when the wait ran out or a stop was asked for.
    Fetched(Option<Fetched>),
    /// The oldest batch handed to the changelog writer is durable (or failed).
    Durable(Result<DurableBatch, RuntimeError>),
}

/// A task with Kafka I/O around its [`TaskCore`].
pub(crate) struct StreamTask {
    id: String,
    config: Arc<RuntimeConfig>,
    core: TaskCore,
    sources: Vec<Source>,
    /// The fetch loops, until [`StreamTask::run`] starts them.
    fetches: Vec<SourceFetch>,
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
    retries: CommitRetries,
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

        let mut db = blocking::run(|| state_dir::open_or_rebuild(&id, &path, &names, resources))?;
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
                db = blocking::run(|| {
                    TaskDb::destroy(&path)?;
                    state_dir::open_or_rebuild(&id, &path, &names, resources)
                })?;
                restore::restore(&id, &mut db, &changelogs, &metrics).await?
            }
            other => other?,
        };

        let store_ids = topology.store_ids(subtopology, &db);
        let mut sources = Vec::new();
        let mut fetches = Vec::new();
        for source in &subtopology.sources {
            let handle = client.partition(&source.topic, partition).await?;
            let position = match restored.next_offsets.get(&source.topic) {
                Some(&offset) => offset,
                None => handle.earliest_offset().await?,
            };
            let topic: Arc<str> = Arc::from(source.topic.as_str());
            fetches.push(SourceFetch {
                topic: Arc::clone(&topic),
                handle,
                position,
                max_wait: config.fetch_max_wait,
                lag: metrics.records_lag(&source.topic, partition),
                retries: metrics.kafka_retries("fetch input"),
            });
            sources.push(Source { topic, position });
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
        let retries = CommitRetries {
            task: id.clone(),
            metrics: metrics.clone(),
            stop: stop.clone(),
        };
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
            fetches,
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
            retries,
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
    /// the next start replays nothing. A batch is committed as soon as the task has
    /// processed everything its input held (so a record waits for no timer at low
    /// rates), when it reaches `max_batch_records`, or when it is `commit_interval` old
    /// (which also fires due timers while the input is quiet).
    pub(crate) async fn run(mut self) -> Result<(), RuntimeError> {
        let mut prefetcher = Prefetcher::start(&self.id, std::mem::take(&mut self.fetches));
        let mut writer = ChangelogWriter::start(self.retries.clone());
        let mut batch_started = Instant::now();
        // Fetched records a full batch left for the next one.
        let mut unprocessed: Option<Fetched> = None;
        loop {
            while let Some(durable) = writer.try_durable() {
                self.finish_commit(durable?)?;
            }
            // A dropped runtime counts as a stop request.
            if *self.stop.borrow() || self.stop.has_changed().is_err() {
                self.commit(&mut writer).await?;
                self.finish_commits_until(&mut writer, 0).await?;
                blocking::run(|| self.core.db.flush())?;
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
            let wake = match unprocessed.take() {
                Some(rest) => Wake::Fetched(Some(rest)),
                None => tokio::select! {
                    durable = writer.durable() => Wake::Durable(durable),
                    fetched = prefetcher.next(wait) => Wake::Fetched(fetched),
                    _ = self.stop.changed() => Wake::Fetched(None),
                },
            };
            let fetched = match wake {
                Wake::Fetched(fetched) => fetched,
                Wake::Durable(durable) => {
                    self.finish_commit(durable?)?;
                    continue;
                }
            };
            let mut caught_up = false;
            if let Some(mut fetched) = fetched {
                if self.core.batch.records == 0 {
                    self.catch_up_globals().await;
                }
                // One fetch may hold more records than a batch takes (a broker may
                // answer with more than the bytes asked for): the rest waits for the
                // next batch, so a batch's memory stays bounded.
                let room = self
                    .config
                    .max_batch_records
                    .saturating_sub(self.core.batch.records);
                let room = usize::try_from(room).unwrap_or(usize::MAX);
                let source = fetched.source;
                for record in fetched.records.by_ref().take(room) {
                    let input = to_input(&self.sources[source].topic, self.core.partition, record);
                    self.sources[source].position = input.offset + 1;
                    if let Err(error) = self.core.process(&input) {
                        self.core.db.discard_pending();
                        return Err(fatal(&self.id, &error));
                    }
                }
                if fetched.records.len() > 0 {
                    unprocessed = Some(fetched);
                } else {
                    caught_up = self.sources[source].position >= fetched.high_watermark
                        && !prefetcher.has_waiting();
                }
            }
            if caught_up
                || self.core.batch.records >= self.config.max_batch_records
                || Instant::now() >= deadline
            {
                self.commit(&mut writer).await?;
                self.store_sizes.sample_if_due(&self.core.db);
                batch_started = Instant::now();
            }
        }
    }

    /// Commits the open batch, in three steps. Their order is the invariant that makes
    /// state exactly-once without broker transactions (ARCHITECTURE.md):
    /// 1. here: produce every output record and await the acknowledgements, except those
    ///    of a destination that does not exist (or has parked records): they are written
    ///    to the parked store as changes of this batch; a parked destination that
    ///    exists again is produced first, and its parked records deleted in this batch.
    ///    Then the batch's changes are frozen and the batch handed to the changelog
    ///    writer;
    /// 2. the writer, while the task processes on: produce the changelog records
    ///    (changed keys, tombstones), await them, then a commit marker per changed store
    ///    carrying the next input offsets (followed, in the same request, by the next
    ///    batch's changelog records when that batch is waiting), await those;
    /// 3. [`finish_commit`](Self::finish_commit), once the writer reports the batch
    ///    durable: write its changes, next input offsets and changelog positions to
    ///    RocksDB in one WriteBatch.
    ///
    /// An input offset counts as processed only once step 3 has run for it.
    async fn commit(&mut self, writer: &mut ChangelogWriter) -> Result<(), RuntimeError> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        self.core
            .fire_due_timers(now_ms)
            .map_err(|e| fatal(&self.id, &e))?;
        let mut batch = self.core.take_batch();
        let retry_parked = self.parked.retry_due(Instant::now());
        if batch.is_empty() && !retry_parked {
            return Ok(());
        }
        let started = Instant::now();
        self.finish_commits_until(writer, MAX_BATCHES_IN_FLIGHT - 1)
            .await?;
        match self
            .deliver_and_freeze(&mut batch, retry_parked, started)
            .await
        {
            Ok(frozen) => writer.submit(frozen).await,
            Err(error) => {
                self.core.db.discard_pending();
                Err(error)
            }
        }
    }

    /// Step 1 of a commit: delivers the outputs, applies what that did to the parked
    /// destinations, freezes the batch's changes (the parked store's included) and
    /// returns the batch for the changelog writer.
    async fn deliver_and_freeze(
        &mut self,
        batch: &mut Batch,
        retry_parked: bool,
        started: Instant,
    ) -> Result<FrozenBatch, RuntimeError> {
        let id = (self.epoch, self.batch_number);
        self.batch_number += 1;
        let outputs = group_outputs(std::mem::take(&mut batch.outputs));
        let outcome = self.deliver(outputs, id, retry_parked).await?;
        // Later batches park behind what this one parked, from now on: if this batch
        // never becomes durable, the task stops and reloads its parked store.
        if !outcome.is_empty() {
            self.parked.apply(outcome);
        }
        // The batch's changes: its records', its timers' and the parked store's.
        let stores = self
            .core
            .db
            .freeze_pending()
            .into_iter()
            .map(|(store, changes)| StoreWrites {
                store,
                changelog: self.changelogs[&store].clone(),
                changes,
            })
            .collect();
        let next_offsets = self.next_offsets(&batch.next_offsets);
        Ok(FrozenBatch {
            id,
            stores,
            next_offsets,
            timestamp_ms: batch.last_timestamp_ms,
            started,
            records: batch.records,
        })
    }

    /// Waits for the writer's oldest batches to become durable and finishes them until
    /// at most `in_flight` are left.
    async fn finish_commits_until(
        &mut self,
        writer: &mut ChangelogWriter,
        in_flight: usize,
    ) -> Result<(), RuntimeError> {
        while writer.in_flight() > in_flight {
            let durable = writer.durable().await?;
            self.finish_commit(durable)?;
        }
        Ok(())
    }

    /// Step 3 of a commit: the oldest frozen batch is durable in its changelogs, so
    /// RocksDB gets its changes with the checkpoint that says so.
    fn finish_commit(&mut self, durable: DurableBatch) -> Result<(), RuntimeError> {
        self.advance_checkpoint(&durable);
        let bytes = self.core.db.commit_oldest_frozen(&self.checkpoint)?;
        self.core.metrics.store_bytes_written.increment(bytes);
        self.core
            .metrics
            .commit_latency
            .record(durable.started.elapsed().as_secs_f64());
        self.core
            .metrics
            .commit_batch_records
            .record(durable.records as f64);
        Ok(())
    }

    /// Moves the checkpoint to a durable batch: its next input offsets, and the
    /// changelog positions after its markers.
    fn advance_checkpoint(&mut self, durable: &DurableBatch) {
        for (topic, offset) in &durable.next_offsets {
            self.checkpoint.set(restore::input_position(topic), *offset);
        }
        for (store, position) in &durable.changelog_positions {
            let name = restore::changelog_position(self.core.store_name(*store));
            self.checkpoint.set(name, *position);
        }
    }

    /// The next input offset per source once the batch commits: what the batch
    /// processed, else where the source stands.
    fn next_offsets(&self, processed: &BTreeMap<Arc<str>, i64>) -> BTreeMap<String, i64> {
        let mut next_offsets: BTreeMap<String, i64> = self
            .sources
            .iter()
            .map(|s| (s.topic.to_string(), s.position))
            .collect();
        for (topic, &offset) in processed {
            next_offsets.insert(topic.to_string(), offset);
        }
        next_offsets
    }

    /// Step 1 of a commit: produces the batch's outputs and, when `retry_parked`, the
    /// records of parked destinations that exist again (before their new records). The
    /// records of a destination that does not exist, or is still parked, are parked
    /// behind the older ones. The parked store's changes go to the batch's open layer;
    /// returns what changed for the parked destinations.
    async fn deliver(
        &mut self,
        outputs: BTreeMap<Destination, Vec<Outgoing>>,
        batch_id: BatchId,
        retry_parked: bool,
    ) -> Result<ParkingOutcome, RuntimeError> {
        let mut sends: BTreeMap<Destination, Vec<Outgoing>> = BTreeMap::new();
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
        let mut to_park: BTreeMap<Destination, (Vec<Outgoing>, Option<String>)> = BTreeMap::new();
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
        state.finish()?;
        Ok(outcome)
    }

    /// Produces every group, each destination on its own: a destination that does not
    /// exist, or a draining one that fails for any reason, is settled with its error
    /// (its records get parked); any other failure is retried until it succeeds, as
    /// every commit step is.
    async fn send_outputs(
        &mut self,
        groups: &BTreeMap<Destination, Vec<Outgoing>>,
        draining: &BTreeMap<Destination, Vec<Bytes>>,
    ) -> Result<BTreeMap<Destination, Result<(), KafkaError>>, RuntimeError> {
        let mut pending: BTreeSet<&Destination> = groups.keys().collect();
        let mut settled = BTreeMap::new();
        let mut retry = self.retries.step("produce outputs");
        while !pending.is_empty() {
            let attempt: Vec<(&Destination, &[Outgoing])> = groups
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
            if let Some(error) = failure {
                retry.failed(&error).await?;
            }
        }
        Ok(settled)
    }

    /// After a restore found cut-short batches: writes the committed values of the
    /// abandoned keys back, then a marker of the new epoch to every store, and commits.
    async fn repair(&mut self, mut compensation: StoreChanges) -> Result<(), RuntimeError> {
        let keys: usize = compensation.values().map(Vec::len).sum();
        tracing::warn!(task = %self.id, keys, epoch = self.epoch, "repairing changelog after an interrupted commit");
        let id = (self.epoch, 0);
        let now_ms = chrono::Utc::now().timestamp_millis();
        // Every store gets a marker of the new epoch.
        let repair = FrozenBatch {
            id,
            stores: self
                .changelogs
                .iter()
                .map(|(store, changelog)| StoreWrites {
                    store: *store,
                    changelog: changelog.clone(),
                    changes: compensation.remove(store).unwrap_or_default(),
                })
                .collect(),
            next_offsets: self.next_offsets(&BTreeMap::new()),
            timestamp_ms: now_ms,
            started: Instant::now(),
            records: 0,
        };
        let durable = changelog_writer::write_batch(&self.retries, repair).await?;
        self.advance_checkpoint(&durable);
        blocking::run(|| self.core.db.persist_checkpoint(&self.checkpoint))?;
        self.batch_number = 1;
        Ok(())
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

/// A batch's outputs grouped by destination, in batch order.
fn group_outputs(outputs: Vec<StampedOutput>) -> BTreeMap<Destination, Vec<Outgoing>> {
    let mut grouped: BTreeMap<Destination, Vec<Outgoing>> = BTreeMap::new();
    for StampedOutput {
        record,
        timestamp_ms,
    } in outputs
    {
        grouped
            .entry((record.topic, record.partition))
            .or_default()
            .push(Outgoing {
                key: record.key,
                value: record.value,
                headers: record.headers,
                timestamp_ms,
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
