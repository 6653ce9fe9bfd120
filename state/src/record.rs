//! [`RecordState`]: what one record sees and changes. Every key is read from storage at most
//! once per record and cached with its original bytes; at the end only the keys whose bytes
//! differ from their original make the change set.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;

use crate::db::ReadFrom;
use crate::error::key_string;
use crate::overlay::{key_bounds, prefix_end};
use crate::{Change, ChangeSet, StateError, StoreId, TaskDb};

/// One key as this record sees it.
#[derive(Debug)]
struct Cached {
    /// The bytes before the record, as read from the overlay or RocksDB.
    original: Option<Bytes>,
    /// The bytes now.
    current: Option<Bytes>,
}

/// The storage reads of one record.
#[derive(Debug, Default)]
struct ReadCounts {
    /// Point reads of the overlay, the value cache or RocksDB, and scans.
    reads: u64,
    /// Point reads of `reads` the value cache answered.
    value_cache_hits: u64,
}

impl ReadCounts {
    /// Reads `key`'s bytes as they were before the record (the overlay, the value cache,
    /// or RocksDB) and counts the read; returns the key as `Bytes` for the record cache
    /// too, copied once.
    fn read_original(
        &mut self,
        db: &TaskDb,
        store: StoreId,
        key: &[u8],
    ) -> Result<(Bytes, Option<Bytes>), StateError> {
        let key = Bytes::copy_from_slice(key);
        let (original, from) = db.read(store, &key, || key.clone())?;
        self.reads += 1;
        self.value_cache_hits += u64::from(from == ReadFrom::ValueCache);
        Ok((key, original))
    }
}

/// One record's view of a [`TaskDb`]: reads go through a per-record cache over the overlay
/// over RocksDB, writes stay in the cache until [`finish`](Self::finish). Dropping it without
/// `finish` discards everything it did (processor error or panic).
pub struct RecordState<'a> {
    db: &'a mut TaskDb,
    cache: BTreeMap<StoreId, BTreeMap<Bytes, Cached>>,
    reads: ReadCounts,
    writes: u64,
    /// The first storage error met by a write; `finish` returns it.
    failure: Option<StateError>,
}

impl<'a> RecordState<'a> {
    pub(crate) fn new(db: &'a mut TaskDb) -> Self {
        Self {
            db,
            cache: BTreeMap::new(),
            reads: ReadCounts::default(),
            writes: 0,
            failure: None,
        }
    }
}

impl RecordState<'_> {
    /// Reads and decodes a value through the record cache. A value that does not decode is
    /// an error naming the store and key.
    pub fn get<M: prost::Message + Default>(
        &mut self,
        store: StoreId,
        key: &[u8],
    ) -> Result<Option<M>, StateError> {
        self.get_raw(store, key)?
            .map(|value| self.decode(store, key, value))
            .transpose()
    }

    /// Reads a value's bytes through the record cache: the first read of a key goes to the
    /// overlay or RocksDB and is cached as the key's original; later reads hit the cache.
    pub fn get_raw(&mut self, store: StoreId, key: &[u8]) -> Result<Option<Bytes>, StateError> {
        let cache = self.cache.entry(store).or_default();
        if let Some(cached) = cache.get(key) {
            return Ok(cached.current.clone());
        }
        let (key, original) = self.reads.read_original(self.db, store, key)?;
        cache.insert(
            key,
            Cached {
                original: original.clone(),
                current: original.clone(),
            },
        );
        Ok(original)
    }

    pub fn put<M: prost::Message>(&mut self, store: StoreId, key: &[u8], value: &M) {
        self.write(store, key, Some(Bytes::from(value.encode_to_vec())));
    }

    pub fn put_raw(&mut self, store: StoreId, key: &[u8], value: Bytes) {
        self.write(store, key, Some(value));
    }

    pub fn delete(&mut self, store: StoreId, key: &[u8]) {
        self.write(store, key, None);
    }

    /// All live entries whose key starts with `prefix`, in key order, as this record sees
    /// them: record cache over overlay over RocksDB, deleted keys excluded. Every entry
    /// returned enters the cache with its original bytes, so putting the same bytes back is
    /// not a change. A scan counts as one read.
    pub fn scan_prefix<M: prost::Message + Default>(
        &mut self,
        store: StoreId,
        prefix: &[u8],
    ) -> Result<Vec<(Bytes, M)>, StateError> {
        let end = prefix_end(prefix);
        let entries = self.scan_raw(store, prefix, end.as_deref())?;
        self.decode_all(store, entries)
    }

    /// Same as [`scan_prefix`](Self::scan_prefix) for the half-open key range `[from, to)`.
    pub fn scan_range<M: prost::Message + Default>(
        &mut self,
        store: StoreId,
        from: &[u8],
        to: &[u8],
    ) -> Result<Vec<(Bytes, M)>, StateError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let entries = self.scan_raw(store, from, Some(to))?;
        self.decode_all(store, entries)
    }

    /// Number of reads that went to the overlay or RocksDB (cache misses, including the
    /// lookup of a key's original bytes on its first write, and one per scan).
    pub fn reads(&self) -> u64 {
        self.reads.reads
    }

    /// Number of [`reads`](Self::reads) the process's value cache answered (committed
    /// values; RocksDB was not read).
    pub fn value_cache_hits(&self) -> u64 {
        self.reads.value_cache_hits
    }

    /// Number of put and delete calls.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Ends the record: the change set holds the keys whose current bytes differ from their
    /// original bytes (a put of identical bytes, or a delete of an absent key, is not a
    /// change), sorted by (store, key), and those changes move into the `TaskDb` overlay.
    /// A record that only read returns an empty change set.
    ///
    /// Fails, changing nothing, if reading the original bytes of a written key failed.
    pub fn finish(mut self) -> Result<ChangeSet, StateError> {
        if let Some(failure) = self.failure.take() {
            return Err(failure);
        }
        let changes = self.changes();
        for change in &changes {
            self.db
                .pending
                .insert(change.store.0, change.key.clone(), change.value.clone());
        }
        Ok(changes)
    }

    /// Records a put (`Some`) or delete (`None`). The first touch of a key reads its original
    /// bytes so `finish` can tell whether it changed.
    fn write(&mut self, store: StoreId, key: &[u8], value: Option<Bytes>) {
        self.writes += 1;
        let cache = self.cache.entry(store).or_default();
        if let Some(cached) = cache.get_mut(key) {
            cached.current = value;
            return;
        }
        match self.reads.read_original(self.db, store, key) {
            Ok((key, original)) => {
                cache.insert(
                    key,
                    Cached {
                        original,
                        current: value,
                    },
                );
            }
            Err(e) => {
                self.failure.get_or_insert(e);
            }
        }
    }

    /// Live entries with `lower <= key < upper` as this record sees them; caches every entry
    /// read from storage that the record has not touched yet.
    fn scan_raw(
        &mut self,
        store: StoreId,
        lower: &[u8],
        upper: Option<&[u8]>,
    ) -> Result<Vec<(Bytes, Bytes)>, StateError> {
        let stored = self.db.read_live_range(store, lower, upper, true)?;
        self.reads.reads += 1;
        let cache = self.cache.entry(store).or_default();
        for (key, value) in stored {
            cache.entry(key).or_insert_with(|| Cached {
                original: Some(value.clone()),
                current: Some(value),
            });
        }
        Ok(cache
            .range::<[u8], _>(key_bounds(lower, upper))
            .filter_map(|(key, cached)| Some((key.clone(), cached.current.clone()?)))
            .collect())
    }

    fn decode_all<M: prost::Message + Default>(
        &self,
        store: StoreId,
        entries: Vec<(Bytes, Bytes)>,
    ) -> Result<Vec<(Bytes, M)>, StateError> {
        entries
            .into_iter()
            .map(|(key, value)| {
                let decoded = self.decode(store, &key, value)?;
                Ok((key, decoded))
            })
            .collect()
    }

    fn decode<M: prost::Message + Default>(
        &self,
        store: StoreId,
        key: &[u8],
        value: Bytes,
    ) -> Result<M, StateError> {
        M::decode(value).map_err(|source| StateError::Decode {
            store: self.db.store_name(store).to_owned(),
            key: key_string(key),
            source,
        })
    }
}

impl fmt::Debug for RecordState<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordState")
            .field("db", &self.db.path())
            .field(
                "cached",
                &self.cache.values().map(BTreeMap::len).sum::<usize>(),
            )
            .field("reads", &self.reads)
            .field("writes", &self.writes)
            .field("failure", &self.failure)
            .finish()
    }
}

#[cfg(test)]
mod tests;

impl RecordState<'_> {
    /// The change set this record has made so far, exactly as [`finish`](Self::finish)
    /// would return it, without ending the record (so a processor can forward what it
    /// changed).
    pub fn changes(&self) -> ChangeSet {
        let changes = self
            .cache
            .iter()
            .flat_map(|(store, entries)| {
                entries
                    .iter()
                    .filter(|(_, c)| c.current != c.original)
                    .map(|(key, cached)| Change {
                        store: *store,
                        key: key.clone(),
                        previous: cached.original.clone(),
                        value: cached.current.clone(),
                    })
            })
            .collect();
        ChangeSet::from_sorted(changes)
    }

    /// The name of a store of this record's task.
    pub fn store_name(&self, id: StoreId) -> &str {
        self.db.store_name(id)
    }
}
