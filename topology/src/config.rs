//! The runtime's settings. The processor fills them from `LHS_*` variables; the
//! runtime itself never reads the environment.

use std::path::PathBuf;
use std::time::Duration;

use weir_state::StateOptions;

use crate::kafka::KafkaConfig;

/// How the runtime runs its tasks.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub kafka: KafkaConfig,
    /// Prefix of every topic the runtime creates (changelogs, dead letters).
    pub cluster_id: String,
    /// Root of the task state directories (`{state_dir}/{task}`).
    pub state_dir: PathBuf,
    /// Longest time a batch stays open before it is committed.
    pub commit_interval: Duration,
    /// Most input records in one batch.
    pub max_batch_records: u64,
    /// How long a task's input fetch may wait at the broker while its partition has
    /// nothing new (Kafka's `fetch.max.wait.ms`). Kafka answers as soon as a record
    /// arrives; a broker that polls answers within about half of it.
    pub fetch_max_wait: Duration,
    /// Replication factor of the topics the runtime creates.
    pub replication_factor: i16,
    /// Whether missing topics are created at start (otherwise a clear error).
    pub create_topics: bool,
    /// RocksDB memory bounds, shared by every store of the instance.
    pub state: StateOptions,
}

impl RuntimeConfig {
    /// Defaults for everything but the cluster and the state directory.
    pub fn new(
        kafka: KafkaConfig,
        cluster_id: impl Into<String>,
        state_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            kafka,
            cluster_id: cluster_id.into(),
            state_dir: state_dir.into(),
            commit_interval: Duration::from_millis(100),
            max_batch_records: 10_000,
            fetch_max_wait: Duration::from_millis(50),
            replication_factor: 1,
            create_topics: true,
            state: StateOptions::default(),
        }
    }

    /// `{cluster_id}_dead-letter`.
    pub fn dead_letter_topic(&self) -> String {
        format!("{}_dead-letter", self.cluster_id)
    }
}
