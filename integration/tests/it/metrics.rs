//! Metrics end to end: two `weir server` instances serve `/metrics` on ports they pick
//! (`LHS_METRICS_PORT=0`), a real Prometheus (Debian's package) scrapes both every
//! second with the project's alert rules loaded, and the `orders` workflow runs. Its API
//! then shows, for each instance, a non-zero processing rate and output-record counters;
//! the task-queue depth is every dispatched task before workers run and none after; the
//! output-topic records by type and the WfRuns by status add up to what the orders did;
//! the alert rules evaluate; each instance's own `/metrics` has a lag series for each of
//! its partitions (and only those), timed commits and, from the store-size sampler, keys
//! in the core stores and the metadata replica; and an instance killed and restarted
//! from an empty state directory restores its stores from the changelogs, says so in
//! its restore metrics, and counts its runs again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weir_examples::orders;
use weir_integration::WeirProcess;
use weir_integration::prometheus::{
    Prometheus, Sample, exposition_samples, exposition_value, scrape,
};
use weir_processor::client::WeirClient;
use weir_processor::core::store_names;
use weir_processor::topics::{CoreTopics, partition_for_key};
use weir_proto::LhStatus;
use weir_proto::output_topic_config::OutputTopicRecordingLevel;

use crate::cluster::{Cluster, START_WAIT, http_target, stop_server};
use crate::output::enable_output;

const TENANT: &str = "acme";
const ORDERS: usize = 40;
const PARTITIONS: i32 = 4;
/// Generous: Prometheus scrapes every second, the queue depth is measured every 5 s.
const WAIT: Duration = Duration::from_secs(120);

/// One `weir server` instance with its own state directory and metrics port.
struct Instance {
    server: WeirProcess,
    /// `127.0.0.1:{port}`: the scrape target, and Prometheus's `instance` label.
    target: String,
}

/// Starts instance `id` of two on `port` (0: any) and waits until its tasks run.
async fn start_instance(cluster: &Cluster, state: &Path, id: u32, port: u16) -> Instance {
    let mut env = cluster.env().to_vec();
    for (name, value) in [
        ("LHS_INSTANCE_ID", id.to_string()),
        (
            "LHS_STATE_DIR",
            state.join(id.to_string()).display().to_string(),
        ),
        ("LHS_METRICS_PORT", port.to_string()),
    ] {
        env.push((name.to_owned(), value));
    }
    let mut server = WeirProcess::start(&format!("metrics-server-{id}"), &["server"], &env);
    let out = server
        .wait_for_stdout(START_WAIT, "the server's running line", |out| {
            out.contains("weir server running tasks ")
        })
        .await;
    Instance {
        server,
        target: http_target(&out, "weir server"),
    }
}

/// The value of the one sample in `samples` whose `label` is `value`; 0 when none.
fn value_where(samples: &[Sample], label: &str, value: &str) -> f64 {
    samples
        .iter()
        .find(|s| s.label(label) == value)
        .map_or(0.0, |s| s.value)
}

/// Non-zero for both instances.
fn both_positive(samples: &[Sample], instances: &[Instance]) -> bool {
    instances
        .iter()
        .all(|i| value_where(samples, "instance", &i.target) > 0.0)
}

/// Reads `target`'s own `/metrics` until its COMPLETED runs of the tenant are `expected`.
async fn wait_for_completed_runs(target: &str, expected: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let page = scrape(target).await;
        let completed = page.as_deref().ok().and_then(|page| {
            exposition_value(
                page,
                "weir_wf_runs",
                &[("tenant", TENANT), ("status", "COMPLETED")],
            )
        });
        if completed == Some(expected as f64) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{target} counts {completed:?} COMPLETED runs of {TENANT}, not {expected}: {page:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of `name{labels…}` on `page`, 0 when there is no such series.
fn value_on(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition_value(page, name, labels).unwrap_or(0.0)
}

/// Reads `target`'s `/metrics` until `check` finds nothing missing on the page (it
/// returns what is missing); panics at [`WAIT`] with the last complaint and page.
async fn wait_for_page(target: &str, check: impl Fn(&str) -> Result<(), String>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let outcome = scrape(target)
            .await
            .and_then(|page| check(&page).map_err(|e| format!("{e}\n--- /metrics ---\n{page}")));
        let Err(missing) = outcome else { return };
        assert!(Instant::now() < deadline, "{target}: {missing}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The stores an order writes on its partition.
const ORDER_STORES: [&str; 3] = [
    store_names::WF_RUNS,
    store_names::TASK_RUNS,
    store_names::VARIABLES,
];

/// The runtime's metrics on `target`, which owns core partitions `owned`
/// (`with_orders`: the partitions the orders went to). A `weir_records_lag` series per
/// owned partition labelled with its task, the command topic and the partition, and
/// none for another instance's; every lag back to 0 once the orders are done; commits
/// timed; and, once the store-size sampler has run (every 10 s), keys in the stores of
/// every partition that ran orders and in the metadata replica.
fn runtime_metrics_present(
    page: &str,
    owned: &[i32],
    with_orders: &BTreeSet<i32>,
    core_cmd: &str,
) -> Result<(), String> {
    let lag = exposition_samples(page, "weir_records_lag");
    let core_lag: BTreeSet<(String, String, String)> = lag
        .iter()
        .filter(|s| s.label("task").starts_with("core-"))
        .map(|s| {
            let label = |name| s.label(name).to_owned();
            (label("task"), label("source"), label("partition"))
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = owned
        .iter()
        .map(|p| (format!("core-{p}"), core_cmd.to_owned(), p.to_string()))
        .collect();
    if core_lag != expected {
        return Err(format!("lag series {core_lag:?}, not {expected:?}"));
    }
    if let Some(behind) = lag.iter().find(|s| s.value != 0.0) {
        return Err(format!("lag not back to 0: {behind:?}"));
    }
    for p in owned.iter().filter(|p| with_orders.contains(p)) {
        let task = format!("core-{p}");
        let commits = value_on(
            page,
            "weir_commit_latency_seconds_count",
            &[("task", &task)],
        );
        if commits == 0.0 {
            return Err(format!("no commit latency observed for {task}"));
        }
        for store in ORDER_STORES {
            let labels = [("task", task.as_str()), ("store", store)];
            if value_on(page, "weir_store_estimated_keys", &labels) == 0.0 {
                return Err(format!("no estimated keys in {task}'s {store} store yet"));
            }
        }
    }
    let metadata = [("task", "global"), ("store", store_names::METADATA)];
    if value_on(page, "weir_store_estimated_keys", &metadata) == 0.0 {
        return Err("no estimated keys in the metadata replica yet".to_owned());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_scrapes_two_servers_running_orders() {
    let partitions = PARTITIONS.to_string();
    let cluster = Cluster::with_env(
        "metrics",
        &[
            ("LHS_CLUSTER_PARTITIONS", partitions.as_str()),
            ("LHS_INSTANCE_COUNT", "2"),
        ],
    )
    .await;
    let state = tempfile::tempdir().expect("state dir");
    let mut instances = vec![
        start_instance(&cluster, state.path(), 0, 0).await,
        start_instance(&cluster, state.path(), 1, 0).await,
    ];
    let rules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/alerts.yml");
    let targets: Vec<String> = instances.iter().map(|i| i.target.clone()).collect();
    let prometheus = Prometheus::start(&targets, &[rules]).await;

    // The orders land on both instances' partitions (instance i owns p % 2 == i).
    let on_instance = |instance: i32| {
        (0..ORDERS)
            .filter(|&n| {
                partition_for_key(orders::order_id("order", n).as_bytes(), PARTITIONS) % 2
                    == instance
            })
            .count()
    };
    assert!(
        on_instance(0) > 0 && on_instance(1) > 0,
        "orders on both instances"
    );

    let client = WeirClient::connect(&cluster.config).await.expect("client");
    enable_output(
        &cluster,
        &client,
        TENANT,
        OutputTopicRecordingLevel::AllEntityEvents,
    )
    .await;
    orders::setup(&client, TENANT, &orders::NO_RETRY)
        .await
        .expect("metadata");
    orders::start_orders(&client, TENANT, "order", ORDERS)
        .await
        .expect("starting orders");

    // No worker yet: every order's first task waits in the fetch-price queue, each
    // partition counted by the instance that owns it.
    let queued = "sum by (task_def) (weir_task_queue_depth{tenant=\"acme\"})";
    prometheus
        .wait_for(queued, WAIT, |samples| {
            value_where(samples, "task_def", "fetch-price") == ORDERS as f64
        })
        .await;

    let (workers, delivery) = orders::start_workers_and_delivery(&cluster.config, &client, TENANT)
        .await
        .expect("workers");
    let runs = orders::wait_for_orders(&cluster.config, TENANT, "order", ORDERS, WAIT, |_, _| {})
        .await
        .expect("waiting for orders");
    assert!(
        runs.values().all(|r| r.status() == LhStatus::Completed),
        "{runs:?}"
    );

    // The README's processing rate, and the output-record counters, for both instances.
    prometheus
        .wait_for(
            "sum by (instance) (rate(weir_records_processed_total[1m]))",
            WAIT,
            |samples| both_positive(samples, &instances),
        )
        .await;
    prometheus
        .wait_for(
            "sum by (instance) (weir_output_records_total)",
            WAIT,
            |samples| both_positive(samples, &instances),
        )
        .await;
    prometheus
        .wait_for(
            "sum by (instance) (weir_output_topic_records_total{tenant=\"acme\"})",
            WAIT,
            |samples| both_positive(samples, &instances),
        )
        .await;
    // Per order: wf_run RUNNING and COMPLETED; three tasks scheduled, claimed and
    // succeeded. Metadata: three TaskDefs, the event def and the WfSpec, put once.
    let by_type = "sum by (type) (weir_output_topic_records_total{tenant=\"acme\"})";
    prometheus
        .wait_for(by_type, WAIT, |samples| {
            [
                ("wf_run", 2 * ORDERS),
                ("task_run", 9 * ORDERS),
                ("task_def", 3),
                ("external_event_def", 1),
                ("wf_spec", 1),
            ]
            .iter()
            .all(|(kind, count)| value_where(samples, "type", kind) == *count as f64)
        })
        .await;
    let by_status = "sum by (status) (weir_wf_runs{tenant=\"acme\"})";
    prometheus
        .wait_for(by_status, WAIT, |samples| {
            value_where(samples, "status", "COMPLETED") == ORDERS as f64
                && samples
                    .iter()
                    .all(|s| s.label("status") == "COMPLETED" || s.value == 0.0)
        })
        .await;

    // Workers commit their queue positions as they stop: nothing is left to serve,
    // in every queue partition of every TaskDef.
    let stats = workers.stop().await.expect("workers stop");
    assert!(stats.iter().all(|s| s.failed == 0), "{stats:?}");
    delivery.abort();
    prometheus
        .wait_for("weir_task_queue_depth{tenant=\"acme\"}", WAIT, |samples| {
            samples.len() == orders::TASK_DEFS.len() * PARTITIONS as usize
                && samples.iter().all(|s| s.value == 0.0)
        })
        .await;

    // The alert rules load and evaluate against the scraped names.
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = prometheus.api("rules").await.expect("rules");
        let rules: Vec<&serde_json::Value> = answer["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|group| group["rules"].as_array().into_iter().flatten())
            .collect();
        let healthy = rules.iter().filter(|rule| rule["health"] == "ok").count();
        if rules.len() == 3 && healthy == 3 {
            break;
        }
        assert!(rules.iter().all(|rule| rule["health"] != "err"), "{answer}");
        assert!(Instant::now() < deadline, "rules not evaluated: {answer}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Each instance counts the runs of its own partitions, and shows the runtime's lag,
    // commit and store-size metrics for them.
    wait_for_completed_runs(&instances[0].target, on_instance(0)).await;
    wait_for_completed_runs(&instances[1].target, on_instance(1)).await;
    let core_cmd = CoreTopics::new(&cluster.config).core_cmd();
    let with_orders: BTreeSet<i32> = (0..ORDERS)
        .map(|n| partition_for_key(orders::order_id("order", n).as_bytes(), PARTITIONS))
        .collect();
    let owned =
        |instance: i32| -> Vec<i32> { (0..PARTITIONS).filter(|p| p % 2 == instance).collect() };
    for (id, instance) in (0..).zip(&instances) {
        wait_for_page(&instance.target, |page| {
            runtime_metrics_present(page, &owned(id), &with_orders, &core_cmd)
        })
        .await;
    }

    // Killed, its state directory lost, and restarted on the same port: instance 1
    // restores every store of its partitions from the changelogs, and counts its runs
    // again from the restored stores.
    let port: u16 = instances[1]
        .target
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let mut killed = instances.pop().expect("instance 1");
    killed.server.sigkill();
    let lost = state.path().join("1");
    std::fs::remove_dir_all(&lost).unwrap_or_else(|e| panic!("removing {}: {e}", lost.display()));
    let restarted = start_instance(&cluster, state.path(), 1, port).await;
    assert_eq!(restarted.target, killed.target);
    wait_for_completed_runs(&restarted.target, on_instance(1)).await;
    wait_for_page(&restarted.target, |page| {
        for p in owned(1).iter().filter(|p| with_orders.contains(p)) {
            let name = format!("core-{p}");
            let task = [("task", name.as_str())];
            let restored = value_on(page, "weir_restore_records_total", &task);
            let remaining = value_on(page, "weir_restore_remaining_records", &task);
            if restored == 0.0 || remaining != 0.0 {
                return Err(format!(
                    "core-{p}: {restored} records restored, {remaining} left"
                ));
            }
        }
        Ok(())
    })
    .await;

    drop(prometheus);
    stop_server(restarted.server).await;
    for instance in instances {
        stop_server(instance.server).await;
    }
}
