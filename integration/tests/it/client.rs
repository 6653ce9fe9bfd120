//! The weir client and the `weir` workflow commands against the real broker. A small
//! fake core in the test answers every command (the real core's processors are not
//! needed): results come back to the right waiter, many commands can be in flight, a
//! missing answer times out naming the command, and the command line prints one line
//! for success, refusal and failure alike. `weir server` creates the core's topics and
//! stops cleanly.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;
use tokio::task::JoinHandle;
use weir_integration::{TestNamespace, WeirProcess};
use weir_processor::client::{ClientError, WeirClient, accepted, result_id};
use weir_processor::config::WeirConfig;
use weir_processor::topics::{CoreTopics, TENANT_HEADER, partition_for_key};
use weir_proto::command_result::Code;
use weir_proto::{
    Command, CommandResult, MetadataCommand, PutTaskDefRequest, PutTenantRequest, RunWfRequest,
    WfRunId, WfSpecId, command, metadata_command,
};
use weir_topology::kafka::{KafkaClient, Record, RecordAndOffset, TopicPartition, TopicSpec};

const PARTITIONS: i32 = 4;
const WAIT: Duration = Duration::from_secs(60);
/// A run of this WfSpec is never answered by the fake core.
const UNANSWERED: &str = "never-answered";

/// The configuration a client in `ns` uses, with `extra` variables.
fn config(ns: &TestNamespace, extra: &[(&str, &str)]) -> WeirConfig {
    let mut vars: BTreeMap<String, String> = ns.env().into_iter().collect();
    vars.insert("LHS_CLUSTER_PARTITIONS".to_owned(), PARTITIONS.to_string());
    for (k, v) in extra {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    WeirConfig::from_lookup(|name| vars.get(name).cloned()).expect("valid test configuration")
}

/// Creates the core's command and result topics, as `weir server` would.
async fn create_core_topics(ns: &TestNamespace, topics: &CoreTopics) {
    ns.create_topic(TopicSpec::new(topics.metadata_cmd(), 1, 1))
        .await;
    ns.create_topic(TopicSpec::new(topics.core_cmd(), topics.partitions, 1))
        .await;
    ns.create_topic(topics.command_results_spec()).await;
}

/// A stand-in for the core: reads both command topics from the start and answers each
/// command on `command-results`. It checks what the real core relies on (the tenant
/// header, the key, the partition) and refuses a command that gets any of it wrong.
async fn fake_core(client: KafkaClient, topics: CoreTopics) {
    let mut sources: Vec<(TopicPartition, i64)> = Vec::new();
    sources.push((
        client
            .partition(&topics.metadata_cmd(), 0)
            .await
            .expect("metadata-cmd"),
        0,
    ));
    for p in 0..topics.partitions {
        sources.push((
            client
                .partition(&topics.core_cmd(), p)
                .await
                .expect("core-cmd"),
            0,
        ));
    }
    let mut results = Vec::new();
    for p in 0..topics.partitions {
        results.push(
            client
                .partition(&topics.command_results(), p)
                .await
                .expect("command-results"),
        );
    }
    loop {
        for (handle, next) in &mut sources {
            let (records, _) = handle
                .fetch(*next, 1024 * 1024, Duration::from_millis(10))
                .await
                .expect("fake core fetch");
            let mut answers = BTreeMap::<i32, Vec<Record>>::new();
            for record in records {
                *next = record.offset + 1;
                let answer = if handle.topic() == topics.metadata_cmd() {
                    answer_metadata(&record)
                } else {
                    answer_command(&record, handle.partition(), topics.partitions)
                };
                if let Some(answer) = answer {
                    let partition =
                        partition_for_key(answer.command_id.as_bytes(), topics.partitions);
                    answers.entry(partition).or_default().push(Record {
                        key: Some(answer.command_id.clone().into_bytes()),
                        value: Some(answer.encode_to_vec()),
                        headers: BTreeMap::new(),
                        timestamp: chrono::Utc::now(),
                    });
                }
            }
            for (partition, records) in answers {
                results[partition as usize]
                    .produce(records)
                    .await
                    .expect("fake core produce");
            }
        }
    }
}

fn tenant_of(record: &RecordAndOffset) -> Option<String> {
    record
        .record
        .headers
        .get(TENANT_HEADER)
        .map(|t| String::from_utf8_lossy(t).into_owned())
}

fn answer(command_id: &str, code: Code, message: String, result: Option<Vec<u8>>) -> CommandResult {
    CommandResult {
        command_id: command_id.to_owned(),
        code: code as i32,
        message,
        result,
    }
}

fn answer_metadata(record: &RecordAndOffset) -> Option<CommandResult> {
    let command = MetadataCommand::decode(record.record.value.as_deref().unwrap_or_default())
        .expect("a MetadataCommand");
    let id = command.command_id.as_str();
    let Some(tenant) = tenant_of(record) else {
        return Some(answer(
            id,
            Code::InvalidArgument,
            "no tenant header".into(),
            None,
        ));
    };
    if record.record.key.as_deref() != Some(id.as_bytes()) || command.time.is_none() {
        return Some(answer(
            id,
            Code::InvalidArgument,
            "bad key or time".into(),
            None,
        ));
    }
    Some(match command.command? {
        metadata_command::Command::PutTaskDef(r) if r.name == "taken" => answer(
            id,
            Code::AlreadyExists,
            format!("task-def {} exists", r.name),
            None,
        ),
        metadata_command::Command::PutWfSpec(r) => {
            let spec = WfSpecId {
                name: r.name,
                major_version: 0,
                revision: 0,
            };
            answer(id, Code::Ok, tenant, Some(spec.encode_to_vec()))
        }
        _ => answer(id, Code::Ok, tenant, None),
    })
}

fn answer_command(
    record: &RecordAndOffset,
    partition: i32,
    partitions: i32,
) -> Option<CommandResult> {
    let command =
        Command::decode(record.record.value.as_deref().unwrap_or_default()).expect("a Command");
    let id = command.command_id.as_str();
    let key = record.record.key.clone().unwrap_or_default();
    let Some(tenant) = tenant_of(record) else {
        return Some(answer(
            id,
            Code::InvalidArgument,
            "no tenant header".into(),
            None,
        ));
    };
    if partition_for_key(&key, partitions) != partition || command.time.is_none() {
        return Some(answer(
            id,
            Code::InvalidArgument,
            "wrong partition".into(),
            None,
        ));
    }
    match command.command? {
        command::Command::RunWf(r) if r.wf_spec_name == UNANSWERED => None,
        command::Command::RunWf(r) => {
            let run = r.id.unwrap_or_default();
            if run.as_bytes() != key.as_slice() {
                return Some(answer(
                    id,
                    Code::InvalidArgument,
                    "not keyed by run".into(),
                    None,
                ));
            }
            let result = WfRunId { id: run }.encode_to_vec();
            Some(answer(id, Code::Ok, tenant, Some(result)))
        }
        _ => Some(answer(id, Code::Ok, tenant, None)),
    }
}

/// A fake core on `ns`'s topics, stopped when the handle is dropped.
struct FakeCore(JoinHandle<()>);

impl FakeCore {
    async fn start(ns: &TestNamespace, topics: &CoreTopics) -> Self {
        create_core_topics(ns, topics).await;
        Self(tokio::spawn(fake_core(ns.client().await, topics.clone())))
    }
}

impl Drop for FakeCore {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_waits_for_each_result_and_times_out_on_none() {
    let ns = TestNamespace::new("client-waits").await;
    let config = config(&ns, &[]);
    let topics = CoreTopics::new(&config);

    // Before any server made the topics, connecting says what is missing.
    let missing = WeirClient::connect(&config)
        .await
        .expect_err("no topics yet");
    assert!(
        matches!(missing, ClientError::MissingTopic { .. }),
        "{missing}"
    );

    let _core = FakeCore::start(&ns, &topics).await;
    let client = WeirClient::connect(&config).await.expect("connect");

    // A metadata command, answered with the tenant the header carried.
    let tenant = PutTenantRequest {
        id: "acme".to_owned(),
        output_topic_config: None,
    };
    let result = client
        .send_metadata("acme", metadata_command::Command::PutTenant(tenant))
        .await
        .expect("answered");
    let result = accepted(result).expect("applied");
    assert_eq!(result.message, "acme");

    // A refusal is a result with a code; the TaskDef's queue exists either way.
    let task_def = PutTaskDefRequest {
        name: "taken".to_owned(),
        ..PutTaskDefRequest::default()
    };
    let refusal = accepted(
        client
            .put_task_def("acme", task_def)
            .await
            .expect("answered"),
    )
    .expect_err("refused");
    assert_eq!(refusal.code, Code::AlreadyExists);
    assert_eq!(refusal.to_string(), "ALREADY_EXISTS: task-def taken exists");
    let queue = ns
        .admin()
        .await
        .describe_topics(&[topics.task_queue("acme", "taken")])
        .await
        .expect("task queue created");
    assert_eq!(queue[0].partitions.len(), PARTITIONS as usize);

    // A run without an id is keyed by, and named after, its command id.
    let result = client
        .run_wf("default", "orders", BTreeMap::new(), None)
        .await
        .expect("answered");
    let run = result_id::<WfRunId>(&accepted(result).expect("applied")).expect("a WfRunId");
    assert!(!run.id.is_empty());

    // 200 runs in flight at once, each answered to its own waiter.
    let submits = (0..200).map(|i| {
        let client = client.clone();
        async move {
            let request = RunWfRequest {
                wf_spec_name: "orders".to_owned(),
                id: Some(format!("run-{i}")),
                ..RunWfRequest::default()
            };
            client.submit_run_wf("acme", request).await
        }
    });
    let pending: Vec<_> = join_all(submits)
        .await
        .into_iter()
        .map(|p| p.expect("produced"))
        .collect();
    let ids: std::collections::BTreeSet<_> =
        pending.iter().map(|p| p.command_id().to_owned()).collect();
    assert_eq!(ids.len(), 200, "command ids are unique");
    let results = join_all(pending.into_iter().map(|p| p.wait())).await;
    for (i, result) in results.into_iter().enumerate() {
        let result = accepted(result.expect("answered")).expect("applied");
        let run = result_id::<WfRunId>(&result).expect("a WfRunId");
        assert_eq!(run.id, format!("run-{i}"));
    }

    // No answer: a timeout naming the command.
    let impatient = client.clone().with_timeout(Duration::from_secs(1));
    let pending = impatient
        .submit_run_wf(
            "acme",
            RunWfRequest {
                wf_spec_name: UNANSWERED.to_owned(),
                ..RunWfRequest::default()
            },
        )
        .await
        .expect("produced");
    let command_id = pending.command_id().to_owned();
    let error = pending.wait().await.expect_err("no answer");
    assert!(
        matches!(&error, ClientError::Timeout { command_id: c, .. } if *c == command_id),
        "{error}"
    );
    assert!(error.to_string().contains(&command_id), "{error}");
}

/// Runs all `futures` concurrently, each on its own task, and returns their outputs
/// in order.
async fn join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.expect("task finished"));
    }
    outputs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_prints_one_line_for_ok_refusal_and_failure() {
    let ns = TestNamespace::new("client-cli").await;
    let config = config(&ns, &[]);
    let topics = CoreTopics::new(&config);
    let _core = FakeCore::start(&ns, &topics).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut env = ns.env();
    env.push(("LHS_CLUSTER_PARTITIONS".to_owned(), PARTITIONS.to_string()));

    let spec = dir.path().join("orders.yaml");
    std::fs::write(
        &spec,
        "name: orders\nentrypoint_thread_name: main\nthread_specs:\n  main:\n    nodes:\n      start: {entrypoint: {}}\n",
    )
    .expect("write spec");
    let spec = spec.display().to_string();
    let stdout = run_ok(&["put", "wf-spec", &spec, "--tenant", "acme"], &env).await;
    assert_eq!(stdout, "ok: wf-spec orders version 0.0\n");

    let stdout = run_ok(
        &["run", "orders", "--var", "amount=5", "--id", "order-1"],
        &env,
    )
    .await;
    assert_eq!(stdout, "ok: started WfRun order-1\n");
    let stdout = run_ok(&["post-event", "order-1", "paid", "42"], &env).await;
    assert_eq!(stdout, "ok: posted paid to WfRun order-1\n");
    let stdout = run_ok(&["stop", "order-1"], &env).await;
    assert_eq!(stdout, "ok: stopped WfRun order-1\n");

    // A refusal: `weir: CODE: message`, exit 1.
    let taken = dir.path().join("taken.json");
    std::fs::write(&taken, r#"{"name": "taken"}"#).expect("write spec");
    let mut weir = WeirProcess::start(
        "cli-refused",
        &["put", "task-def", &taken.display().to_string()],
        &env,
    );
    let status = weir.wait_for_exit(WAIT).await;
    assert_eq!(status.code(), Some(1), "stderr: {}", weir.stderr());
    assert_eq!(
        weir.stderr(),
        "weir: ALREADY_EXISTS: task-def taken exists\n"
    );

    // No answer within --timeout: one line naming the command.
    let mut weir = WeirProcess::start("cli-timeout", &["run", UNANSWERED, "--timeout", "1"], &env);
    let status = weir.wait_for_exit(WAIT).await;
    assert!(!status.success());
    let stderr = weir.stderr();
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(
        stderr.starts_with("weir: no answer to command "),
        "{stderr}"
    );
}

/// Runs `weir ARGS` to a successful exit and returns its stdout.
async fn run_ok(args: &[&str], env: &[(String, String)]) -> String {
    let name = format!("cli-{}", args.join("-").replace(['/', '.'], "_"));
    WeirProcess::run_ok(&name, args, env, WAIT).await
}

#[tokio::test]
async fn cli_fails_in_one_line_without_file_or_broker() {
    let mut weir = WeirProcess::start(
        "cli-missing-file",
        &["put", "task-def", "missing.json"],
        &[],
    );
    let status = weir.wait_for_exit(WAIT).await;
    assert!(!status.success());
    let stderr = weir.stderr();
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(
        stderr.starts_with("weir: cannot read missing.json"),
        "{stderr}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let env = [
        (
            "LHS_KAFKA_BOOTSTRAP_SERVERS".to_owned(),
            format!("127.0.0.1:{port}"),
        ),
        ("LHS_KAFKA_CONNECT_TIMEOUT_MS".to_owned(), "1000".to_owned()),
    ];
    let mut weir = WeirProcess::start("cli-no-broker", &["run", "x"], &env);
    let status = weir.wait_for_exit(WAIT).await;
    assert!(!status.success());
    let stderr = weir.stderr();
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(
        stderr.starts_with("weir: could not reach a Kafka broker"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn cli_server_creates_the_core_topics_and_stops_on_sigterm() {
    let ns = TestNamespace::new("client-server").await;
    let state = tempfile::tempdir().expect("temp dir");
    let mut env = ns.env();
    env.push(("LHS_CLUSTER_PARTITIONS".to_owned(), "3".to_owned()));
    env.push((
        "LHS_STATE_DIR".to_owned(),
        state.path().display().to_string(),
    ));
    let mut server = WeirProcess::start("cli-server", &["server"], &env);
    server
        .wait_for_stdout(WAIT, "the server's running line", |out| {
            out.contains("weir server running tasks ")
        })
        .await;
    let admin = ns.admin().await;
    for (suffix, partitions) in [("core-cmd", 3), ("metadata-cmd", 1), ("command-results", 3)] {
        let described = admin
            .describe_topics(&[ns.topic(suffix)])
            .await
            .unwrap_or_else(|e| panic!("{suffix}: {e}"));
        assert_eq!(described[0].partitions.len(), partitions, "{suffix}");
    }
    server.sigterm();
    let status = server.wait_for_exit(WAIT).await;
    assert!(
        status.success(),
        "SIGTERM should stop the server cleanly, got {status}; stderr: {}",
        server.stderr()
    );
    assert!(server.stdout().contains("weir server stopped"));

    // Without topic creation and without topics: an error naming the missing topic.
    let bare = TestNamespace::new("client-server-bare").await;
    let mut env = bare.env();
    env.push(("LHS_SHOULD_CREATE_TOPICS".to_owned(), "false".to_owned()));
    env.push((
        "LHS_STATE_DIR".to_owned(),
        state.path().join("bare").display().to_string(),
    ));
    let mut server = WeirProcess::start("cli-server-bare", &["server"], &env);
    let status = server.wait_for_exit(WAIT).await;
    assert!(!status.success());
    let stderr = server.stderr();
    let error = stderr
        .lines()
        .find(|l| l.starts_with("weir: "))
        .unwrap_or_else(|| panic!("no error line in {stderr}"));
    assert!(
        error.contains(&format!("topic {}_", bare.cluster_id)) && error.contains("does not exist"),
        "{error}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
