//! [`TaskDbReader`]: a cloneable, thread-safe handle that reads a [`TaskDb`]'s committed
//! state (what RocksDB holds, never the overlay of a batch in progress) from outside the
//! task, for example to answer queries. It never keeps the database open: when the
//! `TaskDb` is dropped it waits for reads in flight, closes the database, and every later
//! read answers [`StateError::Closed`], so the task can reopen its directory at once.
//!
//! [`TaskDb`]: crate::TaskDb

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use rocksdb::{ColumnFamily, DB, Direction, IteratorMode, ReadOptions};

use crate::StateError;
use crate::error::{KeyDisplay, key_string};
use crate::overlay::prefix_end;

/// The database as readers see it: `Some` while the `TaskDb` is open. Reads hold the read
/// lock for their duration; closing takes the write lock, so it waits for them.
pub(crate) type ReaderSlot = Arc<RwLock<Option<Arc<DB>>>>;

/// Reads the committed state of one task's stores; see the module doc.
#[derive(Debug, Clone)]
pub struct TaskDbReader {
    slot: ReaderSlot,
    path: Arc<PathBuf>,
    stores: Arc<[String]>,
}

impl TaskDbReader {
    pub(crate) fn new(slot: ReaderSlot, path: &Path, stores: &[String]) -> Self {
        Self {
            slot,
            path: Arc::new(path.to_owned()),
            stores: stores.into(),
        }
    }

    /// The directory of the database read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The names of the stores it can read.
    pub fn store_names(&self) -> &[String] {
        &self.stores
    }

    /// Whether the task still has its database open.
    pub fn is_open(&self) -> bool {
        self.slot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// The committed value of `key` in `store`.
    pub fn get(&self, store: &str, key: &[u8]) -> Result<Option<Bytes>, StateError> {
        self.with_store(store, |db, cf| {
            db.get_cf(cf, key)
                .map(|found| found.map(Bytes::from))
                .map_err(|source| self.read_error(store, key_string(key), source))
        })
    }

    /// Every committed (key, value) of `store` whose key starts with `prefix`, in key
    /// order, read from one consistent view of the store.
    pub fn scan_prefix(
        &self,
        store: &str,
        prefix: &[u8],
    ) -> Result<Vec<(Bytes, Bytes)>, StateError> {
        self.with_store(store, |db, cf| {
            let mut options = ReadOptions::default();
            options.set_iterate_lower_bound(prefix);
            if let Some(end) = prefix_end(prefix) {
                options.set_iterate_upper_bound(end);
            }
            db.iterator_cf_opt(cf, options, IteratorMode::From(prefix, Direction::Forward))
                .map(|entry| entry.map(|(k, v)| (Bytes::from(k), Bytes::from(v))))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| {
                    self.read_error(store, format!("prefix {}", KeyDisplay(prefix)), source)
                })
        })
    }

    /// Runs `read` on the open database and the store's column family, holding the read
    /// lock so the database cannot close under it.
    fn with_store<T>(
        &self,
        store: &str,
        read: impl FnOnce(&DB, &ColumnFamily) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let guard = self.slot.read().unwrap_or_else(PoisonError::into_inner);
        let db = guard.as_deref().ok_or_else(|| StateError::Closed {
            path: self.path.to_path_buf(),
        })?;
        let cf = self
            .stores
            .iter()
            .any(|name| name == store)
            .then(|| db.cf_handle(store))
            .flatten()
            .ok_or_else(|| StateError::MissingColumnFamily {
                path: self.path.to_path_buf(),
                store: store.to_owned(),
            })?;
        read(db, cf)
    }

    fn read_error(&self, store: &str, key: String, source: rocksdb::Error) -> StateError {
        StateError::Read {
            path: self.path.to_path_buf(),
            store: store.to_owned(),
            key,
            source,
        }
    }
}

/// Closes the readers' view: waits for reads in flight and drops their database handle.
pub(crate) fn close(slot: &ReaderSlot) {
    let taken = slot.write().unwrap_or_else(PoisonError::into_inner).take();
    drop(taken);
}

#[cfg(test)]
mod tests {
    use crate::test_support::{TestResult, encoded, open, run};
    use crate::{Checkpoint, StateError};

    #[test]
    fn a_reader_sees_committed_state_only() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (mut db, a, b) = open(dir.path())?;
        let reader = db.reader();
        let mut record = db.record();
        record.put(a, b"t\0run-1\0", &run("one"));
        record.put(a, b"t\0run-1\0x", &run("one-x"));
        record.put(a, b"t\0run-10\0", &run("ten"));
        record.put(b, b"t\0run-1\0", &run("b"));
        record.finish()?;
        // Processed but not committed: the overlay is the task's own business.
        assert_eq!(reader.get("a", b"t\0run-1\0")?, None);
        db.commit_pending(&Checkpoint::default())?;
        assert_eq!(reader.get("a", b"t\0run-1\0")?, Some(encoded("one")));
        let scanned = reader.scan_prefix("a", b"t\0run-1\0")?;
        assert_eq!(
            scanned.iter().map(|(k, _)| k.as_ref()).collect::<Vec<_>>(),
            [&b"t\0run-1\0"[..], &b"t\0run-1\0x"[..]]
        );
        assert_eq!(scanned[1].1, encoded("one-x"));
        assert_eq!(reader.scan_prefix("b", b"t\0")?.len(), 1);
        assert!(matches!(
            reader.get("c", b"k"),
            Err(StateError::MissingColumnFamily { .. })
        ));
        Ok(())
    }

    #[test]
    fn a_reader_from_another_thread_outlives_the_db_without_holding_it_open() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (mut db, a, _) = open(dir.path())?;
        let mut record = db.record();
        record.put(a, b"k", &run("v"));
        record.finish()?;
        db.commit_pending(&Checkpoint::default())?;
        let reader = db.reader();
        let copy = reader.clone();
        let read = std::thread::spawn(move || copy.get("a", b"k"))
            .join()
            .map_err(|_| "reader thread panicked")??;
        assert_eq!(read, Some(encoded("v")));
        assert!(reader.is_open());
        drop(db);
        assert!(!reader.is_open());
        assert!(matches!(
            reader.get("a", b"k"),
            Err(StateError::Closed { .. })
        ));
        // The directory can be opened again at once (RocksDB's lock is released), and a
        // reader of the old instance does not see the new one.
        let (db, _, _) = open(dir.path())?;
        assert!(matches!(
            reader.get("a", b"k"),
            Err(StateError::Closed { .. })
        ));
        assert_eq!(db.reader().get("a", b"k")?, Some(encoded("v")));
        Ok(())
    }
}
