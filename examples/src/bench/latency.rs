//! Workload 5, latency: the keyed-count processor fed at half the rate it just reached,
//! each record timed from its production to its output's arrival. An output carries its
//! input's timestamp, which the producer sets just before sending, so a record's
//! latency is the time a consumer first sees its output minus that timestamp: append,
//! processing, the commit protocol and the output's acknowledgement, plus up to one
//! produce round trip and one fetch (an upper bound, to the millisecond).
//!
//! Its limit is the same measurement through a raw forwarder at the same rate: the
//! bare client fetching each partition (with the processor's fetch wait) and producing
//! what it got to another topic, no state and no commit protocol, on topics of its own
//! so the processor sees none of it.

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinSet;
use weir_topology::kafka::{KafkaAdmin, KafkaClient, Record, TopicPartition, TopicSpec};

use super::keyed_count::PROCESSOR_FETCH_MAX_WAIT_MS;
use super::report::{Row, Target, percentile};
use super::{
    BenchConfig, PARTITIONS, fetch_from, input_record, input_topic, partition_of, partitions, rate,
};

/// Bytes asked for in one fetch.
const FETCH_BYTES: i32 = 1024 * 1024;
/// How often the producer sends what is due.
const TICK: Duration = Duration::from_millis(10);
/// The consumer's fetch wait: short, because a broker that polls for new records
/// instead of answering when they arrive (the local one sleeps half the remaining wait
/// between looks) would add up to half of it to every figure. 10 ms is the shortest
/// wait the client asks for.
const CONSUMER_FETCH_WAIT: Duration = Duration::from_millis(10);
/// How long after the last record is produced its outputs may take to arrive.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long records are produced at the rate before any is timed: the processor may
/// still be committing the throughput workload's last batches when this one starts, and
/// a raw forwarder starts with cold connections; a steady state is what is measured.
pub const WARM_UP: Duration = Duration::from_secs(2);

/// What the latency workload measured.
#[derive(Debug, Clone)]
pub struct Latency {
    /// The rate asked for (half the keyed-count maximum).
    pub target_rate: f64,
    /// The rate the producer reached.
    pub offered_rate: f64,
    /// Records produced.
    pub produced: u64,
    /// One latency per output seen, in milliseconds.
    pub samples_ms: Vec<f64>,
}

impl Latency {
    /// One latency percentile, `None` with no sample.
    pub fn percentile(&self, q: f64) -> Option<f64> {
        percentile(&mut self.samples_ms.clone(), q)
    }

    /// p50, p99 (target at most 50 ms) and p999 rows, each against the raw forwarder's
    /// figure at the same rate, and the offered rate against the keyed-count maximum
    /// `keyed_max` (the target is for half of it).
    pub fn rows(&self, raw: Option<&Latency>, keyed_max: f64) -> Vec<Row> {
        let seen = self.samples_ms.len();
        let mut rows = Vec::new();
        for (figure, q, target) in [
            ("p50", 0.5, Target::None),
            ("p99", 0.99, Target::AtMost(50.0)),
            ("p999", 0.999, Target::None),
        ] {
            let limit = raw.and_then(|raw| raw.percentile(q));
            rows.push(match (self.percentile(q), limit) {
                (Some(ms), Some(limit)) => Row::measured("latency", figure, ms, "ms")
                    .against(&format!("raw forward {figure}"), limit)
                    .target(target),
                (Some(ms), None) => Row::measured("latency", figure, ms, "ms").target(target),
                (None, _) => {
                    Row::not_measured("latency", figure, "ms", target).note("no output arrived")
                }
            });
        }
        if let Some(raw) = raw {
            rows.push(
                Row::measured("latency", "raw forward offered records/s", raw.offered_rate, "rec/s")
                    .note(format!(
                        "the limit of the latency rows: {} records at {:.0} records/s asked through a forwarder of the bare client (fetch with a {PROCESSOR_FETCH_MAX_WAIT_MS} ms wait, produce, per partition) on topics of its own, timed the same way; {} outputs timed",
                        raw.produced,
                        raw.target_rate,
                        raw.samples_ms.len()
                    )),
            );
        }
        rows.push(
            Row::measured("latency", "offered records/s", self.offered_rate, "rec/s")
                .against("keyed-count max", keyed_max)
                .note(format!(
                    "{} records produced at {:.0} records/s asked{}, {seen} outputs timed from the input's timestamp to a consumer seeing the output (those produced in the first {} s, a warm-up, are not timed); the processor's fetch wait (LHS_FETCH_MAX_WAIT_MS) {PROCESSOR_FETCH_MAX_WAIT_MS} ms",
                    self.produced,
                    self.target_rate,
                    // Halving and doubling are exact: the rate is half unless fixed.
                    if self.target_rate * 2.0 == keyed_max {
                        ""
                    } else {
                        " (BENCH_LATENCY_RATE; the p99 target is for half the keyed-count max)"
                    },
                    WARM_UP.as_secs(),
                )),
        );
        rows
    }
}

/// Feeds the running processor `target_rate` records per second for the configured
/// duration (input records numbered after the throughput input) and times each output.
pub async fn run(
    config: &BenchConfig,
    client: &KafkaClient,
    target_rate: f64,
) -> anyhow::Result<Latency> {
    let output = crate::keyed_count::output_topic(&config.cluster_id);
    measure(config, client, target_rate, &input_topic(config), &output).await
}

/// The limit of [`run`]: the same rate and timing through a raw forwarder, on
/// `{cluster}_raw-forward-in` and `-out`.
pub async fn run_raw_forward(
    config: &BenchConfig,
    client: &KafkaClient,
    target_rate: f64,
) -> anyhow::Result<Latency> {
    let input = format!("{}_raw-forward-in", config.cluster_id);
    let output = format!("{}_raw-forward-out", config.cluster_id);
    KafkaAdmin::connect(&config.kafka)
        .await?
        .ensure_topics(&[
            TopicSpec::new(&input, PARTITIONS, 1),
            TopicSpec::new(&output, PARTITIONS, 1),
        ])
        .await?;
    let mut forwarders = JoinSet::new();
    for (from, to) in partitions(client, &input, PARTITIONS)
        .await?
        .into_iter()
        .zip(partitions(client, &output, PARTITIONS).await?)
    {
        let start = from.high_watermark().await?;
        forwarders.spawn(forward(from, to, start));
    }
    let measured = measure(config, client, target_rate, &input, &output).await;
    forwarders.abort_all();
    while let Some(done) = forwarders.join_next().await {
        if let Ok(Err(error)) = done {
            return Err(error.context("a raw forwarder failed"));
        }
    }
    measured
}

/// Copies one partition from `start` to another as records arrive, until aborted.
async fn forward(from: TopicPartition, to: TopicPartition, start: i64) -> anyhow::Result<()> {
    let wait = Duration::from_millis(PROCESSOR_FETCH_MAX_WAIT_MS);
    let mut next = start;
    loop {
        let batch: Vec<Record> = fetch_from(&from, &mut next, FETCH_BYTES, wait)
            .await?
            .into_iter()
            .map(|r| r.record)
            .collect();
        if !batch.is_empty() {
            to.produce(batch).await?;
        }
    }
}

/// Produces `target_rate` records per second to `input` for the configured duration and
/// times each one's arrival on `output`, partition by partition.
async fn measure(
    config: &BenchConfig,
    client: &KafkaClient,
    target_rate: f64,
    input: &str,
    output: &str,
) -> anyhow::Result<Latency> {
    let outputs = partitions(client, output, PARTITIONS).await?;
    let (expected_tx, expected) = watch::channel(None::<Vec<u64>>);
    let mut consumers = JoinSet::new();
    let mut starts = Vec::new();
    for partition in &outputs {
        starts.push(partition.high_watermark().await?);
    }
    let inputs = partitions(client, input, PARTITIONS).await?;
    let timed_from = chrono::Utc::now()
        + chrono::Duration::from_std(WARM_UP).context("the warm-up is too long")?;
    for (partition, start) in outputs.into_iter().zip(starts) {
        consumers.spawn(consume(partition, start, timed_from, expected.clone()));
    }

    let mut produced_per_partition = vec![0_u64; inputs.len()];
    let mut sends = JoinSet::new();
    let mut next = config.records;
    let mut ticker = tokio::time::interval(TICK);
    let started = Instant::now();
    while started.elapsed() < WARM_UP + config.latency_duration {
        ticker.tick().await;
        let due_total = (target_rate * started.elapsed().as_secs_f64()).floor();
        // A count of records, far below 2^53.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let due = (due_total as u64 + config.records).saturating_sub(next);
        if due == 0 {
            continue;
        }
        let now = chrono::Utc::now();
        let mut batches: Vec<Vec<Record>> = vec![Vec::new(); inputs.len()];
        for i in next..next + due {
            let partition = usize::try_from(partition_of(i)).unwrap_or(0);
            batches[partition].push(input_record(i, now));
            produced_per_partition[partition] += 1;
        }
        next += due;
        for (handle, batch) in inputs.iter().zip(batches) {
            if !batch.is_empty() {
                let handle = handle.clone();
                sends.spawn(async move { handle.produce(batch).await });
            }
        }
    }
    while let Some(sent) = sends.join_next().await {
        sent.context("a latency producer panicked")??;
    }
    let produced = next - config.records;
    let offered_rate = rate(produced, started.elapsed());
    expected_tx.send_replace(Some(produced_per_partition));

    let mut samples_ms = Vec::new();
    while let Some(done) = consumers.join_next().await {
        samples_ms.extend(done.context("a latency consumer panicked")??);
    }
    Ok(Latency {
        target_rate,
        offered_rate,
        produced,
        samples_ms,
    })
}

/// Reads one output partition from `start`, timing each record produced at or after
/// `timed_from`, until it holds as many new records as were produced to its input
/// partition (or the drain timeout passes).
async fn consume(
    partition: TopicPartition,
    start: i64,
    timed_from: chrono::DateTime<chrono::Utc>,
    mut expected: watch::Receiver<Option<Vec<u64>>>,
) -> anyhow::Result<Vec<f64>> {
    let index = usize::try_from(partition.partition()).unwrap_or(0);
    let mut seen = 0_u64;
    let mut samples = Vec::new();
    let mut next = start;
    let mut drain_deadline = None;
    loop {
        let records = fetch_from(&partition, &mut next, FETCH_BYTES, CONSUMER_FETCH_WAIT).await?;
        let now = chrono::Utc::now();
        seen += u64::try_from(records.len()).unwrap_or(u64::MAX);
        for record in records {
            if record.record.timestamp < timed_from {
                continue;
            }
            let waited = now - record.record.timestamp;
            // Microseconds of one record's latency, far below 2^53.
            #[allow(clippy::cast_precision_loss)]
            let micros = waited.num_microseconds().unwrap_or(i64::MAX) as f64;
            samples.push(micros / 1000.0);
        }
        let wanted = expected
            .borrow_and_update()
            .as_ref()
            .map(|counts| counts.get(index).copied().unwrap_or(0));
        if let Some(wanted) = wanted {
            if seen >= wanted {
                return Ok(samples);
            }
            let deadline = *drain_deadline.get_or_insert_with(|| Instant::now() + DRAIN_TIMEOUT);
            if Instant::now() > deadline {
                eprintln!(
                    "latency: partition {index} saw {seen} of {wanted} outputs within {DRAIN_TIMEOUT:?}"
                );
                return Ok(samples);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency(samples_ms: Vec<f64>) -> Latency {
        Latency {
            target_rate: 1_000.0,
            offered_rate: 990.0,
            produced: 100,
            samples_ms,
        }
    }

    #[test]
    fn each_percentile_stands_against_the_raw_forwarders() {
        let weir = latency((1..=100).map(f64::from).collect());
        let raw = latency((1..=100).map(|ms| f64::from(ms) / 10.0).collect());
        let rows = weir.rows(Some(&raw), 2_000.0);
        let p99 = rows
            .iter()
            .find(|row| row.figure == "p99")
            .expect("a p99 row");
        assert_eq!(p99.value, Some(99.0));
        assert_eq!(p99.baseline.as_ref().map(|b| b.value), Some(9.9));
        assert_eq!(p99.target, Target::AtMost(50.0));
        assert!(
            rows.iter().any(
                |row| row.figure == "raw forward offered records/s" && row.value == Some(990.0)
            )
        );

        let alone = weir.rows(None, 2_000.0);
        assert!(
            alone
                .iter()
                .all(|row| row.baseline.is_none() || row.figure == "offered records/s")
        );
        assert!(
            !alone
                .iter()
                .any(|row| row.figure.starts_with("raw forward"))
        );
    }

    #[test]
    fn a_fixed_rate_says_the_target_is_for_half_the_maximum() {
        let weir = latency(vec![1.0]);
        let offered = |rows: Vec<Row>| {
            rows.into_iter()
                .find(|row| row.figure == "offered records/s")
                .expect("an offered row")
        };
        let half = offered(weir.rows(None, 2_000.0));
        assert_eq!(half.baseline.as_ref().map(|b| b.value), Some(2_000.0));
        assert!(
            !half
                .note
                .as_deref()
                .unwrap_or_default()
                .contains("BENCH_LATENCY_RATE"),
            "{half:?}"
        );
        let fixed = offered(weir.rows(None, 5_000.0));
        assert_eq!(fixed.baseline.as_ref().map(|b| b.value), Some(5_000.0));
        assert!(
            fixed
                .note
                .as_deref()
                .unwrap_or_default()
                .contains("BENCH_LATENCY_RATE"),
            "{fixed:?}"
        );
    }
}
