//! The seed's `orders` workflow, its workers and a driver, shared by the `orders`
//! example binary and the integration tests.
//!
//! The workflow: `user-id`, `item-id`, `order-status` (default `PENDING`, public);
//! `fetch-price(item-id)` feeds `charge-credit-card(user-id, price)`, then
//! `ship-item(user-id, item-id)`, `order-status = SHIPPING`, a wait for
//! `item-delivered`, and `order-status = COMPLETED`. The workers answer from the
//! task's inputs alone (a price is derived from the item id), so every run's result is
//! known in advance and can be checked.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use weir_processor::builder::WorkflowBuilder;
use weir_processor::client::{WeirClient, accepted};
use weir_processor::config::WeirConfig;
use weir_processor::inspect::{self, RunSnapshot};
use weir_processor::worker::{TaskError, Worker, WorkerStats};
use weir_proto::metadata_command::Command as Meta;
use weir_proto::variable_value::Value;
use weir_proto::{
    LhStatus, PutExternalEventDefRequest, PutTaskDefRequest, PutWfSpecRequest, RetryPolicy,
    ScheduledTask, VariableDef, VariableType, VariableValue, WfSpec,
};
use weir_topology::kafka::KafkaClient;

/// Name of the WfSpec.
pub const WF_SPEC: &str = "orders";
/// The three TaskDefs, in the order a run uses them.
pub const TASK_DEFS: [&str; 3] = ["fetch-price", "charge-credit-card", "ship-item"];
/// The ExternalEventDef a run waits for.
pub const DELIVERED: &str = "item-delivered";

/// No retries: a task the workers fail leaves its WfRun in ERROR.
pub const NO_RETRY: RetryPolicy = RetryPolicy {
    max_retries: 0,
    initial_backoff_ms: 0,
    backoff_multiplier: 1.0,
    max_backoff_ms: 0,
};

/// The workflow, built as the seed writes it.
pub fn wf_spec() -> WfSpec {
    let wf = WorkflowBuilder::new(WF_SPEC);
    let user_id = wf.declare_str("user-id").required();
    let item_id = wf.declare_str("item-id").required();
    let order_status = wf
        .declare_str("order-status")
        .with_default("PENDING")
        .as_public();
    let price = wf.execute("fetch-price", (&item_id,));
    wf.execute("charge-credit-card", (&user_id, &price));
    wf.execute("ship-item", (&user_id, &item_id));
    order_status.assign("SHIPPING");
    wf.wait_for_event(DELIVERED);
    order_status.assign("COMPLETED");
    wf.build()
}

fn input(name: &str, var_type: VariableType) -> VariableDef {
    VariableDef {
        name: name.to_owned(),
        var_type: var_type as i32,
        default_value: None,
    }
}

/// The TaskDefs, each retried `retry.max_retries` times.
pub fn task_defs(retry: &RetryPolicy, timeout_seconds: i32) -> Vec<PutTaskDefRequest> {
    let def = |name: &str, inputs: Vec<VariableDef>| PutTaskDefRequest {
        name: name.to_owned(),
        input_vars: inputs,
        retry_policy: Some(*retry),
        timeout_seconds,
        enable_entity_events: None,
    };
    vec![
        def("fetch-price", vec![input("item-id", VariableType::Str)]),
        def(
            "charge-credit-card",
            vec![
                input("user-id", VariableType::Str),
                input("price", VariableType::Int),
            ],
        ),
        def(
            "ship-item",
            vec![
                input("user-id", VariableType::Str),
                input("item-id", VariableType::Str),
            ],
        ),
    ]
}

/// Puts the TaskDefs (creating their queues), the event def and the WfSpec in
/// `tenant`. Putting them again is a no-op.
pub async fn setup(client: &WeirClient, tenant: &str, retry: &RetryPolicy) -> anyhow::Result<()> {
    put_metadata(client, tenant, task_defs(retry, 30), wf_spec()).await
}

/// Puts `task_defs`, the event def and `spec` in `tenant`, in that order: what
/// [`setup`] puts, for a caller that changes the TaskDefs or the WfSpec.
pub async fn put_metadata(
    client: &WeirClient,
    tenant: &str,
    task_defs: Vec<PutTaskDefRequest>,
    spec: WfSpec,
) -> anyhow::Result<()> {
    for def in task_defs {
        let name = def.name.clone();
        accepted(client.put_task_def(tenant, def).await?)
            .with_context(|| format!("putting TaskDef {name}"))?;
    }
    let event = Meta::PutExternalEventDef(PutExternalEventDefRequest {
        name: DELIVERED.to_owned(),
        enable_entity_events: None,
    });
    accepted(client.send_metadata(tenant, event).await?).context("putting the event def")?;
    let request = Meta::PutWfSpec(PutWfSpecRequest {
        name: WF_SPEC.to_owned(),
        thread_specs: spec.thread_specs,
        entrypoint_thread_name: spec.entrypoint_thread_name,
        enable_entity_events: spec.enable_entity_events,
    });
    accepted(client.send_metadata(tenant, request).await?).context("putting the WfSpec")?;
    Ok(())
}

/// The price of an item: a number derived from its id, so tests know it in advance.
pub fn price_of(item_id: &str) -> i64 {
    item_id.bytes().map(i64::from).sum::<i64>() % 1000 + 1
}

fn text(task: &ScheduledTask, index: usize) -> Result<String, TaskError> {
    match task.variables.get(index).and_then(|v| v.value.clone()) {
        Some(VariableValue {
            value: Some(Value::Str(s)),
        }) => Ok(s),
        _ => Err(TaskError::failed(format!("input {index} is not text"))),
    }
}

/// What each task does: fetch a price, charge it, ship the item.
pub async fn run_task(task: ScheduledTask) -> Result<VariableValue, TaskError> {
    match task.task_def_name.as_str() {
        "fetch-price" => Ok(VariableValue {
            value: Some(Value::Int(price_of(&text(&task, 0)?))),
        }),
        "charge-credit-card" => {
            let user = text(&task, 0)?;
            Ok(VariableValue {
                value: Some(Value::Str(format!("charged {user}"))),
            })
        }
        "ship-item" => {
            let item = text(&task, 1)?;
            Ok(VariableValue {
                value: Some(Value::Str(format!("shipped {item}"))),
            })
        }
        other => Err(TaskError::failed(format!("no function for task {other}"))),
    }
}

/// The three workers of a tenant, running until stopped.
#[derive(Debug)]
pub struct Workers {
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<anyhow::Result<WorkerStats>>>,
}

impl Workers {
    /// Starts a worker per TaskDef; each shipped order's WfRun id goes to `shipped`.
    pub async fn start(
        config: &WeirConfig,
        tenant: &str,
        shipped: Option<mpsc::UnboundedSender<String>>,
    ) -> anyhow::Result<Self> {
        let (stop, stopped) = watch::channel(false);
        let mut handles = Vec::new();
        for task_def in TASK_DEFS {
            let worker = Worker::builder(config, tenant, task_def)
                .build()
                .await
                .with_context(|| format!("starting the {task_def} worker"))?;
            let mut stopped = stopped.clone();
            let shipped = shipped.clone();
            handles.push(tokio::spawn(async move {
                let function = move |task: ScheduledTask| {
                    let shipped = shipped.clone();
                    async move {
                        let wf_run = task
                            .task_run_id
                            .as_ref()
                            .and_then(|id| id.wf_run_id.as_ref())
                            .map(|id| id.id.clone());
                        let is_shipping = task.task_def_name == "ship-item";
                        let output = run_task(task).await?;
                        if let (true, Some(shipped), Some(wf_run)) = (is_shipping, shipped, wf_run)
                        {
                            let _ = shipped.send(wf_run);
                        }
                        Ok(output)
                    }
                };
                let stop = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                Ok(worker.run(function, stop).await?)
            }));
        }
        Ok(Self { stop, handles })
    }

    /// Stops every worker and returns what each did.
    pub async fn stop(self) -> anyhow::Result<Vec<WorkerStats>> {
        let _ = self.stop.send(true);
        let mut stats = Vec::new();
        for handle in self.handles {
            stats.push(handle.await??);
        }
        Ok(stats)
    }
}

/// The variables a completed order must end with.
pub fn expected_variables(order: usize) -> BTreeMap<String, VariableValue> {
    let text = |s: String| VariableValue {
        value: Some(Value::Str(s)),
    };
    BTreeMap::from([
        ("user-id".to_owned(), text(format!("user-{}", order % 17))),
        ("item-id".to_owned(), text(format!("item-{order}"))),
        ("order-status".to_owned(), text("COMPLETED".to_owned())),
    ])
}

/// The WfRun id of order `n` of a drive.
pub fn order_id(prefix: &str, n: usize) -> String {
    format!("{prefix}-{n}")
}

/// Orders whose RunWf commands are being produced at once (they share requests).
pub const SUBMITTED_AT_ONCE: usize = 100;

/// Starts `orders` runs named `{prefix}-{n}`, waiting for each to be accepted.
pub async fn start_orders(
    client: &WeirClient,
    tenant: &str,
    prefix: &str,
    orders: usize,
) -> anyhow::Result<()> {
    let mut pending = Vec::with_capacity(orders);
    let mut submits = tokio::task::JoinSet::new();
    for n in 0..orders {
        let request = weir_proto::RunWfRequest {
            wf_spec_name: WF_SPEC.to_owned(),
            variables: expected_variables(n)
                .into_iter()
                .filter(|(name, _)| name != "order-status")
                .collect(),
            id: Some(order_id(prefix, n)),
            ..Default::default()
        };
        let (client, tenant) = (client.clone(), tenant.to_owned());
        submits.spawn(async move { client.submit_run_wf(&tenant, request).await });
        if submits.len() >= SUBMITTED_AT_ONCE
            && let Some(submitted) = submits.join_next().await
        {
            pending.push(submitted.context("submitting an order")??);
        }
    }
    while let Some(submitted) = submits.join_next().await {
        pending.push(submitted.context("submitting an order")??);
    }
    for result in pending {
        accepted(result.wait().await?).context("starting an order")?;
    }
    Ok(())
}

/// Posts `item-delivered` for every order whose item shipped, until the channel closes.
pub async fn deliver(
    client: WeirClient,
    tenant: String,
    mut shipped: mpsc::UnboundedReceiver<String>,
) -> anyhow::Result<usize> {
    // Each delivery waits for its result; many are in flight at once.
    let mut posts = tokio::task::JoinSet::new();
    let mut delivered = 0;
    loop {
        tokio::select! {
            next = shipped.recv() => match next {
                Some(wf_run) => {
                    posts.spawn(post_delivery(client.clone(), tenant.clone(), wf_run));
                }
                None => break,
            },
            Some(posted) = posts.join_next(), if !posts.is_empty() => {
                posted.context("posting a delivery")??;
                delivered += 1;
            }
        }
    }
    while let Some(posted) = posts.join_next().await {
        posted.context("posting a delivery")??;
        delivered += 1;
    }
    Ok(delivered)
}

/// Posts `item-delivered` to one run and waits for it to be accepted.
async fn post_delivery(client: WeirClient, tenant: String, wf_run: String) -> anyhow::Result<()> {
    let content = VariableValue {
        value: Some(Value::Str("left at the door".to_owned())),
    };
    // The event's guid is the run's, so a re-shipped order is delivered once.
    let guid = Some(format!("{wf_run}-delivered"));
    accepted(
        client
            .post_event(&tenant, &wf_run, DELIVERED, content, guid)
            .await?,
    )
    .with_context(|| format!("delivering {wf_run}"))?;
    Ok(())
}

/// Starts the example's three workers for `tenant` and the delivery of each item they
/// ship (posted through `client`); stop the workers and abort the delivery when done.
pub async fn start_workers_and_delivery(
    config: &WeirConfig,
    client: &WeirClient,
    tenant: &str,
) -> anyhow::Result<(Workers, JoinHandle<anyhow::Result<usize>>)> {
    let (shipped, deliveries) = mpsc::unbounded_channel();
    let workers = Workers::start(config, tenant, Some(shipped)).await?;
    let delivery = tokio::spawn(deliver(client.clone(), tenant.to_owned(), deliveries));
    Ok((workers, delivery))
}

/// Starts `count` orders under a fresh `order-{millis}` prefix, prints them being
/// started and finishing, and returns the prefix and their runs once all finished (at
/// most `timeout`).
pub async fn run_orders_printing_progress(
    config: &WeirConfig,
    client: &WeirClient,
    tenant: &str,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<(String, BTreeMap<String, RunSnapshot>)> {
    let prefix = format!("order-{}", chrono::Utc::now().timestamp_millis());
    start_orders(client, tenant, &prefix, count).await?;
    println!(
        "started {count} orders ({prefix}-0 .. {prefix}-{})",
        count.saturating_sub(1)
    );
    let mut last = usize::MAX;
    let runs = wait_for_orders(config, tenant, &prefix, count, timeout, |done, all| {
        if done != last {
            println!("finished {done}/{all}");
            last = done;
        }
    })
    .await?;
    Ok((prefix, runs))
}

/// Waits until every run named `{prefix}-*` is finished (or `timeout` passes), printing
/// progress through `progress`, and returns the committed runs.
pub async fn wait_for_orders(
    config: &WeirConfig,
    tenant: &str,
    prefix: &str,
    orders: usize,
    timeout: Duration,
    mut progress: impl FnMut(usize, usize),
) -> anyhow::Result<BTreeMap<String, RunSnapshot>> {
    let kafka = KafkaClient::connect(&config.kafka()).await?;
    let topics = weir_processor::topics::CoreTopics::new(config);
    let started = Instant::now();
    loop {
        let runs: BTreeMap<String, RunSnapshot> =
            inspect::wf_runs(&kafka, &config.cluster_id, &topics, tenant)
                .await?
                .into_iter()
                .filter(|(id, _)| id.starts_with(&format!("{prefix}-")))
                .collect();
        let finished = runs
            .values()
            .filter(|r| {
                matches!(
                    r.status(),
                    LhStatus::Completed | LhStatus::Error | LhStatus::Exception
                )
            })
            .count();
        progress(finished, orders);
        if finished >= orders || started.elapsed() > timeout {
            return Ok(runs);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use weir_processor::spec_file::{self, SpecKind, SpecRequest};

    use super::*;

    /// The retry policy and timeout the TaskDef files give.
    const FILE_RETRY: RetryPolicy = RetryPolicy {
        max_retries: 3,
        initial_backoff_ms: 500,
        backoff_multiplier: 2.0,
        max_backoff_ms: 5_000,
    };

    fn spec_path(file: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("specs/orders")
            .join(file)
    }

    fn read(kind: SpecKind, file: &str) -> SpecRequest {
        spec_file::read(kind, &spec_path(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
    }

    #[test]
    fn the_orders_wf_spec_file_is_the_built_workflow() {
        let built = wf_spec();
        let expected = PutWfSpecRequest {
            name: WF_SPEC.to_owned(),
            thread_specs: built.thread_specs,
            entrypoint_thread_name: built.entrypoint_thread_name,
            enable_entity_events: built.enable_entity_events,
        };
        let SpecRequest::WfSpec(from_file) = read(SpecKind::WfSpec, "orders.wf-spec.yaml") else {
            panic!("not a wf-spec");
        };
        // Node by node first, so a drift names the node.
        let (file_thread, built_thread) = (
            &from_file.thread_specs["entrypoint"],
            &expected.thread_specs["entrypoint"],
        );
        assert_eq!(file_thread.variable_defs, built_thread.variable_defs);
        assert_eq!(
            file_thread.nodes.keys().collect::<Vec<_>>(),
            built_thread.nodes.keys().collect::<Vec<_>>()
        );
        for (name, node) in &built_thread.nodes {
            assert_eq!(&file_thread.nodes[name], node, "node {name}");
        }
        assert_eq!(from_file, expected);
    }

    #[test]
    fn the_orders_definition_files_are_the_examples_definitions() {
        for def in task_defs(&FILE_RETRY, 30) {
            let file = format!("{}.task-def.yaml", def.name);
            assert_eq!(read(SpecKind::TaskDef, &file), SpecRequest::TaskDef(def));
        }
        assert_eq!(
            read(
                SpecKind::ExternalEventDef,
                "item-delivered.external-event-def.yaml"
            ),
            SpecRequest::ExternalEventDef(PutExternalEventDefRequest {
                name: DELIVERED.to_owned(),
                enable_entity_events: None,
            })
        );
    }

    #[test]
    fn the_approval_files_hold_a_user_task_assigned_to_the_manager() {
        let SpecRequest::UserTaskDef(def) =
            read(SpecKind::UserTaskDef, "approval.user-task-def.json")
        else {
            panic!("not a user-task-def");
        };
        assert_eq!(def.name, "approval");
        assert_eq!(def.fields.len(), 1);
        assert_eq!(def.fields[0].name, "approved");
        assert_eq!(def.fields[0].field_type(), VariableType::Bool);

        let SpecRequest::WfSpec(spec) = read(SpecKind::WfSpec, "approval.wf-spec.json") else {
            panic!("not a wf-spec");
        };
        let thread = &spec.thread_specs[&spec.entrypoint_thread_name];
        let Some(weir_proto::node::Node::UserTask(user_task)) =
            &thread.nodes["1-approval-USER_TASK"].node
        else {
            panic!("node 1 is not a user task: {thread:?}");
        };
        assert_eq!(user_task.user_task_def_name, "approval");
        assert_eq!(
            user_task.user_id.as_ref().and_then(|a| a.source.clone()),
            Some(weir_proto::variable_assignment::Source::VariableName(
                "manager".to_owned()
            ))
        );
    }
}
