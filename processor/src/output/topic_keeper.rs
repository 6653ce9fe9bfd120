//! Keeping the output topics of enabled tenants in existence. A `weir server` runs
//! [`run`] beside its runtime: it reads the committed metadata from the `metadata`
//! store's changelog every [`POLL`], and creates both output topics of every tenant
//! whose `output_topic` is set and whose topics it has not yet made sure of, at
//! start-up and soon after a `PutTenant` enables them. Until a topic exists, records for
//! it wait in the runtime (parked, never dropped) without holding up other tenants.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use prost::Message;
use weir_proto::StoredMetadata;
use weir_proto::stored_metadata::Object;
use weir_topology::kafka::{KafkaAdmin, KafkaClient, KafkaError, TopicSpec};
use weir_topology::{Topology, read_committed};

use crate::config::WeirConfig;
use crate::core::store_names;
use crate::topics::CoreTopics;

/// How often the committed metadata is read for newly enabled tenants.
pub const POLL: Duration = Duration::from_secs(1);

/// The two output topics of `tenant`.
pub fn output_topic_specs(topics: &CoreTopics, tenant: &str) -> [TopicSpec; 2] {
    [
        TopicSpec::new(
            topics.execution_output(tenant),
            topics.output_partitions,
            topics.replication_factor,
        )
        .with_config("cleanup.policy", "delete"),
        TopicSpec::new(topics.metadata_output(tenant), 1, topics.replication_factor)
            .with_config("cleanup.policy", "delete"),
    ]
}

/// Tenants whose output topic is enabled in the committed metadata.
pub async fn enabled_tenants(
    client: &KafkaClient,
    cluster_id: &str,
) -> Result<BTreeSet<String>, KafkaError> {
    let changelog = Topology::changelog_topic(cluster_id, store_names::METADATA);
    let partition = client.partition(&changelog, 0).await?;
    Ok(read_committed(&partition)
        .await?
        .into_values()
        .filter_map(
            |bytes| match StoredMetadata::decode(bytes.as_ref()).ok()?.object? {
                Object::Tenant(tenant) if tenant.output_topic.is_some() => Some(tenant.id),
                _ => None,
            },
        )
        .collect())
}

/// Creates the output topics of enabled tenants until `stop` completes. Errors are
/// logged and retried on the next poll; with topic creation off it only reports
/// missing topics.
pub async fn run(config: WeirConfig, stop: impl Future<Output = ()>) {
    let topics = CoreTopics::new(&config);
    let mut ensured: BTreeSet<String> = BTreeSet::new();
    let mut stop = std::pin::pin!(stop);
    let mut connections: Option<(KafkaClient, KafkaAdmin)> = None;
    loop {
        if connections.is_none() {
            match connect(&config).await {
                Ok(both) => connections = Some(both),
                Err(error) => {
                    tracing::warn!(%error, "output topic keeper cannot reach Kafka; retrying")
                }
            }
        }
        if let Some((client, admin)) = &connections {
            match enabled_tenants(client, &config.cluster_id).await {
                Ok(tenants) => {
                    for tenant in tenants.difference(&ensured.clone()) {
                        let specs = output_topic_specs(&topics, tenant);
                        let outcome = if config.create_topics {
                            admin.ensure_topics(&specs).await
                        } else {
                            missing(admin, &specs).await
                        };
                        match outcome {
                            Ok(()) => {
                                tracing::info!(tenant = %tenant, "output topics ready");
                                ensured.insert(tenant.clone());
                            }
                            Err(error) => {
                                tracing::error!(tenant = %tenant, %error, "output topics of tenant are not available; its output records wait")
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "reading tenants for the output topics failed; retrying")
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = &mut stop => return,
        }
    }
}

async fn connect(config: &WeirConfig) -> Result<(KafkaClient, KafkaAdmin), KafkaError> {
    let kafka = config.kafka();
    Ok((
        KafkaClient::connect(&kafka).await?,
        KafkaAdmin::connect(&kafka).await?,
    ))
}

/// With topic creation off: an error naming the first missing topic.
async fn missing(admin: &KafkaAdmin, specs: &[TopicSpec]) -> Result<(), KafkaError> {
    let existing = admin.list_topics().await?;
    match specs.iter().find(|s| !existing.contains(&s.name)) {
        None => Ok(()),
        Some(spec) => Err(KafkaError::UnknownTopic {
            topic: format!("{} (LHS_SHOULD_CREATE_TOPICS is false)", spec.name),
        }),
    }
}
