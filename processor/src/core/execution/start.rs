//! `RunWf`: starts a WfRun of a WfSpec version, with its input variables checked
//! against the entrypoint thread's definitions (text read as the declared type,
//! defaults applied, required ones present, unknown ones refused).

use prost::Message;
use weir_proto::{LhStatus, RunWfRequest, ThreadRun, Variable, VariableId, WfRun, WfRunId};

use super::interpreter::{self, ActiveRun};
use super::run_context::RunContext;
use super::{Failure, Handled};
use crate::core::keys;
use crate::core::results::CommandError;
use crate::metadata::typing;

pub(crate) fn run_wf(
    rc: &mut RunContext<'_, '_, '_>,
    request: &RunWfRequest,
    record_key: Option<&[u8]>,
) -> Handled {
    let id = request
        .id
        .clone()
        .unwrap_or_else(|| rc.command_id.to_owned());
    keys::check_part("WfRun id", &id)?;
    if record_key != Some(id.as_bytes()) {
        return Err(CommandError::invalid(format!(
            "a RunWf command must be keyed by its WfRun id {id:?} (so every command about the run reaches its partition)"
        ))
        .into());
    }
    keys::check_part("WfSpec name", &request.wf_spec_name)?;
    let version = match (request.major_version, request.revision) {
        (None, _) => "any version".to_owned(),
        (Some(major), None) => format!("major version {major}"),
        (Some(major), Some(revision)) => format!("version {major}.{revision}"),
    };
    let spec = rc
        .metadata()
        .wf_spec(
            &request.wf_spec_name,
            request.major_version,
            request.revision,
        )?
        .ok_or_else(|| {
            Failure::NotVisibleYet(CommandError::not_found(format!(
                "WfSpec {} ({version}) does not exist in tenant {}",
                request.wf_spec_name, rc.tenant
            )))
        })?;
    let wf_run_key = keys::wf_run(rc.tenant, &id);
    if rc.wf_run(&wf_run_key)?.is_some() {
        return Err(CommandError::already_exists(format!("WfRun {id} already exists")).into());
    }
    let thread_name = spec.entrypoint_thread_name.clone();
    let thread_spec = spec
        .thread_specs
        .get(&thread_name)
        .cloned()
        .ok_or_else(|| {
            CommandError::internal(format!("WfSpec has no entrypoint thread {thread_name}"))
        })?;

    // Every problem with the inputs, in one answer.
    let mut problems = Vec::new();
    for name in request.variables.keys() {
        let declared = thread_spec
            .variable_defs
            .iter()
            .any(|d| d.var_def.as_ref().is_some_and(|v| &v.name == name));
        if !declared {
            problems.push(format!("variable {name:?} is not declared by the WfSpec"));
        }
    }
    let wf_spec_id = spec.id.clone().unwrap_or_default();
    let mut variables = Vec::new();
    for def in &thread_spec.variable_defs {
        let Some(var_def) = &def.var_def else {
            continue;
        };
        let given = request.variables.get(&var_def.name).cloned();
        let value = given
            .or_else(|| var_def.default_value.clone())
            .unwrap_or_default();
        let value = match typing::coerce(value, var_def.var_type()) {
            Ok(value) => value,
            Err(reason) => {
                problems.push(format!("variable {:?} {reason}", var_def.name));
                continue;
            }
        };
        if def.required && value.value.is_none() {
            problems.push(format!("variable {:?} is required", var_def.name));
        }
        variables.push(Variable {
            id: Some(VariableId {
                wf_run_id: Some(WfRunId { id: id.clone() }),
                thread_run_number: 0,
                name: var_def.name.clone(),
            }),
            value: Some(value),
            created_at: Some(rc.time),
            wf_spec_id: Some(wf_spec_id.clone()),
        });
    }
    if !problems.is_empty() {
        return Err(CommandError::invalid(problems.join("; ")).into());
    }

    for variable in variables {
        let name = variable
            .id
            .as_ref()
            .map(|v| v.name.clone())
            .unwrap_or_default();
        rc.put_variable(keys::variable(rc.tenant, &id, 0, &name), variable);
    }
    let wf_run = WfRun {
        id: Some(WfRunId { id: id.clone() }),
        wf_spec_id: Some(wf_spec_id),
        status: LhStatus::Running as i32,
        thread_runs: vec![ThreadRun {
            number: 0,
            status: LhStatus::Running as i32,
            thread_spec_name: thread_name,
            current_node_position: 0,
            start_time: Some(rc.time),
            end_time: None,
            error_message: None,
        }],
        start_time: Some(rc.time),
        end_time: None,
        greatest_thread_run_number: 0,
    };
    let mut run = ActiveRun { wf_run, spec };
    interpreter::start_thread(rc, &mut run, 0)?;
    interpreter::advance(rc, &mut run)?;
    Ok(Some(WfRunId { id }.encode_to_vec()))
}
