//! What a worker's partition loops, task pipelines and committer share: the worker's
//! identity and limits, its Kafka connections, its counters and metrics, and the
//! producer that sends claims and reports to `core-cmd`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prost::Message;
use weir_proto::Command;
use weir_topology::kafka::{BatchingProducer, KafkaAdmin, KafkaClient, KafkaError};

use super::WorkerStats;
use super::backoff::Backoff;
use crate::topics::{command_record, partition_for_key};

/// Everything the partition loops, the task pipelines and the committer share.
pub(super) struct Shared {
    pub(super) tenant: String,
    pub(super) task_def: String,
    pub(super) worker_id: String,
    pub(super) group: String,
    pub(super) queue: String,
    pub(super) core_cmd: String,
    pub(super) command_partitions: i32,
    pub(super) max_in_flight: usize,
    pub(super) shutdown_grace: Duration,
    pub(super) client: KafkaClient,
    pub(super) admin: KafkaAdmin,
    /// Producers of `core-cmd`, by partition, connected on first use; the claims and
    /// reports of tasks running at once share requests.
    pub(super) command_handles: tokio::sync::Mutex<BTreeMap<i32, BatchingProducer>>,
    pub(super) counters: Counters,
    pub(super) metrics: OutcomeMetrics,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) succeeded: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) exceptions: AtomicU64,
    pub(super) skipped: AtomicU64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> WorkerStats {
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

pub(super) struct OutcomeMetrics {
    pub(super) success: metrics::Counter,
    pub(super) failed: metrics::Counter,
    pub(super) exception: metrics::Counter,
    pub(super) skipped: metrics::Counter,
}

impl Shared {
    /// Produces `command` to the `core-cmd` partition of `wf_run_id`, with the tenant
    /// header, retrying until the broker acknowledges it.
    pub(super) async fn send_command(&self, wf_run_id: &str, command: &Command) {
        let partition = partition_for_key(wf_run_id.as_bytes(), self.command_partitions);
        let record = command_record(
            &self.tenant,
            wf_run_id.as_bytes().to_vec(),
            command.encode_to_vec(),
        );
        let mut backoff = Backoff::new();
        loop {
            let result = match self.command_handle(partition).await {
                Ok(handle) => handle.send(record.clone()).await,
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

    async fn command_handle(&self, partition: i32) -> Result<BatchingProducer, KafkaError> {
        let mut handles = self.command_handles.lock().await;
        if let Some(handle) = handles.get(&partition) {
            return Ok(handle.clone());
        }
        let handle = BatchingProducer::new(self.client.partition(&self.core_cmd, partition).await?);
        handles.insert(partition, handle.clone());
        Ok(handle)
    }
}
