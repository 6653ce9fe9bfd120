//! Several `weir server` instances on one cluster: three processes share the twelve
//! partitions (`LHS_INSTANCE_ID` / `LHS_INSTANCE_COUNT`), each task runs on exactly one
//! of them, a thousand orders complete while one instance is stopped cleanly and started
//! again, and the execution-output topic holds exactly what one instance publishes:
//! every run's records in order, on its partition, none twice.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use weir_examples::orders;
use weir_integration::WeirProcess;
use weir_processor::client::WeirClient;
use weir_processor::topics::CoreTopics;
use weir_proto::output_topic_config::OutputTopicRecordingLevel;

use crate::cluster::{Cluster, START_WAIT, stop_server};
use crate::output::{
    Drive, assert_orders_published, enable_output, once_each, put_orders, read_to_end,
    wait_completed,
};

const INSTANCES: usize = 3;
const ORDERS: usize = 1_000;
const TENANT: &str = "acme";

/// Starts instance `id` of [`INSTANCES`], with a state directory of its own, and
/// returns it with the tasks it says it runs.
async fn start_instance(cluster: &Cluster, id: usize, name: &str) -> (WeirProcess, Vec<String>) {
    let mut env = cluster.process_env();
    let state = cluster.state_dir().join(format!("instance-{id}"));
    env.extend([
        ("LHS_INSTANCE_ID".to_owned(), id.to_string()),
        ("LHS_INSTANCE_COUNT".to_owned(), INSTANCES.to_string()),
        ("LHS_STATE_DIR".to_owned(), state.display().to_string()),
    ]);
    let mut server = WeirProcess::start(name, &["server"], &env);
    let out = server
        .wait_for_stdout(START_WAIT, "the server's running line", |out| {
            out.contains("weir server running tasks ")
        })
        .await;
    let tasks = out
        .lines()
        .find_map(|line| line.strip_prefix("weir server running tasks "))
        .map(|tasks| tasks.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    (server, tasks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_share_twelve_partitions_and_a_clean_restart_loses_nothing() {
    let cluster = Cluster::new("scaled").await;
    let mut servers = Vec::new();
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    for id in 0..INSTANCES {
        let (server, tasks) = start_instance(&cluster, id, &format!("scaled-{id}")).await;
        for task in tasks {
            if let Some(other) = owner.insert(task.clone(), id) {
                panic!("task {task} runs on instances {other} and {id}");
            }
        }
        servers.push(server);
    }
    // Every partition of the core runs on exactly one instance, and each instance has
    // its share.
    let core: BTreeSet<String> = (0..12).map(|p| format!("core-{p}")).collect();
    let running: BTreeSet<String> = owner
        .keys()
        .filter(|t| t.starts_with("core-"))
        .cloned()
        .collect();
    assert_eq!(running, core, "tasks by instance: {owner:?}");
    for id in 0..INSTANCES {
        let share = owner
            .iter()
            .filter(|(t, i)| t.starts_with("core-") && **i == id)
            .count();
        assert_eq!(share, 12 / INSTANCES, "instance {id}: {owner:?}");
    }
    assert_eq!(
        owner.keys().filter(|t| t.starts_with("metadata-")).count(),
        1,
        "{owner:?}"
    );

    let client = WeirClient::connect(&cluster.config).await.expect("client");
    enable_output(
        &cluster,
        &client,
        TENANT,
        OutputTopicRecordingLevel::AllEntityEvents,
    )
    .await;
    put_orders(&client, TENANT, None).await;
    let drive = Drive::start(&cluster, &client, TENANT).await;
    orders::start_orders(&client, TENANT, "order", ORDERS)
        .await
        .expect("starting orders");

    // Instance 1 stops cleanly once a tenth of the orders are done, and comes back.
    orders::wait_for_orders(
        &cluster.config,
        TENANT,
        "order",
        ORDERS / 10,
        START_WAIT * 3,
        |_, _| {},
    )
    .await
    .expect("a tenth of the orders finish");
    let stopped = servers.remove(1);
    stop_server(stopped).await;
    let (restarted, tasks) = start_instance(&cluster, 1, "scaled-1-again").await;
    let again: BTreeSet<String> = tasks.into_iter().collect();
    let before: BTreeSet<String> = owner
        .iter()
        .filter(|(_, i)| **i == 1)
        .map(|(t, _)| t.clone())
        .collect();
    assert_eq!(again, before, "instance 1 takes its own tasks back");
    servers.push(restarted);

    // Generous: a thousand orders beside other tests on a shared two-core machine.
    wait_completed(&cluster, TENANT, "order", ORDERS, Duration::from_secs(600)).await;
    drive.stop().await;
    let topic = CoreTopics::new(&cluster.config).execution_output(TENANT);
    let (records, copies) = once_each(read_to_end(&cluster, &topic).await);
    assert_eq!(copies, 0, "a clean stop produces nothing twice");
    assert_orders_published(&records, TENANT, "order", ORDERS, 12);
    for server in servers {
        stop_server(server).await;
    }
}
