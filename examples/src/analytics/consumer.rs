//! The consumer loop: waits for the execution-output topic, resumes each partition from
//! its stored next offset, fetches batches from Kafka, maps their records and commits
//! each batch with its next offset through [`super::postgres`].

use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_postgres::Client;
use weir_processor::config::WeirConfig;
use weir_processor::topics::CoreTopics;
use weir_topology::kafka::{KafkaAdmin, KafkaClient, TopicPartition};

use super::mapping::change_from_record;
use super::postgres::{self, Commit, commit_batch, connect, create_schema};

/// Largest fetch per partition and request.
const FETCH_BYTES: i32 = 1024 * 1024;
/// How long a fetch waits for records at the end of a partition.
const FETCH_WAIT: Duration = Duration::from_millis(200);
/// How long one batch's transaction may take before the consumer gives up.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait before fetching again after a Kafka error.
const RETRY_WAIT: Duration = Duration::from_secs(1);

/// The consumer of one tenant's execution-output topic into one database.
#[derive(Debug, Clone)]
pub struct OrdersConsumer {
    pub config: WeirConfig,
    pub tenant: String,
    pub database_url: String,
}

impl OrdersConsumer {
    /// The topic it reads.
    pub fn topic(&self) -> String {
        CoreTopics::new(&self.config).execution_output(&self.tenant)
    }

    /// Creates the tables, waits for the topic, and keeps the table up to date from
    /// every partition until `stop` resolves (a batch being written is finished first).
    /// Prints one line once every partition has its start offset. Fails on the first
    /// PostgreSQL error or a record it cannot read; Kafka errors are retried.
    pub async fn run(&self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let work = self.run_until(stop_rx);
        tokio::pin!(work);
        tokio::select! {
            result = &mut work => return result,
            () = stop => {}
        }
        let _ = stop_tx.send(true);
        work.await
    }

    async fn run_until(&self, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let topic = self.topic();
        create_schema(&connect(&self.database_url).await?).await?;
        let kafka_config = self.config.kafka().with_client_id("orders-analytics");
        let admin = KafkaAdmin::connect(&kafka_config).await?;
        let partitions = wait_for_topic(&admin, &topic, stop.clone()).await?;
        let Some(partitions) = partitions else {
            return Ok(());
        };
        let kafka = KafkaClient::connect(&kafka_config).await?;
        let mut readers = Vec::new();
        for partition in partitions {
            let handle = kafka.partition(&topic, partition).await?;
            let client = connect(&self.database_url).await?;
            let start = start_offset(&client, &handle).await?;
            readers.push(PartitionReader {
                kafka: handle,
                client,
                next: start,
            });
        }
        let starts: Vec<String> = readers
            .iter()
            .map(|r| format!("{}:{}", r.kafka.partition(), r.next))
            .collect();
        println!(
            "orders-analytics: {topic} ({} partitions) into the orders table, from offsets {}",
            readers.len(),
            starts.join(" ")
        );
        let mut tasks = JoinSet::new();
        for reader in readers {
            tasks.spawn(reader.run(stop.clone()));
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            let result = joined
                .context("a partition reader panicked")
                .and_then(|r| r);
            if let Err(error) = result
                && first_error.is_none()
            {
                // One partition failing stops the rest: the process ends, and a restart
                // resumes every partition from its stored position.
                tasks.abort_all();
                first_error = Some(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Waits until `topic` exists and returns its partitions; `None` if stopped first.
async fn wait_for_topic(
    admin: &KafkaAdmin,
    topic: &str,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<Vec<i32>>> {
    let mut said = false;
    loop {
        if admin.list_topics().await?.iter().any(|t| t == topic) {
            let described = admin.describe_topics(&[topic.to_owned()]).await?;
            let partitions: Vec<i32> = described
                .iter()
                .flat_map(|t| &t.partitions)
                .map(|p| p.partition)
                .collect();
            if !partitions.is_empty() {
                return Ok(Some(partitions));
            }
        }
        if !said {
            tracing::info!(
                topic,
                "waiting for the topic (put the tenant with an outputTopicConfig to create it)"
            );
            said = true;
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY_WAIT) => {}
            _ = stop.wait_for(|s| *s) => return Ok(None),
        }
    }
}

/// The stored next offset of the partition, stored first as the log's start when there
/// is none. A stored offset outside the log moves to the log's start, with a warning:
/// below it, retention deleted those records unread; past its end (the fetch high
/// watermark), the topic is not the one the position was stored for (recreated, or a
/// broker that lost its data).
async fn start_offset(client: &Client, kafka: &TopicPartition) -> anyhow::Result<i64> {
    let (topic, partition) = (kafka.topic(), kafka.partition());
    let earliest = kafka.earliest_offset().await?;
    let stored = postgres::stored_position_or_insert(client, topic, partition, earliest).await?;
    let end = kafka.high_watermark().await?;
    if (earliest..=end).contains(&stored) {
        return Ok(stored);
    }
    tracing::warn!(
        topic,
        partition,
        stored,
        earliest,
        end,
        "the stored position is outside the log; going on from the log's start"
    );
    postgres::move_position(client, topic, partition, earliest).await?;
    Ok(earliest)
}

/// One partition: fetch from the next offset, commit the batch with its position.
struct PartitionReader {
    kafka: TopicPartition,
    client: Client,
    next: i64,
}

impl PartitionReader {
    async fn run(mut self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let (topic, partition) = (self.kafka.topic().to_owned(), self.kafka.partition());
        tracing::info!(topic, partition, offset = self.next, "reading");
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let fetched = tokio::select! {
                fetched = self.kafka.fetch(self.next, FETCH_BYTES, FETCH_WAIT) => fetched,
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            let (records, high_watermark) = match fetched {
                Ok(fetched) => fetched,
                Err(error) => {
                    tracing::warn!(topic, partition, offset = self.next, %error, "fetch failed; retrying");
                    tokio::time::sleep(RETRY_WAIT).await;
                    continue;
                }
            };
            // A fetch answers whole batches, so it may start before the offset asked for.
            let records: Vec<_> = records
                .into_iter()
                .filter(|r| r.offset >= self.next)
                .collect();
            let Some(last) = records.last().map(|r| r.offset) else {
                continue;
            };
            let mut changes = Vec::new();
            for record in &records {
                let change = change_from_record(&record.record)
                    .with_context(|| format!("record {topic}/{partition}@{}", record.offset))?;
                changes.extend(change);
            }
            let commit = commit_batch(
                &mut self.client,
                &topic,
                partition,
                self.next,
                last + 1,
                &changes,
            );
            let outcome = tokio::time::timeout(DATABASE_TIMEOUT, commit)
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "PostgreSQL did not commit {topic}/{partition} offsets {}..={last} within {DATABASE_TIMEOUT:?}",
                        self.next
                    )
                })?
                .with_context(|| {
                    format!(
                        "committing {topic}/{partition} offsets {}..={last}",
                        self.next
                    )
                })?;
            match outcome {
                Commit::Done { rows } => {
                    tracing::debug!(
                        topic,
                        partition,
                        from = self.next,
                        to = last + 1,
                        records = records.len(),
                        rows,
                        lag = high_watermark - last - 1,
                        "committed"
                    );
                    self.next = last + 1;
                }
                Commit::Moved(stored) => {
                    tracing::warn!(
                        topic,
                        partition,
                        expected = self.next,
                        stored,
                        "another consumer moved the stored position; going on from it"
                    );
                    self.next = stored;
                }
            }
        }
    }
}
