//! `make bench`: weir's speed, cost and scale measured in one run against a broker, each
//! figure next to the limit it should approach. Every comparison is a ratio of two
//! figures taken in the same run; nothing here is asserted by a test.
//!
//! The throughput workloads share one input (`records` records of 100 bytes over four
//! partitions, 100,000 distinct keys): `raw_copy` copies it with the bare Kafka client
//! (the ceiling for anything that reads once and writes once), `keyed_count` runs the
//! keyed-count processor on it as a child process with the full commit protocol, and
//! `latency` feeds that processor at half its measured rate and times each record to
//! its output. `orders` runs the workflow core (a `weir server`) with the output topic
//! off and at `ALL_ENTITY_EVENTS`, first, while the broker holds little; `restore` seeds a keyed-count changelog and times
//! its restore against a raw fetch of it. `memory` reads the processes' peak RSS,
//! `process` starts and stops them, and `report` turns the figures into the table and
//! the JSON. A workload that fails leaves its rows unmeasured and the run failed.

pub mod keyed_count;
pub mod latency;
pub mod memory;
pub mod orders;
pub mod process;
pub mod raw_copy;
pub mod report;
pub mod restore;
pub mod workloads;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::task::JoinSet;
use weir_topology::kafka::{
    KafkaAdmin, KafkaClient, KafkaConfig, Record, RecordAndOffset, TopicPartition, TopicSpec,
};

use report::{Report, Row, Target};
use workloads::{Selection, Workload};

/// Bytes of key plus value in every input record.
pub const RECORD_BYTES: usize = 100;
/// Input partitions of every workload.
pub const PARTITIONS: i32 = 4;
/// Distinct keys of the keyed-count input.
pub const KEYS: u64 = 100_000;
/// Records in one produce request.
const PRODUCE_BATCH: usize = 2_000;

/// How one run is set up.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub kafka: KafkaConfig,
    /// Prefix of this run's topics (`bench-{millis}`), deleted at the end.
    pub cluster_id: String,
    /// Input records of the throughput workloads.
    pub records: u64,
    /// How long the latency workload produces at its rate and times records, after a
    /// warm-up ([`latency::WARM_UP`]) at the same rate.
    pub latency_duration: Duration,
    /// The latency workload's rate when fixed (`BENCH_LATENCY_RATE`), so builds whose
    /// maximum differs are compared at the same load; half keyed-count's rate otherwise.
    pub latency_rate: Option<u64>,
    /// Where the processor keeps its state and log (emptied first).
    pub work_dir: PathBuf,
    /// The `keyed-count` binary of the same build as this one.
    pub processor_binary: PathBuf,
    /// The `weir` binary of the same build, for the orders workload's server.
    pub server_binary: PathBuf,
    /// WfRuns per run of the orders workload.
    pub orders: usize,
    /// Keys of the restore workload's store.
    pub restore_keys: u64,
    /// Which build runs: its directory name (`debug`, `release`, `bench-opt`).
    pub profile: String,
    pub quick: bool,
    /// The workloads this run measures (`BENCH_WORKLOADS`; all by default).
    pub workloads: Selection,
}

/// The key of input record `i`: `key-000000` to `key-099999`, 10 bytes.
pub fn key_of(i: u64) -> String {
    format!("key-{:06}", i % KEYS)
}

/// The partition of input record `i`: its key's number modulo the partition count, so a
/// key always lands on the same partition (and the same keyed-count task).
pub fn partition_of(i: u64) -> i32 {
    let partition = (i % KEYS) % u64::from(PARTITIONS.unsigned_abs());
    i32::try_from(partition).unwrap_or(0)
}

/// Input record `i`: its key, and the increment `1` padded with spaces (which the
/// keyed-count processor trims) to [`RECORD_BYTES`] in all.
pub fn input_record(i: u64, timestamp: chrono::DateTime<chrono::Utc>) -> Record {
    let key = key_of(i);
    let value = format!("{:<width$}", 1, width = RECORD_BYTES - key.len());
    Record {
        key: Some(key.into_bytes()),
        value: Some(value.into_bytes()),
        headers: Default::default(),
        timestamp,
    }
}

/// `{cluster}_count-input`, the keyed-count processor's input and raw-copy's source.
pub fn input_topic(config: &BenchConfig) -> String {
    crate::keyed_count::input_topic(&config.cluster_id)
}

/// Records per second.
pub fn rate(records: u64, elapsed: Duration) -> f64 {
    // Record counts stay far below 2^53.
    #[allow(clippy::cast_precision_loss)]
    let records = records as f64;
    records / elapsed.as_secs_f64().max(f64::EPSILON)
}

/// Handles on partitions `0..count` of `topic`.
pub async fn partitions(
    client: &KafkaClient,
    topic: &str,
    count: i32,
) -> anyhow::Result<Vec<TopicPartition>> {
    let mut handles = Vec::new();
    for partition in 0..count {
        handles.push(client.partition(topic, partition).await?);
    }
    Ok(handles)
}

/// Fetches one partition from `*next`, waiting up to `wait` for records, and returns
/// those at or after it (a compressed batch may start before), moving `*next` past the
/// last one.
pub async fn fetch_from(
    partition: &TopicPartition,
    next: &mut i64,
    max_bytes: i32,
    wait: Duration,
) -> anyhow::Result<Vec<RecordAndOffset>> {
    let (records, _) = partition.fetch(*next, max_bytes, wait).await?;
    let from = *next;
    let records: Vec<RecordAndOffset> = records.into_iter().filter(|r| r.offset >= from).collect();
    if let Some(last) = records.last() {
        *next = last.offset + 1;
    }
    Ok(records)
}

/// The records in a topic that started empty, as the sum of its partitions' high
/// watermarks (read from fetches, which every broker answers right), read all at once.
/// It remembers each partition's last watermark and fetches there next, so polling a
/// topic as it fills decodes each new record batch about once, not the first batch of
/// every partition per poll (which took a core-third of the machine from the processor
/// being measured).
#[derive(Debug)]
pub struct EndOffsets {
    partitions: Vec<TopicPartition>,
    ends: Vec<i64>,
}

impl EndOffsets {
    /// Starts at each partition's first offset.
    pub async fn new(partitions: Vec<TopicPartition>) -> anyhow::Result<Self> {
        let mut ends = Vec::with_capacity(partitions.len());
        for partition in &partitions {
            ends.push(partition.earliest_offset().await?);
        }
        Ok(Self { partitions, ends })
    }

    /// The sum of the high watermarks now.
    pub async fn total(&mut self) -> anyhow::Result<u64> {
        let mut reads = JoinSet::new();
        for (index, (partition, end)) in self.partitions.iter().zip(&self.ends).enumerate() {
            let (partition, from) = (partition.clone(), *end);
            reads.spawn(async move { (index, partition.high_watermark_from(from).await) });
        }
        while let Some(read) = reads.join_next().await {
            let (index, end) = read.context("a high watermark read panicked")?;
            self.ends[index] = end?;
        }
        Ok(self
            .ends
            .iter()
            .map(|end| u64::try_from(*end).unwrap_or(0))
            .sum())
    }
}

/// The records in topics that started empty, read once ([`EndOffsets`]).
pub async fn end_offsets(partitions: &[TopicPartition]) -> anyhow::Result<u64> {
    EndOffsets::new(partitions.to_vec()).await?.total().await
}

/// Produces input records `range` to their partitions (each partition's records in
/// order, the partitions at once), returning once the broker acknowledged them all.
pub async fn produce_input(
    client: &KafkaClient,
    topic: &str,
    range: std::ops::Range<u64>,
) -> anyhow::Result<()> {
    let mut producers = JoinSet::new();
    for partition in 0..PARTITIONS {
        let handle = client.partition(topic, partition).await?;
        let range = range.clone();
        producers.spawn(async move {
            let mut batch = Vec::with_capacity(PRODUCE_BATCH);
            for i in range.filter(|i| partition_of(*i) == partition) {
                batch.push(input_record(i, chrono::Utc::now()));
                if batch.len() == PRODUCE_BATCH {
                    handle.produce(std::mem::take(&mut batch)).await?;
                }
            }
            if !batch.is_empty() {
                handle.produce(batch).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = producers.join_next().await {
        done.context("an input producer panicked")??;
    }
    Ok(())
}

/// Runs every workload and reports them.
pub async fn run(config: &BenchConfig) -> anyhow::Result<Report> {
    let admin = KafkaAdmin::connect(&config.kafka).await?;
    let client = KafkaClient::connect(&config.kafka).await?;
    let input = input_topic(config);
    admin
        .ensure_topics(&[TopicSpec::new(&input, PARTITIONS, 1)])
        .await?;
    let result = run_workloads(config, &client).await;
    cleanup(config, &admin).await;
    result
}

async fn run_workloads(config: &BenchConfig, client: &KafkaClient) -> anyhow::Result<Report> {
    let input = input_topic(config);
    let runs = |workload| config.workloads.runs(workload);
    // The table keeps the order: the throughput workloads and latency, orders,
    // restore, then memory.
    let mut rows = Vec::new();
    let mut orders_rows = Vec::new();
    let mut memory_rows = Vec::new();
    let mut failures = Vec::new();

    // The orders rounds go first, on a broker that holds little: a memory-backed broker
    // slows as it fills, and the latency workload leaves millions of records in it, which
    // made the rounds of one side differ by more than the overhead they measure.
    if runs(Workload::Orders) {
        eprintln!(
            "orders: {} rounds of {} WfRuns with the output topic off, then at ALL_ENTITY_EVENTS",
            orders::ROUNDS,
            config.orders
        );
        match orders::run(config, config.orders).await {
            Ok(orders) => orders_rows = orders.rows(),
            Err(e) => {
                eprintln!("orders failed: {e:#}");
                orders_rows.extend(orders::unmeasured_rows(&format!("FAILED: {e:#}")));
                failures.push(format!("orders: {e:#}"));
            }
        }
    }

    if runs(Workload::RawCopy) || runs(Workload::KeyedCount) {
        eprintln!("producing {} input records to {input}", config.records);
        let started = Instant::now();
        produce_input(client, &input, 0..config.records).await?;
        let produce_rate = rate(config.records, started.elapsed());
        rows.push(
            Row::measured("setup", "produce records/s", produce_rate, "rec/s")
                .note("the input, produced before the workloads; for context, no target"),
        );
    }

    let raw_copy = if runs(Workload::RawCopy) {
        eprintln!("raw-copy: copying them with the bare client");
        let raw_copy = raw_copy::run(config, client).await?;
        rows.push(
            Row::measured("raw-copy", "records/s", raw_copy, "rec/s").note(
                "fetch and produce with rskafka alone, no state, no commit protocol: the ceiling",
            ),
        );
        Some(raw_copy)
    } else {
        None
    };

    if runs(Workload::KeyedCount) {
        let (keyed_rows, rss) = keyed_count_and_latency(config, client, raw_copy).await?;
        rows.extend(keyed_rows);
        memory_rows.push(rss);
    }
    rows.append(&mut orders_rows);

    if runs(Workload::Restore) {
        let (restore_rows, restore_rss) = match restore::run(config, config.restore_keys).await {
            Ok(restore) => (restore.rows(), restore.memory_row()),
            Err(e) => {
                eprintln!("restore failed: {e:#}");
                failures.push(format!("restore: {e:#}"));
                restore::unmeasured_rows(config.restore_keys, &format!("FAILED: {e:#}"))
            }
        };
        rows.extend(restore_rows);
        memory_rows.push(restore_rss);
    }
    rows.append(&mut memory_rows);

    Ok(Report {
        profile: config.profile.clone(),
        quick: config.quick,
        records: config.records,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        workloads: (!config.workloads.is_all()).then(|| config.workloads.names()),
        rows,
        failures,
    })
}

/// Keyed-count's rows and, when selected, latency's (at half keyed-count's rate or the
/// configured one, against the raw forwarder at the same rate), and the processor's peak
/// RSS over both.
async fn keyed_count_and_latency(
    config: &BenchConfig,
    client: &KafkaClient,
    raw_copy: Option<f64>,
) -> anyhow::Result<(Vec<Row>, Row)> {
    eprintln!("keyed-count: the same input through the keyed-count processor");
    let processor = keyed_count::Processor::start(config).await?;
    let measured = processor.count_input(config, client).await;
    let latency = match &measured {
        Ok(keyed_rate) if config.workloads.runs(Workload::Latency) => {
            let rate = config
                .latency_rate
                .map_or(keyed_rate / 2.0, |rate| rate as f64);
            eprintln!(
                "latency: {rate:.0} records/s for {:?}",
                config.latency_duration
            );
            let measured = latency::run(config, client, rate).await;
            eprintln!("latency: the same rate through a raw forwarder (its limit)");
            let raw = latency::run_raw_forward(config, client, rate).await;
            Some((measured, raw))
        }
        _ => None,
    };
    let peak_rss = processor.peak_rss();
    processor.stop().await;
    let keyed_rate = measured?;
    let mut keyed_count = Row::measured("keyed-count", "records/s", keyed_rate, "rec/s");
    if let Some(raw_copy) = raw_copy {
        keyed_count = keyed_count.against("raw-copy", raw_copy);
    }
    let mut rows = vec![keyed_count.target(Target::RatioAtLeast(0.5)).note(format!(
        "counter read, incremented, written back, one output per record, full commit protocol, {} keys; from the processor reporting its tasks running to its last output acknowledged",
        report::thousands(KEYS)
    ))];

    if let Some((latency, raw_forward)) = latency {
        let raw_forward = raw_forward
            .map_err(|error| eprintln!("latency: the raw forwarder failed: {error:#}"))
            .ok();
        rows.extend(latency?.rows(raw_forward.as_ref(), keyed_rate));
    }

    let workloads = if config.workloads.runs(Workload::Latency) {
        "both keyed-count workloads"
    } else {
        "keyed-count"
    };
    let rss = match peak_rss {
        Some(bytes) => Row::measured("memory", "keyed-count peak RSS", mib(bytes), "MiB")
            .target(Target::AtMost(1024.0))
            .note(format!(
                "VmHWM of the keyed-count process after {workloads} ({} keys; the 1 GiB target is for a 1,000,000-key store)",
                report::thousands(KEYS)
            )),
        None => Row::not_measured("memory", "keyed-count peak RSS", "MiB", Target::AtMost(1024.0))
            .note("the process's /proc status could not be read"),
    };
    Ok((rows, rss))
}

/// Bytes as MiB.
pub fn mib(bytes: u64) -> f64 {
    // Memory sizes stay far below 2^53.
    #[allow(clippy::cast_precision_loss)]
    let bytes = bytes as f64;
    bytes / (1024.0 * 1024.0)
}

/// Deletes this run's topics and the processor's state; failures are printed, not
/// fatal (the figures are already taken).
async fn cleanup(config: &BenchConfig, admin: &KafkaAdmin) {
    // The workloads' own cluster ids extend this run's: `{cluster}-restore_…`.
    let prefixes = [
        format!("{}_", config.cluster_id),
        format!("{}-", config.cluster_id),
    ];
    match admin.list_topics().await {
        Ok(topics) => {
            let ours: Vec<String> = topics
                .into_iter()
                .filter(|t| prefixes.iter().any(|p| t.starts_with(p)))
                .collect();
            if let Err(e) = admin.delete_topics(&ours).await {
                eprintln!("could not delete this run's topics: {e}");
            }
        }
        Err(e) => eprintln!("could not list topics to delete this run's: {e}"),
    }
    if let Err(e) = std::fs::remove_dir_all(config.work_dir.join("state")) {
        eprintln!(
            "could not remove {}: {e}",
            config.work_dir.join("state").display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_records_are_100_bytes_and_keep_a_key_on_one_partition() {
        let at = chrono::Utc::now();
        for i in [0, 1, 99_999, 100_000, 1_234_567] {
            let record = input_record(i, at);
            let key = record.key.unwrap_or_default();
            let value = record.value.unwrap_or_default();
            assert_eq!(key.len() + value.len(), RECORD_BYTES);
            assert_eq!(std::str::from_utf8(&value).map(str::trim), Ok("1"));
            assert_eq!(partition_of(i), partition_of(i + KEYS));
        }
        assert_eq!(key_of(100_003), "key-000003");
        let per_partition: Vec<usize> = (0..PARTITIONS)
            .map(|p| (0..1000).filter(|i| partition_of(*i) == p).count())
            .collect();
        assert_eq!(per_partition, vec![250; 4]);
    }

    #[test]
    fn rate_is_records_per_second() {
        assert_eq!(rate(1000, Duration::from_millis(500)), 2000.0);
        assert_eq!(mib(3 * 1024 * 1024), 3.0);
    }
}
