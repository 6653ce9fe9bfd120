//! Encodes and decodes a populated value of every message the schemas
//! define, and checks against the compiled descriptor set that none is
//! missing.
//!
//! Coverage: 96 message types (map entry types, which prost does not expose,
//! excluded): 10 in common.proto, 24 in metadata.proto, 20 in
//! execution.proto, 28 in commands.proto, 2 in output.proto, 7 in
//! flows.proto and 3 in runtime.proto. Three of them have no fields
//! (EntrypointNode, EntrypointRun, ExitRun) and round-trip as their default;
//! every other value has at least one field set, and every member of every
//! oneof appears at least once.

use std::collections::BTreeSet;

use prost::{Message, Name};
use prost_types::{FileDescriptorSet, Timestamp};
use weir_proto::*;

/// Round-trips each value and records the message's full name in `covered`.
/// The `empty [...]` list is for messages without fields, which only have a
/// default value.
macro_rules! round_trip {
    ($covered:ident; empty [$($empty:ty),* $(,)?]; $($ty:ty => $values:expr,)+) => {
        $(
            let value = <$empty>::default();
            let bytes = value.encode_to_vec();
            assert!(bytes.is_empty(), "{} has no fields", <$empty>::full_name());
            assert_eq!(<$empty>::decode(bytes.as_slice()).expect("decodes"), value);
            assert!($covered.insert(<$empty>::full_name()), "{} listed twice", <$empty>::full_name());
        )*
        $(
            let values: Vec<$ty> = $values;
            assert!(!values.is_empty());
            for value in values {
                let name = <$ty>::full_name();
                assert_ne!(value, <$ty>::default(), "{name}: sample must not be the default");
                let bytes = value.encode_to_vec();
                let decoded = <$ty>::decode(bytes.as_slice())
                    .unwrap_or_else(|error| panic!("{name}: decode failed: {error}"));
                assert_eq!(decoded, value, "{name}: value changed in the round trip");
                assert_eq!(decoded.encode_to_vec(), bytes, "{name}: re-encoding differs");
            }
            $covered.insert(<$ty>::full_name());
        )+
    };
}

#[test]
fn every_message_round_trips() {
    let mut covered = BTreeSet::new();
    round_trip! { covered;
        empty [EntrypointNode, EntrypointRun, ExitRun];
        // common.proto
        VariableValue => variable_values(),
        VarNameAndVal => vec![var_name_and_val()],
        WfSpecId => vec![wf_spec_id()],
        WfRunId => vec![wf_run_id()],
        NodeRunId => vec![node_run_id()],
        TaskRunId => vec![task_run_id()],
        VariableId => vec![variable_id()],
        ExternalEventId => vec![external_event_id()],
        UserTaskRunId => vec![user_task_run_id()],
        WorkflowEventId => vec![workflow_event_id()],
        // metadata.proto
        OutputTopicConfig => vec![output_topic_config()],
        Tenant => vec![tenant()],
        VariableDef => vec![variable_def()],
        ThreadVarDef => vec![thread_var_def()],
        NodeOutputReference => vec![node_output()],
        VariableAssignment => variable_assignments(),
        EdgeCondition => vec![edge_condition()],
        VariableMutation => variable_mutations(),
        Edge => vec![edge()],
        ExitNode => vec![exit_node()],
        TaskNode => vec![task_node()],
        ExternalEventNode => vec![external_event_node()],
        ThrowEventNode => vec![throw_event_node()],
        UserTaskNode => vec![user_task_node()],
        Node => nodes(),
        ThreadSpec => vec![thread_spec()],
        WfSpec => vec![wf_spec()],
        RetryPolicy => vec![retry_policy()],
        TaskDef => vec![task_def()],
        ExternalEventDef => vec![external_event_def()],
        WorkflowEventDef => vec![workflow_event_def()],
        UserTaskField => vec![user_task_field()],
        UserTaskDef => vec![user_task_def()],
        StoredMetadata => stored_metadata(),
        // execution.proto
        ThreadRun => vec![thread_run()],
        WfRun => vec![wf_run()],
        TaskNodeRun => vec![task_node_run()],
        ExternalEventNodeRun => vec![external_event_node_run()],
        ThrowEventNodeRun => vec![throw_event_node_run()],
        UserTaskNodeRun => vec![user_task_node_run()],
        NodeRun => node_runs(),
        TaskAttempt => vec![task_attempt()],
        TaskRun => vec![task_run()],
        ScheduledTask => vec![scheduled_task()],
        Variable => vec![variable()],
        ExternalEvent => vec![external_event()],
        WorkflowEvent => vec![workflow_event()],
        user_task_event::Assigned => vec![assigned()],
        user_task_event::Completed => vec![completed()],
        user_task_event::Cancelled => vec![cancelled()],
        UserTaskEvent => user_task_events(),
        UserTaskRun => vec![user_task_run()],
        // commands.proto
        Command => commands(),
        MetadataCommand => metadata_commands(),
        CommandResult => vec![command_result()],
        RunWfRequest => vec![run_wf()],
        ReportTaskRun => report_task_runs(),
        TaskClaimEvent => vec![task_claim_event()],
        PutExternalEventRequest => vec![put_external_event()],
        StopWfRunRequest => vec![stop_wf_run()],
        ResumeWfRunRequest => vec![resume_wf_run()],
        DeleteWfRunRequest => vec![delete_wf_run()],
        CompleteUserTaskRunRequest => vec![complete_user_task_run()],
        AssignUserTaskRunRequest => vec![assign_user_task_run()],
        CancelUserTaskRunRequest => vec![cancel_user_task_run()],
        TaskAttemptRetryReady => vec![task_attempt_retry_ready()],
        TaskTimeout => vec![task_timeout()],
        ExternalEventTimeout => vec![external_event_timeout()],
        PutTenantRequest => vec![put_tenant()],
        PutTaskDefRequest => vec![put_task_def()],
        PutWfSpecRequest => vec![put_wf_spec()],
        PutExternalEventDefRequest => vec![put_external_event_def()],
        PutWorkflowEventDefRequest => vec![put_workflow_event_def()],
        PutUserTaskDefRequest => vec![put_user_task_def()],
        DeleteTenantRequest => vec![delete_tenant()],
        DeleteTaskDefRequest => vec![delete_task_def()],
        DeleteWfSpecRequest => vec![delete_wf_spec()],
        DeleteExternalEventDefRequest => vec![delete_external_event_def()],
        DeleteWorkflowEventDefRequest => vec![delete_workflow_event_def()],
        DeleteUserTaskDefRequest => vec![delete_user_task_def()],
        TimerCommand => vec![timer_command()],
        // output.proto
        OutputTopicRecord => output_topic_records(),
        MetadataOutputTopicRecord => metadata_output_topic_records(),
        // flows.proto
        DataModelVersion => vec![data_model_version()],
        DataModelField => vec![data_model_field()],
        DataModel => vec![data_model()],
        Flow => vec![flow()],
        FlowsManifest => vec![flows_manifest()],
        InitialLoadProgress => vec![initial_load_progress()],
        TableRow => vec![table_row()],
        // runtime.proto
        CommitMarker => vec![commit_marker()],
        TimerRecord => vec![timer_record()],
        ParkedRecord => parked_records(),
    }

    let defined = defined_messages();
    let missing: Vec<_> = defined.difference(&covered).collect();
    let unknown: Vec<_> = covered.difference(&defined).collect();
    assert!(missing.is_empty(), "not round-tripped: {missing:?}");
    assert!(unknown.is_empty(), "not in the schemas: {unknown:?}");
    assert_eq!(covered.len(), 96, "update the count in the module doc");
}

/// Full names of every message in package `weir`, nested ones included and
/// synthetic map entries excluded, read from the build's descriptor set.
fn defined_messages() -> BTreeSet<String> {
    let bytes = include_bytes!(concat!(env!("OUT_DIR"), "/weir_descriptor.bin"));
    let set = FileDescriptorSet::decode(bytes.as_slice()).expect("descriptor set decodes");
    let mut names = BTreeSet::new();
    for file in set.file.iter().filter(|file| file.package() == "weir") {
        for message in &file.message_type {
            collect_messages("weir", message, &mut names);
        }
    }
    names
}

fn collect_messages(
    scope: &str,
    message: &prost_types::DescriptorProto,
    names: &mut BTreeSet<String>,
) {
    let is_map_entry = message.options.as_ref().is_some_and(|o| o.map_entry());
    if is_map_entry {
        return;
    }
    let name = format!("{scope}.{}", message.name());
    for nested in &message.nested_type {
        collect_messages(&name, nested, names);
    }
    names.insert(name);
}

// ---------------------------------------------------------------------------
// Samples: common.proto
// ---------------------------------------------------------------------------

fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds,
        nanos: 250_000_000,
    })
}

fn str_value(text: &str) -> VariableValue {
    VariableValue {
        value: Some(variable_value::Value::Str(text.into())),
    }
}

fn variable_values() -> Vec<VariableValue> {
    use variable_value::Value;
    [
        Value::Str("hello".into()),
        Value::Int(-42),
        Value::Double(2.5),
        Value::Bool(true),
        Value::JsonObj(r#"{"a":1}"#.into()),
        Value::JsonArr("[1,2]".into()),
        Value::Bytes(vec![0, 1, 255]),
    ]
    .into_iter()
    .map(|value| VariableValue { value: Some(value) })
    .collect()
}

fn var_name_and_val() -> VarNameAndVal {
    VarNameAndVal {
        var_name: "item-id".into(),
        value: Some(str_value("sku-9")),
    }
}

fn wf_spec_id() -> WfSpecId {
    WfSpecId {
        name: "orders".into(),
        major_version: 1,
        revision: 2,
    }
}

fn wf_run_id() -> WfRunId {
    WfRunId {
        id: "order-1".into(),
    }
}

fn node_run_id() -> NodeRunId {
    NodeRunId {
        wf_run_id: Some(wf_run_id()),
        thread_run_number: 1,
        position: 3,
    }
}

fn task_run_id() -> TaskRunId {
    TaskRunId {
        wf_run_id: Some(wf_run_id()),
        task_guid: "cmd-7-0".into(),
    }
}

fn variable_id() -> VariableId {
    VariableId {
        wf_run_id: Some(wf_run_id()),
        thread_run_number: 0,
        name: "order-status".into(),
    }
}

fn external_event_id() -> ExternalEventId {
    ExternalEventId {
        wf_run_id: Some(wf_run_id()),
        external_event_def_name: "item-delivered".into(),
        guid: "evt-1".into(),
    }
}

fn user_task_run_id() -> UserTaskRunId {
    UserTaskRunId {
        wf_run_id: Some(wf_run_id()),
        user_task_guid: "ut-1".into(),
    }
}

fn workflow_event_id() -> WorkflowEventId {
    WorkflowEventId {
        wf_run_id: Some(wf_run_id()),
        workflow_event_def_name: "order-shipped".into(),
        number: 2,
    }
}

// ---------------------------------------------------------------------------
// Samples: metadata.proto
// ---------------------------------------------------------------------------

fn output_topic_config() -> OutputTopicConfig {
    OutputTopicConfig {
        default_recording_level: output_topic_config::OutputTopicRecordingLevel::NoEntityEvents
            as i32,
    }
}

fn tenant() -> Tenant {
    Tenant {
        id: "acme".into(),
        created_at: ts(1),
        output_topic: Some(output_topic_config()),
    }
}

fn variable_def() -> VariableDef {
    VariableDef {
        name: "order-status".into(),
        var_type: VariableType::Str as i32,
        default_value: Some(str_value("PENDING")),
    }
}

fn thread_var_def() -> ThreadVarDef {
    ThreadVarDef {
        var_def: Some(variable_def()),
        required: true,
        access_level: WfRunVariableAccessLevel::InheritedVar as i32,
        enable_entity_events: Some(true),
    }
}

fn node_output() -> NodeOutputReference {
    NodeOutputReference {
        node_name: "1-fetch-price-TASK".into(),
        field: Some("price".into()),
    }
}

fn variable_assignments() -> Vec<VariableAssignment> {
    use variable_assignment::Source;
    [
        Source::VariableName("item-id".into()),
        Source::LiteralValue(str_value("x")),
        Source::NodeOutput(node_output()),
    ]
    .into_iter()
    .map(|source| VariableAssignment {
        source: Some(source),
    })
    .collect()
}

fn assignment() -> VariableAssignment {
    VariableAssignment {
        source: Some(variable_assignment::Source::VariableName("user-id".into())),
    }
}

fn edge_condition() -> EdgeCondition {
    EdgeCondition {
        lhs: Some(assignment()),
        comparator: Comparator::GreaterThanEq as i32,
        rhs: Some(VariableAssignment {
            source: Some(variable_assignment::Source::LiteralValue(VariableValue {
                value: Some(variable_value::Value::Int(10)),
            })),
        }),
    }
}

fn variable_mutations() -> Vec<VariableMutation> {
    use variable_mutation::RhsValue;
    [
        (
            VariableMutationType::Assign,
            RhsValue::LiteralValue(str_value("SHIPPING")),
        ),
        (
            VariableMutationType::Add,
            RhsValue::RhsVariableName("count".into()),
        ),
        (
            VariableMutationType::Append,
            RhsValue::NodeOutput(node_output()),
        ),
    ]
    .into_iter()
    .map(|(operation, rhs)| VariableMutation {
        lhs_name: "order-status".into(),
        operation: operation as i32,
        rhs_value: Some(rhs),
    })
    .collect()
}

fn edge() -> Edge {
    Edge {
        sink_node_name: "2-ship-item-TASK".into(),
        condition: Some(edge_condition()),
        variable_mutations: variable_mutations(),
    }
}

fn exit_node() -> ExitNode {
    ExitNode {
        exception_name: Some("out-of-stock".into()),
    }
}

fn task_node() -> TaskNode {
    TaskNode {
        task_def_name: "ship-item".into(),
        args: variable_assignments(),
    }
}

fn external_event_node() -> ExternalEventNode {
    ExternalEventNode {
        external_event_def_name: "item-delivered".into(),
        timeout_seconds: Some(60),
    }
}

fn throw_event_node() -> ThrowEventNode {
    ThrowEventNode {
        workflow_event_def_name: "order-shipped".into(),
        content: Some(assignment()),
    }
}

fn user_task_node() -> UserTaskNode {
    UserTaskNode {
        user_task_def_name: "approve-order".into(),
        user_id: Some(assignment()),
        user_group: None,
    }
}

fn nodes() -> Vec<Node> {
    use node::Node as Kind;
    [
        Kind::Entrypoint(EntrypointNode {}),
        Kind::Exit(exit_node()),
        Kind::Task(task_node()),
        Kind::ExternalEvent(external_event_node()),
        Kind::ThrowEvent(throw_event_node()),
        Kind::UserTask(user_task_node()),
    ]
    .into_iter()
    .map(|kind| Node {
        outgoing_edges: vec![edge()],
        node: Some(kind),
    })
    .collect()
}

fn thread_spec() -> ThreadSpec {
    ThreadSpec {
        nodes: nodes()
            .into_iter()
            .enumerate()
            .map(|(index, node)| (format!("{index}-node"), node))
            .collect(),
        variable_defs: vec![thread_var_def()],
    }
}

fn wf_spec() -> WfSpec {
    WfSpec {
        id: Some(wf_spec_id()),
        created_at: ts(2),
        thread_specs: [("entrypoint".to_string(), thread_spec())].into(),
        entrypoint_thread_name: "entrypoint".into(),
        enable_entity_events: Some(false),
    }
}

fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        initial_backoff_ms: 500,
        backoff_multiplier: 2.0,
        max_backoff_ms: 10_000,
    }
}

fn task_def() -> TaskDef {
    TaskDef {
        name: "ship-item".into(),
        input_vars: vec![variable_def()],
        retry_policy: Some(retry_policy()),
        timeout_seconds: 30,
        created_at: ts(3),
        enable_entity_events: Some(true),
    }
}

fn external_event_def() -> ExternalEventDef {
    ExternalEventDef {
        name: "item-delivered".into(),
        created_at: ts(4),
        enable_entity_events: Some(true),
    }
}

fn workflow_event_def() -> WorkflowEventDef {
    WorkflowEventDef {
        name: "order-shipped".into(),
        created_at: ts(5),
        content_type: VariableType::JsonObj as i32,
        enable_entity_events: Some(false),
    }
}

fn user_task_field() -> UserTaskField {
    UserTaskField {
        name: "approved".into(),
        field_type: VariableType::Bool as i32,
        description: Some("Approve the order?".into()),
        required: true,
    }
}

fn user_task_def() -> UserTaskDef {
    UserTaskDef {
        name: "approve-order".into(),
        description: Some("Check the order".into()),
        fields: vec![user_task_field()],
        created_at: ts(6),
        enable_entity_events: Some(true),
    }
}

// ---------------------------------------------------------------------------
// Samples: execution.proto
// ---------------------------------------------------------------------------

fn thread_run() -> ThreadRun {
    ThreadRun {
        number: 0,
        status: LhStatus::Error as i32,
        thread_spec_name: "entrypoint".into(),
        current_node_position: 4,
        start_time: ts(10),
        end_time: ts(11),
        error_message: Some("task failed".into()),
    }
}

fn wf_run() -> WfRun {
    WfRun {
        id: Some(wf_run_id()),
        wf_spec_id: Some(wf_spec_id()),
        status: LhStatus::Running as i32,
        thread_runs: vec![thread_run()],
        start_time: ts(10),
        end_time: None,
        greatest_thread_run_number: 0,
    }
}

fn task_node_run() -> TaskNodeRun {
    TaskNodeRun {
        task_run_id: Some(task_run_id()),
    }
}

fn external_event_node_run() -> ExternalEventNodeRun {
    ExternalEventNodeRun {
        external_event_def_name: "item-delivered".into(),
        external_event_id: Some(external_event_id()),
        event_time: ts(12),
    }
}

fn throw_event_node_run() -> ThrowEventNodeRun {
    ThrowEventNodeRun {
        workflow_event_id: Some(workflow_event_id()),
    }
}

fn user_task_node_run() -> UserTaskNodeRun {
    UserTaskNodeRun {
        user_task_run_id: Some(user_task_run_id()),
    }
}

fn node_runs() -> Vec<NodeRun> {
    use node_run::NodeType;
    [
        NodeType::Entrypoint(EntrypointRun {}),
        NodeType::Exit(ExitRun {}),
        NodeType::Task(task_node_run()),
        NodeType::ExternalEvent(external_event_node_run()),
        NodeType::ThrowEvent(throw_event_node_run()),
        NodeType::UserTask(user_task_node_run()),
    ]
    .into_iter()
    .map(|detail| NodeRun {
        id: Some(node_run_id()),
        status: LhStatus::Completed as i32,
        node_name: "3-node".into(),
        arrival_time: ts(13),
        end_time: ts(14),
        node_type: Some(detail),
        error_message: None,
    })
    .collect()
}

fn task_attempt() -> TaskAttempt {
    TaskAttempt {
        attempt_number: 1,
        status: TaskStatus::TaskSuccess as i32,
        schedule_time: ts(15),
        start_time: ts(16),
        end_time: ts(17),
        output: Some(str_value("shipped")),
        error_message: None,
        worker_id: Some("worker-a".into()),
    }
}

fn task_run() -> TaskRun {
    TaskRun {
        id: Some(task_run_id()),
        task_def_name: "ship-item".into(),
        input_variables: vec![var_name_and_val()],
        attempts: vec![task_attempt()],
        status: TaskStatus::TaskSuccess as i32,
        max_attempts: 4,
        timeout_seconds: 30,
        source_node_run_id: Some(node_run_id()),
        scheduled_time: ts(15),
    }
}

fn scheduled_task() -> ScheduledTask {
    ScheduledTask {
        task_run_id: Some(task_run_id()),
        task_def_name: "ship-item".into(),
        attempt_number: 1,
        variables: vec![var_name_and_val()],
        created_at: ts(15),
        tenant: "acme".into(),
    }
}

fn variable() -> Variable {
    Variable {
        id: Some(variable_id()),
        value: Some(str_value("SHIPPING")),
        created_at: ts(10),
        wf_spec_id: Some(wf_spec_id()),
    }
}

fn external_event() -> ExternalEvent {
    ExternalEvent {
        id: Some(external_event_id()),
        content: Some(str_value("delivered")),
        created_at: ts(18),
        claimed: true,
        thread_run_number: Some(0),
        node_run_position: Some(5),
    }
}

fn workflow_event() -> WorkflowEvent {
    WorkflowEvent {
        id: Some(workflow_event_id()),
        content: Some(str_value("{}")),
        created_at: ts(19),
        node_run_id: Some(node_run_id()),
    }
}

fn assigned() -> user_task_event::Assigned {
    user_task_event::Assigned {
        old_user_id: None,
        old_user_group: Some("sales".into()),
        new_user_id: Some("ana".into()),
        new_user_group: None,
    }
}

fn completed() -> user_task_event::Completed {
    user_task_event::Completed {
        user_id: "ana".into(),
    }
}

fn cancelled() -> user_task_event::Cancelled {
    user_task_event::Cancelled {
        message: "order withdrawn".into(),
    }
}

fn user_task_events() -> Vec<UserTaskEvent> {
    use user_task_event::Event;
    [
        Event::Assigned(assigned()),
        Event::Completed(completed()),
        Event::Cancelled(cancelled()),
    ]
    .into_iter()
    .map(|event| UserTaskEvent {
        time: ts(20),
        event: Some(event),
    })
    .collect()
}

fn user_task_run() -> UserTaskRun {
    UserTaskRun {
        id: Some(user_task_run_id()),
        user_task_def_name: "approve-order".into(),
        status: UserTaskRunStatus::Done as i32,
        user_id: Some("ana".into()),
        user_group: Some("sales".into()),
        results: [("approved".to_string(), variable_values()[3].clone())].into(),
        events: user_task_events(),
        scheduled_time: ts(21),
        node_run_id: Some(node_run_id()),
    }
}

// ---------------------------------------------------------------------------
// Samples: commands.proto
// ---------------------------------------------------------------------------

fn commands() -> Vec<Command> {
    use command::Command as Kind;
    [
        Kind::RunWf(run_wf()),
        Kind::ReportTaskRun(report_task_runs().remove(0)),
        Kind::TaskClaimEvent(task_claim_event()),
        Kind::PutExternalEvent(put_external_event()),
        Kind::StopWfRun(stop_wf_run()),
        Kind::ResumeWfRun(resume_wf_run()),
        Kind::DeleteWfRun(delete_wf_run()),
        Kind::CompleteUserTaskRun(complete_user_task_run()),
        Kind::AssignUserTaskRun(assign_user_task_run()),
        Kind::CancelUserTaskRun(cancel_user_task_run()),
        Kind::TaskAttemptRetryReady(task_attempt_retry_ready()),
        Kind::TaskTimeout(task_timeout()),
        Kind::ExternalEventTimeout(external_event_timeout()),
    ]
    .into_iter()
    .map(|kind| Command {
        command_id: "cmd-7".into(),
        time: ts(30),
        command: Some(kind),
    })
    .collect()
}

fn metadata_commands() -> Vec<MetadataCommand> {
    use metadata_command::Command as Kind;
    [
        Kind::PutTenant(put_tenant()),
        Kind::PutTaskDef(put_task_def()),
        Kind::PutWfSpec(put_wf_spec()),
        Kind::PutExternalEventDef(put_external_event_def()),
        Kind::PutWorkflowEventDef(put_workflow_event_def()),
        Kind::PutUserTaskDef(put_user_task_def()),
        Kind::DeleteTenant(delete_tenant()),
        Kind::DeleteTaskDef(delete_task_def()),
        Kind::DeleteWfSpec(delete_wf_spec()),
        Kind::DeleteExternalEventDef(delete_external_event_def()),
        Kind::DeleteWorkflowEventDef(delete_workflow_event_def()),
        Kind::DeleteUserTaskDef(delete_user_task_def()),
    ]
    .into_iter()
    .map(|kind| MetadataCommand {
        command_id: "meta-1".into(),
        time: ts(31),
        command: Some(kind),
    })
    .collect()
}

fn command_result() -> CommandResult {
    CommandResult {
        command_id: "cmd-7".into(),
        code: command_result::Code::AlreadyExists as i32,
        message: "WfRun order-1 already exists".into(),
        result: Some(wf_run_id().encode_to_vec()),
    }
}

fn run_wf() -> RunWfRequest {
    RunWfRequest {
        wf_spec_name: "orders".into(),
        major_version: Some(1),
        revision: None,
        variables: [("item-id".to_string(), str_value("sku-9"))].into(),
        id: Some("order-1".into()),
    }
}

fn report_task_runs() -> Vec<ReportTaskRun> {
    use report_task_run::Result as Outcome;
    [
        (TaskStatus::TaskSuccess, Outcome::Output(str_value("ok"))),
        (TaskStatus::TaskFailed, Outcome::ErrorMessage("boom".into())),
    ]
    .into_iter()
    .map(|(status, outcome)| ReportTaskRun {
        task_run_id: Some(task_run_id()),
        attempt_number: 0,
        time: ts(32),
        status: status as i32,
        result: Some(outcome),
        worker_id: Some("worker-a".into()),
    })
    .collect()
}

fn task_claim_event() -> TaskClaimEvent {
    TaskClaimEvent {
        task_run_id: Some(task_run_id()),
        attempt_number: 0,
        worker_id: "worker-a".into(),
    }
}

fn put_external_event() -> PutExternalEventRequest {
    PutExternalEventRequest {
        wf_run_id: Some(wf_run_id()),
        external_event_def_name: "item-delivered".into(),
        guid: Some("evt-1".into()),
        content: Some(str_value("delivered")),
        thread_run_number: Some(0),
        node_run_position: None,
    }
}

fn stop_wf_run() -> StopWfRunRequest {
    StopWfRunRequest {
        wf_run_id: Some(wf_run_id()),
        thread_run_number: Some(1),
    }
}

fn resume_wf_run() -> ResumeWfRunRequest {
    ResumeWfRunRequest {
        wf_run_id: Some(wf_run_id()),
        thread_run_number: None,
    }
}

fn delete_wf_run() -> DeleteWfRunRequest {
    DeleteWfRunRequest {
        wf_run_id: Some(wf_run_id()),
    }
}

fn complete_user_task_run() -> CompleteUserTaskRunRequest {
    CompleteUserTaskRunRequest {
        user_task_run_id: Some(user_task_run_id()),
        results: [("approved".to_string(), variable_values()[3].clone())].into(),
        user_id: "ana".into(),
    }
}

fn assign_user_task_run() -> AssignUserTaskRunRequest {
    AssignUserTaskRunRequest {
        user_task_run_id: Some(user_task_run_id()),
        user_id: Some("ana".into()),
        user_group: Some("sales".into()),
        override_claim: true,
    }
}

fn cancel_user_task_run() -> CancelUserTaskRunRequest {
    CancelUserTaskRunRequest {
        user_task_run_id: Some(user_task_run_id()),
        reason: Some("order withdrawn".into()),
    }
}

fn task_attempt_retry_ready() -> TaskAttemptRetryReady {
    TaskAttemptRetryReady {
        task_run_id: Some(task_run_id()),
        attempt_number: 2,
    }
}

fn task_timeout() -> TaskTimeout {
    TaskTimeout {
        task_run_id: Some(task_run_id()),
        attempt_number: 1,
    }
}

fn external_event_timeout() -> ExternalEventTimeout {
    ExternalEventTimeout {
        node_run_id: Some(node_run_id()),
    }
}

fn put_tenant() -> PutTenantRequest {
    PutTenantRequest {
        id: "acme".into(),
        output_topic_config: Some(output_topic_config()),
    }
}

fn put_task_def() -> PutTaskDefRequest {
    PutTaskDefRequest {
        name: "ship-item".into(),
        input_vars: vec![variable_def()],
        retry_policy: Some(retry_policy()),
        timeout_seconds: 30,
        enable_entity_events: Some(true),
    }
}

fn put_wf_spec() -> PutWfSpecRequest {
    PutWfSpecRequest {
        name: "orders".into(),
        thread_specs: [("entrypoint".to_string(), thread_spec())].into(),
        entrypoint_thread_name: "entrypoint".into(),
        enable_entity_events: Some(false),
    }
}

fn put_external_event_def() -> PutExternalEventDefRequest {
    PutExternalEventDefRequest {
        name: "item-delivered".into(),
        enable_entity_events: Some(true),
    }
}

fn put_workflow_event_def() -> PutWorkflowEventDefRequest {
    PutWorkflowEventDefRequest {
        name: "order-shipped".into(),
        content_type: VariableType::JsonObj as i32,
        enable_entity_events: Some(false),
    }
}

fn put_user_task_def() -> PutUserTaskDefRequest {
    PutUserTaskDefRequest {
        name: "approve-order".into(),
        description: None,
        fields: vec![user_task_field()],
        enable_entity_events: Some(true),
    }
}

fn delete_tenant() -> DeleteTenantRequest {
    DeleteTenantRequest { id: "acme".into() }
}

fn delete_task_def() -> DeleteTaskDefRequest {
    DeleteTaskDefRequest {
        name: "ship-item".into(),
    }
}

fn delete_wf_spec() -> DeleteWfSpecRequest {
    DeleteWfSpecRequest {
        id: Some(wf_spec_id()),
    }
}

fn delete_external_event_def() -> DeleteExternalEventDefRequest {
    DeleteExternalEventDefRequest {
        name: "item-delivered".into(),
    }
}

fn delete_workflow_event_def() -> DeleteWorkflowEventDefRequest {
    DeleteWorkflowEventDefRequest {
        name: "order-shipped".into(),
    }
}

fn delete_user_task_def() -> DeleteUserTaskDefRequest {
    DeleteUserTaskDefRequest {
        name: "approve-order".into(),
    }
}

// ---------------------------------------------------------------------------
// Samples: output.proto
// ---------------------------------------------------------------------------

fn output_topic_records() -> Vec<OutputTopicRecord> {
    use output_topic_record::Payload;
    [
        Payload::TaskRun(task_run()),
        Payload::WorkflowEvent(workflow_event()),
        Payload::WfRun(wf_run()),
        Payload::UserTaskRun(user_task_run()),
        Payload::Variable(variable()),
        Payload::ExternalEvent(external_event()),
    ]
    .into_iter()
    .map(|payload| OutputTopicRecord {
        timestamp: ts(40),
        payload: Some(payload),
    })
    .collect()
}

fn metadata_output_topic_records() -> Vec<MetadataOutputTopicRecord> {
    use metadata_output_topic_record::MetadataRecord;
    [
        MetadataRecord::WfSpec(wf_spec()),
        MetadataRecord::TaskDef(task_def()),
        MetadataRecord::ExternalEventDef(external_event_def()),
        MetadataRecord::WorkflowEventDef(workflow_event_def()),
        MetadataRecord::UserTaskDef(user_task_def()),
    ]
    .into_iter()
    .map(|record| MetadataOutputTopicRecord {
        metadata_record: Some(record),
    })
    .collect()
}

// ---------------------------------------------------------------------------
// Samples: flows.proto
// ---------------------------------------------------------------------------

fn data_model_version() -> DataModelVersion {
    DataModelVersion { major: 0, minor: 1 }
}

fn data_model_field() -> DataModelField {
    DataModelField {
        name: "user_id".into(),
        field_type: data_model_field::FieldType::Timestamp as i32,
        required: true,
    }
}

fn data_model() -> DataModel {
    DataModel {
        name: "UserActivity".into(),
        version: Some(data_model_version()),
        fields: vec![data_model_field()],
        key_field: "user_id".into(),
    }
}

fn flow() -> Flow {
    Flow {
        name: "parse-activity".into(),
        source_model: "UserActivity".into(),
        source_version: Some(DataModelVersion { major: 0, minor: 0 }),
        target_model: "UserActivity".into(),
        target_version: Some(data_model_version()),
        kind: flow::FlowKind::Migration as i32,
        transform: "migrate_user_activity".into(),
        initial_load: true,
    }
}

fn flows_manifest() -> FlowsManifest {
    FlowsManifest {
        data_models: vec![data_model()],
        flows: vec![flow()],
    }
}

fn initial_load_progress() -> InitialLoadProgress {
    InitialLoadProgress {
        flow_name: "parse-activity".into(),
        partition: 3,
        snapshot_position: 12_345,
        last_loaded_key: Some(b"user-77".to_vec()),
        records_loaded: 900,
        done: false,
    }
}

fn table_row() -> TableRow {
    TableRow {
        value: br#"{"user_id":"u1"}"#.to_vec(),
        source_topic: "UserActivity_0_1".into(),
        source_offset: 42,
    }
}

// ---------------------------------------------------------------------------
// Samples: runtime.proto
// ---------------------------------------------------------------------------

fn commit_marker() -> CommitMarker {
    CommitMarker {
        next_input_offset: 1_001,
        epoch: 4,
        batch_number: 17,
        next_input_offsets: [("orders".to_owned(), 1_001), ("timers".to_owned(), 12)]
            .into_iter()
            .collect(),
    }
}

fn timer_record() -> TimerRecord {
    TimerRecord {
        fire_at: ts(50),
        payload: commands().remove(12).encode_to_vec(),
        key: b"wf-run-7".to_vec(),
        fired: true,
    }
}

fn parked_records() -> Vec<ParkedRecord> {
    let full = ParkedRecord {
        topic: "acme-output".into(),
        partition: 3,
        key: Some(b"wf-run-7".to_vec()),
        value: Some(b"payload".to_vec()),
        headers: [
            ("weir-id".to_owned(), b"core-cmd:3:41:0".to_vec()),
            ("weir-tenant".to_owned(), b"acme".to_vec()),
        ]
        .into_iter()
        .collect(),
        timestamp_ms: 1_700_000_000_123,
    };
    // Null key and value, and empty (but present) ones, stay apart.
    let null_key_and_value = ParkedRecord {
        key: None,
        value: None,
        ..full.clone()
    };
    let empty_key_and_value = ParkedRecord {
        key: Some(Vec::new()),
        value: Some(Vec::new()),
        ..full.clone()
    };
    vec![full, null_key_and_value, empty_key_and_value]
}

fn stored_metadata() -> Vec<StoredMetadata> {
    use stored_metadata::Object;
    [
        Object::Tenant(tenant()),
        Object::TaskDef(task_def()),
        Object::WfSpec(wf_spec()),
        Object::ExternalEventDef(external_event_def()),
        Object::WorkflowEventDef(workflow_event_def()),
        Object::UserTaskDef(user_task_def()),
    ]
    .into_iter()
    .map(|object| StoredMetadata {
        object: Some(object),
    })
    .collect()
}

fn timer_command() -> TimerCommand {
    TimerCommand {
        tenant: "acme".into(),
        command: commands().into_iter().next(),
        deferrals: 3,
        answer: true,
    }
}
