//! The keyed-count processor as a process (the runtime's crash tests and `make bench`
//! run it).
//!
//! `keyed-count` runs it until SIGTERM or SIGINT, with the `LHS_*` configuration
//! (`/metrics` on `LHS_METRICS_PORT` when it is set); `COUNT_PARTITIONS` (default 4)
//! sets the input partition count.
//! `keyed-count dump` prints the counters held in `LHS_STATE_DIR`, one `key count` line
//! each in key order, for comparing state between runs.

use std::collections::BTreeMap;

use anyhow::Context;
use weir_examples::keyed_count::{self, STORE, SUBTOPOLOGY};
use weir_processor::config::WeirConfig;
use weir_processor::lifecycle;
use weir_topology::{Runtime, Topology};

/// mimalloc for every allocation of this process (why: the workspace Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lifecycle::init_logging("info");
    lifecycle::disable_transparent_huge_pages();
    let config = WeirConfig::from_env()?;
    let partitions: i32 = match std::env::var("COUNT_PARTITIONS") {
        Ok(value) => value
            .parse()
            .with_context(|| format!("COUNT_PARTITIONS={value:?} is not a number"))?,
        Err(_) => 4,
    };
    match std::env::args().nth(1).as_deref() {
        None | Some("run") => run(&config, partitions).await,
        Some("dump") => dump(&config, partitions),
        Some(other) => anyhow::bail!("unknown command {other:?}; use `run` or `dump`"),
    }
}

async fn run(config: &WeirConfig, partitions: i32) -> anyhow::Result<()> {
    let metrics = weir_processor::http::start(config).await?;
    let (topology, _) = keyed_count::topology(&config.cluster_id, partitions)?;
    let runtime = Runtime::new(topology, config.runtime(), config.assignor()?)?;
    let running = runtime.start().await?;
    println!("running tasks {}", running.task_ids.join(","));
    lifecycle::shutdown_signal().await;
    running.shutdown().await;
    if let Some(server) = metrics {
        server.shutdown().await;
    }
    println!("stopped");
    Ok(())
}

fn dump(config: &WeirConfig, partitions: i32) -> anyhow::Result<()> {
    let resources = weir_state::StateResources::new(&weir_state::StateOptions::default());
    let mut counts = BTreeMap::new();
    for partition in 0..partitions {
        let path = config.state_dir.join(format!("{SUBTOPOLOGY}-{partition}"));
        if !path.exists() {
            continue;
        }
        let timers = Topology::timer_store(SUBTOPOLOGY);
        let parked = Topology::parked_store(SUBTOPOLOGY);
        let db = weir_state::TaskDb::open(&path, &[STORE, &timers, &parked], &resources)
            .with_context(|| format!("opening {}", path.display()))?;
        let store = db.store_id(STORE).context("counts store missing")?;
        for (key, value) in db.scan_all(store)? {
            let count = <i64 as prost::Message>::decode(value.as_ref())?;
            counts.insert(String::from_utf8_lossy(&key).into_owned(), count);
        }
    }
    for (key, count) in counts {
        println!("{key} {count}");
    }
    Ok(())
}
