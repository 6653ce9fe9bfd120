//! External events: posted to a WfRun (which may not exist yet, or not be waiting
//! yet: the event is kept unclaimed until a node of its def claims it), delivered to a
//! waiting node at once when there is one, and the timeout of a node that waited too
//! long.

use prost::Message;
use weir_proto::node_run::NodeType;
use weir_proto::{
    ExternalEvent, ExternalEventId, ExternalEventTimeout, LhStatus, PutExternalEventRequest,
    WfRunId,
};

use super::interpreter::{self, Ending};
use super::run_context::RunContext;
use super::{Failure, Handled};
use crate::core::keys;
use crate::core::results::CommandError;

pub(crate) fn post(rc: &mut RunContext<'_, '_, '_>, request: &PutExternalEventRequest) -> Handled {
    let wf_run_id = request
        .wf_run_id
        .as_ref()
        .map_or("", |id| id.id.as_str())
        .to_owned();
    keys::check_part("WfRun id", &wf_run_id)?;
    let def_name = &request.external_event_def_name;
    keys::check_part("ExternalEventDef name", def_name)?;
    if rc.metadata().external_event_def(def_name)?.is_none() {
        return Err(Failure::NotVisibleYet(CommandError::not_found(format!(
            "ExternalEventDef {def_name} does not exist in tenant {}",
            rc.tenant
        ))));
    }
    let guid = request
        .guid
        .clone()
        .unwrap_or_else(|| rc.command_id.to_owned());
    keys::check_part("event guid", &guid)?;
    let id = ExternalEventId {
        wf_run_id: Some(WfRunId {
            id: wf_run_id.clone(),
        }),
        external_event_def_name: def_name.clone(),
        guid: guid.clone(),
    };
    let event_key = keys::external_event(rc.tenant, &wf_run_id, def_name, &guid);
    if rc.external_event(&event_key)?.is_some() {
        // The same guid again: already posted, nothing more to do.
        return Ok(Some(id.encode_to_vec()));
    }
    let event = ExternalEvent {
        id: Some(id.clone()),
        content: request.content.clone(),
        created_at: Some(rc.time),
        claimed: false,
        thread_run_number: None,
        node_run_position: None,
    };
    rc.put_external_event(event_key.clone(), event.clone());

    // Deliver it now if a node of the run is waiting for this def.
    let Some(mut run) = super::load_run(rc, &wf_run_id)? else {
        return Ok(Some(id.encode_to_vec()));
    };
    for index in 0..run.wf_run.thread_runs.len() {
        let thread = &run.wf_run.thread_runs[index];
        if thread.status() != LhStatus::Running
            || request
                .thread_run_number
                .is_some_and(|n| n != thread.number)
            || request
                .node_run_position
                .is_some_and(|p| p != thread.current_node_position)
        {
            continue;
        }
        let node_key = run.node_run_key(rc.tenant, thread.number, thread.current_node_position);
        let Some(mut node_run) = rc.node_run(&node_key)? else {
            continue;
        };
        let waits_for_it = node_run.status() == LhStatus::Running
            && matches!(&node_run.node_type, Some(NodeType::ExternalEvent(wait)) if &wait.external_event_def_name == def_name);
        if waits_for_it {
            interpreter::claim_event(rc, &run, index, &mut node_run, event_key, event);
            rc.put_node_run(node_key, node_run);
            interpreter::advance(rc, &mut run)?;
            break;
        }
    }
    Ok(Some(id.encode_to_vec()))
}

/// An external event node's timeout: fails the node if it is still waiting.
pub(crate) fn timeout(rc: &mut RunContext<'_, '_, '_>, timeout: &ExternalEventTimeout) -> Handled {
    let node_id = timeout.node_run_id.clone().unwrap_or_default();
    interpreter::end_waiting_node(rc, &node_id, |node_run| match &node_run.node_type {
        Some(NodeType::ExternalEvent(wait)) => Some(Ending::Failed(format!(
            "no external event {} arrived before the node's timeout",
            wait.external_event_def_name
        ))),
        _ => None,
    })?;
    Ok(None)
}
