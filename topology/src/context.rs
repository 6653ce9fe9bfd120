//! The processor's view of its task while it handles one record: typed store access
//! through the record's change tracking, global stores, forwarding, timers, and the
//! change set the record has made so far. [`InitContext`] is its read-only view when
//! the task opens.

use bytes::Bytes;
use prost::Message;
use weir_proto::TimerRecord;
use weir_state::{ChangeSet, RecordState, StoreId, TaskDb};

use crate::global::GlobalStores;
use crate::processor::{OutputRecord, ProcessingError};
use crate::store::{GlobalStoreHandle, StoreHandle};
use crate::timers;

/// Everything a processor may touch while handling one record. Nothing it does is
/// visible outside the record until the processor returns `Ok`.
pub struct ProcessorContext<'s, 'b> {
    pub(crate) state: RecordState<'s>,
    pub(crate) store_ids: &'b [Option<StoreId>],
    pub(crate) timer_store: StoreId,
    pub(crate) globals: &'b GlobalStores,
    pub(crate) outputs: Vec<OutputRecord>,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) timestamp_ms: i64,
    pub(crate) timers_scheduled: u32,
}

impl std::fmt::Debug for ProcessorContext<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorContext")
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("outputs", &self.outputs.len())
            .finish_non_exhaustive()
    }
}

impl ProcessorContext<'_, '_> {
    /// The partition of the task (and of the record being processed).
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The time of the record being processed, in epoch milliseconds.
    pub fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }

    /// Reads a value; the first read of a key in a record goes to storage, later reads
    /// hit the record's cache.
    pub fn get<V: Message + Default>(
        &mut self,
        store: &StoreHandle<V>,
        key: &[u8],
    ) -> Result<Option<V>, ProcessingError> {
        let id = self.store_id(store)?;
        Ok(self.state.get(id, key)?)
    }

    /// Writes a value; it becomes a change only if its bytes differ from what was stored.
    pub fn put<V: Message>(
        &mut self,
        store: &StoreHandle<V>,
        key: &[u8],
        value: &V,
    ) -> Result<(), ProcessingError> {
        let id = self.store_id(store)?;
        self.state.put(id, key, value);
        Ok(())
    }

    /// Deletes a key; a change only if the key existed.
    pub fn delete<V>(&mut self, store: &StoreHandle<V>, key: &[u8]) -> Result<(), ProcessingError> {
        let id = self.store_id(store)?;
        self.state.delete(id, key);
        Ok(())
    }

    /// Every live entry whose key starts with `prefix`, in key order.
    pub fn scan_prefix<V: Message + Default>(
        &mut self,
        store: &StoreHandle<V>,
        prefix: &[u8],
    ) -> Result<Vec<(Bytes, V)>, ProcessingError> {
        let id = self.store_id(store)?;
        Ok(self.state.scan_prefix(id, prefix)?)
    }

    /// Every live entry with a key in `[from, to)`, in key order.
    pub fn scan_range<V: Message + Default>(
        &mut self,
        store: &StoreHandle<V>,
        from: &[u8],
        to: &[u8],
    ) -> Result<Vec<(Bytes, V)>, ProcessingError> {
        let id = self.store_id(store)?;
        Ok(self.state.scan_range(id, from, to)?)
    }

    /// Reads a value from a global (every-instance, read-only) store.
    pub fn global_get<V: Message + Default>(
        &self,
        store: &GlobalStoreHandle<V>,
        key: &[u8],
    ) -> Result<Option<V>, ProcessingError> {
        self.globals.get(store, key)
    }

    /// Every entry of a global store whose key starts with `prefix`, in key order.
    pub fn global_scan_prefix<V: Message + Default>(
        &self,
        store: &GlobalStoreHandle<V>,
        prefix: &[u8],
    ) -> Result<Vec<(Bytes, V)>, ProcessingError> {
        self.globals.scan_prefix(store, prefix)
    }

    /// Sends a record to the topic and partition it names, once the record's
    /// processing commits. The runtime adds the `weir-id` header.
    pub fn forward(&mut self, record: OutputRecord) {
        self.outputs.push(record);
    }

    /// Schedules a record `(key, value)` to come back to this processor, on this task's
    /// input partition, once the wall clock passes `fire_at_ms`. Timers are state: they
    /// survive restarts and fire exactly once.
    pub fn schedule(&mut self, fire_at_ms: i64, key: impl Into<Bytes>, value: impl Into<Bytes>) {
        let timer_key = timers::timer_key(fire_at_ms, self.offset, self.timers_scheduled);
        self.timers_scheduled += 1;
        let timer = TimerRecord {
            fire_at: Some(weir_proto::timestamp::from_millis(fire_at_ms)),
            payload: value.into().to_vec(),
            key: key.into().to_vec(),
            fired: false,
        };
        self.state.put(self.timer_store, &timer_key, &timer);
    }

    /// What this record has changed so far: only keys whose encoded bytes differ from
    /// what was stored before the record, in (store, key) order.
    pub fn changes(&self) -> ChangeSet {
        self.state.changes()
    }

    /// The name of the store a change belongs to.
    pub fn store_name(&self, id: StoreId) -> &str {
        self.state.store_name(id)
    }

    fn store_id<V>(&self, store: &StoreHandle<V>) -> Result<StoreId, ProcessingError> {
        self.store_ids
            .get(store.index)
            .copied()
            .flatten()
            .ok_or_else(|| {
                ProcessingError::Fatal(format!(
                    "store {} is not bound to this processor's sub-topology",
                    store.name()
                ))
            })
    }
}

/// What a processor may read when its task opens ([`crate::Processor::init`]): its
/// stores as committed (restored, nothing of a new batch yet), read-only.
pub struct InitContext<'a> {
    pub(crate) db: &'a TaskDb,
    pub(crate) store_ids: &'a [Option<StoreId>],
    pub(crate) partition: i32,
}

impl std::fmt::Debug for InitContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitContext")
            .field("partition", &self.partition)
            .finish_non_exhaustive()
    }
}

impl InitContext<'_> {
    /// The partition of the task.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Every entry of a store whose key starts with `prefix`, in key order, with its
    /// value as stored, so the caller can decode as much of it as it needs (a message
    /// with a subset of the stored message's fields decodes the same bytes).
    pub fn scan_prefix_raw<V>(
        &self,
        store: &StoreHandle<V>,
        prefix: &[u8],
    ) -> Result<Vec<(Bytes, Bytes)>, ProcessingError> {
        let id = self
            .store_ids
            .get(store.index)
            .copied()
            .flatten()
            .ok_or_else(|| {
                ProcessingError::Fatal(format!(
                    "store {} is not bound to this processor's sub-topology",
                    store.name()
                ))
            })?;
        Ok(self.db.scan_prefix_raw(id, prefix)?)
    }
}
