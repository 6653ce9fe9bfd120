//! The metadata processor through the broker-free test driver: every put and delete,
//! WfSpec versioning and validation, tenants and their isolation, and the rule that a
//! refused command leaves the store as it was.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use prost::Message;
use weir_processor::builder::WorkflowBuilder;
use weir_processor::config::WeirConfig;
use weir_processor::core::{self, CoreStores};
use weir_processor::topics::CoreTopics;
use weir_proto::command_result::Code;
use weir_proto::metadata_command::Command;
use weir_proto::node::Node as NodeKind;
use weir_proto::stored_metadata::Object;
use weir_proto::variable_assignment::Source;
use weir_proto::variable_value::Value;
use weir_proto::{
    CommandResult, DeleteExternalEventDefRequest, DeleteTaskDefRequest, DeleteTenantRequest,
    DeleteUserTaskDefRequest, DeleteWfSpecRequest, DeleteWorkflowEventDefRequest, Edge,
    EntrypointNode, ExitNode, MetadataCommand, Node, OutputTopicConfig, PutExternalEventDefRequest,
    PutTaskDefRequest, PutTenantRequest, PutUserTaskDefRequest, PutWfSpecRequest,
    PutWorkflowEventDefRequest, RetryPolicy, StoredMetadata, ThreadSpec, ThrowEventNode,
    UserTaskField, UserTaskNode, VariableAssignment, VariableDef, VariableType, VariableValue,
    WfSpec, WfSpecId,
};
use weir_topology::TopologyTestDriver;
use weir_topology::task::RecordOutcome;

const METADATA_CMD: &str = "weir_metadata-cmd";
const COMMAND_RESULTS: &str = "weir_command-results";
const DEAD_LETTER: &str = "weir_dead-letter";

/// A state directory removed when the test ends (the processor crate has no `tempfile`).
struct StateDir(PathBuf);

impl StateDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "weir-metadata-processor-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create the state dir");
        Self(path)
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Fixture {
    driver: TopologyTestDriver,
    stores: std::sync::Arc<CoreStores>,
    /// How many records were piped; record `n` is stamped `1_000_000 + n` ms.
    piped: i64,
    _dir: StateDir,
}

type Store = Vec<(Bytes, StoredMetadata)>;

impl Fixture {
    fn new() -> Self {
        let config = WeirConfig::from_lookup(|_| None).expect("default config");
        let topics = CoreTopics::new(&config);
        let (topology, stores) = core::topology(&topics).expect("core topology");
        let dir = StateDir::new();
        let driver = TopologyTestDriver::new(topology, "weir", &dir.0).expect("driver");
        Self {
            driver,
            stores,
            piped: 0,
            _dir: dir,
        }
    }

    /// Pipes raw bytes; returns the outcome and the `CommandResult`s it produced.
    fn pipe_raw(
        &mut self,
        tenant: Option<&str>,
        value: &[u8],
    ) -> (RecordOutcome, Vec<CommandResult>) {
        self.piped += 1;
        let headers: Vec<(&str, &[u8])> = tenant
            .map(|t| vec![("weir-tenant", t.as_bytes())])
            .unwrap_or_default();
        let outcome = self
            .driver
            .pipe(
                METADATA_CMD,
                0,
                Some(b"metadata"),
                Some(value),
                &headers,
                1_000_000 + self.piped,
            )
            .expect("pipe");
        let results = self
            .driver
            .take_outputs()
            .into_iter()
            .filter(|o| o.record.topic == COMMAND_RESULTS)
            .map(|o| {
                CommandResult::decode(o.record.value.expect("a result value").as_ref())
                    .expect("a CommandResult")
            })
            .collect();
        (outcome, results)
    }

    /// Sends one command and returns its one answer.
    fn send(&mut self, tenant: Option<&str>, command: MetadataCommand) -> CommandResult {
        let (outcome, mut results) = self.pipe_raw(tenant, &command.encode_to_vec());
        assert_eq!(outcome, RecordOutcome::Processed);
        assert_eq!(results.len(), 1, "exactly one answer per command");
        let result = results.remove(0);
        assert_eq!(result.command_id, command.command_id);
        result
    }

    /// Sends a command that must succeed; returns its encoded result id.
    fn accept(&mut self, tenant: Option<&str>, command: Command) -> Vec<u8> {
        let result = self.send(tenant, at(5_000, command));
        assert_eq!(
            (result.code(), result.message.as_str()),
            (Code::Ok, ""),
            "expected OK"
        );
        result.result.expect("an OK result carries an id")
    }

    /// Sends a command that must be refused with `code` and a message containing every
    /// fragment, and checks that the store did not change.
    fn refuse(&mut self, tenant: Option<&str>, command: Command, code: Code, fragments: &[&str]) {
        let before = self.store();
        let changelog_before = self.driver.changelog("metadata").len();
        let result = self.send(tenant, at(9_000, command));
        assert_eq!(result.code(), code, "message: {}", result.message);
        for fragment in fragments {
            assert!(
                result.message.contains(fragment),
                "{:?} does not contain {fragment:?}",
                result.message
            );
        }
        assert_eq!(result.result, None);
        assert_eq!(self.store(), before, "a refused command changes nothing");
        assert_eq!(self.driver.changelog("metadata").len(), changelog_before);
    }

    fn store(&self) -> Store {
        self.driver
            .store_contents(&self.stores.metadata, 0)
            .expect("store contents")
    }

    fn objects(&self) -> Vec<Object> {
        self.store()
            .into_iter()
            .filter_map(|(_, stored)| stored.object)
            .collect()
    }
}

/// A command at `time_ms`, with a fresh command id.
fn at(time_ms: i64, command: Command) -> MetadataCommand {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    MetadataCommand {
        command_id: format!("cmd-{}", NEXT.fetch_add(1, Ordering::Relaxed)),
        time: Some(weir_proto::timestamp::from_millis(time_ms)),
        command: Some(command),
    }
}

fn str_input(name: &str) -> VariableDef {
    VariableDef {
        name: name.to_owned(),
        var_type: VariableType::Str.into(),
        default_value: None,
    }
}

fn task_def(name: &str, inputs: &[&str]) -> Command {
    Command::PutTaskDef(PutTaskDefRequest {
        name: name.to_owned(),
        input_vars: inputs.iter().map(|n| str_input(n)).collect(),
        retry_policy: None,
        timeout_seconds: 30,
        enable_entity_events: None,
    })
}

fn external_event_def(name: &str) -> Command {
    Command::PutExternalEventDef(PutExternalEventDefRequest {
        name: name.to_owned(),
        enable_entity_events: None,
    })
}

fn workflow_event_def(name: &str, content_type: VariableType) -> Command {
    Command::PutWorkflowEventDef(PutWorkflowEventDefRequest {
        name: name.to_owned(),
        content_type: content_type.into(),
        enable_entity_events: None,
    })
}

fn user_task_def(name: &str, fields: &[&str]) -> Command {
    Command::PutUserTaskDef(PutUserTaskDefRequest {
        name: name.to_owned(),
        description: Some("approve the order".to_owned()),
        fields: fields
            .iter()
            .map(|f| UserTaskField {
                name: (*f).to_owned(),
                field_type: VariableType::Bool.into(),
                description: None,
                required: true,
            })
            .collect(),
        enable_entity_events: None,
    })
}

fn put_tenant(id: &str, output_topic: Option<OutputTopicConfig>) -> Command {
    Command::PutTenant(PutTenantRequest {
        id: id.to_owned(),
        output_topic_config: output_topic,
    })
}

fn put_spec(spec: WfSpec) -> Command {
    Command::PutWfSpec(PutWfSpecRequest {
        name: spec.id.map(|id| id.name).unwrap_or_default(),
        thread_specs: spec.thread_specs,
        entrypoint_thread_name: spec.entrypoint_thread_name,
        enable_entity_events: spec.enable_entity_events,
    })
}

fn delete_spec(name: &str, major_version: i32, revision: i32) -> Command {
    Command::DeleteWfSpec(DeleteWfSpecRequest {
        id: Some(spec_id(name, major_version, revision)),
    })
}

fn spec_id(name: &str, major_version: i32, revision: i32) -> WfSpecId {
    WfSpecId {
        name: name.to_owned(),
        major_version,
        revision,
    }
}

fn decode_id(bytes: &[u8]) -> WfSpecId {
    WfSpecId::decode(bytes).expect("a WfSpecId")
}

/// `orders`: ship the item, then wait for delivery; `extra_task` adds a node,
/// `extra_var` an entrypoint variable.
fn orders(extra_task: bool, extra_var: bool) -> WfSpec {
    let wf = WorkflowBuilder::new("orders");
    let user_id = wf.declare_str("user-id");
    let item_id = wf.declare_str("item-id");
    if extra_var {
        wf.declare_str("coupon");
    }
    wf.execute("ship-item", (&user_id, &item_id));
    if extra_task {
        wf.execute("notify", ());
    }
    wf.wait_for_event("item-delivered");
    wf.build()
}

/// The metadata `orders` needs, in the default tenant (or `tenant`).
fn orders_metadata(f: &mut Fixture, tenant: Option<&str>) {
    f.accept(tenant, task_def("ship-item", &["user-id", "item-id"]));
    f.accept(tenant, task_def("notify", &[]));
    f.accept(tenant, external_event_def("item-delivered"));
}

/// `entrypoint -> {name} -> exit` in one thread, for node kinds the builder lacks.
fn single_node_spec(spec_name: &str, name: &str, kind: NodeKind) -> WfSpec {
    let edge = |to: &str| Edge {
        sink_node_name: to.to_owned(),
        ..Default::default()
    };
    let nodes = BTreeMap::from([
        (
            "0-entrypoint".to_owned(),
            Node {
                outgoing_edges: vec![edge(name)],
                node: Some(NodeKind::Entrypoint(EntrypointNode {})),
            },
        ),
        (
            name.to_owned(),
            Node {
                outgoing_edges: vec![edge("9-exit")],
                node: Some(kind),
            },
        ),
        (
            "9-exit".to_owned(),
            Node {
                outgoing_edges: Vec::new(),
                node: Some(NodeKind::Exit(ExitNode::default())),
            },
        ),
    ]);
    WfSpec {
        id: Some(spec_id(spec_name, 0, 0)),
        thread_specs: BTreeMap::from([(
            "entrypoint".to_owned(),
            ThreadSpec {
                nodes,
                variable_defs: Vec::new(),
            },
        )]),
        entrypoint_thread_name: "entrypoint".to_owned(),
        ..Default::default()
    }
}

fn stored_spec(f: &Fixture, id: &WfSpecId) -> WfSpec {
    f.objects()
        .into_iter()
        .find_map(|o| match o {
            Object::WfSpec(spec) if spec.id.as_ref() == Some(id) => Some(spec),
            _ => None,
        })
        .expect("the spec version is stored")
}

fn entrypoint(spec: &mut WfSpec) -> &mut ThreadSpec {
    spec.thread_specs
        .get_mut("entrypoint")
        .expect("entrypoint thread")
}

#[test]
fn metadata_tenants_are_created_updated_in_place_and_deleted() {
    let mut f = Fixture::new();
    assert_eq!(f.accept(None, put_tenant("acme", None)), b"acme");
    let created = f.store();
    let [
        (
            _,
            StoredMetadata {
                object: Some(Object::Tenant(tenant)),
            },
        ),
    ] = created.as_slice()
    else {
        panic!("one tenant entry expected, got {created:?}");
    };
    assert_eq!(tenant.id, "acme");
    assert_eq!(
        tenant.created_at,
        Some(weir_proto::timestamp::from_millis(5_000))
    );

    // The same put again changes nothing.
    let changelog = f.driver.changelog("metadata").len();
    f.accept(None, put_tenant("acme", None));
    assert_eq!(f.store(), created);
    assert_eq!(f.driver.changelog("metadata").len(), changelog);

    // A new output topic setting is applied in place; the creation time stays.
    let config = OutputTopicConfig {
        default_recording_level: 1,
    };
    let result = f.send(None, at(7_000, put_tenant("acme", Some(config))));
    assert_eq!(result.code(), Code::Ok);
    let objects = f.objects();
    let [Object::Tenant(updated)] = objects.as_slice() else {
        panic!("one tenant expected, got {objects:?}");
    };
    assert_eq!(updated.output_topic, Some(config));
    assert_eq!(updated.created_at, tenant.created_at);

    assert_eq!(
        f.accept(
            None,
            Command::DeleteTenant(DeleteTenantRequest {
                id: "acme".to_owned()
            })
        ),
        b"acme"
    );
    assert_eq!(f.store(), Vec::new());
    f.refuse(
        None,
        Command::DeleteTenant(DeleteTenantRequest {
            id: "acme".to_owned(),
        }),
        Code::NotFound,
        &["tenant acme does not exist"],
    );
    // Once deleted, the tenant's commands are refused again.
    f.refuse(
        Some("acme"),
        external_event_def("item-delivered"),
        Code::NotFound,
        &["tenant acme does not exist"],
    );
}

#[test]
fn metadata_default_tenant_always_exists_and_cannot_be_deleted() {
    let mut f = Fixture::new();
    // No put needed: with or without the header.
    f.accept(None, task_def("ship-item", &[]));
    f.accept(Some("default"), external_event_def("item-delivered"));
    assert_eq!(f.objects().len(), 2);
    f.refuse(
        None,
        Command::DeleteTenant(DeleteTenantRequest {
            id: "default".to_owned(),
        }),
        Code::FailedPrecondition,
        &["the default tenant cannot be deleted"],
    );
    // Putting it with the same (empty) settings is a no-op; with settings it is stored.
    f.accept(None, put_tenant("default", None));
    assert_eq!(f.objects().len(), 2);
    f.accept(
        None,
        put_tenant(
            "default",
            Some(OutputTopicConfig {
                default_recording_level: 0,
            }),
        ),
    );
    assert!(
        f.objects()
            .iter()
            .any(|o| matches!(o, Object::Tenant(t) if t.id == "default"))
    );
}

#[test]
fn metadata_tenant_with_objects_cannot_be_deleted() {
    let mut f = Fixture::new();
    f.accept(None, put_tenant("acme", None));
    f.accept(Some("acme"), task_def("ship-item", &["user-id", "item-id"]));
    f.accept(Some("acme"), task_def("notify", &[]));
    f.accept(Some("acme"), external_event_def("item-delivered"));
    f.accept(Some("acme"), put_spec(orders(false, false)));
    f.refuse(
        None,
        Command::DeleteTenant(DeleteTenantRequest {
            id: "acme".to_owned(),
        }),
        Code::FailedPrecondition,
        &[
            "tenant acme still holds 4 metadata object(s)",
            "2 task-def, 1 wf-spec, 1 external-event-def",
        ],
    );
}

#[test]
fn metadata_commands_in_an_unknown_tenant_are_refused() {
    let mut f = Fixture::new();
    f.refuse(
        Some("nope"),
        task_def("ship-item", &[]),
        Code::NotFound,
        &["tenant nope does not exist"],
    );
    f.refuse(
        Some("nope"),
        put_spec(orders(false, false)),
        Code::NotFound,
        &["tenant nope does not exist"],
    );
    f.refuse(
        Some("nope"),
        Command::DeleteTaskDef(DeleteTaskDefRequest {
            name: "ship-item".to_owned(),
        }),
        Code::NotFound,
        &["tenant nope does not exist"],
    );
}

#[test]
fn metadata_bad_names_are_refused_naming_the_field() {
    let mut f = Fixture::new();
    f.refuse(
        None,
        put_tenant("", None),
        Code::InvalidArgument,
        &["tenant id must not be empty"],
    );
    f.refuse(
        None,
        put_tenant("acme corp", None),
        Code::InvalidArgument,
        &["tenant id \"acme corp\" contains ' '", "Kafka topic names"],
    );
    f.refuse(
        None,
        task_def("ship/item", &[]),
        Code::InvalidArgument,
        &["TaskDef name \"ship/item\" contains '/'"],
    );
    f.refuse(
        None,
        external_event_def(""),
        Code::InvalidArgument,
        &["ExternalEventDef name must not be empty"],
    );
    f.refuse(
        None,
        workflow_event_def("a:b", VariableType::Str),
        Code::InvalidArgument,
        &["WorkflowEventDef name \"a:b\""],
    );
    f.refuse(
        None,
        user_task_def("appröve", &["ok"]),
        Code::InvalidArgument,
        &["UserTaskDef name \"appröve\""],
    );
    let mut spec = orders(false, false);
    spec.id = Some(spec_id("my orders", 0, 0));
    f.refuse(
        None,
        put_spec(spec),
        Code::InvalidArgument,
        &["WfSpec name \"my orders\""],
    );
    f.refuse(
        Some("a/b"),
        task_def("ship-item", &[]),
        Code::InvalidArgument,
        &["tenant (the weir-tenant header) \"a/b\""],
    );
    assert_eq!(f.store(), Vec::new());
}

#[test]
fn metadata_task_defs_are_immutable_except_for_entity_events() {
    let mut f = Fixture::new();
    assert_eq!(
        f.accept(None, task_def("ship-item", &["user-id", "item-id"])),
        b"ship-item"
    );
    let created = f.store();

    // Identical content at a later time: nothing changes, not even created_at.
    f.accept(None, task_def("ship-item", &["user-id", "item-id"]));
    assert_eq!(f.store(), created);

    // Only enable_entity_events differs: updated in place.
    let Command::PutTaskDef(mut flagged) = task_def("ship-item", &["user-id", "item-id"]) else {
        unreachable!()
    };
    flagged.enable_entity_events = Some(false);
    f.accept(None, Command::PutTaskDef(flagged.clone()));
    let objects = f.objects();
    let [Object::TaskDef(def)] = objects.as_slice() else {
        panic!("one TaskDef expected, got {objects:?}");
    };
    assert_eq!(def.enable_entity_events, Some(false));
    assert_eq!(
        def.created_at,
        Some(weir_proto::timestamp::from_millis(5_000))
    );
    assert_eq!(def.timeout_seconds, 30);

    // Anything else is refused, saying what differs.
    let mut changed = flagged.clone();
    changed.timeout_seconds = 60;
    changed.input_vars.pop();
    f.refuse(
        None,
        Command::PutTaskDef(changed),
        Code::AlreadyExists,
        &["TaskDef ship-item already exists with a different input_vars, timeout_seconds"],
    );

    assert_eq!(
        f.accept(
            None,
            Command::DeleteTaskDef(DeleteTaskDefRequest {
                name: "ship-item".to_owned()
            })
        ),
        b"ship-item"
    );
    assert_eq!(f.store(), Vec::new());
    f.refuse(
        None,
        Command::DeleteTaskDef(DeleteTaskDefRequest {
            name: "ship-item".to_owned(),
        }),
        Code::NotFound,
        &["TaskDef ship-item does not exist in tenant default"],
    );
}

#[test]
fn metadata_task_defs_are_validated() {
    let mut f = Fixture::new();
    f.refuse(
        None,
        Command::PutTaskDef(PutTaskDefRequest {
            name: "charge".to_owned(),
            input_vars: vec![str_input("amount"), str_input(""), str_input("amount")],
            retry_policy: Some(RetryPolicy {
                max_retries: 3,
                initial_backoff_ms: 1_000,
                backoff_multiplier: 0.5,
                max_backoff_ms: 500,
            }),
            timeout_seconds: -1,
            enable_entity_events: None,
        }),
        Code::InvalidArgument,
        &[
            "TaskDef charge is invalid: ",
            "input variable 1 has no name",
            "input variable \"amount\" is declared more than once",
            "retry_policy.backoff_multiplier is 0.5",
            "retry_policy.max_backoff_ms (500) is below initial_backoff_ms (1000)",
            "timeout_seconds is -1",
        ],
    );
    f.refuse(
        None,
        Command::PutTaskDef(PutTaskDefRequest {
            name: "charge".to_owned(),
            input_vars: Vec::new(),
            retry_policy: Some(RetryPolicy {
                max_retries: -1,
                initial_backoff_ms: -5,
                backoff_multiplier: 1.0,
                max_backoff_ms: 0,
            }),
            timeout_seconds: 0,
            enable_entity_events: None,
        }),
        Code::InvalidArgument,
        &[
            "retry_policy.max_retries is -1",
            "retry_policy.initial_backoff_ms is -5",
        ],
    );
    // A sound retry policy is accepted.
    f.accept(
        None,
        Command::PutTaskDef(PutTaskDefRequest {
            name: "charge".to_owned(),
            input_vars: vec![str_input("amount")],
            retry_policy: Some(RetryPolicy {
                max_retries: 3,
                initial_backoff_ms: 100,
                backoff_multiplier: 2.0,
                max_backoff_ms: 1_000,
            }),
            timeout_seconds: 10,
            enable_entity_events: None,
        }),
    );
}

#[test]
fn metadata_event_and_user_task_defs_are_put_and_deleted() {
    let mut f = Fixture::new();
    assert_eq!(
        f.accept(None, external_event_def("item-delivered")),
        b"item-delivered"
    );
    assert_eq!(
        f.accept(None, workflow_event_def("order-shipped", VariableType::Str)),
        b"order-shipped"
    );
    assert_eq!(
        f.accept(None, user_task_def("approve", &["approved"])),
        b"approve"
    );
    let created = f.store();
    assert_eq!(created.len(), 3);

    // Repeats change nothing.
    f.accept(None, external_event_def("item-delivered"));
    f.accept(None, workflow_event_def("order-shipped", VariableType::Str));
    f.accept(None, user_task_def("approve", &["approved"]));
    assert_eq!(f.store(), created);

    // The flag alone is applied in place.
    f.accept(
        None,
        Command::PutExternalEventDef(PutExternalEventDefRequest {
            name: "item-delivered".to_owned(),
            enable_entity_events: Some(true),
        }),
    );
    assert!(f.objects().iter().any(|o| matches!(
        o,
        Object::ExternalEventDef(d) if d.enable_entity_events == Some(true)
            && d.created_at == Some(weir_proto::timestamp::from_millis(5_000))
    )));

    // Other changes are refused.
    f.refuse(
        None,
        workflow_event_def("order-shipped", VariableType::Int),
        Code::AlreadyExists,
        &["WorkflowEventDef order-shipped already exists with a different content_type"],
    );
    f.refuse(
        None,
        user_task_def("approve", &["approved", "comment"]),
        Code::AlreadyExists,
        &["UserTaskDef approve already exists with a different fields"],
    );
    f.refuse(
        None,
        user_task_def("review", &["ok", "", "ok"]),
        Code::InvalidArgument,
        &[
            "UserTaskDef review is invalid",
            "field 1 has no name",
            "field \"ok\" is declared more than once",
        ],
    );

    f.accept(
        None,
        Command::DeleteExternalEventDef(DeleteExternalEventDefRequest {
            name: "item-delivered".to_owned(),
        }),
    );
    f.accept(
        None,
        Command::DeleteWorkflowEventDef(DeleteWorkflowEventDefRequest {
            name: "order-shipped".to_owned(),
        }),
    );
    f.accept(
        None,
        Command::DeleteUserTaskDef(DeleteUserTaskDefRequest {
            name: "approve".to_owned(),
        }),
    );
    assert_eq!(f.store(), Vec::new());
    f.refuse(
        None,
        Command::DeleteExternalEventDef(DeleteExternalEventDefRequest {
            name: "item-delivered".to_owned(),
        }),
        Code::NotFound,
        &["ExternalEventDef item-delivered does not exist"],
    );
    f.refuse(
        None,
        Command::DeleteWorkflowEventDef(DeleteWorkflowEventDefRequest {
            name: "order-shipped".to_owned(),
        }),
        Code::NotFound,
        &["WorkflowEventDef order-shipped does not exist"],
    );
    f.refuse(
        None,
        Command::DeleteUserTaskDef(DeleteUserTaskDefRequest {
            name: "approve".to_owned(),
        }),
        Code::NotFound,
        &["UserTaskDef approve does not exist"],
    );
}

#[test]
fn metadata_wf_specs_are_versioned() {
    let mut f = Fixture::new();
    orders_metadata(&mut f, None);

    let first = decode_id(&f.accept(None, put_spec(orders(false, false))));
    assert_eq!(first, spec_id("orders", 0, 0));
    let stored = stored_spec(&f, &first);
    assert_eq!(
        stored.created_at,
        Some(weir_proto::timestamp::from_millis(5_000))
    );

    // Identical: no-op, same id.
    let before = f.store();
    let again = decode_id(&f.accept(None, put_spec(orders(false, false))));
    assert_eq!(again, first);
    assert_eq!(f.store(), before);

    // A changed node: new revision.
    let revised = decode_id(&f.accept(None, put_spec(orders(true, false))));
    assert_eq!(revised, spec_id("orders", 0, 1));

    // Changed entrypoint variables: new major version.
    let major = decode_id(&f.accept(None, put_spec(orders(true, true))));
    assert_eq!(major, spec_id("orders", 1, 0));

    // enable_entity_events alone: the latest version, updated in place.
    let mut flagged = orders(true, true);
    flagged.enable_entity_events = Some(false);
    let in_place = decode_id(&f.accept(None, put_spec(flagged)));
    assert_eq!(in_place, major);
    let updated = stored_spec(&f, &major);
    assert_eq!(updated.enable_entity_events, Some(false));
    assert_eq!(
        updated.created_at,
        Some(weir_proto::timestamp::from_millis(5_000))
    );

    let versions: Vec<WfSpecId> = f
        .objects()
        .into_iter()
        .filter_map(|o| match o {
            Object::WfSpec(spec) => spec.id,
            _ => None,
        })
        .collect();
    assert_eq!(versions, vec![first, revised, major]);
}

#[test]
fn metadata_invalid_wf_specs_are_refused_with_every_error() {
    let mut f = Fixture::new();
    orders_metadata(&mut f, None);

    // A TaskDef that does not exist.
    let wf = WorkflowBuilder::new("orders");
    wf.execute("ship-itme", ());
    f.refuse(
        None,
        put_spec(wf.build()),
        Code::InvalidArgument,
        &[
            "WfSpec orders is invalid: ",
            "thread entrypoint, node 1-ship-itme-TASK: TaskDef \"ship-itme\" does not exist",
        ],
    );

    // A variable that is not declared.
    let mut spec = orders(false, false);
    entrypoint(&mut spec).variable_defs.remove(1);
    f.refuse(
        None,
        put_spec(spec),
        Code::InvalidArgument,
        &["node 1-ship-item-TASK: variable \"item-id\" is not declared in this thread"],
    );

    // Type mismatch: an INT variable where the TaskDef takes a STR.
    let wf = WorkflowBuilder::new("orders");
    let user_id = wf.declare_int("user-id");
    let item_id = wf.declare_str("item-id");
    wf.execute("ship-item", (&user_id, &item_id));
    f.refuse(
        None,
        put_spec(wf.build()),
        Code::InvalidArgument,
        &["argument \"user-id\" of ship-item expects Str, but is given Int"],
    );

    // A cycle without exit, together with a missing ExternalEventDef: both are listed.
    let mut spec = orders(false, false);
    let thread = entrypoint(&mut spec);
    let event = thread
        .nodes
        .get_mut("2-item-delivered-EXTERNAL_EVENT")
        .expect("event node");
    event.outgoing_edges[0].sink_node_name = "1-ship-item-TASK".to_owned();
    if let Some(NodeKind::ExternalEvent(node)) = event.node.as_mut() {
        node.external_event_def_name = "item-lost".to_owned();
    }
    f.refuse(
        None,
        put_spec(spec),
        Code::InvalidArgument,
        &[
            "ExternalEventDef \"item-lost\" does not exist",
            "; thread entrypoint, node 0-entrypoint-ENTRYPOINT: no exit node can be reached",
            "node 2-item-delivered-EXTERNAL_EVENT: no exit node can be reached from here \
             (a cycle without exit, or a dead end)",
        ],
    );

    // Missing WorkflowEventDef and UserTaskDef.
    f.refuse(
        None,
        put_spec(single_node_spec(
            "thrower",
            "1-throw",
            NodeKind::ThrowEvent(ThrowEventNode {
                workflow_event_def_name: "order-shipped".to_owned(),
                content: None,
            }),
        )),
        Code::InvalidArgument,
        &["WorkflowEventDef \"order-shipped\" does not exist"],
    );
    f.refuse(
        None,
        put_spec(single_node_spec(
            "approver",
            "1-approve",
            NodeKind::UserTask(UserTaskNode {
                user_task_def_name: "approve".to_owned(),
                user_id: Some(VariableAssignment {
                    source: Some(Source::LiteralValue(VariableValue {
                        value: Some(Value::Int(7)),
                    })),
                }),
                user_group: None,
            }),
        )),
        Code::InvalidArgument,
        &[
            "UserTaskDef \"approve\" does not exist",
            "the user or group expects Str, but is given Int",
        ],
    );
    assert!(
        !f.objects().iter().any(|o| matches!(o, Object::WfSpec(_))),
        "no invalid spec was stored"
    );
}

#[test]
fn metadata_definitions_in_use_cannot_be_deleted() {
    let mut f = Fixture::new();
    orders_metadata(&mut f, None);
    f.accept(None, workflow_event_def("order-shipped", VariableType::Str));
    f.accept(None, user_task_def("approve", &["approved"]));
    f.accept(None, put_spec(orders(false, false)));
    f.accept(None, put_spec(orders(true, false)));
    f.accept(
        None,
        put_spec(single_node_spec(
            "thrower",
            "1-throw",
            NodeKind::ThrowEvent(ThrowEventNode {
                workflow_event_def_name: "order-shipped".to_owned(),
                content: None,
            }),
        )),
    );
    f.accept(
        None,
        put_spec(single_node_spec(
            "approver",
            "1-approve",
            NodeKind::UserTask(UserTaskNode {
                user_task_def_name: "approve".to_owned(),
                user_id: None,
                user_group: None,
            }),
        )),
    );

    let delete_task = |name: &str| {
        Command::DeleteTaskDef(DeleteTaskDefRequest {
            name: name.to_owned(),
        })
    };
    f.refuse(
        None,
        delete_task("ship-item"),
        Code::FailedPrecondition,
        &["TaskDef ship-item is still used by WfSpec version(s) orders 0.0, orders 0.1"],
    );
    f.refuse(
        None,
        delete_task("notify"),
        Code::FailedPrecondition,
        &["TaskDef notify is still used by WfSpec version(s) orders 0.1;"],
    );
    f.refuse(
        None,
        Command::DeleteExternalEventDef(DeleteExternalEventDefRequest {
            name: "item-delivered".to_owned(),
        }),
        Code::FailedPrecondition,
        &["ExternalEventDef item-delivered is still used by WfSpec version(s) orders 0.0, orders 0.1"],
    );
    f.refuse(
        None,
        Command::DeleteWorkflowEventDef(DeleteWorkflowEventDefRequest {
            name: "order-shipped".to_owned(),
        }),
        Code::FailedPrecondition,
        &["WorkflowEventDef order-shipped is still used by WfSpec version(s) thrower 0.0"],
    );
    f.refuse(
        None,
        Command::DeleteUserTaskDef(DeleteUserTaskDefRequest {
            name: "approve".to_owned(),
        }),
        Code::FailedPrecondition,
        &["UserTaskDef approve is still used by WfSpec version(s) approver 0.0"],
    );

    // Once the versions that use it are gone, the TaskDef can go.
    assert_eq!(
        decode_id(&f.accept(None, delete_spec("orders", 0, 1))),
        spec_id("orders", 0, 1)
    );
    f.accept(None, delete_task("notify"));
    f.refuse(
        None,
        delete_spec("orders", 0, 1),
        Code::NotFound,
        &["WfSpec version orders 0.1 does not exist in tenant default"],
    );
    f.refuse(
        None,
        Command::DeleteWfSpec(DeleteWfSpecRequest { id: None }),
        Code::InvalidArgument,
        &["DeleteWfSpec needs the id"],
    );
    f.accept(None, delete_spec("orders", 0, 0));
    f.accept(None, delete_task("ship-item"));
    assert!(!f.objects().iter().any(
        |o| matches!(o, Object::WfSpec(s) if s.id.as_ref().is_some_and(|i| i.name == "orders"))
    ));
}

#[test]
fn metadata_tenants_are_isolated() {
    let mut f = Fixture::new();
    f.accept(None, put_tenant("acme", None));
    f.accept(None, put_tenant("beta", None));

    // The same name in two tenants: independent objects with different content.
    f.accept(None, task_def("ship-item", &["user-id", "item-id"]));
    f.accept(Some("acme"), task_def("ship-item", &["parcel"]));
    let ship_items: Vec<usize> = f
        .objects()
        .into_iter()
        .filter_map(|o| match o {
            Object::TaskDef(def) if def.name == "ship-item" => Some(def.input_vars.len()),
            _ => None,
        })
        .collect();
    assert_eq!(ship_items.len(), 2);
    assert!(ship_items.contains(&1) && ship_items.contains(&2));

    // A spec in beta cannot use acme's (or default's) TaskDef.
    f.accept(Some("acme"), task_def("notify", &[]));
    let wf = WorkflowBuilder::new("notifier");
    wf.execute("notify", ());
    let notifier = wf.build();
    f.refuse(
        Some("beta"),
        put_spec(notifier.clone()),
        Code::InvalidArgument,
        &["TaskDef \"notify\" does not exist"],
    );
    assert_eq!(
        decode_id(&f.accept(Some("acme"), put_spec(notifier))),
        spec_id("notifier", 0, 0)
    );

    // Deleting in one tenant leaves the other's object alone.
    f.accept(
        None,
        Command::DeleteTaskDef(DeleteTaskDefRequest {
            name: "ship-item".to_owned(),
        }),
    );
    assert!(f.objects().iter().any(|o| matches!(
        o,
        Object::TaskDef(def) if def.name == "ship-item" && def.input_vars.len() == 1
    )));
    // And acme's spec is not visible from the default tenant.
    f.refuse(
        None,
        delete_spec("notifier", 0, 0),
        Code::NotFound,
        &["WfSpec version notifier 0.0 does not exist in tenant default"],
    );
}

#[test]
fn metadata_undecodable_records_are_dead_lettered_and_processing_goes_on() {
    let mut f = Fixture::new();
    let (outcome, results) = f.pipe_raw(None, &[0xff, 0xff, 0xff]);
    let RecordOutcome::DeadLettered(reason) = outcome else {
        panic!("expected a dead letter, got {outcome:?}");
    };
    assert!(
        reason.contains("does not decode as a MetadataCommand"),
        "{reason}"
    );
    assert!(results.is_empty(), "a dead letter is not answered");
    assert_eq!(f.store(), Vec::new());

    f.accept(None, task_def("ship-item", &[]));
    assert_eq!(f.objects().len(), 1);
}

#[test]
fn metadata_dead_letters_reach_the_dead_letter_topic() {
    let mut f = Fixture::new();
    f.driver
        .pipe(METADATA_CMD, 0, Some(b"k"), Some(&[0xff]), &[], 1)
        .expect("pipe");
    assert_eq!(f.driver.outputs_to(DEAD_LETTER).len(), 1);
    assert!(f.driver.outputs_to(COMMAND_RESULTS).is_empty());
}

#[test]
fn metadata_commands_without_id_or_time_use_the_record() {
    let mut f = Fixture::new();
    let command = MetadataCommand {
        command_id: String::new(),
        time: None,
        command: Some(task_def("ship-item", &[])),
    };
    let (outcome, results) = f.pipe_raw(None, &command.encode_to_vec());
    assert_eq!(outcome, RecordOutcome::Processed);
    let [result] = results.as_slice() else {
        panic!("one answer expected, got {results:?}");
    };
    assert_eq!(result.code(), Code::Ok);
    assert_eq!(result.command_id, "weir_metadata-cmd:0:0");
    let objects = f.objects();
    let [Object::TaskDef(def)] = objects.as_slice() else {
        panic!("one TaskDef expected");
    };
    // The record's timestamp (the first piped record is at 1_000_001 ms).
    assert_eq!(
        def.created_at,
        Some(weir_proto::timestamp::from_millis(1_000_001))
    );

    // A command naming no operation is answered, not dead-lettered.
    let empty = MetadataCommand {
        command_id: "empty".to_owned(),
        time: None,
        command: None,
    };
    let result = f.send(None, empty);
    assert_eq!(result.code(), Code::InvalidArgument);
    assert_eq!(result.message, "the metadata command names no operation");
}

#[test]
fn metadata_wf_spec_node_references_resolve_in_the_spec_tenant_only() {
    // The same spec is valid in a tenant that has the definitions and refused in one
    // that has only some of them.
    let mut f = Fixture::new();
    f.accept(None, put_tenant("acme", None));
    orders_metadata(&mut f, Some("acme"));
    f.accept(None, task_def("ship-item", &["user-id", "item-id"]));
    f.refuse(
        None,
        put_spec(orders(false, false)),
        Code::InvalidArgument,
        &["ExternalEventDef \"item-delivered\" does not exist"],
    );
    assert_eq!(
        decode_id(&f.accept(Some("acme"), put_spec(orders(false, false)))),
        spec_id("orders", 0, 0)
    );
}
