//! [`StateReaders`]: the registry of read handles ([`TaskDbReader`]) on the committed
//! state of this instance, for code outside the data path (queries). A task is listed
//! from the moment it is restored and ready until it closes; a global replica for as
//! long as the runtime runs. A task this instance owns but is opening, restoring or
//! reopening after a failure is not listed, so an answer is never read from half a state.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use weir_state::TaskDbReader;

/// Shared by the runtime, which registers, and any number of readers; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct StateReaders {
    inner: Arc<RwLock<Registered>>,
}

#[derive(Debug, Default)]
struct Registered {
    /// By (sub-topology, partition).
    tasks: BTreeMap<(String, i32), TaskDbReader>,
    /// By store name.
    globals: BTreeMap<String, TaskDbReader>,
}

impl StateReaders {
    /// The reader of sub-topology `subtopology` partition `partition`, if this instance
    /// runs that task and it is ready.
    pub fn task(&self, subtopology: &str, partition: i32) -> Option<TaskDbReader> {
        self.read()
            .tasks
            .get(&(subtopology.to_owned(), partition))
            .filter(|reader| reader.is_open())
            .cloned()
    }

    /// The reader of this instance's replica of the global store `store`.
    pub fn global(&self, store: &str) -> Option<TaskDbReader> {
        self.read().globals.get(store).cloned()
    }

    /// The tasks listed now, `(sub-topology, partition)`, in order.
    pub fn tasks(&self) -> Vec<(String, i32)> {
        self.read().tasks.keys().cloned().collect()
    }

    /// Lists a task's reader (the runtime does, once the task is ready).
    pub fn register_task(&self, subtopology: &str, partition: i32, reader: TaskDbReader) {
        self.write()
            .tasks
            .insert((subtopology.to_owned(), partition), reader);
    }

    /// Takes a task off the list (the runtime does, as the task closes).
    pub fn deregister_task(&self, subtopology: &str, partition: i32) {
        self.write()
            .tasks
            .remove(&(subtopology.to_owned(), partition));
    }

    /// Lists the reader of a global replica (the runtime does, as it opens them).
    pub fn register_global(&self, store: &str, reader: TaskDbReader) {
        self.write().globals.insert(store.to_owned(), reader);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registered> {
        // The map stays consistent whatever panicked while holding the lock.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Registered> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use weir_state::{StateOptions, StateResources, TaskDb};

    use super::*;

    fn resources() -> StateResources {
        StateResources::new(&StateOptions {
            block_cache_bytes: 8 << 20,
            write_buffer_bytes: 8 << 20,
            max_open_files: 64,
            value_cache_bytes: 1 << 20,
        })
    }

    #[test]
    fn tasks_are_found_while_registered_and_open() {
        let dir = tempfile::tempdir().expect("dir");
        let resources = resources();
        let db = TaskDb::open(&dir.path().join("core-3"), &["s"], &resources).expect("open");
        let replica = TaskDb::open(&dir.path().join("global-m"), &["m"], &resources).expect("open");
        let readers = StateReaders::default();
        assert!(readers.task("core", 3).is_none());
        readers.register_task("core", 3, db.reader());
        readers.register_global("m", replica.reader());
        let shared = readers.clone();
        assert!(shared.task("core", 3).is_some());
        assert!(shared.task("core", 4).is_none());
        assert!(shared.task("other", 3).is_none());
        assert!(shared.global("m").is_some());
        assert_eq!(shared.tasks(), [("core".to_owned(), 3)]);
        // A task whose database closed is not offered, even before it is deregistered.
        drop(db);
        assert!(shared.task("core", 3).is_none());
        readers.deregister_task("core", 3);
        assert!(shared.tasks().is_empty());
    }
}
