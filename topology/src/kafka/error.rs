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

    /// A topic exists, but without the partition asked for.
    #[error("topic {topic} has no partition {partition} (it has {partitions})")]
    UnknownPartition {
        topic: String,
        partition: i32,
        partitions: usize,
    },

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

/// How rskafka words a metadata answer that lacks the asked-for partition (the topic
/// exists with fewer partitions).
const NO_SUCH_PARTITION: &str = "Could not find metadata for partition";

impl KafkaError {
    /// Whether this error says the topic or the partition does not exist (Kafka's
    /// UNKNOWN_TOPIC_OR_PARTITION, or a topic whose metadata lacks the partition), as
    /// opposed to a broker that is unreachable, slow or refusing for another reason.
    pub fn is_unknown_topic_or_partition(&self) -> bool {
        use rskafka::client::error::{Error, ProtocolError};
        match self {
            Self::UnknownTopic { .. } | Self::UnknownPartition { .. } => true,
            Self::Partition { source, .. } => match source.as_ref() {
                Error::ServerError {
                    protocol_error: ProtocolError::UnknownTopicOrPartition,
                    ..
                } => true,
                Error::InvalidResponse(message) => message.starts_with(NO_SUCH_PARTITION),
                _ => false,
            },
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use rskafka::client::error::{Error, ProtocolError, RequestContext};

    use super::*;

    fn partition_error(source: Error) -> KafkaError {
        KafkaError::Partition {
            operation: "produce to",
            topic: "t".to_owned(),
            partition: 0,
            source: Box::new(source),
        }
    }

    fn server_error(protocol_error: ProtocolError) -> Error {
        Error::ServerError {
            protocol_error,
            error_message: None,
            request: RequestContext::Topic("t".to_owned()),
            response: None,
            is_virtual: false,
        }
    }

    #[test]
    fn only_a_missing_topic_or_partition_counts_as_unknown() {
        let unknown = [
            KafkaError::UnknownTopic {
                topic: "t".to_owned(),
            },
            KafkaError::UnknownPartition {
                topic: "t".to_owned(),
                partition: 4,
                partitions: 4,
            },
            partition_error(server_error(ProtocolError::UnknownTopicOrPartition)),
            partition_error(Error::InvalidResponse(format!(
                "{NO_SUCH_PARTITION} 7 in topic \"t\""
            ))),
        ];
        for error in &unknown {
            assert!(error.is_unknown_topic_or_partition(), "{error}");
        }
        let transient = [
            partition_error(server_error(ProtocolError::NotLeaderOrFollower)),
            partition_error(server_error(ProtocolError::RequestTimedOut)),
            partition_error(Error::Timeout),
            partition_error(Error::InvalidResponse("garbled".to_owned())),
            KafkaError::Timeout {
                api: "Produce",
                broker: "b".to_owned(),
                timeout: Duration::from_secs(1),
            },
        ];
        for error in &transient {
            assert!(!error.is_unknown_topic_or_partition(), "{error}");
        }
    }
}
