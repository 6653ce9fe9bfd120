//! Workload 5, latency: the keyed-count processor fed at half the rate it just reached,
//! each record timed from its production to its output's arrival. An output carries its
//! input's timestamp, which the producer sets just before sending, so a record's
//! latency is the time a consumer first sees its output minus that timestamp: append,
//! processing, the commit protocol and the output's acknowledgement, plus up to one
//! produce round trip and one fetch (an upper bound, to the millisecond).

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinSet;
use weir_topology::kafka::{KafkaClient, Record, TopicPartition};

use super::report::{Row, Target, percentile};
use super::{BenchConfig, PARTITIONS, input_record, input_topic, partition_of, partitions, rate};

/// How often the producer sends what is due.
const TICK: Duration = Duration::from_millis(10);
/// The consumer's fetch wait: short, because a broker that polls for new records
/// instead of answering when they arrive (the local one sleeps half the remaining wait
/// between looks) would add up to half of it to every figure. 10 ms is the shortest
/// wait the client asks for.
const CONSUMER_FETCH_WAIT: Duration = Duration::from_millis(10);
/// How long after the last record is produced its outputs may take to arrive.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// p50, p99 (target at most 50 ms) and p999 rows, and the offered rate against the
    /// keyed-count maximum.
    pub fn rows(&self) -> Vec<Row> {
        let mut samples = self.samples_ms.clone();
        let seen = samples.len();
        let mut rows = Vec::new();
        for (figure, q, target) in [
            ("p50", 0.5, Target::None),
            ("p99", 0.99, Target::AtMost(50.0)),
            ("p999", 0.999, Target::None),
        ] {
            rows.push(match percentile(&mut samples, q) {
                Some(ms) => Row::measured("latency", figure, ms, "ms").target(target),
                None => {
                    Row::not_measured("latency", figure, "ms", target).note("no output arrived")
                }
            });
        }
        rows.push(
            Row::measured("latency", "offered records/s", self.offered_rate, "rec/s")
                .against("keyed-count max", self.target_rate * 2.0)
                .note(format!(
                    "{} records produced at {:.0} records/s asked, {seen} outputs timed from the input's timestamp to a consumer seeing the output; the processor's fetch wait (LHS_FETCH_MAX_WAIT_MS) {} ms",
                    self.produced, self.target_rate, super::keyed_count::PROCESSOR_FETCH_MAX_WAIT_MS
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
    let outputs = partitions(client, &output, PARTITIONS).await?;
    let (expected_tx, expected) = watch::channel(None::<Vec<u64>>);
    let mut consumers = JoinSet::new();
    for partition in outputs {
        let start = partition.high_watermark().await?;
        consumers.spawn(consume(partition, start, expected.clone()));
    }

    let input = input_topic(config);
    let inputs = partitions(client, &input, PARTITIONS).await?;
    let mut produced_per_partition = vec![0_u64; inputs.len()];
    let mut sends = JoinSet::new();
    let mut next = config.records;
    let mut ticker = tokio::time::interval(TICK);
    let started = Instant::now();
    while started.elapsed() < config.latency_duration {
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

/// Reads one output partition from `start`, timing each record, until it holds as many
/// new records as were produced to its input partition (or the drain timeout passes).
async fn consume(
    partition: TopicPartition,
    start: i64,
    mut expected: watch::Receiver<Option<Vec<u64>>>,
) -> anyhow::Result<Vec<f64>> {
    let index = usize::try_from(partition.partition()).unwrap_or(0);
    let mut samples = Vec::new();
    let mut next = start;
    let mut drain_deadline = None;
    loop {
        let (records, _) = partition
            .fetch(next, 1024 * 1024, CONSUMER_FETCH_WAIT)
            .await?;
        let now = chrono::Utc::now();
        let from_offset = next;
        for record in records.into_iter().filter(|r| r.offset >= from_offset) {
            next = record.offset + 1;
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
            if u64::try_from(samples.len()).unwrap_or(u64::MAX) >= wanted {
                return Ok(samples);
            }
            let deadline = *drain_deadline.get_or_insert_with(|| Instant::now() + DRAIN_TIMEOUT);
            if Instant::now() > deadline {
                eprintln!(
                    "latency: partition {index} saw {} of {wanted} outputs within {DRAIN_TIMEOUT:?}",
                    samples.len()
                );
                return Ok(samples);
            }
        }
    }
}
