//! The flows example (`examples/flows/user-activity.yaml`) on a real broker (see
//! `make run-flows`).
//!
//! - `flows run [FILE]`: runs the flows of FILE (default: the example manifest) with the
//!   example's transforms until SIGTERM or SIGINT. Apply the manifest first
//!   (`weir flows apply FILE`).
//! - `flows generate [N] [--rate R]` (default 100): produces N UserActivity 0.0 records,
//!   at most R per second.
//! - `flows demo [N]` (default 4000): the RFD's story on one broker. It applies the
//!   manifest's models alone and runs them while a generator keeps producing
//!   UserActivity 0.0 records (about 400 a second); while it produces, it applies the
//!   whole manifest (the migration to 0.1 and the flow to ParsedActivity) and restarts
//!   the flows with it, so the migration's initial load runs beside live ingestion. The
//!   generator stops once the load is done on every partition and it has produced at
//!   least N records (the demo fails if it stopped before the load was done); a newer
//!   producer then writes N/2 UserActivity 0.1 records. It prints each table's row
//!   count once UserActivity 0.1 holds the migration of every UserActivity 0.0 row.
//!
//! Configuration is the usual `LHS_*` variables; `FLOWS_PARTITIONS` (default 3) is the
//! partition count of the topics the demo creates; `FLOWS_LOAD_CHUNK` and
//! `FLOWS_LOAD_TICK_MS` set the initial load's rows per tick and milliseconds between
//! ticks (`FlowsOptions`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use weir_examples::flows_demo::{self, MANIFEST_PATH, Pace};
use weir_processor::cli::flows::{apply_manifest, load_progress};
use weir_processor::config::WeirConfig;
use weir_processor::flows::app::{FlowsApp, RunningFlows};
use weir_processor::flows::apply::table_changelog;
use weir_processor::flows::manifest::{self, ValidManifest};
use weir_processor::flows::plan::PlanOptions;
use weir_processor::flows::topology::FlowsOptions;
use weir_processor::lifecycle;
use weir_topology::kafka::{KafkaAdmin, KafkaClient};

/// mimalloc for every allocation of this process (why: the workspace Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Distinct users the generator writes for: enough that most rows of the 0.0 table are
/// not rewritten live before the migration's initial load reaches them.
const USERS: u64 = 1_000;

/// Distinct users of the newer producer, which writes UserActivity 0.1.
const APP_USERS: u64 = 100;

/// How long the demo waits for each of its stages.
const STAGE_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lifecycle::init_logging("warn");
    lifecycle::disable_transparent_huge_pages();
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
    let options = load_options()?;
    match args.first().map(String::as_str) {
        Some("run") => {
            let app = match args.get(1) {
                Some(file) => FlowsApp::new(file.as_str(), flows_demo::registry()),
                None => FlowsApp::new(flows_demo::manifest()?.into_inner(), flows_demo::registry()),
            };
            app.with_options(options)
                .run(
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
        None | Some("demo") => demo(&config, count(1, 4000)?, options).await,
        Some(other) => anyhow::bail!("unknown command {other:?}; use run, generate or demo"),
    }
}

/// The initial load options from `FLOWS_LOAD_CHUNK` and `FLOWS_LOAD_TICK_MS`.
fn load_options() -> anyhow::Result<FlowsOptions> {
    let mut options = FlowsOptions::default();
    if let Ok(chunk) = std::env::var("FLOWS_LOAD_CHUNK") {
        options.load_chunk = chunk
            .parse()
            .with_context(|| format!("FLOWS_LOAD_CHUNK={chunk:?} is not a number of rows"))?;
    }
    if let Ok(tick) = std::env::var("FLOWS_LOAD_TICK_MS") {
        options.load_tick_ms = tick
            .parse()
            .with_context(|| format!("FLOWS_LOAD_TICK_MS={tick:?} is not a number of ms"))?;
    }
    Ok(options)
}

async fn demo(config: &WeirConfig, n: u64, options: FlowsOptions) -> anyhow::Result<()> {
    let full = flows_demo::manifest()?;
    let models_only = manifest::validate(flows_demo::models_only(full.manifest()), None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let partitions = match std::env::var("FLOWS_PARTITIONS") {
        Ok(p) => p
            .parse()
            .with_context(|| format!("FLOWS_PARTITIONS={p:?} is not a number"))?,
        Err(_) => 3,
    };
    let plan = PlanOptions {
        partitions,
        allow_data_removal: false,
    };

    // Stage 1: the models alone, fed by a generator that keeps producing.
    let applied = apply(config, &models_only, plan).await?;
    println!("applied the models of {MANIFEST_PATH}:\n{applied}");
    let running = start(config, &models_only, options).await?;
    // The generator runs until told to stop, after the load; `made` counts the records
    // it has handed to its producer.
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU64::new(0));
    let mut generator = {
        let config = config.clone();
        let (stop, made) = (Arc::clone(&stop), Arc::clone(&made));
        let pace = Pace {
            batch: 20,
            every: Duration::from_millis(50),
            limit: u64::MAX,
        };
        tokio::spawn(async move {
            let make = |i| {
                made.fetch_max(i + 1, Ordering::Relaxed);
                flows_demo::record(i, USERS)
            };
            flows_demo::produce_until(&config, &flows_demo::source_model(), make, pace, &stop).await
        })
    };
    // Every partition of the 0.0 table takes records from this run before the flows come
    // (a broker kept from an earlier run has tables already).
    let source = flows_demo::source_model();
    let client = KafkaClient::connect(&config.kafka()).await?;
    let changelog = table_changelog(&config.cluster_id, &source.table());
    let mut ends = Vec::new();
    for partition in 0..partitions {
        let handle = client.partition(&changelog, partition).await?;
        let end = handle.high_watermark().await?;
        ends.push((handle, end));
    }
    wait_for(
        "every partition of the UserActivity 0.0 table to take records",
        || async {
            for (handle, end) in &ends {
                if handle.high_watermark().await? <= *end {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .await?;

    // Stage 2, while the generator goes on: the flows, and their initial load.
    let applied = apply(config, &full, plan).await?;
    let at_apply = made.load(Ordering::Relaxed);
    still_producing(&mut generator, "the flows were applied").await?;
    println!(
        "applied {MANIFEST_PATH} while the generator produces ({at_apply} records so far):\n{applied}"
    );
    running.shutdown().await;
    let running = start(config, &full, options).await?;
    wait_for(
        "the migration's initial load on every partition",
        || async {
            let progress = load_progress(config, &source).await?;
            Ok(progress.len() == usize::try_from(partitions).unwrap_or(0)
                && progress.iter().all(|p| p.done))
        },
    )
    .await?;
    let loaded: u64 = load_progress(config, &source)
        .await?
        .iter()
        .map(|p| p.records_loaded)
        .sum();
    println!("initial load done: {loaded} UserActivity 0.0 rows loaded into the migration");
    still_producing(&mut generator, "the initial load was done").await?;
    wait_for(&format!("the generator to produce {n} records"), || async {
        Ok(made.load(Ordering::Relaxed) >= n)
    })
    .await?;
    stop.store(true, Ordering::Relaxed);
    let produced = generator.await.context("the generator panicked")??;
    let after_apply = u64::try_from(produced.len())
        .unwrap_or(u64::MAX)
        .saturating_sub(at_apply);
    println!(
        "produced {} records to {}, {after_apply} of them after the flows were applied",
        produced.len(),
        source.ingestion_topic()
    );
    let current = flows_demo::current_model();
    let m = n / 2;
    let records = (0..m)
        .map(|i| flows_demo::record_0_1(i, APP_USERS))
        .collect();
    flows_demo::produce(config, &current, records, None).await?;
    println!("produced {m} records to {}", current.ingestion_topic());

    // UserActivity 0.1 ends as the migration of the latest 0.0 record of each user, plus
    // the newer producer's users. Records migrated into 0.1 go to its table only (a
    // record reaches a model version once), so ParsedActivity sees the records produced
    // to 0.1.
    let expected_0_0 = flows_demo::latest_per_key(produced);
    let migrated = flows_demo::transformed(flows_demo::MIGRATION_TRANSFORM, &expected_0_0)?;
    let app_users = usize::try_from(m.min(APP_USERS)).unwrap_or(usize::MAX);
    let parsed = flows_demo::parsed_model();
    wait_for("every table to hold what was produced", || async {
        let table_0_0 = flows_demo::table_values(config, &source).await?;
        let table_0_1 = flows_demo::table_values(config, &current).await?;
        let migrated_rows: BTreeMap<&String, &Value> = table_0_1
            .iter()
            .filter(|(key, _)| expected_0_0.contains_key(*key))
            .collect();
        Ok(table_0_0 == expected_0_0
            && migrated_rows == migrated.iter().collect()
            && table_0_1.len() == migrated.len() + app_users
            && flows_demo::table_values(config, &parsed).await?.len() == app_users)
    })
    .await?;
    running.shutdown().await;
    println!("table rows (committed, one per user):");
    for (id, _) in full.models() {
        let rows = flows_demo::table_values(config, id).await?.len();
        println!("  {id}: {rows}");
    }
    println!(
        "UserActivity 0.1 holds the migration of the latest record of each of the {} \
         UserActivity 0.0 users",
        migrated.len()
    );
    Ok(())
}

/// An error if the generator has stopped (it stops only when told to, or on an error,
/// which the error gives), saying it stopped before `when`.
async fn still_producing(
    generator: &mut tokio::task::JoinHandle<anyhow::Result<Vec<(String, Value)>>>,
    when: &str,
) -> anyhow::Result<()> {
    if !generator.is_finished() {
        return Ok(());
    }
    let result = generator.await.context("the generator panicked")?;
    let produced = result.with_context(|| format!("the generator failed before {when}"))?;
    anyhow::bail!(
        "the generator stopped after {} records, before {when}",
        produced.len()
    )
}

async fn apply(
    config: &WeirConfig,
    manifest: &ValidManifest,
    options: PlanOptions,
) -> anyhow::Result<String> {
    let kafka = config.kafka();
    let admin = KafkaAdmin::connect(&kafka).await?;
    let client = KafkaClient::connect(&kafka).await?;
    let applied = apply_manifest(config, &admin, &client, manifest, options).await?;
    Ok(applied.to_string())
}

async fn start(
    config: &WeirConfig,
    manifest: &ValidManifest,
    options: FlowsOptions,
) -> anyhow::Result<RunningFlows> {
    let app =
        FlowsApp::new(manifest.manifest().clone(), flows_demo::registry()).with_options(options);
    let running = app.start(config).await?;
    println!("flows running tasks {}", running.task_ids().join(","));
    Ok(running)
}

/// Polls `check` every half second until it holds; an error after [`STAGE_TIMEOUT`].
async fn wait_for<F, Fut>(what: &str, check: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + STAGE_TIMEOUT;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("waited {STAGE_TIMEOUT:?} for {what}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
