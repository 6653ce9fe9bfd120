//! Tasks: one per partition of a sub-topology. [`core`] processes records without I/O;
//! [`stream_task`] wraps it with the commit protocol and restore, fed by the read-ahead
//! fetch loops of [`fetcher`], and leaves each batch's changelog writes to its
//! [`changelog_writer`] while it processes the next; [`parked`] holds the outputs of
//! destinations that do not exist until they do.

pub(crate) mod changelog_writer;
pub(crate) mod collector;
pub(crate) mod commit_retry;
pub(crate) mod core;
pub(crate) mod fetcher;
pub(crate) mod parked;
pub(crate) mod restore;
pub(crate) mod stream_task;

pub use self::core::{
    ERROR_HEADER, RecordOutcome, SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER,
    SOURCE_TOPIC_HEADER, StampedOutput, WEIR_ID_HEADER, decode_value,
};
