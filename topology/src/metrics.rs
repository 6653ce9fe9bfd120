//! Every metric the runtime exports, by name, and the per-task handles that record them.
//! Names follow Prometheus conventions (`weir_*`, `_total` counters, unit suffixes); the
//! README lists each one. Handles are registered once per task so the hot path does
//! not hash label sets. Store sizes are sampled from RocksDB by [`StoreSizeSampler`].

use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use weir_state::{StoreId, TaskDb};

pub const RECORDS_PROCESSED: &str = "weir_records_processed_total";
pub const PROCESSING_ERRORS: &str = "weir_processing_errors_total";
pub const DEAD_LETTERS: &str = "weir_dead_letter_records_total";
pub const TIMER_DUPLICATES: &str = "weir_timer_duplicates_total";
pub const TIMERS_FIRED: &str = "weir_timers_fired_total";
pub const COMMIT_LATENCY: &str = "weir_commit_latency_seconds";
pub const COMMIT_BATCH_RECORDS: &str = "weir_commit_batch_records";
pub const RECORDS_LAG: &str = "weir_records_lag";
pub const RESTORE_RECORDS: &str = "weir_restore_records_total";
pub const RESTORE_REMAINING: &str = "weir_restore_remaining_records";
pub const STORE_GETS: &str = "weir_store_gets_total";
pub const STORE_VALUE_CACHE_HITS: &str = "weir_store_value_cache_hits_total";
pub const STORE_PUTS: &str = "weir_store_puts_total";
pub const STORE_BYTES_WRITTEN: &str = "weir_store_bytes_written_total";
pub const OUTPUT_RECORDS: &str = "weir_output_records_total";
pub const KAFKA_RETRIES: &str = "weir_kafka_retries_total";
pub const OUTPUT_PARKED_RECORDS: &str = "weir_output_parked_records";
pub const OUTPUT_PARKED: &str = "weir_output_parked_total";
pub const STORE_KEYS: &str = "weir_store_estimated_keys";
pub const STORE_LIVE_DATA_BYTES: &str = "weir_store_estimated_live_data_bytes";
pub const STORE_MEMTABLE_BYTES: &str = "weir_store_memtable_bytes";

/// Every metric name above, so dashboards and alert rules can be checked against them.
pub const ALL: &[&str] = &[
    RECORDS_PROCESSED,
    PROCESSING_ERRORS,
    DEAD_LETTERS,
    TIMER_DUPLICATES,
    TIMERS_FIRED,
    COMMIT_LATENCY,
    COMMIT_BATCH_RECORDS,
    RECORDS_LAG,
    RESTORE_RECORDS,
    RESTORE_REMAINING,
    STORE_GETS,
    STORE_VALUE_CACHE_HITS,
    STORE_PUTS,
    STORE_BYTES_WRITTEN,
    OUTPUT_RECORDS,
    KAFKA_RETRIES,
    OUTPUT_PARKED_RECORDS,
    OUTPUT_PARKED,
    STORE_KEYS,
    STORE_LIVE_DATA_BYTES,
    STORE_MEMTABLE_BYTES,
];

/// The histograms among them, with the bucket bounds they are exported with (a
/// histogram is exported as `_bucket`, `_sum` and `_count` series).
pub const HISTOGRAMS: &[(&str, &[f64])] = &[
    (
        COMMIT_LATENCY,
        &[
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ],
    ),
    (COMMIT_BATCH_RECORDS, &[1.0, 10.0, 100.0, 1_000.0, 10_000.0]),
];

/// How often a task (or a global replica) reads its stores' size estimates.
pub const STORE_SIZE_INTERVAL: Duration = Duration::from_secs(10);

/// Describes every metric once, so `/metrics` carries help text.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(RECORDS_PROCESSED, "Input records processed, per task.");
    describe_counter!(
        PROCESSING_ERRORS,
        "Records whose processing failed, per task and kind (processor error or panic)."
    );
    describe_counter!(
        DEAD_LETTERS,
        "Records sent to the dead-letter topic, per task."
    );
    describe_counter!(
        TIMER_DUPLICATES,
        "Redelivered timer records that were dropped, per task."
    );
    describe_counter!(
        TIMERS_FIRED,
        "Timers whose record was put back on the input, per task."
    );
    describe_histogram!(
        COMMIT_LATENCY,
        Unit::Seconds,
        "Time to commit one batch: outputs, changelog, RocksDB."
    );
    describe_histogram!(
        COMMIT_BATCH_RECORDS,
        Unit::Count,
        "Input records per committed batch."
    );
    describe_gauge!(
        RECORDS_LAG,
        Unit::Count,
        "High watermark minus position, per task, source topic and partition."
    );
    describe_counter!(RESTORE_RECORDS, "Changelog records restored, per task.");
    describe_gauge!(
        RESTORE_REMAINING,
        Unit::Count,
        "Changelog records left to restore, per task (0 when not restoring)."
    );
    describe_counter!(
        STORE_GETS,
        "Store reads that reached RocksDB, the value cache or the batch overlay, per task."
    );
    describe_counter!(
        STORE_VALUE_CACHE_HITS,
        "Store reads of weir_store_gets_total the value cache answered without RocksDB, per task."
    );
    describe_counter!(
        STORE_PUTS,
        "Store puts and deletes issued by processors, per task."
    );
    describe_counter!(
        STORE_BYTES_WRITTEN,
        Unit::Bytes,
        "Bytes written to RocksDB by commits and restores, per task."
    );
    describe_counter!(
        OUTPUT_RECORDS,
        "Records produced by processors, per task and topic."
    );
    describe_counter!(
        KAFKA_RETRIES,
        "Kafka operations retried after an error, per task and operation."
    );
    describe_gauge!(
        OUTPUT_PARKED_RECORDS,
        Unit::Count,
        "Output records parked because their topic or partition does not exist, waiting to be produced, per task and topic."
    );
    describe_counter!(
        OUTPUT_PARKED,
        "Output records parked because their topic or partition did not exist, per task and topic."
    );
    describe_gauge!(
        STORE_KEYS,
        Unit::Count,
        "RocksDB's estimate of the live keys in a store, per task (or global) and store."
    );
    describe_gauge!(
        STORE_LIVE_DATA_BYTES,
        Unit::Bytes,
        "RocksDB's estimate of a store's live data in SST files, per task (or global) and store."
    );
    describe_gauge!(
        STORE_MEMTABLE_BYTES,
        Unit::Bytes,
        "Bytes in a store's memtables, not yet flushed to SST files, per task (or global) and store."
    );
}

/// The handles one task records into.
#[derive(Debug, Clone)]
pub(crate) struct TaskMetrics {
    pub(crate) task: String,
    pub(crate) records_processed: Counter,
    pub(crate) processor_errors: Counter,
    pub(crate) panics: Counter,
    pub(crate) dead_letters: Counter,
    pub(crate) timer_duplicates: Counter,
    pub(crate) timers_fired: Counter,
    pub(crate) commit_latency: Histogram,
    pub(crate) commit_batch_records: Histogram,
    pub(crate) restore_records: Counter,
    pub(crate) restore_remaining: Gauge,
    pub(crate) store_gets: Counter,
    pub(crate) store_value_cache_hits: Counter,
    pub(crate) store_puts: Counter,
    pub(crate) store_bytes_written: Counter,
}

impl TaskMetrics {
    pub(crate) fn new(task: &str) -> Self {
        let task_label = task.to_owned();
        let errors = |kind: &'static str| counter!(PROCESSING_ERRORS, "task" => task_label.clone(), "kind" => kind);
        let restore_remaining = gauge!(RESTORE_REMAINING, "task" => task_label.clone());
        // A task that is not restoring has nothing left to restore: 0, never absent or -1.
        restore_remaining.set(0.0);
        Self {
            task: task.to_owned(),
            records_processed: counter!(RECORDS_PROCESSED, "task" => task_label.clone()),
            processor_errors: errors("processor"),
            panics: errors("panic"),
            dead_letters: counter!(DEAD_LETTERS, "task" => task_label.clone()),
            timer_duplicates: counter!(TIMER_DUPLICATES, "task" => task_label.clone()),
            timers_fired: counter!(TIMERS_FIRED, "task" => task_label.clone()),
            commit_latency: histogram!(COMMIT_LATENCY, "task" => task_label.clone()),
            commit_batch_records: histogram!(COMMIT_BATCH_RECORDS, "task" => task_label.clone()),
            restore_records: counter!(RESTORE_RECORDS, "task" => task_label.clone()),
            restore_remaining,
            store_gets: counter!(STORE_GETS, "task" => task_label.clone()),
            store_value_cache_hits: counter!(STORE_VALUE_CACHE_HITS, "task" => task_label.clone()),
            store_puts: counter!(STORE_PUTS, "task" => task_label.clone()),
            store_bytes_written: counter!(STORE_BYTES_WRITTEN, "task" => task_label),
        }
    }

    pub(crate) fn records_lag(&self, source: &str, partition: i32) -> Gauge {
        gauge!(RECORDS_LAG, "task" => self.task.clone(), "source" => source.to_owned(), "partition" => partition.to_string())
    }

    pub(crate) fn output_records(&self, topic: &str) -> Counter {
        counter!(OUTPUT_RECORDS, "task" => self.task.clone(), "topic" => topic.to_owned())
    }

    pub(crate) fn output_parked_records(&self, topic: &str) -> Gauge {
        gauge!(OUTPUT_PARKED_RECORDS, "task" => self.task.clone(), "topic" => topic.to_owned())
    }

    pub(crate) fn output_parked(&self, topic: &str) -> Counter {
        counter!(OUTPUT_PARKED, "task" => self.task.clone(), "topic" => topic.to_owned())
    }

    pub(crate) fn kafka_retries(&self, operation: &'static str) -> Counter {
        counter!(KAFKA_RETRIES, "task" => self.task.clone(), "operation" => operation)
    }
}

/// The size gauges of one store.
#[derive(Debug)]
struct StoreSizeGauges {
    store: StoreId,
    name: String,
    keys: Gauge,
    live_data_bytes: Gauge,
    memtable_bytes: Gauge,
}

/// Reads RocksDB's size estimates of every store of a [`TaskDb`] into the
/// [`STORE_KEYS`], [`STORE_LIVE_DATA_BYTES`] and [`STORE_MEMTABLE_BYTES`] gauges, at most
/// once per [`STORE_SIZE_INTERVAL`]. A failed read is logged and skipped: sizes are
/// worth a warning, never a task restart.
#[derive(Debug)]
pub(crate) struct StoreSizeSampler {
    owner: String,
    stores: Vec<StoreSizeGauges>,
    last: Option<Instant>,
}

impl StoreSizeSampler {
    /// Gauges labelled `task` = `owner` (a task id, or `global`) for every store of `db`.
    pub(crate) fn new(owner: &str, db: &TaskDb) -> Self {
        let stores = db
            .store_names()
            .into_iter()
            .filter_map(|name| {
                let store = db.store_id(name)?;
                let labels = [("task", owner.to_owned()), ("store", name.to_owned())];
                Some(StoreSizeGauges {
                    store,
                    name: name.to_owned(),
                    keys: gauge!(STORE_KEYS, &labels),
                    live_data_bytes: gauge!(STORE_LIVE_DATA_BYTES, &labels),
                    memtable_bytes: gauge!(STORE_MEMTABLE_BYTES, &labels),
                })
            })
            .collect();
        Self {
            owner: owner.to_owned(),
            stores,
            last: None,
        }
    }

    /// Samples every store when the last sample is older than [`STORE_SIZE_INTERVAL`]
    /// (or there was none).
    pub(crate) fn sample_if_due(&mut self, db: &TaskDb) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < STORE_SIZE_INTERVAL)
        {
            return;
        }
        self.last = Some(now);
        for store in &self.stores {
            match db.store_sizes(store.store) {
                Ok(sizes) => {
                    store.keys.set(sizes.keys as f64);
                    store.live_data_bytes.set(sizes.live_data_bytes as f64);
                    store.memtable_bytes.set(sizes.memtable_bytes as f64);
                }
                Err(error) => {
                    tracing::warn!(task = %self.owner, store = %store.name, %error, "cannot read store size estimates");
                }
            }
        }
    }
}
