//! The task worker library against the real broker: tasks put on a queue by hand (the
//! core processor is not involved) are claimed and reported on `core-cmd` with the
//! right status, key, partition and tenant, and a restarted worker neither redoes
//! committed tasks nor misses new ones.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weir_integration::{ConsumedRecord, TestNamespace, consume_until, produce_protobuf};
use weir_processor::config::WeirConfig;
use weir_processor::topics::{CoreTopics, TENANT_HEADER, partition_for_key};
use weir_processor::worker::{TaskError, Worker, WorkerError, WorkerStats};
use weir_proto::command::Command as CommandKind;
use weir_proto::report_task_run::Result as ReportResult;
use weir_proto::variable_value::Value;
use weir_proto::{
    Command, ScheduledTask, TaskRunId, TaskStatus, VarNameAndVal, VariableValue, WfRunId,
};
use weir_topology::kafka::{KafkaClient, Record, TopicSpec};

const PARTITIONS: i32 = 3;
const TENANT: &str = "acme";
const TASK_DEF: &str = "ship-item";
const WAIT: Duration = Duration::from_secs(60);

/// A WfRun's task and what the worker should report for it.
struct Case {
    wf_run_id: &'static str,
    item: &'static str,
    attempt: i32,
    status: TaskStatus,
    /// The output on success, the error message otherwise.
    result: ReportResult,
}

fn cases() -> Vec<Case> {
    let shipped = |item: &str| ReportResult::Output(str_value(&format!("shipped {item}")));
    vec![
        Case {
            wf_run_id: "order-1",
            item: "book",
            attempt: 0,
            status: TaskStatus::TaskSuccess,
            result: shipped("book"),
        },
        Case {
            wf_run_id: "order-2",
            item: "lamp",
            attempt: 2,
            status: TaskStatus::TaskSuccess,
            result: shipped("lamp"),
        },
        Case {
            wf_run_id: "order-3",
            item: "fail:warehouse offline",
            attempt: 0,
            status: TaskStatus::TaskFailed,
            result: ReportResult::ErrorMessage("warehouse offline".to_owned()),
        },
        Case {
            wf_run_id: "order-4",
            item: "exception:out of stock",
            attempt: 1,
            status: TaskStatus::TaskException,
            result: ReportResult::ErrorMessage("out of stock".to_owned()),
        },
        Case {
            wf_run_id: "order-5",
            item: "panic",
            attempt: 0,
            status: TaskStatus::TaskFailed,
            result: ReportResult::ErrorMessage(
                "task panicked: the forklift tipped over".to_owned(),
            ),
        },
        Case {
            wf_run_id: "order-6",
            item: "chair",
            attempt: 0,
            status: TaskStatus::TaskSuccess,
            result: shipped("chair"),
        },
    ]
}

fn str_value(text: &str) -> VariableValue {
    VariableValue {
        value: Some(Value::Str(text.to_owned())),
    }
}

/// The task function of the test: ships an item, or fails in the way the item says.
async fn ship(task: ScheduledTask) -> Result<VariableValue, TaskError> {
    let item = match task.variables.first().and_then(|v| v.value.clone()) {
        Some(VariableValue {
            value: Some(Value::Str(item)),
        }) => item,
        _ => return Err(TaskError::failed("no item to ship")),
    };
    if let Some(message) = item.strip_prefix("fail:") {
        return Err(TaskError::failed(message));
    }
    if let Some(message) = item.strip_prefix("exception:") {
        return Err(TaskError::exception(message));
    }
    if item == "panic" {
        panic!("the forklift tipped over");
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(str_value(&format!("shipped {item}")))
}

struct Setup {
    ns: TestNamespace,
    config: WeirConfig,
    topics: CoreTopics,
    client: KafkaClient,
}

impl Setup {
    async fn new(test: &str) -> Self {
        let ns = TestNamespace::new(test).await;
        let vars: HashMap<&str, String> = HashMap::from([
            ("LHS_KAFKA_BOOTSTRAP_SERVERS", ns.bootstrap.clone()),
            ("LHS_CLUSTER_ID", ns.cluster_id.clone()),
            ("LHS_CLUSTER_PARTITIONS", PARTITIONS.to_string()),
        ]);
        let config =
            WeirConfig::from_lookup(|name| vars.get(name).cloned()).expect("test configuration");
        let topics = CoreTopics::new(&config);
        ns.create_topic(TopicSpec::new(topics.core_cmd(), PARTITIONS, 1))
            .await;
        ns.create_topic(topics.task_queue_spec(TENANT, TASK_DEF))
            .await;
        let client = ns.client().await;
        Self {
            ns,
            config,
            topics,
            client,
        }
    }

    /// Puts the task of `case` on the queue partition of its WfRun.
    async fn schedule(&self, case: &Case) {
        let task = ScheduledTask {
            task_run_id: Some(TaskRunId {
                wf_run_id: Some(WfRunId {
                    id: case.wf_run_id.to_owned(),
                }),
                task_guid: format!("ship-{}", case.wf_run_id),
            }),
            task_def_name: TASK_DEF.to_owned(),
            attempt_number: case.attempt,
            variables: vec![VarNameAndVal {
                var_name: "item".to_owned(),
                value: Some(str_value(case.item)),
            }],
            created_at: Some(weir_proto::timestamp::from_millis(1_700_000_000_000)),
            tenant: TENANT.to_owned(),
        };
        produce_protobuf(
            &self.client,
            &self.topics.task_queue(TENANT, TASK_DEF),
            partition_for_key(case.wf_run_id.as_bytes(), PARTITIONS),
            case.wf_run_id,
            &[(TENANT_HEADER, TENANT.as_bytes())],
            &task,
        )
        .await;
    }

    /// A record on `partition` of the queue that is not a `ScheduledTask`.
    async fn schedule_garbage(&self, partition: i32) {
        let handle = self
            .client
            .partition(&self.topics.task_queue(TENANT, TASK_DEF), partition)
            .await
            .expect("queue partition");
        let record = Record {
            key: Some(b"garbage".to_vec()),
            // Field 1 with wire type 7, which protobuf does not have.
            value: Some(vec![0x0f, 0x01]),
            headers: BTreeMap::new(),
            timestamp: chrono::Utc::now(),
        };
        handle.produce(vec![record]).await.expect("produce garbage");
    }

    /// Starts a worker on every partition; the sender stops it.
    async fn start_worker(
        &self,
        worker_id: &str,
    ) -> (
        oneshot::Sender<()>,
        JoinHandle<Result<WorkerStats, WorkerError>>,
    ) {
        let worker = Worker::builder(&self.config, TENANT, TASK_DEF)
            .worker_id(worker_id)
            .commit_interval(Duration::from_millis(50))
            .build()
            .await
            .expect("worker builds");
        assert_eq!(
            worker.group(),
            format!("{}_worker_{TENANT}_{TASK_DEF}", self.ns.cluster_id)
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(async move {
            worker
                .run(ship, async {
                    let _ = stopped.await;
                })
                .await
        });
        (stop, running)
    }

    /// Every command on `core-cmd` once `done` holds for them.
    async fn commands(
        &self,
        what: &str,
        done: impl FnMut(&[ConsumedRecord]) -> bool,
    ) -> Vec<ConsumedRecord> {
        consume_until(
            &self.client,
            &self.topics.core_cmd(),
            PARTITIONS,
            WAIT,
            what,
            done,
        )
        .await
    }
}

/// Every record with its decoded command.
fn decoded(records: &[ConsumedRecord]) -> Vec<(&ConsumedRecord, Command)> {
    records.iter().map(|r| (r, r.decode::<Command>())).collect()
}

fn reports_for(records: &[ConsumedRecord], wf_run_id: &str) -> usize {
    decoded(records)
        .iter()
        .filter(|(_, c)| matches!(&c.command, Some(CommandKind::ReportTaskRun(_))))
        .filter(|(r, _)| r.key_str() == wf_run_id)
        .count()
}

async fn stop_worker(
    stop: oneshot::Sender<()>,
    running: JoinHandle<Result<WorkerStats, WorkerError>>,
) -> WorkerStats {
    let _ = stop.send(());
    tokio::time::timeout(WAIT, running)
        .await
        .expect("worker stops in time")
        .expect("worker task does not panic")
        .expect("worker runs without error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_claims_runs_and_reports_tasks_and_resumes_after_restart() {
    let setup = Setup::new("worker").await;
    let cases = cases();
    for case in &cases {
        setup.schedule(case).await;
    }
    setup.schedule_garbage(1).await;
    let touched: std::collections::BTreeSet<i32> = cases
        .iter()
        .map(|c| partition_for_key(c.wf_run_id.as_bytes(), PARTITIONS))
        .collect();
    assert!(touched.len() > 1, "the cases cover several partitions");

    let (stop, running) = setup.start_worker("worker-a").await;
    let records = setup
        .commands("a claim and a report per task", |seen| {
            cases.iter().all(|c| reports_for(seen, c.wf_run_id) >= 1)
        })
        .await;
    let stats = stop_worker(stop, running).await;
    assert_eq!(
        stats,
        WorkerStats {
            tasks_run: 6,
            succeeded: 3,
            failed: 2,
            exceptions: 1,
            skipped: 1,
        }
    );

    let commands = decoded(&records);
    for case in &cases {
        let guid = format!("ship-{}", case.wf_run_id);
        let mut of_case: Vec<&(&ConsumedRecord, Command)> = commands
            .iter()
            .filter(|(r, _)| r.key_str() == case.wf_run_id)
            .collect();
        of_case.sort_by_key(|(r, _)| r.offset);
        assert_eq!(
            of_case.len(),
            2,
            "{}: one claim and one report",
            case.wf_run_id
        );
        let expected_partition = partition_for_key(case.wf_run_id.as_bytes(), PARTITIONS);
        for (record, _) in &of_case {
            assert_eq!(record.partition, expected_partition, "{}", case.wf_run_id);
            assert_eq!(
                record.header_str(TENANT_HEADER).as_deref(),
                Some(TENANT),
                "{}",
                case.wf_run_id
            );
        }
        // The claim is produced before the function runs, so it comes first.
        let (claim_record, claim) = of_case[0];
        let (report_record, report) = of_case[1];
        assert!(claim_record.offset < report_record.offset);
        let attempt = case.attempt;
        assert_eq!(
            claim.command_id,
            format!("{}/{guid}/{attempt}/claim", case.wf_run_id)
        );
        assert!(claim.time.is_some());
        let Some(CommandKind::TaskClaimEvent(claim)) = &claim.command else {
            panic!(
                "{}: first command is not a claim: {claim:?}",
                case.wf_run_id
            );
        };
        assert_eq!(claim.attempt_number, attempt);
        assert_eq!(claim.worker_id, "worker-a");
        assert_eq!(
            claim.task_run_id.as_ref().map(|id| id.task_guid.as_str()),
            Some(guid.as_str())
        );

        assert_eq!(
            report.command_id,
            format!("{}/{guid}/{attempt}/report", case.wf_run_id)
        );
        let Some(CommandKind::ReportTaskRun(report)) = &report.command else {
            panic!(
                "{}: second command is not a report: {report:?}",
                case.wf_run_id
            );
        };
        assert_eq!(report.attempt_number, attempt, "{}", case.wf_run_id);
        assert_eq!(report.status, case.status as i32, "{}", case.wf_run_id);
        assert_eq!(
            report.result.as_ref(),
            Some(&case.result),
            "{}",
            case.wf_run_id
        );
        assert_eq!(report.worker_id.as_deref(), Some("worker-a"));
        assert!(report.time.is_some());
        assert_eq!(
            report
                .task_run_id
                .as_ref()
                .and_then(|id| id.wf_run_id.as_ref())
                .map(|id| id.id.as_str()),
            Some(case.wf_run_id)
        );
    }

    // A restarted worker of the same group starts past the committed tasks: it serves
    // the one scheduled after the restart and nothing else.
    let (stop, running) = setup.start_worker("worker-b").await;
    let late = Case {
        wf_run_id: "order-7",
        item: "desk",
        attempt: 0,
        status: TaskStatus::TaskSuccess,
        result: ReportResult::Output(str_value("shipped desk")),
    };
    setup.schedule(&late).await;
    setup
        .commands(
            "the report of the task scheduled after the restart",
            |seen| reports_for(seen, late.wf_run_id) >= 1,
        )
        .await;
    // Give a wrongly re-delivered task time to show up before stopping.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = stop_worker(stop, running).await;
    assert_eq!(
        stats,
        WorkerStats {
            tasks_run: 1,
            succeeded: 1,
            ..WorkerStats::default()
        }
    );
    let records = setup
        .commands("every command of both workers", |seen| seen.len() >= 14)
        .await;
    assert_eq!(
        records.len(),
        14,
        "6 tasks and 1 late task, a claim and a report each"
    );
    let late_commands: Vec<(&ConsumedRecord, Command)> = decoded(&records)
        .into_iter()
        .filter(|(r, _)| r.key_str() == late.wf_run_id)
        .collect();
    assert_eq!(late_commands.len(), 2);
    let Some(CommandKind::ReportTaskRun(report)) = &late_commands[1].1.command else {
        panic!("late task's second command is not a report");
    };
    assert_eq!(report.worker_id.as_deref(), Some("worker-b"));
    assert_eq!(report.result.as_ref(), Some(&late.result));
}

/// Like [`ship`], but never finishes an item called `hang`.
async fn ship_or_hang(task: ScheduledTask) -> Result<VariableValue, TaskError> {
    let hangs = task.variables.first().and_then(|v| v.value.clone()) == Some(str_value("hang"));
    if hangs {
        std::future::pending::<()>().await;
    }
    ship(task).await
}

/// A WfRun id whose commands (and tasks) go to `partition`.
fn wf_run_id_on(partition: i32) -> &'static str {
    let id = (0..)
        .map(|n| format!("run-{n}"))
        .find(|id| partition_for_key(id.as_bytes(), PARTITIONS) == partition)
        .expect("some id lands on every partition");
    Box::leak(id.into_boxed_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_worker_leaves_unreported_tasks_to_its_successor() {
    let setup = Setup::new("worker-crash").await;
    let hanging = Case {
        wf_run_id: wf_run_id_on(0),
        item: "hang",
        attempt: 0,
        status: TaskStatus::TaskSuccess,
        result: ReportResult::Output(str_value("shipped hang")),
    };
    let finished: Vec<Case> = (1..PARTITIONS)
        .map(|partition| Case {
            wf_run_id: wf_run_id_on(partition),
            item: "book",
            attempt: 0,
            status: TaskStatus::TaskSuccess,
            result: ReportResult::Output(str_value("shipped book")),
        })
        .collect();
    setup.schedule(&hanging).await;
    for case in &finished {
        setup.schedule(case).await;
    }

    let worker = Worker::builder(&setup.config, TENANT, TASK_DEF)
        .worker_id("worker-a")
        .commit_interval(Duration::from_millis(50))
        .build()
        .await
        .expect("worker builds");
    let group = worker.group().to_owned();
    let crashing =
        tokio::spawn(async move { worker.run(ship_or_hang, std::future::pending::<()>()).await });
    setup
        .commands("reports of the tasks that finish", |seen| {
            finished.iter().all(|c| reports_for(seen, c.wf_run_id) >= 1)
        })
        .await;
    // Wait until the finished tasks are committed; the hanging one holds its partition.
    let admin = setup.ns.admin().await;
    let queue = setup.topics.task_queue(TENANT, TASK_DEF);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let committed = admin
            .committed_offsets(&group, &queue, &[0, 1, 2])
            .await
            .expect("committed offsets");
        if committed == BTreeMap::from([(0, Some(0)), (1, Some(1)), (2, Some(1))]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "offsets never committed past the finished tasks: {committed:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The crash: everything stops at once, without a last commit.
    crashing.abort();
    let _ = crashing.await;

    let (stop, running) = setup.start_worker("worker-b").await;
    let records = setup
        .commands("the hanging task reported by the successor", |seen| {
            reports_for(seen, hanging.wf_run_id) >= 1
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = stop_worker(stop, running).await;
    assert_eq!(stats.tasks_run, 1, "only the unreported task runs again");

    let hanging_commands: Vec<(&ConsumedRecord, Command)> = decoded(&records)
        .into_iter()
        .filter(|(r, _)| r.key_str() == hanging.wf_run_id)
        .collect();
    let claimed_by: Vec<String> = hanging_commands
        .iter()
        .filter_map(|(_, c)| match &c.command {
            Some(CommandKind::TaskClaimEvent(claim)) => Some(claim.worker_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(claimed_by, vec!["worker-a", "worker-b"]);
    let records = setup
        .commands("every command", |seen| seen.len() >= 2 * finished.len() + 3)
        .await;
    for case in &finished {
        assert_eq!(
            reports_for(&records, case.wf_run_id),
            1,
            "{}",
            case.wf_run_id
        );
    }
    assert_eq!(reports_for(&records, hanging.wf_run_id), 1);
}
