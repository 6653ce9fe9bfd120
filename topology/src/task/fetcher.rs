//! Prefetching a task's input: one fetch loop per source partition, running ahead of
//! the task so the next records are already here when the task has processed (and
//! committed) the previous ones. The loops hand fetched records to the task over one
//! bounded channel, so a task that falls behind stops its loops from reading further.
//!
//! [`read_range`] does the same for a bounded range (a changelog being restored), so
//! the next records arrive while the previous ones are written to RocksDB.
//!
//! The loops own the read-ahead position only; what counts as processed is the task's
//! business (its sources' positions, committed with each batch). A loop that finds its
//! position past the partition's end (the topic was recreated, or the broker lost
//! records) starts the partition again from its first offset and says so at ERROR.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::kafka::{KafkaError, RecordAndOffset, TopicPartition};

/// Bytes per input fetch.
const FETCH_BYTES: i32 = 4 * 1024 * 1024;
/// Fetched record sets waiting for the task, per source (bounds the read-ahead).
const READ_AHEAD: usize = 2;
/// How long [`read_range`] waits before asking again after a fetch below the end
/// returned no records.
const EMPTY_FETCH_PAUSE: Duration = Duration::from_millis(20);
/// Pause after a failed fetch before trying again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Records of one source partition, in offset order.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// Index of the source in the task's list.
    pub(crate) source: usize,
    /// Records at or after the position the loop asked for; what the task has not
    /// taken yet stays here.
    pub(crate) records: std::vec::IntoIter<RecordAndOffset>,
    /// The partition's high watermark when they were read.
    pub(crate) high_watermark: i64,
}

/// Where one fetch loop starts, and what it reports on.
#[derive(Debug)]
pub(crate) struct SourceFetch {
    pub(crate) topic: Arc<str>,
    pub(crate) handle: TopicPartition,
    /// First offset to read.
    pub(crate) position: i64,
    /// How long the broker may hold a fetch open while the partition has nothing new
    /// ([`crate::RuntimeConfig::fetch_max_wait`]).
    pub(crate) max_wait: Duration,
    /// The source's lag (high watermark minus the offset read up to).
    pub(crate) lag: metrics::Gauge,
    /// Counts failed fetches.
    pub(crate) retries: metrics::Counter,
}

/// The fetch loops of one task; dropping it stops them.
#[derive(Debug)]
pub(crate) struct Prefetcher {
    fetched: mpsc::Receiver<Fetched>,
    _loops: JoinSet<()>,
}

impl Prefetcher {
    /// Starts a fetch loop per source.
    pub(crate) fn start(task: &str, sources: Vec<SourceFetch>) -> Self {
        let (sender, fetched) = mpsc::channel(READ_AHEAD * sources.len().max(1));
        let mut loops = JoinSet::new();
        for (index, source) in sources.into_iter().enumerate() {
            loops.spawn(fetch_loop(task.to_owned(), index, source, sender.clone()));
        }
        Self {
            fetched,
            _loops: loops,
        }
    }

    /// The next fetched records, waiting at most `wait`; `None` when nothing came.
    pub(crate) async fn next(&mut self, wait: Duration) -> Option<Fetched> {
        tokio::time::timeout(wait, self.fetched.recv())
            .await
            .ok()
            .flatten()
    }

    /// Whether fetched records are waiting for the task.
    pub(crate) fn has_waiting(&self) -> bool {
        !self.fetched.is_empty()
    }
}

/// Reads one source partition from `source.position` for as long as the task wants
/// records.
async fn fetch_loop(
    task: String,
    index: usize,
    source: SourceFetch,
    sender: mpsc::Sender<Fetched>,
) {
    let SourceFetch {
        topic,
        handle,
        mut position,
        max_wait,
        lag,
        retries,
    } = source;
    loop {
        match handle.fetch(position, FETCH_BYTES, max_wait).await {
            Ok((records, high_watermark)) if records.is_empty() && position > high_watermark => {
                // Nothing would ever arrive at this position: read the partition again
                // from its first offset rather than stall without a word.
                match handle.earliest_offset().await {
                    Ok(earliest) => {
                        tracing::error!(
                            task, %topic, partition = handle.partition(), position,
                            high_watermark, earliest,
                            "input position is past the end of its partition (the topic was \
                             recreated or lost records); reading it again from its first offset"
                        );
                        position = earliest;
                    }
                    Err(error) => {
                        retries.increment(1);
                        tracing::warn!(task, %error, "list earliest offset failed; retrying");
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                }
            }
            Ok((records, high_watermark)) => {
                // A compressed batch may start before the position asked for.
                let records: Vec<RecordAndOffset> = records
                    .into_iter()
                    .filter(|r| r.offset >= position)
                    .collect();
                if let Some(last) = records.last() {
                    position = last.offset + 1;
                }
                lag.set((high_watermark - position).max(0) as f64);
                if records.is_empty() {
                    continue;
                }
                let fetched = Fetched {
                    source: index,
                    records: records.into_iter(),
                    high_watermark,
                };
                if sender.send(fetched).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                retries.increment(1);
                tracing::warn!(task, %error, "fetch failed; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// Reads `[start, end)` of a partition ahead of the caller, `fetch_bytes` per fetch and
/// at most [`READ_AHEAD`] fetches ahead. Record sets arrive in offset order, each
/// holding only offsets in the range; the channel closes after the last one, or after
/// the first error (which it carries). A fetch answered with no records at all is asked
/// again after a pause while the partition's high watermark is past the position (a
/// broker under load may answer so below its end; ending there restored a task with
/// none of its state, as `make bench` once showed); a high watermark at or before the
/// position (a truncated log), or records only before it, end the range early.
pub(crate) fn read_range(
    handle: TopicPartition,
    start: i64,
    end: i64,
    fetch_bytes: i32,
) -> ReadRange {
    let (sender, received) = mpsc::channel(READ_AHEAD);
    let reader = tokio::spawn(async move {
        let mut offset = start;
        while offset < end {
            let (records, high_watermark) =
                match handle.fetch(offset, fetch_bytes, Duration::ZERO).await {
                    Ok(fetched) => fetched,
                    Err(error) => {
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                };
            if records.is_empty() && high_watermark > offset {
                tokio::time::sleep(EMPTY_FETCH_PAUSE).await;
                continue;
            }
            let records: Vec<RecordAndOffset> = records
                .into_iter()
                .filter(|r| r.offset >= offset && r.offset < end)
                .collect();
            // Records only before the position: a compacted batch whose later records
            // are gone, at the end of what is left of the range.
            let Some(last) = records.last() else { return };
            offset = last.offset + 1;
            if sender.send(Ok(records)).await.is_err() {
                return;
            }
        }
    });
    ReadRange { received, reader }
}

/// The records of a range being read ahead; dropping it stops the reading.
#[derive(Debug)]
pub(crate) struct ReadRange {
    received: mpsc::Receiver<Result<Vec<RecordAndOffset>, KafkaError>>,
    reader: tokio::task::JoinHandle<()>,
}

impl ReadRange {
    /// The next records of the range, `None` once it is read.
    pub(crate) async fn next(&mut self) -> Option<Result<Vec<RecordAndOffset>, KafkaError>> {
        self.received.recv().await
    }
}

impl Drop for ReadRange {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
