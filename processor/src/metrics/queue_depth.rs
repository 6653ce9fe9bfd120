//! The depth of the task queues, measured by `weir server` beside its runtime when it
//! serves metrics (`LHS_METRICS_PORT`; without a recorder there is no one to tell): every
//! [`INTERVAL`], for each TaskDef of each tenant (read from the committed metadata) and
//! each queue partition whose `core-cmd` partition this instance owns, the records
//! after the worker group's committed offset, as [`TASK_QUEUE_DEPTH`].
//!
//! That is the queue's end minus the position the workers committed (or minus the log
//! start when they committed none, or their offset fell out of retention): tasks
//! dispatched and not yet reported, claimed-and-running ones included, and records of
//! attempts no longer open until a worker skips past them. Workers commit their
//! position every 200 ms by default and on shutdown, so the depth trails reality by
//! that and by the interval. The instances share the work as they share the partitions:
//! summed over instances, it is each queue's depth once.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use weir_proto::StoredMetadata;
use weir_proto::stored_metadata::Object;
use weir_topology::kafka::{KafkaAdmin, KafkaClient, KafkaError, TopicPartition};
use weir_topology::{PartitionAssignor, Topology, read_committed};

use super::TASK_QUEUE_DEPTH;
use crate::config::WeirConfig;
use crate::core::store_names;
use crate::topics::CoreTopics;

/// How often the queues are measured.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// The sub-topology whose partitions a queue's partitions follow.
const CORE_SUBTOPOLOGY: &str = "core";

/// A TaskDef's queue: `(tenant, task_def)`.
type Queue = (String, String);

/// Records after `committed` (or after the log start, `earliest`, when nothing usable
/// is committed) up to `high_watermark`.
pub fn depth(earliest: i64, high_watermark: i64, committed: Option<i64>) -> i64 {
    let position = committed.filter(|&c| c >= earliest).unwrap_or(earliest);
    (high_watermark - position).max(0)
}

/// Every `(tenant, task_def)` among the committed metadata entries (key
/// `{tenant}\0task-def\0{name}\0`, value a `StoredMetadata`).
pub fn task_defs(entries: &BTreeMap<Bytes, Bytes>) -> BTreeSet<Queue> {
    entries
        .iter()
        .filter_map(|(key, value)| {
            let Object::TaskDef(def) = StoredMetadata::decode(value.as_ref()).ok()?.object? else {
                return None;
            };
            let tenant = key.split(|&b| b == 0).next()?;
            Some((String::from_utf8(tenant.to_vec()).ok()?, def.name))
        })
        .collect()
}

/// Measures the queues until `stop` completes. Errors are logged and the queue (or the
/// round) is tried again at the next interval.
pub async fn run(config: WeirConfig, stop: impl Future<Output = ()>) {
    let topics = CoreTopics::new(&config);
    let owned: Vec<i32> = match config.assignor() {
        Ok(assignor) => (0..config.cluster_partitions)
            .filter(|&p| assignor.owns(CORE_SUBTOPOLOGY, p))
            .collect(),
        Err(error) => {
            tracing::error!(%error, "task queue depth not measured");
            return;
        }
    };
    let mut stop = std::pin::pin!(stop);
    let mut sampler: Option<Sampler> = None;
    loop {
        if sampler.is_none() {
            match Sampler::connect(&config).await {
                Ok(connected) => sampler = Some(connected),
                Err(error) => {
                    tracing::warn!(%error, "task queue depth: cannot reach Kafka; retrying")
                }
            }
        }
        if let Some(sampler) = &mut sampler
            && let Err(error) = sampler.sample(&config, &topics, &owned).await
        {
            tracing::warn!(%error, "task queue depth not measured this round");
        }
        tokio::select! {
            () = tokio::time::sleep(INTERVAL) => {}
            () = &mut stop => return,
        }
    }
}

/// Connections and partition handles kept between rounds.
struct Sampler {
    client: KafkaClient,
    admin: KafkaAdmin,
    handles: BTreeMap<(String, i32), TopicPartition>,
    /// Queues measured last round: one that disappears is set to 0 once.
    measured: BTreeSet<Queue>,
}

impl Sampler {
    async fn connect(config: &WeirConfig) -> Result<Self, KafkaError> {
        let kafka = config.kafka();
        Ok(Self {
            client: KafkaClient::connect(&kafka).await?,
            admin: KafkaAdmin::connect(&kafka).await?,
            handles: BTreeMap::new(),
            measured: BTreeSet::new(),
        })
    }

    async fn sample(
        &mut self,
        config: &WeirConfig,
        topics: &CoreTopics,
        owned: &[i32],
    ) -> Result<(), KafkaError> {
        let changelog = Topology::changelog_topic(&config.cluster_id, store_names::METADATA);
        let metadata = self.client.partition(&changelog, 0).await?;
        let queues = task_defs(&read_committed(&metadata).await?);
        // A lookup must never create a topic: measure only queues that exist.
        let existing = self.admin.list_topics().await?;
        let mut measured = BTreeSet::new();
        for queue in queues {
            let (tenant, task_def) = &queue;
            let topic = topics.task_queue(tenant, task_def);
            if !existing.contains(&topic) {
                continue;
            }
            // The group a worker of this TaskDef commits in (`Worker::group`).
            let group = config.topic(&format!("worker_{tenant}_{task_def}"));
            match self.measure(&topic, &group, owned).await {
                Ok(depths) => {
                    for (partition, depth) in depths {
                        gauge(tenant, task_def, partition).set(depth as f64);
                    }
                    measured.insert(queue);
                }
                Err(error) => {
                    tracing::warn!(queue = %topic, %error, "task queue depth not measured");
                    self.handles.retain(|(t, _), _| t != &topic);
                }
            }
        }
        for (tenant, task_def) in self.measured.difference(&measured) {
            for &partition in owned {
                gauge(tenant, task_def, partition).set(0.0);
            }
        }
        self.measured = measured;
        Ok(())
    }

    /// The depth of each owned partition of `topic` for `group`.
    async fn measure(
        &mut self,
        topic: &str,
        group: &str,
        owned: &[i32],
    ) -> Result<Vec<(i32, i64)>, KafkaError> {
        let committed = self.admin.committed_offsets(group, topic, owned).await?;
        let mut depths = Vec::with_capacity(owned.len());
        for &partition in owned {
            let handle = match self.handles.get(&(topic.to_owned(), partition)) {
                Some(handle) => handle.clone(),
                None => {
                    let handle = self.client.partition(topic, partition).await?;
                    self.handles
                        .insert((topic.to_owned(), partition), handle.clone());
                    handle
                }
            };
            let earliest = handle.earliest_offset().await?;
            let (_, high_watermark) = handle.fetch(earliest, 1, Duration::ZERO).await?;
            let committed = committed.get(&partition).copied().flatten();
            depths.push((partition, depth(earliest, high_watermark, committed)));
        }
        Ok(depths)
    }
}

fn gauge(tenant: &str, task_def: &str, partition: i32) -> metrics::Gauge {
    metrics::gauge!(
        TASK_QUEUE_DEPTH,
        "tenant" => tenant.to_owned(),
        "task_def" => task_def.to_owned(),
        "partition" => partition.to_string()
    )
}

#[cfg(test)]
mod tests {
    use weir_proto::{TaskDef, Tenant};

    use super::*;
    use crate::core::keys::{self, MetadataKind};

    #[test]
    fn depth_counts_from_the_committed_offset_or_the_log_start() {
        // Nothing committed: everything still in the log.
        assert_eq!(depth(0, 10, None), 10);
        assert_eq!(depth(4, 10, None), 6);
        // Committed: what follows it.
        assert_eq!(depth(0, 10, Some(7)), 3);
        assert_eq!(depth(0, 10, Some(10)), 0);
        // A committed offset that fell out of retention counts from the log start.
        assert_eq!(depth(5, 10, Some(2)), 5);
        // Never negative, even with a committed offset past the end.
        assert_eq!(depth(0, 10, Some(12)), 0);
    }

    #[test]
    fn task_defs_are_read_with_their_tenant_from_the_metadata_entries() {
        let entry = |key: Vec<u8>, object: Object| {
            (
                Bytes::from(key),
                Bytes::from(
                    StoredMetadata {
                        object: Some(object),
                    }
                    .encode_to_vec(),
                ),
            )
        };
        let task_def = |name: &str| {
            Object::TaskDef(TaskDef {
                name: name.to_owned(),
                ..Default::default()
            })
        };
        let entries: BTreeMap<Bytes, Bytes> = [
            entry(
                keys::metadata("acme", MetadataKind::TaskDef, "ship-item"),
                task_def("ship-item"),
            ),
            entry(
                keys::metadata("default", MetadataKind::TaskDef, "fetch-price"),
                task_def("fetch-price"),
            ),
            entry(
                keys::metadata("acme", MetadataKind::Tenant, "acme"),
                Object::Tenant(Tenant {
                    id: "acme".to_owned(),
                    ..Default::default()
                }),
            ),
            (
                Bytes::from_static(b"bad\0task-def\0x\0"),
                Bytes::from_static(b"\xff"),
            ),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            task_defs(&entries),
            BTreeSet::from([
                ("acme".to_owned(), "ship-item".to_owned()),
                ("default".to_owned(), "fetch-price".to_owned()),
            ])
        );
    }
}
