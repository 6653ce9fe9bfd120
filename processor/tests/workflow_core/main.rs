//! The execution processor on the topology test driver: each node kind, branching and
//! loops, retries with backoff, timeouts, pre-emptive events, user tasks, stop/resume/
//! delete, input checks, duplicate reports and tenant isolation.

mod harness;
mod metrics;
mod output;

use std::collections::BTreeMap;

use harness::{Core, int, text, wf_run_of};
use weir_processor::builder::WorkflowBuilder;
use weir_proto::command_result::Code;
use weir_proto::metadata_command::Command as Meta;
use weir_proto::node::Node as NodeKind;
use weir_proto::variable_assignment::Source;
use weir_proto::variable_mutation::RhsValue;
use weir_proto::{
    Comparator, CompleteUserTaskRunRequest, DeleteWfRunRequest, Edge, EdgeCondition,
    EntrypointNode, ExitNode, ExternalEventNode, LhStatus, Node, NodeOutputReference,
    PutExternalEventDefRequest, PutTaskDefRequest, PutTenantRequest, PutUserTaskDefRequest,
    PutWfSpecRequest, PutWorkflowEventDefRequest, ResumeWfRunRequest, RetryPolicy,
    StopWfRunRequest, TaskNode, TaskStatus, ThreadSpec, ThreadVarDef, ThrowEventNode,
    UserTaskField, UserTaskNode, UserTaskRunId, UserTaskRunStatus, VariableAssignment, VariableDef,
    VariableMutation, VariableMutationType, VariableType, VariableValue, WfRunId,
    WfRunVariableAccessLevel, WfSpec, command,
};

const T: &str = "default";

fn var_def(name: &str, var_type: VariableType) -> VariableDef {
    VariableDef {
        name: name.to_owned(),
        var_type: var_type as i32,
        default_value: None,
    }
}

fn task_def(
    name: &str,
    inputs: &[(&str, VariableType)],
    retries: i32,
    timeout_seconds: i32,
) -> Meta {
    Meta::PutTaskDef(PutTaskDefRequest {
        name: name.to_owned(),
        input_vars: inputs.iter().map(|(n, t)| var_def(n, *t)).collect(),
        retry_policy: Some(RetryPolicy {
            max_retries: retries,
            initial_backoff_ms: 1_000,
            backoff_multiplier: 2.0,
            max_backoff_ms: 10_000,
        }),
        timeout_seconds,
        enable_entity_events: None,
    })
}

fn event_def(name: &str) -> Meta {
    Meta::PutExternalEventDef(PutExternalEventDefRequest {
        name: name.to_owned(),
        enable_entity_events: None,
    })
}

fn spec_request(spec: WfSpec) -> Meta {
    Meta::PutWfSpec(PutWfSpecRequest {
        name: spec.id.map(|id| id.name).unwrap_or_default(),
        thread_specs: spec.thread_specs,
        entrypoint_thread_name: spec.entrypoint_thread_name,
        enable_entity_events: spec.enable_entity_events,
    })
}

/// The seed's `orders` workflow, with its TaskDefs and ExternalEventDef, in `tenant`.
fn put_orders(core: &mut Core, tenant: &str, retries: i32, timeout_seconds: i32) {
    if tenant != T {
        core.put_ok(
            tenant,
            Meta::PutTenant(PutTenantRequest {
                id: tenant.to_owned(),
                output_topic_config: None,
            }),
        );
    }
    core.put_ok(
        tenant,
        task_def(
            "fetch-price",
            &[("item-id", VariableType::Str)],
            retries,
            timeout_seconds,
        ),
    );
    core.put_ok(
        tenant,
        task_def(
            "charge-credit-card",
            &[("user-id", VariableType::Str), ("price", VariableType::Int)],
            retries,
            timeout_seconds,
        ),
    );
    core.put_ok(
        tenant,
        task_def(
            "ship-item",
            &[
                ("user-id", VariableType::Str),
                ("item-id", VariableType::Str),
            ],
            retries,
            timeout_seconds,
        ),
    );
    core.put_ok(tenant, event_def("item-delivered"));
    core.put_ok(tenant, spec_request(orders_spec()));
}

/// The seed's `orders` workflow.
fn orders_spec() -> WfSpec {
    let wf = WorkflowBuilder::new("orders");
    let user_id = wf.declare_str("user-id");
    let item_id = wf.declare_str("item-id");
    let order_status = wf
        .declare_str("order-status")
        .with_default("PENDING")
        .as_public();
    let price = wf.execute("fetch-price", (&item_id,));
    wf.execute("charge-credit-card", (&user_id, &price));
    wf.execute("ship-item", (&user_id, &item_id));
    order_status.assign("SHIPPING");
    wf.wait_for_event("item-delivered");
    order_status.assign("COMPLETED");
    wf.build()
}

fn status(core: &Core, tenant: &str, id: &str) -> LhStatus {
    core.wf_run(tenant, id).expect("run exists").status()
}

#[test]
fn an_order_runs_from_start_to_completed() {
    let mut core = Core::new();
    put_orders(&mut core, T, 0, 0);
    let result = core.run(
        T,
        "orders",
        "order-1",
        &[("user-id", text("ann")), ("item-id", text("book"))],
    );
    assert_eq!(result.code(), Code::Ok, "{}", result.message);
    assert_eq!(status(&core, T, "order-1"), LhStatus::Running);
    assert_eq!(
        core.variable(T, "order-1", "order-status"),
        Some(text("PENDING"))
    );

    let fetch = core.last_scheduled(T, "fetch-price", "order-1");
    assert_eq!(fetch.variables[0].var_name, "item-id");
    assert_eq!(fetch.variables[0].value, Some(text("book")));
    assert_eq!(fetch.attempt_number, 0);
    assert_eq!(fetch.tenant, T);
    core.claim(T, &fetch);
    core.succeed(T, &fetch, int(42));

    let charge = core.last_scheduled(T, "charge-credit-card", "order-1");
    let args: Vec<_> = charge
        .variables
        .iter()
        .map(|v| (v.var_name.clone(), v.value.clone()))
        .collect();
    assert_eq!(
        args,
        vec![
            ("user-id".to_owned(), Some(text("ann"))),
            ("price".to_owned(), Some(int(42)))
        ]
    );
    core.succeed(T, &charge, VariableValue::default());

    let ship = core.last_scheduled(T, "ship-item", "order-1");
    core.succeed(T, &ship, VariableValue::default());
    assert_eq!(
        core.variable(T, "order-1", "order-status"),
        Some(text("SHIPPING"))
    );
    assert_eq!(status(&core, T, "order-1"), LhStatus::Running);

    let posted = core.post_event(T, "order-1", "item-delivered", text("at the door"));
    assert_eq!(posted.code(), Code::Ok, "{}", posted.message);
    let run = core.wf_run(T, "order-1").expect("run");
    assert_eq!(run.status(), LhStatus::Completed);
    assert!(run.end_time.is_some());
    assert_eq!(
        core.variable(T, "order-1", "order-status"),
        Some(text("COMPLETED"))
    );
    let names: Vec<_> = core
        .node_runs(T, "order-1")
        .iter()
        .map(|n| (n.node_name.clone(), n.status()))
        .collect();
    assert_eq!(names.len(), 6);
    assert!(
        names.iter().all(|(_, s)| *s == LhStatus::Completed),
        "{names:?}"
    );
    let events = core.external_events(T, "order-1");
    assert!(events[0].claimed);
    assert_eq!(events[0].node_run_position, Some(4));
    let tasks = core.task_runs(T, "order-1");
    assert_eq!(tasks.len(), 3);
    assert!(tasks.iter().all(|t| t.status() == TaskStatus::TaskSuccess));
}

#[test]
fn an_event_posted_before_the_run_waits_and_is_claimed_later() {
    let mut core = Core::new();
    put_orders(&mut core, T, 0, 0);
    // Before the run even exists.
    let early = core.post_event(T, "order-2", "item-delivered", text("early"));
    assert_eq!(early.code(), Code::Ok, "{}", early.message);
    assert!(!core.external_events(T, "order-2")[0].claimed);
    core.run(
        T,
        "orders",
        "order-2",
        &[("user-id", text("bo")), ("item-id", text("pen"))],
    );
    for task in ["fetch-price", "charge-credit-card", "ship-item"] {
        let scheduled = core.last_scheduled(T, task, "order-2");
        core.succeed(T, &scheduled, int(1));
    }
    assert_eq!(status(&core, T, "order-2"), LhStatus::Completed);
    assert!(core.external_events(T, "order-2")[0].claimed);
    // Posting the same guid again changes nothing.
    let mut request_twice = core.snapshot(T, "order-2");
    request_twice.remove("external_events");
    assert_eq!(core.external_events(T, "order-2").len(), 1);
}

#[test]
fn a_failing_task_is_retried_with_backoff_then_fails_the_run() {
    let mut core = Core::new();
    put_orders(&mut core, T, 2, 0);
    core.run(
        T,
        "orders",
        "order-3",
        &[("user-id", text("cy")), ("item-id", text("mug"))],
    );
    let first = core.last_scheduled(T, "fetch-price", "order-3");
    core.fail(T, &first, "price service down");
    let task = &core.task_runs(T, "order-3")[0];
    assert_eq!(task.status(), TaskStatus::TaskPending);
    assert_eq!(task.max_attempts, 3);
    assert_eq!(
        core.scheduled(T, "fetch-price").len(),
        1,
        "no retry before the backoff"
    );

    core.advance(999);
    assert_eq!(core.scheduled(T, "fetch-price").len(), 1, "backoff is 1 s");
    core.advance(1);
    let second = core.last_scheduled(T, "fetch-price", "order-3");
    assert_eq!(second.attempt_number, 1);
    core.fail(T, &second, "still down");
    core.advance(1_999);
    assert_eq!(
        core.scheduled(T, "fetch-price").len(),
        2,
        "second backoff is 2 s"
    );
    core.advance(1);
    let third = core.last_scheduled(T, "fetch-price", "order-3");
    assert_eq!(third.attempt_number, 2);
    core.fail(T, &third, "gone for good");

    let run = core.wf_run(T, "order-3").expect("run");
    assert_eq!(run.status(), LhStatus::Error);
    let task = &core.task_runs(T, "order-3")[0];
    assert_eq!(task.status(), TaskStatus::TaskFailed);
    assert_eq!(task.attempts.len(), 3);
    let failed_node = core
        .node_runs(T, "order-3")
        .into_iter()
        .find(|n| n.status() == LhStatus::Error)
        .expect("failed node");
    assert!(
        failed_node
            .error_message
            .as_deref()
            .unwrap_or_default()
            .contains("gone for good")
    );
    assert!(
        run.thread_runs[0]
            .error_message
            .as_deref()
            .unwrap_or_default()
            .contains("3 attempt")
    );
    assert!(core.scheduled(T, "charge-credit-card").is_empty());
}

#[test]
fn a_claimed_task_that_is_never_reported_times_out() {
    let mut core = Core::new();
    put_orders(&mut core, T, 1, 5);
    core.run(
        T,
        "orders",
        "order-4",
        &[("user-id", text("di")), ("item-id", text("hat"))],
    );
    let first = core.last_scheduled(T, "fetch-price", "order-4");
    // Unclaimed tasks do not time out: the worker may simply be down.
    core.advance(60_000);
    assert_eq!(
        core.task_runs(T, "order-4")[0].attempts[0].status(),
        TaskStatus::TaskScheduled
    );
    core.claim(T, &first);
    assert_eq!(
        core.task_runs(T, "order-4")[0].attempts[0].status(),
        TaskStatus::TaskRunning
    );
    core.advance(5_000);
    let task = &core.task_runs(T, "order-4")[0];
    assert_eq!(task.attempts[0].status(), TaskStatus::TaskTimeout);
    core.advance(1_000);
    let second = core.last_scheduled(T, "fetch-price", "order-4");
    assert_eq!(second.attempt_number, 1);
    // The worker of the first attempt reports late: ignored.
    let late = core.report(
        T,
        &first,
        TaskStatus::TaskSuccess,
        Some(weir_proto::report_task_run::Result::Output(int(7))),
    );
    assert_eq!(late.code(), Code::FailedPrecondition);
    core.claim(T, &second);
    core.advance(5_000);
    assert_eq!(status(&core, T, "order-4"), LhStatus::Error);
    assert_eq!(
        core.task_runs(T, "order-4")[0].status(),
        TaskStatus::TaskTimeout
    );
}

#[test]
fn a_second_report_for_a_finished_attempt_is_ignored() {
    let mut core = Core::new();
    put_orders(&mut core, T, 0, 0);
    core.run(
        T,
        "orders",
        "order-5",
        &[("user-id", text("ed")), ("item-id", text("cup"))],
    );
    let fetch = core.last_scheduled(T, "fetch-price", "order-5");
    core.succeed(T, &fetch, int(10));
    let before = core.snapshot(T, "order-5");
    let again = core.report(
        T,
        &fetch,
        TaskStatus::TaskSuccess,
        Some(weir_proto::report_task_run::Result::Output(int(99))),
    );
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(again.message.contains("ignored"), "{}", again.message);
    assert_eq!(
        core.snapshot(T, "order-5"),
        before,
        "a duplicate report changes nothing"
    );
    assert_eq!(
        core.scheduled(T, "charge-credit-card").len(),
        1,
        "the next task is scheduled once"
    );
}

#[test]
fn run_inputs_are_checked_against_the_spec() {
    let mut core = Core::new();
    put_orders(&mut core, T, 0, 0);
    let unknown = core.run(
        T,
        "orders",
        "bad-1",
        &[("user-id", text("a")), ("colour", text("red"))],
    );
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert!(
        unknown.message.contains("\"colour\" is not declared"),
        "{}",
        unknown.message
    );
    let mistyped = core.run(T, "orders", "bad-2", &[("user-id", int(3))]);
    assert_eq!(mistyped.code(), Code::InvalidArgument);
    assert!(
        mistyped.message.contains("expects STR, got INT"),
        "{}",
        mistyped.message
    );
    assert!(core.wf_run(T, "bad-1").is_none() && core.wf_run(T, "bad-2").is_none());

    let again = core.run(T, "orders", "good", &[("user-id", text("a"))]);
    assert_eq!(again.code(), Code::Ok);
    let twice = core.run(T, "orders", "good", &[("user-id", text("a"))]);
    assert_eq!(twice.code(), Code::AlreadyExists);

    // A run must be keyed by its id.
    let request = weir_proto::RunWfRequest {
        wf_spec_name: "orders".into(),
        id: Some("keyed-wrong".into()),
        ..Default::default()
    };
    let wrong_key = core
        .send(T, "something-else", command::Command::RunWf(request))
        .expect("answered");
    assert_eq!(wrong_key.code(), Code::InvalidArgument);
}

#[test]
fn text_inputs_are_read_as_the_declared_type_and_required_ones_enforced() {
    let mut core = Core::new();
    core.put_ok(T, task_def("noop", &[], 0, 0));
    let wf = WorkflowBuilder::new("typed");
    let _count = wf.declare_int("count").required();
    wf.execute("noop", ());
    core.put_ok(T, spec_request(wf.build()));
    let missing = core.run(T, "typed", "t-1", &[]);
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert!(
        missing.message.contains("\"count\" is required"),
        "{}",
        missing.message
    );
    let unreadable = core.run(T, "typed", "t-2", &[("count", text("many"))]);
    assert_eq!(unreadable.code(), Code::InvalidArgument);
    let read = core.run(T, "typed", "t-3", &[("count", text("12"))]);
    assert_eq!(read.code(), Code::Ok, "{}", read.message);
    assert_eq!(core.variable(T, "t-3", "count"), Some(int(12)));
}

#[test]
fn a_run_waits_briefly_for_its_spec_then_is_refused() {
    let mut core = Core::new();
    let request = |id: &str| {
        command::Command::RunWf(weir_proto::RunWfRequest {
            wf_spec_name: "orders".into(),
            id: Some(id.into()),
            variables: [("user-id".to_owned(), text("a"))].into(),
            ..Default::default()
        })
    };
    // The spec is not visible yet: no answer at once.
    assert!(core.send(T, "early-run", request("early-run")).is_none());
    // It arrives while the run is put off: the run starts.
    put_orders(&mut core, T, 0, 0);
    core.advance(200);
    let started = core
        .answer_to_last()
        .expect("answered once the spec is visible");
    assert_eq!(started.code(), Code::Ok, "{}", started.message);
    assert_eq!(status(&core, T, "early-run"), LhStatus::Running);

    // A spec that never comes: refused after about two seconds.
    let never = |id: &str| {
        command::Command::RunWf(weir_proto::RunWfRequest {
            wf_spec_name: "nope".into(),
            id: Some(id.into()),
            ..Default::default()
        })
    };
    assert!(core.send(T, "never", never("never")).is_none());
    core.advance(1_000);
    assert!(core.answer_to_last().is_none(), "still waiting");
    for _ in 0..10 {
        core.advance(200);
    }
    let refused = core.answer_to_last().expect("answered in the end");
    assert_eq!(refused.code(), Code::NotFound);
    assert!(
        refused
            .message
            .contains("WfSpec nope (any version) does not exist in tenant default"),
        "{}",
        refused.message
    );
    assert!(core.wf_run(T, "never").is_none());
}

/// A loop: count up with ADD until `count >= 3`, running a task each time, then branch
/// on a task's output.
fn loop_spec() -> WfSpec {
    let var = |name: &str| VariableAssignment {
        source: Some(Source::VariableName(name.to_owned())),
    };
    let literal = |v: VariableValue| VariableAssignment {
        source: Some(Source::LiteralValue(v)),
    };
    let edge =
        |to: &str, condition: Option<EdgeCondition>, mutations: Vec<VariableMutation>| Edge {
            sink_node_name: to.to_owned(),
            condition,
            variable_mutations: mutations,
        };
    let node = |kind: NodeKind, edges: Vec<Edge>| Node {
        outgoing_edges: edges,
        node: Some(kind),
    };
    let add_one = VariableMutation {
        lhs_name: "count".into(),
        operation: VariableMutationType::Add as i32,
        rhs_value: Some(RhsValue::LiteralValue(int(1))),
    };
    let take_output = VariableMutation {
        lhs_name: "last".into(),
        operation: VariableMutationType::Assign as i32,
        rhs_value: Some(RhsValue::NodeOutput(NodeOutputReference {
            node_name: "work".into(),
            field: None,
        })),
    };
    let nodes = BTreeMap::from([
        (
            "start".to_owned(),
            node(
                NodeKind::Entrypoint(EntrypointNode {}),
                vec![edge("work", None, vec![])],
            ),
        ),
        (
            "work".to_owned(),
            node(
                NodeKind::Task(TaskNode {
                    task_def_name: "step".into(),
                    args: vec![var("count")],
                }),
                vec![edge("check", None, vec![add_one, take_output])],
            ),
        ),
        (
            "check".to_owned(),
            node(
                NodeKind::ThrowEvent(ThrowEventNode {
                    workflow_event_def_name: "tick".into(),
                    content: Some(var("count")),
                }),
                vec![
                    edge(
                        "work",
                        Some(EdgeCondition {
                            lhs: Some(var("count")),
                            comparator: Comparator::LessThan as i32,
                            rhs: Some(literal(int(3))),
                        }),
                        vec![],
                    ),
                    edge(
                        "big",
                        Some(EdgeCondition {
                            lhs: Some(var("last")),
                            comparator: Comparator::GreaterThan as i32,
                            rhs: Some(literal(int(100))),
                        }),
                        vec![],
                    ),
                    edge("small", None, vec![]),
                ],
            ),
        ),
        (
            "big".to_owned(),
            node(
                NodeKind::Exit(ExitNode {
                    exception_name: None,
                }),
                vec![],
            ),
        ),
        (
            "small".to_owned(),
            node(
                NodeKind::Exit(ExitNode {
                    exception_name: Some("too-small".into()),
                }),
                vec![],
            ),
        ),
    ]);
    let declare = |name: &str, default: Option<VariableValue>| ThreadVarDef {
        var_def: Some(VariableDef {
            name: name.into(),
            var_type: VariableType::Int as i32,
            default_value: default,
        }),
        required: false,
        access_level: WfRunVariableAccessLevel::PrivateVar as i32,
        enable_entity_events: None,
    };
    WfSpec {
        id: Some(weir_proto::WfSpecId {
            name: "loop".into(),
            major_version: 0,
            revision: 0,
        }),
        created_at: None,
        thread_specs: BTreeMap::from([(
            "main".to_owned(),
            ThreadSpec {
                nodes,
                variable_defs: vec![declare("count", Some(int(0))), declare("last", None)],
            },
        )]),
        entrypoint_thread_name: "main".into(),
        enable_entity_events: None,
    }
}

fn put_loop(core: &mut Core) {
    core.put_ok(T, task_def("step", &[("n", VariableType::Int)], 0, 0));
    core.put_ok(
        T,
        Meta::PutWorkflowEventDef(PutWorkflowEventDefRequest {
            name: "tick".into(),
            content_type: VariableType::Int as i32,
            enable_entity_events: None,
        }),
    );
    core.put_ok(T, spec_request(loop_spec()));
}

#[test]
fn edges_loop_on_conditions_and_branch_on_task_output() {
    let mut core = Core::new();
    put_loop(&mut core);
    for (id, output, expected) in [
        ("loop-big", 500, LhStatus::Completed),
        ("loop-small", 5, LhStatus::Exception),
    ] {
        let result = core.run(T, "loop", id, &[]);
        assert_eq!(result.code(), Code::Ok, "{}", result.message);
        for round in 0..3 {
            let step = core.last_scheduled(T, "step", id);
            assert_eq!(
                step.variables[0].value,
                Some(int(round)),
                "the task sees the loop counter"
            );
            core.succeed(T, &step, int(output));
        }
        let run = core.wf_run(T, id).expect("run");
        assert_eq!(
            run.status(),
            expected,
            "{:?}",
            run.thread_runs[0].error_message
        );
        assert_eq!(core.variable(T, id, "count"), Some(int(3)));
        assert_eq!(core.variable(T, id, "last"), Some(int(output)));
        let ticks: Vec<_> = core
            .workflow_events(T, id)
            .into_iter()
            .map(|e| e.content)
            .collect();
        assert_eq!(ticks, vec![Some(int(1)), Some(int(2)), Some(int(3))]);
        assert_eq!(core.node_runs(T, id).len(), 1 + 3 * 2 + 1);
    }
    assert_eq!(
        core.wf_run(T, "loop-small").expect("run").thread_runs[0]
            .error_message
            .as_deref(),
        Some("too-small")
    );
}

fn put_approval(core: &mut Core) {
    core.put_ok(
        T,
        Meta::PutUserTaskDef(PutUserTaskDefRequest {
            name: "approve".into(),
            description: None,
            fields: vec![
                UserTaskField {
                    name: "approved".into(),
                    field_type: VariableType::Bool as i32,
                    description: None,
                    required: true,
                },
                UserTaskField {
                    name: "note".into(),
                    field_type: VariableType::Str as i32,
                    description: None,
                    required: false,
                },
            ],
            enable_entity_events: None,
        }),
    );
    let nodes = BTreeMap::from([
        (
            "start".to_owned(),
            Node {
                outgoing_edges: vec![Edge {
                    sink_node_name: "ask".into(),
                    condition: None,
                    variable_mutations: vec![],
                }],
                node: Some(NodeKind::Entrypoint(EntrypointNode {})),
            },
        ),
        (
            "ask".to_owned(),
            Node {
                outgoing_edges: vec![Edge {
                    sink_node_name: "end".into(),
                    condition: None,
                    variable_mutations: vec![VariableMutation {
                        lhs_name: "approved".into(),
                        operation: VariableMutationType::Assign as i32,
                        rhs_value: Some(RhsValue::NodeOutput(NodeOutputReference {
                            node_name: "ask".into(),
                            field: Some("approved".into()),
                        })),
                    }],
                }],
                node: Some(NodeKind::UserTask(UserTaskNode {
                    user_task_def_name: "approve".into(),
                    user_id: Some(VariableAssignment {
                        source: Some(Source::VariableName("manager".into())),
                    }),
                    user_group: None,
                })),
            },
        ),
        (
            "end".to_owned(),
            Node {
                outgoing_edges: vec![],
                node: Some(NodeKind::Exit(ExitNode {
                    exception_name: None,
                })),
            },
        ),
    ]);
    let declare = |name: &str, var_type: VariableType| ThreadVarDef {
        var_def: Some(VariableDef {
            name: name.into(),
            var_type: var_type as i32,
            default_value: None,
        }),
        required: false,
        access_level: WfRunVariableAccessLevel::PrivateVar as i32,
        enable_entity_events: None,
    };
    core.put_ok(
        T,
        Meta::PutWfSpec(PutWfSpecRequest {
            name: "approval".into(),
            thread_specs: BTreeMap::from([(
                "main".to_owned(),
                ThreadSpec {
                    nodes,
                    variable_defs: vec![
                        declare("manager", VariableType::Str),
                        declare("approved", VariableType::Bool),
                    ],
                },
            )]),
            entrypoint_thread_name: "main".into(),
            enable_entity_events: None,
        }),
    );
}

fn user_task_id(wf_run: &str) -> UserTaskRunId {
    UserTaskRunId {
        wf_run_id: Some(WfRunId { id: wf_run.into() }),
        user_task_guid: "0-1".into(),
    }
}

#[test]
fn a_user_task_is_assigned_completed_with_checked_results_or_cancelled() {
    let mut core = Core::new();
    put_approval(&mut core);
    core.run(T, "approval", "ut-1", &[("manager", text("maria"))]);
    let task = &core.user_task_runs(T, "ut-1")[0];
    assert_eq!(task.status(), UserTaskRunStatus::Assigned);
    assert_eq!(task.user_id.as_deref(), Some("maria"));

    let complete = |results: BTreeMap<String, VariableValue>| {
        command::Command::CompleteUserTaskRun(CompleteUserTaskRunRequest {
            user_task_run_id: Some(user_task_id("ut-1")),
            results,
            user_id: "maria".into(),
        })
    };
    let missing = core
        .send(T, "ut-1", complete(BTreeMap::new()))
        .expect("answered");
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert!(
        missing.message.contains("\"approved\" is required"),
        "{}",
        missing.message
    );
    let unknown = core
        .send(
            T,
            "ut-1",
            complete(BTreeMap::from([
                ("approved".into(), text("true")),
                ("colour".into(), text("red")),
            ])),
        )
        .expect("answered");
    assert_eq!(unknown.code(), Code::InvalidArgument);
    let reassign = core
        .send(
            T,
            "ut-1",
            command::Command::AssignUserTaskRun(weir_proto::AssignUserTaskRunRequest {
                user_task_run_id: Some(user_task_id("ut-1")),
                user_id: Some("sam".into()),
                user_group: None,
                override_claim: false,
            }),
        )
        .expect("answered");
    assert_eq!(
        reassign.code(),
        Code::FailedPrecondition,
        "already assigned to a person"
    );
    core.send_ok(
        T,
        "ut-1",
        command::Command::AssignUserTaskRun(weir_proto::AssignUserTaskRunRequest {
            user_task_run_id: Some(user_task_id("ut-1")),
            user_id: None,
            user_group: Some("finance".into()),
            override_claim: true,
        }),
    );

    core.send_ok(
        T,
        "ut-1",
        complete(BTreeMap::from([("approved".into(), text("true"))])),
    );
    let run = core.wf_run(T, "ut-1").expect("run");
    assert_eq!(run.status(), LhStatus::Completed);
    assert_eq!(
        core.variable(T, "ut-1", "approved"),
        Some(VariableValue {
            value: Some(weir_proto::variable_value::Value::Bool(true))
        })
    );
    let task = &core.user_task_runs(T, "ut-1")[0];
    assert_eq!(task.status(), UserTaskRunStatus::Done);
    assert_eq!(task.events.len(), 3, "assigned, reassigned, completed");
    let twice = core
        .send(
            T,
            "ut-1",
            complete(BTreeMap::from([("approved".into(), text("false"))])),
        )
        .expect("answered");
    assert_eq!(twice.code(), Code::FailedPrecondition);

    core.run(T, "approval", "ut-2", &[("manager", text("maria"))]);
    core.send_ok(
        T,
        "ut-2",
        command::Command::CancelUserTaskRun(weir_proto::CancelUserTaskRunRequest {
            user_task_run_id: Some(user_task_id("ut-2")),
            reason: Some("withdrawn".into()),
        }),
    );
    assert_eq!(status(&core, T, "ut-2"), LhStatus::Error);
    assert_eq!(
        core.user_task_runs(T, "ut-2")[0].status(),
        UserTaskRunStatus::Cancelled
    );
}

#[test]
fn a_halted_run_records_reports_but_moves_on_only_when_resumed() {
    let mut core = Core::new();
    put_orders(&mut core, T, 0, 0);
    core.run(
        T,
        "orders",
        "halt-1",
        &[("user-id", text("fay")), ("item-id", text("lamp"))],
    );
    let id = || {
        Some(WfRunId {
            id: "halt-1".into(),
        })
    };
    core.send_ok(
        T,
        "halt-1",
        command::Command::StopWfRun(StopWfRunRequest {
            wf_run_id: id(),
            thread_run_number: None,
        }),
    );
    assert_eq!(status(&core, T, "halt-1"), LhStatus::Halted);
    let fetch = core.last_scheduled(T, "fetch-price", "halt-1");
    core.succeed(T, &fetch, int(3));
    assert!(
        core.scheduled(T, "charge-credit-card").is_empty(),
        "a halted run does not move on"
    );
    let again = core
        .send(
            T,
            "halt-1",
            command::Command::StopWfRun(StopWfRunRequest {
                wf_run_id: id(),
                thread_run_number: None,
            }),
        )
        .expect("answered");
    assert_eq!(again.code(), Code::FailedPrecondition);
    core.send_ok(
        T,
        "halt-1",
        command::Command::ResumeWfRun(ResumeWfRunRequest {
            wf_run_id: id(),
            thread_run_number: None,
        }),
    );
    assert_eq!(status(&core, T, "halt-1"), LhStatus::Running);
    assert_eq!(core.scheduled(T, "charge-credit-card").len(), 1);

    core.send_ok(
        T,
        "halt-1",
        command::Command::DeleteWfRun(DeleteWfRunRequest { wf_run_id: id() }),
    );
    assert!(
        core.snapshot(T, "halt-1").values().all(Vec::is_empty),
        "everything of the run is gone"
    );
    let gone = core
        .send(
            T,
            "halt-1",
            command::Command::DeleteWfRun(DeleteWfRunRequest { wf_run_id: id() }),
        )
        .expect("answered");
    assert_eq!(gone.code(), Code::NotFound);
    let charge = core.last_scheduled(T, "charge-credit-card", "halt-1");
    let late = core.report(T, &charge, TaskStatus::TaskSuccess, None);
    assert_eq!(late.code(), Code::NotFound);
}

#[test]
fn an_external_event_node_times_out() {
    let mut core = Core::new();
    core.put_ok(T, event_def("go"));
    let nodes = BTreeMap::from([
        (
            "start".to_owned(),
            Node {
                outgoing_edges: vec![Edge {
                    sink_node_name: "wait".into(),
                    condition: None,
                    variable_mutations: vec![],
                }],
                node: Some(NodeKind::Entrypoint(EntrypointNode {})),
            },
        ),
        (
            "wait".to_owned(),
            Node {
                outgoing_edges: vec![Edge {
                    sink_node_name: "end".into(),
                    condition: None,
                    variable_mutations: vec![],
                }],
                node: Some(NodeKind::ExternalEvent(ExternalEventNode {
                    external_event_def_name: "go".into(),
                    timeout_seconds: Some(30),
                })),
            },
        ),
        (
            "end".to_owned(),
            Node {
                outgoing_edges: vec![],
                node: Some(NodeKind::Exit(ExitNode {
                    exception_name: None,
                })),
            },
        ),
    ]);
    core.put_ok(
        T,
        Meta::PutWfSpec(PutWfSpecRequest {
            name: "waiter".into(),
            thread_specs: BTreeMap::from([(
                "main".to_owned(),
                ThreadSpec {
                    nodes,
                    variable_defs: vec![],
                },
            )]),
            entrypoint_thread_name: "main".into(),
            enable_entity_events: None,
        }),
    );
    core.run(T, "waiter", "w-1", &[]);
    core.run(T, "waiter", "w-2", &[]);
    core.advance(10_000);
    core.post_event(T, "w-2", "go", text("in time"));
    assert_eq!(status(&core, T, "w-2"), LhStatus::Completed);
    core.advance(20_000);
    assert_eq!(status(&core, T, "w-1"), LhStatus::Error);
    assert_eq!(
        status(&core, T, "w-2"),
        LhStatus::Completed,
        "the timer of a finished node is a no-op"
    );
}

#[test]
fn tenants_with_same_named_specs_stay_isolated() {
    let mut core = Core::new();
    put_orders(&mut core, "acme", 0, 0);
    put_orders(&mut core, "globex", 0, 0);
    core.run(
        "acme",
        "orders",
        "order-9",
        &[("user-id", text("a")), ("item-id", text("x"))],
    );
    core.run(
        "globex",
        "orders",
        "order-9",
        &[("user-id", text("g")), ("item-id", text("y"))],
    );
    let acme = core.last_scheduled("acme", "fetch-price", "order-9");
    assert_eq!(acme.variables[0].value, Some(text("x")));
    let globex = core.last_scheduled("globex", "fetch-price", "order-9");
    assert_eq!(globex.variables[0].value, Some(text("y")));
    core.succeed("acme", &acme, int(5));
    assert_eq!(core.scheduled("acme", "charge-credit-card").len(), 1);
    assert!(core.scheduled("globex", "charge-credit-card").is_empty());
    // Globex cannot report acme's task: same ids, but its own (already open) task.
    let cross = core.report("globex", &acme, TaskStatus::TaskSuccess, None);
    assert_eq!(cross.code(), Code::Ok, "it reaches globex's own order-9");
    assert_eq!(core.scheduled("acme", "charge-credit-card").len(), 1);
    assert_eq!(core.variable("acme", "order-9", "user-id"), Some(text("a")));
    assert_eq!(
        core.variable("globex", "order-9", "user-id"),
        Some(text("g"))
    );
    // A tenant nobody created: refused once the wait for its metadata is over.
    let request = weir_proto::RunWfRequest {
        wf_spec_name: "orders".into(),
        id: Some("order-9".into()),
        ..Default::default()
    };
    assert!(
        core.send("initech", "order-9", command::Command::RunWf(request))
            .is_none()
    );
    for _ in 0..12 {
        core.advance(200);
    }
    let refused = core.answer_to_last().expect("answered");
    assert_eq!(refused.code(), Code::NotFound);
    assert_eq!(refused.message, "tenant initech does not exist");
}

#[test]
fn a_malformed_command_is_dead_lettered_and_processing_goes_on() {
    let mut core = Core::new();
    put_orders(&mut core, T, 0, 0);
    let outcome = core.send_raw(T, "junk", b"\xff\xff not a command");
    assert!(
        matches!(outcome, weir_topology::task::RecordOutcome::DeadLettered(_)),
        "{outcome:?}"
    );
    let result = core.run(T, "orders", "after-junk", &[("user-id", text("a"))]);
    assert_eq!(result.code(), Code::Ok);
    let _ = wf_run_of(None);
}
