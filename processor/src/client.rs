//! The weir client: sends commands to a cluster's command topics and waits for their
//! `CommandResult`s on `command-results`. The `weir` command line, workers and load
//! drivers all talk to the core through it.
//!
//! One background task per `command-results` partition tails it from the end it had
//! when the client connected, and hands each result to whoever waits for that command
//! id; results nobody waits for are ignored.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weir_proto::command_result::Code;
use weir_proto::{
    AssignUserTaskRunRequest, CancelUserTaskRunRequest, Command, CommandResult,
    CompleteUserTaskRunRequest, MetadataCommand, PutExternalEventRequest, PutTaskDefRequest,
    RunWfRequest, UserTaskRunId, VariableValue, WfRunId, command, metadata_command,
};
use weir_topology::kafka::{BatchingProducer, KafkaAdmin, KafkaClient, KafkaError, TopicPartition};

use crate::config::WeirConfig;
use crate::topics::{CoreTopics, command_record, command_time_now, partition_for_key};

/// How long a command's result is waited for unless the client is told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one fetch of `command-results` waits at the broker.
const RESULTS_FETCH_WAIT: Duration = Duration::from_millis(200);
/// Largest fetch of `command-results`.
const RESULTS_FETCH_BYTES: i32 = 1024 * 1024;
/// Pause before a failed fetch of `command-results` is tried again.
const RESULTS_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Clients made by this process so far; part of every command id.
static CLIENTS: AtomicU64 = AtomicU64::new(0);

/// Why a command could not be sent or its answer not received. A command the core
/// refused is not an error here: it is a [`CommandResult`] with a code (see [`Refusal`]).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The broker could not be reached, or a produce or fetch failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// One of the core's topics is missing: no `weir server` has run on this cluster.
    #[error(
        "topic {topic} does not exist; start `weir server` for this LHS_CLUSTER_ID first (it creates the core's topics)"
    )]
    MissingTopic { topic: String },
    /// No `CommandResult` arrived in time.
    #[error("no answer to command {command_id} within {waited:?}; is `weir server` running?")]
    Timeout {
        command_id: String,
        waited: Duration,
    },
    /// The client was dropped while the command was waited for.
    #[error("the client closed before command {command_id} was answered")]
    Closed { command_id: String },
}

/// A command the core did not apply: its code and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str_name())]
pub struct Refusal {
    pub command_id: String,
    pub code: Code,
    pub message: String,
}

/// `Ok` with the result of an applied command, or the [`Refusal`] of a refused one.
pub fn accepted(result: CommandResult) -> Result<CommandResult, Refusal> {
    match Code::try_from(result.code) {
        Ok(Code::Ok) => Ok(result),
        code => Err(Refusal {
            command_id: result.command_id,
            // An unknown code from a newer core is still a refusal.
            code: code.unwrap_or(Code::Internal),
            message: if code.is_ok() {
                result.message
            } else {
                format!("(code {}) {}", result.code, result.message)
            },
        }),
    }
}

/// Decodes the id an applied command returned (a `WfRunId` for `run_wf`, a `WfSpecId`
/// for `put_wf_spec`); `None` when there is none or it does not decode as `M`.
pub fn result_id<M: Message + Default>(result: &CommandResult) -> Option<M> {
    result.result.as_deref().and_then(|b| M::decode(b).ok())
}

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<CommandResult>>>>;

/// A connection to one weir cluster's command topics. Cheap to clone; the clones share
/// the connection and the result tailers, which stop when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct WeirClient {
    inner: Arc<Inner>,
    timeout: Duration,
}

#[derive(Debug)]
struct Inner {
    config: WeirConfig,
    topics: CoreTopics,
    metadata_cmd: BatchingProducer,
    /// Commands submitted at once share produce requests.
    core_cmd: Vec<BatchingProducer>,
    waiters: Waiters,
    id_prefix: String,
    next_id: AtomicU64,
    tailers: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for tailer in &self.tailers {
            tailer.abort();
        }
        // Whoever still waits learns at once that no answer will come.
        lock(&self.waiters).clear();
    }
}

/// The answer to one sent command, still to come. Dropping it stops waiting.
#[derive(Debug)]
pub struct PendingResult {
    command_id: String,
    receiver: oneshot::Receiver<CommandResult>,
    waiters: Waiters,
    timeout: Duration,
}

impl PendingResult {
    /// The id of the command sent.
    pub fn command_id(&self) -> &str {
        &self.command_id
    }

    /// Waits for the command's result, up to the client's timeout.
    pub async fn wait(mut self) -> Result<CommandResult, ClientError> {
        match tokio::time::timeout(self.timeout, &mut self.receiver).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Err(ClientError::Closed {
                command_id: self.command_id.clone(),
            }),
            Err(_) => Err(ClientError::Timeout {
                command_id: self.command_id.clone(),
                waited: self.timeout,
            }),
        }
    }
}

impl Drop for PendingResult {
    fn drop(&mut self) {
        lock(&self.waiters).remove(&self.command_id);
    }
}

impl WeirClient {
    /// Connects to the cluster `config` names, checks that the core's topics exist, and
    /// starts tailing `command-results` from its current end.
    pub async fn connect(config: &WeirConfig) -> Result<Self, ClientError> {
        let kafka = config.kafka();
        let admin = KafkaAdmin::connect(&kafka).await?;
        let topics = CoreTopics::new(config);
        let mut partitions = BTreeMap::new();
        for topic in [
            topics.metadata_cmd(),
            topics.core_cmd(),
            topics.command_results(),
        ] {
            let described = match admin.describe_topics(std::slice::from_ref(&topic)).await {
                Ok(described) => described,
                Err(KafkaError::UnknownTopic { .. }) => {
                    return Err(ClientError::MissingTopic { topic });
                }
                Err(e) => return Err(e.into()),
            };
            let count = described.first().map_or(0, |t| t.partitions.len());
            if count == 0 {
                return Err(ClientError::MissingTopic { topic });
            }
            partitions.insert(topic, i32::try_from(count).unwrap_or(i32::MAX));
        }
        // Results are fetched on their own connection, so a produce never queues
        // behind the tailers' waiting fetches.
        let producer = KafkaClient::connect(&kafka).await?;
        let consumer = KafkaClient::connect(&kafka).await?;
        let metadata_cmd =
            BatchingProducer::new(producer.partition(&topics.metadata_cmd(), 0).await?);
        let mut core_cmd = Vec::new();
        for partition in 0..partitions[&topics.core_cmd()] {
            core_cmd.push(BatchingProducer::new(
                producer.partition(&topics.core_cmd(), partition).await?,
            ));
        }
        // Every tailer starts where the topic ends now, before anything is sent, so no
        // answer to this client's commands can be missed.
        let starts = futures::future::try_join_all((0..partitions[&topics.command_results()]).map(
            |partition| {
                let consumer = consumer.clone();
                let topic = topics.command_results();
                async move {
                    let handle = consumer.partition(&topic, partition).await?;
                    let start = handle.high_watermark().await?;
                    Ok::<_, KafkaError>((handle, start))
                }
            },
        ))
        .await?;
        let waiters: Waiters = Arc::default();
        let tailers = starts
            .into_iter()
            .map(|(handle, start)| tokio::spawn(tail_results(handle, start, Arc::clone(&waiters))))
            .collect();
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        Ok(Self {
            inner: Arc::new(Inner {
                config: config.clone(),
                topics,
                metadata_cmd,
                core_cmd,
                waiters,
                id_prefix: format!(
                    "{}-{started:x}-{}",
                    std::process::id(),
                    CLIENTS.fetch_add(1, Ordering::Relaxed)
                ),
                next_id: AtomicU64::new(0),
                tailers,
            }),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The same client, waiting `timeout` for each result.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long each result is waited for.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The topics this client sends to.
    pub fn topics(&self) -> &CoreTopics {
        &self.inner.topics
    }

    /// A command id no other client of any process has used: process id, connect
    /// time, client number and a counter.
    pub fn next_command_id(&self) -> String {
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.inner.id_prefix)
    }

    /// Sends a metadata command for `tenant` and waits for its result.
    pub async fn send_metadata(
        &self,
        tenant: &str,
        command: metadata_command::Command,
    ) -> Result<CommandResult, ClientError> {
        self.submit_metadata(tenant, command).await?.wait().await
    }

    /// Sends a metadata command for `tenant`; the result is waited for on the handle.
    pub async fn submit_metadata(
        &self,
        tenant: &str,
        command: metadata_command::Command,
    ) -> Result<PendingResult, ClientError> {
        let command_id = self.next_command_id();
        let value = MetadataCommand {
            command_id: command_id.clone(),
            time: Some(command_time_now()),
            command: Some(command),
        }
        .encode_to_vec();
        let key = command_id.clone().into_bytes();
        self.produce(&self.inner.metadata_cmd, tenant, command_id, key, value)
            .await
    }

    /// Sends an execution command about the WfRun `wf_run_key` for `tenant` and waits
    /// for its result.
    pub async fn send(
        &self,
        tenant: &str,
        wf_run_key: &str,
        command: command::Command,
    ) -> Result<CommandResult, ClientError> {
        self.submit(tenant, wf_run_key, command).await?.wait().await
    }

    /// Sends an execution command about the WfRun `wf_run_key` for `tenant`; the result
    /// is waited for on the handle, so many commands can be in flight at once.
    pub async fn submit(
        &self,
        tenant: &str,
        wf_run_key: &str,
        command: command::Command,
    ) -> Result<PendingResult, ClientError> {
        let command_id = self.next_command_id();
        self.submit_with_id(tenant, wf_run_key, command_id, command)
            .await
    }

    async fn submit_with_id(
        &self,
        tenant: &str,
        wf_run_key: &str,
        command_id: String,
        command: command::Command,
    ) -> Result<PendingResult, ClientError> {
        let value = Command {
            command_id: command_id.clone(),
            time: Some(command_time_now()),
            command: Some(command),
        }
        .encode_to_vec();
        let key = wf_run_key.as_bytes().to_vec();
        let partitions = i32::try_from(self.inner.core_cmd.len()).unwrap_or(i32::MAX);
        let partition = partition_for_key(&key, partitions);
        let handle = usize::try_from(partition)
            .ok()
            .and_then(|p| self.inner.core_cmd.get(p))
            .unwrap_or(&self.inner.core_cmd[0]);
        self.produce(handle, tenant, command_id, key, value).await
    }

    /// Registers a waiter for `command_id`, then produces the command.
    async fn produce(
        &self,
        partition: &BatchingProducer,
        tenant: &str,
        command_id: String,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<PendingResult, ClientError> {
        let (sender, receiver) = oneshot::channel();
        lock(&self.inner.waiters).insert(command_id.clone(), sender);
        // From here the handle owns the waiter: dropped on a failed produce, it is
        // removed again.
        let pending = PendingResult {
            command_id,
            receiver,
            waiters: Arc::clone(&self.inner.waiters),
            timeout: self.timeout,
        };
        partition.send(command_record(tenant, key, value)).await?;
        Ok(pending)
    }

    /// Starts a run of the latest version of `wf_spec_name` with `variables`, as WfRun
    /// `id` (or a fresh id), and waits for the result (a `WfRunId` when applied).
    pub async fn run_wf(
        &self,
        tenant: &str,
        wf_spec_name: &str,
        variables: BTreeMap<String, VariableValue>,
        id: Option<String>,
    ) -> Result<CommandResult, ClientError> {
        self.submit_run_wf(
            tenant,
            RunWfRequest {
                wf_spec_name: wf_spec_name.to_owned(),
                variables,
                id,
                ..RunWfRequest::default()
            },
        )
        .await?
        .wait()
        .await
    }

    /// Sends `request` (a run with its id, version and variables); a request without an
    /// id gets the command id as its WfRun id, set in the request so it is keyed by it.
    pub async fn submit_run_wf(
        &self,
        tenant: &str,
        mut request: RunWfRequest,
    ) -> Result<PendingResult, ClientError> {
        let command_id = self.next_command_id();
        let wf_run_id = request.id.get_or_insert_with(|| command_id.clone()).clone();
        self.submit_with_id(
            tenant,
            &wf_run_id,
            command_id,
            command::Command::RunWf(request),
        )
        .await
    }

    /// Posts an event of `event_def` carrying `content` to WfRun `wf_run_id`, and waits
    /// for the result.
    pub async fn post_event(
        &self,
        tenant: &str,
        wf_run_id: &str,
        event_def: &str,
        content: VariableValue,
        guid: Option<String>,
    ) -> Result<CommandResult, ClientError> {
        self.submit_post_event(tenant, wf_run_id, event_def, content, guid)
            .await?
            .wait()
            .await
    }

    /// Posts an event as [`WeirClient::post_event`] does, without waiting.
    pub async fn submit_post_event(
        &self,
        tenant: &str,
        wf_run_id: &str,
        event_def: &str,
        content: VariableValue,
        guid: Option<String>,
    ) -> Result<PendingResult, ClientError> {
        let request = PutExternalEventRequest {
            wf_run_id: Some(WfRunId {
                id: wf_run_id.to_owned(),
            }),
            external_event_def_name: event_def.to_owned(),
            guid,
            content: Some(content),
            thread_run_number: None,
            node_run_position: None,
        };
        self.submit(
            tenant,
            wf_run_id,
            command::Command::PutExternalEvent(request),
        )
        .await
    }

    /// Completes user task `user_task_guid` of WfRun `wf_run_id` as `user_id` with
    /// `results`, and waits for the result.
    pub async fn complete_user_task(
        &self,
        tenant: &str,
        wf_run_id: &str,
        user_task_guid: &str,
        user_id: &str,
        results: BTreeMap<String, VariableValue>,
    ) -> Result<CommandResult, ClientError> {
        let request = CompleteUserTaskRunRequest {
            user_task_run_id: Some(user_task_run_id(wf_run_id, user_task_guid)),
            results,
            user_id: user_id.to_owned(),
        };
        self.send(
            tenant,
            wf_run_id,
            command::Command::CompleteUserTaskRun(request),
        )
        .await
    }

    /// Assigns user task `user_task_guid` of WfRun `wf_run_id` to a person and/or a
    /// group, and waits for the result.
    pub async fn assign_user_task(
        &self,
        tenant: &str,
        wf_run_id: &str,
        user_task_guid: &str,
        user_id: Option<String>,
        user_group: Option<String>,
        override_claim: bool,
    ) -> Result<CommandResult, ClientError> {
        let request = AssignUserTaskRunRequest {
            user_task_run_id: Some(user_task_run_id(wf_run_id, user_task_guid)),
            user_id,
            user_group,
            override_claim,
        };
        self.send(
            tenant,
            wf_run_id,
            command::Command::AssignUserTaskRun(request),
        )
        .await
    }

    /// Cancels user task `user_task_guid` of WfRun `wf_run_id`, and waits for the result.
    pub async fn cancel_user_task(
        &self,
        tenant: &str,
        wf_run_id: &str,
        user_task_guid: &str,
        reason: Option<String>,
    ) -> Result<CommandResult, ClientError> {
        let request = CancelUserTaskRunRequest {
            user_task_run_id: Some(user_task_run_id(wf_run_id, user_task_guid)),
            reason,
        };
        self.send(
            tenant,
            wf_run_id,
            command::Command::CancelUserTaskRun(request),
        )
        .await
    }

    /// Creates TaskDef `request` for `tenant` and waits for the result. The TaskDef's
    /// queue topic is created first, since the core schedules tasks there.
    pub async fn put_task_def(
        &self,
        tenant: &str,
        request: PutTaskDefRequest,
    ) -> Result<CommandResult, ClientError> {
        self.ensure_task_queue(tenant, &request.name).await?;
        self.send_metadata(tenant, metadata_command::Command::PutTaskDef(request))
            .await
    }

    /// Creates the queue topic of `tenant`'s TaskDef `task_def`, if it is missing.
    pub async fn ensure_task_queue(&self, tenant: &str, task_def: &str) -> Result<(), ClientError> {
        let admin = KafkaAdmin::connect(&self.inner.config.kafka()).await?;
        admin
            .ensure_topics(&[self.inner.topics.task_queue_spec(tenant, task_def)])
            .await?;
        Ok(())
    }
}

fn user_task_run_id(wf_run_id: &str, user_task_guid: &str) -> UserTaskRunId {
    UserTaskRunId {
        wf_run_id: Some(WfRunId {
            id: wf_run_id.to_owned(),
        }),
        user_task_guid: user_task_guid.to_owned(),
    }
}

fn lock(
    waiters: &Waiters,
) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<CommandResult>>> {
    // The map stays consistent under any panic (single inserts and removes).
    waiters
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads one `command-results` partition from `offset` for ever, completing waiters.
async fn tail_results(handle: TopicPartition, mut offset: i64, waiters: Waiters) {
    loop {
        let records = match handle
            .fetch(offset, RESULTS_FETCH_BYTES, RESULTS_FETCH_WAIT)
            .await
        {
            Ok((records, _high_watermark)) => records,
            Err(error) => {
                tracing::warn!(
                    topic = handle.topic(),
                    partition = handle.partition(),
                    offset,
                    %error,
                    "fetching command results failed; retrying"
                );
                tokio::time::sleep(RESULTS_RETRY_PAUSE).await;
                continue;
            }
        };
        for record in records {
            if record.offset < offset {
                continue;
            }
            offset = record.offset + 1;
            let value = record.record.value.as_deref().unwrap_or_default();
            let result = match CommandResult::decode(value) {
                Ok(result) => result,
                Err(error) => {
                    tracing::warn!(
                        topic = handle.topic(),
                        partition = handle.partition(),
                        offset = record.offset,
                        %error,
                        "skipping a command result that does not decode"
                    );
                    continue;
                }
            };
            let waiter = lock(&waiters).remove(&result.command_id);
            if let Some(waiter) = waiter {
                // The waiter may have given up just now; nothing to do then.
                let _ = waiter.send(result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_the_code_name() {
        let ok = CommandResult {
            command_id: "c-1".to_owned(),
            code: Code::Ok as i32,
            message: String::new(),
            result: Some(
                WfRunId {
                    id: "run-1".to_owned(),
                }
                .encode_to_vec(),
            ),
        };
        let applied = accepted(ok).expect("ok result");
        assert_eq!(
            result_id::<WfRunId>(&applied).map(|id| id.id).as_deref(),
            Some("run-1")
        );
        let refused = CommandResult {
            command_id: "c-2".to_owned(),
            code: Code::AlreadyExists as i32,
            message: "wf-spec orders exists".to_owned(),
            result: None,
        };
        let refusal = accepted(refused).expect_err("refused");
        assert_eq!(refusal.code, Code::AlreadyExists);
        assert_eq!(refusal.to_string(), "ALREADY_EXISTS: wf-spec orders exists");
        let unknown = CommandResult {
            command_id: "c-3".to_owned(),
            code: 99,
            message: "new".to_owned(),
            result: None,
        };
        assert_eq!(
            accepted(unknown).expect_err("unknown code").to_string(),
            "INTERNAL: (code 99) new"
        );
    }
}
