//! Where each instance answers queries: every `weir server` writes its HTTP base URL to
//! the compacted topic `{LHS_CLUSTER_ID}_instances`, keyed by its instance id, when it
//! starts; an instance that must send a client to another reads that topic (latest
//! record per key) into a cache, read again on a miss or once it is a few seconds old,
//! so an instance restarted on another address is found.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use weir_topology::kafka::{KafkaAdmin, KafkaClient, KafkaError, Record, TopicSpec};

use crate::config::WeirConfig;

/// How long a read of the topic is trusted before a lookup reads it again.
const FRESH_FOR: Duration = Duration::from_secs(5);
/// Longest time one read of the topic may take.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes per fetch while reading the topic.
const FETCH_BYTES: i32 = 1024 * 1024;

/// Why the instances topic could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum InstancesError {
    #[error("instances topic {topic}: {source}")]
    Kafka {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("instances topic {topic} does not exist and LHS_SHOULD_CREATE_TOPICS is false")]
    Missing { topic: String },
    #[error("reading instances topic {topic} took longer than {READ_TIMEOUT:?}")]
    Timeout { topic: String },
}

/// The cluster's instances and their advertised HTTP base URLs.
#[derive(Debug)]
pub struct InstanceDirectory {
    topic: String,
    /// `None`: only the addresses given at construction (tests without a broker).
    kafka: Option<KafkaClient>,
    known: Mutex<Known>,
}

#[derive(Debug, Default)]
struct Known {
    addresses: BTreeMap<u32, String>,
    read_at: Option<Instant>,
}

impl InstanceDirectory {
    /// The topic's name for a cluster: `{LHS_CLUSTER_ID}_instances`.
    pub fn topic(config: &WeirConfig) -> String {
        config.topic("instances")
    }

    /// How the topic is created: one partition, compacted (latest address per instance).
    pub fn topic_spec(config: &WeirConfig) -> TopicSpec {
        TopicSpec::new(Self::topic(config), 1, config.replication_factor).compacted()
    }

    /// Connects to the cluster and creates the topic if it is missing (or fails naming
    /// it when `LHS_SHOULD_CREATE_TOPICS` is false).
    pub async fn connect(config: &WeirConfig) -> Result<Self, InstancesError> {
        let topic = Self::topic(config);
        let kafka_error = |source| InstancesError::Kafka {
            topic: topic.clone(),
            source,
        };
        let client = KafkaClient::connect(&config.kafka())
            .await
            .map_err(kafka_error)?;
        if config.create_topics {
            let admin = KafkaAdmin::connect(&config.kafka())
                .await
                .map_err(kafka_error)?;
            admin
                .ensure_topics(&[Self::topic_spec(config)])
                .await
                .map_err(kafka_error)?;
        } else {
            match client.check_partition_exists(&topic, 0).await {
                Ok(()) => {}
                Err(KafkaError::UnknownTopic { .. }) => {
                    return Err(InstancesError::Missing { topic });
                }
                Err(source) => return Err(kafka_error(source)),
            }
        }
        Ok(Self {
            topic,
            kafka: Some(client),
            known: Mutex::default(),
        })
    }

    /// A directory of fixed addresses, which never reads Kafka.
    pub fn fixed(addresses: BTreeMap<u32, String>) -> Self {
        Self {
            topic: "(fixed)".to_owned(),
            kafka: None,
            known: Mutex::new(Known {
                addresses,
                read_at: None,
            }),
        }
    }

    /// Writes `url` as the address of `instance` and remembers it.
    pub async fn advertise(&self, instance: u32, url: &str) -> Result<(), InstancesError> {
        if let Some(kafka) = &self.kafka {
            let record = Record {
                key: Some(instance.to_string().into_bytes()),
                value: Some(url.as_bytes().to_vec()),
                headers: BTreeMap::new(),
                timestamp: chrono::Utc::now(),
            };
            kafka
                .partition(&self.topic, 0)
                .await
                .map_err(|source| self.kafka_error(source))?
                .produce(vec![record])
                .await
                .map_err(|source| self.kafka_error(source))?;
        }
        self.known
            .lock()
            .await
            .addresses
            .insert(instance, url.to_owned());
        Ok(())
    }

    /// The advertised base URL of `instance`; `None` when it never advertised one.
    pub async fn address(&self, instance: u32) -> Result<Option<String>, InstancesError> {
        let mut known = self.known.lock().await;
        let fresh = known.read_at.is_some_and(|at| at.elapsed() < FRESH_FOR);
        let cached = known.addresses.get(&instance).cloned();
        if fresh || (cached.is_some() && self.kafka.is_none()) {
            return Ok(cached);
        }
        if let Some(kafka) = &self.kafka {
            let read = tokio::time::timeout(READ_TIMEOUT, self.read(kafka))
                .await
                .map_err(|_| InstancesError::Timeout {
                    topic: self.topic.clone(),
                })??;
            known.addresses.extend(read);
            known.read_at = Some(Instant::now());
        }
        Ok(known.addresses.get(&instance).cloned())
    }

    /// The latest address of every instance in the topic.
    async fn read(&self, kafka: &KafkaClient) -> Result<BTreeMap<u32, String>, InstancesError> {
        let partition = kafka
            .partition(&self.topic, 0)
            .await
            .map_err(|source| self.kafka_error(source))?;
        let mut offset = partition
            .earliest_offset()
            .await
            .map_err(|source| self.kafka_error(source))?;
        let mut addresses = BTreeMap::new();
        loop {
            let (records, high_watermark) = partition
                .fetch(offset, FETCH_BYTES, Duration::from_millis(10))
                .await
                .map_err(|source| self.kafka_error(source))?;
            for record in records {
                offset = offset.max(record.offset + 1);
                let key = record.record.key.as_deref().map(String::from_utf8_lossy);
                let Some(instance) = key.and_then(|k| k.parse::<u32>().ok()) else {
                    continue;
                };
                match record.record.value {
                    Some(url) => {
                        addresses.insert(instance, String::from_utf8_lossy(&url).into_owned());
                    }
                    None => {
                        addresses.remove(&instance);
                    }
                }
            }
            if offset >= high_watermark {
                return Ok(addresses);
            }
        }
    }

    fn kafka_error(&self, source: KafkaError) -> InstancesError {
        InstancesError::Kafka {
            topic: self.topic.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fixed_directory_answers_what_it_was_given_and_what_is_advertised() {
        let directory = InstanceDirectory::fixed(BTreeMap::from([(1, "http://b:9100".to_owned())]));
        assert_eq!(
            directory.address(1).await.ok().flatten().as_deref(),
            Some("http://b:9100")
        );
        assert_eq!(directory.address(2).await.ok().flatten(), None);
        directory
            .advertise(2, "http://c:9100")
            .await
            .expect("advertise");
        assert_eq!(
            directory.address(2).await.ok().flatten().as_deref(),
            Some("http://c:9100")
        );
    }
}
