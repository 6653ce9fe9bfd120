//! TaskRuns: created by a task node, each attempt put on the tenant's queue for its
//! TaskDef (on the WfRun's partition), claimed by a worker, reported once. A failed or
//! timed-out attempt is retried after an exponential backoff while the TaskDef's
//! policy allows; after the last attempt the task node fails. A report or claim for an
//! attempt that is no longer open (a task dispatched twice, a late worker) is ignored
//! and counted, never applied twice.

use prost::Message;
use weir_proto::node_run::NodeType;
use weir_proto::report_task_run::Result as ReportResult;
use weir_proto::{
    Command, NodeRun, ReportTaskRun, RetryPolicy, ScheduledTask, TaskAttempt,
    TaskAttemptRetryReady, TaskClaimEvent, TaskNodeRun, TaskRun, TaskRunId, TaskStatus,
    TaskTimeout, VarNameAndVal, VariableValue, command,
};
use weir_topology::ProcessingError;

use super::interpreter::{self, ActiveRun, Ending};
use super::run_context::RunContext;
use super::{Failure, Handled};
use crate::core::keys;
use crate::core::results::CommandError;
use crate::metadata::typing;

/// Creates the TaskRun of a task node run and queues its first attempt.
pub(crate) fn start_task_run(
    rc: &mut RunContext<'_, '_, '_>,
    run: &mut ActiveRun,
    index: usize,
    node_run: &mut NodeRun,
    task_def_name: &str,
    args: Vec<VariableValue>,
) -> Result<(), ProcessingError> {
    let Some(task_def) = rc.metadata().task_def(task_def_name)? else {
        let message = format!("TaskDef {task_def_name} does not exist");
        return refuse_input(rc, run, index, node_run, task_def_name, message);
    };
    let mut inputs = Vec::with_capacity(args.len());
    for (def, value) in task_def.input_vars.iter().zip(args) {
        match typing::coerce(value, def.var_type()) {
            Ok(value) => inputs.push(VarNameAndVal {
                var_name: def.name.clone(),
                value: Some(value),
            }),
            Err(reason) => {
                let message = format!("input {} of task {task_def_name} {reason}", def.name);
                return refuse_input(rc, run, index, node_run, task_def_name, message);
            }
        }
    }
    let id = task_run_id(run, node_run);
    let mut task_run = TaskRun {
        id: Some(id.clone()),
        task_def_name: task_def_name.to_owned(),
        input_variables: inputs,
        max_attempts: 1 + task_def
            .retry_policy
            .as_ref()
            .map_or(0, |p| p.max_retries.max(0)),
        timeout_seconds: task_def.timeout_seconds,
        source_node_run_id: node_run.id.clone(),
        scheduled_time: Some(rc.time),
        ..TaskRun::default()
    };
    node_run.node_type = Some(NodeType::Task(TaskNodeRun {
        task_run_id: Some(id.clone()),
    }));
    queue_attempt(rc, &mut task_run);
    rc.put_task_run(keys::by_guid(rc.tenant, run.id(), &id.task_guid), task_run);
    Ok(())
}

/// Records a task whose inputs could not be computed and fails its node.
pub(crate) fn refuse_input(
    rc: &mut RunContext<'_, '_, '_>,
    run: &mut ActiveRun,
    index: usize,
    node_run: &mut NodeRun,
    task_def_name: &str,
    message: String,
) -> Result<(), ProcessingError> {
    let id = task_run_id(run, node_run);
    let task_run = TaskRun {
        id: Some(id.clone()),
        task_def_name: task_def_name.to_owned(),
        status: TaskStatus::TaskInputVarSubError as i32,
        max_attempts: 1,
        source_node_run_id: node_run.id.clone(),
        scheduled_time: Some(rc.time),
        ..TaskRun::default()
    };
    node_run.node_type = Some(NodeType::Task(TaskNodeRun {
        task_run_id: Some(id.clone()),
    }));
    rc.put_task_run(keys::by_guid(rc.tenant, run.id(), &id.task_guid), task_run);
    interpreter::fail_node(rc, run, index, node_run, message);
    Ok(())
}

fn task_run_id(run: &ActiveRun, node_run: &NodeRun) -> TaskRunId {
    TaskRunId {
        wf_run_id: Some(run.wf_run_id()),
        task_guid: interpreter::node_run_label(node_run),
    }
}

/// Appends the next attempt and puts it on the task queue.
fn queue_attempt(rc: &mut RunContext<'_, '_, '_>, task_run: &mut TaskRun) {
    let attempt_number = i32::try_from(task_run.attempts.len()).unwrap_or(i32::MAX);
    task_run.attempts.push(TaskAttempt {
        attempt_number,
        status: TaskStatus::TaskScheduled as i32,
        schedule_time: Some(rc.time),
        ..TaskAttempt::default()
    });
    task_run.set_status(TaskStatus::TaskScheduled);
    let id = task_run.id.clone().unwrap_or_default();
    let wf_run_id = id.wf_run_id.clone().unwrap_or_default().id;
    let scheduled = ScheduledTask {
        task_run_id: Some(id),
        task_def_name: task_run.task_def_name.clone(),
        attempt_number,
        variables: task_run.input_variables.clone(),
        created_at: Some(rc.time),
        tenant: rc.tenant.to_owned(),
    };
    let topic = rc.topics.task_queue(rc.tenant, &task_run.task_def_name);
    rc.send_to_queue(topic, &wf_run_id, scheduled.encode_to_vec());
}

/// Loads the TaskRun a worker event names, and the attempt it is about.
fn load_attempt(
    rc: &mut RunContext<'_, '_, '_>,
    id: Option<&TaskRunId>,
    attempt_number: i32,
) -> Result<(Vec<u8>, TaskRun, usize), Failure> {
    let id = id.ok_or_else(|| CommandError::invalid("task_run_id is missing"))?;
    let wf_run_id = id.wf_run_id.as_ref().map_or("", |w| w.id.as_str());
    keys::check_part("WfRun id", wf_run_id)?;
    keys::check_part("task guid", &id.task_guid)?;
    let key = keys::by_guid(rc.tenant, wf_run_id, &id.task_guid);
    let task_run = rc.task_run(&key)?.ok_or_else(|| {
        CommandError::not_found(format!(
            "TaskRun {wf_run_id}/{} does not exist",
            id.task_guid
        ))
    })?;
    let attempt = usize::try_from(attempt_number)
        .ok()
        .filter(|&a| a < task_run.attempts.len())
        .ok_or_else(|| {
            CommandError::not_found(format!(
                "TaskRun {wf_run_id}/{} has no attempt {attempt_number}",
                id.task_guid
            ))
        })?;
    Ok((key, task_run, attempt))
}

fn ignored(task_run: &TaskRun, attempt: usize, what: &'static str) -> Failure {
    metrics::counter!(crate::metrics::CORE_TASK_EVENTS_IGNORED, "event" => what).increment(1);
    let status = task_run.attempts[attempt].status();
    let guid = task_run.id.as_ref().map_or("", |id| id.task_guid.as_str());
    Failure::Refused(CommandError::precondition(format!(
        "{what} ignored: attempt {attempt} of task {guid} already ended with {}",
        status.as_str_name()
    )))
}

/// A worker took an attempt: it is RUNNING from now, and times out after the TaskDef's
/// timeout unless reported.
pub(crate) fn claim(rc: &mut RunContext<'_, '_, '_>, claim: &TaskClaimEvent) -> Handled {
    let (key, mut task_run, attempt) =
        load_attempt(rc, claim.task_run_id.as_ref(), claim.attempt_number)?;
    if task_run.attempts[attempt].status() != TaskStatus::TaskScheduled {
        return Err(ignored(&task_run, attempt, "claim"));
    }
    let entry = &mut task_run.attempts[attempt];
    entry.set_status(TaskStatus::TaskRunning);
    entry.start_time = Some(rc.time);
    entry.worker_id = Some(claim.worker_id.clone());
    task_run.set_status(TaskStatus::TaskRunning);
    if task_run.timeout_seconds > 0 {
        let timeout = Command {
            command_id: format!("{}/timeout", attempt_label(&task_run, attempt)),
            time: None,
            command: Some(command::Command::TaskTimeout(TaskTimeout {
                task_run_id: task_run.id.clone(),
                attempt_number: claim.attempt_number,
            })),
        };
        rc.schedule(
            rc.time_ms + i64::from(task_run.timeout_seconds) * 1000,
            timeout,
        );
    }
    rc.put_task_run(key, task_run);
    Ok(None)
}

fn attempt_label(task_run: &TaskRun, attempt: usize) -> String {
    let id = task_run.id.clone().unwrap_or_default();
    format!(
        "{}/{}/{attempt}",
        id.wf_run_id.map(|w| w.id).unwrap_or_default(),
        id.task_guid
    )
}

/// A worker's result for an attempt. Only the first report of an open attempt counts.
pub(crate) fn report(rc: &mut RunContext<'_, '_, '_>, report: &ReportTaskRun) -> Handled {
    let (key, mut task_run, attempt) =
        load_attempt(rc, report.task_run_id.as_ref(), report.attempt_number)?;
    let open = matches!(
        task_run.attempts[attempt].status(),
        TaskStatus::TaskScheduled | TaskStatus::TaskRunning
    );
    if !open || attempt + 1 != task_run.attempts.len() {
        return Err(ignored(&task_run, attempt, "report"));
    }
    let status = report.status();
    let entry = &mut task_run.attempts[attempt];
    entry.end_time = Some(report.time.unwrap_or(rc.time));
    if entry.worker_id.is_none() {
        entry.worker_id.clone_from(&report.worker_id);
    }
    match (status, &report.result) {
        (TaskStatus::TaskSuccess, result) => {
            entry.set_status(TaskStatus::TaskSuccess);
            entry.output = match result {
                Some(ReportResult::Output(output)) => Some(output.clone()),
                _ => Some(VariableValue::default()),
            };
            task_run.set_status(TaskStatus::TaskSuccess);
            finish(rc, key, task_run, None)
        }
        (
            TaskStatus::TaskFailed | TaskStatus::TaskException | TaskStatus::TaskOutputSerdeError,
            result,
        ) => {
            entry.set_status(status);
            let message = match result {
                Some(ReportResult::ErrorMessage(message)) => message.clone(),
                _ => format!("the worker reported {}", status.as_str_name()),
            };
            entry.error_message = Some(message);
            attempt_failed(rc, key, task_run)
        }
        (other, _) => Err(CommandError::invalid(format!(
            "a report must say TASK_SUCCESS, TASK_FAILED, TASK_EXCEPTION or TASK_OUTPUT_SERDE_ERROR, not {}",
            other.as_str_name()
        ))
        .into()),
    }
}

/// A claimed attempt ran past its timeout (a no-op if it has been reported since).
pub(crate) fn timeout(rc: &mut RunContext<'_, '_, '_>, timeout: &TaskTimeout) -> Handled {
    let (key, mut task_run, attempt) =
        load_attempt(rc, timeout.task_run_id.as_ref(), timeout.attempt_number)?;
    if task_run.attempts[attempt].status() != TaskStatus::TaskRunning {
        return Ok(None);
    }
    let seconds = task_run.timeout_seconds;
    let entry = &mut task_run.attempts[attempt];
    entry.set_status(TaskStatus::TaskTimeout);
    entry.end_time = Some(rc.time);
    entry.error_message = Some(format!("no report within {seconds} s of the claim"));
    attempt_failed(rc, key, task_run)
}

/// A retry backoff elapsed: queue the next attempt (a no-op if the run moved on).
pub(crate) fn retry_ready(
    rc: &mut RunContext<'_, '_, '_>,
    ready: &TaskAttemptRetryReady,
) -> Handled {
    let id = ready
        .task_run_id
        .as_ref()
        .ok_or_else(|| CommandError::invalid("task_run_id is missing"))?;
    let wf_run_id = id.wf_run_id.as_ref().map_or("", |w| w.id.as_str());
    let key = keys::by_guid(rc.tenant, wf_run_id, &id.task_guid);
    let Some(mut task_run) = rc.task_run(&key)? else {
        return Ok(None);
    };
    let expected = usize::try_from(ready.attempt_number).ok();
    if task_run.status() != TaskStatus::TaskPending || expected != Some(task_run.attempts.len()) {
        return Ok(None);
    }
    queue_attempt(rc, &mut task_run);
    rc.put_task_run(key, task_run);
    Ok(None)
}

/// The latest attempt failed: retry after the backoff, or fail the task node.
fn attempt_failed(rc: &mut RunContext<'_, '_, '_>, key: Vec<u8>, mut task_run: TaskRun) -> Handled {
    let attempts = i32::try_from(task_run.attempts.len()).unwrap_or(i32::MAX);
    let last = task_run.attempts.last().cloned().unwrap_or_default();
    if attempts < task_run.max_attempts {
        let policy = rc
            .metadata()
            .task_def(&task_run.task_def_name)?
            .and_then(|d| d.retry_policy)
            .unwrap_or_default();
        let delay = backoff_ms(&policy, attempts - 1);
        if delay == 0 {
            queue_attempt(rc, &mut task_run);
        } else {
            task_run.set_status(TaskStatus::TaskPending);
            let retry = Command {
                command_id: format!(
                    "{}/retry",
                    attempt_label(&task_run, task_run.attempts.len())
                ),
                time: None,
                command: Some(command::Command::TaskAttemptRetryReady(
                    TaskAttemptRetryReady {
                        task_run_id: task_run.id.clone(),
                        attempt_number: attempts,
                    },
                )),
            };
            rc.schedule(rc.time_ms + delay, retry);
        }
        rc.put_task_run(key, task_run);
        return Ok(None);
    }
    task_run.status = last.status;
    let message = format!(
        "task {} ended with {} after {attempts} attempt(s): {}",
        task_run.task_def_name,
        last.status().as_str_name(),
        last.error_message.unwrap_or_default()
    );
    finish(rc, key, task_run, Some(message))
}

/// Delay before the attempt after failed attempt `failed` (0-based):
/// `initial * multiplier^failed`, capped at `max_backoff_ms` when that is set.
pub(crate) fn backoff_ms(policy: &RetryPolicy, failed: i32) -> i64 {
    let initial = policy.initial_backoff_ms.max(0) as f64;
    let multiplier = if policy.backoff_multiplier >= 1.0 {
        policy.backoff_multiplier
    } else {
        1.0
    };
    let delay = initial * multiplier.powi(failed.max(0));
    let capped = if policy.max_backoff_ms > 0 {
        delay.min(policy.max_backoff_ms as f64)
    } else {
        delay
    };
    capped.min(i64::MAX as f64) as i64
}

/// The TaskRun is over: complete (or fail) its node and move the WfRun on.
fn finish(
    rc: &mut RunContext<'_, '_, '_>,
    key: Vec<u8>,
    task_run: TaskRun,
    failure: Option<String>,
) -> Handled {
    let node_id = task_run.source_node_run_id.clone().unwrap_or_default();
    rc.put_task_run(key, task_run);
    interpreter::end_waiting_node(rc, &node_id, |_| {
        Some(failure.map_or(Ending::Completed, Ending::Failed))
    })?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_by_the_multiplier_and_stops_at_the_cap() {
        let policy = RetryPolicy {
            max_retries: 5,
            initial_backoff_ms: 100,
            backoff_multiplier: 2.0,
            max_backoff_ms: 500,
        };
        let delays: Vec<i64> = (0..5).map(|n| backoff_ms(&policy, n)).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
        assert_eq!(backoff_ms(&RetryPolicy::default(), 3), 0);
    }
}
