//! The flows example (`examples/flows/user-activity.yaml`): its transforms, registered by
//! name, a generator of UserActivity 0.0 records, and table counts read as committed.
//! The `flows` binary and `make run-flows` use it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use weir_processor::config::WeirConfig;
use weir_processor::flows::manifest::{self, ValidManifest};
use weir_processor::flows::naming::ModelVersion;
use weir_processor::flows::transform::TransformRegistry;
use weir_processor::spec_file::SpecFormat;
use weir_processor::topics::partition_for_key;
use weir_proto::DataModelVersion;
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

/// Produces `records` (key, JSON value) to `model`'s ingestion topic, each on the
/// partition Kafka's default partitioner picks for its key; with `rate`, at most that
/// many per second.
pub async fn produce(
    config: &WeirConfig,
    model: &ModelVersion,
    records: Vec<(String, Value)>,
    rate: Option<f64>,
) -> anyhow::Result<()> {
    let kafka = config.kafka();
    let topic = model.ingestion_topic();
    let count = records.len();
    let admin = KafkaAdmin::connect(&kafka).await?;
    let described = admin
        .describe_topics(std::slice::from_ref(&topic))
        .await
        .with_context(|| format!("apply {MANIFEST_PATH} first"))?;
    let partitions = described
        .first()
        .map_or(1, |d| i32::try_from(d.partitions.len()).unwrap_or(1));
    let client = KafkaClient::connect(&kafka).await?;
    let mut handles = BTreeMap::new();
    for partition in 0..partitions {
        handles.insert(partition, client.partition(&topic, partition).await?);
    }
    let pause = rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let batch = if pause.is_some() { 1 } else { 500 };
    let mut pending: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    for (i, (key, value)) in records.into_iter().enumerate() {
        let partition = partition_for_key(key.as_bytes(), partitions);
        pending.entry(partition).or_default().push(Record {
            key: Some(key.into_bytes()),
            value: Some(value.to_string().into_bytes()),
            headers: BTreeMap::new(),
            timestamp: chrono::Utc::now(),
        });
        if (i + 1) % batch == 0 || i + 1 == count {
            for (partition, records) in std::mem::take(&mut pending) {
                if let Some(handle) = handles.get(&partition) {
                    handle.produce(records).await?;
                }
            }
        }
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
    }
    Ok(())
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
