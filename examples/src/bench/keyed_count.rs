//! Workload 2, keyed-count: the input through the keyed-count processor (a counter per
//! key read, incremented and written back, one output per record, the full commit
//! protocol), run as its own process (the `keyed-count` binary of the same build) with
//! an empty state directory, so its peak RSS is its own.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use weir_topology::kafka::{KafkaClient, TopicPartition};

use super::{BenchConfig, PARTITIONS, memory, rate};

/// How long the processor may take to start its tasks.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the output may stand still before the run is given up.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopping processor may take to commit and exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The running keyed-count process.
#[derive(Debug)]
pub struct Processor {
    child: Child,
    pid: u32,
    ready_at: Instant,
    log: PathBuf,
}

impl Processor {
    /// Starts `keyed-count run` on an emptied state directory and waits until it reports
    /// its tasks running. Its log goes to `{work_dir}/keyed-count.log`.
    pub async fn start(config: &BenchConfig) -> anyhow::Result<Self> {
        let state = config.work_dir.join("state");
        if state.exists() {
            std::fs::remove_dir_all(&state)
                .with_context(|| format!("emptying {}", state.display()))?;
        }
        std::fs::create_dir_all(&config.work_dir)
            .with_context(|| format!("creating {}", config.work_dir.display()))?;
        let log = config.work_dir.join("keyed-count.log");
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(&config.processor_binary)
            .arg("run")
            .env(
                "LHS_KAFKA_BOOTSTRAP_SERVERS",
                config.kafka.bootstrap_servers.join(","),
            )
            .env("LHS_CLUSTER_ID", &config.cluster_id)
            .env("LHS_STATE_DIR", &state)
            .env("COUNT_PARTITIONS", PARTITIONS.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", config.processor_binary.display()))?;
        let pid = child.id().context("the keyed-count process has no pid")?;
        let stdout = child
            .stdout
            .take()
            .context("the keyed-count process has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if line.contains("running tasks") {
                    return anyhow::Ok(());
                }
            }
            anyhow::bail!("keyed-count exited before its tasks ran")
        })
        .await;
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.context(format!("see {}", log.display()))),
            Err(_) => anyhow::bail!(
                "keyed-count did not start within {START_TIMEOUT:?}; see {}",
                log.display()
            ),
        }
        let ready_at = Instant::now();
        // The rest of its stdout ("stopped") is read so the pipe never fills.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            pid,
            ready_at,
            log,
        })
    }

    /// Waits until the output topic holds one record per input record and returns the
    /// input records per second, timed from the tasks' start.
    pub async fn count_input(
        &self,
        config: &BenchConfig,
        client: &KafkaClient,
    ) -> anyhow::Result<f64> {
        let output = crate::keyed_count::output_topic(&config.cluster_id);
        let partitions = output_partitions(client, &output).await?;
        let mut seen = 0;
        let mut progress_at = Instant::now();
        loop {
            let produced = output_records(&partitions).await?;
            if produced >= config.records {
                return Ok(rate(config.records, self.ready_at.elapsed()));
            }
            if produced > seen {
                seen = produced;
                progress_at = Instant::now();
            } else if progress_at.elapsed() > STALL_TIMEOUT {
                anyhow::bail!(
                    "keyed-count stalled at {seen} of {} outputs; see {}",
                    config.records,
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process's peak resident set so far, in bytes (`VmHWM`).
    pub fn peak_rss(&self) -> Option<u64> {
        memory::peak_rss_of(self.pid)
    }

    /// Asks the process to commit and stop (SIGTERM), and kills it if it has not within
    /// [`STOP_TIMEOUT`].
    pub async fn stop(mut self) {
        let signalled = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await
            .is_ok_and(|s| s.success());
        if signalled
            && tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
                .await
                .is_ok()
        {
            return;
        }
        eprintln!("keyed-count did not stop on SIGTERM; killing it");
        if let Err(e) = self.child.kill().await {
            eprintln!("could not kill keyed-count (pid {}): {e}", self.pid);
        }
    }
}

/// Handles on every partition of a topic the processor created.
pub async fn output_partitions(
    client: &KafkaClient,
    topic: &str,
) -> anyhow::Result<Vec<TopicPartition>> {
    let mut partitions = Vec::new();
    for partition in 0..PARTITIONS {
        partitions.push(client.partition(topic, partition).await?);
    }
    Ok(partitions)
}

/// Records in the topic: the sum of its partitions' high watermarks (the run's topics
/// start empty).
async fn output_records(partitions: &[TopicPartition]) -> anyhow::Result<u64> {
    let mut total = 0;
    for partition in partitions {
        total += u64::try_from(partition.high_watermark().await?).unwrap_or(0);
    }
    Ok(total)
}
