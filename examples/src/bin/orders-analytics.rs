//! The seed's analytics example: the `orders` table in PostgreSQL, kept from a tenant's
//! execution-output topic (see `weir_examples::analytics` and `make run-analytics`).
//!
//! - `orders-analytics [run]`: consumes `{LHS_CLUSTER_ID}_{tenant}_execution-output`
//!   into the `orders` table until SIGTERM or SIGINT, resuming from the positions it
//!   stored in the database.
//! - `orders-analytics setup`: enables the tenant's output topic and puts the `orders`
//!   metadata with `user-id` and `item-id` published.
//! - `orders-analytics demo [ORDERS]` (default 100): setup, the consumer in this
//!   process, the example's workers and ORDERS orders run to completion; then prints
//!   the table's rows by status once every order is in it as `COMPLETED`.
//! - `orders-analytics counts`: prints the table's rows by status.
//!
//! Configuration is the usual `LHS_*` variables, plus `--database-url` (or
//! `ANALYTICS_DATABASE_URL`, a `postgresql://` URL) and `--tenant` (or
//! `ANALYTICS_TENANT`, default `default`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::sync::watch;
use weir_examples::analytics::{self, OrdersConsumer};
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

/// How long the demo waits for its orders, and then for the table to hold them.
const DEMO_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Parser)]
#[command(
    name = "orders-analytics",
    about = "Keeps the seed's orders table in PostgreSQL from a tenant's execution-output topic"
)]
struct Args {
    /// The tenant whose execution-output topic is read.
    #[arg(
        long,
        env = "ANALYTICS_TENANT",
        default_value = "default",
        global = true
    )]
    tenant: String,
    /// The database holding the orders table (postgresql://user@host:port/database).
    #[arg(
        long,
        env = "ANALYTICS_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume into the orders table until SIGTERM or SIGINT (the default).
    Run,
    /// Enable the tenant's output topic and put the orders metadata, ids published.
    Setup,
    /// Setup, consumer, workers and ORDERS orders; then the rows by status.
    Demo {
        #[arg(default_value_t = 100)]
        orders: usize,
    },
    /// Print the orders table's rows by status.
    Counts,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lifecycle::init_logging("warn");
    lifecycle::disable_transparent_huge_pages();
    let args = Args::parse();
    let config = WeirConfig::from_env()?;
    let database_url = || {
        args.database_url
            .clone()
            .context("no database: pass --database-url or set ANALYTICS_DATABASE_URL")
    };
    match args.command.unwrap_or(Command::Run) {
        Command::Run => {
            let consumer = OrdersConsumer {
                config,
                tenant: args.tenant.clone(),
                database_url: database_url()?,
            };
            consumer.run(lifecycle::shutdown_signal()).await?;
            println!("orders-analytics: stopped");
            Ok(())
        }
        Command::Setup => {
            let client = WeirClient::connect(&config).await?;
            analytics::setup(&client, &args.tenant, &RETRY).await?;
            println!(
                "ok: output topic enabled and orders metadata put in tenant {}",
                args.tenant
            );
            Ok(())
        }
        Command::Demo { orders } => demo(config, &args.tenant, database_url()?, orders).await,
        Command::Counts => {
            let client = analytics::connect(&database_url()?).await?;
            print_counts(&analytics::status_counts(&client, None).await?);
            Ok(())
        }
    }
}

fn print_counts(counts: &BTreeMap<String, i64>) {
    let total: i64 = counts.values().sum();
    println!("orders table: {total} rows");
    for (status, count) in counts {
        println!("  {status:<10} {count}");
    }
}

async fn demo(
    config: WeirConfig,
    tenant: &str,
    database_url: String,
    count: usize,
) -> anyhow::Result<()> {
    let client = WeirClient::connect(&config).await?;
    analytics::setup(&client, tenant, &RETRY).await?;
    println!("output topic enabled and orders metadata put in tenant {tenant}");

    let consumer = OrdersConsumer {
        config: config.clone(),
        tenant: tenant.to_owned(),
        database_url: database_url.clone(),
    };
    let (stop, stopped) = watch::channel(false);
    let consuming = tokio::spawn(async move {
        let mut stopped = stopped;
        consumer
            .run(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    });

    let (workers, delivery) = orders::start_workers_and_delivery(&config, &client, tenant).await?;
    let started = Instant::now();
    let (prefix, runs) =
        orders::run_orders_printing_progress(&config, &client, tenant, count, DEMO_TIMEOUT).await?;
    let completed = runs
        .values()
        .filter(|r| r.status() == LhStatus::Completed)
        .count();
    println!(
        "{completed}/{count} orders COMPLETED in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    workers.stop().await?;
    delivery.abort();

    let db = analytics::connect(&database_url).await?;
    let deadline = Instant::now() + DEMO_TIMEOUT;
    let mut in_table;
    loop {
        in_table = analytics::status_counts(&db, Some(&format!("{prefix}-"))).await?;
        let done = in_table.get("COMPLETED").copied().unwrap_or_default();
        if usize::try_from(done).is_ok_and(|d| d >= completed) || Instant::now() > deadline {
            break;
        }
        if consuming.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop.send(true);
    consuming.await.context("the consumer panicked")??;
    println!("this demo's orders in the orders table, by status:");
    for (status, rows) in &in_table {
        println!("  {status:<10} {rows}");
    }
    print_counts(&analytics::status_counts(&db, None).await?);
    let in_table_completed = in_table.get("COMPLETED").copied().unwrap_or_default();
    if completed != count || usize::try_from(in_table_completed).ok() != Some(count) {
        anyhow::bail!(
            "expected {count} COMPLETED orders in the table, found {in_table_completed} ({completed} runs completed)"
        );
    }
    Ok(())
}
