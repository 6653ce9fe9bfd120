//! A task's processing without any I/O: run the processor on one record inside a
//! change-tracking scope, and add what it did to the open batch: its changes to the
//! `TaskDb`'s open layer (which the commit freezes and changelogs), its stamped outputs
//! and dead letters to [`Batch`]. The Kafka task and the test driver both drive this.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use weir_proto::TimerRecord;
use weir_state::{StoreId, TaskDb};

use crate::context::{InitContext, ProcessorContext};
use crate::global::GlobalStores;
use crate::metrics::TaskMetrics;
use crate::processor::{InputRecord, OutputRecord, ProcessingError, Processor, TIMER_HEADER};
use crate::timers;

/// Header naming an output by the input record that caused it: `{topic}:{partition}:{offset}:{n}`.
/// A redelivered output carries the same id and bytes, so consumers can drop it.
pub const WEIR_ID_HEADER: &str = "weir-id";
/// Dead-letter headers: why the record failed, and where it came from.
pub const ERROR_HEADER: &str = "weir-error";
pub const SOURCE_TOPIC_HEADER: &str = "weir-source-topic";
pub const SOURCE_PARTITION_HEADER: &str = "weir-source-partition";
pub const SOURCE_OFFSET_HEADER: &str = "weir-source-offset";

/// An output record with the timestamp it is produced with (the input's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampedOutput {
    pub record: OutputRecord,
    pub timestamp_ms: i64,
}

/// Everything a batch of input records produced, waiting to be committed.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) outputs: Vec<StampedOutput>,
    /// Next offset to read per source topic, once this batch commits.
    pub(crate) next_offsets: BTreeMap<Arc<str>, i64>,
    pub(crate) records: u64,
    pub(crate) last_timestamp_ms: i64,
}

impl Batch {
    pub(crate) fn is_empty(&self) -> bool {
        // Every change comes from a record, or from a fired timer, which has an output.
        self.records == 0 && self.outputs.is_empty()
    }
}

/// What happened to one input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    Processed,
    /// A redelivered timer record whose timer already ran.
    DuplicateTimer,
    /// Sent to the dead-letter topic with this reason.
    DeadLettered(String),
}

/// One task's processor and state, without Kafka.
pub(crate) struct TaskCore {
    pub(crate) partition: i32,
    pub(crate) db: TaskDb,
    processor: Box<dyn Processor>,
    store_ids: Vec<Option<StoreId>>,
    timer_store: StoreId,
    globals: GlobalStores,
    dead_letter_topic: String,
    /// Where due timers' records go: this task's partition of its first source.
    timer_topic: Arc<str>,
    pub(crate) metrics: TaskMetrics,
    pub(crate) batch: Batch,
}

/// How a task core is put together.
pub(crate) struct TaskCoreParts {
    pub(crate) partition: i32,
    pub(crate) db: TaskDb,
    pub(crate) processor: Box<dyn Processor>,
    pub(crate) store_ids: Vec<Option<StoreId>>,
    pub(crate) timer_store: StoreId,
    pub(crate) globals: GlobalStores,
    pub(crate) dead_letter_topic: String,
    pub(crate) timer_topic: Arc<str>,
    pub(crate) metrics: TaskMetrics,
}

impl TaskCore {
    pub(crate) fn new(parts: TaskCoreParts) -> Self {
        Self {
            partition: parts.partition,
            db: parts.db,
            processor: parts.processor,
            store_ids: parts.store_ids,
            timer_store: parts.timer_store,
            globals: parts.globals,
            dead_letter_topic: parts.dead_letter_topic,
            timer_topic: parts.timer_topic,
            metrics: parts.metrics,
            batch: Batch::default(),
        }
    }

    /// Lets the processor read its restored stores before the first record
    /// ([`Processor::init`]).
    pub(crate) fn init(&mut self) -> Result<(), ProcessingError> {
        let ctx = InitContext {
            db: &self.db,
            store_ids: &self.store_ids,
            partition: self.partition,
        };
        self.processor.init(&ctx)
    }

    /// Processes one record into the open batch. Only a storage failure is an error;
    /// a bad record is dead-lettered and processing goes on.
    pub(crate) fn process(
        &mut self,
        record: &InputRecord,
    ) -> Result<RecordOutcome, ProcessingError> {
        self.batch
            .next_offsets
            .insert(Arc::clone(&record.topic), record.offset + 1);
        self.batch.records += 1;
        self.batch.last_timestamp_ms = record.timestamp_ms;
        self.metrics.records_processed.increment(1);

        let mut ctx = ProcessorContext {
            state: self.db.record(),
            store_ids: &self.store_ids,
            timer_store: self.timer_store,
            globals: &self.globals,
            outputs: Vec::new(),
            partition: record.partition,
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            timers_scheduled: 0,
        };
        if record.is_timer() {
            // The timer entry goes in the same scope as the processor's work, so the
            // timer is consumed exactly when its effects commit.
            let timer_key = record.header(TIMER_HEADER).unwrap_or_default();
            match ctx.state.get_raw(self.timer_store, timer_key) {
                Ok(Some(_)) => ctx.state.delete(self.timer_store, timer_key),
                Ok(None) => {
                    self.metrics.timer_duplicates.increment(1);
                    return Ok(RecordOutcome::DuplicateTimer);
                }
                Err(e) => return Err(e.into()),
            }
        }
        let processor = &mut self.processor;
        let result =
            std::panic::catch_unwind(AssertUnwindSafe(|| processor.process(&mut ctx, record)));
        let failure = match result {
            Ok(Ok(())) => None,
            Ok(Err(ProcessingError::Record(reason))) => {
                self.metrics.processor_errors.increment(1);
                Some(reason)
            }
            Ok(Err(fatal @ ProcessingError::Fatal(_))) => return Err(fatal),
            Err(panic) => {
                self.metrics.panics.increment(1);
                Some(format!(
                    "processor panicked: {}",
                    panic_message(panic.as_ref())
                ))
            }
        };
        if let Some(reason) = failure {
            // Dropping the context discards every read, write and output of the record.
            drop(ctx);
            self.dead_letter(record, &reason);
            return Ok(RecordOutcome::DeadLettered(reason));
        }
        let outputs = std::mem::take(&mut ctx.outputs);
        self.metrics.store_gets.increment(ctx.state.reads());
        self.metrics
            .store_value_cache_hits
            .increment(ctx.state.value_cache_hits());
        self.metrics.store_puts.increment(ctx.state.writes());
        ctx.state.finish()?;
        for (n, mut output) in outputs.into_iter().enumerate() {
            output
                .headers
                .insert(WEIR_ID_HEADER.to_owned(), Bytes::from(record.output_id(n)));
            self.batch.outputs.push(StampedOutput {
                record: output,
                timestamp_ms: record.timestamp_ms,
            });
        }
        Ok(RecordOutcome::Processed)
    }

    /// Sends a record that cannot be processed to the dead-letter topic, with its key,
    /// value and headers as they were plus the reason and its source position.
    pub(crate) fn dead_letter(&mut self, record: &InputRecord, reason: &str) {
        self.metrics.dead_letters.increment(1);
        tracing::warn!(
            task = %self.metrics.task,
            topic = %record.topic,
            partition = record.partition,
            offset = record.offset,
            %reason,
            "record sent to the dead-letter topic"
        );
        let mut headers = record.headers.clone();
        headers.insert(ERROR_HEADER.to_owned(), Bytes::from(reason.to_owned()));
        headers.insert(
            SOURCE_TOPIC_HEADER.to_owned(),
            Bytes::from(record.topic.to_string()),
        );
        headers.insert(
            SOURCE_PARTITION_HEADER.to_owned(),
            Bytes::from(record.partition.to_string()),
        );
        headers.insert(
            SOURCE_OFFSET_HEADER.to_owned(),
            Bytes::from(record.offset.to_string()),
        );
        headers.insert(
            WEIR_ID_HEADER.to_owned(),
            Bytes::from(format!("{}:dead-letter", record.position())),
        );
        self.batch.outputs.push(StampedOutput {
            record: OutputRecord {
                topic: self.dead_letter_topic.clone(),
                partition: 0,
                key: record.key.clone(),
                value: record.value.clone(),
                headers,
            },
            timestamp_ms: record.timestamp_ms,
        });
    }

    /// Marks every timer due at `now_ms` as fired and adds its record, addressed to this
    /// task's own input partition, to the batch. Returns how many fired.
    pub(crate) fn fire_due_timers(&mut self, now_ms: i64) -> Result<usize, ProcessingError> {
        let mut state = self.db.record();
        let due: Vec<(Bytes, TimerRecord)> =
            state.scan_range(self.timer_store, &[], &timers::due_before(now_ms))?;
        let mut fired = 0;
        for (key, mut timer) in due {
            if timer.fired {
                continue;
            }
            timer.fired = true;
            state.put(self.timer_store, &key, &timer);
            let fire_at_ms = timer
                .fire_at
                .as_ref()
                .map_or(now_ms, weir_proto::timestamp::to_millis);
            let mut headers = BTreeMap::new();
            headers.insert(TIMER_HEADER.to_owned(), key.clone());
            headers.insert(
                WEIR_ID_HEADER.to_owned(),
                Bytes::from(format!("timer:{}:{}", self.partition, hex_string(&key))),
            );
            self.batch.outputs.push(StampedOutput {
                record: OutputRecord {
                    topic: self.timer_topic.to_string(),
                    partition: self.partition,
                    key: Some(Bytes::from(timer.key)),
                    value: Some(Bytes::from(timer.payload)),
                    headers,
                },
                timestamp_ms: fire_at_ms,
            });
            fired += 1;
        }
        state.finish()?;
        self.metrics
            .timers_fired
            .increment(u64::try_from(fired).unwrap_or_default());
        Ok(fired)
    }

    /// Hands the open batch over for committing and starts a new one.
    pub(crate) fn take_batch(&mut self) -> Batch {
        std::mem::take(&mut self.batch)
    }

    /// The store a change belongs to, by name.
    pub(crate) fn store_name(&self, id: StoreId) -> &str {
        self.db.store_name(id)
    }
}

/// Decodes an input value, or says why it does not decode (for the dead-letter reason).
pub fn decode_value<M: Message + Default>(record: &InputRecord) -> Result<M, ProcessingError> {
    let value = record.value.as_deref().unwrap_or_default();
    M::decode(value).map_err(|e| {
        ProcessingError::record(format!(
            "value at {} does not decode as {}: {e}",
            record.position(),
            std::any::type_name::<M>()
                .rsplit("::")
                .next()
                .unwrap_or("message")
        ))
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "(no message)".to_owned()
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
