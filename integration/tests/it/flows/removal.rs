//! Data removal against the real broker: a model version removed with
//! `--allow-data-removal` and declared again starts afresh. Its ingestion topic starts at
//! offset 0 again, so the progress of its flows' initial loads (which counts offsets of
//! the old topic) must go with it: the new records reach the migration's target whatever
//! their offsets, and the old table's rows do not come back.

use std::collections::BTreeMap;

use serde_json::Value;
use weir_examples::flows_demo::{self, MIGRATION_TRANSFORM};
use weir_integration::WeirProcess;
use weir_processor::cli::flows::load_progress;
use weir_processor::flows::apply::table_changelog;
use weir_processor::flows::topology::initial_load_store;

use super::{FlowsCluster, START_WAIT, wait_until};
use crate::cluster::stop_server;

const PARTITIONS: i32 = 2;
const WAIT: std::time::Duration = std::time::Duration::from_secs(180);

/// `text` (the example manifest) without the block of lines that starts with `start`
/// and runs to the next list entry at the same indent (or the next top-level key).
fn without_block(text: &str, start: &str) -> String {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not in the manifest"));
    let rest = &text[from + 1..];
    let to = ["\n  - name:", "\nflows:"]
        .iter()
        .filter_map(|next| rest.find(next))
        .min()
        .map_or(text.len(), |at| from + 1 + at + 1);
    format!("{}{}", &text[..from], &text[to..])
}

/// `records` of new users: each user id prefixed, so none is a user of the history.
fn renamed(records: Vec<(String, Value)>, prefix: &str) -> Vec<(String, Value)> {
    records
        .into_iter()
        .map(|(key, mut value)| {
            let key = format!("{prefix}{key}");
            value["user_id"] = Value::String(key.clone());
            (key, value)
        })
        .collect()
}

#[tokio::test]
async fn a_model_removed_with_its_data_and_declared_again_migrates_its_new_records() {
    let flows = FlowsCluster::new("flows-removal").await;
    let config = &flows.cluster.config;
    let env = flows.cluster.env();
    let text = flows.manifest();
    let full = flows.write("flows.yaml", &text);
    let ua = &flows.user_activity;
    let without_text = without_block(
        &without_block(
            &text,
            &format!("  - name: {ua}\n    version: {{major: 0, minor: 0}}"),
        ),
        "  - name: migrate-user-activity",
    );
    assert!(!without_text.contains("minor: 0}"), "{without_text}");
    let without = flows.write("without-0-0.yaml", &without_text);
    let source = flows.model("UserActivity", 0);
    let target = flows.model("UserActivity", 1);

    // The models alone take the history; then the migration is added, so its loads
    // start past it, at snapshot positions well past the few records produced after
    // the removal.
    let models = flows.write("models.yaml", &flows.models_only());
    flows.apply(&models, PARTITIONS).await;
    let running = flows
        .start_flows("flows-removal-models", &models, &[])
        .await;
    let history: Vec<_> = (0..600).map(|i| flows_demo::record(i, 200)).collect();
    flows
        .produce(&source, history.clone(), "history produced")
        .await;
    let history_latest = flows_demo::latest_per_key(history);
    flows
        .wait_for_tables(WAIT, "the history ingested", &[(&source, &history_latest)])
        .await;
    stop_server(running).await;
    flows.apply(&full, PARTITIONS).await;
    let running = flows.start_flows("flows-removal-first", &full, &[]).await;
    let migrated =
        flows_demo::transformed(MIGRATION_TRANSFORM, &history_latest).expect("migration");
    flows
        .wait_for_tables(WAIT, "the history migrated", &[(&target, &migrated)])
        .await;
    wait_until(WAIT, "the load done on every partition", || async {
        let progress = load_progress(config, &source).await.expect("progress");
        let done = progress.iter().filter(|p| p.done).count();
        (done != PARTITIONS as usize).then(|| format!("{progress:?}"))
    })
    .await;
    let positions: Vec<i64> = load_progress(config, &source)
        .await
        .expect("progress")
        .iter()
        .map(|p| p.snapshot_position)
        .collect();
    stop_server(running).await;

    // UserActivity 0.0 and its migration removed with their data, then declared again;
    // no flows process runs in between.
    let removed = WeirProcess::run_ok(
        "flows-apply-removal",
        &["flows", "apply", &without, "--allow-data-removal"],
        env,
        START_WAIT,
    )
    .await;
    let cluster = &flows.cluster.ns.cluster_id;
    for deleted in [
        source.ingestion_topic(),
        table_changelog(cluster, &source.table()),
        table_changelog(cluster, &initial_load_store(&source)),
    ] {
        assert!(
            removed.contains(&format!("deleted topic {deleted}\n")),
            "{deleted} not deleted:\n{removed}"
        );
    }
    flows.apply(&full, PARTITIONS).await;
    let running = flows.start_flows("flows-removal-again", &full, &[]).await;

    // A few records, at offsets below every old snapshot position.
    let fresh = renamed(
        (0..40).map(|i| flows_demo::record(i, 20)).collect(),
        "again-",
    );
    assert!(positions.iter().all(|&p| p > 40), "{positions:?}");
    flows
        .produce(&source, fresh.clone(), "new records produced")
        .await;
    let fresh_latest = flows_demo::latest_per_key(fresh);
    let mut expected_target: BTreeMap<String, Value> = migrated;
    expected_target
        .extend(flows_demo::transformed(MIGRATION_TRANSFORM, &fresh_latest).expect("migration"));
    flows
        .wait_for_tables(
            WAIT,
            "the new records migrated, the old 0.0 rows gone",
            &[(&source, &fresh_latest), (&target, &expected_target)],
        )
        .await;
    let progress = load_progress(config, &source).await.expect("progress");
    assert!(
        progress.iter().all(|p| p.snapshot_position < 40),
        "new loads, at the new topic's offsets: {progress:?}"
    );
    stop_server(running).await;
}
