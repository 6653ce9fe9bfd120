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
//!
//! Inside: [`WorkerBuilder`] connects and [`Worker::run`] starts one `partition_loop`
//! per queue partition (fetch, hand tasks out, track the first unreported offset),
//! each task going through a `task_pipeline` (claim, run, report); `offsets` reads
//! where to start and commits how far each partition is done; `shared` holds what
//! they all use (connections, counters, the `core-cmd` producer).

mod backoff;
mod offsets;
mod partition_loop;
mod shared;
mod task_pipeline;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use weir_proto::{ScheduledTask, TaskStatus, VariableValue};
use weir_topology::kafka::{KafkaAdmin, KafkaClient, KafkaError};

use self::offsets::{Positions, commit_periodically};
use self::partition_loop::serve_partition;
use self::shared::{Counters, OutcomeMetrics, Shared};
use crate::config::WeirConfig;
use crate::topics::CoreTopics;

/// The metric counting served tasks, by `task_def` and `outcome`
/// (`success`, `failed`, `exception`, `skipped`).
pub const TASKS_TOTAL: &str = "weir_worker_tasks_total";

/// Tasks a partition runs at once unless the builder says otherwise.
const DEFAULT_MAX_IN_FLIGHT: usize = 16;
/// How often finished tasks' offsets are committed unless the builder says otherwise.
const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(200);
/// How long a shutdown waits for running tasks unless the builder says otherwise.
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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

fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}", std::process::id())
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
}
