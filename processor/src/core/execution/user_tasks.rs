//! User tasks: a person completes the form (results checked against the UserTaskDef's
//! fields), it is assigned or reassigned, or it is cancelled, which fails its node.

use std::collections::BTreeMap;

use weir_proto::{
    AssignUserTaskRunRequest, CancelUserTaskRunRequest, CompleteUserTaskRunRequest, UserTaskEvent,
    UserTaskRun, UserTaskRunId, UserTaskRunStatus, VariableValue, user_task_event,
};

use super::interpreter::{self, Ending};
use super::run_context::RunContext;
use super::{Failure, Handled, existing_run};
use crate::core::keys;
use crate::core::results::CommandError;
use crate::metadata::typing;

/// The key of the user task a request names, and the task; refused when its run is
/// gone or the task is over.
fn open_user_task(
    rc: &mut RunContext<'_, '_, '_>,
    id: Option<&UserTaskRunId>,
) -> Result<(Vec<u8>, UserTaskRun), Failure> {
    let id = id.ok_or_else(|| CommandError::invalid("user_task_run_id is missing"))?;
    let wf_run_id = id
        .wf_run_id
        .as_ref()
        .map_or("", |w| w.id.as_str())
        .to_owned();
    existing_run(rc, &wf_run_id)?;
    keys::check_part("user task guid", &id.user_task_guid)?;
    let key = keys::by_guid(rc.tenant, &wf_run_id, &id.user_task_guid);
    let user_task = rc.user_task_run(&key)?.ok_or_else(|| {
        CommandError::not_found(format!(
            "UserTaskRun {wf_run_id}/{} does not exist",
            id.user_task_guid
        ))
    })?;
    let status = user_task.status();
    if matches!(
        status,
        UserTaskRunStatus::Done | UserTaskRunStatus::Cancelled
    ) {
        return Err(CommandError::precondition(format!(
            "UserTaskRun {wf_run_id}/{} is already {}",
            id.user_task_guid,
            status.as_str_name()
        ))
        .into());
    }
    Ok((key, user_task))
}

pub(crate) fn complete(
    rc: &mut RunContext<'_, '_, '_>,
    request: &CompleteUserTaskRunRequest,
) -> Handled {
    let (key, mut user_task) = open_user_task(rc, request.user_task_run_id.as_ref())?;
    let def = rc
        .metadata()
        .user_task_def(&user_task.user_task_def_name)?
        .ok_or_else(|| {
            CommandError::internal(format!(
                "UserTaskDef {} is missing",
                user_task.user_task_def_name
            ))
        })?;
    let mut problems = Vec::new();
    for name in request.results.keys() {
        if !def.fields.iter().any(|f| &f.name == name) {
            problems.push(format!("{name:?} is not a field of {}", def.name));
        }
    }
    let mut results = BTreeMap::new();
    for field in &def.fields {
        match request.results.get(&field.name) {
            None | Some(VariableValue { value: None }) if field.required => {
                problems.push(format!("field {:?} is required", field.name));
            }
            None => {}
            Some(value) => match typing::coerce(value.clone(), field.field_type()) {
                Ok(value) => {
                    results.insert(field.name.clone(), value);
                }
                Err(reason) => problems.push(format!("field {:?} {reason}", field.name)),
            },
        }
    }
    if !problems.is_empty() {
        return Err(CommandError::invalid(problems.join("; ")).into());
    }
    user_task.set_status(UserTaskRunStatus::Done);
    user_task.results = results;
    user_task.events.push(UserTaskEvent {
        time: Some(rc.time),
        event: Some(user_task_event::Event::Completed(
            user_task_event::Completed {
                user_id: request.user_id.clone(),
            },
        )),
    });
    finish_node(rc, key, user_task, None)
}

pub(crate) fn assign(
    rc: &mut RunContext<'_, '_, '_>,
    request: &AssignUserTaskRunRequest,
) -> Handled {
    let (key, mut user_task) = open_user_task(rc, request.user_task_run_id.as_ref())?;
    if request.user_id.is_none() && request.user_group.is_none() {
        return Err(CommandError::invalid("assign to a user, a group, or both").into());
    }
    if let Some(current) = user_task
        .user_id
        .as_ref()
        .filter(|_| !request.override_claim)
    {
        return Err(CommandError::precondition(format!(
            "the user task is assigned to {current}; set override_claim to reassign it"
        ))
        .into());
    }
    let assigned = user_task_event::Assigned {
        old_user_id: user_task.user_id.take(),
        old_user_group: user_task.user_group.take(),
        new_user_id: request.user_id.clone(),
        new_user_group: request.user_group.clone(),
    };
    user_task.user_id.clone_from(&request.user_id);
    user_task.user_group.clone_from(&request.user_group);
    user_task.set_status(UserTaskRunStatus::Assigned);
    user_task.events.push(UserTaskEvent {
        time: Some(rc.time),
        event: Some(user_task_event::Event::Assigned(assigned)),
    });
    rc.put_user_task_run(key, user_task);
    Ok(None)
}

pub(crate) fn cancel(
    rc: &mut RunContext<'_, '_, '_>,
    request: &CancelUserTaskRunRequest,
) -> Handled {
    let (key, mut user_task) = open_user_task(rc, request.user_task_run_id.as_ref())?;
    let reason = request
        .reason
        .clone()
        .unwrap_or_else(|| "no reason given".to_owned());
    user_task.set_status(UserTaskRunStatus::Cancelled);
    user_task.events.push(UserTaskEvent {
        time: Some(rc.time),
        event: Some(user_task_event::Event::Cancelled(
            user_task_event::Cancelled {
                message: reason.clone(),
            },
        )),
    });
    let failure = format!(
        "user task {} was cancelled: {reason}",
        user_task.user_task_def_name
    );
    finish_node(rc, key, user_task, Some(failure))
}

/// Stores the user task and completes (or fails) the node waiting for it.
fn finish_node(
    rc: &mut RunContext<'_, '_, '_>,
    key: Vec<u8>,
    user_task: UserTaskRun,
    failure: Option<String>,
) -> Handled {
    let node_id = user_task.node_run_id.clone().unwrap_or_default();
    rc.put_user_task_run(key, user_task);
    interpreter::end_waiting_node(rc, &node_id, |_| {
        Some(failure.map_or(Ending::Completed, Ending::Failed))
    })?;
    Ok(None)
}
