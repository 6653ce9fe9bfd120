//! One queue partition of a worker: fetch its records, hand each task to a task
//! pipeline while fewer than `max_in_flight` run, and move the partition's position
//! to the first task not yet reported.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use weir_proto::{ScheduledTask, VariableValue};
use weir_topology::kafka::{RecordAndOffset, TopicPartition};

use super::TaskError;
use super::backoff::Backoff;
use super::offsets::Positions;
use super::shared::Shared;
use super::task_pipeline::{AbortOnDrop, serve_task};

/// Most bytes one queue fetch asks for.
const FETCH_MAX_BYTES: i32 = 1024 * 1024;
/// How long one queue fetch waits at the broker for new tasks.
const FETCH_WAIT: Duration = Duration::from_millis(500);

/// Serves one queue partition: takes fetched tasks while fewer than `max_in_flight`
/// run, and moves the partition's position to the first task not yet reported.
pub(super) async fn serve_partition<F, Fut>(
    shared: Arc<Shared>,
    function: Arc<F>,
    partition: i32,
    start: i64,
    positions: Arc<Mutex<Positions>>,
    mut stopped: watch::Receiver<bool>,
) where
    F: Fn(ScheduledTask) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<VariableValue, TaskError>> + Send + 'static,
{
    let (records, mut fetched) = mpsc::channel(shared.max_in_flight);
    let fetcher = AbortOnDrop(tokio::spawn(fetch_queue(
        Arc::clone(&shared),
        partition,
        start,
        records,
    )));
    let mut tracker = Tracker {
        partition,
        next: start,
        running: BTreeSet::new(),
        positions,
    };
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut offsets: HashMap<tokio::task::Id, i64> = HashMap::new();
    while !*stopped.borrow() {
        tokio::select! {
            biased;
            _ = stopped.changed() => break,
            Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let id = match joined {
                    Ok((id, ())) => id,
                    Err(error) => {
                        tracing::error!(task_def = %shared.task_def, partition, %error, "task pipeline ended abnormally");
                        error.id()
                    }
                };
                if let Some(offset) = offsets.remove(&id) {
                    tracker.finished(offset);
                }
            }
            Some(record) = fetched.recv(), if tasks.len() < shared.max_in_flight => {
                let offset = record.offset;
                match decode_task(&shared, partition, record) {
                    Some(task) => {
                        tracker.started(offset);
                        let handle = tasks.spawn(serve_task(Arc::clone(&shared), Arc::clone(&function), task));
                        offsets.insert(handle.id(), offset);
                    }
                    None => tracker.skipped(offset),
                }
            }
        }
    }
    drop(fetcher);
    let drain = async {
        while let Some(joined) = tasks.join_next_with_id().await {
            let id = match joined {
                Ok((id, ())) => id,
                Err(error) => error.id(),
            };
            if let Some(offset) = offsets.remove(&id) {
                tracker.finished(offset);
            }
        }
    };
    if tokio::time::timeout(shared.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            task_def = %shared.task_def, partition, abandoned = tasks.len(),
            "shutdown grace over; unfinished tasks will be delivered again"
        );
        tasks.abort_all();
    }
}

/// The offsets one partition has taken and not yet finished, and the position that
/// follows from them.
struct Tracker {
    partition: i32,
    /// The offset after the last record taken from the fetcher.
    next: i64,
    running: BTreeSet<i64>,
    positions: Arc<Mutex<Positions>>,
}

impl Tracker {
    fn started(&mut self, offset: i64) {
        self.running.insert(offset);
        self.next = offset + 1;
        self.publish();
    }

    fn skipped(&mut self, offset: i64) {
        self.next = offset + 1;
        self.publish();
    }

    fn finished(&mut self, offset: i64) {
        self.running.remove(&offset);
        self.publish();
    }

    /// Everything below the first running task is reported.
    fn publish(&self) {
        let position = self.running.first().copied().unwrap_or(self.next);
        self.positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .current
            .insert(self.partition, position);
    }
}

/// Fetches the queue partition from `offset` on and hands each record to the partition
/// loop; retries failed fetches, and skips ahead if the log was truncated past it.
async fn fetch_queue(
    shared: Arc<Shared>,
    partition: i32,
    mut offset: i64,
    records: mpsc::Sender<RecordAndOffset>,
) {
    let mut handle: Option<TopicPartition> = None;
    let mut backoff = Backoff::new();
    loop {
        let current = match &handle {
            Some(current) => current.clone(),
            None => match shared.client.partition(&shared.queue, partition).await {
                Ok(fresh) => {
                    handle = Some(fresh.clone());
                    fresh
                }
                Err(error) => {
                    tracing::warn!(queue = %shared.queue, partition, %error, "connecting to the queue failed; retrying");
                    backoff.wait().await;
                    continue;
                }
            },
        };
        match current.fetch(offset, FETCH_MAX_BYTES, FETCH_WAIT).await {
            Ok((fetched, _high_watermark)) => {
                backoff.reset();
                for record in fetched {
                    if record.offset < offset {
                        continue;
                    }
                    offset = record.offset + 1;
                    if records.send(record).await.is_err() {
                        return;
                    }
                }
            }
            Err(error) => {
                tracing::warn!(queue = %shared.queue, partition, offset, %error, "fetching tasks failed; retrying");
                if let Ok(earliest) = current.earliest_offset().await
                    && earliest > offset
                {
                    tracing::warn!(
                        queue = %shared.queue, partition, from = offset, to = earliest,
                        "tasks left the log before they were served; skipping ahead"
                    );
                    offset = earliest;
                }
                handle = None;
                backoff.wait().await;
            }
        }
    }
}

/// The `ScheduledTask` in a queue record, or `None` (logged and counted) when the
/// record is not one.
fn decode_task(shared: &Shared, partition: i32, record: RecordAndOffset) -> Option<ScheduledTask> {
    let offset = record.offset;
    let problem = match record.record.value {
        None => "record has no value".to_owned(),
        Some(value) => match ScheduledTask::decode(value.as_slice()) {
            Err(error) => format!("not a ScheduledTask: {error}"),
            Ok(task)
                if task
                    .task_run_id
                    .as_ref()
                    .and_then(|id| id.wf_run_id.as_ref())
                    .is_none() =>
            {
                "ScheduledTask without a task run id".to_owned()
            }
            Ok(task) => return Some(task),
        },
    };
    tracing::warn!(queue = %shared.queue, partition, offset, problem, "skipping a queue record");
    shared.counters.skipped.fetch_add(1, Ordering::Relaxed);
    shared.metrics.skipped.increment(1);
    None
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn position_waits_for_the_first_unreported_task() {
        let positions = Arc::new(Mutex::new(Positions {
            current: BTreeMap::new(),
            committed: BTreeMap::new(),
        }));
        let mut tracker = Tracker {
            partition: 2,
            next: 10,
            running: BTreeSet::new(),
            positions: Arc::clone(&positions),
        };
        let position = || {
            positions
                .lock()
                .expect("positions lock")
                .current
                .get(&2)
                .copied()
        };
        tracker.started(10);
        tracker.skipped(11);
        tracker.started(12);
        assert_eq!(position(), Some(10));
        tracker.finished(12);
        assert_eq!(position(), Some(10), "10 still runs");
        tracker.finished(10);
        assert_eq!(position(), Some(13));
    }
}
