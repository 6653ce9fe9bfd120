//! The flows topology run end to end in the `TopologyTestDriver`: ingestion into tables,
//! copies to flow inputs, a migration written straight to the next version's table, a
//! regular flow copied to its target's ingestion topic, dead letters with their reasons,
//! a flow exercised alone, and keys keeping their partition.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value, json};
use weir_processor::flows::apply::table_changelog;
use weir_processor::flows::manifest::{self, ValidManifest};
use weir_processor::flows::naming::ModelVersion;
use weir_processor::flows::topology::{
    FlowStores, FlowsTopologyError, flow_state_stores, model_state_stores, topology,
    uniform_partitions,
};
use weir_processor::flows::transform::TransformRegistry;
use weir_processor::spec_file::SpecFormat;
use weir_processor::topics::partition_for_key;
use weir_proto::{DataModelVersion, TableRow};
use weir_topology::kafka::KafkaConfig;
use weir_topology::task::{ERROR_HEADER, RecordOutcome};
use weir_topology::{Runtime, RuntimeConfig, StaticAssignor, TopologyTestDriver};

const CLUSTER: &str = "weir";
const DEAD_LETTER: &str = "weir_dead-letter";
const PARTITIONS: i32 = 3;

const UA00: &str = "UserActivity_0_0";
const UA01: &str = "UserActivity_0_1";
const PA01: &str = "ParsedActivity_0_1";
const MIGRATE_IN: &str = "UserActivity_0_0_UserActivity_0_1_input";
const MIGRATE_OUT: &str = "UserActivity_0_0_UserActivity_0_1_output";
const PARSE_IN: &str = "UserActivity_0_1_ParsedActivity_0_1_input";
const PARSE_OUT: &str = "UserActivity_0_1_ParsedActivity_0_1_output";

const MANIFEST: &str = r#"
data_models:
  - name: UserActivity
    version: {major: 0, minor: 0}
    key_field: user_id
    fields:
      - {name: user_id, field_type: STRING, required: true}
      - {name: event, field_type: STRING}
  - name: UserActivity
    version: {major: 0, minor: 1}
    key_field: user_id
    fields:
      - {name: user_id, field_type: STRING, required: true}
      - {name: event, field_type: STRING, required: true}
  - name: ParsedActivity
    version: {major: 0, minor: 1}
    key_field: user_id
    fields:
      - {name: user_id, field_type: STRING, required: true}
      - {name: words, field_type: INT, required: true}
flows:
  - name: migrate-user-activity
    source_model: UserActivity
    source_version: {major: 0, minor: 0}
    target_model: UserActivity
    target_version: {major: 0, minor: 1}
    kind: MIGRATION
    transform: ua_0_0_to_0_1
  - name: parse-activity
    source_model: UserActivity
    source_version: {major: 0, minor: 1}
    target_model: ParsedActivity
    target_version: {major: 0, minor: 1}
    transform: count_words
"#;

fn registry() -> TransformRegistry {
    let mut registry = TransformRegistry::new();
    registry
        .register("ua_0_0_to_0_1", |v: &Value| {
            let event = v.get("event").and_then(Value::as_str).unwrap_or("unknown");
            if event == "boom" {
                return Err("cannot migrate a boom".to_owned());
            }
            if event == "rekey" {
                return Ok(vec![json!({"user_id": "someone-else", "event": event})]);
            }
            Ok(vec![json!({"user_id": v["user_id"], "event": event})])
        })
        .and_then(|r| {
            r.register("count_words", |v: &Value| {
                let event = v["event"].as_str().ok_or("no event")?;
                if event == "bad-output" {
                    return Ok(vec![json!({"user_id": v["user_id"], "words": "many"})]);
                }
                Ok(vec![
                    json!({"user_id": v["user_id"], "words": event.split(' ').count()}),
                ])
            })
        })
        .expect("distinct names");
    registry
}

fn valid_manifest() -> ValidManifest {
    let parsed = manifest::parse(MANIFEST, SpecFormat::Yaml, "flows.yaml").expect("parses");
    manifest::validate(parsed, Some(&registry())).expect("valid")
}

fn mv(name: &str, major: u32, minor: u32) -> ModelVersion {
    ModelVersion::new(name, &DataModelVersion { major, minor })
}

struct Harness {
    driver: TopologyTestDriver,
    stores: FlowStores,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Self {
        let manifest = valid_manifest();
        let partitions = uniform_partitions(&manifest, PARTITIONS);
        let (topology, stores) =
            topology(&manifest, Arc::new(registry()), &partitions, 1).expect("topology");
        let dir = tempfile::tempdir().expect("temp dir");
        let driver = TopologyTestDriver::new(topology, CLUSTER, dir.path()).expect("driver");
        Self {
            driver,
            stores,
            _dir: dir,
        }
    }

    /// Pipes `value` to `topic`, keyed by `key`, on the partition a producer would use.
    fn produce(&mut self, topic: &str, key: &str, value: &Value) -> RecordOutcome {
        let partition = partition_for_key(key.as_bytes(), PARTITIONS);
        self.driver
            .pipe(
                topic,
                partition,
                Some(key.as_bytes()),
                Some(value.to_string().as_bytes()),
                &[],
                1_000,
            )
            .expect("pipe")
    }

    /// The table of `model` on every partition: key -> (partition, record).
    fn table(&self, model: &ModelVersion) -> BTreeMap<String, (i32, Value)> {
        let handle = self.stores.table(model).expect("declared");
        let mut rows = BTreeMap::new();
        for partition in 0..PARTITIONS {
            for (key, row) in self
                .driver
                .store_contents::<TableRow>(handle, partition)
                .expect("store")
            {
                let value: Value = serde_json::from_slice(&row.value).expect("JSON row");
                let key = String::from_utf8(key.to_vec()).expect("text key");
                assert!(
                    rows.insert(key.clone(), (partition, value)).is_none(),
                    "key {key} in two partitions"
                );
            }
        }
        rows
    }

    /// The records written to `topic`: (partition, key, value).
    fn records(&self, topic: &str) -> Vec<(i32, String, Value)> {
        self.driver
            .outputs_to(topic)
            .iter()
            .map(|o| {
                let key = o.record.key.as_deref().expect("keyed");
                let value = o.record.value.as_deref().expect("valued");
                (
                    o.record.partition,
                    String::from_utf8(key.to_vec()).expect("text key"),
                    serde_json::from_slice(value).expect("JSON"),
                )
            })
            .collect()
    }

    /// The reasons of every dead letter so far.
    fn dead_letters(&self) -> Vec<String> {
        self.driver
            .outputs_to(DEAD_LETTER)
            .iter()
            .map(|o| {
                let reason = o.record.headers.get(ERROR_HEADER).expect("reason header");
                String::from_utf8(reason.to_vec()).expect("text reason")
            })
            .collect()
    }
}

fn part(key: &str) -> i32 {
    partition_for_key(key.as_bytes(), PARTITIONS)
}

#[test]
fn ingested_records_fill_the_table_and_migrate_into_the_next_versions_table() {
    let mut h = Harness::new();
    // Keys chosen to land in different partitions.
    let keys = ["alice", "bob", "carol", "dave"];
    assert!(
        keys.iter()
            .map(|k| part(k))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 1
    );
    for key in keys {
        assert_eq!(
            h.produce(UA00, key, &json!({"user_id": key, "event": "signed up"})),
            RecordOutcome::Processed
        );
    }
    // A later record of a key replaces the earlier one; producer field order does not
    // matter (rows are canonical).
    h.produce(
        UA00,
        "alice",
        &json!({"event": "logged in", "user_id": "alice"}),
    );
    h.produce(UA00, "bob", &json!({"user_id": "bob"}));

    let ua00 = h.table(&mv("UserActivity", 0, 0));
    assert_eq!(ua00.len(), 4);
    assert_eq!(
        ua00["alice"],
        (
            part("alice"),
            json!({"user_id": "alice", "event": "logged in"})
        )
    );
    assert_eq!(ua00["bob"], (part("bob"), json!({"user_id": "bob"})));

    // Every record was copied to the migration's input, same key, same partition.
    let copied = h.records(MIGRATE_IN);
    assert_eq!(copied.len(), 6);
    assert_eq!(
        copied[4],
        (
            part("alice"),
            "alice".to_owned(),
            json!({"user_id": "alice", "event": "logged in"})
        )
    );
    assert_eq!(h.records(MIGRATE_OUT).len(), 6);

    // The migration wrote the next version's table, not its ingestion topic, and did
    // not feed that version's flows.
    let ua01 = h.table(&mv("UserActivity", 0, 1));
    assert_eq!(ua01.len(), 4);
    assert_eq!(
        ua01["alice"],
        (
            part("alice"),
            json!({"user_id": "alice", "event": "logged in"})
        )
    );
    assert_eq!(
        ua01["bob"],
        (part("bob"), json!({"user_id": "bob", "event": "unknown"}))
    );
    assert!(
        h.records(UA01).is_empty(),
        "migration reached the ingestion topic"
    );
    assert!(
        h.records(PARSE_IN).is_empty(),
        "migrated records reached 0.1's flows"
    );
    assert!(h.table(&mv("ParsedActivity", 0, 1)).is_empty());
    assert!(h.dead_letters().is_empty(), "{:?}", h.dead_letters());
}

#[test]
fn a_regular_flow_copies_its_output_to_the_target_ingestion_topic_and_table() {
    let mut h = Harness::new();
    h.produce(
        UA01,
        "alice",
        &json!({"user_id": "alice", "event": "read three books"}),
    );
    h.produce(UA01, "bob", &json!({"user_id": "bob", "event": "slept"}));

    assert_eq!(h.records(PARSE_IN).len(), 2);
    assert_eq!(
        h.records(PARSE_OUT),
        [
            (
                part("alice"),
                "alice".to_owned(),
                json!({"user_id": "alice", "words": 3})
            ),
            (
                part("bob"),
                "bob".to_owned(),
                json!({"user_id": "bob", "words": 1})
            ),
        ]
    );
    assert_eq!(h.records(PA01), h.records(PARSE_OUT));
    let pa01 = h.table(&mv("ParsedActivity", 0, 1));
    assert_eq!(
        pa01["alice"],
        (part("alice"), json!({"user_id": "alice", "words": 3}))
    );
    assert_eq!(
        pa01["bob"],
        (part("bob"), json!({"user_id": "bob", "words": 1}))
    );
    // The source version's table holds the records too.
    assert_eq!(h.table(&mv("UserActivity", 0, 1)).len(), 2);
}

#[test]
fn bad_records_and_failed_transforms_are_dead_lettered_and_processing_goes_on() {
    let mut h = Harness::new();
    // Invalid for the model: dead-lettered at ingestion, nothing kept.
    let outcome = h.produce(UA00, "alice", &json!({"user_id": "alice", "colour": "red"}));
    let RecordOutcome::DeadLettered(reason) = outcome else {
        panic!("not dead-lettered: {outcome:?}");
    };
    assert_eq!(
        reason,
        r#"UserActivity 0.0: field "colour" is not declared by the model"#
    );
    // A Kafka key other than the key field's value.
    let outcome = h.produce(UA00, "mallory", &json!({"user_id": "alice"}));
    assert!(
        matches!(&outcome, RecordOutcome::DeadLettered(r) if r.contains("differs from its key field")),
        "{outcome:?}"
    );
    // The transform fails: the ingested record is kept, the flow's input is
    // dead-lettered with the transform's reason.
    assert_eq!(
        h.produce(UA00, "bob", &json!({"user_id": "bob", "event": "boom"})),
        RecordOutcome::Processed
    );
    // A migration that changes the key is refused.
    h.produce(
        UA00,
        "carol",
        &json!({"user_id": "carol", "event": "rekey"}),
    );
    // A regular flow's result that does not match the target model.
    h.produce(
        UA01,
        "dave",
        &json!({"user_id": "dave", "event": "bad-output"}),
    );
    // The next records go on.
    h.produce(UA00, "erin", &json!({"user_id": "erin", "event": "fine"}));
    h.produce(
        UA01,
        "frank",
        &json!({"user_id": "frank", "event": "fine too"}),
    );

    assert_eq!(
        h.dead_letters(),
        [
            r#"UserActivity 0.0: field "colour" is not declared by the model"#.to_owned(),
            r#"UserActivity 0.0: the record's Kafka key "mallory" differs from its key field "user_id" value "alice""#.to_owned(),
            r#"flow "migrate-user-activity": transform "ua_0_0_to_0_1" failed: cannot migrate a boom"#.to_owned(),
            r#"flow "migrate-user-activity": result 0 of the migration has key "someone-else", but the record's key is "carol"; a migration keeps the key"#.to_owned(),
            r#"flow "parse-activity": result 0 of the transform: field "words" must be an integer in the signed 64-bit range, not the string "many""#.to_owned(),
        ]
    );
    let ua00 = h.table(&mv("UserActivity", 0, 0));
    assert_eq!(ua00.keys().collect::<Vec<_>>(), ["bob", "carol", "erin"]);
    let ua01 = h.table(&mv("UserActivity", 0, 1));
    assert_eq!(ua01.keys().collect::<Vec<_>>(), ["dave", "erin", "frank"]);
    assert!(!ua01.contains_key("someone-else"));
    let pa01 = h.table(&mv("ParsedActivity", 0, 1));
    assert_eq!(pa01.keys().collect::<Vec<_>>(), ["frank"]);
    assert_eq!(h.records(MIGRATE_OUT).len(), 1);
}

#[test]
fn a_flow_exercised_alone_reaches_its_output_only() {
    let mut h = Harness::new();
    // Straight to the migration's input: nothing reaches the source table or other
    // flows; the output goes on to the target table as any migration output does.
    h.produce(
        MIGRATE_IN,
        "alice",
        &json!({"user_id": "alice", "event": "x"}),
    );
    assert_eq!(
        h.records(MIGRATE_OUT),
        [(
            part("alice"),
            "alice".to_owned(),
            json!({"user_id": "alice", "event": "x"})
        )]
    );
    assert!(h.table(&mv("UserActivity", 0, 0)).is_empty());
    assert!(h.records(UA00).is_empty() && h.records(PARSE_IN).is_empty());

    // The regular flow alone: its input is checked against the source model too.
    h.produce(PARSE_IN, "bob", &json!({"user_id": "bob", "event": "a b"}));
    let outcome = h.produce(PARSE_IN, "carol", &json!({"user_id": "carol"}));
    assert_eq!(
        outcome,
        RecordOutcome::DeadLettered(
            r#"flow "parse-activity": input record: required field "event" is missing"#.into()
        )
    );
    assert_eq!(
        h.records(PARSE_OUT),
        [(
            part("bob"),
            "bob".to_owned(),
            json!({"user_id": "bob", "words": 2})
        )]
    );
    assert_eq!(
        h.table(&mv("UserActivity", 0, 1))
            .keys()
            .collect::<Vec<_>>(),
        ["alice"]
    );
    assert_eq!(h.records(PA01).len(), 1);
    assert!(h.table(&mv("UserActivity", 0, 0)).is_empty());
}

#[test]
fn keys_keep_their_partition_end_to_end() {
    let mut h = Harness::new();
    let keys: Vec<String> = (0..20).map(|i| format!("user-{i}")).collect();
    for key in &keys {
        h.produce(UA00, key, &json!({"user_id": key, "event": "e"}));
        h.produce(UA01, key, &json!({"user_id": key, "event": "e f"}));
    }
    let mut seen = 0;
    for topic in [
        UA00,
        MIGRATE_IN,
        MIGRATE_OUT,
        UA01,
        PARSE_IN,
        PARSE_OUT,
        PA01,
    ] {
        for (partition, key, _) in h.records(topic) {
            assert_eq!(partition, part(&key), "{key} on {topic}");
            seen += 1;
        }
    }
    // Piped records are not outputs; every forwarded copy is.
    assert_eq!(seen, 20 * 5);
    for model in [
        mv("UserActivity", 0, 0),
        mv("UserActivity", 0, 1),
        mv("ParsedActivity", 0, 1),
    ] {
        let table = h.table(&model);
        assert_eq!(table.len(), 20, "{model}");
        for (key, (partition, _)) in table {
            assert_eq!(partition, part(&key), "{key} in {model}");
        }
    }
}

#[test]
fn a_topology_that_cannot_run_is_refused_with_the_reason() {
    let manifest = valid_manifest();
    let mut partitions = uniform_partitions(&manifest, PARTITIONS);
    partitions.insert(mv("UserActivity", 0, 1), 6);
    let err = topology(&manifest, Arc::new(registry()), &partitions, 1).expect_err("mismatch");
    assert!(matches!(
        err,
        FlowsTopologyError::MigrationPartitions { .. }
    ));
    assert_eq!(
        err.to_string(),
        r#"migration flow "migrate-user-activity": UserActivity 0.0 has 3 partitions but UserActivity 0.1 has 6; a migration writes partition p of its output straight to partition p of the target table, so both versions need the same count"#
    );
    // A regular flow's target may have another count.
    let mut partitions = uniform_partitions(&manifest, PARTITIONS);
    partitions.insert(mv("ParsedActivity", 0, 1), 5);
    assert!(topology(&manifest, Arc::new(registry()), &partitions, 1).is_ok());

    partitions.remove(&mv("ParsedActivity", 0, 1));
    let err = topology(&manifest, Arc::new(registry()), &partitions, 1).expect_err("missing");
    assert_eq!(
        err.to_string(),
        "no partition count for ParsedActivity 0.1 (ingestion topic ParsedActivity_0_1)"
    );
    let err = topology(
        &manifest,
        Arc::new(TransformRegistry::new()),
        &uniform_partitions(&manifest, PARTITIONS),
        1,
    )
    .expect_err("no transforms");
    assert_eq!(
        err.to_string(),
        r#"flow "migrate-user-activity": transform "ua_0_0_to_0_1" is not registered in this program"#
    );
}

#[test]
fn a_regular_flow_into_a_topic_with_other_partitions_places_records_by_key() {
    let manifest = valid_manifest();
    let mut partitions = uniform_partitions(&manifest, PARTITIONS);
    partitions.insert(mv("ParsedActivity", 0, 1), 5);
    let (topology, stores) =
        topology(&manifest, Arc::new(registry()), &partitions, 1).expect("topology");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut driver = TopologyTestDriver::new(topology, CLUSTER, dir.path()).expect("driver");
    for i in 0..10 {
        let key = format!("user-{i}");
        let value = json!({"user_id": key, "event": "a"}).to_string();
        driver
            .pipe(
                UA01,
                part(&key),
                Some(key.as_bytes()),
                Some(value.as_bytes()),
                &[],
                0,
            )
            .expect("pipe");
    }
    let copies = driver.outputs_to(PA01);
    assert_eq!(copies.len(), 10);
    for copy in copies {
        let key = copy.record.key.as_deref().expect("keyed");
        assert_eq!(copy.record.partition, partition_for_key(key, 5));
    }
    let table = stores.table(&mv("ParsedActivity", 0, 1)).expect("table");
    let rows: usize = (0..5)
        .map(|p| {
            driver
                .store_contents::<TableRow>(table, p)
                .expect("store")
                .len()
        })
        .sum();
    assert_eq!(rows, 10);
}

#[test]
fn the_state_a_plan_removes_is_every_changelog_the_runtime_makes_for_flows() {
    let manifest = valid_manifest();
    let partitions = uniform_partitions(&manifest, PARTITIONS);
    let (topology, _) = topology(&manifest, Arc::new(registry()), &partitions, 1).expect("ok");
    let config = RuntimeConfig::new(KafkaConfig::new("127.0.0.1:1"), CLUSTER, "unused");
    let assignor = Arc::new(StaticAssignor::new(0, 1).expect("assignor"));
    let runtime = Runtime::new(topology, config, assignor).expect("runtime");
    let made: BTreeSet<String> = runtime
        .required_topics()
        .into_iter()
        .map(|t| t.name)
        .filter(|name| name.ends_with("-changelog"))
        .collect();

    // What `weir flows apply --allow-data-removal` deletes for each model version and
    // flow (its table's changelog and the changelogs of its other state).
    let mut named = BTreeSet::new();
    for (id, _) in manifest.models() {
        named.insert(table_changelog(CLUSTER, &id.table()));
        for store in model_state_stores(id) {
            named.insert(table_changelog(CLUSTER, &store));
        }
    }
    for flow in manifest.flows() {
        for store in flow_state_stores(flow) {
            named.insert(table_changelog(CLUSTER, &store));
        }
    }
    assert_eq!(made, named);
}

#[test]
fn deletes_remove_the_row_and_pass_through_the_flows_to_their_targets() {
    let mut h = Harness::new();
    for user in ["alice", "bob"] {
        let value = json!({"user_id": user, "event": "logged in"});
        assert_eq!(h.produce(UA00, user, &value), RecordOutcome::Processed);
        let value = json!({"user_id": user, "event": "opened the app"});
        assert_eq!(h.produce(UA01, user, &value), RecordOutcome::Processed);
    }
    assert!(h.table(&mv("ParsedActivity", 0, 1)).contains_key("alice"));
    let delete = |h: &mut Harness, topic: &str, key: &str| {
        h.driver
            .pipe(topic, part(key), Some(key.as_bytes()), None, &[], 1_000)
            .expect("pipe")
    };
    let tombstones = |h: &Harness, topic: &str| -> Vec<(i32, String)> {
        h.driver
            .outputs_to(topic)
            .iter()
            .filter(|o| o.record.value.is_none())
            .map(|o| {
                let key = o.record.key.as_deref().expect("keyed");
                (
                    o.record.partition,
                    String::from_utf8(key.to_vec()).expect("text"),
                )
            })
            .collect()
    };

    // A delete of alice in UserActivity 0.0: gone from its table, and through the
    // migration (not transformed) from 0.1's table, which the migration writes.
    assert_eq!(delete(&mut h, UA00, "alice"), RecordOutcome::Processed);
    let alice = (part("alice"), "alice".to_owned());
    assert!(!h.table(&mv("UserActivity", 0, 0)).contains_key("alice"));
    assert_eq!(tombstones(&h, MIGRATE_IN), std::slice::from_ref(&alice));
    assert_eq!(tombstones(&h, MIGRATE_OUT), std::slice::from_ref(&alice));
    let ua01 = h.table(&mv("UserActivity", 0, 1));
    assert!(!ua01.contains_key("alice") && ua01.contains_key("bob"));
    // 0.1's regular flow saw nothing of it: migrated writes feed no flow.
    assert!(tombstones(&h, PARSE_IN).is_empty());
    assert!(h.table(&mv("ParsedActivity", 0, 1)).contains_key("alice"));

    // A delete in UserActivity 0.1: through the regular flow and the copy to
    // ParsedActivity's ingestion topic, into its table.
    assert_eq!(delete(&mut h, UA01, "bob"), RecordOutcome::Processed);
    let bob = (part("bob"), "bob".to_owned());
    assert_eq!(tombstones(&h, PARSE_IN), std::slice::from_ref(&bob));
    assert_eq!(tombstones(&h, PARSE_OUT), std::slice::from_ref(&bob));
    assert_eq!(tombstones(&h, PA01), [bob]);
    let parsed = h.table(&mv("ParsedActivity", 0, 1));
    assert!(!parsed.contains_key("bob") && parsed.contains_key("alice"));
    assert!(h.dead_letters().is_empty(), "{:?}", h.dead_letters());

    // A record with neither key nor value is refused.
    let outcome = h
        .driver
        .pipe(UA00, 0, None, None, &[], 1_000)
        .expect("pipe");
    assert_eq!(
        outcome,
        RecordOutcome::DeadLettered(
            "UserActivity 0.0: a record without a value must have a text key (a delete)".to_owned()
        )
    );
}
