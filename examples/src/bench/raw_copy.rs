//! Workload 1, raw-copy: the input copied to another topic with the bare Kafka client
//! (rskafka through weir's thin per-partition handle, compressed as the runtime is): fetch,
//! produce, await the acknowledgement, every partition at once, the next fetch already
//! under way while a batch is produced. No state and no commit protocol, so its
//! records/s is the ceiling for any processor that reads once and writes once.

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use weir_topology::kafka::{KafkaAdmin, KafkaClient, Record, TopicPartition, TopicSpec};

use super::{BenchConfig, PARTITIONS, fetch_from, input_topic, rate};

/// Bytes asked for in one fetch.
const FETCH_BYTES: i32 = 1024 * 1024;
/// Fetched batches waiting for their produce, per partition.
const IN_FLIGHT: usize = 4;

/// `{cluster}_raw-copy`.
pub fn output_topic(config: &BenchConfig) -> String {
    format!("{}_raw-copy", config.cluster_id)
}

/// Copies every input record and returns the records copied per second, timed from
/// the first fetch to the last acknowledgement.
pub async fn run(config: &BenchConfig, client: &KafkaClient) -> anyhow::Result<f64> {
    let source = input_topic(config);
    let target = output_topic(config);
    KafkaAdmin::connect(&config.kafka)
        .await?
        .ensure_topics(&[TopicSpec::new(&target, PARTITIONS, 1)])
        .await?;
    let mut handles = Vec::new();
    for partition in 0..PARTITIONS {
        let from = client.partition(&source, partition).await?;
        let to = client.partition(&target, partition).await?;
        let start = from.earliest_offset().await?;
        let end = from.high_watermark().await?;
        handles.push((from, to, start, end));
    }
    let started = Instant::now();
    let mut copies = JoinSet::new();
    for (from, to, start, end) in handles {
        copies.spawn(copy_partition(from, to, start, end));
    }
    let mut copied = 0;
    while let Some(done) = copies.join_next().await {
        copied += done.context("a raw-copy task panicked")??;
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(
        copied == config.records,
        "raw-copy copied {copied} records, expected {}",
        config.records
    );
    Ok(rate(copied, elapsed))
}

/// Copies `[start, end)` of one partition; returns the records copied.
async fn copy_partition(
    from: TopicPartition,
    to: TopicPartition,
    start: i64,
    end: i64,
) -> anyhow::Result<u64> {
    let (batches, mut received) = mpsc::channel::<Vec<Record>>(IN_FLIGHT);
    let fetcher = tokio::spawn(async move {
        let mut next = start;
        while next < end {
            let batch: Vec<Record> =
                fetch_from(&from, &mut next, FETCH_BYTES, Duration::from_millis(100))
                    .await?
                    .into_iter()
                    .filter(|r| r.offset < end)
                    .map(|r| r.record)
                    .collect();
            if !batch.is_empty() && batches.send(batch).await.is_err() {
                break;
            }
        }
        anyhow::Ok(())
    });
    let mut copied = 0;
    while let Some(batch) = received.recv().await {
        copied += u64::try_from(batch.len()).unwrap_or(0);
        to.produce(batch).await?;
    }
    fetcher.await.context("a raw-copy fetcher panicked")??;
    Ok(copied)
}
