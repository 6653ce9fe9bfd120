//! The seed's `orders` workflow against a running `weir server` (see `make run`).
//!
//! - `orders demo [ORDERS]` (default 100): puts the metadata, starts the three
//!   workers in this process, starts ORDERS orders, delivers each item once it
//!   shipped, and prints the orders completing.
//! - `orders setup`: only puts the metadata.
//! - `orders workers`: serves the three tasks and delivers each shipped item, until
//!   SIGTERM or SIGINT.
//! - `orders start [ORDERS]` (default 100): starts ORDERS orders on a cluster whose
//!   metadata is put and whose workers run elsewhere, and prints them completing.
//!
//! Configuration is the usual `LHS_*` variables; `ORDERS_TENANT` picks the tenant
//! (default `default`).

use std::time::{Duration, Instant};

use anyhow::Context;
use weir_examples::orders;
use weir_processor::client::WeirClient;
use weir_processor::config::WeirConfig;
use weir_processor::lifecycle;
use weir_proto::{LhStatus, RetryPolicy};

/// mimalloc for every allocation of this process (why: the workspace Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RETRY: RetryPolicy = RetryPolicy {
    max_retries: 3,
    initial_backoff_ms: 500,
    backoff_multiplier: 2.0,
    max_backoff_ms: 5_000,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lifecycle::init_logging("warn");
    lifecycle::disable_transparent_huge_pages();
    let config = WeirConfig::from_env()?;
    let tenant = std::env::var("ORDERS_TENANT").unwrap_or_else(|_| "default".to_owned());
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None | Some("demo") => {
            let count = match args.next() {
                Some(n) => n
                    .parse()
                    .with_context(|| format!("{n:?} is not a number of orders"))?,
                None => 100,
            };
            demo(&config, &tenant, count).await
        }
        Some("setup") => {
            let client = WeirClient::connect(&config).await?;
            orders::setup(&client, &tenant, &RETRY).await?;
            println!("ok: orders metadata in tenant {tenant}");
            Ok(())
        }
        Some("workers") => {
            let client = WeirClient::connect(&config).await?;
            let (workers, delivery) =
                orders::start_workers_and_delivery(&config, &client, &tenant).await?;
            println!(
                "serving {} for tenant {tenant}, delivering shipped items",
                orders::TASK_DEFS.join(", ")
            );
            lifecycle::shutdown_signal().await;
            delivery.abort();
            for stats in workers.stop().await? {
                println!("{stats:?}");
            }
            Ok(())
        }
        Some("start") => {
            let count = match args.next() {
                Some(n) => n
                    .parse()
                    .with_context(|| format!("{n:?} is not a number of orders"))?,
                None => 100,
            };
            let client = WeirClient::connect(&config).await?;
            run_orders(&config, &client, &tenant, count).await
        }
        Some(other) => {
            anyhow::bail!("unknown command {other:?}; use demo, setup, workers or start")
        }
    }
}

async fn demo(config: &WeirConfig, tenant: &str, count: usize) -> anyhow::Result<()> {
    let client = WeirClient::connect(config).await?;
    orders::setup(&client, tenant, &RETRY).await?;
    println!(
        "metadata ready: TaskDefs {}, ExternalEventDef {}, WfSpec {}",
        orders::TASK_DEFS.join(", "),
        orders::DELIVERED,
        orders::WF_SPEC
    );

    let (workers, delivery) = orders::start_workers_and_delivery(config, &client, tenant).await?;
    let outcome = run_orders(config, &client, tenant, count).await;
    for stats in workers.stop().await? {
        println!(
            "worker: {} tasks run, {} failed",
            stats.tasks_run, stats.failed
        );
    }
    delivery.abort();
    outcome
}

/// Starts `count` orders, prints them finishing, and checks that each completed with
/// the expected variables.
async fn run_orders(
    config: &WeirConfig,
    client: &WeirClient,
    tenant: &str,
    count: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let (_, runs) = orders::run_orders_printing_progress(
        config,
        client,
        tenant,
        count,
        Duration::from_secs(300),
    )
    .await?;
    let completed = runs
        .values()
        .filter(|r| r.status() == LhStatus::Completed)
        .count();
    let right = runs
        .iter()
        .filter(|(id, run)| {
            let n: usize = id
                .rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(usize::MAX);
            run.variables == orders::expected_variables(n)
        })
        .count();
    println!(
        "{completed}/{count} orders COMPLETED in {:.1} s; {right} with the expected variables (order-status COMPLETED)",
        started.elapsed().as_secs_f64()
    );
    if completed != count || right != count {
        anyhow::bail!("not every order completed as expected");
    }
    Ok(())
}
