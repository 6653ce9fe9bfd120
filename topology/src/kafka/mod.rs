//! Kafka I/O: the data-path client (rskafka) and the admin requests rskafka lacks
//! (kafka-protocol), behind one error type that names the broker, topic and partition.
//!
//! Everything weir sends to a broker goes through here, so the same code runs against
//! Apache Kafka, Redpanda or the local test broker; nothing here relies on one
//! broker's quirks.

mod admin;
mod batching;
mod client;
mod connection;
mod error;
mod groups;

pub use admin::{CreateOutcome, KafkaAdmin, PartitionInfo, TopicDescription, TopicSpec};
pub use batching::BatchingProducer;
pub use client::{KafkaClient, KafkaConfig, ProduceCompression, TopicPartition};
pub use error::KafkaError;
pub use rskafka::record::{Record, RecordAndOffset};
