//! The weir processor: what runs on top of the runtime in `weir-topology`.
//!
//! It owns the process-level configuration ([`config`], the `LHS_*` variables), the
//! client that sends commands and waits for their results ([`client`]), metadata spec
//! files ([`spec_file`]) and the `weir` command line's building blocks ([`cli`]). The
//! workflow core, the output topic and flows are added here as they are built; the
//! runtime underneath never learns of them.

pub mod builder;
pub mod cli;
pub mod client;
pub mod config;
pub mod core;
pub mod inspect;
pub mod lifecycle;
pub mod metadata;
pub mod spec_file;
pub mod topics;
