//! weir's stream-processing runtime, built by hand in the shape of Kafka Streams.
//!
//! A [`Topology`] names source topics, stores and processors. The [`Runtime`] runs one
//! task per source partition this instance owns; each task keeps its stores in its own
//! RocksDB and logs every change to its partition of the store's changelog, committing
//! by the protocol in [`task::stream_task`] so that state is exactly-once and outputs
//! at-least-once (with a `weir-id` header to drop redeliveries). [`driver`] runs the
//! same processing without a broker, for unit tests. [`StateReaders`] lets code outside the
//! data path (queries) read the committed state of the tasks this instance runs.
//!
//! This crate knows nothing of workflows, tenants or flows; `weir-processor` builds
//! those on it.

pub mod assignment;
mod blocking;
mod changelog;
pub mod config;
pub mod context;
pub mod driver;
pub mod error;
pub mod global;
pub mod kafka;
pub mod metrics;
pub mod processor;
pub mod readers;
pub mod runtime;
mod state_dir;
pub mod store;
pub mod task;
mod timers;
pub mod topology;

pub use assignment::{PartitionAssignor, StaticAssignor};
pub use changelog::{BatchId, data_record, marker_record, read_committed};
pub use config::RuntimeConfig;
pub use context::{InitContext, ProcessorContext};
pub use driver::TopologyTestDriver;
pub use error::RuntimeError;
pub use processor::{InputRecord, OutputRecord, ProcessingError, Processor};
pub use readers::StateReaders;
pub use runtime::{RunningRuntime, Runtime};
pub use store::{GlobalStoreHandle, StoreHandle};
pub use topology::{SourceTopic, Topology, TopologyError};
