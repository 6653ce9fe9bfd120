//! Opening the local RocksDB of a task or a global replica. An unreadable directory is
//! deleted and opened empty; the caller then rebuilds it from the changelog.

use std::path::Path;

use weir_state::{StateResources, TaskDb};

use crate::error::RuntimeError;

/// Opens `path` with `stores`, or, when it cannot be read, deletes it and opens it
/// empty. `owner` names the task or replica in the log line.
pub(crate) fn open_or_rebuild(
    owner: &str,
    path: &Path,
    stores: &[&str],
    resources: &StateResources,
) -> Result<TaskDb, RuntimeError> {
    match TaskDb::open(path, stores, resources) {
        Ok(db) => Ok(db),
        Err(error) => {
            tracing::warn!(owner, path = %path.display(), %error, "state directory unreadable; rebuilding it from the changelog");
            TaskDb::destroy(path)?;
            Ok(TaskDb::open(path, stores, resources)?)
        }
    }
}
