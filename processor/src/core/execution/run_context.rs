//! The working set of one command: the objects it reads and changes, buffered so that
//! a refused command changes nothing. Handlers read through it (their own writes
//! first, then the task's stores), write into it, and queue task-queue records and
//! timers; only when the handler succeeds does [`RunContext::commit`] hand it all to
//! the processor context.

use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message;
use prost_types::Timestamp;
use weir_proto::{
    Command, ExternalEvent, NodeRun, TaskRun, TimerCommand, UserTaskRun, Variable, WfRun,
    WorkflowEvent,
};
use weir_topology::{OutputRecord, ProcessingError, ProcessorContext, StoreHandle};

use super::run_counts::StatusChange;
use crate::core::CoreStores;
use crate::core::keys;
use crate::core::metadata_view::{GlobalReplica, MetadataView};
use crate::output;
use crate::output::execution::Change;
use crate::topics::{CoreTopics, TENANT_HEADER};

/// Buffered reads and writes of one store: `Some` is a value, `None` a deletion.
#[derive(Debug)]
pub(crate) struct Buffer<V> {
    entries: BTreeMap<Vec<u8>, Option<V>>,
    /// Keys written, with the command-wide sequence number of their last write.
    written: BTreeMap<Vec<u8>, u64>,
}

impl<V> Default for Buffer<V> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            written: BTreeMap::new(),
        }
    }
}

impl<V: Message + Default + Clone> Buffer<V> {
    fn get(
        &mut self,
        ctx: &mut ProcessorContext<'_, '_>,
        store: &StoreHandle<V>,
        key: &[u8],
    ) -> Result<Option<V>, ProcessingError> {
        if let Some(entry) = self.entries.get(key) {
            return Ok(entry.clone());
        }
        let loaded = ctx.get(store, key)?;
        self.entries.insert(key.to_vec(), loaded.clone());
        Ok(loaded)
    }

    fn put(&mut self, key: Vec<u8>, value: V, sequence: u64) {
        self.written.insert(key.clone(), sequence);
        self.entries.insert(key, Some(value));
    }

    fn delete(&mut self, key: Vec<u8>, sequence: u64) {
        self.written.insert(key.clone(), sequence);
        self.entries.insert(key, None);
    }

    /// Every live entry under `prefix`: the store's, overlaid with this buffer's.
    fn scan(
        &mut self,
        ctx: &mut ProcessorContext<'_, '_>,
        store: &StoreHandle<V>,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, V)>, ProcessingError> {
        let mut merged: BTreeMap<Vec<u8>, Option<V>> = ctx
            .scan_prefix(store, prefix)?
            .into_iter()
            .map(|(key, value): (Bytes, V)| (key.to_vec(), Some(value)))
            .collect();
        for (key, entry) in self.entries.range(prefix.to_vec()..) {
            if !key.starts_with(prefix) {
                break;
            }
            merged.insert(key.clone(), entry.clone());
        }
        Ok(merged
            .into_iter()
            .filter_map(|(key, value)| value.map(|v| (key, v)))
            .collect())
    }

    /// Writes every buffered change to the store and returns the values put, each with
    /// the sequence of its last write and the value it replaced.
    fn flush(
        self,
        ctx: &mut ProcessorContext<'_, '_>,
        store: &StoreHandle<V>,
    ) -> Result<Vec<(u64, Option<V>, V)>, ProcessingError> {
        let mut put = Vec::new();
        for (key, entry) in self.entries {
            let Some(&sequence) = self.written.get(&key) else {
                continue;
            };
            match entry {
                Some(value) => {
                    let before = ctx.get(store, &key)?;
                    ctx.put(store, &key, &value)?;
                    put.push((sequence, before, value));
                }
                None => ctx.delete(store, &key)?,
            }
        }
        Ok(put)
    }
}

impl Buffer<WfRun> {
    /// The status of each run the command wrote, before and after it, where they differ.
    fn status_changes(
        &self,
        ctx: &mut ProcessorContext<'_, '_>,
        store: &StoreHandle<WfRun>,
    ) -> Result<Vec<StatusChange>, ProcessingError> {
        let mut changes = Vec::new();
        for key in self.written.keys() {
            let before = ctx.get(store, key)?.map(|run| run.status());
            let after = self
                .entries
                .get(key)
                .and_then(Option::as_ref)
                .map(WfRun::status);
            if before != after {
                changes.push(StatusChange { before, after });
            }
        }
        Ok(changes)
    }
}

/// A timer the command asks for: `command` comes back at `fire_at_ms`.
#[derive(Debug)]
struct PendingTimer {
    fire_at_ms: i64,
    command: TimerCommand,
}

/// Everything one command reads and changes, and how to reach the rest of the task.
pub(crate) struct RunContext<'c, 'a, 'b> {
    ctx: &'c mut ProcessorContext<'a, 'b>,
    pub(crate) stores: &'c CoreStores,
    pub(crate) topics: &'c CoreTopics,
    pub(crate) tenant: &'c str,
    pub(crate) command_id: &'c str,
    /// The command's time: every timestamp written comes from here.
    pub(crate) time: Timestamp,
    pub(crate) time_ms: i64,
    wf_runs: Buffer<WfRun>,
    node_runs: Buffer<NodeRun>,
    task_runs: Buffer<TaskRun>,
    variables: Buffer<Variable>,
    external_events: Buffer<ExternalEvent>,
    workflow_events: Buffer<WorkflowEvent>,
    user_task_runs: Buffer<UserTaskRun>,
    outputs: Vec<OutputRecord>,
    timers: Vec<PendingTimer>,
    /// Counts writes, so changes can be published in the order the command made them.
    sequence: u64,
}

impl std::fmt::Debug for RunContext<'_, '_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("tenant", &self.tenant)
            .field("command_id", &self.command_id)
            .finish_non_exhaustive()
    }
}

macro_rules! object_access {
    ($get:ident, $put:ident, $delete:ident, $scan:ident, $field:ident, $ty:ty) => {
        #[allow(dead_code)]
        pub(crate) fn $get(&mut self, key: &[u8]) -> Result<Option<$ty>, ProcessingError> {
            self.$field.get(self.ctx, &self.stores.$field, key)
        }

        pub(crate) fn $put(&mut self, key: Vec<u8>, value: $ty) {
            self.sequence += 1;
            self.$field.put(key, value, self.sequence);
        }

        #[allow(dead_code)]
        pub(crate) fn $delete(&mut self, key: Vec<u8>) {
            self.sequence += 1;
            self.$field.delete(key, self.sequence);
        }

        #[allow(dead_code)]
        pub(crate) fn $scan(
            &mut self,
            prefix: &[u8],
        ) -> Result<Vec<(Vec<u8>, $ty)>, ProcessingError> {
            self.$field.scan(self.ctx, &self.stores.$field, prefix)
        }
    };
}

impl<'c, 'a, 'b> RunContext<'c, 'a, 'b> {
    pub(crate) fn new(
        ctx: &'c mut ProcessorContext<'a, 'b>,
        stores: &'c CoreStores,
        topics: &'c CoreTopics,
        tenant: &'c str,
        command_id: &'c str,
        time_ms: i64,
    ) -> Self {
        Self {
            ctx,
            stores,
            topics,
            tenant,
            command_id,
            time: weir_proto::timestamp::from_millis(time_ms),
            time_ms,
            wf_runs: Buffer::default(),
            node_runs: Buffer::default(),
            task_runs: Buffer::default(),
            variables: Buffer::default(),
            external_events: Buffer::default(),
            workflow_events: Buffer::default(),
            user_task_runs: Buffer::default(),
            outputs: Vec::new(),
            timers: Vec::new(),
            sequence: 0,
        }
    }

    object_access!(
        wf_run,
        put_wf_run,
        delete_wf_run,
        scan_wf_runs,
        wf_runs,
        WfRun
    );
    object_access!(
        node_run,
        put_node_run,
        delete_node_run,
        scan_node_runs,
        node_runs,
        NodeRun
    );
    object_access!(
        task_run,
        put_task_run,
        delete_task_run,
        scan_task_runs,
        task_runs,
        TaskRun
    );
    object_access!(
        variable,
        put_variable,
        delete_variable,
        scan_variables,
        variables,
        Variable
    );
    object_access!(
        external_event,
        put_external_event,
        delete_external_event,
        scan_external_events,
        external_events,
        ExternalEvent
    );
    object_access!(
        workflow_event,
        put_workflow_event,
        delete_workflow_event,
        scan_workflow_events,
        workflow_events,
        WorkflowEvent
    );
    object_access!(
        user_task_run,
        put_user_task_run,
        delete_user_task_run,
        scan_user_task_runs,
        user_task_runs,
        UserTaskRun
    );

    /// The tenant's metadata, as this task's replica has it.
    pub(crate) fn metadata(&self) -> MetadataView<'c, GlobalReplica<'_, 'a, 'b>> {
        MetadataView::new(
            GlobalReplica {
                ctx: self.ctx,
                store: &self.stores.metadata_global,
            },
            self.tenant,
        )
    }

    /// The partition of the task (and of every WfRun it holds).
    pub(crate) fn partition(&self) -> i32 {
        self.ctx.partition()
    }

    /// Queues a record for a tenant topic (a task queue), keyed by the WfRun id, on
    /// this task's partition, with the tenant header.
    pub(crate) fn send_to_queue(&mut self, topic: String, wf_run_id: &str, value: Vec<u8>) {
        let record = OutputRecord::new(
            topic,
            self.partition(),
            wf_run_id.as_bytes().to_vec(),
            value,
        )
        .with_header(TENANT_HEADER, self.tenant.as_bytes().to_vec());
        self.outputs.push(record);
    }

    /// Asks for `command` to come back to this task at `fire_at_ms`.
    pub(crate) fn schedule(&mut self, fire_at_ms: i64, command: Command) {
        self.timers.push(PendingTimer {
            fire_at_ms,
            command: TimerCommand {
                tenant: self.tenant.to_owned(),
                command: Some(command),
                deferrals: 0,
                answer: false,
            },
        });
    }

    /// Hands every buffered change, task-queue record, output-topic record and timer to
    /// the processor context, and returns the status changes of the runs it wrote.
    pub(crate) fn commit(self) -> Result<Vec<StatusChange>, ProcessingError> {
        let stores = self.stores;
        let ctx = self.ctx;
        let status_changes = self.wf_runs.status_changes(ctx, &stores.wf_runs)?;
        let mut changes: Vec<(u64, Change)> = Vec::new();
        macro_rules! flush {
            ($field:ident, $variant:ident) => {
                for (sequence, before, after) in self.$field.flush(ctx, &stores.$field)? {
                    changes.push((sequence, Change::$variant { before, after }));
                }
            };
        }
        flush!(wf_runs, WfRun);
        self.node_runs.flush(ctx, &stores.node_runs)?;
        flush!(task_runs, TaskRun);
        flush!(variables, Variable);
        flush!(external_events, ExternalEvent);
        flush!(workflow_events, WorkflowEvent);
        flush!(user_task_runs, UserTaskRun);

        let published = {
            let mut view = MetadataView::new(
                GlobalReplica {
                    ctx,
                    store: &stores.metadata_global,
                },
                self.tenant,
            );
            output::execution::records(changes, &mut view, self.topics, ctx.partition(), self.time)?
        };
        for output in self.outputs.into_iter().chain(published) {
            ctx.forward(output);
        }
        for timer in self.timers {
            let key = timer
                .command
                .command
                .as_ref()
                .map(|c| c.command_id.clone())
                .unwrap_or_default();
            ctx.schedule(
                timer.fire_at_ms,
                key.into_bytes(),
                timer.command.encode_to_vec(),
            );
        }
        Ok(status_changes)
    }

    /// Removes every object of a WfRun from every execution store.
    pub(crate) fn delete_everything_of(
        &mut self,
        wf_run_id: &str,
    ) -> Result<usize, ProcessingError> {
        let prefix = keys::wf_run(self.tenant, wf_run_id);
        let mut deleted = 0;
        macro_rules! clear {
            ($scan:ident, $delete:ident) => {
                for (key, _) in self.$scan(&prefix)? {
                    self.$delete(key);
                    deleted += 1;
                }
            };
        }
        clear!(scan_wf_runs, delete_wf_run);
        clear!(scan_node_runs, delete_node_run);
        clear!(scan_task_runs, delete_task_run);
        clear!(scan_variables, delete_variable);
        clear!(scan_external_events, delete_external_event);
        clear!(scan_workflow_events, delete_workflow_event);
        clear!(scan_user_task_runs, delete_user_task_run);
        Ok(deleted)
    }
}
