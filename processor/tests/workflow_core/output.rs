//! The output topic on the topology driver: which execution changes a command
//! publishes, in which order, under which tenant settings and overrides, on which
//! partition; and the metadata records, in-place updates and tombstones.

use prost::Message;
use weir_processor::topics::TENANT_HEADER;
use weir_proto::command_result::Code;
use weir_proto::metadata_command::Command as Meta;
use weir_proto::output_topic_config::OutputTopicRecordingLevel;
use weir_proto::output_topic_record::Payload;
use weir_proto::variable_value::Value;
use weir_proto::{
    DeleteWfSpecRequest, MetadataOutputTopicRecord, OutputTopicConfig, OutputTopicRecord,
    PutTaskDefRequest, PutTenantRequest, TaskStatus, VariableType, WfSpecId,
};

use super::harness::{Core, int, text};
use super::{put_orders, spec_request, task_def};

fn enable(core: &mut Core, tenant: &str, level: OutputTopicRecordingLevel) {
    core.put_ok(
        tenant,
        Meta::PutTenant(PutTenantRequest {
            id: tenant.to_owned(),
            output_topic_config: Some(OutputTopicConfig {
                default_recording_level: level as i32,
            }),
        }),
    );
}

/// Every execution-output record of `tenant`, as a short description, in order.
fn published(core: &Core, tenant: &str) -> Vec<String> {
    core.driver
        .outputs_to(&core.topics.execution_output(tenant))
        .into_iter()
        .map(|output| {
            let record = &output.record;
            assert_eq!(
                record.headers.get(TENANT_HEADER).map(|h| h.to_vec()),
                Some(tenant.as_bytes().to_vec())
            );
            let decoded = OutputTopicRecord::decode(record.value.as_deref().unwrap_or_default())
                .expect("OutputTopicRecord");
            assert!(
                decoded.timestamp.is_some(),
                "every record has the command's time"
            );
            let key = String::from_utf8(record.key.as_deref().unwrap_or_default().to_vec())
                .expect("utf-8 key");
            let kind = String::from_utf8(record.headers["weir-type"].to_vec()).expect("utf-8");
            let what = match decoded.payload.expect("a payload") {
                Payload::WfRun(run) => format!("WfRun {}", run.status().as_str_name()),
                Payload::TaskRun(task) => format!(
                    "TaskRun {} {}",
                    task.task_def_name,
                    task.status().as_str_name()
                ),
                Payload::Variable(variable) => {
                    let name = variable.id.map(|i| i.name).unwrap_or_default();
                    let value = match variable.value.and_then(|v| v.value) {
                        Some(Value::Str(s)) => s,
                        other => format!("{other:?}"),
                    };
                    format!("Variable {name}={value}")
                }
                Payload::ExternalEvent(event) => format!("ExternalEvent claimed={}", event.claimed),
                Payload::WorkflowEvent(event) => format!("WorkflowEvent {:?}", event.content),
                Payload::UserTaskRun(task) => {
                    format!("UserTaskRun {}", task.status().as_str_name())
                }
            };
            assert_eq!(
                what.split(' ').next().map(str::to_owned),
                Some(header_kind(&kind)),
                "weir-type {kind} matches the payload"
            );
            format!("{key}: {what}")
        })
        .collect()
}

fn header_kind(kind: &str) -> String {
    match kind {
        "wf_run" => "WfRun",
        "task_run" => "TaskRun",
        "variable" => "Variable",
        "external_event" => "ExternalEvent",
        "workflow_event" => "WorkflowEvent",
        "user_task_run" => "UserTaskRun",
        other => other,
    }
    .to_owned()
}

fn lines(run: &str, items: &[&str]) -> Vec<String> {
    items.iter().map(|item| format!("{run}: {item}")).collect()
}

#[test]
fn an_order_publishes_exactly_its_real_changes_in_order() {
    let mut core = Core::with_partitions(6, 3);
    put_orders(&mut core, "acme", 0, 0);
    enable(
        &mut core,
        "acme",
        OutputTopicRecordingLevel::AllEntityEvents,
    );
    core.run(
        "acme",
        "orders",
        "o-1",
        &[("user-id", text("ann")), ("item-id", text("book"))],
    );
    let fetch = core.last_scheduled("acme", "fetch-price", "o-1");
    core.claim("acme", &fetch);
    core.succeed("acme", &fetch, int(12));
    // A second report changes nothing, so it publishes nothing.
    core.report("acme", &fetch, TaskStatus::TaskSuccess, None);
    let charge = core.last_scheduled("acme", "charge-credit-card", "o-1");
    core.succeed("acme", &charge, text("ok"));
    let ship = core.last_scheduled("acme", "ship-item", "o-1");
    core.succeed("acme", &ship, text("ok"));
    core.post_event("acme", "o-1", "item-delivered", text("door"));

    assert_eq!(
        published(&core, "acme"),
        lines(
            "o-1",
            &[
                "WfRun RUNNING",
                "Variable order-status=PENDING",
                "TaskRun fetch-price TASK_SCHEDULED",
                "TaskRun fetch-price TASK_RUNNING",
                "TaskRun fetch-price TASK_SUCCESS",
                "TaskRun charge-credit-card TASK_SCHEDULED",
                "TaskRun charge-credit-card TASK_SUCCESS",
                "TaskRun ship-item TASK_SCHEDULED",
                "TaskRun ship-item TASK_SUCCESS",
                "Variable order-status=SHIPPING",
                "ExternalEvent claimed=true",
                "Variable order-status=COMPLETED",
                "WfRun COMPLETED",
            ]
        ),
        "private variables (user-id, item-id) and NodeRuns are never published"
    );
    // Command partition p goes to output partition p % 3.
    let expected_partition = core.partition_of("o-1") % 3;
    for output in core
        .driver
        .outputs_to(&core.topics.execution_output("acme"))
    {
        assert_eq!(output.record.partition, expected_partition);
    }
}

#[test]
fn with_no_entity_events_only_an_enabled_task_def_is_published() {
    let mut core = Core::new();
    put_orders(&mut core, "quiet", 0, 0);
    enable(
        &mut core,
        "quiet",
        OutputTopicRecordingLevel::NoEntityEvents,
    );
    let mut ship = match task_def(
        "ship-item",
        &[
            ("user-id", VariableType::Str),
            ("item-id", VariableType::Str),
        ],
        0,
        0,
    ) {
        Meta::PutTaskDef(request) => request,
        _ => unreachable!("task_def builds a PutTaskDef"),
    };
    ship.enable_entity_events = Some(true);
    core.put_ok("quiet", Meta::PutTaskDef(PutTaskDefRequest { ..ship }));
    core.run(
        "quiet",
        "orders",
        "q-1",
        &[("user-id", text("bo")), ("item-id", text("pen"))],
    );
    for task in ["fetch-price", "charge-credit-card", "ship-item"] {
        let scheduled = core.last_scheduled("quiet", task, "q-1");
        core.succeed("quiet", &scheduled, int(1));
    }
    core.post_event("quiet", "q-1", "item-delivered", text("door"));
    assert_eq!(
        published(&core, "quiet"),
        lines(
            "q-1",
            &[
                "TaskRun ship-item TASK_SCHEDULED",
                "TaskRun ship-item TASK_SUCCESS"
            ]
        )
    );
}

#[test]
fn a_tenant_without_an_output_topic_publishes_nothing() {
    let mut core = Core::new();
    put_orders(&mut core, "default", 0, 0);
    put_orders(&mut core, "other", 0, 0);
    enable(
        &mut core,
        "other",
        OutputTopicRecordingLevel::AllEntityEvents,
    );
    core.run(
        "default",
        "orders",
        "d-1",
        &[("user-id", text("a")), ("item-id", text("b"))],
    );
    let outputs: Vec<_> = core
        .driver
        .outputs()
        .iter()
        .filter(|o| o.record.topic.ends_with("-output"))
        .map(|o| o.record.topic.clone())
        .collect();
    assert!(
        outputs.iter().all(|topic| topic.contains("_other_")),
        "{outputs:?}"
    );
    assert!(published(&core, "default").is_empty());
    assert!(
        published(&core, "other").is_empty(),
        "other published only metadata"
    );
}

/// Every metadata-output record of `tenant`: key, and the record (None: a tombstone).
fn metadata_published(
    core: &Core,
    tenant: &str,
) -> Vec<(String, Option<MetadataOutputTopicRecord>)> {
    core.driver
        .outputs_to(&core.topics.metadata_output(tenant))
        .into_iter()
        .map(|o| {
            assert_eq!(o.record.partition, 0);
            let key = String::from_utf8(o.record.key.as_deref().unwrap_or_default().to_vec())
                .expect("utf-8");
            let value = o
                .record
                .value
                .as_deref()
                .map(|v| MetadataOutputTopicRecord::decode(v).expect("record"));
            (key, value)
        })
        .collect()
}

#[test]
fn metadata_puts_in_place_updates_and_deletes_are_published() {
    let mut core = Core::new();
    enable(
        &mut core,
        "meta",
        OutputTopicRecordingLevel::AllEntityEvents,
    );
    for (name, inputs) in [
        ("fetch-price", vec![("item-id", VariableType::Str)]),
        (
            "charge-credit-card",
            vec![("user-id", VariableType::Str), ("price", VariableType::Int)],
        ),
        (
            "ship-item",
            vec![
                ("user-id", VariableType::Str),
                ("item-id", VariableType::Str),
            ],
        ),
    ] {
        core.put_ok("meta", task_def(name, &inputs, 0, 0));
    }
    core.put_ok("meta", super::event_def("item-delivered"));
    core.put_ok("meta", spec_request(super::orders_spec()));
    let keys: Vec<String> = metadata_published(&core, "meta")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        [
            "TASK_DEF/fetch-price",
            "TASK_DEF/charge-credit-card",
            "TASK_DEF/ship-item",
            "EXTERNAL_EVENT_DEF/item-delivered",
            "WF_SPEC/orders/0/0"
        ]
    );
    let before = keys.len();

    core.put_ok(
        "meta",
        task_def("fetch-price", &[("item-id", VariableType::Str)], 0, 0),
    );
    assert_eq!(
        metadata_published(&core, "meta").len(),
        before,
        "an identical put publishes nothing"
    );

    let wf = super::orders_spec();
    let mut quiet = wf.clone();
    quiet.enable_entity_events = Some(false);
    core.put_ok("meta", spec_request(quiet));
    let all = metadata_published(&core, "meta");
    let (key, record) = all.last().expect("the in-place update");
    assert_eq!(
        key, "WF_SPEC/orders/0/0",
        "the same version, updated in place"
    );
    let Some(weir_proto::metadata_output_topic_record::MetadataRecord::WfSpec(spec)) =
        record.as_ref().and_then(|r| r.metadata_record.clone())
    else {
        panic!("a WfSpec record");
    };
    assert_eq!(spec.enable_entity_events, Some(false));

    let deleted = core.put(
        "meta",
        Meta::DeleteWfSpec(DeleteWfSpecRequest {
            id: Some(WfSpecId {
                name: "orders".into(),
                major_version: 0,
                revision: 0,
            }),
        }),
    );
    assert_eq!(deleted.code(), Code::Ok, "{}", deleted.message);
    let (key, record) = metadata_published(&core, "meta").pop().expect("tombstone");
    assert_eq!((key.as_str(), record), ("WF_SPEC/orders/0/0", None));

    // Nothing for a tenant without the output topic.
    put_orders(&mut core, "silent", 0, 0);
    assert!(metadata_published(&core, "silent").is_empty());
}
