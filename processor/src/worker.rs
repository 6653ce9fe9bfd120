//! The task worker library: a program serves one `TaskDef` of one tenant with an async
//! function. It reads the TaskDef's queue, claims each `ScheduledTask` on `core-cmd`,
//! runs the function and reports how it ended, and commits queue offsets only up to the
//! first task not yet reported, so a crash re-delivers every unfinished task.
//!
//! ```no_run
//! # async fn serve(config: &weir_processor::config::WeirConfig) -> Result<(), Box<dyn std::error::Error>> {
//! use weir_processor::worker::{TaskError, Worker};
//! use weir_proto::ScheduledTask;
//!
//! let worker = Worker::builder(config, "default", "ship-item").build().await?;
//! let stats = worker
//!     .run(
//!         |task: ScheduledTask| async move {
//!             match task.variables.first().and_then(|v| v.value.clone()) {
//!                 Some(item) => Ok(item),
//!                 None => Err(TaskError::exception("nothing to ship")),
//!             }
//!         },
//!         weir_processor::lifecycle::shutdown_signal(),
//!     )
//!     .await?;
//! println!("served {} tasks", stats.tasks_run);
//! # Ok(()) }
//! ```
//!
//! Delivery is at least once: a task whose report was not committed past (a crash, a
//! shutdown that outlived its grace period) is claimed and run again. The TaskDef's
//! timeout is the server's business; the worker adds none.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use weir_proto::command::Command as CommandKind;
use weir_proto::report_task_run::Result as ReportResult;
use weir_proto::{
    Command, ReportTaskRun, ScheduledTask, TaskClaimEvent, TaskStatus, VariableValue,
};
use weir_topology::kafka::{
    KafkaAdmin, KafkaClient, KafkaError, Record, RecordAndOffset, TopicPartition,
};

use crate::config::WeirConfig;
use crate::topics::{CoreTopics, TENANT_HEADER, partition_for_key};

/// The metric counting served tasks, by `task_def` and `outcome`
/// (`success`, `failed`, `exception`, `skipped`).
pub const TASKS_TOTAL: &str = "weir_worker_tasks_total";

/// Tasks a partition runs at once unless the builder says otherwise.
const DEFAULT_MAX_IN_FLIGHT: usize = 16;
/// How often finished tasks' offsets are committed unless the builder says otherwise.
const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(200);
/// How long a shutdown waits for running tasks unless the builder says otherwise.
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Most bytes one queue fetch asks for.
const FETCH_MAX_BYTES: i32 = 1024 * 1024;
/// How long one queue fetch waits at the broker for new tasks.
const FETCH_WAIT: Duration = Duration::from_millis(500);
/// First and longest wait between retries of a failed Kafka request.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How a task function says it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    kind: TaskErrorKind,
    message: String,
}

/// Which status a [`TaskError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskErrorKind {
    /// A technical failure (`TASK_FAILED`): the TaskDef's retries apply.
    Failed,
    /// A business exception (`TASK_EXCEPTION`): the workflow decides what follows.
    Exception,
}

impl TaskError {
    /// A technical failure, reported as `TASK_FAILED`.
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            kind: TaskErrorKind::Failed,
            message: message.into(),
        }
    }

    /// A business exception, reported as `TASK_EXCEPTION`.
    pub fn exception(message: impl Into<String>) -> Self {
        Self {
            kind: TaskErrorKind::Exception,
            message: message.into(),
        }
    }

    /// Whether this is a failure or an exception.
    pub fn kind(&self) -> TaskErrorKind {
        self.kind
    }

    /// What went wrong, as reported to the server.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn status(&self) -> TaskStatus {
        match self.kind {
            TaskErrorKind::Failed => TaskStatus::TaskFailed,
            TaskErrorKind::Exception => TaskStatus::TaskException,
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            TaskErrorKind::Failed => "task failed",
            TaskErrorKind::Exception => "task exception",
        };
        write!(f, "{kind}: {}", self.message)
    }
}

impl std::error::Error for TaskError {}

/// Any other error is a technical failure, with its whole chain as the message.
impl From<anyhow::Error> for TaskError {
    fn from(error: anyhow::Error) -> Self {
        Self::failed(format!("{error:#}"))
    }
}

/// What a worker did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Tasks whose function ran to an end and whose report was produced.
    pub tasks_run: u64,
    /// Of those, the ones reported as `TASK_SUCCESS`.
    pub succeeded: u64,
    /// Of those, the ones reported as `TASK_FAILED` (errors and panics).
    pub failed: u64,
    /// Of those, the ones reported as `TASK_EXCEPTION`.
    pub exceptions: u64,
    /// Queue records that were not a `ScheduledTask` and were skipped.
    pub skipped: u64,
}

/// Why a worker could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Kafka refused what the worker needs to start (its queue, a connection).
    #[error("worker for task {task_def} of tenant {tenant}: {source}")]
    Kafka {
        tenant: String,
        task_def: String,
        #[source]
        source: KafkaError,
    },
    /// The builder named a partition the queue does not have.
    #[error("task queue {queue} has partitions 0..{partitions}, not {partition}")]
    InvalidPartition {
        queue: String,
        partition: i32,
        partitions: i32,
    },
    /// `run` was called while the same worker was already running.
    #[error("worker for task {task_def} of tenant {tenant} is already running")]
    AlreadyRunning { tenant: String, task_def: String },
}

/// How a [`Worker`] is set up; see [`Worker::builder`].
#[derive(Debug, Clone)]
pub struct WorkerBuilder {
    config: WeirConfig,
    tenant: String,
    task_def: String,
    partitions: Option<Vec<i32>>,
    worker_id: Option<String>,
    max_in_flight: usize,
    commit_interval: Duration,
    shutdown_grace: Duration,
}

impl WorkerBuilder {
    /// Serves only these queue partitions (default: all of them). Workers sharing a
    /// TaskDef split the partitions between them; two workers must not serve the same
    /// partition, as the consumer group has no membership to keep them apart.
    pub fn partitions(mut self, partitions: Vec<i32>) -> Self {
        self.partitions = Some(partitions);
        self
    }

    /// The id reported with every claim and result (default: `{host}-{pid}`).
    pub fn worker_id(mut self, worker_id: impl Into<String>) -> Self {
        self.worker_id = Some(worker_id.into());
        self
    }

    /// How many tasks of one partition may run at once (default 16, at least 1).
    pub fn max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = max_in_flight.max(1);
        self
    }

    /// How often the offsets of reported tasks are committed (default 200 ms).
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long a shutdown waits for running tasks before abandoning them to be
    /// re-delivered (default 10 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Connects to the cluster and makes sure the queue exists: created when
    /// `LHS_SHOULD_CREATE_TOPICS` allows it, else required to be there.
    pub async fn build(self) -> Result<Worker, WorkerError> {
        let topics = CoreTopics::new(&self.config);
        let queue = topics.task_queue(&self.tenant, &self.task_def);
        let partitions: Vec<i32> = match self.partitions {
            None => (0..topics.partitions).collect(),
            Some(chosen) => {
                let chosen: BTreeSet<i32> = chosen.into_iter().collect();
                if let Some(&partition) =
                    chosen.iter().find(|p| !(0..topics.partitions).contains(*p))
                {
                    return Err(WorkerError::InvalidPartition {
                        queue,
                        partition,
                        partitions: topics.partitions,
                    });
                }
                chosen.into_iter().collect()
            }
        };
        let kafka_error = |source| WorkerError::Kafka {
            tenant: self.tenant.clone(),
            task_def: self.task_def.clone(),
            source,
        };
        let kafka = self.config.kafka();
        let admin = KafkaAdmin::connect(&kafka).await.map_err(kafka_error)?;
        if self.config.create_topics {
            admin
                .ensure_topics(&[topics.task_queue_spec(&self.tenant, &self.task_def)])
                .await
                .map_err(kafka_error)?;
        } else {
            admin
                .describe_topics(std::slice::from_ref(&queue))
                .await
                .map_err(kafka_error)?;
        }
        let client = KafkaClient::connect(&kafka).await.map_err(kafka_error)?;
        let outcome = |outcome: &'static str| metrics::counter!(TASKS_TOTAL, "task_def" => self.task_def.clone(), "outcome" => outcome);
        let metrics = OutcomeMetrics {
            success: outcome("success"),
            failed: outcome("failed"),
            exception: outcome("exception"),
            skipped: outcome("skipped"),
        };
        let shared = Shared {
            group: self
                .config
                .topic(&format!("worker_{}_{}", self.tenant, self.task_def)),
            core_cmd: topics.core_cmd(),
            command_partitions: topics.partitions,
            worker_id: self.worker_id.unwrap_or_else(default_worker_id),
            tenant: self.tenant,
            task_def: self.task_def,
            queue,
            max_in_flight: self.max_in_flight,
            shutdown_grace: self.shutdown_grace,
            client,
            admin,
            command_handles: tokio::sync::Mutex::new(BTreeMap::new()),
            counters: Counters::default(),
            metrics,
        };
        Ok(Worker {
            shared: Arc::new(shared),
            partitions,
            commit_interval: self.commit_interval,
            running: AtomicBool::new(false),
        })
    }
}

/// Serves one TaskDef of one tenant; see the module documentation.
pub struct Worker {
    shared: Arc<Shared>,
    partitions: Vec<i32>,
    commit_interval: Duration,
    running: AtomicBool,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("tenant", &self.shared.tenant)
            .field("task_def", &self.shared.task_def)
            .field("worker_id", &self.shared.worker_id)
            .field("queue", &self.shared.queue)
            .field("group", &self.shared.group)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker for `task_def` of `tenant` on the cluster `config` names.
    pub fn builder(
        config: &WeirConfig,
        tenant: impl Into<String>,
        task_def: impl Into<String>,
    ) -> WorkerBuilder {
        WorkerBuilder {
            config: config.clone(),
            tenant: tenant.into(),
            task_def: task_def.into(),
            partitions: None,
            worker_id: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            commit_interval: DEFAULT_COMMIT_INTERVAL,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }

    /// The id sent with every claim and report.
    pub fn worker_id(&self) -> &str {
        &self.shared.worker_id
    }

    /// The consumer group whose committed offsets say where the queue is served up to:
    /// `{cluster}_worker_{tenant}_{task_def}`.
    pub fn group(&self) -> &str {
        &self.shared.group
    }

    /// The queue topic served.
    pub fn queue(&self) -> &str {
        &self.shared.queue
    }

    /// What the worker did so far.
    pub fn stats(&self) -> WorkerStats {
        self.shared.counters.snapshot()
    }

    /// Serves tasks with `function` until `shutdown` completes; then stops taking
    /// tasks, waits up to the shutdown grace for running ones, commits, and returns
    /// what it did. Kafka errors are logged and retried, never returned.
    ///
    /// The function returns the task's output, or a [`TaskError`]; a panic is
    /// reported as `TASK_FAILED` with the panic message.
    pub async fn run<F, Fut>(
        &self,
        function: F,
        shutdown: impl Future<Output = ()>,
    ) -> Result<WorkerStats, WorkerError>
    where
        F: Fn(ScheduledTask) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<VariableValue, TaskError>> + Send + 'static,
    {
        if self.running.swap(true, Ordering::SeqCst) {
            return Err(WorkerError::AlreadyRunning {
                tenant: self.shared.tenant.clone(),
                task_def: self.shared.task_def.clone(),
            });
        }
        let _running = ClearOnDrop(&self.running);
        let mut shutdown = std::pin::pin!(shutdown);
        let starts = tokio::select! {
            starts = self.shared.start_offsets(&self.partitions) => starts,
            () = &mut shutdown => return Ok(self.stats()),
        };
        tracing::info!(
            tenant = %self.shared.tenant,
            task_def = %self.shared.task_def,
            worker_id = %self.shared.worker_id,
            group = %self.shared.group,
            ?starts,
            "worker started"
        );
        let positions = Arc::new(Mutex::new(Positions {
            current: starts.clone(),
            committed: BTreeMap::new(),
        }));
        let function = Arc::new(function);
        let (stop, stopped) = watch::channel(false);
        let mut partitions = JoinSet::new();
        for (&partition, &start) in &starts {
            partitions.spawn(serve_partition(
                Arc::clone(&self.shared),
                Arc::clone(&function),
                partition,
                start,
                Arc::clone(&positions),
                stopped.clone(),
            ));
        }
        let committer = tokio::spawn(commit_periodically(
            Arc::clone(&self.shared),
            Arc::clone(&positions),
            self.commit_interval,
            stopped,
        ));
        shutdown.await;
        tracing::info!(task_def = %self.shared.task_def, "worker stopping");
        let _ = stop.send(true);
        while let Some(joined) = partitions.join_next().await {
            if let Err(error) = joined {
                tracing::error!(task_def = %self.shared.task_def, %error, "partition loop ended abnormally");
            }
        }
        if let Err(error) = committer.await {
            tracing::error!(task_def = %self.shared.task_def, %error, "committer ended abnormally");
        }
        self.shared.final_commit(&positions).await;
        Ok(self.stats())
    }
}

/// Resets the running flag when `run` returns, however it returns.
struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Everything the partition loops, the task pipelines and the committer share.
struct Shared {
    tenant: String,
    task_def: String,
    worker_id: String,
    group: String,
    queue: String,
    core_cmd: String,
    command_partitions: i32,
    max_in_flight: usize,
    shutdown_grace: Duration,
    client: KafkaClient,
    admin: KafkaAdmin,
    /// Producers of `core-cmd`, by partition, connected on first use.
    command_handles: tokio::sync::Mutex<BTreeMap<i32, TopicPartition>>,
    counters: Counters,
    metrics: OutcomeMetrics,
}

#[derive(Default)]
struct Counters {
    succeeded: AtomicU64,
    failed: AtomicU64,
    exceptions: AtomicU64,
    skipped: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> WorkerStats {
        let succeeded = self.succeeded.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        let exceptions = self.exceptions.load(Ordering::Relaxed);
        WorkerStats {
            tasks_run: succeeded + failed + exceptions,
            succeeded,
            failed,
            exceptions,
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }
}

struct OutcomeMetrics {
    success: metrics::Counter,
    failed: metrics::Counter,
    exception: metrics::Counter,
    skipped: metrics::Counter,
}

/// Where each served partition is done up to: the offset after which nothing is left
/// unreported (`current`), and what the group has committed of it (`committed`).
struct Positions {
    current: BTreeMap<i32, i64>,
    committed: BTreeMap<i32, i64>,
}

impl Shared {
    /// Where to start each partition: the group's committed offset, or the earliest
    /// offset still in the log when none is committed (or it fell out of retention).
    async fn start_offsets(&self, partitions: &[i32]) -> BTreeMap<i32, i64> {
        let mut backoff = Backoff::new();
        let committed = loop {
            match self
                .admin
                .committed_offsets(&self.group, &self.queue, partitions)
                .await
            {
                Ok(committed) => break committed,
                Err(error) => {
                    tracing::warn!(group = %self.group, %error, "reading committed offsets; retrying");
                    backoff.wait().await;
                }
            }
        };
        let mut starts = BTreeMap::new();
        for &partition in partitions {
            let earliest = self.earliest_offset(partition).await;
            let start = match committed.get(&partition).copied().flatten() {
                Some(offset) if offset >= earliest => offset,
                Some(offset) => {
                    tracing::warn!(
                        queue = %self.queue, partition, committed = offset, earliest,
                        "committed offset is no longer in the log; starting at the earliest"
                    );
                    earliest
                }
                None => earliest,
            };
            starts.insert(partition, start);
        }
        starts
    }

    async fn earliest_offset(&self, partition: i32) -> i64 {
        let mut backoff = Backoff::new();
        loop {
            let result = match self.client.partition(&self.queue, partition).await {
                Ok(handle) => handle.earliest_offset().await,
                Err(error) => Err(error),
            };
            match result {
                Ok(offset) => return offset,
                Err(error) => {
                    tracing::warn!(queue = %self.queue, partition, %error, "reading the earliest offset; retrying");
                    backoff.wait().await;
                }
            }
        }
    }

    /// Commits every partition whose position moved since the last commit.
    async fn commit(&self, positions: &Mutex<Positions>) -> Result<(), KafkaError> {
        let changed: Vec<(String, i32, i64)> = {
            let positions = positions.lock().unwrap_or_else(PoisonError::into_inner);
            positions
                .current
                .iter()
                .filter(|(partition, offset)| positions.committed.get(partition) != Some(offset))
                .map(|(partition, offset)| (self.queue.clone(), *partition, *offset))
                .collect()
        };
        if changed.is_empty() {
            return Ok(());
        }
        self.admin.commit_offsets(&self.group, &changed).await?;
        let mut positions = positions.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, partition, offset) in changed {
            positions.committed.insert(partition, offset);
        }
        Ok(())
    }

    /// The commit on shutdown, tried a few times before giving up (what is not
    /// committed is served again by the next worker).
    async fn final_commit(&self, positions: &Mutex<Positions>) {
        let mut backoff = Backoff::new();
        for attempt in 1..=5 {
            match self.commit(positions).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(group = %self.group, attempt, %error, "committing on shutdown failed");
                    backoff.wait().await;
                }
            }
        }
    }

    /// Produces `command` to the `core-cmd` partition of `wf_run_id`, with the tenant
    /// header, retrying until the broker acknowledges it.
    async fn send_command(&self, wf_run_id: &str, command: &Command) {
        let partition = partition_for_key(wf_run_id.as_bytes(), self.command_partitions);
        let record = Record {
            key: Some(wf_run_id.as_bytes().to_vec()),
            value: Some(command.encode_to_vec()),
            headers: BTreeMap::from([(TENANT_HEADER.to_owned(), self.tenant.as_bytes().to_vec())]),
            timestamp: chrono::Utc::now(),
        };
        let mut backoff = Backoff::new();
        loop {
            let result = match self.command_handle(partition).await {
                Ok(handle) => handle.produce(vec![record.clone()]).await,
                Err(error) => Err(error),
            };
            match result {
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(
                        topic = %self.core_cmd, partition, command_id = %command.command_id, %error,
                        "producing a command failed; retrying"
                    );
                    self.command_handles.lock().await.remove(&partition);
                    backoff.wait().await;
                }
            }
        }
    }

    async fn command_handle(&self, partition: i32) -> Result<TopicPartition, KafkaError> {
        let mut handles = self.command_handles.lock().await;
        if let Some(handle) = handles.get(&partition) {
            return Ok(handle.clone());
        }
        let handle = self.client.partition(&self.core_cmd, partition).await?;
        handles.insert(partition, handle.clone());
        Ok(handle)
    }
}

/// Commits moved positions every `interval` until told to stop.
async fn commit_periodically(
    shared: Arc<Shared>,
    positions: Arc<Mutex<Positions>>,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = ticker.tick() => {
                if let Err(error) = shared.commit(&positions).await {
                    tracing::warn!(group = %shared.group, %error, "committing offsets failed; retrying at the next interval");
                }
            }
        }
    }
}

/// Serves one queue partition: takes fetched tasks while fewer than `max_in_flight`
/// run, and moves the partition's position to the first task not yet reported.
async fn serve_partition<F, Fut>(
    shared: Arc<Shared>,
    function: Arc<F>,
    partition: i32,
    start: i64,
    positions: Arc<Mutex<Positions>>,
    mut stopped: watch::Receiver<bool>,
) where
    F: Fn(ScheduledTask) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<VariableValue, TaskError>> + Send + 'static,
{
    let (records, mut fetched) = mpsc::channel(shared.max_in_flight);
    let fetcher = AbortOnDrop(tokio::spawn(fetch_queue(
        Arc::clone(&shared),
        partition,
        start,
        records,
    )));
    let mut tracker = Tracker {
        partition,
        next: start,
        running: BTreeSet::new(),
        positions,
    };
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut offsets: HashMap<tokio::task::Id, i64> = HashMap::new();
    while !*stopped.borrow() {
        tokio::select! {
            biased;
            _ = stopped.changed() => break,
            Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let id = match joined {
                    Ok((id, ())) => id,
                    Err(error) => {
                        tracing::error!(task_def = %shared.task_def, partition, %error, "task pipeline ended abnormally");
                        error.id()
                    }
                };
                if let Some(offset) = offsets.remove(&id) {
                    tracker.finished(offset);
                }
            }
            Some(record) = fetched.recv(), if tasks.len() < shared.max_in_flight => {
                let offset = record.offset;
                match decode_task(&shared, partition, record) {
                    Some(task) => {
                        tracker.started(offset);
                        let handle = tasks.spawn(serve_task(Arc::clone(&shared), Arc::clone(&function), task));
                        offsets.insert(handle.id(), offset);
                    }
                    None => tracker.skipped(offset),
                }
            }
        }
    }
    drop(fetcher);
    let drain = async {
        while let Some(joined) = tasks.join_next_with_id().await {
            let id = match joined {
                Ok((id, ())) => id,
                Err(error) => error.id(),
            };
            if let Some(offset) = offsets.remove(&id) {
                tracker.finished(offset);
            }
        }
    };
    if tokio::time::timeout(shared.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            task_def = %shared.task_def, partition, abandoned = tasks.len(),
            "shutdown grace over; unfinished tasks will be delivered again"
        );
        tasks.abort_all();
    }
}

/// The offsets one partition has taken and not yet finished, and the position that
/// follows from them.
struct Tracker {
    partition: i32,
    /// The offset after the last record taken from the fetcher.
    next: i64,
    running: BTreeSet<i64>,
    positions: Arc<Mutex<Positions>>,
}

impl Tracker {
    fn started(&mut self, offset: i64) {
        self.running.insert(offset);
        self.next = offset + 1;
        self.publish();
    }

    fn skipped(&mut self, offset: i64) {
        self.next = offset + 1;
        self.publish();
    }

    fn finished(&mut self, offset: i64) {
        self.running.remove(&offset);
        self.publish();
    }

    /// Everything below the first running task is reported.
    fn publish(&self) {
        let position = self.running.first().copied().unwrap_or(self.next);
        self.positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .current
            .insert(self.partition, position);
    }
}

/// Fetches the queue partition from `offset` on and hands each record to the partition
/// loop; retries failed fetches, and skips ahead if the log was truncated past it.
async fn fetch_queue(
    shared: Arc<Shared>,
    partition: i32,
    mut offset: i64,
    records: mpsc::Sender<RecordAndOffset>,
) {
    let mut handle: Option<TopicPartition> = None;
    let mut backoff = Backoff::new();
    loop {
        let current = match &handle {
            Some(current) => current.clone(),
            None => match shared.client.partition(&shared.queue, partition).await {
                Ok(fresh) => {
                    handle = Some(fresh.clone());
                    fresh
                }
                Err(error) => {
                    tracing::warn!(queue = %shared.queue, partition, %error, "connecting to the queue failed; retrying");
                    backoff.wait().await;
                    continue;
                }
            },
        };
        match current.fetch(offset, FETCH_MAX_BYTES, FETCH_WAIT).await {
            Ok((fetched, _high_watermark)) => {
                backoff.reset();
                for record in fetched {
                    if record.offset < offset {
                        continue;
                    }
                    offset = record.offset + 1;
                    if records.send(record).await.is_err() {
                        return;
                    }
                }
            }
            Err(error) => {
                tracing::warn!(queue = %shared.queue, partition, offset, %error, "fetching tasks failed; retrying");
                if let Ok(earliest) = current.earliest_offset().await
                    && earliest > offset
                {
                    tracing::warn!(
                        queue = %shared.queue, partition, from = offset, to = earliest,
                        "tasks left the log before they were served; skipping ahead"
                    );
                    offset = earliest;
                }
                handle = None;
                backoff.wait().await;
            }
        }
    }
}

/// The `ScheduledTask` in a queue record, or `None` (logged and counted) when the
/// record is not one.
fn decode_task(shared: &Shared, partition: i32, record: RecordAndOffset) -> Option<ScheduledTask> {
    let offset = record.offset;
    let problem = match record.record.value {
        None => "record has no value".to_owned(),
        Some(value) => match ScheduledTask::decode(value.as_slice()) {
            Err(error) => format!("not a ScheduledTask: {error}"),
            Ok(task)
                if task
                    .task_run_id
                    .as_ref()
                    .and_then(|id| id.wf_run_id.as_ref())
                    .is_none() =>
            {
                "ScheduledTask without a task run id".to_owned()
            }
            Ok(task) => return Some(task),
        },
    };
    tracing::warn!(queue = %shared.queue, partition, offset, problem, "skipping a queue record");
    shared.counters.skipped.fetch_add(1, Ordering::Relaxed);
    shared.metrics.skipped.increment(1);
    None
}

/// One task from claim to report: claim it, run the function, report how it ended.
async fn serve_task<F, Fut>(shared: Arc<Shared>, function: Arc<F>, task: ScheduledTask)
where
    F: Fn(ScheduledTask) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<VariableValue, TaskError>> + Send + 'static,
{
    let task_run_id = task.task_run_id.clone().unwrap_or_default();
    let wf_run_id = task_run_id
        .wf_run_id
        .as_ref()
        .map(|id| id.id.clone())
        .unwrap_or_default();
    let attempt = task.attempt_number;
    let command_id = |step: &str| format!("{wf_run_id}/{}/{attempt}/{step}", task_run_id.task_guid);
    let claim = Command {
        command_id: command_id("claim"),
        time: Some(now()),
        command: Some(CommandKind::TaskClaimEvent(TaskClaimEvent {
            task_run_id: Some(task_run_id.clone()),
            attempt_number: attempt,
            worker_id: shared.worker_id.clone(),
        })),
    };
    shared.send_command(&wf_run_id, &claim).await;

    // Run in its own task so a panic is caught, and aborted if this pipeline is.
    let running = AbortOnDrop(tokio::spawn(async move { function(task).await }));
    let result = match running.join().await {
        Ok(result) => result,
        Err(error) if error.is_panic() => Err(TaskError::failed(format!(
            "task panicked: {}",
            panic_message(error.into_panic())
        ))),
        Err(error) => Err(TaskError::failed(format!("task did not finish: {error}"))),
    };
    let (status, outcome) = match &result {
        Ok(_) => (TaskStatus::TaskSuccess, "success"),
        Err(error) => (
            error.status(),
            match error.kind() {
                TaskErrorKind::Failed => "failed",
                TaskErrorKind::Exception => "exception",
            },
        ),
    };
    if let Err(error) = &result {
        tracing::info!(task_def = %shared.task_def, wf_run_id, attempt, %error, "task did not succeed");
    }
    let report = Command {
        command_id: command_id("report"),
        time: Some(now()),
        command: Some(CommandKind::ReportTaskRun(ReportTaskRun {
            task_run_id: Some(task_run_id.clone()),
            attempt_number: attempt,
            time: Some(now()),
            status: status as i32,
            result: Some(match result {
                Ok(output) => ReportResult::Output(output),
                Err(error) => ReportResult::ErrorMessage(error.message),
            }),
            worker_id: Some(shared.worker_id.clone()),
        })),
    };
    shared.send_command(&wf_run_id, &report).await;
    let (counter, metric) = match outcome {
        "success" => (&shared.counters.succeeded, &shared.metrics.success),
        "failed" => (&shared.counters.failed, &shared.metrics.failed),
        _ => (&shared.counters.exceptions, &shared.metrics.exception),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    metric.increment(1);
}

/// A spawned task that is aborted when its handle is dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// The wall clock, for the commands a worker sends (the worker's time is the command's).
fn now() -> prost_types::Timestamp {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    weir_proto::timestamp::from_millis(millis)
}

fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Exponential backoff between retries of a failed Kafka request.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: FIRST_BACKOFF,
        }
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(MAX_BACKOFF);
    }

    fn reset(&mut self) {
        self.next = FIRST_BACKOFF;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The module documentation's example, type-checked with the unit tests.
    #[allow(dead_code)]
    async fn module_example(config: &WeirConfig) -> Result<(), Box<dyn std::error::Error>> {
        let worker = Worker::builder(config, "default", "ship-item")
            .build()
            .await?;
        let stats = worker
            .run(
                |task: ScheduledTask| async move {
                    match task.variables.first().and_then(|v| v.value.clone()) {
                        Some(item) => Ok(item),
                        None => Err(TaskError::exception("nothing to ship")),
                    }
                },
                crate::lifecycle::shutdown_signal(),
            )
            .await?;
        println!("served {} tasks", stats.tasks_run);
        Ok(())
    }

    #[test]
    fn task_errors_map_to_statuses() {
        assert_eq!(TaskError::failed("x").status(), TaskStatus::TaskFailed);
        assert_eq!(
            TaskError::exception("x").status(),
            TaskStatus::TaskException
        );
        let from_anyhow = TaskError::from(anyhow::anyhow!("inner").context("outer"));
        assert_eq!(from_anyhow.kind(), TaskErrorKind::Failed);
        assert_eq!(from_anyhow.message(), "outer: inner");
    }

    #[test]
    fn position_waits_for_the_first_unreported_task() {
        let positions = Arc::new(Mutex::new(Positions {
            current: BTreeMap::new(),
            committed: BTreeMap::new(),
        }));
        let mut tracker = Tracker {
            partition: 2,
            next: 10,
            running: BTreeSet::new(),
            positions: Arc::clone(&positions),
        };
        let position = || {
            positions
                .lock()
                .expect("positions lock")
                .current
                .get(&2)
                .copied()
        };
        tracker.started(10);
        tracker.skipped(11);
        tracker.started(12);
        assert_eq!(position(), Some(10));
        tracker.finished(12);
        assert_eq!(position(), Some(10), "10 still runs");
        tracker.finished(10);
        assert_eq!(position(), Some(13));
    }

    #[test]
    fn panic_messages_are_read_from_both_payload_kinds() {
        assert_eq!(panic_message(Box::new("static")), "static");
        assert_eq!(panic_message(Box::new(String::from("owned"))), "owned");
        assert_eq!(panic_message(Box::new(3)), "(no message)");
    }
}
