//! The data-path client: connection settings, and per-partition produce and fetch on top
//! of rskafka, with errors that name the topic and partition. rskafka is built from
//! `vendor/rskafka`, patched so that no request waits on Nagle's algorithm.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rskafka::BackoffConfig;
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::{Record, RecordAndOffset};

use super::KafkaError;

/// The shortest wait weir asks a fetch for. A broker may treat a zero wait as "no time
/// to read anything" and answer without the partition (the local test broker does),
/// where Kafka answers at once with what it has; 10 ms costs nothing on either.
const MIN_FETCH_WAIT: Duration = Duration::from_millis(10);

/// How weir reaches a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `host:port` of one or more brokers to bootstrap from.
    pub bootstrap_servers: Vec<String>,
    /// Client id sent with every request (shows up in broker logs and quotas).
    pub client_id: String,
    /// How long to keep trying to reach a bootstrap broker before giving up.
    pub connect_timeout: Duration,
    /// How long one request, or one retried operation, may take.
    pub request_timeout: Duration,
    /// How produced record batches are compressed.
    pub compression: ProduceCompression,
}

/// How weir compresses the record batches it produces (Kafka's `compression.type`).
/// Compression trades CPU, on the producer and on a broker that validates batches, for
/// bytes on the network and on disk. LZ4 by default: on a cluster the network and the
/// brokers' disks are shared, and LZ4 costs the least CPU of the codecs that halve them;
/// `none` is for when weir's own CPU is the limit (`make bench` measures both ways).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProduceCompression {
    /// Uncompressed (Kafka's producer default): the least CPU on both sides.
    None,
    /// LZ4: fast, about half the bytes for text-like records.
    #[default]
    Lz4,
    /// Zstandard: the fewest bytes, the most CPU.
    Zstd,
}

impl ProduceCompression {
    /// The names [`FromStr`] accepts, for error messages.
    pub const NAMES: &'static str = "none, lz4 or zstd";
    const ALL: [Self; 3] = [Self::None, Self::Lz4, Self::Zstd];

    /// The setting's name, as [`FromStr`] reads it.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }

    fn to_rskafka(self) -> Compression {
        match self {
            Self::None => Compression::NoCompression,
            Self::Lz4 => Compression::Lz4,
            Self::Zstd => Compression::Zstd,
        }
    }
}

impl FromStr for ProduceCompression {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let name = name.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|compression| compression.name() == name)
            .ok_or_else(|| format!("unknown compression {name:?}: use {}", Self::NAMES))
    }
}

impl fmt::Display for ProduceCompression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl KafkaConfig {
    /// Settings for a comma-separated bootstrap list such as `"127.0.0.1:9092"`.
    pub fn new(bootstrap_servers: &str) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            client_id: "weir".to_owned(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            compression: ProduceCompression::default(),
        }
    }

    /// The same settings with another produce compression.
    pub fn with_compression(mut self, compression: ProduceCompression) -> Self {
        self.compression = compression;
        self
    }

    /// The same settings with another client id.
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// The same settings with another connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

/// A connected cluster client for producing and fetching.
#[derive(Debug, Clone)]
pub struct KafkaClient {
    client: Arc<Client>,
    compression: ProduceCompression,
}

impl KafkaClient {
    /// Connects to the cluster; fails with [`KafkaError::Unreachable`] once the connect
    /// timeout has passed without any bootstrap broker answering.
    pub async fn connect(config: &KafkaConfig) -> Result<Self, KafkaError> {
        let unreachable = |reason: String| KafkaError::Unreachable {
            bootstrap: config.bootstrap_servers.join(","),
            timeout: config.connect_timeout,
            reason,
        };
        let backoff = BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
            deadline: Some(config.request_timeout),
        };
        let build = ClientBuilder::new(config.bootstrap_servers.clone())
            .client_id(config.client_id.as_str())
            .backoff_config(backoff)
            .build();
        let client = tokio::time::timeout(config.connect_timeout, build)
            .await
            .map_err(|_| unreachable("no broker answered".to_owned()))?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Self {
            client: Arc::new(client),
            compression: config.compression,
        })
    }

    /// Checks that `partition` of `topic` exists, without creating it: a metadata request
    /// that names a topic lets the broker auto-create it (rskafka's lookups all do), so
    /// this reads the cluster's topic list instead. A missing topic is
    /// [`KafkaError::UnknownTopic`], a missing partition [`KafkaError::UnknownPartition`].
    pub async fn check_partition_exists(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(), KafkaError> {
        let topics = self
            .client
            .list_topics()
            .await
            .map_err(|source| KafkaError::Partition {
                operation: "list topics to find",
                topic: topic.to_owned(),
                partition,
                source: Box::new(source),
            })?;
        let found = topics
            .into_iter()
            .find(|t| t.name == topic)
            .ok_or_else(|| KafkaError::UnknownTopic {
                topic: topic.to_owned(),
            })?;
        if found.partitions.contains(&partition) {
            Ok(())
        } else {
            Err(KafkaError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                partitions: found.partitions.len(),
            })
        }
    }

    /// A handle on one partition of an existing topic.
    pub async fn partition(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<TopicPartition, KafkaError> {
        let client = self
            .client
            .partition_client(topic, partition, UnknownTopicHandling::Error)
            .await
            .map_err(|source| KafkaError::Partition {
                operation: "connect to leader of",
                topic: topic.to_owned(),
                partition,
                source: Box::new(source),
            })?;
        Ok(TopicPartition {
            client: Arc::new(client),
            compression: self.compression,
        })
    }
}

/// Produce and fetch on one topic partition, through its leader.
#[derive(Debug, Clone)]
pub struct TopicPartition {
    client: Arc<PartitionClient>,
    compression: ProduceCompression,
}

impl TopicPartition {
    /// The topic's name.
    pub fn topic(&self) -> &str {
        self.client.topic()
    }

    /// The partition number.
    pub fn partition(&self) -> i32 {
        self.client.partition()
    }

    /// Appends `records` in one request (compressed as the client's configuration says)
    /// and returns their offsets once the broker has acknowledged them.
    pub async fn produce(&self, records: Vec<Record>) -> Result<Vec<i64>, KafkaError> {
        self.client
            .produce(records, self.compression.to_rskafka())
            .await
            .map_err(|source| self.error("produce to", source))
    }

    /// Fetches records from `offset`, waiting up to `max_wait` for at least one, and
    /// returns them with the partition's high watermark (the offset after the last
    /// committed record, which is the log end weir relies on).
    pub async fn fetch(
        &self,
        offset: i64,
        max_bytes: i32,
        max_wait: Duration,
    ) -> Result<(Vec<RecordAndOffset>, i64), KafkaError> {
        let max_wait_ms =
            i32::try_from(max_wait.max(MIN_FETCH_WAIT).as_millis()).unwrap_or(i32::MAX);
        self.client
            .fetch_records(offset, 1..max_bytes.max(2), max_wait_ms)
            .await
            .map_err(|source| self.error("fetch from", source))
    }

    /// The first offset still in the log.
    pub async fn earliest_offset(&self) -> Result<i64, KafkaError> {
        self.client
            .get_offset(OffsetAt::Earliest)
            .await
            .map_err(|source| self.error("list earliest offset of", source))
    }

    /// The offset the next produced record will get, read from a fetch response's high
    /// watermark (the one answer every Kafka-compatible broker gets right).
    pub async fn high_watermark(&self) -> Result<i64, KafkaError> {
        self.high_watermark_from(self.earliest_offset().await?)
            .await
    }

    /// The same, read by a fetch at `from`, an offset at or below it. The fetch returns
    /// (and the client decodes) the record batch holding `from`, so a caller that polls
    /// passes the watermark it read last: each poll decodes only what arrived since,
    /// where a poll at the first offset would decode the same first batch every time.
    pub async fn high_watermark_from(&self, from: i64) -> Result<i64, KafkaError> {
        let (_, high_watermark) = self.fetch(from, 1, Duration::ZERO).await?;
        Ok(high_watermark)
    }

    fn error(&self, operation: &'static str, source: rskafka::client::error::Error) -> KafkaError {
        KafkaError::Partition {
            operation,
            topic: self.topic().to_owned(),
            partition: self.partition(),
            source: Box::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_list_is_split_and_trimmed() {
        let config = KafkaConfig::new(" a:1, b:2 ,,");
        assert_eq!(config.bootstrap_servers, vec!["a:1", "b:2"]);
    }

    #[test]
    fn compression_names_round_trip_and_unknown_ones_are_refused() {
        for compression in [
            ProduceCompression::None,
            ProduceCompression::Lz4,
            ProduceCompression::Zstd,
        ] {
            assert_eq!(compression.to_string().parse(), Ok(compression));
        }
        assert_eq!(" LZ4 ".parse(), Ok(ProduceCompression::Lz4));
        assert_eq!(KafkaConfig::new("a:1").compression, ProduceCompression::Lz4);
        let refused = "snappy".parse::<ProduceCompression>();
        assert!(
            matches!(&refused, Err(error) if error.contains("none, lz4 or zstd")),
            "{refused:?}"
        );
    }
}
