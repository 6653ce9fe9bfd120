//! The one error type of the Kafka layer. Every variant names what was asked of which
//! broker, topic or partition, so a log line is enough to find the failing piece.

use std::time::Duration;

/// A failure talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// No bootstrap broker answered in time.
    #[error("could not reach a Kafka broker at {bootstrap} within {timeout:?}: {reason}")]
    Unreachable {
        bootstrap: String,
        timeout: Duration,
        reason: String,
    },

    /// A request was sent but the connection failed under it.
    #[error("{api} request to broker {broker} failed: {source}")]
    Io {
        api: &'static str,
        broker: String,
        #[source]
        source: std::io::Error,
    },

    /// A request got no answer in time.
    #[error("{api} request to broker {broker} got no answer within {timeout:?}")]
    Timeout {
        api: &'static str,
        broker: String,
        timeout: Duration,
    },

    /// The broker does not offer a version of an API that weir can speak.
    #[error(
        "broker {broker} does not support {api} in any version weir speaks ({ours}); it offers {theirs}"
    )]
    UnsupportedApi {
        api: &'static str,
        broker: String,
        ours: String,
        theirs: String,
    },

    /// A request or response could not be encoded or decoded.
    #[error("{api} with broker {broker}: malformed protocol message: {message}")]
    Protocol {
        api: &'static str,
        broker: String,
        message: String,
    },

    /// The broker answered a topic-level request with an error code.
    #[error("{operation} topic {topic}: broker error {code}{}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    TopicRequest {
        operation: &'static str,
        topic: String,
        code: String,
        message: Option<String>,
    },

    /// A consumer-group request (find the coordinator, commit or fetch offsets) was
    /// refused, for the whole group or for one partition.
    #[error("{operation} for consumer group {group}{}: broker error {code}{}", partition.as_ref().map(|(t, p)| format!(" on {t}/{p}")).unwrap_or_default(), message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    GroupRequest {
        operation: &'static str,
        group: String,
        /// The topic and partition the error came with, when it was per partition.
        partition: Option<(String, i32)>,
        code: String,
        message: Option<String>,
    },

    /// A topic that weir needs does not exist.
    #[error("topic {topic} does not exist")]
    UnknownTopic { topic: String },

    /// A topic exists with a different shape than weir needs.
    #[error("topic {topic} exists with {actual} partitions, but {expected} are required")]
    PartitionCountMismatch {
        topic: String,
        expected: i32,
        actual: i32,
    },

    /// A produce, fetch or offset request on one partition failed.
    #[error("{operation} on {topic}/{partition}: {source}")]
    Partition {
        operation: &'static str,
        topic: String,
        partition: i32,
        /// Boxed: rskafka's error is large and errors are rare.
        #[source]
        source: Box<rskafka::client::error::Error>,
    },
}
