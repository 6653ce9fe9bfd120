//! Ingestion and transforms at volume: 100,000 records over 4 partitions leave each table
//! with the latest record per key (the migrated table with its transform); a transform
//! that fails on some records sends exactly those to the dead-letter topic, with the
//! reason, and the rest through; records that do not match their model are
//! dead-lettered at ingestion with theirs; records produced to a flow's input topic go
//! through it alone.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use weir_examples::flows_demo::{self, MIGRATION_TRANSFORM, Producer};
use weir_integration::consume_until;
use weir_processor::flows::app::{FlowsApp, FlowsAppError};
use weir_processor::flows::naming::FlowTopics;
use weir_processor::flows::transform::TransformRegistry;
use weir_topology::kafka::Record;
use weir_topology::task::{ERROR_HEADER, SOURCE_TOPIC_HEADER};

use super::FlowsCluster;
use crate::cluster::stop_server;

/// Records of the volume test, and the users they are spread over.
const RECORDS: u64 = 100_000;
const USERS: u64 = 10_000;

/// How long the volume test may take to ingest and migrate everything.
const VOLUME_WAIT: Duration = Duration::from_secs(600);

#[tokio::test]
async fn a_hundred_thousand_records_over_four_partitions_leave_the_latest_per_key() {
    let flows = FlowsCluster::new("flows-volume").await;
    let file = flows.write("flows.yaml", &flows.manifest());
    flows.apply(&file, 4).await;
    let source = flows.model("UserActivity", 0);
    let records: Vec<_> = (0..RECORDS).map(|i| flows_demo::record(i, USERS)).collect();
    let expected = flows_demo::latest_per_key(records.clone());
    let migrated =
        flows_demo::transformed(MIGRATION_TRANSFORM, &expected).expect("the example migrates");
    let producer = Producer::connect(&flows.cluster.config, &source)
        .await
        .expect("producer");
    for chunk in records.chunks(5_000) {
        producer.send(chunk.to_vec()).await.expect("produced");
    }

    let running = flows.start_flows("flows-volume", &file, &[]).await;
    let target = flows.model("UserActivity", 1);
    flows
        .wait_for_tables(
            VOLUME_WAIT,
            "both tables to hold every user's latest record",
            &[(&source, &expected), (&target, &migrated)],
        )
        .await;
    stop_server(running).await;
}

/// The example's transforms and `fail_on_sevens`: the example migration, failing on
/// every record whose `ts_ms` is 3 modulo 7.
fn unlucky_registry() -> TransformRegistry {
    let example = flows_demo::registry();
    let mut registry = flows_demo::registry();
    registry
        .register("fail_on_sevens", move |record: &Value| {
            let ts = record.get("ts_ms").and_then(Value::as_u64).unwrap_or(0);
            if ts % 7 == 3 {
                return Err(format!("unlucky record {ts}"));
            }
            example
                .apply(MIGRATION_TRANSFORM, record)
                .map_err(|e| e.to_string())
        })
        .expect("registered");
    registry
}

#[tokio::test]
async fn a_failing_transform_and_malformed_records_dead_letter_exactly_those_records() {
    let flows = FlowsCluster::new("flows-failing").await;
    let text = flows
        .manifest()
        .replace(MIGRATION_TRANSFORM, "fail_on_sevens");
    let file = flows.write("flows.yaml", &text);
    let mut config = flows.cluster.config.clone();
    config.state_dir = flows.cluster.state_dir().to_owned();
    let app = FlowsApp::new(file.as_str(), unlucky_registry());

    // Before the manifest is applied, the flows do not start, and say why.
    match app.start(&config).await {
        Err(error @ FlowsAppError::MissingTopic { .. }) => {
            let said = error.to_string();
            // The first topic missing, in model name order.
            let first = flows.model("ParsedActivity", 1).ingestion_topic();
            assert!(
                said.starts_with(&format!("topic {first} (ingestion topic of"))
                    && said.ends_with(
                        "does not exist: apply the manifest first (`weir flows apply FILE`)"
                    ),
                "{said}"
            );
        }
        other => panic!("expected a missing topic, got {other:?}"),
    }

    flows.apply(&file, 2).await;
    let running = app.start(&config).await.expect("flows start");
    // One record per user, so each user's row is that record's fate.
    let records: Vec<_> = (0..700).map(|i| flows_demo::record(i, 700)).collect();
    let source = flows.model("UserActivity", 0);
    flows.produce(&source, records.clone(), "produced").await;
    // Records that do not match the model, each dead-lettered at ingestion with its reason.
    let malformed: [(Option<&str>, &str, &str); 3] = [
        (Some("bad-json"), "{not json", "not JSON"),
        (
            None,
            r#"{"event":"click"}"#,
            r#"key field "user_id" is missing"#,
        ),
        (
            Some("bad-type"),
            r#"{"user_id":"bad-type","event":5}"#,
            r#"field "event" must be"#,
        ),
    ];
    let client = flows.cluster.ns.client().await;
    let ingestion = client
        .partition(&source.ingestion_topic(), 0)
        .await
        .expect("ingestion partition");
    for (key, value, _) in &malformed {
        ingestion
            .produce(vec![Record {
                key: key.map(|k| k.as_bytes().to_vec()),
                value: Some(value.as_bytes().to_vec()),
                headers: BTreeMap::new(),
                timestamp: chrono::Utc::now(),
            }])
            .await
            .expect("malformed record produced");
    }

    let unlucky: BTreeSet<String> = records
        .iter()
        .filter(|(_, value)| value["ts_ms"].as_u64().expect("ts") % 7 == 3)
        .map(|(key, _)| key.clone())
        .collect();
    assert_eq!(unlucky.len(), 100);
    let lucky: Vec<_> = records
        .into_iter()
        .filter(|(key, _)| !unlucky.contains(key))
        .collect();
    let migrated = flows_demo::transformed(MIGRATION_TRANSFORM, &flows_demo::latest_per_key(lucky))
        .expect("the example migrates");
    let target = flows.model("UserActivity", 1);
    flows
        .wait_for_tables(
            Duration::from_secs(120),
            "the migrated table",
            &[(&target, &migrated)],
        )
        .await;

    let dead_letters = flows.cluster.ns.topic("dead-letter");
    let partitions = i32::try_from(
        flows
            .cluster
            .ns
            .admin()
            .await
            .describe_topics(std::slice::from_ref(&dead_letters))
            .await
            .expect("the dead-letter topic exists")[0]
            .partitions
            .len(),
    )
    .expect("partitions");
    let seen = consume_until(
        &client,
        &dead_letters,
        partitions,
        Duration::from_secs(60),
        "a dead letter for each unlucky and each malformed record",
        |seen| seen.len() >= unlucky.len() + malformed.len(),
    )
    .await;
    running.shutdown().await;
    assert_eq!(
        seen.len(),
        unlucky.len() + malformed.len(),
        "one dead letter per unlucky or malformed record"
    );
    let (at_ingestion, in_flow): (Vec<_>, Vec<_>) = seen.iter().partition(|record| {
        record.header_str(SOURCE_TOPIC_HEADER) == Some(source.ingestion_topic())
    });
    assert_eq!(at_ingestion.len(), malformed.len(), "{at_ingestion:?}");
    for ((key, value, reason), record) in malformed.iter().zip(&at_ingestion) {
        assert_eq!(record.key.as_deref(), key.map(str::as_bytes));
        assert_eq!(record.value.as_deref(), Some(value.as_bytes()));
        let said = record.header_str(ERROR_HEADER).unwrap_or_default();
        assert!(said.contains(reason), "{said:?} should say {reason:?}");
    }
    let mut dead = BTreeSet::new();
    for record in in_flow {
        let reason = record.header_str(ERROR_HEADER).unwrap_or_default();
        let value: Value = serde_json::from_slice(record.value.as_deref().unwrap_or_default())
            .expect("the dead letter holds the input record");
        let ts = value["ts_ms"].as_u64().expect("ts");
        assert!(
            reason.contains("flow \"migrate-user-activity\"")
                && reason.contains(&format!("unlucky record {ts}")),
            "reason {reason:?} of {value}"
        );
        assert_eq!(
            value,
            json!({"user_id": record.key_str(), "event": value["event"], "ts_ms": ts})
        );
        dead.insert(record.key_str());
    }
    assert_eq!(dead, unlucky);
}

#[tokio::test]
async fn a_flow_exercised_alone_writes_its_output_topic_and_leaves_its_source_alone() {
    let flows = FlowsCluster::new("flows-alone").await;
    let file = flows.write("flows.yaml", &flows.manifest());
    flows.apply(&file, 2).await;
    let mut config = flows.cluster.config.clone();
    config.state_dir = flows.cluster.state_dir().to_owned();
    let running = FlowsApp::new(file.as_str(), flows_demo::registry())
        .start(&config)
        .await
        .expect("flows start");

    // Straight to the regular flow's input topic, each on its key's partition.
    let source = flows.model("UserActivity", 1);
    let topics = FlowTopics {
        source: source.clone(),
        target: flows.model("ParsedActivity", 1),
    };
    let (input, output) = (topics.input(), topics.output());
    let records: Vec<_> = (0..10).map(|i| flows_demo::record_0_1(i, 10)).collect();
    let client = flows.cluster.ns.client().await;
    for (key, value) in &records {
        let partition = weir_processor::topics::partition_for_key(key.as_bytes(), 2);
        client
            .partition(&input, partition)
            .await
            .expect("input partition")
            .produce(vec![Record {
                key: Some(key.as_bytes().to_vec()),
                value: Some(value.to_string().into_bytes()),
                headers: BTreeMap::new(),
                timestamp: chrono::Utc::now(),
            }])
            .await
            .expect("produced to the flow's input");
    }
    let seen = consume_until(
        &client,
        &output,
        2,
        Duration::from_secs(60),
        "the flow's output",
        |seen| seen.len() >= records.len(),
    )
    .await;
    let registry = flows_demo::registry();
    for (key, value) in &records {
        let out = seen
            .iter()
            .find(|r| r.key_str() == *key)
            .unwrap_or_else(|| panic!("no output for {key}"));
        assert_eq!(
            out.partition,
            weir_processor::topics::partition_for_key(key.as_bytes(), 2),
            "{key} keeps its partition"
        );
        let parsed: Value =
            serde_json::from_slice(out.value.as_deref().unwrap_or_default()).expect("JSON");
        assert_eq!(
            vec![parsed],
            registry.apply("parse_activity", value).expect("parses")
        );
    }
    assert_eq!(seen.len(), records.len());
    assert!(
        flows.table(&source).await.is_empty(),
        "the source table is not touched"
    );
    running.shutdown().await;
}
