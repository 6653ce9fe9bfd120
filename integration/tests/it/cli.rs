//! The `weir` command line against a real `weir server`: the orders example's spec files
//! put with `weir put`, runs started, stopped, resumed and deleted, a user task completed,
//! and each refusal printed as one `weir: CODE: message` line with exit status 1. The
//! test talks to the server only through the CLI; it reads the task queue and the
//! committed runs to check what the commands did.

use std::path::Path;
use std::time::Duration;

use prost::Message;
use weir_integration::WeirProcess;
use weir_processor::inspect::RunSnapshot;
use weir_processor::topics::CoreTopics;
use weir_proto::variable_value::Value;
use weir_proto::{LhStatus, ScheduledTask, VarNameAndVal, VariableValue};

use crate::cluster::{Cluster, stop_server};

const WAIT: Duration = Duration::from_secs(60);

/// The orders example's spec files.
fn spec(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/specs/orders")
        .join(file)
        .display()
        .to_string()
}

/// A `weir server` on its own cluster (3 partitions, to keep it light), and the `weir`
/// commands the test sends it.
struct Server {
    cluster: Cluster,
    process: WeirProcess,
}

impl Server {
    async fn start(name: &str) -> Self {
        let cluster = Cluster::with_env(name, &[("LHS_CLUSTER_PARTITIONS", "3")]).await;
        let process = cluster.start_server(&format!("{name}-server")).await;
        Self { cluster, process }
    }

    /// Runs `weir ARGS`, expects exit 0 and nothing on stderr, and returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        WeirProcess::run_ok(&self.process_name(args), args, self.cluster.env(), WAIT).await
    }

    /// Runs `weir ARGS`, expects exit 1 and nothing on stdout, and returns stderr.
    async fn refused(&self, args: &[&str]) -> String {
        let mut weir = WeirProcess::start(&self.process_name(args), args, self.cluster.env());
        let status = weir.wait_for_exit(WAIT).await;
        assert_eq!(
            status.code(),
            Some(1),
            "weir {args:?}: stdout {:?}, stderr {:?}",
            weir.stdout(),
            weir.stderr()
        );
        assert_eq!(weir.stdout(), "", "weir {args:?} wrote to stdout");
        let stderr = weir.stderr();
        assert_eq!(stderr.lines().count(), 1, "weir {args:?}: {stderr}");
        stderr
    }

    /// A name for the output files of `weir ARGS`, unique to this cluster.
    fn process_name(&self, args: &[&str]) -> String {
        let words: Vec<&str> = args
            .iter()
            .take(3)
            .map(|a| a.rsplit('/').next().unwrap_or(a))
            .collect();
        format!("{}-{}", self.cluster.ns.cluster_id, words.join("-"))
    }

    /// The first task on `task_def`'s queue of the default tenant for WfRun `wf_run`,
    /// waiting for it to arrive.
    async fn scheduled_task(&self, task_def: &str, wf_run: &str) -> ScheduledTask {
        let kafka = self.cluster.ns.client().await;
        let queue = CoreTopics::new(&self.cluster.config).task_queue("default", task_def);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            for partition in 0..self.cluster.config.cluster_partitions {
                let handle = kafka.partition(&queue, partition).await.expect("queue");
                let (records, _) = handle
                    .fetch(0, 1024 * 1024, Duration::from_millis(100))
                    .await
                    .expect("fetch");
                for record in records {
                    let task =
                        ScheduledTask::decode(record.record.value.as_deref().unwrap_or_default())
                            .expect("a ScheduledTask");
                    let of_run = task
                        .task_run_id
                        .as_ref()
                        .and_then(|id| id.wf_run_id.as_ref())
                        .is_some_and(|id| id.id == wf_run);
                    if of_run {
                        return task;
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {task_def} task for {wf_run} on {queue}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the committed WfRun `wf_run` has `status`.
    async fn wait_for_run(&self, wf_run: &str, status: LhStatus) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let runs = self.cluster.runs("default").await;
            let current = runs.get(wf_run).map(RunSnapshot::status);
            if current == Some(status) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "WfRun {wf_run} is {current:?}, not {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn stop(self) {
        stop_server(self.process).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_puts_the_orders_spec_files_and_drives_runs_on_a_real_server() {
    let server = Server::start("cli-orders").await;

    for task_def in ["fetch-price", "charge-credit-card", "ship-item"] {
        let file = spec(&format!("{task_def}.task-def.yaml"));
        assert_eq!(
            server.ok(&["put", "task-def", &file]).await,
            format!("ok: task-def {task_def}\n")
        );
    }
    let event_def = spec("item-delivered.external-event-def.yaml");
    assert_eq!(
        server.ok(&["put", "external-event-def", &event_def]).await,
        "ok: external-event-def item-delivered\n"
    );
    let orders = spec("orders.wf-spec.yaml");
    // The second put of the same spec changes nothing and names the same version.
    for _ in 0..2 {
        assert_eq!(
            server.ok(&["put", "wf-spec", &orders]).await,
            "ok: wf-spec orders version 0.0\n"
        );
    }

    let started = server
        .ok(&[
            "run",
            "orders",
            "--var",
            "user-id=ann",
            "--var",
            "item-id=book",
            "--id",
            "cli-order-1",
        ])
        .await;
    assert_eq!(started, "ok: started WfRun cli-order-1\n");
    let task = server.scheduled_task("fetch-price", "cli-order-1").await;
    assert_eq!(task.task_def_name, "fetch-price");
    assert_eq!(
        task.variables,
        vec![VarNameAndVal {
            var_name: "item-id".to_owned(),
            value: Some(VariableValue {
                value: Some(Value::Str("book".to_owned())),
            }),
        }]
    );

    // Refusals: one line, `weir: CODE: message`, exit 1.
    assert_eq!(
        server
            .refused(&["run", "orders", "--var", "user-id=ann"])
            .await,
        "weir: INVALID_ARGUMENT: variable \"item-id\" is required\n"
    );
    // The core waits a little for metadata it has not seen yet, then refuses.
    assert_eq!(
        server.refused(&["run", "nope"]).await,
        "weir: NOT_FOUND: WfSpec nope (any version) does not exist in tenant default\n"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let refunds = dir.path().join("refunds.wf-spec.yaml");
    std::fs::write(
        &refunds,
        "name: refunds\nentrypoint_thread_name: entrypoint\nthread_specs:\n  entrypoint:\n    \
         nodes:\n      0-entrypoint-ENTRYPOINT:\n        entrypoint: {}\n        \
         outgoing_edges: [{sink_node_name: 1-refund-TASK}]\n      1-refund-TASK:\n        \
         task: {task_def_name: refund}\n        outgoing_edges: [{sink_node_name: 2-exit-EXIT}]\n      \
         2-exit-EXIT: {exit: {}}\n",
    )
    .expect("write spec");
    assert_eq!(
        server
            .refused(&["put", "wf-spec", &refunds.display().to_string()])
            .await,
        "weir: INVALID_ARGUMENT: WfSpec refunds is invalid: thread entrypoint, node \
         1-refund-TASK: TaskDef \"refund\" does not exist\n"
    );

    // Halting, resuming and deleting the run.
    assert_eq!(
        server.ok(&["stop", "cli-order-1"]).await,
        "ok: stopped WfRun cli-order-1\n"
    );
    assert_eq!(
        server.refused(&["stop", "cli-order-1"]).await,
        "weir: FAILED_PRECONDITION: WfRun cli-order-1 is HALTED: no thread is RUNNING\n"
    );
    assert_eq!(
        server.ok(&["resume", "cli-order-1"]).await,
        "ok: resumed WfRun cli-order-1\n"
    );
    assert_eq!(
        server.ok(&["delete", "cli-order-1"]).await,
        "ok: deleted WfRun cli-order-1\n"
    );
    assert_eq!(
        server.refused(&["delete", "cli-order-1"]).await,
        "weir: NOT_FOUND: WfRun cli-order-1 does not exist in tenant default\n"
    );

    // A user task, assigned to the run's `manager` and completed by her.
    assert_eq!(
        server
            .ok(&["put", "user-task-def", &spec("approval.user-task-def.json")])
            .await,
        "ok: user-task-def approval\n"
    );
    assert_eq!(
        server
            .ok(&["put", "wf-spec", &spec("approval.wf-spec.json")])
            .await,
        "ok: wf-spec approval version 0.0\n"
    );
    assert_eq!(
        server
            .ok(&[
                "run",
                "approval",
                "--var",
                "manager=maria",
                "--id",
                "appr-1"
            ])
            .await,
        "ok: started WfRun appr-1\n"
    );
    assert_eq!(
        server
            .ok(&[
                "user-task",
                "complete",
                "appr-1",
                "0-1",
                "--user",
                "maria",
                "--result",
                "approved=true",
            ])
            .await,
        "ok: completed user task 0-1 of WfRun appr-1\n"
    );
    server.wait_for_run("appr-1", LhStatus::Completed).await;

    server.stop().await;
}
