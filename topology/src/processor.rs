//! What a processor is: the trait user code implements, the records it receives and
//! forwards, and the two ways processing of a record can fail.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::context::{InitContext, ProcessorContext};

/// Header on a record that a due timer put back on the task's own input partition.
pub const TIMER_HEADER: &str = "weir-timer";

/// One input record, as a processor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// The record's Kafka timestamp in milliseconds; processing time comes from here,
    /// never from the wall clock.
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: BTreeMap<String, Bytes>,
}

impl InputRecord {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name).map(|v| v.as_ref())
    }

    /// True when this record is a timer the processor scheduled earlier.
    pub fn is_timer(&self) -> bool {
        self.headers.contains_key(TIMER_HEADER)
    }

    /// The `{topic}:{partition}:{offset}` position that names this record.
    pub fn position(&self) -> String {
        Position(self).to_string()
    }

    /// The id of this record's `n`th output (the `weir-id` header): `{position}:{n}`,
    /// formatted in one go on the per-record path.
    pub fn output_id(&self, n: usize) -> String {
        format!("{}:{n}", Position(self))
    }
}

/// Writes a record's `{topic}:{partition}:{offset}` into whatever is being formatted.
struct Position<'a>(&'a InputRecord);

impl std::fmt::Display for Position<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let record = self.0;
        write!(f, "{}:{}:{}", record.topic, record.partition, record.offset)
    }
}

/// A record a processor forwards: the caller picks topic and partition per record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    pub topic: String,
    pub partition: i32,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: BTreeMap<String, Bytes>,
}

impl OutputRecord {
    /// A record with a key and a value and no headers.
    pub fn new(
        topic: impl Into<String>,
        partition: i32,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Self {
        Self::keyed(topic, partition, key, Some(value.into()))
    }

    /// A record with a key and no headers: `value`, or without one a delete (a
    /// tombstone) of the key.
    pub fn keyed(
        topic: impl Into<String>,
        partition: i32,
        key: impl Into<Bytes>,
        value: Option<Bytes>,
    ) -> Self {
        Self {
            topic: topic.into(),
            partition,
            key: Some(key.into()),
            value,
            headers: BTreeMap::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }
}

/// Why processing one record failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessingError {
    /// The record itself is bad (does not decode, breaks a rule). It goes to the
    /// dead-letter topic with this reason and processing continues.
    #[error("{0}")]
    Record(String),
    /// Something other than the record failed (storage). The task stops and is
    /// restarted from its last commit; the record is not dead-lettered.
    #[error("{0}")]
    Fatal(String),
}

impl ProcessingError {
    /// A bad-record error with a reason a person can act on.
    pub fn record(reason: impl Into<String>) -> Self {
        Self::Record(reason.into())
    }
}

impl From<weir_state::StateError> for ProcessingError {
    fn from(error: weir_state::StateError) -> Self {
        match error {
            // A stored value that does not decode is the data's fault, not the disk's.
            weir_state::StateError::Decode { .. } => Self::Record(error.to_string()),
            other => Self::Fatal(other.to_string()),
        }
    }
}

/// User code that handles the records of one source.
pub trait Processor: Send + 'static {
    /// Called once each time the task opens (at start, and again after a restart from
    /// its last commit), once its state is restored and before its first record: a
    /// processor that keeps something derived from its stores (a gauge, a cache)
    /// rebuilds it here. A processor that must undo something when its task closes
    /// does it in `Drop`. An error is fatal: the task is opened again.
    fn init(&mut self, ctx: &InitContext<'_>) -> Result<(), ProcessingError> {
        let _ = ctx;
        Ok(())
    }

    /// Handles one record: read and write stores, forward records, schedule timers.
    /// Everything it does through `ctx` takes effect only if it returns `Ok`.
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, '_>,
        record: &InputRecord,
    ) -> Result<(), ProcessingError>;
}
