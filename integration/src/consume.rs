//! Reading what weir wrote: consume a topic from the beginning until a condition holds,
//! or fail at a deadline with a listing of everything that was seen.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

use prost::Message;
use weir_topology::kafka::KafkaClient;

/// How long one fetch waits at the broker for new records.
const FETCH_WAIT: Duration = Duration::from_millis(200);
/// How many records a failure message lists before summarizing the rest.
const LISTED_ON_FAILURE: usize = 40;

/// One record as a test sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: BTreeMap<String, Vec<u8>>,
}

impl ConsumedRecord {
    /// The value decoded as `M`; panics naming the record when it does not decode.
    pub fn decode<M: Message + Default>(&self) -> M {
        let value = self.value.as_deref().unwrap_or_default();
        M::decode(value).unwrap_or_else(|e| {
            panic!(
                "record {}@{} does not decode: {e}",
                self.partition, self.offset
            )
        })
    }

    /// The key as text (lossy), or `""` for a null key.
    pub fn key_str(&self) -> String {
        String::from_utf8_lossy(self.key.as_deref().unwrap_or_default()).into_owned()
    }

    /// A header as text (lossy).
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn describe(&self) -> String {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
            .collect();
        format!(
            "p{}@{} key={:?} value={} headers=[{}]",
            self.partition,
            self.offset,
            self.key_str(),
            self.value
                .as_ref()
                .map_or("null".to_owned(), |v| format!("{} bytes", v.len())),
            headers.join(", ")
        )
    }
}

/// Reads every partition of `topic` from the start until `done` returns true for all
/// records seen so far, and returns them. Past `timeout`, panics with `what` and a
/// listing of what was seen, so a failing test says what it got instead.
pub async fn consume_until(
    client: &KafkaClient,
    topic: &str,
    partitions: i32,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&[ConsumedRecord]) -> bool,
) -> Vec<ConsumedRecord> {
    let deadline = Instant::now() + timeout;
    let mut handles = Vec::new();
    for partition in 0..partitions {
        let handle = client
            .partition(topic, partition)
            .await
            .unwrap_or_else(|e| panic!("consuming {topic}: {e}"));
        let start = handle
            .earliest_offset()
            .await
            .unwrap_or_else(|e| panic!("consuming {topic}: {e}"));
        handles.push((handle, start));
    }
    let mut seen = Vec::new();
    loop {
        if done(&seen) {
            return seen;
        }
        if Instant::now() >= deadline {
            panic!("{}", failure_message(topic, what, timeout, &seen));
        }
        for (handle, next) in &mut handles {
            let (records, _high_watermark) = handle
                .fetch(
                    *next,
                    4 * 1024 * 1024,
                    FETCH_WAIT / u32::try_from(partitions.max(1)).unwrap_or(1),
                )
                .await
                .unwrap_or_else(|e| panic!("consuming {topic}: {e}"));
            for record in records {
                *next = record.offset + 1;
                seen.push(ConsumedRecord {
                    partition: handle.partition(),
                    offset: record.offset,
                    key: record.record.key,
                    value: record.record.value,
                    headers: record.record.headers,
                });
            }
        }
    }
}

fn failure_message(topic: &str, what: &str, timeout: Duration, seen: &[ConsumedRecord]) -> String {
    let mut message = format!(
        "waited {timeout:?} on {topic} for {what}; saw {} records",
        seen.len()
    );
    for record in seen.iter().take(LISTED_ON_FAILURE) {
        let _ = write!(message, "\n  {}", record.describe());
    }
    if seen.len() > LISTED_ON_FAILURE {
        let _ = write!(message, "\n  … and {} more", seen.len() - LISTED_ON_FAILURE);
    }
    message
}
