//! Every metric a weir process exports beyond the runtime's ([`weir_topology::metrics`]),
//! by name, with its help text, and the full list ([`exported`]) that the README, the
//! Grafana dashboard and the alert rules are checked against. [`queue_depth`] measures
//! the task queues from the server.

pub mod queue_depth;

pub use crate::flows::topology::{LOAD_DONE_METRIC, LOAD_RECORDS_METRIC, LOAD_SKIPPED_METRIC};
pub use crate::worker::TASKS_TOTAL as WORKER_TASKS;

/// Execution commands processed, by `command` (kind) and `code` (result).
pub const CORE_COMMANDS: &str = "weir_core_commands_total";
/// Commands put off because the metadata they name was not visible yet, by `command`.
pub const CORE_COMMANDS_DEFERRED: &str = "weir_core_commands_deferred_total";
/// Claims and reports for an attempt that was no longer open, by `event`.
pub const CORE_TASK_EVENTS_IGNORED: &str = "weir_core_task_events_ignored_total";
/// WfRuns held by this instance's tasks, by `tenant` and `status` (a gauge).
pub const WF_RUNS: &str = "weir_wf_runs";
/// Records published to the tenants' output topics, by `tenant` and `type` (the
/// `weir-type` header).
pub const OUTPUT_TOPIC_RECORDS: &str = "weir_output_topic_records_total";
/// Records of a task queue partition no worker has reported past, by `tenant`,
/// `task_def` and `partition` (a gauge; see [`queue_depth`]).
pub const TASK_QUEUE_DEPTH: &str = "weir_task_queue_depth";

/// The metrics this crate defines, in the order the README lists them.
const PROCESSOR: &[&str] = &[
    CORE_COMMANDS,
    CORE_COMMANDS_DEFERRED,
    CORE_TASK_EVENTS_IGNORED,
    WF_RUNS,
    OUTPUT_TOPIC_RECORDS,
    TASK_QUEUE_DEPTH,
    WORKER_TASKS,
    LOAD_RECORDS_METRIC,
    LOAD_SKIPPED_METRIC,
    LOAD_DONE_METRIC,
];

/// Every metric name a weir process can export: the runtime's and this crate's.
pub fn exported() -> Vec<&'static str> {
    weir_topology::metrics::ALL
        .iter()
        .chain(PROCESSOR)
        .copied()
        .collect()
}

/// Describes this crate's metrics once, so `/metrics` carries their help text (the
/// runtime describes its own when it starts).
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_counter!(
        CORE_COMMANDS,
        "Execution commands processed, per command kind and result code."
    );
    describe_counter!(
        CORE_COMMANDS_DEFERRED,
        "Commands put off because the metadata they name was not visible yet, per command kind."
    );
    describe_counter!(
        CORE_TASK_EVENTS_IGNORED,
        "Claims and reports for a task attempt that was no longer open, per event."
    );
    describe_gauge!(
        WF_RUNS,
        Unit::Count,
        "WfRuns held by this instance's tasks, per tenant and status."
    );
    describe_counter!(
        OUTPUT_TOPIC_RECORDS,
        "Records published to the tenants' output topics, per tenant and type (the weir-type header)."
    );
    describe_gauge!(
        TASK_QUEUE_DEPTH,
        Unit::Count,
        "Records of a task queue partition after the worker group's committed offset, per tenant, TaskDef and partition."
    );
    describe_counter!(
        WORKER_TASKS,
        "Tasks a worker served, per TaskDef and outcome (success, failed, exception, skipped)."
    );
}

#[cfg(test)]
mod tests;
