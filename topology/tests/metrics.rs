//! The runtime's metrics, recorded through the `metrics` facade while the test driver
//! processes records: names and labels as the README lists them, and values that match
//! what was processed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use weir_topology::{
    InputRecord, OutputRecord, ProcessingError, Processor, ProcessorContext, SourceTopic,
    StoreHandle, Topology, TopologyTestDriver,
};

/// Every value recorded, by `name{label=value,…}`.
#[derive(Default)]
struct Values(Mutex<BTreeMap<String, f64>>);

struct Cell {
    key: String,
    values: Arc<Values>,
}

impl Cell {
    fn update(&self, f: impl FnOnce(&mut f64)) {
        let mut values = self
            .values
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
    /// Histograms record how many observations they got.
    fn record(&self, _value: f64) {
        self.update(|v| *v += 1.0);
    }
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

/// Counts per key; fails on a value of "fail", panics on "panic".
struct Counting {
    counts: StoreHandle<i64>,
}

impl Processor for Counting {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, '_>,
        record: &InputRecord,
    ) -> Result<(), ProcessingError> {
        match record.value.as_deref() {
            Some(b"fail") => return Err(ProcessingError::record("asked to fail")),
            Some(b"panic") => panic!("asked to panic"),
            _ => {}
        }
        let key = record.key.clone().unwrap_or_default();
        let count = ctx.get(&self.counts, &key)?.unwrap_or(0) + 1;
        ctx.put(&self.counts, &key, &count)?;
        ctx.forward(OutputRecord::new("m_out", 0, key, count.to_string()));
        Ok(())
    }
}

#[test]
fn processing_records_the_documented_metrics() {
    let values = Arc::new(Values::default());
    let recorder = TestRecorder(Arc::clone(&values));
    let dir = tempfile::tempdir().expect("temp dir");
    metrics::with_local_recorder(&recorder, || {
        let mut topology = Topology::new();
        let counts: StoreHandle<i64> = topology.store("m_counts").expect("store");
        topology
            .add_subtopology(
                "count",
                vec![SourceTopic::new("m_in", 1)],
                &["m_counts"],
                move |_| {
                    Box::new(Counting {
                        counts: counts.clone(),
                    })
                },
            )
            .expect("subtopology");
        let mut driver = TopologyTestDriver::new(topology, "m", dir.path()).expect("driver");
        for value in ["1", "1", "fail", "1", "panic"] {
            driver
                .pipe("m_in", 0, Some(b"k"), Some(value.as_bytes()), &[], 0)
                .expect("pipe");
        }
    });
    let values = values
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let get = |key: &str| {
        values
            .get(key)
            .copied()
            .unwrap_or_else(|| panic!("{key} not recorded; got {values:#?}"))
    };
    assert_eq!(get("weir_records_processed_total{task=count-0}"), 5.0);
    assert_eq!(
        get("weir_processing_errors_total{task=count-0,kind=processor}"),
        1.0
    );
    assert_eq!(
        get("weir_processing_errors_total{task=count-0,kind=panic}"),
        1.0
    );
    assert_eq!(get("weir_dead_letter_records_total{task=count-0}"), 2.0);
    assert_eq!(get("weir_store_puts_total{task=count-0}"), 3.0);
    assert!(get("weir_store_gets_total{task=count-0}") >= 3.0);
    assert_eq!(get("weir_restore_remaining_records{task=count-0}"), 0.0);
}
