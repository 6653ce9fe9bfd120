//! The weir processor: what runs on top of the runtime in `weir-topology`.
//!
//! It owns the process-level configuration ([`config`], the `LHS_*` variables) and the
//! `weir` command line's building blocks ([`cli`]), and the task worker library
//! ([`worker`]) programs use to serve a TaskDef. The workflow core, the output topic
//! and flows are added here as they are built; the runtime underneath never learns of
//! them.

pub mod builder;
pub mod cli;
pub mod config;
pub mod core;
pub mod lifecycle;
pub mod metadata;
pub mod topics;
pub mod worker;
