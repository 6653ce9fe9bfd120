//! Rules of the workflow core that need no I/O: whether a spec holds together, how a
//! put relates to the versions already stored, and what edges do with values.

pub mod typing;
pub mod validation;
pub mod values;
pub mod versioning;
