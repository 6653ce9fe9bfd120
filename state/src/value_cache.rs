//! The value cache: committed values of recently read and written keys, shared by every
//! [`TaskDb`](crate::TaskDb) of a process and bounded in bytes
//! ([`StateOptions::value_cache_bytes`](crate::StateOptions::value_cache_bytes)), so a
//! hot key is read with a hash lookup instead of a RocksDB point lookup (a memtable
//! skiplist search and more, per read).
//!
//! It never holds what RocksDB does not: a database fills it from its own RocksDB reads
//! and from the values its commits wrote, after the write, and takes a new generation
//! (leaving its older entries to be evicted) whenever it writes outside a commit, as a
//! restore does. So a hit is always the committed value; the overlay of uncommitted
//! changes is consulted before it.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use quick_cache::{Equivalent, Weighter};

/// Bytes counted per entry besides its key and value: the entry's fields and the
/// cache's own bookkeeping.
const ENTRY_OVERHEAD_BYTES: u64 = 64;
/// The entry size the cache sizes its tables for (it grows them as needed).
const EXPECTED_ENTRY_BYTES: usize = 128;

/// Source of generations: each is used by one database state, process-wide.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

/// One cached key: the generation of the database that read or wrote it, the store's
/// index in that database, the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    generation: u64,
    store: usize,
    key: Bytes,
}

/// A lookup without copying the key. Hashes exactly as [`CacheKey`] does: the same
/// fields in the same order, and `Bytes` hashes as its slice.
#[derive(Hash)]
struct CacheKeyRef<'a> {
    generation: u64,
    store: usize,
    key: &'a [u8],
}

impl Equivalent<CacheKey> for CacheKeyRef<'_> {
    fn equivalent(&self, cached: &CacheKey) -> bool {
        self.generation == cached.generation
            && self.store == cached.store
            && self.key == cached.key.as_ref()
    }
}

/// An entry's weight: its key and value bytes plus the overhead.
#[derive(Debug, Clone)]
struct EntryBytes;

impl Weighter<CacheKey, Option<Bytes>> for EntryBytes {
    fn weight(&self, key: &CacheKey, value: &Option<Bytes>) -> u64 {
        let value_bytes = value.as_ref().map_or(0, Bytes::len);
        (key.key.len() + value_bytes) as u64 + ENTRY_OVERHEAD_BYTES
    }
}

type Entries = quick_cache::sync::Cache<CacheKey, Option<Bytes>, EntryBytes>;

/// The process's value cache; clones share it. A capacity of 0 disables it (every
/// lookup misses, nothing is kept).
#[derive(Clone)]
pub(crate) struct ValueCache {
    entries: Option<Arc<Entries>>,
}

impl ValueCache {
    pub(crate) fn new(capacity_bytes: usize) -> Self {
        let entries = (capacity_bytes > 0).then(|| {
            Arc::new(Entries::with_weighter(
                (capacity_bytes / EXPECTED_ENTRY_BYTES).max(1),
                capacity_bytes as u64,
                EntryBytes,
            ))
        });
        Self { entries }
    }

    /// A generation no database state has used.
    pub(crate) fn new_generation() -> u64 {
        GENERATIONS.fetch_add(1, Ordering::Relaxed)
    }

    /// The committed value of `key` if cached: `Some(None)` is a key known to be absent.
    pub(crate) fn get(&self, generation: u64, store: usize, key: &[u8]) -> Option<Option<Bytes>> {
        self.entries.as_ref()?.get(&CacheKeyRef {
            generation,
            store,
            key,
        })
    }

    /// Records `key`'s committed value (`None`: absent).
    pub(crate) fn insert(&self, generation: u64, store: usize, key: Bytes, value: Option<Bytes>) {
        if let Some(entries) = &self.entries {
            entries.insert(
                CacheKey {
                    generation,
                    store,
                    key,
                },
                value,
            );
        }
    }

    /// Bytes held (keys, values and overhead).
    pub(crate) fn weight(&self) -> u64 {
        self.entries.as_ref().map_or(0, |entries| entries.weight())
    }
}

impl fmt::Debug for ValueCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValueCache")
            .field("enabled", &self.entries.is_some())
            .field("weight", &self.weight())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, RandomState};

    use super::*;

    #[test]
    fn a_borrowed_lookup_hashes_as_the_stored_key() {
        let hasher = RandomState::new();
        let stored = CacheKey {
            generation: 7,
            store: 2,
            key: Bytes::from_static(b"user-1"),
        };
        let lookup = CacheKeyRef {
            generation: 7,
            store: 2,
            key: b"user-1",
        };
        assert_eq!(hasher.hash_one(&stored), hasher.hash_one(&lookup));
        assert!(lookup.equivalent(&stored));
    }

    #[test]
    fn entries_are_kept_per_generation_and_store_and_absent_keys_are_remembered() {
        let cache = ValueCache::new(1 << 20);
        let (a, b) = (ValueCache::new_generation(), ValueCache::new_generation());
        cache.insert(
            a,
            0,
            Bytes::from_static(b"k"),
            Some(Bytes::from_static(b"1")),
        );
        cache.insert(a, 1, Bytes::from_static(b"k"), None);
        assert_eq!(cache.get(a, 0, b"k"), Some(Some(Bytes::from_static(b"1"))));
        assert_eq!(cache.get(a, 1, b"k"), Some(None));
        assert_eq!(cache.get(b, 0, b"k"), None);
        assert_eq!(cache.get(a, 0, b"other"), None);
    }

    #[test]
    fn the_capacity_bounds_the_bytes_held() {
        let cache = ValueCache::new(64 * 1024);
        let generation = ValueCache::new_generation();
        for n in 0..10_000 {
            let key = Bytes::from(format!("key-{n:05}"));
            cache.insert(generation, 0, key, Some(Bytes::from(vec![0u8; 100])));
        }
        assert!(cache.weight() <= 64 * 1024, "{}", cache.weight());
        assert!(cache.weight() > 32 * 1024, "{}", cache.weight());
    }

    #[test]
    fn a_zero_capacity_keeps_nothing() {
        let cache = ValueCache::new(0);
        let generation = ValueCache::new_generation();
        cache.insert(generation, 0, Bytes::from_static(b"k"), None);
        assert_eq!(cache.get(generation, 0, b"k"), None);
        assert_eq!(cache.weight(), 0);
    }
}
