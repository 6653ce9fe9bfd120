//! The flows example (`examples/flows/user-activity.yaml`) on a real broker (see
//! `make run-flows`).
//!
//! - `flows run`: runs the manifest's flows with the example's transforms until SIGTERM
//!   or SIGINT (apply the manifest first: `weir flows apply examples/flows/user-activity.yaml`).
//! - `flows generate [N] [--rate R]` (default 100): produces N UserActivity 0.0 records,
//!   at most R per second.
//! - `flows demo [N]` (default 200): applies the manifest, starts the flows in this
//!   process, generates N records, and prints each table's row count once every table
//!   holds every user.
//!
//! Configuration is the usual `LHS_*` variables; `FLOWS_PARTITIONS` (default 3) is the
//! partition count of the ingestion topics the demo creates.

use std::time::{Duration, Instant};

use anyhow::Context;
use weir_examples::flows_demo::{self, MANIFEST_PATH};
use weir_processor::cli::flows::{apply_manifest, table_rows};
use weir_processor::config::WeirConfig;
use weir_processor::flows::app::FlowsApp;
use weir_processor::flows::naming::ModelVersion;
use weir_processor::flows::plan::PlanOptions;
use weir_processor::lifecycle;
use weir_topology::kafka::{KafkaAdmin, KafkaClient};

/// Distinct users the generator writes for.
const USERS: u64 = 20;

/// Distinct users of the newer producer, which writes UserActivity 0.1.
const APP_USERS: u64 = 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lifecycle::init_logging("warn");
    let config = WeirConfig::from_env()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count = |at: usize, default: u64| -> anyhow::Result<u64> {
        match args.get(at).filter(|a| !a.starts_with("--")) {
            Some(n) => n
                .parse()
                .with_context(|| format!("{n:?} is not a number of records")),
            None => Ok(default),
        }
    };
    match args.first().map(String::as_str) {
        Some("run") => {
            let app = FlowsApp::new(flows_demo::manifest()?.into_inner(), flows_demo::registry());
            app.run(
                &config,
                lifecycle::shutdown_signal(),
                &mut std::io::stdout(),
            )
            .await?;
            Ok(())
        }
        Some("generate") => {
            let n = count(1, 100)?;
            let rate = match args.iter().position(|a| a == "--rate") {
                Some(at) => Some(
                    args.get(at + 1)
                        .context("--rate needs a number of records per second")?
                        .parse::<f64>()
                        .context("--rate needs a number of records per second")?,
                ),
                None => None,
            };
            flows_demo::generate(&config, n, USERS, rate).await?;
            println!(
                "produced {n} records to {}",
                flows_demo::source_model().ingestion_topic()
            );
            Ok(())
        }
        None | Some("demo") => demo(&config, count(1, 200)?).await,
        Some(other) => anyhow::bail!("unknown command {other:?}; use run, generate or demo"),
    }
}

async fn demo(config: &WeirConfig, n: u64) -> anyhow::Result<()> {
    let manifest = flows_demo::manifest()?;
    let partitions = match std::env::var("FLOWS_PARTITIONS") {
        Ok(p) => p
            .parse()
            .with_context(|| format!("FLOWS_PARTITIONS={p:?} is not a number"))?,
        Err(_) => 3,
    };
    let kafka = config.kafka();
    let admin = KafkaAdmin::connect(&kafka).await?;
    let client = KafkaClient::connect(&kafka).await?;
    let options = PlanOptions {
        partitions,
        allow_data_removal: false,
    };
    let applied = apply_manifest(config, &admin, &client, &manifest, options).await?;
    println!("applied {MANIFEST_PATH}:");
    print!("{applied}");

    let app = FlowsApp::new(manifest.manifest().clone(), flows_demo::registry());
    let running = app.start(config).await?;
    println!("flows running tasks {}", running.task_ids().join(","));

    flows_demo::generate(config, n, USERS, None).await?;
    println!(
        "produced {n} records to {}",
        flows_demo::source_model().ingestion_topic()
    );
    let current = flows_demo::current_model();
    let m = n / 2;
    let records = (0..m)
        .map(|i| flows_demo::record_0_1(i, APP_USERS))
        .collect();
    flows_demo::produce(config, &current, records, None).await?;
    println!("produced {m} records to {}", current.ingestion_topic());

    // Records migrated into 0.1 go to its table only: a record reaches a model version
    // once, so ParsedActivity sees the records produced to 0.1 (the initial load of a
    // new flow is what brings a table's earlier rows to it).
    let old_users = usize::try_from(n.min(USERS)).unwrap_or(usize::MAX);
    let app_users = usize::try_from(m.min(APP_USERS)).unwrap_or(usize::MAX);
    let expected = |id: &ModelVersion| {
        if *id == flows_demo::source_model() {
            old_users
        } else if *id == current {
            old_users + app_users
        } else {
            app_users
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let counts = loop {
        let mut counts = Vec::new();
        for (id, _) in manifest.models() {
            counts.push((id.clone(), table_rows(config, id).await?.len()));
        }
        if counts.iter().all(|(id, c)| *c >= expected(id)) || Instant::now() >= deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    running.shutdown().await;
    println!("table rows (committed, one per user):");
    for (id, count) in &counts {
        println!("  {id}: {count}");
    }
    if let Some((id, count)) = counts.iter().find(|(id, c)| *c < expected(id)) {
        anyhow::bail!(
            "table {} holds {count} rows, not {}, after 60 s",
            id.table(),
            expected(id)
        );
    }
    Ok(())
}
