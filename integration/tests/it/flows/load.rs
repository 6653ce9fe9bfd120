//! Initial loads on a running system. A migration flow added while a producer keeps
//! writing: the old version's table keeps updating during the load, and the new version's
//! table ends equal to the transform of the old one, key for key; the same with the flows
//! process SIGKILLed in the middle of the load (it resumes: the same snapshot positions,
//! each partition's count going on from where it stood, and no load started again); the
//! load's progress shows in the process's log and on its `/metrics`. A regular flow
//! added with `initial_load: true` over a table nobody writes to any more fills its
//! target from history (its partitions start by the start records the flows send when
//! they start).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use weir_examples::flows_demo::{self, MIGRATION_TRANSFORM, Pace};
use weir_integration::WeirProcess;
use weir_integration::prometheus::{exposition_value, scrape};
use weir_processor::cli::flows::load_progress;
use weir_processor::flows::app::FlowsApp;
use weir_processor::flows::apply::table_changelog;
use weir_proto::InitialLoadProgress;

use super::{FlowsCluster, wait_until};
use crate::cluster::{http_target, stop_server};

/// Users of the load tests, their records before the migration, partitions.
const USERS: u64 = 4_000;
const HISTORY: u64 = 12_000;
const PARTITIONS: i32 = 4;

/// A slow load: 10 rows a tick, a tick every 100 ms: about 10 s for each partition's
/// 1,000 rows, long enough to watch ingestion go on (and to kill the process) during it.
const SLOW_LOAD: [(&str, &str); 4] = [
    ("FLOWS_LOAD_CHUNK", "10"),
    ("FLOWS_LOAD_TICK_MS", "100"),
    ("RUST_LOG", "info"),
    ("LHS_METRICS_PORT", "0"),
];

/// The flows process's `/metrics` page.
async fn metrics_page(flows: &WeirProcess) -> String {
    let target = http_target(&flows.stdout(), "weir flows");
    scrape(&target).await.unwrap_or_else(|e| panic!("{e}"))
}

const WAIT: Duration = Duration::from_secs(180);

/// Rows per tick of [`SLOW_LOAD`].
const CHUNK: u64 = 10;

#[tokio::test]
async fn a_migration_added_while_producers_write_loads_without_pausing_ingestion() {
    migration_added_while_producing("flows-live-load", false).await;
}

#[tokio::test]
async fn a_migration_load_resumes_after_the_flows_process_is_killed() {
    migration_added_while_producing("flows-killed-load", true).await;
}

/// Each partition's load progress of the flows from `model`, by partition.
async fn progress(
    flows: &FlowsCluster,
    model: &weir_processor::flows::naming::ModelVersion,
) -> BTreeMap<i32, InitialLoadProgress> {
    load_progress(&flows.cluster.config, model)
        .await
        .expect("load progress")
        .into_iter()
        .map(|p| (p.partition, p))
        .collect()
}

async fn migration_added_while_producing(name: &str, kill: bool) {
    let flows = FlowsCluster::new(name).await;
    let config = &flows.cluster.config;
    let models = flows.write("models.yaml", &flows.models_only());
    let full = flows.write("flows.yaml", &flows.manifest());
    flows.apply(&models, PARTITIONS).await;
    let source = flows.model("UserActivity", 0);
    let target = flows.model("UserActivity", 1);

    // The old world: UserActivity 0.0 alone, its history, and a producer that never stops.
    let running = flows
        .start_flows(&format!("{name}-models"), &models, &SLOW_LOAD)
        .await;
    let history: Vec<_> = (0..HISTORY).map(|i| flows_demo::record(i, USERS)).collect();
    flows
        .produce(&source, history.clone(), "history produced")
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (config, source, stop) = (config.clone(), source.clone(), Arc::clone(&stop));
        let pace = Pace {
            batch: 20,
            every: Duration::from_millis(50),
            limit: u64::MAX,
        };
        tokio::spawn(async move {
            let make = |i| flows_demo::record(HISTORY + i, USERS);
            flows_demo::produce_until(&config, &source, make, pace, &stop).await
        })
    };
    wait_until(WAIT, "the 0.0 table to hold every user", || async {
        let rows = flows.table(&source).await.len() as u64;
        (rows < USERS).then(|| format!("{rows} rows"))
    })
    .await;

    // The migration is applied and the flows restarted with it, the producer going on.
    flows.apply(&full, PARTITIONS).await;
    stop_server(running).await;
    let mut running = flows
        .start_flows(&format!("{name}-flows"), &full, &SLOW_LOAD)
        .await;

    // During the load, the 0.0 table keeps taking records: a partition still loading at
    // the first and at the last look had its table changelog grow in between.
    let loading = |progress: &BTreeMap<i32, InitialLoadProgress>| -> Vec<i32> {
        progress
            .values()
            .filter(|p| !p.done)
            .map(|p| p.partition)
            .collect()
    };
    wait_until(WAIT, "every partition's load to start", || async {
        let progress = progress(&flows, &source).await;
        (progress.len() != PARTITIONS as usize).then(|| format!("{progress:?}"))
    })
    .await;
    let started = progress(&flows, &source).await;
    let before = loading(&started);
    assert!(
        !before.is_empty(),
        "the load ended before it was seen: {started:?}"
    );
    let changelog = table_changelog(&config.cluster_id, &source.table());
    let client = flows.cluster.ns.client().await;
    let mut ends = BTreeMap::new();
    for &partition in &before {
        let handle = client
            .partition(&changelog, partition)
            .await
            .expect("changelog");
        ends.insert(partition, handle.high_watermark().await.expect("end"));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut grew = Vec::new();
    for (&partition, &end) in &ends {
        let handle = client
            .partition(&changelog, partition)
            .await
            .expect("changelog");
        if handle.high_watermark().await.expect("end") > end {
            grew.push(partition);
        }
    }
    let still = loading(&progress(&flows, &source).await);
    let grew_while_loading: Vec<_> = grew.iter().filter(|p| still.contains(p)).collect();
    assert!(
        !grew_while_loading.is_empty(),
        "no partition's 0.0 table grew while it was loading: loading {before:?} then {still:?}, \
         grew {grew:?}"
    );

    // Killed once the load has loaded more than a chunk per partition, so a load that
    // started over could not pass for one that resumed.
    let mut at_kill = None;
    if kill {
        wait_until(WAIT, "more than a chunk per partition loaded", || async {
            let loaded: u64 = progress(&flows, &source)
                .await
                .values()
                .map(|p| p.records_loaded)
                .sum();
            (loaded <= CHUNK * PARTITIONS as u64).then(|| format!("{loaded} rows loaded"))
        })
        .await;
        at_kill = Some(progress(&flows, &source).await);
        running.sigkill();
        running = flows
            .start_flows(&format!("{name}-restarted"), &full, &SLOW_LOAD)
            .await;
    }
    wait_until(WAIT, "every partition's load to end", || async {
        let progress = progress(&flows, &source).await;
        let loading = loading(&progress);
        (!loading.is_empty()).then(|| format!("loading {loading:?}"))
    })
    .await;
    let done = progress(&flows, &source).await;
    for (partition, progress) in &done {
        assert_eq!(
            progress.snapshot_position, started[partition].snapshot_position,
            "partition {partition} started its load again instead of resuming"
        );
    }
    let loaded: u64 = done.values().map(|p| p.records_loaded).sum();
    assert!(loaded > 0, "no history was loaded: {done:?}");
    // Each user's row is loaded at most once (the count is state, committed with the
    // rows it counts), plus a chunk per partition of slack.
    assert!(
        loaded <= USERS + CHUNK * PARTITIONS as u64,
        "{loaded} rows loaded from a table of at most {USERS} users: {done:?}"
    );

    stop.store(true, Ordering::Relaxed);
    let live = producer
        .await
        .expect("producer task")
        .expect("live records produced");
    assert!(!live.is_empty());
    let expected = flows_demo::latest_per_key(history.into_iter().chain(live));
    let migrated =
        flows_demo::transformed(MIGRATION_TRANSFORM, &expected).expect("the example migrates");
    // The load reports itself as metrics too: each partition done, and (in a process that
    // ran the whole load) every row it loaded counted.
    let page = metrics_page(&running).await;
    for partition in 0..PARTITIONS {
        let labels = [
            ("flow", "migrate-user-activity"),
            ("partition", &partition.to_string()),
        ];
        assert_eq!(
            exposition_value(&page, "weir_flows_initial_load_done", &labels),
            Some(1.0),
            "partition {partition}:\n{page}"
        );
    }
    let counted = exposition_value(
        &page,
        "weir_flows_initial_load_records_total",
        &[("flow", "migrate-user-activity")],
    );
    match &at_kill {
        None => assert_eq!(counted, Some(loaded as f64), "{page}"),
        Some(at_kill) => {
            // Resumed: each partition's count went on from where it stood at the kill,
            // and the restarted process loaded only the rest (a chunk per partition of
            // slack for ticks it may have handled twice).
            for (partition, before) in at_kill {
                assert!(
                    done[partition].records_loaded >= before.records_loaded,
                    "partition {partition}: {before:?} then {:?}",
                    done[partition]
                );
            }
            let before: u64 = at_kill.values().map(|p| p.records_loaded).sum();
            let restarted = counted.unwrap_or(0.0) as u64;
            assert!(
                restarted + before <= loaded + CHUNK * PARTITIONS as u64,
                "the restarted process loaded {restarted} rows, {before} had been loaded \
                 before the kill, {loaded} in all: it loaded again what was loaded"
            );
        }
    }

    flows
        .wait_for_tables(
            WAIT,
            "0.1 to equal the migration of 0.0, key for key",
            &[(&source, &expected), (&target, &migrated)],
        )
        .await;
    let log = stop_server(running).await.stderr();
    assert!(log.contains("initial load done"), "{log}");
    // The restarted process resumed the load: it never started one.
    assert_eq!(log.contains("initial load started"), !kill, "{log}");
}

#[tokio::test]
async fn a_regular_flow_with_initial_load_fills_its_target_from_history() {
    let flows = FlowsCluster::new("flows-regular-load").await;
    let mut config = flows.cluster.config.clone();
    config.state_dir = flows.cluster.state_dir().to_owned();
    let models = flows.write("models.yaml", &flows.models_only());
    flows.apply(&models, 3).await;
    let current = flows.model("UserActivity", 1);
    let parsed = flows.model("ParsedActivity", 1);

    let app = FlowsApp::new(models.as_str(), flows_demo::registry());
    let running = app.start(&config).await.expect("models run");
    let history: Vec<_> = (0..3_000).map(|i| flows_demo::record_0_1(i, 300)).collect();
    let table = flows_demo::latest_per_key(history.clone());
    flows.produce(&current, history, "history produced").await;
    flows
        .wait_for_tables(WAIT, "the 0.1 table", &[(&current, &table)])
        .await;
    running.shutdown().await;

    // The regular flow alone, with an initial load; nobody writes to 0.1 any more.
    let text = flows.manifest();
    let regular = text
        .find("  - name: parse-activity")
        .expect("the regular flow");
    let manifest = format!(
        "{}\nflows:\n{}\n    initial_load: true\n",
        flows.models_only(),
        text[regular..].trim_end()
    );
    let file = flows.write("regular.yaml", &manifest);
    let applied = flows.apply(&file, 3).await;
    assert!(applied.contains("parse-activity"), "{applied}");
    let app = FlowsApp::new(file.as_str(), flows_demo::registry());
    let running = app.start(&config).await.expect("flows run");
    let expected = flows_demo::transformed("parse_activity", &table).expect("parses");
    flows
        .wait_for_tables(
            WAIT,
            "ParsedActivity to hold every 0.1 row, parsed",
            &[(&parsed, &expected)],
        )
        .await;
    let progress = progress(&flows, &current).await;
    running.shutdown().await;
    assert_eq!(progress.len(), 3, "{progress:?}");
    assert!(progress.values().all(|p| p.done), "{progress:?}");
    assert_eq!(
        progress.values().map(|p| p.records_loaded).sum::<u64>(),
        300,
        "every row loaded once"
    );
}
