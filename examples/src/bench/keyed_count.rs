//! Workload 2, keyed-count: the input through the keyed-count processor (a counter per
//! key read, incremented and written back, one output per record, the full commit
//! protocol), run as its own process (the `keyed-count` binary of the same build) with
//! an empty state directory, so its peak RSS is its own. The restore workload starts the
//! same process on a seeded changelog and reads from its log when its tasks are ready.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::Command;
use weir_topology::kafka::KafkaClient;

use super::process::ChildProcess;
use super::{BenchConfig, EndOffsets, PARTITIONS, partitions, rate};

/// How long the output may stand still before the run is given up.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The log line a task writes once it has restored its state and is about to process.
const TASK_READY: &str = "task ready";
/// The processor's `LHS_FETCH_MAX_WAIT_MS`. Kafka answers a waiting fetch as soon as a
/// record arrives; the local broker looks again after half the remaining wait, so at
/// the default 50 ms a record could sit up to 25 ms before the processor saw it.
pub const PROCESSOR_FETCH_MAX_WAIT_MS: u64 = 10;

/// The running keyed-count process.
#[derive(Debug)]
pub struct Processor {
    process: ChildProcess,
}

/// Every task of the processor ready to process: when the bench saw the last one in the
/// log, and the changelog records each restored.
#[derive(Debug, Clone)]
pub struct TasksReady {
    pub at: Instant,
    /// Changelog records read by each task's restore, by task id.
    pub restored_records: BTreeMap<String, u64>,
}

impl Processor {
    /// Starts `keyed-count run` on an emptied `{work_dir}/state` and waits until it
    /// reports its tasks running (started; each restores its state first). Its log goes
    /// to `{work_dir}/keyed-count.log`.
    pub async fn start(config: &BenchConfig) -> anyhow::Result<Self> {
        let state = config.work_dir.join("state");
        if state.exists() {
            std::fs::remove_dir_all(&state)
                .with_context(|| format!("emptying {}", state.display()))?;
        }
        let mut command = Command::new(&config.processor_binary);
        command
            .arg("run")
            .env(
                "LHS_KAFKA_BOOTSTRAP_SERVERS",
                config.kafka.bootstrap_servers.join(","),
            )
            .env("LHS_CLUSTER_ID", &config.cluster_id)
            .env("LHS_STATE_DIR", &state)
            .env(
                "LHS_FETCH_MAX_WAIT_MS",
                PROCESSOR_FETCH_MAX_WAIT_MS.to_string(),
            )
            .env("COUNT_PARTITIONS", PARTITIONS.to_string());
        let process = ChildProcess::start(
            "keyed-count",
            command,
            config.work_dir.join("keyed-count.log"),
            "running tasks",
        )
        .await?;
        Ok(Self { process })
    }

    /// When the process was spawned.
    pub fn started_at(&self) -> Instant {
        self.process.started_at()
    }

    /// Waits (at most `timeout`) until the log says every one of the `tasks` tasks is
    /// ready, each with the changelog records its restore read.
    pub async fn wait_for_tasks_ready(
        &self,
        tasks: usize,
        timeout: Duration,
    ) -> anyhow::Result<TasksReady> {
        let deadline = Instant::now() + timeout;
        loop {
            let restored_records = tasks_ready_in(&self.process.log_text()?);
            if restored_records.len() >= tasks {
                return Ok(TasksReady {
                    at: Instant::now(),
                    restored_records,
                });
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "{} of {tasks} keyed-count tasks ready within {timeout:?}; see {}",
                    restored_records.len(),
                    self.process.log().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the output topic holds one record per input record and returns the
    /// input records per second, timed from the tasks' start.
    pub async fn count_input(
        &self,
        config: &BenchConfig,
        client: &KafkaClient,
    ) -> anyhow::Result<f64> {
        let output = crate::keyed_count::output_topic(&config.cluster_id);
        let mut outputs = EndOffsets::new(partitions(client, &output, PARTITIONS).await?).await?;
        let mut seen = 0;
        let mut progress_at = Instant::now();
        loop {
            let produced = outputs.total().await?;
            if produced >= config.records {
                return Ok(rate(config.records, self.process.ready_at().elapsed()));
            }
            if produced > seen {
                seen = produced;
                progress_at = Instant::now();
            } else if progress_at.elapsed() > STALL_TIMEOUT {
                anyhow::bail!(
                    "keyed-count stalled at {seen} of {} outputs; see {}",
                    config.records,
                    self.process.log().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process's peak resident set so far, in bytes (`VmHWM`).
    pub fn peak_rss(&self) -> Option<u64> {
        self.process.peak_rss()
    }

    /// Asks the process to commit and stop, killing it if it lingers.
    pub async fn stop(self) {
        self.process.stop().await;
    }
}

/// The tasks a keyed-count log says are ready, each with the `restored_records` of its
/// `task ready` line (the first such line of a task that was reopened).
pub fn tasks_ready_in(log: &str) -> BTreeMap<String, u64> {
    let mut ready = BTreeMap::new();
    for line in log.lines().filter(|l| l.contains(TASK_READY)) {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
        };
        if let (Some(task), Some(records)) = (
            field("task"),
            field("restored_records").and_then(|n| n.parse::<u64>().ok()),
        ) {
            ready.entry(task.to_owned()).or_insert(records);
        }
    }
    ready
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_tasks_are_read_from_the_log() {
        let log = "\
2026-11-21T12:00:00.000Z  INFO weir_topology::runtime: runtime started tasks=[\"count-0\", \"count-1\"]
2026-11-21T12:00:01.000Z  INFO weir_topology::task::restore: restore finished task=\"count-0\" records=250051 abandoned_keys=0 epoch=2 elapsed_ms=900
2026-11-21T12:00:01.000Z  INFO weir_topology::task::stream_task: task ready task=count-0 epoch=2 restored_records=250051
2026-11-21T12:00:02.000Z  INFO weir_topology::task::stream_task: task ready task=count-1 epoch=1 restored_records=0
2026-11-21T12:00:09.000Z  INFO weir_topology::task::stream_task: task ready task=count-1 epoch=2 restored_records=7
";
        let ready = tasks_ready_in(log);
        assert_eq!(
            ready,
            BTreeMap::from([("count-0".to_owned(), 250_051), ("count-1".to_owned(), 0)])
        );
        assert!(tasks_ready_in("no tasks here\n").is_empty());
    }
}
