//! Workload 4, restore: a keyed-count store of `restore_keys` distinct keys with
//! 100-byte values, seeded into its changelog in the runtime's own format (committed
//! batches, each closed by a commit marker), then read back twice: with the bare client
//! (the raw fetch rate of the same changelog, the ceiling) and by the keyed-count
//! processor restoring it into an empty state directory, whose peak RSS is the memory
//! workload's restore figure. It runs under its own cluster id, so its input topic is
//! new and empty and the processor restores and nothing else.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use prost::Message;
use tokio::task::JoinSet;
use weir_proto::CommitMarker;
use weir_topology::kafka::{KafkaAdmin, KafkaClient, Record, TopicPartition, TopicSpec};
use weir_topology::{Topology, data_record, marker_record};

use super::keyed_count::Processor;
use super::report::{Row, Target, thousands};
use super::{BenchConfig, PARTITIONS, mib, rate};

/// Bytes of every seeded value.
pub const VALUE_BYTES: usize = 100;
/// Keys per seeded batch (one commit marker each), per partition.
const SEED_BATCH_KEYS: u64 = 5_000;
/// Bytes asked for in one fetch of the raw read, as the runtime's restore asks.
const FETCH_BYTES: i32 = 16 * 1024 * 1024;
/// How long the processor may take to restore every task.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(600);
/// The target: 1,000,000 keys restored within 10 seconds.
const TARGET_SECONDS_PER_MILLION_KEYS: f64 = 10.0;
/// Protobuf field number of the padding that fills a value to [`VALUE_BYTES`];
/// `i64`'s message has field 1 only, so a decoder skips it.
const PADDING_FIELD: u8 = 15;

/// What the restore workload measured.
#[derive(Debug, Clone)]
pub struct Restore {
    /// Distinct keys in the store.
    pub keys: u64,
    /// Changelog records (data and markers) over all partitions.
    pub records: u64,
    /// Their keys' and values' bytes.
    pub bytes: u64,
    /// Records per second the bare client fetched the whole changelog at.
    pub raw_fetch_rate: f64,
    /// How long that fetch took.
    pub raw_fetch_elapsed: Duration,
    /// From starting the processor on an empty state directory to every task ready.
    pub restore_elapsed: Duration,
    /// The processor's peak RSS once every task was ready, in bytes.
    pub peak_rss: Option<u64>,
}

impl Restore {
    /// Records/s and MB/s against the raw fetch, and the time for the keys against the
    /// issue's 10 s per 1,000,000 keys.
    pub fn rows(&self) -> Vec<Row> {
        let restore_rate = rate(self.records, self.restore_elapsed);
        let megabytes =
            |elapsed: Duration| mega(self.bytes) / elapsed.as_secs_f64().max(f64::EPSILON);
        let target_seconds = target_seconds(self.keys);
        let scaled = if self.keys == 1_000_000 {
            String::new()
        } else {
            format!(
                "; the target is the issue's {TARGET_SECONDS_PER_MILLION_KEYS} s for 1,000,000 keys, scaled to {} keys",
                thousands(self.keys)
            )
        };
        vec![
            Row::measured("restore", "records/s", restore_rate, "rec/s")
                .against("raw fetch", self.raw_fetch_rate)
                .target(Target::RatioAtLeast(0.5))
                .note(format!(
                    "{} changelog records ({} keys of {VALUE_BYTES}-byte values in batches of {} per partition, each closed by a commit marker, over {PARTITIONS} partitions) restored by the keyed-count process into an empty state directory: from starting it to every task's `task ready` line; the baseline fetches the same changelog with the bare client in {:.1} s",
                    thousands(self.records),
                    thousands(self.keys),
                    thousands(SEED_BATCH_KEYS),
                    self.raw_fetch_elapsed.as_secs_f64()
                )),
            Row::measured("restore", "MB/s", megabytes(self.restore_elapsed), "MB/s")
                .against("raw fetch", megabytes(self.raw_fetch_elapsed))
                .note(format!(
                    "{:.0} MB of keys and values (10^6 bytes)",
                    mega(self.bytes)
                )),
            Row::measured(
                "restore",
                &format!("{} keys restored", thousands(self.keys)),
                self.restore_elapsed.as_secs_f64(),
                "s",
            )
            .target(Target::AtMost(target_seconds))
            .note(format!("process start included{scaled}")),
        ]
    }

    /// The keyed-count process's peak RSS once restored (target at most 1 GiB).
    pub fn memory_row(&self) -> Row {
        match self.peak_rss {
            Some(bytes) => Row::measured("memory", "restore peak RSS", mib(bytes), "MiB")
                .target(Target::AtMost(1024.0))
                .note(format!(
                    "VmHWM of the keyed-count process once it had restored {} keys",
                    thousands(self.keys)
                )),
            None => Row::not_measured("memory", "restore peak RSS", "MiB", Target::AtMost(1024.0))
                .note("the process's /proc status could not be read"),
        }
    }
}

/// The restore rows and the memory row of a run in which the workload was not
/// measured, each with `note`.
pub fn unmeasured_rows(keys: u64, note: &str) -> (Vec<Row>, Row) {
    let rows = vec![
        Row::not_measured("restore", "records/s", "rec/s", Target::RatioAtLeast(0.5)),
        Row::not_measured("restore", "MB/s", "MB/s", Target::None),
        Row::not_measured(
            "restore",
            &format!("{} keys restored", thousands(keys)),
            "s",
            Target::AtMost(target_seconds(keys)),
        ),
    ];
    (
        rows.into_iter().map(|row| row.note(note)).collect(),
        Row::not_measured("memory", "restore peak RSS", "MiB", Target::AtMost(1024.0)).note(note),
    )
}

/// The restore target for `keys` keys: the 10 s per 1,000,000, scaled.
pub fn target_seconds(keys: u64) -> f64 {
    // Key counts stay far below 2^53.
    #[allow(clippy::cast_precision_loss)]
    let keys = keys as f64;
    TARGET_SECONDS_PER_MILLION_KEYS * keys / 1_000_000.0
}

fn mega(bytes: u64) -> f64 {
    // Byte counts stay far below 2^53.
    #[allow(clippy::cast_precision_loss)]
    let bytes = bytes as f64;
    bytes / 1_000_000.0
}

/// The cluster id the restore workload runs under: `{cluster}-restore`.
pub fn cluster_id(config: &BenchConfig) -> String {
    format!("{}-restore", config.cluster_id)
}

/// The key of seeded key `i`: `key-0000000` onwards, 11 bytes.
pub fn key_of(i: u64) -> String {
    format!("key-{i:07}")
}

/// The partition of seeded key `i`, round robin.
pub fn partition_of(i: u64) -> i32 {
    i32::try_from(i % u64::from(PARTITIONS.unsigned_abs())).unwrap_or(0)
}

/// A counter of `count` as keyed-count stores it (an `i64` protobuf message), padded to
/// [`VALUE_BYTES`] with a field the decoder skips, so the restored store is one the
/// keyed-count processor can go on counting in.
pub fn value_of(count: i64) -> Vec<u8> {
    let mut value = count.encode_to_vec();
    // The padding field's tag and its one-byte length come first.
    let padding = VALUE_BYTES.saturating_sub(value.len() + 2);
    value.push((PADDING_FIELD << 3) | 2);
    value.push(u8::try_from(padding).unwrap_or(0));
    value.resize(VALUE_BYTES, b' ');
    value
}

/// Seeds the changelog, fetches it raw, restores it with the processor and returns the
/// figures. The processor's state directory is removed afterwards.
pub async fn run(config: &BenchConfig, keys: u64) -> anyhow::Result<Restore> {
    let restore_config = BenchConfig {
        cluster_id: cluster_id(config),
        work_dir: config.work_dir.join("restore"),
        ..config.clone()
    };
    let cluster = &restore_config.cluster_id;
    let input = crate::keyed_count::input_topic(cluster);
    let changelog = Topology::changelog_topic(cluster, crate::keyed_count::STORE);
    KafkaAdmin::connect(&config.kafka)
        .await?
        .ensure_topics(&[
            TopicSpec::new(&input, PARTITIONS, 1),
            TopicSpec::new(&changelog, PARTITIONS, 1).compacted(),
        ])
        .await?;
    let client = KafkaClient::connect(&config.kafka).await?;
    let partitions = super::partitions(&client, &changelog, PARTITIONS).await?;

    eprintln!("restore: seeding {changelog} with {keys} keys");
    let (records, bytes) = seed(&partitions, &input, keys).await?;

    eprintln!("restore: fetching it raw with the bare client");
    let started = Instant::now();
    let (fetched, fetched_bytes) = fetch_all(&partitions).await?;
    let raw_fetch_elapsed = started.elapsed();
    anyhow::ensure!(
        (fetched, fetched_bytes) == (records, bytes),
        "the raw fetch read {fetched} records of {fetched_bytes} bytes, but {records} records of {bytes} bytes were seeded"
    );

    eprintln!("restore: the keyed-count processor restoring it into an empty state directory");
    let processor = Processor::start(&restore_config).await?;
    let ready = processor
        .wait_for_tasks_ready(usize::try_from(PARTITIONS).unwrap_or(1), RESTORE_TIMEOUT)
        .await;
    let peak_rss = processor.peak_rss();
    let started_at = processor.started_at();
    processor.stop().await;
    let state = restore_config.work_dir.join("state");
    if let Err(e) = std::fs::remove_dir_all(&state) {
        eprintln!("could not remove {}: {e}", state.display());
    }
    let ready = ready?;
    let restored: u64 = ready.restored_records.values().sum();
    anyhow::ensure!(
        restored == records,
        "the keyed-count tasks restored {restored} changelog records ({:?}), but {records} were seeded; see {}",
        ready.restored_records,
        restore_config.work_dir.join("keyed-count.log").display()
    );
    Ok(Restore {
        keys,
        records,
        bytes,
        raw_fetch_rate: rate(fetched, raw_fetch_elapsed),
        raw_fetch_elapsed,
        restore_elapsed: ready.at.duration_since(started_at),
        peak_rss,
    })
}

/// Writes `keys` keys as committed batches, every partition at once, and returns the
/// records written (data and markers) and their keys' and values' bytes.
async fn seed(partitions: &[TopicPartition], input: &str, keys: u64) -> anyhow::Result<(u64, u64)> {
    let mut seeders = JoinSet::new();
    for handle in partitions {
        let handle = handle.clone();
        let input = input.to_owned();
        seeders.spawn(async move {
            let partition = handle.partition();
            let mut own_keys = (0..keys)
                .filter(|i| partition_of(*i) == partition)
                .peekable();
            let (mut records, mut bytes) = (0_u64, 0_u64);
            let mut batch_number = 0;
            while own_keys.peek().is_some() {
                let batch = committed_batch(
                    own_keys
                        .by_ref()
                        .take(usize::try_from(SEED_BATCH_KEYS).unwrap_or(usize::MAX)),
                    (1, batch_number),
                    &input,
                );
                records += u64::try_from(batch.len()).unwrap_or(0);
                bytes += batch.iter().map(payload_bytes).sum::<u64>();
                handle.produce(batch).await?;
                batch_number += 1;
            }
            anyhow::Ok((records, bytes))
        });
    }
    let (mut records, mut bytes) = (0, 0);
    while let Some(done) = seeders.join_next().await {
        let (partition_records, partition_bytes) =
            done.context("a changelog seeder panicked")??;
        records += partition_records;
        bytes += partition_bytes;
    }
    Ok((records, bytes))
}

/// One batch as a task's commit writes it: a data record per key (its counter at 1),
/// then the commit marker, whose next input offset is the input's start (0), so the
/// restored task reads its empty input from the beginning.
fn committed_batch(keys: impl Iterator<Item = u64>, batch: (u64, u64), input: &str) -> Vec<Record> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut records: Vec<Record> = keys
        .map(|i| {
            data_record(
                key_of(i).as_bytes(),
                Some(value_of(1).as_slice()),
                batch,
                now_ms,
            )
        })
        .collect();
    let marker = CommitMarker {
        next_input_offset: 0,
        epoch: batch.0,
        batch_number: batch.1,
        next_input_offsets: BTreeMap::from([(input.to_owned(), 0)]),
    };
    records.push(marker_record(&marker, now_ms));
    records
}

fn payload_bytes(record: &Record) -> u64 {
    let length =
        record.key.as_ref().map_or(0, Vec::len) + record.value.as_ref().map_or(0, Vec::len);
    u64::try_from(length).unwrap_or(0)
}

/// Fetches every partition from its start to its high watermark, all at once; returns
/// the records read and their keys' and values' bytes.
async fn fetch_all(partitions: &[TopicPartition]) -> anyhow::Result<(u64, u64)> {
    let mut fetchers = JoinSet::new();
    for handle in partitions {
        let handle = handle.clone();
        fetchers.spawn(async move {
            let end = handle.high_watermark().await?;
            let mut next = handle.earliest_offset().await?;
            let (mut records, mut bytes) = (0_u64, 0_u64);
            while next < end {
                let (fetched, _) = handle.fetch(next, FETCH_BYTES, Duration::ZERO).await?;
                let from = next;
                for record in fetched.iter().filter(|r| r.offset >= from && r.offset < end) {
                    next = record.offset + 1;
                    records += 1;
                    bytes += payload_bytes(&record.record);
                }
                anyhow::ensure!(
                    next > from,
                    "fetching {} partition {} at offset {from} returned nothing below its end {end}",
                    handle.topic(),
                    handle.partition()
                );
            }
            anyhow::Ok((records, bytes))
        });
    }
    let (mut records, mut bytes) = (0, 0);
    while let Some(done) = fetchers.join_next().await {
        let (partition_records, partition_bytes) =
            done.context("a changelog fetcher panicked")??;
        records += partition_records;
        bytes += partition_bytes;
    }
    Ok((records, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_values_are_100_bytes_that_decode_as_the_counter() {
        for count in [0, 1, 300, i64::MAX] {
            let value = value_of(count);
            assert_eq!(value.len(), VALUE_BYTES);
            assert_eq!(<i64 as Message>::decode(value.as_slice()).ok(), Some(count));
        }
        assert_eq!(key_of(999_999), "key-0999999");
    }

    #[test]
    fn keys_spread_evenly_over_the_partitions() {
        let per_partition: Vec<usize> = (0..PARTITIONS)
            .map(|p| (0..1000).filter(|i| partition_of(*i) == p).count())
            .collect();
        assert_eq!(per_partition, vec![250; 4]);
    }

    #[test]
    fn a_committed_batch_is_its_data_then_one_marker() {
        let batch = committed_batch(0..3, (1, 7), "c_count-input");
        assert_eq!(batch.len(), 4);
        assert_eq!(batch[0].key.as_deref(), Some(&b"key-0000000"[..]));
        let marker = batch[3]
            .value
            .as_deref()
            .and_then(|v| CommitMarker::decode(v).ok());
        assert_eq!(
            marker.map(|m| (m.epoch, m.batch_number, m.next_input_offsets)),
            Some((1, 7, BTreeMap::from([("c_count-input".to_owned(), 0)])))
        );
    }

    #[test]
    fn the_time_target_scales_with_the_keys() {
        assert_eq!(target_seconds(1_000_000), 10.0);
        assert_eq!(target_seconds(250_000), 2.5);
    }
}
