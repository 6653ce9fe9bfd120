//! The flows example (`examples/flows/user-activity.yaml`): its transforms, registered by
//! name, a generator of UserActivity records, and what the tables should hold (the
//! latest record per key, and the migration of it), compared with what they hold as
//! committed. The `flows` binary, `make run-flows` and the flows integration tests use
//! it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use weir_processor::cli::flows::table_rows;
use weir_processor::config::WeirConfig;
use weir_processor::flows::manifest::{self, ValidManifest};
use weir_processor::flows::naming::ModelVersion;
use weir_processor::flows::transform::TransformRegistry;
use weir_processor::spec_file::SpecFormat;
use weir_processor::topics::partition_for_key;
use weir_proto::{DataModelVersion, FlowsManifest};
use weir_topology::kafka::{KafkaAdmin, KafkaClient, Record};

/// The example manifest, as in `examples/flows/user-activity.yaml`.
pub const MANIFEST: &str = include_str!("../flows/user-activity.yaml");

/// Where the manifest file is, relative to the repository root.
pub const MANIFEST_PATH: &str = "examples/flows/user-activity.yaml";

/// Events the generator picks from.
const EVENTS: [&str; 4] = ["page view home", "click buy", "search red shoes", "logout"];

/// The example's transforms: `user_activity_0_0_to_0_1` (renames `event` to `action`,
/// adds `device`) and `parse_activity` (first word of the action and its word count).
pub fn registry() -> TransformRegistry {
    let mut registry = TransformRegistry::new();
    let registered = registry
        .register("user_activity_0_0_to_0_1", |record: &Value| {
            let event = record
                .get("event")
                .and_then(Value::as_str)
                .ok_or("no event")?;
            let mut out = json!({
                "user_id": record["user_id"],
                "action": event,
                "device": "unknown",
            });
            if let Some(ts) = record.get("ts_ms") {
                out["ts_ms"] = ts.clone();
            }
            Ok(vec![out])
        })
        .and_then(|r| {
            r.register("parse_activity", |record: &Value| {
                let action = record
                    .get("action")
                    .and_then(Value::as_str)
                    .ok_or("no action")?;
                let verb = action.split_whitespace().next().unwrap_or_default();
                Ok(vec![json!({
                    "user_id": record["user_id"],
                    "verb": verb,
                    "words": action.split_whitespace().count(),
                })])
            })
        })
        .is_ok();
    debug_assert!(registered, "the example's transform names are distinct");
    registry
}

/// The example manifest, validated with the example's transforms.
pub fn manifest() -> anyhow::Result<ValidManifest> {
    let parsed = manifest::parse(MANIFEST, SpecFormat::Yaml, MANIFEST_PATH)?;
    manifest::validate(parsed, Some(&registry())).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The transform of the example's migration flow.
pub const MIGRATION_TRANSFORM: &str = "user_activity_0_0_to_0_1";

/// `manifest` with its models and without its flows: the stage before flows are added.
pub fn models_only(manifest: &FlowsManifest) -> FlowsManifest {
    FlowsManifest {
        data_models: manifest.data_models.clone(),
        flows: Vec::new(),
    }
}

/// The latest value of each key among `records`, taken in order: what a table fed by
/// them holds.
pub fn latest_per_key(
    records: impl IntoIterator<Item = (String, Value)>,
) -> BTreeMap<String, Value> {
    records.into_iter().collect()
}

/// Each value of `table` through the transform `name` of [`registry`], which must give
/// exactly one record: what a migrated table holds.
pub fn transformed(
    name: &str,
    table: &BTreeMap<String, Value>,
) -> anyhow::Result<BTreeMap<String, Value>> {
    let registry = registry();
    table
        .iter()
        .map(|(key, value)| {
            let mut out = registry
                .apply(name, value)
                .map_err(|e| anyhow::anyhow!("{name} on {key}: {e}"))?;
            anyhow::ensure!(out.len() == 1, "{name} on {key} gave {} records", out.len());
            Ok((key.clone(), out.remove(0)))
        })
        .collect()
}

/// The committed rows of `model`'s table: key to JSON value.
pub async fn table_values(
    config: &WeirConfig,
    model: &ModelVersion,
) -> anyhow::Result<BTreeMap<String, Value>> {
    table_rows(config, model)
        .await?
        .into_iter()
        .map(|(key, row)| {
            let key = String::from_utf8(key).context("a table key is not UTF-8")?;
            let value = serde_json::from_slice(&row.value)
                .with_context(|| format!("row {key} of {} is not JSON", model.table()))?;
            Ok((key, value))
        })
        .collect()
}

/// `UserActivity 0.0`, the model the generator writes.
pub fn source_model() -> ModelVersion {
    ModelVersion::new("UserActivity", &DataModelVersion { major: 0, minor: 0 })
}

/// The `i`-th generated record: one of `users` users, keyed by `user_id`.
pub fn record(i: u64, users: u64) -> (String, Value) {
    let user = format!("user-{}", i % users.max(1));
    let event = EVENTS[(i % EVENTS.len() as u64) as usize];
    let value = json!({"user_id": user, "event": event, "ts_ms": i});
    (user, value)
}

/// `UserActivity 0.1`, which newer producers write straight away.
pub fn current_model() -> ModelVersion {
    ModelVersion::new("UserActivity", &DataModelVersion { major: 0, minor: 1 })
}

/// The `i`-th record a newer producer writes as UserActivity 0.1: one of `users` users
/// named `app-user-…` (none of them a 0.0 user).
pub fn record_0_1(i: u64, users: u64) -> (String, Value) {
    let user = format!("app-user-{}", i % users.max(1));
    let action = EVENTS[(i % EVENTS.len() as u64) as usize];
    let value = json!({"user_id": user, "action": action, "device": "app", "ts_ms": i});
    (user, value)
}

/// `ParsedActivity 0.1`, the regular flow's target.
pub fn parsed_model() -> ModelVersion {
    ModelVersion::new("ParsedActivity", &DataModelVersion { major: 0, minor: 1 })
}

/// Produces `count` UserActivity 0.0 records ([`record`]) to its ingestion topic.
pub async fn generate(
    config: &WeirConfig,
    count: u64,
    users: u64,
    rate: Option<f64>,
) -> anyhow::Result<()> {
    let records = (0..count).map(|i| record(i, users)).collect();
    produce(config, &source_model(), records, rate).await
}

/// How a [`produce_until`] generator paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Records per send.
    pub batch: u64,
    /// Pause after each send.
    pub every: Duration,
    /// Records after which it stops by itself.
    pub limit: u64,
}

/// Produces records `make(0)`, `make(1)`, … to `model`'s ingestion topic at `pace`
/// until `stop` is set or the limit is reached; returns every record it produced, in
/// order. It stops at the first error.
pub async fn produce_until(
    config: &WeirConfig,
    model: &ModelVersion,
    make: impl Fn(u64) -> (String, Value),
    pace: Pace,
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<Vec<(String, Value)>> {
    let producer = Producer::connect(config, model).await?;
    let mut produced = Vec::new();
    let mut next = 0;
    while next < pace.limit && !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let end = next.saturating_add(pace.batch.max(1)).min(pace.limit);
        let records: Vec<_> = (next..end).map(&make).collect();
        next = end;
        producer.send(records.clone()).await?;
        produced.extend(records);
        tokio::time::sleep(pace.every).await;
    }
    Ok(produced)
}

/// Produces `records` (key, JSON value) to `model`'s ingestion topic ([`Producer`]);
/// with `rate`, at most that many per second.
pub async fn produce(
    config: &WeirConfig,
    model: &ModelVersion,
    records: Vec<(String, Value)>,
    rate: Option<f64>,
) -> anyhow::Result<()> {
    let producer = Producer::connect(config, model).await?;
    match rate.filter(|r| *r > 0.0) {
        Some(rate) => {
            let pause = Duration::from_secs_f64(1.0 / rate);
            for record in records {
                producer.send(vec![record]).await?;
                tokio::time::sleep(pause).await;
            }
        }
        None => {
            let mut records = records.into_iter().peekable();
            while records.peek().is_some() {
                producer.send(records.by_ref().take(500).collect()).await?;
            }
        }
    }
    Ok(())
}

/// Writes records to one model version's ingestion topic, each on the partition
/// Kafka's default partitioner picks for its key (where any producer would put it).
#[derive(Debug)]
pub struct Producer {
    topic: String,
    handles: BTreeMap<i32, weir_topology::kafka::TopicPartition>,
}

impl Producer {
    /// A producer for `model`'s ingestion topic, which must exist.
    pub async fn connect(config: &WeirConfig, model: &ModelVersion) -> anyhow::Result<Self> {
        let kafka = config.kafka();
        let topic = model.ingestion_topic();
        let admin = KafkaAdmin::connect(&kafka).await?;
        let described = admin
            .describe_topics(std::slice::from_ref(&topic))
            .await
            .with_context(|| format!("{topic}: apply the manifest first"))?;
        let partitions = described
            .first()
            .map_or(1, |d| i32::try_from(d.partitions.len()).unwrap_or(1));
        let client = KafkaClient::connect(&kafka).await?;
        let mut handles = BTreeMap::new();
        for partition in 0..partitions {
            handles.insert(partition, client.partition(&topic, partition).await?);
        }
        Ok(Self { topic, handles })
    }

    /// Writes `records`, in order per partition, and waits for the broker's acks.
    pub async fn send(&self, records: Vec<(String, Value)>) -> anyhow::Result<()> {
        let partitions = i32::try_from(self.handles.len()).unwrap_or(i32::MAX);
        let mut by_partition: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
        for (key, value) in records {
            let partition = partition_for_key(key.as_bytes(), partitions);
            by_partition.entry(partition).or_default().push(Record {
                key: Some(key.into_bytes()),
                value: Some(value.to_string().into_bytes()),
                headers: BTreeMap::new(),
                timestamp: chrono::Utc::now(),
            });
        }
        for (partition, records) in by_partition {
            if let Some(handle) = self.handles.get(&partition) {
                handle.produce(records).await.with_context(|| {
                    format!("producing to {} partition {partition}", self.topic)
                })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_processor::flows::record;

    #[test]
    fn the_example_manifest_validates_with_the_example_transforms() {
        let manifest = manifest().expect("valid");
        assert_eq!(manifest.models().count(), 3);
        assert_eq!(manifest.flows().len(), 2);
        let file =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("flows/user-activity.yaml");
        let read = manifest::read(&file).expect("the file reads");
        assert_eq!(&read, manifest.manifest());
    }

    #[test]
    fn generated_records_migrate_and_parse_into_valid_records() {
        let manifest = manifest().expect("valid");
        let registry = registry();
        let model = |name: &str, minor: u32| {
            let id = ModelVersion::new(name, &DataModelVersion { major: 0, minor });
            manifest.model(&id).expect("declared").clone()
        };
        let (key, value) = record(6, 5);
        assert_eq!(key, "user-1");
        record::validate_value(&model("UserActivity", 0), &value).expect("valid 0.0");
        let migrated = registry
            .apply("user_activity_0_0_to_0_1", &value)
            .expect("migrates");
        record::validate_value(&model("UserActivity", 1), &migrated[0]).expect("valid 0.1");
        let parsed = registry
            .apply("parse_activity", &migrated[0])
            .expect("parses");
        record::validate_value(&model("ParsedActivity", 1), &parsed[0]).expect("valid");
        assert_eq!(parsed[0]["verb"], "search");
        assert_eq!(parsed[0]["words"], 3);
    }
}
