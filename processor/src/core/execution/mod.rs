//! The execution processor: one per `core-cmd` partition. For each record it decodes
//! the command (or the timer command it sent itself), finds the tenant, hands the
//! command to its handler inside a [`RunContext`], and answers with a `CommandResult`.
//! A handler's changes reach the stores only when it succeeds; a refused command
//! changes nothing but its answer.
//!
//! The data path of a command: [`CoreProcessor::process`] → handler (`start`,
//! `tasks`, `events`, `user_tasks`, `lifecycle`) → [`interpreter`] → `RunContext`
//! buffers → `RunContext::commit` → the task's stores, changelogs and outputs.

mod events;
pub(crate) mod interpreter;
mod lifecycle;
mod run_context;
mod run_counts;
mod start;
mod tasks;
mod user_tasks;

use std::sync::Arc;

use prost::Message;
use weir_proto::command::Command as Kind;
use weir_proto::command_result::Code;
use weir_proto::{Command, TimerCommand};
use weir_topology::{InitContext, InputRecord, ProcessingError, Processor, ProcessorContext};

use self::interpreter::ActiveRun;
use self::run_context::RunContext;
use self::run_counts::RunCounts;
use super::CoreStores;
use super::keys;
use super::results::{self, CommandError};
use crate::metrics::{CORE_COMMANDS, CORE_COMMANDS_DEFERRED};
use crate::topics::{CoreTopics, DEFAULT_TENANT, TENANT_HEADER};

/// How often a command naming metadata this task cannot see yet is put off, and for
/// how long each time. Metadata answers OK once its change is produced, a moment
/// before every replica can read it; after this the command is refused.
const MAX_DEFERRALS: i32 = 10;
const DEFERRAL_MS: i64 = 200;

/// Why a handler did not apply its command.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The command is refused; its answer says why.
    Refused(CommandError),
    /// Metadata the command names is not visible here (yet): retry a little later,
    /// and refuse with this error once out of retries.
    NotVisibleYet(CommandError),
    /// Storage failed: the task restarts from its last commit.
    Processing(ProcessingError),
}

impl From<CommandError> for Failure {
    fn from(error: CommandError) -> Self {
        Self::Refused(error)
    }
}

impl From<ProcessingError> for Failure {
    fn from(error: ProcessingError) -> Self {
        Self::Processing(error)
    }
}

impl From<keys::KeyError> for Failure {
    fn from(error: keys::KeyError) -> Self {
        Self::Refused(error.into())
    }
}

/// What a handler returns: on success, the encoded id of what it created or changed.
pub(crate) type Handled = Result<Option<Vec<u8>>, Failure>;

/// Handles the commands of one `core-cmd` partition.
#[derive(Debug)]
pub struct CoreProcessor {
    stores: Arc<CoreStores>,
    topics: CoreTopics,
    /// This partition's runs by tenant and status (the `weir_wf_runs` gauge).
    run_counts: RunCounts,
}

impl CoreProcessor {
    pub fn new(stores: Arc<CoreStores>, topics: CoreTopics) -> Self {
        Self {
            stores,
            topics,
            run_counts: RunCounts::default(),
        }
    }
}

/// A command with where it came from.
struct Envelope {
    tenant: String,
    command: Command,
    deferrals: i32,
    /// Commands the core sent itself (retries, timeouts) get no answer.
    internal: bool,
}

impl Processor for CoreProcessor {
    fn init(&mut self, ctx: &InitContext<'_>) -> Result<(), ProcessingError> {
        self.run_counts = RunCounts::load(ctx, &self.stores.wf_runs)?;
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, '_>,
        record: &InputRecord,
    ) -> Result<(), ProcessingError> {
        let mut envelope = decode(record)?;
        if envelope.command.command_id.is_empty() {
            envelope.command.command_id = record.position();
        }
        let time_ms = envelope
            .command
            .time
            .as_ref()
            .map_or(record.timestamp_ms, weir_proto::timestamp::to_millis);
        let kind = kind_name(envelope.command.command.as_ref());
        let command_id = envelope.command.command_id.clone();

        let mut rc = RunContext::new(
            ctx,
            &self.stores,
            &self.topics,
            &envelope.tenant,
            &command_id,
            time_ms,
        );
        let outcome = handle(&mut rc, &envelope.command, record);
        let answer = match outcome {
            Ok(result) => {
                let status_changes = rc.commit()?;
                self.run_counts.apply(&envelope.tenant, &status_changes);
                Some(results::ok(&command_id, result))
            }
            Err(Failure::Processing(error)) => return Err(error),
            Err(Failure::NotVisibleYet(error)) if envelope.deferrals < MAX_DEFERRALS => {
                drop(rc);
                metrics::counter!(CORE_COMMANDS_DEFERRED, "command" => kind).increment(1);
                let timer = TimerCommand {
                    tenant: envelope.tenant.clone(),
                    command: Some(envelope.command.clone()),
                    deferrals: envelope.deferrals + 1,
                    answer: !envelope.internal,
                };
                tracing::debug!(command_id, %error, "metadata not visible yet; command deferred");
                // The same key, so the command comes back as it was sent.
                ctx.schedule(
                    record.timestamp_ms.max(time_ms) + DEFERRAL_MS,
                    record.key.clone().unwrap_or_default(),
                    timer.encode_to_vec(),
                );
                return Ok(());
            }
            Err(Failure::Refused(error) | Failure::NotVisibleYet(error)) => {
                drop(rc);
                Some(results::refused(&command_id, &error))
            }
        };
        if let Some(answer) = answer {
            let code = Code::try_from(answer.code).unwrap_or(Code::Internal);
            metrics::counter!(CORE_COMMANDS, "command" => kind, "code" => code.as_str_name())
                .increment(1);
            if !envelope.internal {
                ctx.forward(results::record(&self.topics, &answer));
            }
        }
        Ok(())
    }
}

/// The command in a record: a `TimerCommand` when a timer fired, else a `Command`
/// with the tenant in its header.
fn decode(record: &InputRecord) -> Result<Envelope, ProcessingError> {
    let value = record.value.as_deref().unwrap_or_default();
    if record.is_timer() {
        let timer = TimerCommand::decode(value).map_err(|e| {
            ProcessingError::record(format!("timer record does not decode as TimerCommand: {e}"))
        })?;
        let command = timer
            .command
            .ok_or_else(|| ProcessingError::record("timer record carries no command"))?;
        // A command put off for metadata is the sender's and gets its answer; the
        // core's own retries and timeouts do not (even when put off themselves).
        let internal = !timer.answer;
        return Ok(Envelope {
            tenant: timer.tenant,
            command,
            deferrals: timer.deferrals,
            internal,
        });
    }
    let command = Command::decode(value).map_err(|e| {
        ProcessingError::record(format!("record does not decode as a weir Command: {e}"))
    })?;
    if command.command.is_none() {
        return Err(ProcessingError::record(
            "the Command names no command (its oneof is empty)",
        ));
    }
    let tenant = match record.header(TENANT_HEADER) {
        None => DEFAULT_TENANT.to_owned(),
        Some(bytes) => std::str::from_utf8(bytes)
            .map_err(|_| ProcessingError::record(format!("header {TENANT_HEADER} is not UTF-8")))?
            .to_owned(),
    };
    Ok(Envelope {
        tenant,
        command,
        deferrals: 0,
        internal: false,
    })
}

fn handle(rc: &mut RunContext<'_, '_, '_>, command: &Command, record: &InputRecord) -> Handled {
    keys::check_part("tenant", rc.tenant)?;
    if rc.metadata().tenant()?.is_none() {
        return Err(Failure::NotVisibleYet(CommandError::not_found(format!(
            "tenant {} does not exist",
            rc.tenant
        ))));
    }
    let Some(kind) = &command.command else {
        return Err(CommandError::invalid("the command is empty").into());
    };
    match kind {
        Kind::RunWf(request) => start::run_wf(rc, request, record.key.as_deref()),
        Kind::ReportTaskRun(report) => tasks::report(rc, report),
        Kind::TaskClaimEvent(claim) => tasks::claim(rc, claim),
        Kind::TaskAttemptRetryReady(ready) => tasks::retry_ready(rc, ready),
        Kind::TaskTimeout(timeout) => tasks::timeout(rc, timeout),
        Kind::PutExternalEvent(request) => events::post(rc, request),
        Kind::ExternalEventTimeout(timeout) => events::timeout(rc, timeout),
        Kind::StopWfRun(request) => lifecycle::stop(rc, request),
        Kind::ResumeWfRun(request) => lifecycle::resume(rc, request),
        Kind::DeleteWfRun(request) => lifecycle::delete(rc, request),
        Kind::CompleteUserTaskRun(request) => user_tasks::complete(rc, request),
        Kind::AssignUserTaskRun(request) => user_tasks::assign(rc, request),
        Kind::CancelUserTaskRun(request) => user_tasks::cancel(rc, request),
    }
}

/// The WfRun `wf_run_id` of the command's tenant, with the WfSpec version it runs.
pub(crate) fn load_run(
    rc: &mut RunContext<'_, '_, '_>,
    wf_run_id: &str,
) -> Result<Option<ActiveRun>, Failure> {
    keys::check_part("WfRun id", wf_run_id)?;
    let Some(wf_run) = rc.wf_run(&keys::wf_run(rc.tenant, wf_run_id))? else {
        return Ok(None);
    };
    let spec_id = wf_run.wf_spec_id.clone().unwrap_or_default();
    let spec = rc
        .metadata()
        .wf_spec(
            &spec_id.name,
            Some(spec_id.major_version),
            Some(spec_id.revision),
        )?
        .ok_or_else(|| {
            Failure::NotVisibleYet(CommandError::precondition(format!(
                "WfRun {wf_run_id} runs WfSpec {} {}.{}, which no longer exists",
                spec_id.name, spec_id.major_version, spec_id.revision
            )))
        })?;
    Ok(Some(ActiveRun { wf_run, spec }))
}

/// Like [`load_run`], but a missing run is a NOT_FOUND refusal.
pub(crate) fn existing_run(
    rc: &mut RunContext<'_, '_, '_>,
    wf_run_id: &str,
) -> Result<ActiveRun, Failure> {
    load_run(rc, wf_run_id)?.ok_or_else(|| {
        CommandError::not_found(format!(
            "WfRun {wf_run_id} does not exist in tenant {}",
            rc.tenant
        ))
        .into()
    })
}

fn kind_name(kind: Option<&Kind>) -> &'static str {
    match kind {
        None => "empty",
        Some(Kind::RunWf(_)) => "run_wf",
        Some(Kind::ReportTaskRun(_)) => "report_task_run",
        Some(Kind::TaskClaimEvent(_)) => "task_claim_event",
        Some(Kind::PutExternalEvent(_)) => "put_external_event",
        Some(Kind::StopWfRun(_)) => "stop_wf_run",
        Some(Kind::ResumeWfRun(_)) => "resume_wf_run",
        Some(Kind::DeleteWfRun(_)) => "delete_wf_run",
        Some(Kind::CompleteUserTaskRun(_)) => "complete_user_task_run",
        Some(Kind::AssignUserTaskRun(_)) => "assign_user_task_run",
        Some(Kind::CancelUserTaskRun(_)) => "cancel_user_task_run",
        Some(Kind::TaskAttemptRetryReady(_)) => "task_attempt_retry_ready",
        Some(Kind::TaskTimeout(_)) => "task_timeout",
        Some(Kind::ExternalEventTimeout(_)) => "external_event_timeout",
    }
}
