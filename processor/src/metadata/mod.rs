//! Metadata rules of the workflow core that need no I/O: whether a spec holds
//! together, and how a put relates to the versions already stored.

pub mod validation;
pub mod versioning;
