//! `make bench`: weir's speed, cost and scale against the local broker, printed as one
//! table (each figure next to its limit or baseline, the ratio and the target) and
//! written as JSON.
//!
//! Settings from the environment: `QUICK=1` (a smaller run, a minute or two),
//! `BENCH_RECORDS` (input records; default 1,000,000, or 300,000 with `QUICK`),
//! `LHS_PRODUCE_COMPRESSION` (for every process of the run, the raw limits included),
//! `BENCH_LATENCY_SECONDS` (timed, after a 2 s warm-up; default 30, or 15 with `QUICK`), `BENCH_ORDERS` (WfRuns per
//! orders run; default 5,000, or 500 with `QUICK`), `BENCH_RESTORE_KEYS` (default
//! 1,000,000, or 250,000 with `QUICK`), `BENCH_OUTPUT` (the JSON file; default
//! `{WEIR_CACHE_DIR}/bench-results.json`) and `LHS_KAFKA_BOOTSTRAP_SERVERS` (default
//! `127.0.0.1:9092`). `BENCH_WORKLOADS` (for example `keyed-count,latency`) measures only
//! the named workloads of `orders`, `raw-copy`, `keyed-count`, `latency` and `restore`.
//! The processes it measures are the `keyed-count` and `weir` binaries
//! next to this one, so all come from the same build, whose profile the table names. It
//! exits with an error, after printing the table, when a workload failed.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use weir_examples::bench::workloads::Selection;
use weir_examples::bench::{self, BenchConfig};
use weir_topology::kafka::{KafkaConfig, ProduceCompression};

/// mimalloc for every allocation of this process (why: the workspace Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The orders workload's workers run in this process: their warnings go to stderr.
    weir_processor::lifecycle::init_logging("warn");
    // As in the processes it measures, so the raw limits get the same memory treatment.
    weir_processor::lifecycle::disable_transparent_huge_pages();
    let quick = std::env::var("QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let records = number("BENCH_RECORDS", if quick { 300_000 } else { 1_000_000 })?;
    let latency_seconds = number("BENCH_LATENCY_SECONDS", if quick { 15 } else { 30 })?;
    let latency_rate = Some(number("BENCH_LATENCY_RATE", 0)?).filter(|&rate| rate > 0);
    let orders = number("BENCH_ORDERS", if quick { 500 } else { 5_000 })?;
    let restore_keys = number(
        "BENCH_RESTORE_KEYS",
        if quick { 250_000 } else { 1_000_000 },
    )?;
    let cache = std::env::var_os("WEIR_CACHE_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/weir"),
        PathBuf::from,
    );
    let output = std::env::var_os("BENCH_OUTPUT")
        .map_or_else(|| cache.join("bench-results.json"), PathBuf::from);
    let bootstrap = std::env::var("LHS_KAFKA_BOOTSTRAP_SERVERS")
        .unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let binary_dir = std::env::current_exe()
        .context("locating the bench binary")?
        .parent()
        .map(PathBuf::from)
        .context("the bench binary has no directory")?;
    // The build directory says which profile: `debug`, `release` or `bench-opt`.
    let profile = binary_dir.file_name().map_or_else(
        || "unknown".to_owned(),
        |name| name.to_string_lossy().into_owned(),
    );
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    // The processes it starts read the same variable, so the raw limits compress as they do.
    let compression: ProduceCompression = match std::env::var("LHS_PRODUCE_COMPRESSION") {
        Ok(name) => name
            .parse()
            .map_err(|error| anyhow::anyhow!("LHS_PRODUCE_COMPRESSION: {error}"))?,
        Err(_) => ProduceCompression::default(),
    };
    let workloads = match std::env::var("BENCH_WORKLOADS") {
        Ok(list) => Selection::parse(&list)
            .map_err(|error| anyhow::anyhow!("BENCH_WORKLOADS={list:?}: {error}"))?,
        Err(_) => Selection::all(),
    };
    let config = BenchConfig {
        kafka: KafkaConfig::new(&bootstrap)
            .with_client_id("weir-bench")
            .with_compression(compression),
        cluster_id: format!("bench-{millis}"),
        records,
        latency_duration: Duration::from_secs(latency_seconds),
        latency_rate,
        work_dir: cache.join("bench"),
        processor_binary: binary_dir.join("keyed-count"),
        server_binary: binary_dir.join("weir"),
        orders: usize::try_from(orders).context("BENCH_ORDERS is too large")?,
        restore_keys,
        profile: profile.clone(),
        quick,
        workloads,
    };
    eprintln!(
        "weir bench: {profile} build ({}), broker {bootstrap}, {compression} compression, {records} records, {orders} orders, {restore_keys} restore keys{}",
        binary_dir.display(),
        if cfg!(debug_assertions) {
            "; an unoptimized build measures the compiler's debug code more than weir (`make bench` measures the bench-opt build)"
        } else {
            ""
        }
    );

    let report = bench::run(&config).await?;
    println!("{}", report.table());
    let json = serde_json::to_string_pretty(&report.json())?;
    std::fs::write(&output, json + "\n")
        .with_context(|| format!("writing {}", output.display()))?;
    println!("JSON: {}", output.display());
    anyhow::ensure!(
        report.failures.is_empty(),
        "{} workload(s) failed: {}",
        report.failures.len(),
        report.failures.join("; ")
    );
    Ok(())
}

/// A whole number from the environment, or `default` when unset.
fn number(variable: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(variable) {
        Ok(value) => value
            .parse()
            .with_context(|| format!("{variable}={value:?} is not a whole number")),
        Err(_) => Ok(default),
    }
}
