//! [`TaskDb`]: one task's RocksDB instance with its named stores, the pending changes not
//! yet committed (the open batch's overlay over the frozen ones of batches being
//! committed), and the checkpoint written atomically with them. Point reads that miss
//! the overlay go through the process's value cache ([`crate::value_cache`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, Direction, FlushOptions, IteratorMode, ReadOptions,
    WriteBatch, WriteOptions,
};

use crate::checkpoint::{CHECKPOINT_KEY, META_CF};
use crate::error::{KeyDisplay, key_string};
use crate::overlay::{Overlay, Pending};
use crate::reader::{self, ReaderSlot, TaskDbReader};
use crate::value_cache::ValueCache;
use crate::{Checkpoint, RecordState, StateError, StateResources};

/// Identifies a store of one [`TaskDb`]: its position in the list given to [`TaskDb::open`].
/// Using an id with another `TaskDb` than the one that issued it is a bug and may panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoreId(pub(crate) usize);

/// RocksDB's estimates of one store's size ([`TaskDb::store_sizes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreSizes {
    /// `rocksdb.estimate-num-keys`: live keys, memtables included (overwrites and
    /// deletions not yet compacted make it an overestimate).
    pub keys: u64,
    /// `rocksdb.estimate-live-data-size`: bytes of live data in SST files.
    pub live_data_bytes: u64,
    /// `rocksdb.cur-size-all-mem-tables`: bytes of the memtables, data not yet flushed.
    pub memtable_bytes: u64,
}

/// One task's state: a RocksDB instance with one column family per store, the changes
/// made by finished records but not yet committed, and the checkpoint.
pub struct TaskDb {
    db: Arc<DB>,
    /// The same database as [`TaskDbReader`]s see it; emptied when this is dropped.
    readers: ReaderSlot,
    path: PathBuf,
    stores: Vec<String>,
    pub(crate) pending: Pending,
    write_options: WriteOptions,
    /// The process's cache of committed values, and this database's generation in it.
    values: ValueCache,
    values_generation: u64,
}

/// Where a point read found its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadFrom {
    Overlay,
    ValueCache,
    RocksDb,
}

impl TaskDb {
    /// Opens (creating if missing) the RocksDB at `path` with one column family per store name
    /// plus an internal meta column family for the checkpoint. Stores are identified by the
    /// returned ids in the order given. Column families on disk that are not among `stores`
    /// are an error naming them.
    ///
    /// Writes skip the WAL and flushes are atomic across column families: state is rebuilt
    /// from the changelog after a crash, and a flush never leaves stores inconsistent with
    /// each other or with the checkpoint.
    pub fn open(
        path: &Path,
        stores: &[&str],
        resources: &StateResources,
    ) -> Result<Self, StateError> {
        validate_store_names(path, stores)?;
        let options = resources.db_options();
        if path.join("CURRENT").exists() {
            let existing = DB::list_cf(&options, path).map_err(|source| StateError::Open {
                path: path.to_owned(),
                source,
            })?;
            let unknown: BTreeSet<String> = existing
                .into_iter()
                .filter(|name| {
                    name != rocksdb::DEFAULT_COLUMN_FAMILY_NAME
                        && name != META_CF
                        && !stores.contains(&name.as_str())
                })
                .collect();
            if !unknown.is_empty() {
                return Err(StateError::UnknownColumnFamilies {
                    path: path.to_owned(),
                    names: unknown.into_iter().collect(),
                });
            }
        }
        let families = stores
            .iter()
            .copied()
            .chain([META_CF])
            .map(|name| ColumnFamilyDescriptor::new(name, resources.store_options()));
        let db = DB::open_cf_descriptors(&options, path, families).map_err(|source| {
            StateError::Open {
                path: path.to_owned(),
                source,
            }
        })?;
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(true);
        let db = Arc::new(db);
        Ok(Self {
            readers: Arc::new(RwLock::new(Some(Arc::clone(&db)))),
            db,
            path: path.to_owned(),
            stores: stores.iter().map(|s| (*s).to_owned()).collect(),
            pending: Pending::new(stores.len()),
            write_options,
            values: resources.values.clone(),
            values_generation: ValueCache::new_generation(),
        })
    }

    /// Deletes the whole state directory (used when it is unreadable: a full restore
    /// follows). A missing directory is not an error.
    pub fn destroy(path: &Path) -> Result<(), StateError> {
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StateError::Destroy {
                path: path.to_owned(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// A handle that reads this database's committed state from any thread, until this
    /// `TaskDb` is dropped ([`TaskDbReader`]).
    pub fn reader(&self) -> TaskDbReader {
        TaskDbReader::new(Arc::clone(&self.readers), &self.path, &self.stores)
    }

    /// The directory of this database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn store_id(&self, name: &str) -> Option<StoreId> {
        self.stores.iter().position(|s| s == name).map(StoreId)
    }

    /// The name of a store. Panics if `id` was not issued by this `TaskDb`.
    pub fn store_name(&self, id: StoreId) -> &str {
        &self.stores[id.0]
    }

    pub fn store_names(&self) -> Vec<&str> {
        self.stores.iter().map(String::as_str).collect()
    }

    /// The last checkpoint written (`None` for a new, empty database).
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, StateError> {
        let meta = self.meta_cf()?;
        let stored = self
            .db
            .get_pinned_cf(meta, CHECKPOINT_KEY)
            .map_err(|source| StateError::ReadCheckpoint {
                path: self.path.clone(),
                source,
            })?;
        stored
            .map(|bytes| {
                Checkpoint::decode(&bytes).map_err(|source| StateError::DecodeCheckpoint {
                    path: self.path.clone(),
                    source,
                })
            })
            .transpose()
    }

    /// Starts one record's processing.
    pub fn record(&mut self) -> RecordState<'_> {
        RecordState::new(self)
    }

    /// Number of pending entries (changed by finished records, not yet committed), over
    /// the open layer and the frozen ones.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Number of frozen layers waiting for [`commit_oldest_frozen`](Self::commit_oldest_frozen).
    pub fn frozen_layers(&self) -> usize {
        self.pending.frozen_layers()
    }

    /// Closes the open batch's changes: they become the newest frozen layer, still read
    /// by later records, and are written to RocksDB by
    /// [`commit_oldest_frozen`](Self::commit_oldest_frozen) once their batch is durable
    /// elsewhere. Later changes go to a new open layer. Returns the batch's changes
    /// (last write per key, `None` a deletion) of every store it changed, in key order:
    /// what its changelogs get.
    pub fn freeze_pending(&mut self) -> BTreeMap<StoreId, Vec<(Bytes, Option<Bytes>)>> {
        let frozen = self.pending.freeze();
        frozen
            .stores()
            .filter(|(_, entries)| !entries.is_empty())
            .map(|(store, entries)| {
                let changes = entries
                    .iter()
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect();
                (StoreId(store), changes)
            })
            .collect()
    }

    /// Writes the oldest frozen layer and the checkpoint in one `WriteBatch`, then drops
    /// the layer. Returns the bytes of store keys and values written (the checkpoint is
    /// not counted, so a batch that changed nothing returns 0). An error, writing nothing,
    /// when no layer is frozen; on a write error the layer is kept.
    pub fn commit_oldest_frozen(&mut self, checkpoint: &Checkpoint) -> Result<u64, StateError> {
        let layer = self
            .pending
            .oldest_frozen()
            .ok_or_else(|| StateError::NothingFrozen {
                path: self.path.clone(),
            })?;
        let written = self.write_layer(layer, checkpoint)?;
        // RocksDB holds the values now: later reads that miss the newer layers find
        // them in the cache.
        let layer = self.pending.pop_oldest_frozen().unwrap_or_default();
        for (store, entries) in layer.into_stores() {
            for (key, value) in entries {
                self.values
                    .insert(self.values_generation, store, key, value);
            }
        }
        Ok(written)
    }

    /// Writes every pending change, oldest layer first, and the checkpoint: freezes the
    /// open layer and commits the frozen ones in order (all of them in one `WriteBatch`
    /// when only the open layer was pending, the usual case). Returns the bytes of keys
    /// and values written.
    pub fn commit_pending(&mut self, checkpoint: &Checkpoint) -> Result<u64, StateError> {
        self.freeze_pending();
        let mut written = 0;
        while self.frozen_layers() > 0 {
            written += self.commit_oldest_frozen(checkpoint)?;
        }
        Ok(written)
    }

    /// Drops every pending change, frozen or not (their batches will be reprocessed
    /// after a restart).
    pub fn discard_pending(&mut self) {
        self.pending.clear();
    }

    /// Restore path: writes `changes` (`None` value = delete) and the checkpoint directly in
    /// one `WriteBatch`, bypassing the overlay, which must be empty. Returns the bytes of keys
    /// and values written. Panics if a `StoreId` was not issued by this `TaskDb`.
    pub fn apply_restored(
        &mut self,
        changes: impl IntoIterator<Item = (StoreId, Bytes, Option<Bytes>)>,
        checkpoint: &Checkpoint,
    ) -> Result<u64, StateError> {
        let pending = self.pending.len();
        if pending > 0 {
            return Err(StateError::PendingChanges {
                path: self.path.clone(),
                pending,
            });
        }
        let cfs = (0..self.stores.len())
            .map(|store| self.cf(StoreId(store)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut batch = WriteBatch::default();
        let mut written = 0u64;
        let mut entries = 0usize;
        for (store, key, value) in changes {
            written += add_to_batch(&mut batch, cfs[store.0], &key, value.as_deref());
            entries += 1;
        }
        // What the cache holds for this database may be stale once these are written.
        self.values_generation = ValueCache::new_generation();
        self.write_with_checkpoint(batch, checkpoint, entries)?;
        Ok(written)
    }

    /// Writes `checkpoint` alone and flushes, so it is durable before anything is written
    /// under it (a task's new epoch after a restore or a repair). The overlay must be
    /// empty, as for [`apply_restored`](Self::apply_restored).
    pub fn persist_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), StateError> {
        self.apply_restored(std::iter::empty(), checkpoint)?;
        self.flush()
    }

    /// Flushes the memtables of every store and the checkpoint, atomically, so a clean
    /// shutdown needs no replay. Not called on drop (RocksDB itself flushes on close).
    pub fn flush(&self) -> Result<(), StateError> {
        let mut cfs = (0..self.stores.len())
            .map(|store| self.cf(StoreId(store)))
            .collect::<Result<Vec<_>, _>>()?;
        cfs.push(self.meta_cf()?);
        let mut options = FlushOptions::default();
        options.set_wait(true);
        self.db
            .flush_cfs_opt(&cfs, &options)
            .map_err(|source| StateError::Flush {
                path: self.path.clone(),
                source,
            })
    }

    /// The current value of `key`: the pending layers first (newest first), then the value
    /// cache, then RocksDB.
    pub fn get_raw(&self, store: StoreId, key: &[u8]) -> Result<Option<Bytes>, StateError> {
        self.read(store, key, || Bytes::copy_from_slice(key))
            .map(|(value, _)| value)
    }

    /// [`TaskDb::get_raw`], saying where the value was found. A RocksDB read is cached
    /// under `owned_key()` (the key as `Bytes`, made only then: a caller that already
    /// holds it passes a clone).
    pub(crate) fn read(
        &self,
        store: StoreId,
        key: &[u8],
        owned_key: impl FnOnce() -> Bytes,
    ) -> Result<(Option<Bytes>, ReadFrom), StateError> {
        if let Some(pending) = self.pending.get(store.0, key) {
            return Ok((pending.clone(), ReadFrom::Overlay));
        }
        if let Some(cached) = self.values.get(self.values_generation, store.0, key) {
            return Ok((cached, ReadFrom::ValueCache));
        }
        let cf = self.cf(store)?;
        let stored = self
            .db
            .get_cf(cf, key)
            .map_err(|source| self.read_error(store, key_string(key), source))?
            .map(Bytes::from);
        self.values
            .insert(self.values_generation, store.0, owned_key(), stored.clone());
        Ok((stored, ReadFrom::RocksDb))
    }

    /// Every live (key, value) of a store in key order, pending changes merged.
    pub fn scan_all(&self, store: StoreId) -> Result<Vec<(Bytes, Bytes)>, StateError> {
        self.read_live_range(store, &[], None, false)
    }

    /// RocksDB's size estimates for a store, not counting the overlay.
    pub fn store_sizes(&self, store: StoreId) -> Result<StoreSizes, StateError> {
        let cf = self.cf(store)?;
        let property = |name: &'static str| {
            self.db
                .property_int_value_cf(cf, name)
                .map(Option::unwrap_or_default)
                .map_err(|source| StateError::Property {
                    path: self.path.clone(),
                    store: self.store_name(store).to_owned(),
                    property: name,
                    source,
                })
        };
        Ok(StoreSizes {
            keys: property("rocksdb.estimate-num-keys")?,
            live_data_bytes: property("rocksdb.estimate-live-data-size")?,
            memtable_bytes: property("rocksdb.cur-size-all-mem-tables")?,
        })
    }

    /// Live entries of `store` with `lower <= key < upper` (no upper bound if `None`), in key
    /// order, the pending layers merged over RocksDB. `fill_cache: false` keeps a one-off full scan
    /// from evicting the working set.
    pub(crate) fn read_live_range(
        &self,
        store: StoreId,
        lower: &[u8],
        upper: Option<&[u8]>,
        fill_cache: bool,
    ) -> Result<Vec<(Bytes, Bytes)>, StateError> {
        let cf = self.cf(store)?;
        let mut options = ReadOptions::default();
        options.fill_cache(fill_cache);
        options.set_iterate_lower_bound(lower);
        if let Some(upper) = upper {
            options.set_iterate_upper_bound(upper);
        }
        let stored = self
            .db
            .iterator_cf_opt(cf, options, IteratorMode::From(lower, Direction::Forward))
            .map(|entry| entry.map(|(k, v)| (Bytes::from(k), Bytes::from(v))));
        self.pending
            .merge_range(stored, store.0, lower, upper)
            .map_err(|source| {
                let range = match upper {
                    Some(upper) => format!("range [{}, {})", KeyDisplay(lower), KeyDisplay(upper)),
                    None => format!("range [{}, end)", KeyDisplay(lower)),
                };
                self.read_error(store, range, source)
            })
    }

    /// Writes one layer and the checkpoint in one `WriteBatch`; the bytes of keys and
    /// values written.
    fn write_layer(&self, layer: &Overlay, checkpoint: &Checkpoint) -> Result<u64, StateError> {
        let mut batch = WriteBatch::default();
        let mut written = 0u64;
        for (store, entries) in layer.stores() {
            let cf = self.cf(StoreId(store))?;
            for (key, value) in entries {
                written += add_to_batch(&mut batch, cf, key, value.as_deref());
            }
        }
        self.write_with_checkpoint(batch, checkpoint, layer.len())?;
        Ok(written)
    }

    fn write_with_checkpoint(
        &self,
        mut batch: WriteBatch,
        checkpoint: &Checkpoint,
        entries: usize,
    ) -> Result<(), StateError> {
        batch.put_cf(self.meta_cf()?, CHECKPOINT_KEY, checkpoint.encode());
        self.db
            .write_opt(batch, &self.write_options)
            .map_err(|source| StateError::Write {
                path: self.path.clone(),
                entries,
                source,
            })
    }

    fn cf(&self, store: StoreId) -> Result<&ColumnFamily, StateError> {
        let name = self.store_name(store);
        self.db
            .cf_handle(name)
            .ok_or_else(|| StateError::MissingColumnFamily {
                path: self.path.clone(),
                store: name.to_owned(),
            })
    }

    fn meta_cf(&self) -> Result<&ColumnFamily, StateError> {
        self.db
            .cf_handle(META_CF)
            .ok_or_else(|| StateError::MissingColumnFamily {
                path: self.path.clone(),
                store: META_CF.to_owned(),
            })
    }

    fn read_error(&self, store: StoreId, key: String, source: rocksdb::Error) -> StateError {
        StateError::Read {
            path: self.path.clone(),
            store: self.store_name(store).to_owned(),
            key,
            source,
        }
    }
}

impl Drop for TaskDb {
    /// Takes the database away from readers (waiting for their reads in flight), so it
    /// closes with this `TaskDb` and its directory can be opened again at once.
    fn drop(&mut self) {
        reader::close(&self.readers);
    }
}

impl fmt::Debug for TaskDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskDb")
            .field("path", &self.path)
            .field("stores", &self.stores)
            .field("pending", &self.pending.len())
            .field("frozen_layers", &self.pending.frozen_layers())
            .finish_non_exhaustive()
    }
}

/// Adds a put (or a delete for `None`) and returns the bytes it writes.
fn add_to_batch(
    batch: &mut WriteBatch,
    cf: &ColumnFamily,
    key: &[u8],
    value: Option<&[u8]>,
) -> u64 {
    match value {
        Some(value) => {
            batch.put_cf(cf, key, value);
            (key.len() + value.len()) as u64
        }
        None => {
            batch.delete_cf(cf, key);
            key.len() as u64
        }
    }
}

fn validate_store_names(path: &Path, stores: &[&str]) -> Result<(), StateError> {
    let mut seen = BTreeSet::new();
    for name in stores {
        let reason = if name.is_empty() {
            "empty"
        } else if *name == rocksdb::DEFAULT_COLUMN_FAMILY_NAME || *name == META_CF {
            "reserved"
        } else if !seen.insert(*name) {
            "given twice"
        } else {
            continue;
        };
        return Err(StateError::InvalidStoreName {
            path: path.to_owned(),
            name: (*name).to_owned(),
            reason,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;

impl TaskDb {
    /// Live entries of `store` whose key starts with `prefix`, in key order, the overlay
    /// merged over RocksDB (for read-only replicas, which have no record scope).
    pub fn scan_prefix_raw(
        &self,
        store: StoreId,
        prefix: &[u8],
    ) -> Result<Vec<(Bytes, Bytes)>, StateError> {
        let end = crate::overlay::prefix_end(prefix);
        self.read_live_range(store, prefix, end.as_deref(), true)
    }
}
