//! Several `weir server` instances on one cluster: three processes share the twelve
//! partitions (`LHS_INSTANCE_ID` / `LHS_INSTANCE_COUNT`), each task runs on exactly one
//! of them, a thousand orders complete while one instance is stopped cleanly and started
//! again, and the output topics hold exactly what one instance publishes: every run's
//! records in order, on its partition, none twice, and the metadata once each, in the
//! order it was put. Each instance's `/metrics` shows records processed for exactly the
//! core partitions it runs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use weir_examples::orders;
use weir_integration::WeirProcess;
use weir_integration::prometheus::{exposition_samples, scrape};
use weir_processor::client::WeirClient;
use weir_processor::topics::{CoreTopics, TENANT_HEADER};
use weir_proto::output_topic_config::OutputTopicRecordingLevel;

use crate::cluster::{Cluster, START_WAIT, http_target, stop_server};
use crate::output::{
    Drive, ORDERS_METADATA_KEYS, assert_orders_published, enable_output, once_each, put_orders,
    read_to_end, wait_completed,
};

const INSTANCES: usize = 3;
const ORDERS: usize = 1_000;
const TENANT: &str = "acme";

/// One `weir server` of the cluster.
struct Instance {
    id: usize,
    server: WeirProcess,
    /// The tasks it says it runs.
    tasks: Vec<String>,
    /// `127.0.0.1:{port}` of its `/metrics`.
    target: String,
}

/// Starts instance `id` of [`INSTANCES`], with a state directory of its own and
/// `/metrics` on a free port.
async fn start_instance(cluster: &Cluster, id: usize, name: &str) -> Instance {
    let mut env = cluster.process_env();
    let state = cluster.state_dir().join(format!("instance-{id}"));
    env.extend([
        ("LHS_INSTANCE_ID".to_owned(), id.to_string()),
        ("LHS_INSTANCE_COUNT".to_owned(), INSTANCES.to_string()),
        ("LHS_STATE_DIR".to_owned(), state.display().to_string()),
        ("LHS_METRICS_PORT".to_owned(), "0".to_owned()),
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
    Instance {
        id,
        server,
        tasks,
        target: http_target(&out, "weir server"),
    }
}

/// The core tasks `instance` counts processed records for, from its `/metrics`.
async fn core_tasks_processing(instance: &Instance) -> BTreeSet<String> {
    let page = scrape(&instance.target)
        .await
        .unwrap_or_else(|e| panic!("instance {}: {e}", instance.id));
    exposition_samples(&page, "weir_records_processed_total")
        .into_iter()
        .filter(|s| s.label("task").starts_with("core-") && s.value > 0.0)
        .map(|s| s.label("task").to_owned())
        .collect()
}

/// The tenant's metadata-output topic: one partition holding the example's metadata
/// once each, in the order it was put, every record with the tenant's header.
async fn assert_metadata_published(cluster: &Cluster) {
    let topic = CoreTopics::new(&cluster.config).metadata_output(TENANT);
    assert_eq!(cluster.partition_count(&topic).await, 1, "{topic}");
    let (records, copies) = once_each(read_to_end(cluster, &topic).await);
    assert_eq!(copies, 0, "a clean stop publishes no metadata twice");
    let keys: Vec<String> = records.iter().map(|r| r.key_str()).collect();
    assert_eq!(keys, ORDERS_METADATA_KEYS);
    for record in &records {
        assert_eq!(
            record.header_str(TENANT_HEADER).as_deref(),
            Some(TENANT),
            "{}@{}",
            record.partition,
            record.offset
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_share_twelve_partitions_and_a_clean_restart_loses_nothing() {
    let cluster = Cluster::new("scaled").await;
    let mut instances = Vec::new();
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    for id in 0..INSTANCES {
        let instance = start_instance(&cluster, id, &format!("scaled-{id}")).await;
        for task in &instance.tasks {
            if let Some(other) = owner.insert(task.clone(), id) {
                panic!("task {task} runs on instances {other} and {id}");
            }
        }
        instances.push(instance);
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
    // Each core partition is processed by exactly one instance, its owner: only the
    // owner counts records processed for it. Instance 1 is read before it stops, with
    // orders on every partition; after its restart it may find nothing left to do on
    // some of its partitions, so there it counts a subset of its own.
    let stopped = instances.remove(1);
    assert_eq!(
        core_tasks_processing(&stopped).await,
        own_core_tasks(&owner, 1),
        "instance 1 processed records of exactly its own core partitions before its stop"
    );
    stop_server(stopped.server).await;
    let restarted = start_instance(&cluster, 1, "scaled-1-again").await;
    let again: BTreeSet<String> = restarted.tasks.iter().cloned().collect();
    let before: BTreeSet<String> = owner
        .iter()
        .filter(|(_, i)| **i == 1)
        .map(|(t, _)| t.clone())
        .collect();
    assert_eq!(again, before, "instance 1 takes its own tasks back");
    instances.push(restarted);

    // Generous: a thousand orders beside other tests on a shared two-core machine.
    wait_completed(&cluster, TENANT, "order", ORDERS, Duration::from_secs(600)).await;
    drive.stop().await;
    let topic = CoreTopics::new(&cluster.config).execution_output(TENANT);
    let (records, copies) = once_each(read_to_end(&cluster, &topic).await);
    assert_eq!(copies, 0, "a clean stop produces nothing twice");
    assert_orders_published(&records, TENANT, "order", ORDERS, 12);
    assert_metadata_published(&cluster).await;

    for instance in &instances {
        let own = own_core_tasks(&owner, instance.id);
        let processing = core_tasks_processing(instance).await;
        if instance.id == 1 {
            assert!(
                processing.is_subset(&own),
                "instance 1 after its restart processed {processing:?}, not only its own {own:?}"
            );
        } else {
            assert_eq!(
                processing, own,
                "instance {} processed records of exactly its own core partitions",
                instance.id
            );
        }
    }
    for instance in instances {
        stop_server(instance.server).await;
    }
}

/// The core tasks `owner` places on instance `id`.
fn own_core_tasks(owner: &BTreeMap<String, usize>, id: usize) -> BTreeSet<String> {
    owner
        .iter()
        .filter(|(task, instance)| task.starts_with("core-") && **instance == id)
        .map(|(task, _)| task.clone())
        .collect()
}
