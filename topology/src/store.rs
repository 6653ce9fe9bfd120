//! Typed handles on stores. A handle is made once when the topology is built and names
//! a store and its value type; processors pass it to their context to read and write.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// A task-local store: read-write, backed by RocksDB, logged to
/// `{cluster}_{name}-changelog`.
#[derive(Debug)]
pub enum Local {}

/// A read-only, every-instance replica of a store, kept current by tailing the store's
/// changelog (see [`crate::global`]).
#[derive(Debug)]
pub enum Global {}

/// A handle on a store of `V` values (a prost message), local or global.
pub struct Handle<V, Scope> {
    name: Arc<str>,
    /// Position in the topology's store list (local) or global store list (global), so
    /// a task finds its store without hashing names on every access.
    pub(crate) index: usize,
    _types: PhantomData<fn() -> (V, Scope)>,
}

/// A handle on a task-local store.
pub type StoreHandle<V> = Handle<V, Local>;
/// A handle on a global store's replica.
pub type GlobalStoreHandle<V> = Handle<V, Global>;

impl<V, Scope> Handle<V, Scope> {
    pub(crate) fn new(name: Arc<str>, index: usize) -> Self {
        Self {
            name,
            index,
            _types: PhantomData,
        }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<V, Scope> Clone for Handle<V, Scope> {
    fn clone(&self) -> Self {
        Self::new(Arc::clone(&self.name), self.index)
    }
}

impl<V, Scope> fmt::Debug for Handle<V, Scope> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("name", &self.name)
            .field("index", &self.index)
            .finish()
    }
}
