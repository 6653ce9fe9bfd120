//! Flows through the public API, without Kafka: a manifest file read from disk and
//! validated against a program's transforms, the plan of its first apply, and a record
//! checked against its model, transformed, and checked against the target model.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use weir_processor::flows::manifest::{self, flow_topics};
use weir_processor::flows::naming::{FlowTopicRole, parse_flow_topic};
use weir_processor::flows::plan::{ExistingState, PlanOptions, plan};
use weir_processor::flows::record;
use weir_processor::flows::transform::TransformRegistry;

const MANIFEST: &str = r#"
data_models:
  - name: UserActivity
    version: {major: 0, minor: 1}
    key_field: user_id
    fields:
      - {name: user_id, field_type: STRING, required: true}
      - {name: text, field_type: STRING, required: true}
      - {name: at, field_type: TIMESTAMP}
  - name: ParsedActivity
    version: {major: 0, minor: 1}
    key_field: user_id
    fields:
      - {name: user_id, field_type: STRING, required: true}
      - {name: words, field_type: INT, required: true}
flows:
  - name: parse-activity
    source_model: UserActivity
    source_version: {major: 0, minor: 1}
    target_model: ParsedActivity
    target_version: {major: 0, minor: 1}
    transform: count_words
"#;

fn program_transforms() -> TransformRegistry {
    let mut registry = TransformRegistry::new();
    registry
        .register("count_words", |record: &Value| {
            let text = record["text"].as_str().ok_or("no text")?;
            Ok(vec![json!({
                "user_id": record["user_id"],
                "words": text.split_whitespace().count(),
            })])
        })
        .expect("a new name");
    registry
}

#[test]
fn flows_manifest_file_plans_and_its_flow_transforms_valid_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("flows.yaml");
    std::fs::write(&path, MANIFEST).expect("write manifest");
    let parsed = manifest::read(&path).expect("manifest parses");

    // Without the transform, the program refuses the manifest, naming the flow.
    let err = manifest::validate(parsed.clone(), Some(&TransformRegistry::new()))
        .expect_err("transform missing");
    assert_eq!(
        err.to_string(),
        "invalid flows manifest (1 problem):\n  flow \"parse-activity\": transform \"count_words\" is not registered in this program"
    );
    let transforms = program_transforms();
    let valid = manifest::validate(parsed, Some(&transforms)).expect("valid manifest");

    let first = plan(
        &valid,
        &ExistingState {
            topics: BTreeMap::new(),
            applied: None,
        },
        PlanOptions {
            partitions: 4,
            allow_data_removal: false,
        },
    );
    let topics: Vec<&str> = first
        .create_topics
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(
        topics,
        [
            "ParsedActivity_0_1",
            "UserActivity_0_1",
            "UserActivity_0_1_ParsedActivity_0_1_input",
            "UserActivity_0_1_ParsedActivity_0_1_output",
        ]
    );
    assert!(first.create_topics.iter().all(|t| t.partitions == 4));
    assert!(first.is_applicable());

    // One record along the flow.
    let flow = &valid.flows()[0];
    let topics = flow_topics(flow).expect("versions declared");
    assert_eq!(
        parse_flow_topic(&topics.output()),
        Some((topics.clone(), FlowTopicRole::Output))
    );
    let source = valid.model(&topics.source).expect("declared source");
    let target = valid.model(&topics.target).expect("declared target");
    let input = record::validate(
        source,
        br#"{"text": "hello flows world", "user_id": "u-7", "at": 1714564800000}"#,
    )
    .expect("valid source record");
    assert_eq!(input.key, b"u-7");
    let value: Value = serde_json::from_slice(&input.value).expect("canonical JSON");
    let outputs = transforms
        .apply(&flow.transform, &value)
        .expect("transform succeeds");
    let outputs: Vec<record::ValidRecord> = outputs
        .iter()
        .map(|o| record::validate_value(target, o).expect("valid target record"))
        .collect();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].key, b"u-7");
    assert_eq!(outputs[0].value, br#"{"user_id":"u-7","words":3}"#);

    // A record that does not match its model is refused with the reason.
    let err = record::validate(source, br#"{"user_id": "u-8"}"#).expect_err("no text");
    assert_eq!(err.to_string(), "required field \"text\" is missing");
}
