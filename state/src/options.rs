//! Memory and file limits for every task's RocksDB: [`StateOptions`] says how much, and
//! [`StateResources`] holds the block cache, write buffer manager and value cache all
//! `TaskDb`s share.

use std::fmt;

use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, Options, WriteBufferManager};

use crate::value_cache::ValueCache;

/// Process-wide limits for state stores. One [`StateResources`] built from them is shared by
/// every `TaskDb` of the process, so adding tasks does not add memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateOptions {
    /// Capacity of the shared LRU block cache (data, index and filter blocks).
    pub block_cache_bytes: usize,
    /// Limit on the memtables of all stores of all tasks together.
    pub write_buffer_bytes: usize,
    /// Open SST files kept per task database (`-1` keeps them all open).
    pub max_open_files: i32,
    /// Capacity of the value cache of committed values shared by every store (keys, values
    /// and about 64 bytes of overhead per entry); 0 turns it off.
    pub value_cache_bytes: usize,
}

impl Default for StateOptions {
    fn default() -> Self {
        Self {
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 64 << 20,
            max_open_files: 256,
            value_cache_bytes: 32 << 20,
        }
    }
}

/// Largest memtable of one store; the write buffer manager bounds the total.
const MAX_MEMTABLE_BYTES: usize = 16 << 20;
/// Smallest memtable of one store, so a tiny total limit does not flush on every batch.
const MIN_MEMTABLE_BYTES: usize = 1 << 20;

/// The block cache and write buffer manager shared by every `TaskDb` of a process.
/// Cheap to clone: clones share the same cache and limit.
#[derive(Clone)]
pub struct StateResources {
    options: StateOptions,
    cache: Cache,
    write_buffers: WriteBufferManager,
    pub(crate) values: ValueCache,
}

impl StateResources {
    /// Builds the shared cache and write buffer manager. Writers are not stalled when the
    /// write buffer limit is reached; RocksDB flushes the largest memtables instead.
    pub fn new(options: &StateOptions) -> Self {
        Self {
            options: options.clone(),
            cache: Cache::new_lru_cache(options.block_cache_bytes),
            write_buffers: WriteBufferManager::new_write_buffer_manager(
                options.write_buffer_bytes,
                false,
            ),
            values: ValueCache::new(options.value_cache_bytes),
        }
    }

    /// The options these resources were built from.
    pub fn options(&self) -> &StateOptions {
        &self.options
    }

    /// Database-wide options: WAL-free crash consistency comes from `atomic_flush`, the
    /// memory bounds from the shared write buffer manager.
    pub(crate) fn db_options(&self) -> Options {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_atomic_flush(true);
        opts.set_write_buffer_manager(&self.write_buffers);
        opts.set_max_open_files(self.options.max_open_files);
        opts.set_keep_log_file_num(4);
        opts.set_max_log_file_size(4 << 20);
        self.apply_store_options(&mut opts);
        opts
    }

    /// Options of one column family (a store, or the meta family).
    pub(crate) fn store_options(&self) -> Options {
        let mut opts = Options::default();
        self.apply_store_options(&mut opts);
        opts
    }

    fn apply_store_options(&self, opts: &mut Options) {
        let memtable =
            (self.options.write_buffer_bytes / 4).clamp(MIN_MEMTABLE_BYTES, MAX_MEMTABLE_BYTES);
        opts.set_write_buffer_size(memtable);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_bottommost_compression_type(DBCompressionType::Lz4);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        // Index and filter blocks count against the shared cache too, so it really bounds reads.
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        // Most reads are point lookups, many of absent keys: a bloom filter skips those files.
        table.set_bloom_filter(10.0, false);
        opts.set_block_based_table_factory(&table);
    }
}

impl fmt::Debug for StateResources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateResources")
            .field("options", &self.options)
            .field("write_buffer_usage", &self.write_buffers.get_usage())
            .field("values", &self.values)
            .finish_non_exhaustive()
    }
}
