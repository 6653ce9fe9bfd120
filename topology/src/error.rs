//! The runtime's error type: what stops a task or the runtime, naming the task,
//! topic, partition or store involved.

use crate::kafka::KafkaError;
use crate::topology::TopologyError;

/// Why a task or the runtime stopped.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Boxed, like the state error: both are large and rare.
    #[error(transparent)]
    Kafka(Box<KafkaError>),
    #[error(transparent)]
    State(Box<weir_state::StateError>),
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// A processor reported a failure that is not the record's fault.
    #[error("task {task}: {reason}")]
    Processing { task: String, reason: String },
    /// A changelog holds something a restore cannot use.
    #[error("task {task}: changelog {topic}/{partition}: {reason}")]
    Changelog {
        task: String,
        topic: String,
        partition: i32,
        reason: String,
    },
    /// The local checkpoint is past the end of its changelog: the changelog was deleted
    /// or truncated, so the local state cannot be trusted against it.
    #[error(
        "task {task}: state checkpointed at offset {checkpoint} of {topic}/{partition}, past its end {end}: the changelog was deleted or truncated"
    )]
    CheckpointPastChangelog {
        task: String,
        topic: String,
        partition: i32,
        checkpoint: i64,
        end: i64,
    },
    /// A topic weir needs is missing and creating topics is switched off.
    #[error(
        "topic {topic} does not exist and LHS_SHOULD_CREATE_TOPICS is false; create it with {partitions} partitions or enable topic creation"
    )]
    MissingTopic { topic: String, partitions: i32 },
    /// A task gave up committing while shutting down with the broker unreachable.
    #[error("task {task}: could not commit before shutdown: {reason}")]
    ShutdownCommit { task: String, reason: String },
    #[error("state directory {path}: {source}")]
    StateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<KafkaError> for RuntimeError {
    fn from(error: KafkaError) -> Self {
        Self::Kafka(Box::new(error))
    }
}

impl From<weir_state::StateError> for RuntimeError {
    fn from(error: weir_state::StateError) -> Self {
        Self::State(Box::new(error))
    }
}
