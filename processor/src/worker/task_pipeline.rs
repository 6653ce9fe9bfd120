//! One task from claim to report: claim it on `core-cmd`, run the worker's function
//! (a panic becomes `TASK_FAILED`), report how it ended, and count the outcome.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::task::JoinHandle;
use weir_proto::command::Command as CommandKind;
use weir_proto::report_task_run::Result as ReportResult;
use weir_proto::{
    Command, ReportTaskRun, ScheduledTask, TaskClaimEvent, TaskStatus, VariableValue,
};

use super::shared::Shared;
use super::{TaskError, TaskErrorKind};
use crate::topics::command_time_now;

/// One task from claim to report: claim it, run the function, report how it ended.
pub(super) async fn serve_task<F, Fut>(shared: Arc<Shared>, function: Arc<F>, task: ScheduledTask)
where
    F: Fn(ScheduledTask) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<VariableValue, TaskError>> + Send + 'static,
{
    let task_run_id = task.task_run_id.clone().unwrap_or_default();
    let wf_run_id = task_run_id
        .wf_run_id
        .as_ref()
        .map(|id| id.id.clone())
        .unwrap_or_default();
    let attempt = task.attempt_number;
    let command_id = |step: &str| format!("{wf_run_id}/{}/{attempt}/{step}", task_run_id.task_guid);
    let claim = Command {
        command_id: command_id("claim"),
        time: Some(command_time_now()),
        command: Some(CommandKind::TaskClaimEvent(TaskClaimEvent {
            task_run_id: Some(task_run_id.clone()),
            attempt_number: attempt,
            worker_id: shared.worker_id.clone(),
        })),
    };
    shared.send_command(&wf_run_id, &claim).await;

    // Run in its own task so a panic is caught, and aborted if this pipeline is.
    let running = AbortOnDrop(tokio::spawn(async move { function(task).await }));
    let result = match running.join().await {
        Ok(result) => result,
        Err(error) if error.is_panic() => Err(TaskError::failed(format!(
            "task panicked: {}",
            panic_message(error.into_panic())
        ))),
        Err(error) => Err(TaskError::failed(format!("task did not finish: {error}"))),
    };
    let (status, outcome) = match &result {
        Ok(_) => (TaskStatus::TaskSuccess, "success"),
        Err(error) => (
            error.status(),
            match error.kind() {
                TaskErrorKind::Failed => "failed",
                TaskErrorKind::Exception => "exception",
            },
        ),
    };
    if let Err(error) = &result {
        tracing::info!(task_def = %shared.task_def, wf_run_id, attempt, %error, "task did not succeed");
    }
    let report = Command {
        command_id: command_id("report"),
        time: Some(command_time_now()),
        command: Some(CommandKind::ReportTaskRun(ReportTaskRun {
            task_run_id: Some(task_run_id.clone()),
            attempt_number: attempt,
            time: Some(command_time_now()),
            status: status as i32,
            result: Some(match result {
                Ok(output) => ReportResult::Output(output),
                Err(error) => ReportResult::ErrorMessage(error.message),
            }),
            worker_id: Some(shared.worker_id.clone()),
        })),
    };
    shared.send_command(&wf_run_id, &report).await;
    let (counter, metric) = match outcome {
        "success" => (&shared.counters.succeeded, &shared.metrics.success),
        "failed" => (&shared.counters.failed, &shared.metrics.failed),
        _ => (&shared.counters.exceptions, &shared.metrics.exception),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    metric.increment(1);
}

/// A spawned task that is aborted when its handle is dropped.
pub(super) struct AbortOnDrop<T>(pub(super) JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_read_from_both_payload_kinds() {
        assert_eq!(panic_message(Box::new("static")), "static");
        assert_eq!(panic_message(Box::new(String::from("owned"))), "owned");
        assert_eq!(panic_message(Box::new(3)), "(no message)");
    }
}
