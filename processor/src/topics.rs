//! The workflow core's topics and how records find their partition: the command
//! topics and the records senders put on them, the command results, the per-tenant task queues, the tenant header, the
//! alphabet of names that become parts of topic names, and Kafka's default partitioner
//! so a key lands where any Kafka client would put it.

use std::collections::BTreeMap;

use weir_topology::kafka::{Record, TopicSpec};

use crate::config::WeirConfig;

/// Header naming the tenant of a command; absent means [`DEFAULT_TENANT`].
pub const TENANT_HEADER: &str = "weir-tenant";
/// The tenant of a command that names none. It always exists.
pub const DEFAULT_TENANT: &str = "default";

/// The names and partition counts of the core's topics for one cluster id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreTopics {
    cluster_id: String,
    /// Partitions of `core-cmd`, `command-results` and every task queue.
    pub partitions: i32,
    /// Partitions of every tenant's execution-output topic (divides `partitions`).
    pub output_partitions: i32,
    /// Replication factor of every topic the core creates.
    pub replication_factor: i16,
}

impl CoreTopics {
    /// The topics of the cluster `config` names.
    pub fn new(config: &WeirConfig) -> Self {
        Self {
            cluster_id: config.cluster_id.clone(),
            partitions: config.cluster_partitions,
            output_partitions: config.output_partitions,
            replication_factor: config.replication_factor,
        }
    }

    /// `{cluster}_core-cmd`: execution commands, keyed by WfRun id.
    pub fn core_cmd(&self) -> String {
        format!("{}_core-cmd", self.cluster_id)
    }

    /// `{cluster}_metadata-cmd`: metadata commands, one partition.
    pub fn metadata_cmd(&self) -> String {
        format!("{}_metadata-cmd", self.cluster_id)
    }

    /// `{cluster}_command-results`: one `CommandResult` per command, keyed by command id.
    pub fn command_results(&self) -> String {
        format!("{}_command-results", self.cluster_id)
    }

    /// `{cluster}_{tenant}_task_{task_def}`: the queue of one tenant's `TaskDef`, with a
    /// partition per `core-cmd` partition (a task goes to its WfRun's partition).
    pub fn task_queue(&self, tenant: &str, task_def: &str) -> String {
        format!("{}_{tenant}_task_{task_def}", self.cluster_id)
    }

    /// `{cluster}_{tenant}_execution-output`: the tenant's published execution changes.
    pub fn execution_output(&self, tenant: &str) -> String {
        format!("{}_{tenant}_execution-output", self.cluster_id)
    }

    /// `{cluster}_{tenant}_metadata-output`: the tenant's published metadata changes.
    pub fn metadata_output(&self, tenant: &str) -> String {
        format!("{}_{tenant}_metadata-output", self.cluster_id)
    }

    /// How the queue of `(tenant, task_def)` is created.
    pub fn task_queue_spec(&self, tenant: &str, task_def: &str) -> TopicSpec {
        TopicSpec::new(
            self.task_queue(tenant, task_def),
            self.partitions,
            self.replication_factor,
        )
    }

    /// How `command-results` is created: results are only waited for briefly, so they
    /// are kept a day.
    pub fn command_results_spec(&self) -> TopicSpec {
        TopicSpec::new(
            self.command_results(),
            self.partitions,
            self.replication_factor,
        )
        .with_config("retention.ms", "86400000")
    }
}

/// Whether `c` may stand in a name that becomes part of a topic name: an ASCII letter
/// or digit, '.', '_' or '-' (Kafka's topic alphabet).
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Whether `name` can be part of a topic name: not empty, and only letters, digits,
/// '.', '_' or '-'. Cluster ids, tenant ids and metadata names are held to it, since
/// they prefix or name topics (`{cluster}_{tenant}_task_{task_def}`).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(is_name_char)
}

/// The Kafka record of a command sent to one of the core's command topics: its key,
/// its encoded value and the tenant header. Clients and workers send commands this way.
pub fn command_record(tenant: &str, key: Vec<u8>, value: Vec<u8>) -> Record {
    Record {
        key: Some(key),
        value: Some(value),
        headers: BTreeMap::from([(TENANT_HEADER.to_owned(), tenant.as_bytes().to_vec())]),
        timestamp: chrono::Utc::now(),
    }
}

/// The wall clock as a command's `time`, for senders (clients, workers); the core
/// itself never reads the clock.
pub fn command_time_now() -> prost_types::Timestamp {
    weir_proto::timestamp::from_millis(chrono::Utc::now().timestamp_millis())
}

/// The partition Kafka's default partitioner picks for `key` among `partitions`:
/// murmur2 of the key with Kafka's seed, made non-negative, modulo the count.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    let hash = murmur2::murmur2(key, murmur2::KAFKA_SEED) & 0x7fff_ffff;
    (hash % partitions.max(1) as u32) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_use_the_topic_alphabet() {
        assert!(is_valid_name("ship-item_v2.1"));
        assert!(is_valid_name("A"));
        for bad in ["", "ship item", "a/b", "a:b", "ünïcode", "tab\t"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn partitions_match_the_java_client() {
        // Values from Kafka's `Utils.toPositive(Utils.murmur2(key)) % n`.
        assert_eq!(
            murmur2::murmur2(b"21", murmur2::KAFKA_SEED) as i32,
            -973_932_308
        );
        assert_eq!(
            murmur2::murmur2(b"foobar", murmur2::KAFKA_SEED) as i32,
            -790_332_482
        );
        assert_eq!(
            partition_for_key(b"21", 12),
            ((-973_932_308i32 & 0x7fff_ffff) % 12)
        );
        for key in [&b""[..], b"a", b"order-17", b"\xff\x00"] {
            let p = partition_for_key(key, 12);
            assert!((0..12).contains(&p));
        }
    }
}
