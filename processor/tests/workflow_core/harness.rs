//! A workflow core on the topology test driver: metadata and execution commands in,
//! command results, scheduled tasks and stored objects out.

use std::collections::BTreeMap;
use std::sync::Arc;

use prost::Message;
use weir_processor::config::WeirConfig;
use weir_processor::core::{self, CoreStores, keys};
use weir_processor::topics::{CoreTopics, TENANT_HEADER, partition_for_key};
use weir_proto::command_result::Code;
use weir_proto::variable_value::Value;
use weir_proto::{
    Command, CommandResult, ExternalEvent, MetadataCommand, NodeRun, PutExternalEventRequest,
    ReportTaskRun, RunWfRequest, ScheduledTask, TaskClaimEvent, TaskRun, TaskRunId, TaskStatus,
    UserTaskRun, Variable, VariableValue, WfRun, WfRunId, WorkflowEvent, command, metadata_command,
    report_task_run,
};
use weir_topology::TopologyTestDriver;
use weir_topology::task::RecordOutcome;

pub(crate) const CLUSTER: &str = "weir";

pub(crate) struct Core {
    pub(crate) driver: TopologyTestDriver,
    pub(crate) stores: Arc<CoreStores>,
    pub(crate) topics: CoreTopics,
    pub(crate) now_ms: i64,
    next_command: u64,
    /// Id of the last execution command sent.
    last_sent: String,
    _dir: tempfile::TempDir,
}

pub(crate) fn text(s: &str) -> VariableValue {
    VariableValue {
        value: Some(Value::Str(s.to_owned())),
    }
}

pub(crate) fn int(i: i64) -> VariableValue {
    VariableValue {
        value: Some(Value::Int(i)),
    }
}

impl Core {
    pub(crate) fn new() -> Self {
        Self::with_partitions(3, 3)
    }

    /// A core whose `core-cmd` has `partitions` partitions and whose execution-output
    /// topics have `output_partitions`.
    pub(crate) fn with_partitions(partitions: i32, output_partitions: i32) -> Self {
        let vars = [
            ("LHS_CLUSTER_PARTITIONS", partitions.to_string()),
            ("LHS_OUTPUT_TOPIC_PARTITIONS", output_partitions.to_string()),
        ];
        let config = WeirConfig::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        })
        .expect("config");
        let topics = CoreTopics::new(&config);
        let (topology, stores) = core::topology(&topics).expect("topology");
        let dir = tempfile::tempdir().expect("temp dir");
        let driver = TopologyTestDriver::new(topology, CLUSTER, dir.path()).expect("driver");
        Self {
            driver,
            stores,
            topics,
            now_ms: 1_700_000_000_000,
            next_command: 0,
            last_sent: String::new(),
            _dir: dir,
        }
    }

    /// Closes every task and opens it again on its committed state, as a restart does.
    pub(crate) fn reopen(self) -> Self {
        let Self {
            driver,
            topics,
            now_ms,
            next_command,
            last_sent,
            _dir,
            ..
        } = self;
        // The tasks' RocksDB must be closed before they are opened again.
        drop(driver);
        let (topology, stores) = core::topology(&topics).expect("topology");
        let driver = TopologyTestDriver::new(topology, CLUSTER, _dir.path()).expect("driver");
        Self {
            driver,
            stores,
            topics,
            now_ms,
            next_command,
            last_sent,
            _dir,
        }
    }

    fn command_id(&mut self) -> String {
        self.next_command += 1;
        format!("cmd-{}", self.next_command)
    }

    /// The answer to the last execution command sent, once there is one.
    pub(crate) fn answer_to_last(&self) -> Option<CommandResult> {
        self.result_of(&self.last_sent)
    }

    fn result_of(&self, command_id: &str) -> Option<CommandResult> {
        self.driver
            .outputs_to(&self.topics.command_results())
            .into_iter()
            .filter_map(|o| {
                CommandResult::decode(o.record.value.as_deref().unwrap_or_default()).ok()
            })
            .rfind(|r| r.command_id == command_id)
    }

    /// Puts metadata in `tenant` and returns the answer.
    pub(crate) fn put(&mut self, tenant: &str, kind: metadata_command::Command) -> CommandResult {
        let command_id = self.command_id();
        let command = MetadataCommand {
            command_id: command_id.clone(),
            time: Some(weir_proto::timestamp::from_millis(self.now_ms)),
            command: Some(kind),
        };
        let headers = [(TENANT_HEADER, tenant.as_bytes())];
        self.driver
            .pipe(
                &self.topics.metadata_cmd(),
                0,
                Some(command_id.as_bytes()),
                Some(&command.encode_to_vec()),
                &headers,
                self.now_ms,
            )
            .expect("pipe metadata");
        self.result_of(&command_id)
            .expect("a metadata command is answered")
    }

    /// Puts metadata and insists it is accepted.
    pub(crate) fn put_ok(&mut self, tenant: &str, kind: metadata_command::Command) {
        let result = self.put(tenant, kind);
        assert_eq!(
            result.code(),
            Code::Ok,
            "metadata refused: {}",
            result.message
        );
    }

    /// Sends an execution command keyed by `key`; returns its answer, if any yet.
    pub(crate) fn send(
        &mut self,
        tenant: &str,
        key: &str,
        kind: command::Command,
    ) -> Option<CommandResult> {
        let command_id = self.command_id();
        let command = Command {
            command_id: command_id.clone(),
            time: Some(weir_proto::timestamp::from_millis(self.now_ms)),
            command: Some(kind),
        };
        self.last_sent.clone_from(&command_id);
        self.send_raw(tenant, key, &command.encode_to_vec());
        self.result_of(&command_id)
    }

    /// Sends raw bytes to the partition of `key`.
    pub(crate) fn send_raw(&mut self, tenant: &str, key: &str, value: &[u8]) -> RecordOutcome {
        let partition = partition_for_key(key.as_bytes(), self.topics.partitions);
        let headers = [(TENANT_HEADER, tenant.as_bytes())];
        self.driver
            .pipe(
                &self.topics.core_cmd(),
                partition,
                Some(key.as_bytes()),
                Some(value),
                &headers,
                self.now_ms,
            )
            .expect("pipe command")
    }

    /// Sends a command and insists it is answered OK.
    pub(crate) fn send_ok(&mut self, tenant: &str, key: &str, kind: command::Command) {
        let result = self.send(tenant, key, kind).expect("answered");
        assert_eq!(
            result.code(),
            Code::Ok,
            "command refused: {}",
            result.message
        );
    }

    pub(crate) fn run(
        &mut self,
        tenant: &str,
        spec: &str,
        id: &str,
        vars: &[(&str, VariableValue)],
    ) -> CommandResult {
        let request = RunWfRequest {
            wf_spec_name: spec.to_owned(),
            major_version: None,
            revision: None,
            variables: vars
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.clone()))
                .collect(),
            id: Some(id.to_owned()),
        };
        self.send(tenant, id, command::Command::RunWf(request))
            .expect("answered")
    }

    pub(crate) fn post_event(
        &mut self,
        tenant: &str,
        wf_run: &str,
        def: &str,
        content: VariableValue,
    ) -> CommandResult {
        let request = PutExternalEventRequest {
            wf_run_id: Some(WfRunId {
                id: wf_run.to_owned(),
            }),
            external_event_def_name: def.to_owned(),
            guid: None,
            content: Some(content),
            thread_run_number: None,
            node_run_position: None,
        };
        self.send(tenant, wf_run, command::Command::PutExternalEvent(request))
            .expect("answered")
    }

    /// Moves time on (command time and wall clock) and fires due timers.
    pub(crate) fn advance(&mut self, ms: i64) {
        self.now_ms += ms;
        self.driver.advance_wall_clock(self.now_ms).expect("timers");
    }

    /// Every task put on the queue of `(tenant, task_def)`, in order.
    pub(crate) fn scheduled(&self, tenant: &str, task_def: &str) -> Vec<ScheduledTask> {
        self.driver
            .outputs_to(&self.topics.task_queue(tenant, task_def))
            .into_iter()
            .map(|o| {
                let task = ScheduledTask::decode(o.record.value.as_deref().unwrap_or_default())
                    .expect("ScheduledTask");
                let wf_run = task
                    .task_run_id
                    .as_ref()
                    .and_then(|i| i.wf_run_id.as_ref())
                    .map(|w| w.id.clone())
                    .unwrap_or_default();
                assert_eq!(
                    o.record.partition,
                    partition_for_key(wf_run.as_bytes(), self.topics.partitions),
                    "task on its WfRun's partition"
                );
                assert_eq!(
                    o.record.headers.get(TENANT_HEADER).map(|h| h.to_vec()),
                    Some(tenant.as_bytes().to_vec())
                );
                task
            })
            .collect()
    }

    /// The latest scheduled attempt of `task_def` for `wf_run`.
    pub(crate) fn last_scheduled(
        &self,
        tenant: &str,
        task_def: &str,
        wf_run: &str,
    ) -> ScheduledTask {
        self.scheduled(tenant, task_def)
            .into_iter()
            .rfind(|t| {
                t.task_run_id
                    .as_ref()
                    .and_then(|i| i.wf_run_id.as_ref())
                    .is_some_and(|w| w.id == wf_run)
            })
            .unwrap_or_else(|| panic!("no {task_def} task scheduled for {wf_run}"))
    }

    pub(crate) fn report(
        &mut self,
        tenant: &str,
        task: &ScheduledTask,
        status: TaskStatus,
        result: Option<report_task_run::Result>,
    ) -> CommandResult {
        let report = ReportTaskRun {
            task_run_id: task.task_run_id.clone(),
            attempt_number: task.attempt_number,
            time: Some(weir_proto::timestamp::from_millis(self.now_ms)),
            status: status as i32,
            result,
            worker_id: Some("test-worker".to_owned()),
        };
        let key = wf_run_of(task.task_run_id.as_ref());
        self.send(tenant, &key, command::Command::ReportTaskRun(report))
            .expect("answered")
    }

    pub(crate) fn succeed(&mut self, tenant: &str, task: &ScheduledTask, output: VariableValue) {
        let result = self.report(
            tenant,
            task,
            TaskStatus::TaskSuccess,
            Some(report_task_run::Result::Output(output)),
        );
        assert_eq!(
            result.code(),
            Code::Ok,
            "report refused: {}",
            result.message
        );
    }

    pub(crate) fn fail(&mut self, tenant: &str, task: &ScheduledTask, message: &str) {
        let result = self.report(
            tenant,
            task,
            TaskStatus::TaskFailed,
            Some(report_task_run::Result::ErrorMessage(message.to_owned())),
        );
        assert_eq!(
            result.code(),
            Code::Ok,
            "report refused: {}",
            result.message
        );
    }

    pub(crate) fn claim(&mut self, tenant: &str, task: &ScheduledTask) -> CommandResult {
        let claim = TaskClaimEvent {
            task_run_id: task.task_run_id.clone(),
            attempt_number: task.attempt_number,
            worker_id: "test-worker".to_owned(),
        };
        let key = wf_run_of(task.task_run_id.as_ref());
        self.send(tenant, &key, command::Command::TaskClaimEvent(claim))
            .expect("answered")
    }

    pub(crate) fn partition_of(&self, wf_run: &str) -> i32 {
        partition_for_key(wf_run.as_bytes(), self.topics.partitions)
    }

    fn find<V: Message + Default>(
        &self,
        store: &weir_topology::StoreHandle<V>,
        wf_run: &str,
        key: &[u8],
    ) -> Option<V> {
        self.driver
            .store_contents(store, self.partition_of(wf_run))
            .expect("store")
            .into_iter()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, v)| v)
    }

    fn all_of<V: Message + Default>(
        &self,
        store: &weir_topology::StoreHandle<V>,
        tenant: &str,
        wf_run: &str,
    ) -> Vec<V> {
        let prefix = keys::wf_run(tenant, wf_run);
        self.driver
            .store_contents(store, self.partition_of(wf_run))
            .expect("store")
            .into_iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v)
            .collect()
    }

    pub(crate) fn wf_run(&self, tenant: &str, id: &str) -> Option<WfRun> {
        self.find(&self.stores.wf_runs, id, &keys::wf_run(tenant, id))
    }

    pub(crate) fn variable(&self, tenant: &str, id: &str, name: &str) -> Option<VariableValue> {
        self.find(
            &self.stores.variables,
            id,
            &keys::variable(tenant, id, 0, name),
        )
        .and_then(|v: Variable| v.value)
    }

    pub(crate) fn node_runs(&self, tenant: &str, id: &str) -> Vec<NodeRun> {
        self.all_of(&self.stores.node_runs, tenant, id)
    }

    pub(crate) fn task_runs(&self, tenant: &str, id: &str) -> Vec<TaskRun> {
        self.all_of(&self.stores.task_runs, tenant, id)
    }

    pub(crate) fn external_events(&self, tenant: &str, id: &str) -> Vec<ExternalEvent> {
        self.all_of(&self.stores.external_events, tenant, id)
    }

    pub(crate) fn workflow_events(&self, tenant: &str, id: &str) -> Vec<WorkflowEvent> {
        self.all_of(&self.stores.workflow_events, tenant, id)
    }

    pub(crate) fn user_task_runs(&self, tenant: &str, id: &str) -> Vec<UserTaskRun> {
        self.all_of(&self.stores.user_task_runs, tenant, id)
    }

    /// Every object of a run in every store, for "nothing changed" checks.
    pub(crate) fn snapshot(&self, tenant: &str, id: &str) -> BTreeMap<&'static str, Vec<Vec<u8>>> {
        let mut all = BTreeMap::new();
        all.insert(
            "wf_runs",
            self.all_of(&self.stores.wf_runs, tenant, id)
                .iter()
                .map(Message::encode_to_vec)
                .collect(),
        );
        all.insert(
            "node_runs",
            self.node_runs(tenant, id)
                .iter()
                .map(Message::encode_to_vec)
                .collect(),
        );
        all.insert(
            "task_runs",
            self.task_runs(tenant, id)
                .iter()
                .map(Message::encode_to_vec)
                .collect(),
        );
        all.insert(
            "variables",
            self.all_of(&self.stores.variables, tenant, id)
                .iter()
                .map(Message::encode_to_vec)
                .collect(),
        );
        all.insert(
            "external_events",
            self.external_events(tenant, id)
                .iter()
                .map(Message::encode_to_vec)
                .collect(),
        );
        all.insert(
            "user_task_runs",
            self.user_task_runs(tenant, id)
                .iter()
                .map(Message::encode_to_vec)
                .collect(),
        );
        all
    }
}

pub(crate) fn wf_run_of(id: Option<&TaskRunId>) -> String {
    id.and_then(|i| i.wf_run_id.as_ref())
        .map(|w| w.id.clone())
        .unwrap_or_default()
}
