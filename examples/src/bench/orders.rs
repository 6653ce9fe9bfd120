//! Workload 3, orders: the workflow core. A `weir server` (the binary of the same build,
//! as a child process) runs `orders` WfRuns of the seed's workflow, with the example's
//! three workers in this process answering at once and every shipped item delivered as
//! soon as it ships. Measured with the tenant's output topic off and with it at
//! `ALL_ENTITY_EVENTS` (which also publishes the WfSpec's public variable,
//! `order-status`), in [`ROUNDS`] rounds that alternate the two, each run on a fresh
//! cluster id and server so no run sees another's state; each side reports its median
//! run, so one run slowed by the shared machine does not decide the ratio. Each run is
//! timed from its first RunWf sent to the last WfRun COMPLETED committed (the `wf-runs`
//! changelog's last growth) and must complete every run with the expected variables,
//! or the workload fails.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::Command;
use tokio::sync::watch;
use weir_processor::client::{WeirClient, accepted};
use weir_processor::config::WeirConfig;
use weir_processor::core::store_names;
use weir_processor::inspect;
use weir_processor::topics::CoreTopics;
use weir_proto::metadata_command::Command as Meta;
use weir_proto::output_topic_config::OutputTopicRecordingLevel;
use weir_proto::{LhStatus, OutputTopicConfig, PutTenantRequest};
use weir_topology::Topology;
use weir_topology::kafka::{KafkaAdmin, KafkaClient, TopicPartition};

use super::process::ChildProcess;
use super::report::{Row, Target, thousands};
use super::{BenchConfig, EndOffsets, end_offsets, partitions, rate};
use crate::orders;

/// The tenant every run uses (each on its own cluster).
const TENANT: &str = "bench";
/// Rounds of one run with the output topic off and one at `ALL_ENTITY_EVENTS`. Single
/// pairs of runs on this 2-core machine put the ratio anywhere from 59% to 163%.
pub const ROUNDS: usize = 3;
/// Each TaskDef's timeout: an hour, longer than any run.
const TASK_TIMEOUT_SECONDS: i32 = 3_600;
/// How long the server may take to create a newly enabled tenant's output topics.
const OUTPUT_TOPICS_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the `wf-runs` changelog's end is read, to see when the last run completed.
const GROWTH_SAMPLE: Duration = Duration::from_millis(25);
/// How long the `wf-runs` changelog must stand still before the runs are read to see
/// whether all finished.
const QUIET: Duration = Duration::from_secs(1);
/// How long each command's result may take; orders are all sent before any result is
/// waited for.
const RESULT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the deliveries may still wait for results once every order completed.
const DELIVERY_DRAIN: Duration = Duration::from_secs(30);
/// The slowest rate the wait for completion allows, on top of a minute.
const SLOWEST_RUNS_PER_SECOND: u64 = 2;

/// The tenant's output topic in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputTopic {
    Off,
    AllEntityEvents,
}

impl OutputTopic {
    fn label(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::AllEntityEvents => "events",
        }
    }

    fn figure(self) -> &'static str {
        match self {
            Self::Off => "output topic off",
            Self::AllEntityEvents => "ALL_ENTITY_EVENTS",
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct OrdersRun {
    /// Partitions of `core-cmd` (and so of the core's tasks).
    pub partitions: i32,
    /// WfRuns started, every one COMPLETED.
    pub runs: u64,
    /// From the first RunWf sent to the last WfRun COMPLETED committed.
    pub elapsed: Duration,
    /// How long sending the RunWf commands took (within `elapsed`).
    pub start_elapsed: Duration,
    /// Records appended to `core-cmd` in that time.
    pub commands: u64,
    /// Records on the tenant's execution-output topic.
    pub output_records: u64,
}

impl OrdersRun {
    /// Completed WfRuns per second.
    pub fn runs_per_second(&self) -> f64 {
        rate(self.runs, self.elapsed)
    }

    /// Commands per second.
    pub fn commands_per_second(&self) -> f64 {
        rate(self.commands, self.elapsed)
    }

    fn per_run(&self, count: u64) -> f64 {
        // Counts stay far below 2^53.
        #[allow(clippy::cast_precision_loss)]
        let (count, runs) = (count as f64, self.runs.max(1) as f64);
        count / runs
    }
}

/// Every round's runs, in the order they ran.
#[derive(Debug, Clone)]
pub struct Orders {
    pub off: Vec<OrdersRun>,
    pub events: Vec<OrdersRun>,
}

/// The run with the median WfRuns/s (the upper one of an even count).
fn median(runs: &[OrdersRun]) -> Option<&OrdersRun> {
    let mut sorted: Vec<&OrdersRun> = runs.iter().collect();
    sorted.sort_by(|a, b| a.runs_per_second().total_cmp(&b.runs_per_second()));
    sorted.get(sorted.len() / 2).copied()
}

/// Each run's WfRuns/s, in run order: `412, 398, 440`.
fn rates(runs: &[OrdersRun]) -> String {
    runs.iter()
        .map(|run| format!("{:.0}", run.runs_per_second()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Orders {
    /// WfRuns/s of each side's median run (ALL_ENTITY_EVENTS against off: overhead at
    /// most 10%) and commands/s of the same runs.
    pub fn rows(&self) -> Vec<Row> {
        let (Some(off), Some(events)) = (median(&self.off), median(&self.events)) else {
            return unmeasured_rows("no run finished");
        };
        let rounds = format!(
            "median of {} runs alternating with the other side's (WfRuns/s: off {}; ALL_ENTITY_EVENTS {})",
            self.off.len().min(self.events.len()),
            rates(&self.off),
            rates(&self.events)
        );
        let how = |run: &OrdersRun| {
            format!(
                "{} orders WfRuns (3 tasks, with a {TASK_TIMEOUT_SECONDS} s timeout that never fires here, and an event each) on a fresh `weir server` ({} partitions); the example's workers in the bench process, RunWfs ({} in flight, {:.1} s to send) and deliveries sent without waiting for results; from the first RunWf sent to the last WfRun COMPLETED committed, {:.1} s",
                thousands(run.runs),
                run.partitions,
                orders::SUBMITTED_AT_ONCE,
                run.start_elapsed.as_secs_f64(),
                run.elapsed.as_secs_f64()
            )
        };
        vec![
            Row::measured(
                "orders",
                "WfRuns/s, output topic off",
                off.runs_per_second(),
                "runs/s",
            )
            .note(format!("{}; {rounds}", how(off))),
            Row::measured(
                "orders",
                "WfRuns/s, ALL_ENTITY_EVENTS",
                events.runs_per_second(),
                "runs/s",
            )
            .against("output topic off", off.runs_per_second())
            .target(Target::RatioAtLeast(0.9))
            .note(format!(
                "{}; the tenant at ALL_ENTITY_EVENTS, the public variable order-status published: {} output records, {:.1} per WfRun; {rounds}; target: output topic overhead <= 10%",
                how(events),
                thousands(events.output_records),
                events.per_run(events.output_records)
            )),
            Row::measured(
                "orders",
                "commands/s, output topic off",
                off.commands_per_second(),
                "cmd/s",
            )
            .note(format!(
                "records appended to core-cmd in the same window: {}, {:.1} per WfRun",
                thousands(off.commands),
                off.per_run(off.commands)
            )),
            Row::measured(
                "orders",
                "commands/s, ALL_ENTITY_EVENTS",
                events.commands_per_second(),
                "cmd/s",
            )
            .against("output topic off", off.commands_per_second())
            .note(format!(
                "{} commands, {:.1} per WfRun",
                thousands(events.commands),
                events.per_run(events.commands)
            )),
        ]
    }
}

/// The orders rows of a run in which the workload was not measured, each with `note`.
pub fn unmeasured_rows(note: &str) -> Vec<Row> {
    vec![
        Row::not_measured(
            "orders",
            "WfRuns/s, output topic off",
            "runs/s",
            Target::None,
        ),
        Row::not_measured(
            "orders",
            "WfRuns/s, ALL_ENTITY_EVENTS",
            "runs/s",
            Target::RatioAtLeast(0.9),
        ),
        Row::not_measured(
            "orders",
            "commands/s, output topic off",
            "cmd/s",
            Target::None,
        ),
        Row::not_measured(
            "orders",
            "commands/s, ALL_ENTITY_EVENTS",
            "cmd/s",
            Target::None,
        ),
    ]
    .into_iter()
    .map(|row| row.note(note))
    .collect()
}

/// The name of one run, `orders-off-{round}` or `orders-events-{round}`: its cluster
/// id's suffix and its work directory.
fn run_name(output_topic: OutputTopic, round: usize) -> String {
    format!("orders-{}-{round}", output_topic.label())
}

/// The cluster id of one run: `{cluster}-orders-off-{round}` or
/// `{cluster}-orders-events-{round}`.
pub fn cluster_id(config: &BenchConfig, output_topic: OutputTopic, round: usize) -> String {
    format!("{}-{}", config.cluster_id, run_name(output_topic, round))
}

/// Runs `count` orders with the output topic off, then with `ALL_ENTITY_EVENTS`, in
/// [`ROUNDS`] rounds.
pub async fn run(config: &BenchConfig, count: usize) -> anyhow::Result<Orders> {
    let mut orders = Orders {
        off: Vec::new(),
        events: Vec::new(),
    };
    for round in 1..=ROUNDS {
        orders
            .off
            .push(run_once(config, OutputTopic::Off, count, round).await?);
        orders
            .events
            .push(run_once(config, OutputTopic::AllEntityEvents, count, round).await?);
    }
    Ok(orders)
}

/// One run on its own cluster id and server, which is stopped (and its state removed)
/// whatever the outcome.
async fn run_once(
    config: &BenchConfig,
    output_topic: OutputTopic,
    count: usize,
    round: usize,
) -> anyhow::Result<OrdersRun> {
    let cluster = cluster_id(config, output_topic, round);
    let work_dir = config.work_dir.join(run_name(output_topic, round));
    let state = work_dir.join("state");
    if state.exists() {
        std::fs::remove_dir_all(&state).with_context(|| format!("emptying {}", state.display()))?;
    }
    let bootstrap = config.kafka.bootstrap_servers.join(",");
    let env = BTreeMap::from([
        ("LHS_KAFKA_BOOTSTRAP_SERVERS", bootstrap),
        ("LHS_CLUSTER_ID", cluster.clone()),
        ("LHS_STATE_DIR", state.display().to_string()),
    ]);
    let weir_config = WeirConfig::from_lookup(|name| env.get(name).cloned())?;
    eprintln!(
        "orders ({}, round {round} of {ROUNDS}): starting a weir server for cluster {cluster}",
        output_topic.figure()
    );
    let mut command = Command::new(&config.server_binary);
    command.arg("server").envs(&env);
    let server = ChildProcess::start(
        "weir server",
        command,
        work_dir.join("weir-server.log"),
        "weir server running tasks ",
    )
    .await?;
    let measured = measure(&weir_config, output_topic, count).await;
    server.stop().await;
    if let Err(e) = std::fs::remove_dir_all(&state) {
        eprintln!("could not remove {}: {e}", state.display());
    }
    measured.with_context(|| format!("see {}", work_dir.join("weir-server.log").display()))
}

async fn measure(
    config: &WeirConfig,
    output_topic: OutputTopic,
    count: usize,
) -> anyhow::Result<OrdersRun> {
    let client = WeirClient::connect(config)
        .await?
        .with_timeout(RESULT_TIMEOUT);
    let output_config = match output_topic {
        OutputTopic::Off => None,
        OutputTopic::AllEntityEvents => Some(OutputTopicConfig {
            default_recording_level: OutputTopicRecordingLevel::AllEntityEvents as i32,
        }),
    };
    accepted(
        client
            .send_metadata(
                TENANT,
                Meta::PutTenant(PutTenantRequest {
                    id: TENANT.to_owned(),
                    output_topic_config: output_config,
                }),
            )
            .await?,
    )
    .context("putting the tenant")?;
    let topics = CoreTopics::new(config);
    let kafka = KafkaClient::connect(&config.kafka()).await?;
    if output_topic == OutputTopic::AllEntityEvents {
        wait_for_output_topics(config, &topics).await?;
    }
    put_orders_metadata(&client).await?;

    let (workers, mut delivery) =
        orders::start_workers_and_delivery(config, &client, TENANT).await?;
    let measured = drive(config, &client, &kafka, &topics, count).await;
    // Stopping the workers closes the deliveries' channel, so the delivery ends once
    // every event it posted has its result.
    let stats = workers.stop().await;
    let delivered = match &measured {
        Ok(_) => tokio::time::timeout(DELIVERY_DRAIN, &mut delivery)
            .await
            .ok(),
        Err(_) => None,
    };
    delivery.abort();
    let (elapsed, start_elapsed, commands) = measured?;
    for stat in stats? {
        anyhow::ensure!(stat.failed == 0, "a worker failed tasks: {stat:?}");
    }
    match delivered {
        Some(joined) => {
            joined.context("the delivery panicked")??;
        }
        None => anyhow::bail!(
            "deliveries still waited for results {DELIVERY_DRAIN:?} after every order completed"
        ),
    }
    let output_records = match output_topic {
        OutputTopic::Off => 0,
        OutputTopic::AllEntityEvents => {
            let records = end_offsets(
                &partitions(
                    &kafka,
                    &topics.execution_output(TENANT),
                    topics.output_partitions,
                )
                .await?,
            )
            .await?;
            anyhow::ensure!(
                records > 0,
                "nothing was published to {} at ALL_ENTITY_EVENTS",
                topics.execution_output(TENANT)
            );
            records
        }
    };
    Ok(OrdersRun {
        partitions: topics.partitions,
        runs: u64::try_from(count)?,
        elapsed,
        start_elapsed,
        commands,
        output_records,
    })
}

/// Starts the orders, waits for every one to finish and checks they all COMPLETED with
/// the expected variables; returns the time from the first RunWf to the last
/// completion, the time sending the RunWfs took and the commands appended meanwhile.
async fn drive(
    config: &WeirConfig,
    client: &WeirClient,
    kafka: &KafkaClient,
    topics: &CoreTopics,
    count: usize,
) -> anyhow::Result<(Duration, Duration, u64)> {
    let commands = partitions(kafka, &topics.core_cmd(), topics.partitions).await?;
    let wf_runs_changelog = partitions(
        kafka,
        &Topology::changelog_topic(&config.cluster_id, store_names::WF_RUNS),
        topics.partitions,
    )
    .await?;
    let commands_before = end_offsets(&commands).await?;
    let (stop_watching, stopped) = watch::channel(false);
    let (grew, last_growth) = watch::channel(None);
    let watcher = tokio::spawn(watch_growth(wf_runs_changelog, grew, stopped));

    let prefix = format!("order-{}", chrono::Utc::now().timestamp_millis());
    eprintln!("orders: starting {count} WfRuns");
    let started = Instant::now();
    orders::start_orders(client, TENANT, &prefix, count).await?;
    let start_elapsed = started.elapsed();
    let timeout =
        Duration::from_secs(60 + u64::try_from(count).unwrap_or(0) / SLOWEST_RUNS_PER_SECOND);
    let runs = loop {
        tokio::time::sleep(QUIET / 2).await;
        let quiet = last_growth.borrow().is_none_or(|at| at.elapsed() >= QUIET);
        let timed_out = started.elapsed() > timeout;
        if !quiet && !timed_out {
            continue;
        }
        // Reading every committed run costs the server CPU, so only once it is quiet.
        let runs = inspect::wf_runs(kafka, &config.cluster_id, topics, TENANT).await?;
        let finished = runs
            .iter()
            .filter(|(id, run)| {
                id.starts_with(&format!("{prefix}-")) && run.status() != LhStatus::Running
            })
            .count();
        eprintln!("orders: {finished}/{count} finished");
        if finished >= count || timed_out {
            break runs;
        }
    };
    let _ = stop_watching.send(true);
    watcher.await.context("the changelog watcher panicked")??;
    let completed_at = *last_growth.borrow();
    let commands_after = end_offsets(&commands).await?;

    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    for n in 0..count {
        let id = orders::order_id(&prefix, n);
        match runs.get(&id) {
            Some(run) if run.status() == LhStatus::Completed => {
                *by_status.entry("COMPLETED".to_owned()).or_default() += 1;
                if run.variables != orders::expected_variables(n) {
                    wrong.push(id);
                }
            }
            Some(run) => *by_status.entry(format!("{:?}", run.status())).or_default() += 1,
            None => *by_status.entry("not started".to_owned()).or_default() += 1,
        }
    }
    let completed = by_status.get("COMPLETED").copied().unwrap_or(0);
    anyhow::ensure!(
        completed == count,
        "{completed} of {count} orders COMPLETED within {timeout:?}; by status: {by_status:?}"
    );
    anyhow::ensure!(
        wrong.is_empty(),
        "{} orders COMPLETED without the expected variables, first {:?}",
        wrong.len(),
        wrong.first()
    );
    let completed_at = completed_at.context("the wf-runs changelog never grew")?;
    Ok((
        completed_at.duration_since(started),
        start_elapsed,
        commands_after.saturating_sub(commands_before),
    ))
}

/// Puts what the example's `orders::setup` puts, with TaskDefs whose timeout outlasts
/// the run: a claimed task's timeout timer is a record the core appends to `core-cmd`
/// and processes when it fires, so with the example's 30 s a run longer than that
/// would count (and pay for) timers that a shorter run does not. No retries, so a task
/// the workers fail leaves its WfRun in ERROR, which fails the workload.
async fn put_orders_metadata(client: &WeirClient) -> anyhow::Result<()> {
    let task_defs = orders::task_defs(&orders::NO_RETRY, TASK_TIMEOUT_SECONDS);
    orders::put_metadata(client, TENANT, task_defs, orders::wf_spec()).await
}

/// Waits until the server has created the tenant's output topics.
async fn wait_for_output_topics(config: &WeirConfig, topics: &CoreTopics) -> anyhow::Result<()> {
    let admin = KafkaAdmin::connect(&config.kafka()).await?;
    let wanted = [
        topics.execution_output(TENANT),
        topics.metadata_output(TENANT),
    ];
    let deadline = Instant::now() + OUTPUT_TOPICS_TIMEOUT;
    loop {
        let existing = admin.list_topics().await?;
        if wanted.iter().all(|t| existing.contains(t)) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the server did not create {wanted:?} within {OUTPUT_TOPICS_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads the partitions' end every [`GROWTH_SAMPLE`] until `stop`, publishing on
/// `grew` when it last saw it grow.
async fn watch_growth(
    partitions: Vec<TopicPartition>,
    grew: watch::Sender<Option<Instant>>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut ends = EndOffsets::new(partitions).await?;
    let mut end = ends.total().await?;
    loop {
        let stopping = *stop.borrow_and_update();
        let now_end = ends.total().await?;
        if now_end != end {
            end = now_end;
            grew.send_replace(Some(Instant::now()));
        }
        if stopping {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(GROWTH_SAMPLE) => {}
            _ = stop.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(runs_per_second: u64) -> OrdersRun {
        OrdersRun {
            partitions: 12,
            runs: runs_per_second,
            elapsed: Duration::from_secs(1),
            start_elapsed: Duration::from_millis(100),
            commands: runs_per_second * 8,
            output_records: 0,
        }
    }

    #[test]
    fn each_side_reports_its_median_run_and_every_round() {
        let orders = Orders {
            off: vec![run(400), run(200), run(500)],
            events: vec![run(390), run(100), run(380)],
        };
        let rows = orders.rows();
        assert_eq!(
            rows.iter()
                .find(|row| row.figure == "WfRuns/s, ALL_ENTITY_EVENTS")
                .and_then(|row| row.baseline.as_ref())
                .map(|baseline| baseline.value),
            Some(400.0),
            "the ratio is the medians'"
        );
        let value = |figure: &str| {
            rows.iter()
                .find(|row| row.figure == figure)
                .and_then(|row| row.value)
        };
        assert_eq!(value("WfRuns/s, output topic off"), Some(400.0));
        assert_eq!(value("WfRuns/s, ALL_ENTITY_EVENTS"), Some(380.0));
        assert_eq!(value("commands/s, ALL_ENTITY_EVENTS"), Some(3_040.0));
        let events = rows
            .iter()
            .find(|row| row.figure == "WfRuns/s, ALL_ENTITY_EVENTS");
        let note = events
            .and_then(|row| row.note.as_deref())
            .unwrap_or_default();
        assert!(
            note.contains("median of 3 runs")
                && note.contains("off 400, 200, 500; ALL_ENTITY_EVENTS 390, 100, 380"),
            "{note}"
        );
    }

    #[test]
    fn no_finished_run_leaves_the_rows_unmeasured() {
        let orders = Orders {
            off: Vec::new(),
            events: Vec::new(),
        };
        assert!(orders.rows().iter().all(|row| row.value.is_none()));
    }
}
