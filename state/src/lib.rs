//! weir's state stores: typed key/value stores over RocksDB, one instance per task,
//! and the per-record change set that decides what reaches the changelog.
//!
//! This crate knows nothing of Kafka, workflows or flows; the runtime in
//! `weir-topology` decides when changes are written and where they are logged.
//!
//! The life of a batch, by module:
//! - [`TaskDb`] (`db`) opens a task's RocksDB with one column family per store;
//! - [`RecordState`] (`record`) is one record's view: each key is read once and cached with
//!   its original bytes, and [`RecordState::finish`] returns the [`ChangeSet`] (`changes`)
//!   of keys whose bytes differ, moving them into the overlay (`overlay`), where later
//!   records of the batch see them;
//! - [`TaskDb::freeze_pending`] closes a batch's overlay once the runtime has its outputs
//!   acknowledged: later records read it as a frozen layer while its changelog writes are
//!   in flight, and [`TaskDb::commit_oldest_frozen`] writes it and the [`Checkpoint`]
//!   (`checkpoint`) in one RocksDB write batch once they are acknowledged
//!   ([`TaskDb::commit_pending`] does both at once);
//! - reads that miss every pending layer try the process's value cache (`value_cache`) of
//!   committed values before RocksDB; commits update it.
//!
//! [`TaskDbReader`] (`reader`) reads a `TaskDb`'s committed state from other threads
//! (queries), without holding the database open once its task closes it.
//!
//! Memory is bounded per process by one [`StateResources`] (`options`) shared by every
//! `TaskDb`; every error is a [`StateError`] (`error`) naming the path, store and key.

mod changes;
mod checkpoint;
mod db;
mod error;
mod options;
mod overlay;
mod reader;
mod record;
#[cfg(test)]
mod test_support;
mod value_cache;

pub use changes::{Change, ChangeSet};
pub use checkpoint::Checkpoint;
pub use db::{StoreId, StoreSizes, TaskDb};
pub use error::{KeyDisplay, StateError};
pub use options::{StateOptions, StateResources};
pub use reader::TaskDbReader;
pub use record::RecordState;
