//! Retrying a commit step. A batch is either committed whole or not at all, so every
//! Kafka write of a commit is retried, with a growing pause, until it succeeds; once
//! the task is asked to stop, a step gives up after a grace period so a shutdown cannot
//! hang on a broker that is gone.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::error::RuntimeError;
use crate::kafka::{KafkaError, TopicPartition};
use crate::metrics::TaskMetrics;
use crate::task::collector::{ToRecord, produce_all};

/// How long a commit step keeps retrying an unreachable broker once shutdown is
/// requested.
const SHUTDOWN_COMMIT_GRACE: Duration = Duration::from_secs(10);
/// First pause between attempts.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What every commit step of one task retries with: its name, its metrics and its
/// stop signal.
#[derive(Debug, Clone)]
pub(crate) struct CommitRetries {
    pub(crate) task: String,
    pub(crate) metrics: TaskMetrics,
    pub(crate) stop: watch::Receiver<bool>,
}

impl CommitRetries {
    /// A fresh retry state for step `what`.
    pub(crate) fn step(&self, what: &'static str) -> CommitRetry {
        CommitRetry::new(
            &self.task,
            what,
            self.metrics.kafka_retries(what),
            self.stop.clone(),
        )
    }
}

/// The retry state of one commit step of one task.
#[derive(Debug)]
pub(crate) struct CommitRetry {
    task: String,
    what: &'static str,
    retries: metrics::Counter,
    stop: watch::Receiver<bool>,
    backoff: Duration,
    give_up_at: Option<Instant>,
}

impl CommitRetry {
    /// Retries of step `what` (`produce changelog`, …) of `task`, counted on `retries`.
    pub(crate) fn new(
        task: &str,
        what: &'static str,
        retries: metrics::Counter,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            task: task.to_owned(),
            what,
            retries,
            stop,
            backoff: FIRST_BACKOFF,
            give_up_at: None,
        }
    }

    /// After a failed attempt: counts it, gives up if the task is stopping and its
    /// grace period is over, otherwise waits before the caller tries again.
    pub(crate) async fn failed(&mut self, error: &KafkaError) -> Result<(), RuntimeError> {
        self.retries.increment(1);
        if *self.stop.borrow() {
            let limit = *self
                .give_up_at
                .get_or_insert_with(|| Instant::now() + SHUTDOWN_COMMIT_GRACE);
            if Instant::now() >= limit {
                return Err(RuntimeError::ShutdownCommit {
                    task: self.task.clone(),
                    reason: error.to_string(),
                });
            }
        }
        tracing::warn!(
            task = %self.task, %error, retry_in_ms = self.backoff.as_millis() as u64,
            "{} failed; retrying", self.what
        );
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Ok(())
    }
}

/// Produces every group (all partitions at once, each in order) and retries until all
/// are acknowledged; returns the offsets of each group's records.
pub(crate) async fn produce_retrying<R: ToRecord>(
    mut retry: CommitRetry,
    groups: &[(TopicPartition, Vec<R>)],
) -> Result<Vec<Vec<i64>>, RuntimeError> {
    loop {
        let attempt = groups
            .iter()
            .map(|(partition, records)| (partition, records.as_slice()));
        match produce_all(attempt).await {
            Ok(offsets) => return Ok(offsets),
            Err(error) => retry.failed(&error).await?,
        }
    }
}
