//! Every metric the runtime exports, by name, and the per-task handles that record them.
//! Names follow Prometheus conventions (`weir_*`, `_total` counters, unit suffixes); the
//! README lists each one. Handles are registered once per task so the hot path does
//! not hash label sets.

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

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
pub const STORE_PUTS: &str = "weir_store_puts_total";
pub const STORE_BYTES_WRITTEN: &str = "weir_store_bytes_written_total";
pub const OUTPUT_RECORDS: &str = "weir_output_records_total";
pub const KAFKA_RETRIES: &str = "weir_kafka_retries_total";
pub const OUTPUT_PARKED_RECORDS: &str = "weir_output_parked_records";
pub const OUTPUT_PARKED: &str = "weir_output_parked_total";

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
        "High watermark minus position, per task and source."
    );
    describe_counter!(RESTORE_RECORDS, "Changelog records restored, per task.");
    describe_gauge!(
        RESTORE_REMAINING,
        Unit::Count,
        "Changelog records left to restore, per task (0 when not restoring)."
    );
    describe_counter!(
        STORE_GETS,
        "Store reads that reached RocksDB or the batch overlay, per task."
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
            store_puts: counter!(STORE_PUTS, "task" => task_label.clone()),
            store_bytes_written: counter!(STORE_BYTES_WRITTEN, "task" => task_label),
        }
    }

    pub(crate) fn records_lag(&self, source: &str) -> Gauge {
        gauge!(RECORDS_LAG, "task" => self.task.clone(), "source" => source.to_owned())
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
