//! Metadata rules of the workflow core that need no I/O: how a put relates to the
//! versions already stored.

pub mod versioning;
