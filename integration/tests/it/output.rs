//! The output topics end to end: a `weir server` child process, the `orders` example's
//! workers and driver, and the tenant's execution-output and metadata-output topics read
//! back: exactly the expected records per WfRun in order, on the right partition, with
//! their headers; per-object overrides; tenant isolation; the partition count rule; an
//! in-place metadata update; a SIGKILL; and the README's `kcat | protoc` commands.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir_examples::orders::{self, Workers};
use weir_integration::{ConsumedRecord, TestNamespace, WeirProcess, consume_until};
use weir_processor::client::{WeirClient, accepted};
use weir_processor::topics::{CoreTopics, TENANT_HEADER, partition_for_key};
use weir_proto::metadata_command::Command as Meta;
use weir_proto::metadata_output_topic_record::MetadataRecord;
use weir_proto::output_topic_config::OutputTopicRecordingLevel;
use weir_proto::output_topic_record::Payload;
use weir_proto::variable_value::Value;
use weir_proto::{
    LhStatus, MetadataOutputTopicRecord, OutputTopicConfig, OutputTopicRecord,
    PutExternalEventDefRequest, PutTenantRequest, PutWfSpecRequest,
};
use weir_topology::kafka::KafkaClient;
use weir_topology::task::WEIR_ID_HEADER;

use crate::cluster::{Cluster, START_WAIT, stop_server};

/// Generous: a few orders finish in seconds.
const RUN_WAIT: Duration = Duration::from_secs(180);
/// How long the server may take to create a newly enabled tenant's topics.
const TOPIC_WAIT: Duration = Duration::from_secs(60);
/// The TaskDefs' timeout: long, so a report held up on a loaded machine (the tests run
/// beside each other on two cores) does not time a task out; with no retries, a
/// timeout would end the order in ERROR and change the records it publishes.
const TASK_TIMEOUT_SECONDS: i32 = 300;
const TYPE_HEADER: &str = "weir-type";

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

/// Creates `tenant` with its output topics at `level`, and waits until the server has
/// created both topics.
pub(crate) async fn enable_output(
    cluster: &Cluster,
    client: &WeirClient,
    tenant: &str,
    level: OutputTopicRecordingLevel,
) {
    accepted(
        client
            .send_metadata(
                tenant,
                Meta::PutTenant(PutTenantRequest {
                    id: tenant.to_owned(),
                    output_topic_config: Some(OutputTopicConfig {
                        default_recording_level: level as i32,
                    }),
                }),
            )
            .await
            .expect("sent"),
    )
    .expect("tenant");
    wait_for_output_topics(cluster, tenant).await;
}

async fn wait_for_output_topics(cluster: &Cluster, tenant: &str) {
    let topics = CoreTopics::new(&cluster.config);
    let wanted = [
        topics.execution_output(tenant),
        topics.metadata_output(tenant),
    ];
    let admin = cluster.ns.admin().await;
    let deadline = Instant::now() + TOPIC_WAIT;
    loop {
        let existing = admin.list_topics().await.expect("listing topics");
        if wanted.iter().all(|t| existing.contains(t)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not create {wanted:?} within {TOPIC_WAIT:?}; topics: {existing:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The metadata-output keys of the example's metadata as [`put_orders`] puts it, in
/// order.
pub(crate) const ORDERS_METADATA_KEYS: [&str; 5] = [
    "TASK_DEF/fetch-price",
    "TASK_DEF/charge-credit-card",
    "TASK_DEF/ship-item",
    "EXTERNAL_EVENT_DEF/item-delivered",
    "WF_SPEC/orders/0/0",
];

/// Puts the orders example's metadata in `tenant`, with `ship-item`'s
/// `enable_entity_events` set to `ship_item_events` (the example's `setup` with one
/// override, put from the start so no command can see the TaskDef without it).
pub(crate) async fn put_orders(client: &WeirClient, tenant: &str, ship_item_events: Option<bool>) {
    for mut def in orders::task_defs(&orders::NO_RETRY, TASK_TIMEOUT_SECONDS) {
        if def.name == "ship-item" {
            def.enable_entity_events = ship_item_events;
        }
        accepted(client.put_task_def(tenant, def).await.expect("sent")).expect("task def");
    }
    let event = Meta::PutExternalEventDef(PutExternalEventDefRequest {
        name: orders::DELIVERED.to_owned(),
        enable_entity_events: None,
    });
    accepted(client.send_metadata(tenant, event).await.expect("sent")).expect("event def");
    accepted(
        client
            .send_metadata(tenant, wf_spec_request(None))
            .await
            .expect("sent"),
    )
    .expect("wf spec");
}

fn wf_spec_request(enable_entity_events: Option<bool>) -> Meta {
    let spec = orders::wf_spec();
    Meta::PutWfSpec(PutWfSpecRequest {
        name: orders::WF_SPEC.to_owned(),
        thread_specs: spec.thread_specs,
        entrypoint_thread_name: spec.entrypoint_thread_name,
        enable_entity_events,
    })
}

/// The example's workers and deliveries for `tenant`, running until stopped.
pub(crate) struct Drive {
    workers: Workers,
    delivery: tokio::task::JoinHandle<anyhow::Result<usize>>,
}

impl Drive {
    pub(crate) async fn start(cluster: &Cluster, client: &WeirClient, tenant: &str) -> Self {
        let (workers, delivery) =
            orders::start_workers_and_delivery(&cluster.config, client, tenant)
                .await
                .expect("workers");
        Self { workers, delivery }
    }

    pub(crate) async fn stop(self) {
        let stats = self.workers.stop().await.expect("workers stop");
        for stat in stats {
            assert_eq!(stat.failed, 0, "{stat:?}");
        }
        self.delivery.abort();
    }
}

/// Waits (at most `timeout`) until the committed runs `{prefix}-0..count` of `tenant`
/// are all COMPLETED.
pub(crate) async fn wait_completed(
    cluster: &Cluster,
    tenant: &str,
    prefix: &str,
    count: usize,
    timeout: Duration,
) {
    let runs = orders::wait_for_orders(&cluster.config, tenant, prefix, count, timeout, |_, _| {})
        .await
        .expect("waiting for orders");
    for n in 0..count {
        let id = orders::order_id(prefix, n);
        let status = runs.get(&id).map(|r| r.status());
        assert_eq!(
            status,
            Some(LhStatus::Completed),
            "order {id}: {:?}",
            runs.get(&id)
        );
    }
}

/// Runs `count` orders `{prefix}-n` in `tenant` to completion with the example's
/// workers and deliveries.
pub(crate) async fn run_orders(
    cluster: &Cluster,
    client: &WeirClient,
    tenant: &str,
    prefix: &str,
    count: usize,
) {
    let drive = Drive::start(cluster, client, tenant).await;
    orders::start_orders(client, tenant, prefix, count)
        .await
        .expect("starting orders");
    wait_completed(cluster, tenant, prefix, count, RUN_WAIT).await;
    drive.stop().await;
}

/// Every record of `topic` (all its partitions) up to each partition's end, by
/// partition then offset. Called once the runs are committed as finished: the runtime
/// acknowledges a batch's outputs before it commits its state, so nothing is missing.
pub(crate) async fn read_to_end(cluster: &Cluster, topic: &str) -> Vec<ConsumedRecord> {
    let admin = cluster.ns.admin().await;
    let described = admin
        .describe_topics(&[topic.to_owned()])
        .await
        .unwrap_or_else(|e| panic!("describing {topic}: {e}"));
    let client = cluster.ns.client().await;
    let mut seen = Vec::new();
    for partition in described.iter().flat_map(|t| &t.partitions) {
        let handle = client
            .partition(topic, partition.partition)
            .await
            .unwrap_or_else(|e| panic!("{topic}/{}: {e}", partition.partition));
        let mut next = handle.earliest_offset().await.expect("earliest offset");
        loop {
            let (records, high_watermark) = handle
                .fetch(next, 4 * 1024 * 1024, Duration::from_millis(100))
                .await
                .unwrap_or_else(|e| panic!("fetching {topic}/{}: {e}", partition.partition));
            for record in records {
                next = record.offset + 1;
                seen.push(ConsumedRecord {
                    partition: handle.partition(),
                    offset: record.offset,
                    key: record.record.key,
                    value: record.record.value,
                    headers: record.record.headers,
                });
            }
            if next >= high_watermark {
                break;
            }
        }
    }
    seen
}

/// The records once each. A record produced twice (a batch redelivered after a crash)
/// carries the same `weir-id`; every copy must be byte-identical to the first (key,
/// value and headers) and is dropped. Returns the records and how many copies went.
pub(crate) fn once_each(records: Vec<ConsumedRecord>) -> (Vec<ConsumedRecord>, usize) {
    let mut first: BTreeMap<String, ConsumedRecord> = BTreeMap::new();
    let mut kept = Vec::new();
    let mut dropped = 0;
    for record in records {
        let id = record
            .header_str(WEIR_ID_HEADER)
            .unwrap_or_else(|| panic!("{}@{} has no weir-id", record.partition, record.offset));
        match first.get(&id) {
            Some(original) => {
                assert_eq!(
                    (&record.key, &record.value, &record.headers),
                    (&original.key, &original.value, &original.headers),
                    "{}@{} repeats weir-id {id} of {}@{} with other bytes",
                    record.partition,
                    record.offset,
                    original.partition,
                    original.offset
                );
                dropped += 1;
            }
            None => {
                first.insert(id, record.clone());
                kept.push(record);
            }
        }
    }
    (kept, dropped)
}

/// One execution-output record, checked against its key and headers, as a line such
/// as `TaskRun ship-item TASK_SUCCESS`; returns the WfRun id and the line.
fn describe(record: &ConsumedRecord, tenant: &str) -> (String, String) {
    let decoded: OutputTopicRecord = record.decode();
    let place = format!("{}@{}", record.partition, record.offset);
    assert!(decoded.timestamp.is_some(), "{place} has no timestamp");
    let (wf_run, kind, line) = match decoded
        .payload
        .unwrap_or_else(|| panic!("{place}: no payload"))
    {
        Payload::WfRun(run) => (
            run.id.clone().map(|i| i.id),
            "wf_run",
            format!("WfRun {}", run.status().as_str_name()),
        ),
        Payload::TaskRun(task) => (
            task.id.clone().and_then(|i| i.wf_run_id).map(|i| i.id),
            "task_run",
            format!(
                "TaskRun {} {}",
                task.task_def_name,
                task.status().as_str_name()
            ),
        ),
        Payload::Variable(variable) => {
            let id = variable.id.clone().unwrap_or_default();
            let value = match variable.value.and_then(|v| v.value) {
                Some(Value::Str(s)) => s,
                other => format!("{other:?}"),
            };
            (
                id.wf_run_id.map(|i| i.id),
                "variable",
                format!("Variable {}={value}", id.name),
            )
        }
        Payload::ExternalEvent(event) => {
            let id = event.id.clone().unwrap_or_default();
            (
                id.wf_run_id.map(|i| i.id),
                "external_event",
                format!(
                    "ExternalEvent {} claimed={}",
                    id.external_event_def_name, event.claimed
                ),
            )
        }
        Payload::WorkflowEvent(event) => (
            event.id.clone().and_then(|i| i.wf_run_id).map(|i| i.id),
            "workflow_event",
            "WorkflowEvent".to_owned(),
        ),
        Payload::UserTaskRun(task) => (
            task.id.clone().and_then(|i| i.wf_run_id).map(|i| i.id),
            "user_task_run",
            "UserTaskRun".to_owned(),
        ),
    };
    let wf_run = wf_run.unwrap_or_else(|| panic!("{place}: {line} names no WfRun"));
    assert_eq!(record.key_str(), wf_run, "{place}: the key is the WfRun id");
    assert_eq!(
        record.header_str(TENANT_HEADER).as_deref(),
        Some(tenant),
        "{place}: weir-tenant"
    );
    assert_eq!(
        record.header_str(TYPE_HEADER).as_deref(),
        Some(kind),
        "{place}: weir-type of {line}"
    );
    assert!(
        record
            .header_str(WEIR_ID_HEADER)
            .is_some_and(|id| !id.is_empty()),
        "{place}: weir-id"
    );
    (wf_run, line)
}

/// The lines of each WfRun, in order, after checking each record's partition: the
/// records of core-cmd partition `p` (12 partitions) are on partition `p % n`.
fn lines_by_run(
    records: &[ConsumedRecord],
    tenant: &str,
    output_partitions: i32,
) -> BTreeMap<String, Vec<String>> {
    let mut runs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in records {
        let (wf_run, line) = describe(record, tenant);
        assert_eq!(
            record.partition,
            partition_for_key(wf_run.as_bytes(), 12) % output_partitions,
            "{}@{} ({wf_run}: {line}) is on the wrong partition",
            record.partition,
            record.offset
        );
        runs.entry(wf_run).or_default().push(line);
    }
    runs
}

const PRE_POSTED: &str = "ExternalEvent item-delivered claimed=false";

/// What every order publishes under `ALL_ENTITY_EVENTS` with `order-status` public,
/// in order. The workers claim each task before running it (`TASK_RUNNING`). The
/// delivery is posted once ship-item's function has run, racing its report. Posted
/// after the report, the run is waiting and the event is stored already claimed, after
/// `SHIPPING`. Posted before, it is stored unclaimed ([`PRE_POSTED`]), and the one
/// command that completes ship-item also claims it and assigns `COMPLETED`: a record
/// is the object after the command, so `SHIPPING` (never the value after a command)
/// is not published, and the claimed event comes before the last mutation.
fn expected_order(pre_posted: bool) -> Vec<&'static str> {
    let mut lines = vec![
        "WfRun RUNNING",
        "Variable order-status=PENDING",
        "TaskRun fetch-price TASK_SCHEDULED",
        "TaskRun fetch-price TASK_RUNNING",
        "TaskRun fetch-price TASK_SUCCESS",
        "TaskRun charge-credit-card TASK_SCHEDULED",
        "TaskRun charge-credit-card TASK_RUNNING",
        "TaskRun charge-credit-card TASK_SUCCESS",
        "TaskRun ship-item TASK_SCHEDULED",
        "TaskRun ship-item TASK_RUNNING",
    ];
    if pre_posted {
        lines.extend([PRE_POSTED, "TaskRun ship-item TASK_SUCCESS"]);
    } else {
        lines.extend([
            "TaskRun ship-item TASK_SUCCESS",
            "Variable order-status=SHIPPING",
        ]);
    }
    lines.extend([
        "ExternalEvent item-delivered claimed=true",
        "Variable order-status=COMPLETED",
        "WfRun COMPLETED",
    ]);
    lines
}

/// Checks that the runs `{prefix}-0..count` published exactly [`expected_order`] and
/// that nothing else is in `records`; returns how many runs saw the event pre-posted.
pub(crate) fn assert_orders_published(
    records: &[ConsumedRecord],
    tenant: &str,
    prefix: &str,
    count: usize,
    output_partitions: i32,
) -> usize {
    let runs = lines_by_run(records, tenant, output_partitions);
    let expected_ids: BTreeSet<String> = (0..count).map(|n| orders::order_id(prefix, n)).collect();
    assert_eq!(
        runs.keys().cloned().collect::<BTreeSet<_>>(),
        expected_ids,
        "the runs with records"
    );
    let mut pre_posted = 0;
    for (id, lines) in &runs {
        let early = lines.iter().any(|l| l == PRE_POSTED);
        pre_posted += usize::from(early);
        assert_eq!(lines, &expected_order(early), "the records of {id}");
    }
    pre_posted
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_order_publishes_exactly_its_changes_in_order() {
    let cluster = Cluster::new("output-all").await;
    let server = cluster.start_server("output-all-server").await;
    let client = WeirClient::connect(&cluster.config).await.expect("client");
    enable_output(
        &cluster,
        &client,
        "acme",
        OutputTopicRecordingLevel::AllEntityEvents,
    )
    .await;
    put_orders(&client, "acme", None).await;
    run_orders(&cluster, &client, "acme", "order", 20).await;

    let topics = CoreTopics::new(&cluster.config);
    let topic = topics.execution_output("acme");
    let records = read_to_end(&cluster, &topic).await;
    let (records, copies) = once_each(records);
    assert_eq!(copies, 0, "no record is produced twice without a crash");
    let pre_posted = assert_orders_published(&records, "acme", "order", 20, 12);
    println!("{pre_posted} of 20 deliveries were posted before the run waited");

    assert_eq!(
        cluster.partition_count(&topic).await,
        12,
        "LHS_OUTPUT_TOPIC_PARTITIONS defaults to the cluster's"
    );
    let admin = cluster.ns.admin().await;
    let configs = admin.topic_configs(&topic).await.expect("configs");
    assert_eq!(
        configs.get("cleanup.policy").map(String::as_str),
        Some("delete")
    );
    let metadata_topic = topics.metadata_output("acme");
    assert_eq!(cluster.partition_count(&metadata_topic).await, 1);
    stop_server(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_no_entity_events_only_the_enabled_task_def_is_published() {
    let cluster = Cluster::new("output-none").await;
    let server = cluster.start_server("output-none-server").await;
    let client = WeirClient::connect(&cluster.config).await.expect("client");
    enable_output(
        &cluster,
        &client,
        "quiet",
        OutputTopicRecordingLevel::NoEntityEvents,
    )
    .await;
    put_orders(&client, "quiet", Some(true)).await;
    run_orders(&cluster, &client, "quiet", "order", 5).await;

    let records = read_to_end(
        &cluster,
        &CoreTopics::new(&cluster.config).execution_output("quiet"),
    )
    .await;
    let (records, _) = once_each(records);
    let runs = lines_by_run(&records, "quiet", 12);
    assert_eq!(runs.len(), 5, "{runs:?}");
    for (id, lines) in runs {
        assert_eq!(
            lines,
            [
                "TaskRun ship-item TASK_SCHEDULED",
                "TaskRun ship-item TASK_RUNNING",
                "TaskRun ship-item TASK_SUCCESS"
            ],
            "the records of {id}"
        );
    }
    stop_server(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_tenants_never_see_each_others_records() {
    let cluster = Cluster::new("output-tenants").await;
    let server = cluster.start_server("output-tenants-server").await;
    let client = WeirClient::connect(&cluster.config).await.expect("client");
    let tenants = [("acme", 6), ("globex", 4)];
    for (tenant, _) in tenants {
        enable_output(
            &cluster,
            &client,
            tenant,
            OutputTopicRecordingLevel::AllEntityEvents,
        )
        .await;
        put_orders(&client, tenant, None).await;
    }
    // Both tenants at once, each with its own run ids.
    tokio::join!(
        run_orders(&cluster, &client, "acme", "acme-order", tenants[0].1),
        run_orders(&cluster, &client, "globex", "globex-order", tenants[1].1),
    );

    let topics = CoreTopics::new(&cluster.config);
    for (tenant, count) in tenants {
        let (records, _) = once_each(read_to_end(&cluster, &topics.execution_output(tenant)).await);
        // Every record's weir-tenant header is checked, and the runs are exactly this
        // tenant's.
        assert_orders_published(&records, tenant, &format!("{tenant}-order"), count, 12);
        let metadata = read_to_end(&cluster, &topics.metadata_output(tenant)).await;
        assert_eq!(
            metadata.len(),
            5,
            "three TaskDefs, the event def and the WfSpec"
        );
        for record in &metadata {
            assert_eq!(record.header_str(TENANT_HEADER).as_deref(), Some(tenant));
        }
    }
    let output_topics: Vec<String> = cluster
        .ns
        .admin()
        .await
        .list_topics()
        .await
        .expect("topics")
        .into_iter()
        .filter(|t| t.starts_with(&cluster.ns.cluster_id) && t.ends_with("-output"))
        .collect();
    assert_eq!(
        output_topics,
        [
            topics.execution_output("acme"),
            topics.metadata_output("acme"),
            topics.execution_output("globex"),
            topics.metadata_output("globex"),
        ],
        "no output topics for the default tenant, which did not enable them"
    );
    stop_server(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_output_partitions_take_command_partition_modulo_four() {
    let cluster = Cluster::with_env("output-four", &[("LHS_OUTPUT_TOPIC_PARTITIONS", "4")]).await;
    assert_eq!(cluster.config.output_partitions, 4);
    let server = cluster.start_server("output-four-server").await;
    let client = WeirClient::connect(&cluster.config).await.expect("client");
    enable_output(
        &cluster,
        &client,
        "acme",
        OutputTopicRecordingLevel::AllEntityEvents,
    )
    .await;
    put_orders(&client, "acme", None).await;
    run_orders(&cluster, &client, "acme", "order", 12).await;

    let topic = CoreTopics::new(&cluster.config).execution_output("acme");
    assert_eq!(cluster.partition_count(&topic).await, 4);
    let (records, _) = once_each(read_to_end(&cluster, &topic).await);
    // Checks every record's partition against `partition_for_key(id, 12) % 4`.
    assert_orders_published(&records, "acme", "order", 12, 4);
    let used: BTreeSet<i32> = records.iter().map(|r| r.partition).collect();
    assert!(
        used.len() > 1,
        "the orders spread over several output partitions: {used:?}"
    );
    stop_server(server).await;
}

#[tokio::test]
async fn an_output_partition_count_that_does_not_divide_the_cluster_s_is_refused() {
    let ns = TestNamespace::new("output-five").await;
    let mut env = ns.env();
    env.push(("LHS_OUTPUT_TOPIC_PARTITIONS".to_owned(), "5".to_owned()));
    let mut server = WeirProcess::start("output-five-server", &["server"], &env);
    let status = server.wait_for_exit(START_WAIT).await;
    assert!(
        !status.success(),
        "the server must refuse 5 of 12 partitions"
    );
    let stderr = server.stderr();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(
        lines[0].starts_with("weir: ") && lines[0].contains("LHS_OUTPUT_TOPIC_PARTITIONS"),
        "{stderr}"
    );
    assert!(!server.stdout().contains("running"), "{}", server.stdout());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_in_place_wf_spec_update_is_published_under_the_same_version() {
    let cluster = Cluster::new("output-in-place").await;
    let server = cluster.start_server("output-in-place-server").await;
    let client = WeirClient::connect(&cluster.config).await.expect("client");
    enable_output(
        &cluster,
        &client,
        "acme",
        OutputTopicRecordingLevel::AllEntityEvents,
    )
    .await;
    put_orders(&client, "acme", None).await;
    let result = accepted(
        client
            .send_metadata("acme", wf_spec_request(Some(false)))
            .await
            .expect("sent"),
    )
    .expect("in-place update");
    assert_eq!(
        weir_processor::client::result_id::<weir_proto::WfSpecId>(&result)
            .map(|id| (id.major_version, id.revision)),
        Some((0, 0)),
        "the same version"
    );

    let topic = CoreTopics::new(&cluster.config).metadata_output("acme");
    let kafka = KafkaClient::connect(&cluster.config.kafka())
        .await
        .expect("kafka");
    consume_until(&kafka, &topic, 1, RUN_WAIT, "the updated WfSpec", |seen| {
        seen.iter().any(|r| {
            let decoded: MetadataOutputTopicRecord = r.decode();
            matches!(decoded.metadata_record, Some(MetadataRecord::WfSpec(spec)) if spec.enable_entity_events == Some(false))
        })
    })
    .await;
    let records = read_to_end(&cluster, &topic).await;
    let keys: Vec<String> = records.iter().map(ConsumedRecord::key_str).collect();
    let mut expected = ORDERS_METADATA_KEYS.to_vec();
    expected.push("WF_SPEC/orders/0/0");
    assert_eq!(
        keys, expected,
        "the update is published under its own version, and no new version exists"
    );
    let kinds: Vec<Option<String>> = records.iter().map(|r| r.header_str(TYPE_HEADER)).collect();
    assert_eq!(
        kinds.last().cloned().flatten().as_deref(),
        Some("wf_spec"),
        "{kinds:?}"
    );
    let Some(MetadataRecord::WfSpec(first)) = records[4]
        .decode::<MetadataOutputTopicRecord>()
        .metadata_record
    else {
        panic!("record 4 is not a WfSpec");
    };
    assert_eq!(first.enable_entity_events, None);
    stop_server(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_sigkill_every_record_is_there_and_copies_are_identical() {
    let cluster = Cluster::new("output-killed").await;
    let mut server = cluster.start_server("output-killed-server-1").await;
    let client = WeirClient::connect(&cluster.config).await.expect("client");
    enable_output(
        &cluster,
        &client,
        "acme",
        OutputTopicRecordingLevel::AllEntityEvents,
    )
    .await;
    put_orders(&client, "acme", None).await;
    let drive = Drive::start(&cluster, &client, "acme").await;
    let count = 30;
    let starting = {
        let client = client.clone().with_timeout(Duration::from_secs(120));
        tokio::spawn(async move { orders::start_orders(&client, "acme", "order", count).await })
    };
    let deadline = Instant::now() + RUN_WAIT;
    while cluster.finished("acme", "order-").await < 1 {
        assert!(Instant::now() < deadline, "no order finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.sigkill();
    server.wait_for_exit(START_WAIT).await;
    let at_kill = cluster.finished("acme", "order-").await;
    println!("killed the server with {at_kill} of {count} orders finished");
    let server = cluster.start_server("output-killed-server-2").await;
    starting
        .await
        .expect("join")
        .expect("every order was accepted");
    wait_completed(&cluster, "acme", "order", count, RUN_WAIT).await;
    drive.stop().await;

    let records = read_to_end(
        &cluster,
        &CoreTopics::new(&cluster.config).execution_output("acme"),
    )
    .await;
    let (records, copies) = once_each(records);
    println!("{copies} records were produced again after the kill, each identical");
    assert_orders_published(&records, "acme", "order", count, 12);
    stop_server(server).await;
}

/// The workspace root, where the README's commands run.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

/// The fenced code blocks of the README's "The Output Topic" section with their
/// language, in order.
fn readme_output_topic_blocks() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let start = readme
        .find("\n## The Output Topic\n")
        .expect("the README has a section \"The Output Topic\"");
    let section = &readme[start + 1..];
    let section = &section[..section[3..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 3)];
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if let Some(language) = line.strip_prefix("```") {
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            blocks.push((language.to_owned(), body.join("\n")));
        }
    }
    blocks
}

/// Fails, saying how to install it, when `tool` cannot be started.
fn require_tool(tool: &str, version_arg: &str) {
    let started = Command::new(tool)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        started.is_ok(),
        "{tool} is not installed: run scripts/install-system-deps.sh (make test does) to install kcat and protobuf-compiler"
    );
}

/// Runs a README shell block with bash (pipefail) in the workspace root, with `env`;
/// returns its stdout, or panics with its output when it fails or outlives `timeout`.
async fn run_shell(
    script: &str,
    env: &[(String, String)],
    timeout: Duration,
    cwd: &Path,
) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new("bash")
        .args(["-o", "pipefail", "-c", script])
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("starting bash");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for bash") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    // librdkafka 2.0 (Debian 12's kcat) cannot skip the tagged fields some brokers
    // write in their ApiVersions v3 answer; say so rather than leave it to be guessed.
    let hint = if stderr.contains("ApiVersionRequest failed: Local: Read underflow") {
        "\nkcat's librdkafka cannot read this broker's ApiVersions answer (tagged fields \
         written with their default values); the command needs a broker it can talk to \
         (Kafka, Redpanda: set LHS_KAFKA_BOOTSTRAP_SERVERS) or a newer kcat\n"
    } else {
        ""
    };
    match status {
        Some(status) if status.success() => stdout,
        other => panic!(
            "{hint}README command failed ({other:?}, None: timed out after {timeout:?}):\n{script}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_readme_commands_enable_the_topic_and_decode_its_records() {
    require_tool("kcat", "-V");
    require_tool("protoc", "--version");
    let blocks = readme_output_topic_blocks();
    let tenant_yaml = blocks
        .iter()
        .find(|(language, body)| language == "yaml" && body.contains("outputTopicConfig"))
        .map(|(_, body)| body.clone())
        .expect("the README shows a tenant file with an outputTopicConfig");
    let kcat_blocks: Vec<&String> = blocks
        .iter()
        .filter(|(language, body)| language == "sh" && body.contains("kcat "))
        .map(|(_, body)| body)
        .collect();
    assert_eq!(
        kcat_blocks.len(),
        2,
        "one command per output topic: {kcat_blocks:?}"
    );

    let cluster = Cluster::new("output-readme").await;
    let server = cluster.start_server("output-readme-server").await;
    let file = tempfile::Builder::new()
        .suffix(".tenant.yaml")
        .tempfile()
        .expect("temp file");
    std::fs::write(file.path(), &tenant_yaml).expect("writing the tenant file");
    let path = file.path().display().to_string();
    let put = WeirProcess::run_ok(
        "output-readme-put-tenant",
        &["put", "tenant", &path],
        cluster.env(),
        START_WAIT,
    )
    .await;
    assert_eq!(put, "ok: tenant acme\n");
    wait_for_output_topics(&cluster, "acme").await;
    let client = WeirClient::connect(&cluster.config).await.expect("client");
    put_orders(&client, "acme", None).await;
    run_orders(&cluster, &client, "acme", "order", 2).await;

    // `weir output tail` prints the same records as JSON lines, values decoded.
    let mut tail = WeirProcess::start(
        "output-readme-tail",
        &["output", "tail", "--tenant", "acme", "--from-beginning"],
        cluster.env(),
    );
    let printed = tail
        .wait_for_stdout(RUN_WAIT, "every record of the two orders", |out| {
            out.matches("\"wfRun\"").count() >= 4
        })
        .await;
    tail.sigterm();
    assert!(
        tail.wait_for_exit(START_WAIT).await.success(),
        "{}",
        tail.stderr()
    );
    let first = printed.lines().next().expect("a line");
    println!("weir output tail: {first}");
    // (The JSON itself is unit-tested in weir_processor::cli::output.)
    for line in printed.lines() {
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
        for field in [
            "\"partition\":",
            "\"offset\":",
            "\"key\":\"order-",
            "\"weir-id\":",
        ] {
            assert!(line.contains(field), "{field} in {line}");
        }
        assert!(line.contains("\"weir-tenant\":\"acme\""), "{line}");
        assert!(line.contains("\"timestamp\":\"20"), "{line}");
        assert!(
            ["wfRun", "taskRun", "variable", "externalEvent"]
                .iter()
                .any(|case| line.contains(&format!("\"{case}\":{{"))),
            "{line}"
        );
    }
    let mut metadata = WeirProcess::start(
        "output-readme-tail-metadata",
        &[
            "output",
            "tail",
            "--tenant",
            "acme",
            "--metadata",
            "--from-beginning",
        ],
        cluster.env(),
    );
    let printed = metadata
        .wait_for_stdout(RUN_WAIT, "the WfSpec record", |out| {
            out.contains("\"wfSpec\"")
        })
        .await;
    metadata.sigterm();
    metadata.wait_for_exit(START_WAIT).await;
    assert!(
        printed.contains("\"key\":\"TASK_DEF/fetch-price\""),
        "{printed}"
    );

    // A tenant without output topics is one line saying so.
    let mut missing = WeirProcess::start(
        "output-readme-tail-missing",
        &["output", "tail", "--tenant", "nobody"],
        cluster.env(),
    );
    assert!(!missing.wait_for_exit(START_WAIT).await.success());
    let stderr = missing.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("weir: tenant nobody has no output topic: ")
            && stderr.contains("nobody_execution-output does not exist"),
        "{stderr}"
    );

    let topics = CoreTopics::new(&cluster.config);
    for script in kcat_blocks {
        let metadata = script.contains("weir.MetadataOutputTopicRecord");
        let wanted: &[&str] = if metadata {
            &["task_def {", "wf_spec {"]
        } else {
            &["wf_run {", "task_run {"]
        };
        // The protoc half alone, fed one record's value, so a failure says which half.
        let protoc = script
            .split_once("| protoc")
            .map(|(_, rest)| format!("protoc{rest} < value.bin"))
            .expect("the command pipes kcat into protoc");
        let topic = if metadata {
            topics.metadata_output("acme")
        } else {
            topics.execution_output("acme")
        };
        let record = read_to_end(&cluster, &topic).await.remove(0);
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("value.bin"),
            record.value.unwrap_or_default(),
        )
        .expect("writing the value");
        let protoc = protoc.replace("proto/", &format!("{}/proto/", workspace_root().display()));
        let text = run_shell(&protoc, cluster.env(), Duration::from_secs(30), dir.path()).await;
        assert!(
            wanted.iter().any(|w| text.contains(w)),
            "{protoc}\ndecoded to:\n{text}"
        );

        // The whole command, as the README writes it. Debian 12's kcat cannot read the
        // local test broker's ApiVersions answer (see the README), so it runs against a
        // broker the test run was given (Kafka, Redpanda); the protoc half above runs
        // everywhere.
        if std::env::var_os("LHS_KAFKA_BOOTSTRAP_SERVERS").is_none() {
            println!(
                "kcat half not run: the local test broker is nisshi, which kcat 1.7 cannot talk to"
            );
            continue;
        }
        let text = run_shell(
            script,
            cluster.env(),
            Duration::from_secs(30),
            &workspace_root(),
        )
        .await;
        assert!(
            wanted.iter().any(|w| text.contains(w)),
            "{script}\ndecoded to:\n{text}"
        );
    }
    stop_server(server).await;
}
