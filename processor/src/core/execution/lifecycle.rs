//! Halting, resuming and deleting a WfRun. A halted thread keeps recording what
//! arrives for it (a task's report completes its node) but does not move on until it
//! is resumed.

use weir_proto::{DeleteWfRunRequest, LhStatus, ResumeWfRunRequest, StopWfRunRequest};

use super::interpreter;
use super::run_context::RunContext;
use super::{Handled, existing_run};
use crate::core::results::CommandError;

fn wf_run_id(id: Option<&weir_proto::WfRunId>) -> String {
    id.map(|id| id.id.clone()).unwrap_or_default()
}

pub(crate) fn stop(rc: &mut RunContext<'_, '_, '_>, request: &StopWfRunRequest) -> Handled {
    change_threads(
        rc,
        &wf_run_id(request.wf_run_id.as_ref()),
        request.thread_run_number,
        LhStatus::Running,
        LhStatus::Halted,
    )
}

pub(crate) fn resume(rc: &mut RunContext<'_, '_, '_>, request: &ResumeWfRunRequest) -> Handled {
    change_threads(
        rc,
        &wf_run_id(request.wf_run_id.as_ref()),
        request.thread_run_number,
        LhStatus::Halted,
        LhStatus::Running,
    )
}

/// Moves the chosen threads (all, or one) from `from` to `to`, then lets them run.
fn change_threads(
    rc: &mut RunContext<'_, '_, '_>,
    id: &str,
    thread_number: Option<i32>,
    from: LhStatus,
    to: LhStatus,
) -> Handled {
    let mut run = existing_run(rc, id)?;
    let mut changed = 0;
    for thread in &mut run.wf_run.thread_runs {
        if thread_number.is_some_and(|n| n != thread.number) {
            continue;
        }
        if thread.status() == from {
            thread.set_status(to);
            changed += 1;
        }
    }
    if changed == 0 {
        let which = thread_number.map_or_else(|| "no thread".to_owned(), |n| format!("thread {n}"));
        let status = run.wf_run.status();
        return Err(CommandError::precondition(format!(
            "WfRun {id} is {}: {which} is {}",
            status.as_str_name(),
            from.as_str_name()
        ))
        .into());
    }
    interpreter::advance(rc, &mut run)?;
    Ok(None)
}

pub(crate) fn delete(rc: &mut RunContext<'_, '_, '_>, request: &DeleteWfRunRequest) -> Handled {
    let id = wf_run_id(request.wf_run_id.as_ref());
    crate::core::keys::check_part("WfRun id", &id)?;
    if rc
        .wf_run(&crate::core::keys::wf_run(rc.tenant, &id))?
        .is_none()
    {
        return Err(CommandError::not_found(format!(
            "WfRun {id} does not exist in tenant {}",
            rc.tenant
        ))
        .into());
    }
    rc.delete_everything_of(&id)?;
    Ok(None)
}
