//! The workflow commands of `weir`: `server` runs the core; `put`, `run`, `post-event`,
//! `user-task`, `stop`, `resume` and `delete` send one command each through the
//! [`WeirClient`], wait for its result and print one line (`ok: …`). A refused command
//! is returned as a [`Refusal`] error, which `main` prints as `weir: CODE: message`.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use weir_proto::variable_value::Value;
use weir_proto::{
    CommandResult, DeleteWfRunRequest, ResumeWfRunRequest, RunWfRequest, StopWfRunRequest,
    VariableValue, WfRunId, WfSpecId, command,
};
use weir_topology::Runtime;

use crate::client::{WeirClient, accepted, result_id};
use crate::config::WeirConfig;
use crate::query::{self, instances::InstanceDirectory};
use crate::spec_file::{SpecKind, SpecRequest};
use crate::topics::CoreTopics;
use crate::{core, http, lifecycle, metrics, output};

/// Runs the workflow core and keeps the output topics of enabled tenants in existence,
/// until SIGTERM or SIGINT, then stops it cleanly. With `LHS_METRICS_PORT` set it serves
/// `/metrics` and the read-only queries ([`query`]) first, advertises its query address
/// in `{LHS_CLUSTER_ID}_instances`, prints `weir server http on {address} (/metrics)` and
/// `weir server queries at {url}`, and measures the task queues; it prints
/// `weir server running tasks …` once every task has started.
pub async fn server(config: &WeirConfig, out: &mut impl Write) -> anyhow::Result<()> {
    // First, so every metric registered from here on is recorded.
    if config.metrics_port.is_some() {
        http::install_recorder()?;
    }
    let topics = CoreTopics::new(config);
    let (topology, _stores) = core::topology(&topics).context("building the core topology")?;
    let runtime = Runtime::new(topology, config.runtime(), config.assignor()?)?;
    let http = match config.metrics_port {
        None => None,
        Some(_) => {
            let directory = Arc::new(InstanceDirectory::connect(config).await?);
            let queries = query::Queries::new(config, runtime.readers(), Arc::clone(&directory));
            let http = http::start_with(config, query::router(Arc::new(queries))).await?;
            if let Some(http) = &http {
                let url = config.advertised_http(http.local_addr().port());
                directory.advertise(config.instance_id, &url).await?;
                writeln!(out, "weir server http on {} (/metrics)", http.local_addr())?;
                writeln!(out, "weir server queries at {url}")?;
            }
            http
        }
    };
    let running = runtime.start().await?;
    // Beside the runtime, until shutdown: the output topics of tenants that enable
    // them (now and whenever one does), and, when metrics are served, the depth of the
    // task queues.
    let (stop_sidecars, sidecars_stopped) = tokio::sync::watch::channel(false);
    let stopped = || {
        let mut stopped = sidecars_stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let keeper = tokio::spawn(output::topic_keeper::run(config.clone(), stopped()));
    let queue_depth = http
        .is_some()
        .then(|| tokio::spawn(metrics::queue_depth::run(config.clone(), stopped())));
    writeln!(
        out,
        "weir server running tasks {}",
        running.task_ids.join(",")
    )?;
    out.flush()?;
    lifecycle::shutdown_signal().await;
    let _ = stop_sidecars.send(true);
    let _ = keeper.await;
    if let Some(queue_depth) = queue_depth {
        let _ = queue_depth.await;
    }
    running.shutdown().await;
    if let Some(http) = http {
        http.shutdown().await;
    }
    writeln!(out, "weir server stopped")?;
    out.flush()?;
    Ok(())
}

/// `weir put KIND FILE`: creates what the spec file defines.
pub async fn put(
    client: &WeirClient,
    tenant: &str,
    request: SpecRequest,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let kind = request.kind();
    let name = request.name().to_owned();
    let result = match request {
        SpecRequest::TaskDef(task_def) => client.put_task_def(tenant, task_def).await?,
        other => client.send_metadata(tenant, other.into_command()).await?,
    };
    let result = accepted(result)?;
    match (kind, result_id::<WfSpecId>(&result)) {
        (SpecKind::WfSpec, Some(id)) => writeln!(
            out,
            "ok: wf-spec {} version {}.{}",
            id.name, id.major_version, id.revision
        )?,
        _ => writeln!(out, "ok: {} {name}", kind.label())?,
    }
    Ok(())
}

/// What `weir run` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct RunArgs {
    pub wf_spec: String,
    pub variables: Vec<(String, VariableValue)>,
    pub id: Option<String>,
    pub major_version: Option<i32>,
    pub revision: Option<i32>,
    /// Print the WfRun id once the command is on the topic, without waiting.
    pub no_wait: bool,
}

/// `weir run WFSPEC`: starts a WfRun and prints its id.
pub async fn run(
    client: &WeirClient,
    tenant: &str,
    args: RunArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let requested_id = args.id.clone();
    let request = RunWfRequest {
        wf_spec_name: args.wf_spec.clone(),
        major_version: args.major_version,
        revision: args.revision,
        variables: args.variables.into_iter().collect(),
        id: args.id,
    };
    let pending = client.submit_run_wf(tenant, request).await?;
    // Without an id the client runs it as the command id.
    let wf_run_id = requested_id.unwrap_or_else(|| pending.command_id().to_owned());
    if args.no_wait {
        writeln!(out, "ok: sent run of {} as WfRun {wf_run_id}", args.wf_spec)?;
        return Ok(());
    }
    let result = accepted(pending.wait().await?)?;
    let started = result_id::<WfRunId>(&result).map_or(wf_run_id, |id| id.id);
    writeln!(out, "ok: started WfRun {started}")?;
    Ok(())
}

/// `weir post-event WFRUN EVENTDEF VALUE`.
pub async fn post_event(
    client: &WeirClient,
    tenant: &str,
    wf_run: &str,
    event_def: &str,
    value: &str,
    guid: Option<String>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let result = client
        .post_event(tenant, wf_run, event_def, parse_event_value(value), guid)
        .await?;
    ok(
        result,
        out,
        &format!("posted {event_def} to WfRun {wf_run}"),
    )
}

/// `weir user-task complete WFRUN GUID --user U [--result name=value]…`.
pub async fn complete_user_task(
    client: &WeirClient,
    tenant: &str,
    wf_run: &str,
    guid: &str,
    user: &str,
    results: Vec<(String, VariableValue)>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let results: BTreeMap<_, _> = results.into_iter().collect();
    let result = client
        .complete_user_task(tenant, wf_run, guid, user, results)
        .await?;
    ok(
        result,
        out,
        &format!("completed user task {guid} of WfRun {wf_run}"),
    )
}

/// `weir user-task assign WFRUN GUID (--user U | --group G) [--override]`.
#[allow(clippy::too_many_arguments)]
pub async fn assign_user_task(
    client: &WeirClient,
    tenant: &str,
    wf_run: &str,
    guid: &str,
    user: Option<String>,
    group: Option<String>,
    override_claim: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let to = match (&user, &group) {
        (Some(u), Some(g)) => format!("user {u} in group {g}"),
        (Some(u), None) => format!("user {u}"),
        (None, Some(g)) => format!("group {g}"),
        (None, None) => anyhow::bail!("give --user or --group to assign the user task to"),
    };
    let result = client
        .assign_user_task(tenant, wf_run, guid, user, group, override_claim)
        .await?;
    ok(
        result,
        out,
        &format!("assigned user task {guid} of WfRun {wf_run} to {to}"),
    )
}

/// `weir user-task cancel WFRUN GUID [--reason R]`.
pub async fn cancel_user_task(
    client: &WeirClient,
    tenant: &str,
    wf_run: &str,
    guid: &str,
    reason: Option<String>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let result = client
        .cancel_user_task(tenant, wf_run, guid, reason)
        .await?;
    ok(
        result,
        out,
        &format!("cancelled user task {guid} of WfRun {wf_run}"),
    )
}

/// What `weir stop|resume|delete WFRUN` does to a WfRun.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WfRunAction {
    Stop,
    Resume,
    Delete,
}

/// `weir stop|resume|delete WFRUN`.
pub async fn wf_run_action(
    client: &WeirClient,
    tenant: &str,
    wf_run: &str,
    action: WfRunAction,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let wf_run_id = Some(WfRunId {
        id: wf_run.to_owned(),
    });
    let (command, done) = match action {
        WfRunAction::Stop => (
            command::Command::StopWfRun(StopWfRunRequest {
                wf_run_id,
                thread_run_number: None,
            }),
            "stopped",
        ),
        WfRunAction::Resume => (
            command::Command::ResumeWfRun(ResumeWfRunRequest {
                wf_run_id,
                thread_run_number: None,
            }),
            "resumed",
        ),
        WfRunAction::Delete => (
            command::Command::DeleteWfRun(DeleteWfRunRequest { wf_run_id }),
            "deleted",
        ),
    };
    let result = client.send(tenant, wf_run, command).await?;
    ok(result, out, &format!("{done} WfRun {wf_run}"))
}

/// Prints `ok: {what}` for an applied command; a refused one is the error.
fn ok(result: CommandResult, out: &mut impl Write, what: &str) -> anyhow::Result<()> {
    accepted(result)?;
    writeln!(out, "ok: {what}")?;
    Ok(())
}

/// Parses `NAME=VALUE` (`--var`, `--result`) into a name and a STR value: the command
/// line does not know the declared types, so the core converts the text.
pub fn parse_var(text: &str) -> Result<(String, VariableValue), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => Ok((
            name.trim().to_owned(),
            VariableValue {
                value: Some(Value::Str(value.to_owned())),
            },
        )),
        Some(_) => Err(format!("{text:?} has no name before '='")),
        None => Err(format!("{text:?} is not NAME=VALUE")),
    }
}

/// An event's content from the command line: JSON numbers, booleans, objects and
/// arrays keep their type (an integral number is an INT, any other a DOUBLE; objects
/// and arrays are kept as their JSON text); anything else is text.
pub fn parse_event_value(text: &str) -> VariableValue {
    let value = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Bool(b)) => Value::Bool(b),
        Ok(serde_json::Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(f)) => Value::Double(f),
            (None, None) => Value::Str(text.to_owned()),
        },
        Ok(serde_json::Value::Object(_)) => Value::JsonObj(text.to_owned()),
        Ok(serde_json::Value::Array(_)) => Value::JsonArr(text.to_owned()),
        Ok(serde_json::Value::Null | serde_json::Value::String(_)) | Err(_) => {
            Value::Str(text.to_owned())
        }
    };
    VariableValue { value: Some(value) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn str_value(s: &str) -> VariableValue {
        VariableValue {
            value: Some(Value::Str(s.to_owned())),
        }
    }

    #[test]
    fn cli_var_is_name_equals_text() {
        assert_eq!(
            parse_var("amount=42"),
            Ok(("amount".to_owned(), str_value("42")))
        );
        assert_eq!(
            parse_var("note=a=b"),
            Ok(("note".to_owned(), str_value("a=b")))
        );
        assert_eq!(parse_var("empty="), Ok(("empty".to_owned(), str_value(""))));
        assert!(parse_var("amount").is_err());
        assert!(parse_var("=5").is_err());
    }

    #[test]
    fn cli_event_value_keeps_json_types() {
        let value = |text: &str| parse_event_value(text).value;
        assert_eq!(value("42"), Some(Value::Int(42)));
        assert_eq!(value("-7"), Some(Value::Int(-7)));
        assert_eq!(value("2.5"), Some(Value::Double(2.5)));
        assert_eq!(value("true"), Some(Value::Bool(true)));
        assert_eq!(
            value(r#"{"a": 1}"#),
            Some(Value::JsonObj(r#"{"a": 1}"#.to_owned()))
        );
        assert_eq!(value("[1,2]"), Some(Value::JsonArr("[1,2]".to_owned())));
        assert_eq!(value("hello"), Some(Value::Str("hello".to_owned())));
        assert_eq!(
            value(r#""quoted""#),
            Some(Value::Str(r#""quoted""#.to_owned()))
        );
        assert_eq!(value("null"), Some(Value::Str("null".to_owned())));
        // Too large for an i64: still a number, kept as a double.
        assert_eq!(
            value("18446744073709551616"),
            Some(Value::Double(18_446_744_073_709_551_616.0))
        );
    }
}
