//! Helpers shared by the unit tests: small resources, a temporary database, a value type.

use std::path::Path;

use bytes::Bytes;
use weir_proto::WfRunId;

use crate::{StateOptions, StateResources, StoreId, TaskDb};

pub(crate) type TestResult = Result<(), Box<dyn std::error::Error>>;

pub(crate) fn resources() -> StateResources {
    StateResources::new(&StateOptions {
        block_cache_bytes: 8 << 20,
        write_buffer_bytes: 8 << 20,
        max_open_files: 64,
        value_cache_bytes: 1 << 20,
    })
}

/// Opens a database with the stores "a" and "b".
pub(crate) fn open(path: &Path) -> Result<(TaskDb, StoreId, StoreId), Box<dyn std::error::Error>> {
    let db = TaskDb::open(path, &["a", "b"], &resources())?;
    let a = db.store_id("a").ok_or("no store a")?;
    let b = db.store_id("b").ok_or("no store b")?;
    Ok((db, a, b))
}

pub(crate) fn run(id: &str) -> WfRunId {
    WfRunId { id: id.to_owned() }
}

pub(crate) fn encoded(id: &str) -> Bytes {
    Bytes::from(prost::Message::encode_to_vec(&run(id)))
}
