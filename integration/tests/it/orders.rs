//! The workflow core end to end: a `weir server` child process, the `orders` example's
//! workers and driver in the test, and the committed state read back from the stores'
//! changelogs. A thousand orders across twelve partitions; the same with the server
//! SIGKILLed twice; a task that keeps failing; two tenants with the same spec names.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use weir_examples::orders;
use weir_processor::builder::WorkflowBuilder;
use weir_processor::client::{WeirClient, accepted};
use weir_processor::inspect::{self, RunSnapshot};
use weir_processor::topics::{CoreTopics, partition_for_key};
use weir_processor::worker::{TaskError, Worker};
use weir_proto::metadata_command::Command as Meta;
use weir_proto::{
    LhStatus, PutTaskDefRequest, PutTenantRequest, PutWfSpecRequest, RetryPolicy, TaskStatus,
};
use weir_topology::kafka::KafkaClient;

use crate::cluster::{Cluster, START_WAIT, stop_server};

const RUN_WAIT: Duration = Duration::from_secs(300);

/// Every order `{prefix}-0..count` is COMPLETED with the variables it should end with.
fn assert_orders_completed(runs: &BTreeMap<String, RunSnapshot>, prefix: &str, count: usize) {
    for n in 0..count {
        let id = orders::order_id(prefix, n);
        let run = runs
            .get(&id)
            .unwrap_or_else(|| panic!("order {id} is missing"));
        assert_eq!(
            run.status(),
            LhStatus::Completed,
            "order {id}: {:?}",
            run.wf_run.thread_runs
        );
        assert_eq!(run.variables, orders::expected_variables(n), "order {id}");
    }
    assert_eq!(
        runs.keys()
            .filter(|k| k.starts_with(&format!("{prefix}-")))
            .count(),
        count
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_orders_complete_across_twelve_partitions() {
    let cluster = Cluster::new("orders-thousand").await;
    let server = cluster.start_server("orders-thousand-server").await;
    let client = WeirClient::connect(&cluster.config).await.expect("client");
    orders::setup(&client, "default", &orders::NO_RETRY)
        .await
        .expect("metadata");
    let (workers, delivery) =
        orders::start_workers_and_delivery(&cluster.config, &client, "default")
            .await
            .expect("workers");

    orders::start_orders(&client, "default", "order", 1_000)
        .await
        .expect("starting orders");
    let partitions: BTreeSet<i32> = (0..1_000)
        .map(|n| partition_for_key(orders::order_id("order", n).as_bytes(), 12))
        .collect();
    assert_eq!(
        partitions.len(),
        12,
        "the orders spread over every partition"
    );
    let runs = orders::wait_for_orders(
        &cluster.config,
        "default",
        "order",
        1_000,
        RUN_WAIT,
        |_, _| {},
    )
    .await
    .expect("waiting for orders");
    assert_orders_completed(&runs, "order", 1_000);

    let stats = workers.stop().await.expect("workers stop");
    for stat in &stats {
        assert_eq!(stat.failed, 0, "{stat:?}");
        assert!(stat.tasks_run >= 1_000, "{stat:?}");
    }
    delivery.abort();
    stop_server(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_complete_with_the_server_killed_twice_and_no_task_reported_twice() {
    let cluster = Cluster::new("orders-killed").await;
    let mut server = cluster.start_server("orders-killed-server-1").await;
    let client = WeirClient::connect(&cluster.config).await.expect("client");
    orders::setup(&client, "default", &orders::NO_RETRY)
        .await
        .expect("metadata");
    let (workers, delivery) =
        orders::start_workers_and_delivery(&cluster.config, &client, "default")
            .await
            .expect("workers");
    let starting = {
        let client = client.clone().with_timeout(Duration::from_secs(120));
        tokio::spawn(async move { orders::start_orders(&client, "default", "order", 1_000).await })
    };

    for (round, threshold) in [(2, 150), (3, 500)] {
        let deadline = tokio::time::Instant::now() + RUN_WAIT;
        while cluster.finished("default", "order-").await < threshold {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fewer than {threshold} orders finished"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        server.sigkill();
        server.wait_for_exit(START_WAIT).await;
        server = cluster
            .start_server(&format!("orders-killed-server-{round}"))
            .await;
    }
    starting
        .await
        .expect("join")
        .expect("every order was accepted");
    let runs = orders::wait_for_orders(
        &cluster.config,
        "default",
        "order",
        1_000,
        RUN_WAIT,
        |_, _| {},
    )
    .await
    .expect("waiting for orders");
    assert_orders_completed(&runs, "order", 1_000);

    // Redelivered tasks ran again on the workers, but each TaskRun took one report.
    let kafka = KafkaClient::connect(&cluster.config.kafka())
        .await
        .expect("kafka");
    let task_runs = inspect::task_runs(
        &kafka,
        &cluster.config.cluster_id,
        &CoreTopics::new(&cluster.config),
        "default",
    )
    .await
    .expect("task runs");
    assert_eq!(task_runs.len(), 3_000);
    for task_run in &task_runs {
        assert_eq!(task_run.status(), TaskStatus::TaskSuccess, "{task_run:?}");
        assert_eq!(
            task_run.attempts.len(),
            1,
            "one attempt per task: {task_run:?}"
        );
    }
    let stats = workers.stop().await.expect("workers stop");
    let ran: u64 = stats.iter().map(|s| s.tasks_run).sum();
    assert!(ran >= 3_000, "{stats:?}");
    delivery.abort();
    stop_server(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_that_keeps_failing_ends_the_run_in_error_after_its_retries() {
    let cluster = Cluster::new("orders-retries").await;
    let server = cluster.start_server("orders-retries-server").await;
    let client = WeirClient::connect(&cluster.config).await.expect("client");
    let tenant = "flaky-co";
    accepted(
        client
            .send_metadata(
                tenant,
                Meta::PutTenant(PutTenantRequest {
                    id: tenant.into(),
                    output_topic_config: None,
                }),
            )
            .await
            .expect("sent"),
    )
    .expect("tenant");
    let def = PutTaskDefRequest {
        name: "flaky".into(),
        input_vars: vec![],
        retry_policy: Some(RetryPolicy {
            max_retries: 2,
            initial_backoff_ms: 200,
            backoff_multiplier: 2.0,
            max_backoff_ms: 1_000,
        }),
        timeout_seconds: 30,
        enable_entity_events: None,
    };
    accepted(client.put_task_def(tenant, def).await.expect("sent")).expect("task def");
    let wf = WorkflowBuilder::new("fragile");
    wf.execute("flaky", ());
    let spec = wf.build();
    let request = Meta::PutWfSpec(PutWfSpecRequest {
        name: "fragile".into(),
        thread_specs: spec.thread_specs,
        entrypoint_thread_name: spec.entrypoint_thread_name,
        enable_entity_events: None,
    });
    accepted(client.send_metadata(tenant, request).await.expect("sent")).expect("spec");

    let worker = Worker::builder(&cluster.config, tenant, "flaky")
        .build()
        .await
        .expect("worker");
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(async move {
        worker
            .run(
                |_task| async {
                    Err::<weir_proto::VariableValue, _>(TaskError::failed("the service is down"))
                },
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
            )
            .await
    });
    for n in 0..3 {
        let id = format!("fragile-{n}");
        accepted(
            client
                .run_wf(tenant, "fragile", BTreeMap::new(), Some(id))
                .await
                .expect("sent"),
        )
        .expect("run");
    }
    let deadline = tokio::time::Instant::now() + RUN_WAIT;
    while cluster.finished(tenant, "fragile-").await < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "runs did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (id, run) in cluster.runs(tenant).await {
        assert_eq!(run.status(), LhStatus::Error, "{id}");
        let reason = run.wf_run.thread_runs[0]
            .error_message
            .clone()
            .unwrap_or_default();
        assert!(
            reason.contains("3 attempt") && reason.contains("the service is down"),
            "{id}: {reason}"
        );
    }
    let kafka = KafkaClient::connect(&cluster.config.kafka())
        .await
        .expect("kafka");
    let task_runs = inspect::task_runs(
        &kafka,
        &cluster.config.cluster_id,
        &CoreTopics::new(&cluster.config),
        tenant,
    )
    .await
    .expect("task runs");
    assert_eq!(task_runs.len(), 3);
    for task_run in task_runs {
        assert_eq!(task_run.status(), TaskStatus::TaskFailed);
        assert_eq!(
            task_run.attempts.len(),
            3,
            "the first attempt and two retries"
        );
        assert!(
            task_run
                .attempts
                .iter()
                .all(|a| a.status() == TaskStatus::TaskFailed)
        );
    }
    let _ = stop.send(true);
    let stats = serving.await.expect("join").expect("worker");
    assert_eq!(stats.failed, 9, "{stats:?}");
    stop_server(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_tenants_with_same_named_specs_stay_isolated() {
    let cluster = Cluster::new("orders-tenants").await;
    let server = cluster.start_server("orders-tenants-server").await;
    let client = WeirClient::connect(&cluster.config).await.expect("client");
    let mut running = Vec::new();
    for (tenant, count) in [("acme", 20), ("globex", 10)] {
        accepted(
            client
                .send_metadata(
                    tenant,
                    Meta::PutTenant(PutTenantRequest {
                        id: tenant.into(),
                        output_topic_config: None,
                    }),
                )
                .await
                .expect("sent"),
        )
        .expect("tenant");
        orders::setup(&client, tenant, &orders::NO_RETRY)
            .await
            .expect("metadata");
        let (workers, delivery) =
            orders::start_workers_and_delivery(&cluster.config, &client, tenant)
                .await
                .expect("workers");
        // The same run ids in both tenants.
        orders::start_orders(&client, tenant, "order", count)
            .await
            .expect("orders");
        running.push((tenant, count, workers, delivery));
    }
    for (tenant, count, workers, delivery) in running {
        let runs =
            orders::wait_for_orders(&cluster.config, tenant, "order", count, RUN_WAIT, |_, _| {})
                .await
                .expect("waiting");
        assert_orders_completed(&runs, "order", count);
        let stats = workers.stop().await.expect("workers stop");
        for stat in stats {
            assert_eq!(
                stat.tasks_run, count as u64,
                "{tenant}'s workers serve only its tasks: {stat:?}"
            );
        }
        delivery.abort();
    }
    stop_server(server).await;
}
