//! The integration harness: a live Kafka-compatible broker for the whole test run, an
//! isolated namespace per test, and helpers to create topics, produce and consume
//! protobuf records, and run `weir` child processes; a PostgreSQL database per test for
//! the analytics example.
//!
//! Tests never mock Kafka. Set `LHS_KAFKA_BOOTSTRAP_SERVERS` to run them against an
//! existing broker (Redpanda, Kafka); otherwise the harness starts the project's local
//! broker on a free loopback port and stops it when the test process exits.

pub mod broker;
pub mod consume;
pub mod namespace;
pub mod postgres;
pub mod process;
pub mod produce;
pub mod prometheus;
pub mod proxy;

pub use consume::{ConsumedRecord, consume_until};
pub use namespace::TestNamespace;
pub use postgres::TestDatabase;
pub use process::WeirProcess;
pub use produce::produce_protobuf;
pub use proxy::TcpProxy;
