//! [`StateError`], the one error type of this crate, and [`KeyDisplay`], which shows a
//! store key in messages.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong in a state store. Each message names the database path and,
/// where there is one, the store and key involved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// RocksDB refused to open (or list the column families of) a task's database.
    #[error("cannot open state db {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    /// The database on disk holds column families that are not among the requested stores.
    #[error("state db {} has unknown column families: {}", path.display(), names.join(", "))]
    UnknownColumnFamilies { path: PathBuf, names: Vec<String> },
    /// A store name that cannot be used: empty, duplicated, or reserved.
    #[error("state db {}: invalid store name {name:?}: {reason}", path.display())]
    InvalidStoreName {
        path: PathBuf,
        name: String,
        reason: &'static str,
    },
    /// The column family of a store is missing from an open database.
    #[error("state db {}: column family of store {store} is not open", path.display())]
    MissingColumnFamily { path: PathBuf, store: String },
    /// Reading a key or iterating a range of a store failed.
    #[error("cannot read store {store} key {key} in state db {}: {source}", path.display())]
    Read {
        path: PathBuf,
        store: String,
        key: String,
        #[source]
        source: rocksdb::Error,
    },
    /// A stored value is not a valid encoding of the requested message type.
    #[error("cannot decode value of store {store} key {key}: {source}")]
    Decode {
        store: String,
        key: String,
        #[source]
        source: prost::DecodeError,
    },
    /// Writing a batch (committed overlay or restored changes) failed.
    #[error("cannot write {entries} entries and the checkpoint to state db {}: {source}", path.display())]
    Write {
        path: PathBuf,
        entries: usize,
        #[source]
        source: rocksdb::Error,
    },
    /// Restored changes cannot be applied while processed changes are pending.
    #[error("state db {}: cannot apply restored changes with {pending} processed keys pending", path.display())]
    PendingChanges { path: PathBuf, pending: usize },
    /// A frozen batch was to be committed but none is frozen (a bug in the caller).
    #[error("state db {}: no frozen batch to commit", path.display())]
    NothingFrozen { path: PathBuf },
    /// Reading the stored checkpoint failed.
    #[error("cannot read the checkpoint of state db {}: {source}", path.display())]
    ReadCheckpoint {
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    /// The stored checkpoint is not valid.
    #[error("cannot decode the checkpoint of state db {}: {source}", path.display())]
    DecodeCheckpoint {
        path: PathBuf,
        #[source]
        source: prost::DecodeError,
    },
    /// Flushing memtables failed.
    #[error("cannot flush state db {}: {source}", path.display())]
    Flush {
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    /// Reading a RocksDB property of a store failed.
    #[error("cannot read property {property} of store {store} in state db {}: {source}", path.display())]
    Property {
        path: PathBuf,
        store: String,
        property: &'static str,
        #[source]
        source: rocksdb::Error,
    },
    /// A reader asked for state after the task closed its database.
    #[error("state db {} is closed (its task stopped or is reopening)", path.display())]
    Closed { path: PathBuf },
    /// Deleting a state directory failed.
    #[error("cannot delete state db {}: {source}", path.display())]
    Destroy {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Shows a key for an error message: printable ASCII as a quoted string, anything else in
/// hex; long keys are cut after [`KeyDisplay::MAX_BYTES`] bytes.
#[derive(Debug, Clone, Copy)]
pub struct KeyDisplay<'a>(pub &'a [u8]);

impl KeyDisplay<'_> {
    /// Bytes shown before the key is cut.
    pub const MAX_BYTES: usize = 128;
}

impl fmt::Display for KeyDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.0[..self.0.len().min(Self::MAX_BYTES)];
        if shown.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            write!(f, "\"{}\"", String::from_utf8_lossy(shown))?;
        } else {
            f.write_str("0x")?;
            for b in shown {
                write!(f, "{b:02x}")?;
            }
        }
        if shown.len() < self.0.len() {
            write!(f, "... ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

pub(crate) fn key_string(key: &[u8]) -> String {
    KeyDisplay(key).to_string()
}
