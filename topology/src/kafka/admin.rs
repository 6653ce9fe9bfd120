//! Topic administration: create topics with configs (`cleanup.policy`, `retention.ms`, …),
//! list and describe them, read their configs back, and delete them.
//!
//! rskafka cannot pass topic configs on creation, so these requests are built with the
//! `kafka-protocol` crate and sent over a [`BrokerConnection`]. Every topic weir creates
//! goes through [`KafkaAdmin::ensure_topics`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, MetadataRequest,
    MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::Mutex;

use super::connection::BrokerConnection;
use super::{KafkaConfig, KafkaError};

/// Kafka's resource type code for a topic in DescribeConfigs.
const TOPIC_RESOURCE: i8 = 2;

/// How often to re-ask the broker while waiting for a created topic to appear or a
/// deleted one to go.
const TOPIC_READY_POLL: Duration = Duration::from_millis(100);

/// The topic weir wants: name, partition count, replication factor and configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

impl TopicSpec {
    /// A topic with the broker's default configs.
    pub fn new(name: impl Into<String>, partitions: i32, replication_factor: i16) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication_factor,
            configs: BTreeMap::new(),
        }
    }

    /// Sets one topic config, such as `retention.ms`.
    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.insert(key.into(), value.into());
        self
    }

    /// A compacted topic (`cleanup.policy=compact`), as changelogs are.
    pub fn compacted(self) -> Self {
        self.with_config("cleanup.policy", "compact")
    }
}

/// What a create request did for one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    AlreadyExisted,
}

/// One partition of a described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: i32,
    /// Broker id of the leader, or `None` while the partition has none.
    pub leader: Option<i32>,
}

/// A topic as the cluster's metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub partitions: Vec<PartitionInfo>,
}

/// Admin requests against one cluster. Cheap to share behind an `Arc`; requests are
/// serialized over one connection to the bootstrap broker and one to the controller.
#[derive(Debug)]
pub struct KafkaAdmin {
    pub(super) config: KafkaConfig,
    pub(super) bootstrap: Mutex<BrokerConnection>,
    /// Connections to other brokers (group coordinators), by address, kept between calls.
    pub(super) brokers: Mutex<BTreeMap<String, BrokerConnection>>,
}

impl KafkaAdmin {
    /// Connects to the first bootstrap broker that answers, retrying until the
    /// configured connect timeout; past it, a [`KafkaError::Unreachable`].
    pub async fn connect(config: &KafkaConfig) -> Result<Self, KafkaError> {
        let deadline = Instant::now() + config.connect_timeout;
        let mut backoff = Duration::from_millis(50);
        loop {
            let mut last_error = None;
            for address in &config.bootstrap_servers {
                let attempt = BrokerConnection::connect(
                    address,
                    &config.client_id,
                    config.request_timeout.min(config.connect_timeout),
                )
                .await;
                match attempt {
                    Ok(connection) => {
                        return Ok(Self {
                            config: config.clone(),
                            bootstrap: Mutex::new(connection),
                            brokers: Mutex::new(BTreeMap::new()),
                        });
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            let now = Instant::now();
            if now + backoff >= deadline {
                return Err(KafkaError::Unreachable {
                    bootstrap: config.bootstrap_servers.join(","),
                    timeout: config.connect_timeout,
                    reason: last_error.map_or_else(
                        || "no bootstrap server configured".to_owned(),
                        |e| e.to_string(),
                    ),
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Creates each topic that does not exist yet. A topic that exists is left as it is
    /// and reported as [`CreateOutcome::AlreadyExisted`]; any other broker error fails.
    pub async fn create_topics(
        &self,
        specs: &[TopicSpec],
    ) -> Result<Vec<CreateOutcome>, KafkaError> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(millis_i32(self.config.request_timeout))
            .with_topics(specs.iter().map(creatable_topic).collect());
        let response = self.call_controller("CreateTopics", |_| request).await?;
        specs
            .iter()
            .map(|spec| {
                let result = response
                    .topics
                    .iter()
                    .find(|t| t.name.0.as_str() == spec.name)
                    .ok_or_else(|| KafkaError::TopicRequest {
                        operation: "create",
                        topic: spec.name.clone(),
                        code: "missing from response".to_owned(),
                        message: None,
                    })?;
                match result.error_code.err() {
                    None => Ok(CreateOutcome::Created),
                    Some(ResponseError::TopicAlreadyExists) => Ok(CreateOutcome::AlreadyExisted),
                    Some(error) => Err(KafkaError::TopicRequest {
                        operation: "create",
                        topic: spec.name.clone(),
                        code: format!("{error:?}"),
                        message: result.error_message.as_ref().map(|m| m.as_str().to_owned()),
                    }),
                }
            })
            .collect()
    }

    /// Makes sure every topic exists with the partition count it asks for, creating the
    /// missing ones and waiting until each partition has a leader. An existing topic
    /// with another partition count is an error: weir's co-partitioning depends on it.
    pub async fn ensure_topics(&self, specs: &[TopicSpec]) -> Result<(), KafkaError> {
        self.create_topics(specs).await?;
        let deadline = Instant::now() + self.config.request_timeout;
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        loop {
            let ready = match self.describe_topics(&names).await {
                Ok(described) => {
                    for (spec, topic) in specs.iter().zip(&described) {
                        let actual = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
                        if actual != 0 && actual != spec.partitions {
                            return Err(KafkaError::PartitionCountMismatch {
                                topic: spec.name.clone(),
                                expected: spec.partitions,
                                actual,
                            });
                        }
                    }
                    described.iter().zip(specs).all(|(topic, spec)| {
                        topic.partitions.len() == usize::try_from(spec.partitions).unwrap_or(0)
                            && topic.partitions.iter().all(|p| p.leader.is_some())
                    })
                }
                Err(KafkaError::UnknownTopic { topic }) if Instant::now() < deadline => {
                    tracing::debug!(%topic, "created topic not visible yet");
                    false
                }
                Err(e) => return Err(e),
            };
            if ready {
                return Ok(());
            }
            self.pause_until(
                deadline,
                "Metadata (waiting for created topics to have leaders)",
            )
            .await?;
        }
    }

    /// Describes the named topics in the order given; a missing one is
    /// [`KafkaError::UnknownTopic`].
    pub async fn describe_topics(
        &self,
        names: &[String],
    ) -> Result<Vec<TopicDescription>, KafkaError> {
        let request = MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(Some(
                names
                    .iter()
                    .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                    .collect(),
            ));
        let response = self
            .bootstrap
            .lock()
            .await
            .call("Metadata", &request)
            .await?;
        names
            .iter()
            .map(|name| {
                let topic = response
                    .topics
                    .iter()
                    .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name))
                    .ok_or_else(|| KafkaError::UnknownTopic {
                        topic: name.clone(),
                    })?;
                match topic.error_code.err() {
                    None => {}
                    Some(ResponseError::UnknownTopicOrPartition) => {
                        return Err(KafkaError::UnknownTopic {
                            topic: name.clone(),
                        });
                    }
                    Some(error) => {
                        return Err(KafkaError::TopicRequest {
                            operation: "describe",
                            topic: name.clone(),
                            code: format!("{error:?}"),
                            message: None,
                        });
                    }
                }
                let mut partitions: Vec<PartitionInfo> = topic
                    .partitions
                    .iter()
                    .map(|p| PartitionInfo {
                        partition: p.partition_index,
                        leader: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
                    })
                    .collect();
                partitions.sort_by_key(|p| p.partition);
                Ok(TopicDescription {
                    name: name.clone(),
                    partitions,
                })
            })
            .collect()
    }

    /// Names of every non-internal topic in the cluster, sorted.
    pub async fn list_topics(&self) -> Result<Vec<String>, KafkaError> {
        let response = self.metadata_all().await?;
        let mut names: Vec<String> = response
            .topics
            .iter()
            .filter(|t| !t.is_internal)
            .filter_map(|t| t.name.as_ref().map(|n| n.0.as_str().to_owned()))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The configs the broker reports for a topic (some brokers report only the ones
    /// set explicitly, others every effective value).
    pub async fn topic_configs(&self, topic: &str) -> Result<BTreeMap<String, String>, KafkaError> {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(TOPIC_RESOURCE)
                .with_resource_name(StrBytes::from_string(topic.to_owned()))
                .with_configuration_keys(None),
        ]);
        let response = self
            .bootstrap
            .lock()
            .await
            .call("DescribeConfigs", &request)
            .await?;
        let result = response
            .results
            .iter()
            .find(|r| r.resource_name.as_str() == topic)
            .ok_or_else(|| KafkaError::UnknownTopic {
                topic: topic.to_owned(),
            })?;
        match result.error_code.err() {
            None => {}
            Some(ResponseError::UnknownTopicOrPartition) => {
                return Err(KafkaError::UnknownTopic {
                    topic: topic.to_owned(),
                });
            }
            Some(error) => {
                return Err(KafkaError::TopicRequest {
                    operation: "describe configs of",
                    topic: topic.to_owned(),
                    code: format!("{error:?}"),
                    message: result.error_message.as_ref().map(|m| m.as_str().to_owned()),
                });
            }
        }
        Ok(result
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.as_str().to_owned(), v.as_str().to_owned()))
            })
            .collect())
    }

    /// Deletes the named topics and waits until the cluster no longer lists them (a
    /// broker may take a moment to drop a deleted topic, and a caller that lists topics
    /// next would take one still listed as existing, as [`ensure_topics`](Self::ensure_topics)
    /// waits for created ones); a topic that does not exist is not an error.
    pub async fn delete_topics(&self, names: &[String]) -> Result<(), KafkaError> {
        if names.is_empty() {
            return Ok(());
        }
        let timeout_ms = millis_i32(self.config.request_timeout);
        // Versions 0-5 name the topics in `topic_names`, 6 and later in `topics` (which
        // may name a topic by id instead); a request must fill the one its version has.
        let build = |version: i16| {
            let request = DeleteTopicsRequest::default().with_timeout_ms(timeout_ms);
            if version >= 6 {
                request.with_topics(
                    names
                        .iter()
                        .map(|n| DeleteTopicState::default().with_name(Some(topic_name(n))))
                        .collect(),
                )
            } else {
                request.with_topic_names(names.iter().map(|n| topic_name(n)).collect())
            }
        };
        let response = self.call_controller("DeleteTopics", build).await?;
        for result in &response.responses {
            match result.error_code.err() {
                None | Some(ResponseError::UnknownTopicOrPartition) => {}
                Some(error) => {
                    return Err(KafkaError::TopicRequest {
                        operation: "delete",
                        topic: result
                            .name
                            .as_ref()
                            .map(|n| n.0.as_str().to_owned())
                            .unwrap_or_default(),
                        code: format!("{error:?}"),
                        message: result.error_message.as_ref().map(|m| m.as_str().to_owned()),
                    });
                }
            }
        }
        let deadline = Instant::now() + self.config.request_timeout;
        loop {
            let listed = self.list_topics().await?;
            if !names.iter().any(|name| listed.contains(name)) {
                return Ok(());
            }
            self.pause_until(
                deadline,
                "Metadata (waiting for deleted topics to be unlisted)",
            )
            .await?;
        }
    }

    /// Between two looks at the cluster while waiting for `what`: a pause, or once
    /// `deadline` (the request timeout from the start of the wait) has passed, the
    /// timeout error.
    async fn pause_until(&self, deadline: Instant, what: &'static str) -> Result<(), KafkaError> {
        if Instant::now() >= deadline {
            return Err(KafkaError::Timeout {
                api: what,
                broker: self.config.bootstrap_servers.join(","),
                timeout: self.config.request_timeout,
            });
        }
        tokio::time::sleep(TOPIC_READY_POLL).await;
        Ok(())
    }

    async fn metadata_all(&self) -> Result<MetadataResponse, KafkaError> {
        let request = MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(None);
        self.bootstrap.lock().await.call("Metadata", &request).await
    }

    /// Sends a request that Kafka wants on the controller (CreateTopics, DeleteTopics).
    /// Brokers that forward such requests themselves answer on any connection too.
    /// `build` makes the request for the version both sides speak.
    async fn call_controller<R: kafka_protocol::protocol::Request>(
        &self,
        api: &'static str,
        build: impl FnOnce(i16) -> R,
    ) -> Result<R::Response, KafkaError> {
        let metadata = self.metadata_all().await?;
        let controller = controller_address(&metadata);
        let mut bootstrap = self.bootstrap.lock().await;
        match controller {
            Some(address) if address != bootstrap.address() => {
                drop(bootstrap);
                let mut connection = BrokerConnection::connect(
                    &address,
                    &self.config.client_id,
                    self.config.request_timeout,
                )
                .await?;
                Ok(connection.call_versioned(api, build).await?.1)
            }
            _ => Ok(bootstrap.call_versioned(api, build).await?.1),
        }
    }
}

fn controller_address(metadata: &MetadataResponse) -> Option<String> {
    if metadata.controller_id == BrokerId(-1) {
        return None;
    }
    metadata
        .brokers
        .iter()
        .find(|b| b.node_id == metadata.controller_id)
        .map(|b| format!("{}:{}", b.host.as_str(), b.port))
}

fn creatable_topic(spec: &TopicSpec) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(topic_name(&spec.name))
        .with_num_partitions(spec.partitions)
        .with_replication_factor(spec.replication_factor)
        .with_configs(
            spec.configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.clone()))
                        .with_value(Some(StrBytes::from_string(v.clone())))
                })
                .collect(),
        )
}

pub(super) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

fn millis_i32(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacted_spec_carries_cleanup_policy() {
        let spec = TopicSpec::new("c_store-changelog", 4, 1).compacted();
        let topic = creatable_topic(&spec);
        assert_eq!(topic.num_partitions, 4);
        assert_eq!(topic.configs.len(), 1);
        assert_eq!(topic.configs[0].name.as_str(), "cleanup.policy");
        assert_eq!(
            topic.configs[0].value.as_ref().map(|v| v.as_str()),
            Some("compact")
        );
    }

    #[test]
    fn controller_is_found_among_brokers() {
        use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
        let metadata = MetadataResponse::default()
            .with_controller_id(BrokerId(2))
            .with_brokers(vec![
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(1))
                    .with_host(StrBytes::from_static_str("a"))
                    .with_port(9092),
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(2))
                    .with_host(StrBytes::from_static_str("b"))
                    .with_port(9093),
            ]);
        assert_eq!(controller_address(&metadata).as_deref(), Some("b:9093"));
        let unknown = metadata.with_controller_id(BrokerId(-1));
        assert_eq!(controller_address(&unknown), None);
    }
}
