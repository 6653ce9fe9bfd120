//! The `weir_wf_runs` gauge on the test driver: it equals the stored runs by tenant and
//! status as runs start, finish, halt and are deleted (a refused command changes
//! nothing), again after every task is closed and opened from its committed state, and
//! goes back to zero when the tasks close; and the output-topic records by tenant and
//! type.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use ::metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use weir_processor::metrics::{OUTPUT_TOPIC_RECORDS, WF_RUNS};
use weir_proto::command_result::Code;
use weir_proto::metadata_command::Command as Meta;
use weir_proto::output_topic_config::OutputTopicRecordingLevel;
use weir_proto::{
    DeleteWfRunRequest, OutputTopicConfig, PutTenantRequest, StopWfRunRequest, WfRunId, command,
};

use crate::harness::{Core, int, text};
use crate::{T, put_orders, task_def};

/// Values by `name{label=value,…}` (labels in the order the code gives them).
#[derive(Default)]
struct Values(Mutex<BTreeMap<String, f64>>);

impl Values {
    fn snapshot(&self) -> BTreeMap<String, f64> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every value of `name`, by its labels, zeros left out.
    fn of(&self, name: &str) -> BTreeMap<String, f64> {
        self.snapshot()
            .into_iter()
            .filter_map(|(key, value)| {
                let labels = key
                    .strip_prefix(name)?
                    .strip_prefix('{')?
                    .strip_suffix('}')?;
                (value != 0.0).then(|| (labels.to_owned(), value))
            })
            .collect()
    }
}

struct Cell {
    key: String,
    values: Arc<Values>,
}

impl Cell {
    fn update(&self, f: impl FnOnce(&mut f64)) {
        let mut values = self.values.0.lock().unwrap_or_else(PoisonError::into_inner);
        f(values.entry(self.key.clone()).or_insert(0.0));
    }
}

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.update(|v| *v += value as f64);
    }
    fn absolute(&self, value: u64) {
        self.update(|v| *v = value as f64);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        self.update(|v| *v += value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| *v -= value);
    }
    fn set(&self, value: f64) {
        self.update(|v| *v = value);
    }
}

impl HistogramFn for Cell {
    fn record(&self, _value: f64) {}
}

struct TestRecorder(Arc<Values>);

impl TestRecorder {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        Arc::new(Cell {
            key: format!("{}{{{}}}", key.name(), labels.join(",")),
            values: Arc::clone(&self.0),
        })
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.cell(key))
    }
}

/// The stored runs `ids` of each tenant, counted by `tenant=…,status=…` as the gauge
/// labels them.
fn stored_counts(core: &Core, ids: &[(&str, String)]) -> BTreeMap<String, f64> {
    let mut counts = BTreeMap::new();
    for (tenant, id) in ids {
        if let Some(run) = core.wf_run(tenant, id) {
            *counts
                .entry(format!(
                    "tenant={tenant},status={}",
                    run.status().as_str_name()
                ))
                .or_insert(0.0) += 1.0;
        }
    }
    counts
}

fn order(core: &mut Core, tenant: &str, id: &str) {
    let result = core.run(
        tenant,
        "orders",
        id,
        &[("user-id", text("ann")), ("item-id", text(id))],
    );
    assert_eq!(result.code(), Code::Ok, "{}", result.message);
}

/// Reports every task of an order, then delivers it.
fn complete(core: &mut Core, tenant: &str, id: &str) {
    let fetch = core.last_scheduled(tenant, "fetch-price", id);
    core.succeed(tenant, &fetch, int(7));
    complete_after_price(core, tenant, id);
}

/// Reports the tasks after fetch-price, then delivers the order.
fn complete_after_price(core: &mut Core, tenant: &str, id: &str) {
    for task_def in ["charge-credit-card", "ship-item"] {
        let task = core.last_scheduled(tenant, task_def, id);
        core.succeed(tenant, &task, text(""));
    }
    let posted = core.post_event(tenant, id, "item-delivered", text("at the door"));
    assert_eq!(posted.code(), Code::Ok, "{}", posted.message);
}

#[test]
fn the_wf_runs_gauge_follows_the_stored_runs_through_changes_and_reopening() {
    let values = Arc::new(Values::default());
    let recorder = TestRecorder(Arc::clone(&values));
    ::metrics::with_local_recorder(&recorder, || {
        let mut core = Core::new();
        put_orders(&mut core, T, 0, 0);
        put_orders(&mut core, "acme", 0, 0);
        let mut ids = Vec::new();
        for n in 0..8 {
            let id = format!("order-{n}");
            order(&mut core, T, &id);
            ids.push((T, id));
        }
        for n in 0..3 {
            let id = format!("acme-{n}");
            order(&mut core, "acme", &id);
            ids.push(("acme", id));
        }
        assert_eq!(
            values.of(WF_RUNS),
            BTreeMap::from([
                ("tenant=acme,status=RUNNING".to_owned(), 3.0),
                ("tenant=default,status=RUNNING".to_owned(), 8.0),
            ])
        );

        complete(&mut core, T, "order-0");
        complete(&mut core, T, "order-1");
        complete(&mut core, "acme", "acme-0");
        let stop = |id: &str| {
            command::Command::StopWfRun(StopWfRunRequest {
                wf_run_id: Some(WfRunId { id: id.to_owned() }),
                thread_run_number: None,
            })
        };
        core.send_ok(T, "order-2", stop("order-2"));
        core.send_ok(
            T,
            "order-3",
            command::Command::DeleteWfRun(DeleteWfRunRequest {
                wf_run_id: Some(WfRunId {
                    id: "order-3".to_owned(),
                }),
            }),
        );
        // Refused: the run is halted already; and a second run with a used id.
        let refused = core.send(T, "order-2", stop("order-2")).expect("answered");
        assert_eq!(refused.code(), Code::FailedPrecondition);
        let again = core.run(
            T,
            "orders",
            "order-4",
            &[("user-id", text("bo")), ("item-id", text("cup"))],
        );
        assert_ne!(again.code(), Code::Ok);

        let expected = BTreeMap::from([
            ("tenant=acme,status=COMPLETED".to_owned(), 1.0),
            ("tenant=acme,status=RUNNING".to_owned(), 2.0),
            ("tenant=default,status=COMPLETED".to_owned(), 2.0),
            ("tenant=default,status=HALTED".to_owned(), 1.0),
            ("tenant=default,status=RUNNING".to_owned(), 4.0),
        ]);
        assert_eq!(stored_counts(&core, &ids), expected);
        assert_eq!(values.of(WF_RUNS), expected);

        // Closed and opened again: each task takes its count back and counts its store.
        let fetch = core.last_scheduled(T, "fetch-price", "order-5");
        let mut core = core.reopen();
        assert_eq!(values.of(WF_RUNS), expected);
        // And goes on counting from there.
        core.succeed(T, &fetch, int(7));
        complete_after_price(&mut core, T, "order-5");
        let mut after = expected.clone();
        after.insert("tenant=default,status=COMPLETED".to_owned(), 3.0);
        after.insert("tenant=default,status=RUNNING".to_owned(), 3.0);
        assert_eq!(stored_counts(&core, &ids), after);
        assert_eq!(values.of(WF_RUNS), after);

        drop(core);
        assert_eq!(
            values.of(WF_RUNS),
            BTreeMap::new(),
            "closed tasks hold no runs"
        );
    });
}

#[test]
fn output_topic_records_are_counted_by_tenant_and_type() {
    let values = Arc::new(Values::default());
    let recorder = TestRecorder(Arc::clone(&values));
    ::metrics::with_local_recorder(&recorder, || {
        let mut core = Core::new();
        put_orders(&mut core, "acme", 0, 0);
        put_orders(&mut core, T, 0, 0);
        core.put_ok(
            "acme",
            Meta::PutTenant(PutTenantRequest {
                id: "acme".to_owned(),
                output_topic_config: Some(OutputTopicConfig {
                    default_recording_level: OutputTopicRecordingLevel::AllEntityEvents as i32,
                }),
            }),
        );
        core.put_ok("acme", task_def("wrap-gift", &[], 0, 0));
        order(&mut core, "acme", "order-1");
        order(&mut core, T, "order-1");
        let fetch = core.last_scheduled("acme", "fetch-price", "order-1");
        core.claim("acme", &fetch);
        core.succeed("acme", &fetch, int(7));
        complete_after_price(&mut core, "acme", "order-1");
        complete(&mut core, T, "order-1");
        // The default tenant publishes nothing; acme publishes the metadata put after
        // it enabled its topics and, for its run, the records the README lists for an
        // order whose only claimed task is fetch-price.
        assert_eq!(
            values.of(OUTPUT_TOPIC_RECORDS),
            BTreeMap::from([
                ("tenant=acme,type=external_event".to_owned(), 1.0),
                ("tenant=acme,type=task_def".to_owned(), 1.0),
                ("tenant=acme,type=task_run".to_owned(), 7.0),
                ("tenant=acme,type=variable".to_owned(), 3.0),
                ("tenant=acme,type=wf_run".to_owned(), 2.0),
            ])
        );
        let published = core
            .driver
            .outputs_to(&core.topics.execution_output("acme"))
            .len()
            + core
                .driver
                .outputs_to(&core.topics.metadata_output("acme"))
                .len();
        assert_eq!(published, 14, "one count per record published");
    });
}
