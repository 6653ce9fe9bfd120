//! The interpreter: moves a WfRun's threads through their ThreadSpec. A thread whose
//! current NodeRun has completed takes the first outgoing edge whose condition holds,
//! applies the edge's variable mutations and starts the next node; a node that must
//! wait (a task, an event, a person) stops the thread until a command completes it. A
//! failed node fails its thread, and the WfRun's status follows thread 0, as in
//! LittleHorse.

use weir_proto::node::Node as NodeKind;
use weir_proto::node_run::NodeType;
use weir_proto::variable_assignment::Source;
use weir_proto::variable_mutation::RhsValue;
use weir_proto::{
    EntrypointRun, ExitRun, ExternalEvent, ExternalEventId, ExternalEventNodeRun, LhStatus, Node,
    NodeOutputReference, NodeRun, NodeRunId, ThreadSpec, ThrowEventNodeRun, UserTaskNodeRun,
    UserTaskRun, UserTaskRunId, UserTaskRunStatus, VariableAssignment, VariableMutation,
    VariableValue, WfRun, WfRunId, WfSpec, WorkflowEvent, WorkflowEventId, user_task_event,
};
use weir_topology::ProcessingError;

use super::Failure;
use super::run_context::RunContext;
use super::tasks;
use crate::core::keys;
use crate::core::results::CommandError;
use crate::metadata::{typing, values};

/// A WfRun and the exact WfSpec version it runs, while a command works on it.
#[derive(Debug, Clone)]
pub(crate) struct ActiveRun {
    pub(crate) wf_run: WfRun,
    pub(crate) spec: WfSpec,
}

impl ActiveRun {
    pub(crate) fn id(&self) -> &str {
        self.wf_run.id.as_ref().map_or("", |id| id.id.as_str())
    }

    pub(crate) fn wf_run_id(&self) -> WfRunId {
        self.wf_run.id.clone().unwrap_or_default()
    }

    fn thread_spec(&self, thread_index: usize) -> Option<&ThreadSpec> {
        let name = &self.wf_run.thread_runs.get(thread_index)?.thread_spec_name;
        self.spec.thread_specs.get(name)
    }

    pub(crate) fn thread_number(&self, thread_index: usize) -> i32 {
        self.wf_run.thread_runs[thread_index].number
    }

    pub(crate) fn thread_index(&self, number: i32) -> Option<usize> {
        self.wf_run
            .thread_runs
            .iter()
            .position(|t| t.number == number)
    }

    pub(crate) fn node_run_key(&self, tenant: &str, thread_number: i32, position: i32) -> Vec<u8> {
        keys::node_run(tenant, self.id(), thread_number, position)
    }
}

/// Runs every thread as far as it can go, then stores the WfRun with its status.
pub(crate) fn advance(
    rc: &mut RunContext<'_, '_, '_>,
    run: &mut ActiveRun,
) -> Result<(), ProcessingError> {
    loop {
        let mut progressed = false;
        for index in 0..run.wf_run.thread_runs.len() {
            let thread = &run.wf_run.thread_runs[index];
            if thread.status() != LhStatus::Running {
                continue;
            }
            let key = run.node_run_key(rc.tenant, thread.number, thread.current_node_position);
            let Some(node_run) = rc.node_run(&key)? else {
                fail_thread(
                    rc,
                    run,
                    index,
                    "the thread's current node run is missing".to_owned(),
                );
                progressed = true;
                continue;
            };
            match node_run.status() {
                LhStatus::Completed => {
                    take_edge(rc, run, index, &node_run)?;
                    progressed = true;
                }
                LhStatus::Error | LhStatus::Exception => {
                    let reason = node_run
                        .error_message
                        .clone()
                        .unwrap_or_else(|| format!("node {} failed", node_run.node_name));
                    fail_thread(rc, run, index, reason);
                    progressed = true;
                }
                _ => {}
            }
        }
        if !progressed {
            break;
        }
    }
    store(rc, run);
    Ok(())
}

/// Sets the WfRun's status from thread 0 and buffers it.
pub(crate) fn store(rc: &mut RunContext<'_, '_, '_>, run: &mut ActiveRun) {
    if let Some(main) = run.wf_run.thread_runs.first() {
        let status = main.status();
        run.wf_run.set_status(status);
        let finished = matches!(
            status,
            LhStatus::Completed | LhStatus::Error | LhStatus::Exception
        );
        if finished && run.wf_run.end_time.is_none() {
            run.wf_run.end_time = Some(rc.time);
        }
    }
    let key = keys::wf_run(rc.tenant, run.id());
    rc.put_wf_run(key, run.wf_run.clone());
}

/// Starts the thread at its entrypoint node (position 0).
pub(crate) fn start_thread(
    rc: &mut RunContext<'_, '_, '_>,
    run: &mut ActiveRun,
    index: usize,
) -> Result<(), ProcessingError> {
    let entrypoint = run.thread_spec(index).and_then(|thread| {
        thread
            .nodes
            .iter()
            .find(|(_, node)| matches!(node.node, Some(NodeKind::Entrypoint(_))))
            .map(|(name, _)| name.clone())
    });
    match entrypoint {
        Some(name) => start_node(rc, run, index, 0, &name),
        None => {
            fail_thread(
                rc,
                run,
                index,
                "the thread has no entrypoint node".to_owned(),
            );
            Ok(())
        }
    }
}

/// Follows the first edge out of `from` whose condition holds.
fn take_edge(
    rc: &mut RunContext<'_, '_, '_>,
    run: &mut ActiveRun,
    index: usize,
    from: &NodeRun,
) -> Result<(), ProcessingError> {
    let Some(node) = run
        .thread_spec(index)
        .and_then(|t| t.nodes.get(&from.node_name))
        .cloned()
    else {
        fail_thread(
            rc,
            run,
            index,
            format!("node {} is not in the spec", from.node_name),
        );
        return Ok(());
    };
    for edge in &node.outgoing_edges {
        let holds = match &edge.condition {
            None => Ok(true),
            Some(condition) => evaluate(rc, run, index, condition.lhs.as_ref()).and_then(|lhs| {
                let rhs = evaluate(rc, run, index, condition.rhs.as_ref())?;
                values::compare(&lhs, condition.comparator(), &rhs).map_err(|e| e.to_string())
            }),
        };
        match holds {
            Ok(false) => continue,
            Ok(true) => {}
            Err(reason) => {
                let message = format!(
                    "condition on the edge {} -> {}: {reason}",
                    from.node_name, edge.sink_node_name
                );
                fail_thread(rc, run, index, message);
                return Ok(());
            }
        }
        for mutation in &edge.variable_mutations {
            if let Err(reason) = mutate_variable(rc, run, index, mutation) {
                let message = format!(
                    "mutating {} on the edge {} -> {}: {reason}",
                    mutation.lhs_name, from.node_name, edge.sink_node_name
                );
                fail_thread(rc, run, index, message);
                return Ok(());
            }
        }
        let position = from.id.as_ref().map_or(0, |id| id.position) + 1;
        return start_node(rc, run, index, position, &edge.sink_node_name);
    }
    fail_thread(
        rc,
        run,
        index,
        format!(
            "no outgoing edge of node {} has a condition that holds",
            from.node_name
        ),
    );
    Ok(())
}

/// Creates the NodeRun for `node_name` at `position` and does what the node does.
fn start_node(
    rc: &mut RunContext<'_, '_, '_>,
    run: &mut ActiveRun,
    index: usize,
    position: i32,
    node_name: &str,
) -> Result<(), ProcessingError> {
    let thread_number = run.thread_number(index);
    run.wf_run.thread_runs[index].current_node_position = position;
    let mut node_run = NodeRun {
        id: Some(NodeRunId {
            wf_run_id: Some(run.wf_run_id()),
            thread_run_number: thread_number,
            position,
        }),
        status: LhStatus::Running as i32,
        node_name: node_name.to_owned(),
        arrival_time: Some(rc.time),
        ..NodeRun::default()
    };
    let Some(node) = run
        .thread_spec(index)
        .and_then(|t| t.nodes.get(node_name))
        .cloned()
    else {
        fail_node(
            rc,
            run,
            index,
            &mut node_run,
            format!("node {node_name} is not in the spec"),
        );
        return Ok(());
    };
    activate(rc, run, index, &mut node_run, &node)?;
    let key = run.node_run_key(rc.tenant, thread_number, position);
    rc.put_node_run(key, node_run);
    Ok(())
}

/// Does what a node does on arrival; waiting nodes stay RUNNING.
fn activate(
    rc: &mut RunContext<'_, '_, '_>,
    run: &mut ActiveRun,
    index: usize,
    node_run: &mut NodeRun,
    node: &Node,
) -> Result<(), ProcessingError> {
    match &node.node {
        Some(NodeKind::Entrypoint(_)) => {
            node_run.node_type = Some(NodeType::Entrypoint(EntrypointRun {}));
            complete_node(rc, node_run);
        }
        Some(NodeKind::Exit(exit)) => {
            node_run.node_type = Some(NodeType::Exit(ExitRun {}));
            complete_node(rc, node_run);
            let thread = &mut run.wf_run.thread_runs[index];
            thread.end_time = Some(rc.time);
            match &exit.exception_name {
                Some(exception) => {
                    thread.set_status(LhStatus::Exception);
                    thread.error_message = Some(exception.clone());
                }
                None => thread.set_status(LhStatus::Completed),
            }
        }
        Some(NodeKind::Task(task)) => {
            let mut args = Vec::with_capacity(task.args.len());
            for (position, arg) in task.args.iter().enumerate() {
                match evaluate(rc, run, index, Some(arg)) {
                    Ok(value) => args.push(value),
                    Err(reason) => {
                        let message = format!(
                            "argument {position} of task {}: {reason}",
                            task.task_def_name
                        );
                        return tasks::refuse_input(
                            rc,
                            run,
                            index,
                            node_run,
                            &task.task_def_name,
                            message,
                        );
                    }
                }
            }
            tasks::start_task_run(rc, run, index, node_run, &task.task_def_name, args)?;
        }
        Some(NodeKind::ExternalEvent(wait)) => {
            node_run.node_type = Some(NodeType::ExternalEvent(ExternalEventNodeRun {
                external_event_def_name: wait.external_event_def_name.clone(),
                ..ExternalEventNodeRun::default()
            }));
            let prefix = keys::events_of_def(rc.tenant, run.id(), &wait.external_event_def_name);
            let waiting = rc.scan_external_events(&prefix)?;
            let earliest = waiting
                .into_iter()
                .filter(|(_, event)| !event.claimed)
                .min_by_key(|(key, event)| {
                    (
                        event
                            .created_at
                            .as_ref()
                            .map(weir_proto::timestamp::to_millis),
                        key.clone(),
                    )
                });
            match earliest {
                Some((key, event)) => claim_event(rc, run, index, node_run, key, event),
                None => {
                    if let Some(seconds) = wait.timeout_seconds.filter(|s| *s > 0) {
                        let timeout = weir_proto::Command {
                            command_id: format!("{}/timeout", node_run_label(node_run)),
                            time: None,
                            command: Some(weir_proto::command::Command::ExternalEventTimeout(
                                weir_proto::ExternalEventTimeout {
                                    node_run_id: node_run.id.clone(),
                                },
                            )),
                        };
                        rc.schedule(rc.time_ms + i64::from(seconds) * 1000, timeout);
                    }
                }
            }
        }
        Some(NodeKind::ThrowEvent(throw)) => {
            let content = match evaluate(rc, run, index, throw.content.as_ref()) {
                Ok(content) => content,
                Err(reason) => {
                    let message = format!(
                        "content of workflow event {}: {reason}",
                        throw.workflow_event_def_name
                    );
                    fail_node(rc, run, index, node_run, message);
                    return Ok(());
                }
            };
            let def = &throw.workflow_event_def_name;
            let prefix = keys::events_of_def(rc.tenant, run.id(), def);
            let number = i32::try_from(rc.scan_workflow_events(&prefix)?.len()).unwrap_or(i32::MAX);
            let id = WorkflowEventId {
                wf_run_id: Some(run.wf_run_id()),
                workflow_event_def_name: def.clone(),
                number,
            };
            let event = WorkflowEvent {
                id: Some(id.clone()),
                content: Some(content),
                created_at: Some(rc.time),
                node_run_id: node_run.id.clone(),
            };
            rc.put_workflow_event(
                keys::workflow_event(rc.tenant, run.id(), def, number),
                event,
            );
            node_run.node_type = Some(NodeType::ThrowEvent(ThrowEventNodeRun {
                workflow_event_id: Some(id),
            }));
            complete_node(rc, node_run);
        }
        Some(NodeKind::UserTask(user_task)) => {
            let mut assignee =
                |assignment: &Option<VariableAssignment>| -> Result<Option<String>, String> {
                    let Some(assignment) = assignment.as_ref().filter(|a| a.source.is_some())
                    else {
                        return Ok(None);
                    };
                    match evaluate(rc, run, index, Some(assignment))?.value {
                        None => Ok(None),
                        Some(weir_proto::variable_value::Value::Str(s)) => Ok(Some(s)),
                        Some(_) => Err("a user or group to assign must be text".to_owned()),
                    }
                };
            let (user_id, user_group) = match (
                assignee(&user_task.user_id),
                assignee(&user_task.user_group),
            ) {
                (Ok(user), Ok(group)) => (user, group),
                (Err(reason), _) | (_, Err(reason)) => {
                    let message = format!(
                        "assigning user task {}: {reason}",
                        user_task.user_task_def_name
                    );
                    fail_node(rc, run, index, node_run, message);
                    return Ok(());
                }
            };
            let guid = node_run_label(node_run);
            let id = UserTaskRunId {
                wf_run_id: Some(run.wf_run_id()),
                user_task_guid: guid.clone(),
            };
            let assigned = user_id.is_some() || user_group.is_some();
            let mut user_task_run = UserTaskRun {
                id: Some(id.clone()),
                user_task_def_name: user_task.user_task_def_name.clone(),
                status: if assigned {
                    UserTaskRunStatus::Assigned
                } else {
                    UserTaskRunStatus::Unassigned
                } as i32,
                user_id: user_id.clone(),
                user_group: user_group.clone(),
                scheduled_time: Some(rc.time),
                node_run_id: node_run.id.clone(),
                ..UserTaskRun::default()
            };
            if assigned {
                user_task_run.events.push(weir_proto::UserTaskEvent {
                    time: Some(rc.time),
                    event: Some(user_task_event::Event::Assigned(
                        user_task_event::Assigned {
                            old_user_id: None,
                            old_user_group: None,
                            new_user_id: user_id,
                            new_user_group: user_group,
                        },
                    )),
                });
            }
            rc.put_user_task_run(keys::by_guid(rc.tenant, run.id(), &guid), user_task_run);
            node_run.node_type = Some(NodeType::UserTask(UserTaskNodeRun {
                user_task_run_id: Some(id),
            }));
        }
        None => fail_node(
            rc,
            run,
            index,
            node_run,
            format!("node {} has no kind", node_run.node_name),
        ),
    }
    Ok(())
}

/// `{thread}-{position}`: the guid of whatever a node run creates (a TaskRun, a
/// UserTaskRun), unique within the WfRun and derived from the run, never random.
pub(crate) fn node_run_label(node_run: &NodeRun) -> String {
    let id = node_run.id.clone().unwrap_or_default();
    format!("{}-{}", id.thread_run_number, id.position)
}

/// How a command ends a node run that was waiting (for a task, an event, a person).
#[derive(Debug)]
pub(crate) enum Ending {
    Completed,
    Failed(String),
}

/// Ends the waiting node run `node_id` as `decide` says, given the node run, and moves
/// its WfRun on. Nothing happens when the run is gone, the node no longer waits, or
/// `decide` says `None`.
pub(crate) fn end_waiting_node(
    rc: &mut RunContext<'_, '_, '_>,
    node_id: &NodeRunId,
    decide: impl FnOnce(&NodeRun) -> Option<Ending>,
) -> Result<(), Failure> {
    let wf_run_id = node_id.wf_run_id.clone().unwrap_or_default().id;
    let Some(mut run) = super::load_run(rc, &wf_run_id)? else {
        return Ok(());
    };
    let node_key = run.node_run_key(rc.tenant, node_id.thread_run_number, node_id.position);
    let (Some(mut node_run), Some(index)) = (
        rc.node_run(&node_key)?,
        run.thread_index(node_id.thread_run_number),
    ) else {
        return Err(CommandError::internal(format!(
            "WfRun {wf_run_id} has no node run {}-{}",
            node_id.thread_run_number, node_id.position
        ))
        .into());
    };
    if node_run.status() != LhStatus::Running {
        return Ok(());
    }
    match decide(&node_run) {
        None => return Ok(()),
        Some(Ending::Completed) => complete_node(rc, &mut node_run),
        Some(Ending::Failed(message)) => fail_node(rc, &mut run, index, &mut node_run, message),
    }
    rc.put_node_run(node_key, node_run);
    advance(rc, &mut run)?;
    Ok(())
}

/// Marks a node run completed at the command's time.
pub(crate) fn complete_node(rc: &RunContext<'_, '_, '_>, node_run: &mut NodeRun) {
    node_run.set_status(LhStatus::Completed);
    node_run.end_time = Some(rc.time);
}

/// Fails a node run and its thread.
pub(crate) fn fail_node(
    rc: &mut RunContext<'_, '_, '_>,
    run: &mut ActiveRun,
    index: usize,
    node_run: &mut NodeRun,
    message: String,
) {
    node_run.set_status(LhStatus::Error);
    node_run.end_time = Some(rc.time);
    node_run.error_message = Some(message.clone());
    fail_thread(
        rc,
        run,
        index,
        format!("node {}: {message}", node_run.node_name),
    );
}

/// Ends a thread in ERROR with `message`.
fn fail_thread(
    rc: &mut RunContext<'_, '_, '_>,
    run: &mut ActiveRun,
    index: usize,
    message: String,
) {
    let thread = &mut run.wf_run.thread_runs[index];
    thread.set_status(LhStatus::Error);
    thread.end_time = Some(rc.time);
    thread.error_message = Some(message);
}

/// Gives `event` to the waiting `node_run`, which completes with the event's content.
pub(crate) fn claim_event(
    rc: &mut RunContext<'_, '_, '_>,
    run: &ActiveRun,
    index: usize,
    node_run: &mut NodeRun,
    event_key: Vec<u8>,
    mut event: ExternalEvent,
) {
    let position = node_run.id.as_ref().map_or(0, |id| id.position);
    event.claimed = true;
    event.thread_run_number = Some(run.thread_number(index));
    event.node_run_position = Some(position);
    if let Some(NodeType::ExternalEvent(waiting)) = &mut node_run.node_type {
        waiting.external_event_id = event.id.clone().map(|id| ExternalEventId { ..id });
        waiting.event_time = event.created_at;
    }
    complete_node(rc, node_run);
    rc.put_external_event(event_key, event);
}

/// The value an assignment stands for in thread `index`.
pub(crate) fn evaluate(
    rc: &mut RunContext<'_, '_, '_>,
    run: &ActiveRun,
    index: usize,
    assignment: Option<&VariableAssignment>,
) -> Result<VariableValue, String> {
    match assignment.and_then(|a| a.source.as_ref()) {
        None => Ok(VariableValue::default()),
        Some(Source::LiteralValue(value)) => Ok(value.clone()),
        Some(Source::VariableName(name)) => variable_value(rc, run, index, name),
        Some(Source::NodeOutput(reference)) => node_output(rc, run, index, reference),
    }
}

fn variable_value(
    rc: &mut RunContext<'_, '_, '_>,
    run: &ActiveRun,
    index: usize,
    name: &str,
) -> Result<VariableValue, String> {
    let key = keys::variable(rc.tenant, run.id(), run.thread_number(index), name);
    match rc.variable(&key).map_err(|e| e.to_string())? {
        Some(variable) => Ok(variable.value.unwrap_or_default()),
        None => Err(format!("variable {name:?} does not exist in this thread")),
    }
}

/// The output of the latest completed run of a node in the thread: a task's result, an
/// event's content, or a user task's results as a JSON object.
fn node_output(
    rc: &mut RunContext<'_, '_, '_>,
    run: &ActiveRun,
    index: usize,
    reference: &NodeOutputReference,
) -> Result<VariableValue, String> {
    let prefix = keys::thread_prefix(rc.tenant, run.id(), run.thread_number(index));
    let node_runs = rc.scan_node_runs(&prefix).map_err(|e| e.to_string())?;
    let Some((_, source)) = node_runs
        .into_iter()
        .rev()
        .find(|(_, n)| n.node_name == reference.node_name && n.status() == LhStatus::Completed)
    else {
        return Err(format!(
            "node {} has not produced an output yet",
            reference.node_name
        ));
    };
    let output = match source.node_type {
        Some(NodeType::Task(task)) => {
            let guid = task.task_run_id.map(|id| id.task_guid).unwrap_or_default();
            let task_run = rc
                .task_run(&keys::by_guid(rc.tenant, run.id(), &guid))
                .map_err(|e| e.to_string())?;
            task_run
                .and_then(|t| t.attempts.last().and_then(|a| a.output.clone()))
                .unwrap_or_default()
        }
        Some(NodeType::ExternalEvent(waited)) => {
            let id = waited.external_event_id.unwrap_or_default();
            let key =
                keys::external_event(rc.tenant, run.id(), &id.external_event_def_name, &id.guid);
            rc.external_event(&key)
                .map_err(|e| e.to_string())?
                .and_then(|e| e.content)
                .unwrap_or_default()
        }
        Some(NodeType::UserTask(user_task)) => {
            let guid = user_task
                .user_task_run_id
                .map(|id| id.user_task_guid)
                .unwrap_or_default();
            let user_task_run = rc
                .user_task_run(&keys::by_guid(rc.tenant, run.id(), &guid))
                .map_err(|e| e.to_string())?;
            typing::object_of(&user_task_run.map(|u| u.results).unwrap_or_default())
        }
        _ => VariableValue::default(),
    };
    match &reference.field {
        Some(field) => typing::field_of(&output, field),
        None => Ok(output),
    }
}

/// Applies one edge mutation to a variable of thread `index`.
fn mutate_variable(
    rc: &mut RunContext<'_, '_, '_>,
    run: &ActiveRun,
    index: usize,
    mutation: &VariableMutation,
) -> Result<(), String> {
    let rhs = match &mutation.rhs_value {
        None => VariableValue::default(),
        Some(RhsValue::LiteralValue(value)) => value.clone(),
        Some(RhsValue::RhsVariableName(name)) => variable_value(rc, run, index, name)?,
        Some(RhsValue::NodeOutput(reference)) => node_output(rc, run, index, reference)?,
    };
    let key = keys::variable(
        rc.tenant,
        run.id(),
        run.thread_number(index),
        &mutation.lhs_name,
    );
    let Some(mut variable) = rc.variable(&key).map_err(|e| e.to_string())? else {
        return Err(format!(
            "variable {:?} does not exist in this thread",
            mutation.lhs_name
        ));
    };
    let current = variable.value.clone().unwrap_or_default();
    let changed =
        values::mutate(&current, mutation.operation(), &rhs).map_err(|e| e.to_string())?;
    let declared = run
        .thread_spec(index)
        .and_then(|t| {
            t.variable_defs.iter().find(|d| {
                d.var_def
                    .as_ref()
                    .is_some_and(|v| v.name == mutation.lhs_name)
            })
        })
        .and_then(|d| d.var_def.as_ref())
        .map(|v| v.var_type());
    let changed = match declared {
        Some(declared) => typing::coerce(changed, declared)?,
        None => changed,
    };
    variable.value = Some(changed);
    rc.put_variable(key, variable);
    Ok(())
}
