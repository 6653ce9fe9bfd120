//! The weir processor: what runs on top of the runtime in `weir-topology`.
//!
//! It owns the process-level configuration ([`config`], the `LHS_*` variables), the
//! workflow core ([`core`]: the topology, its metadata and execution processors), the
//! client that sends commands and waits for their results ([`client`]), the task
//! worker library programs use to serve a TaskDef ([`worker`]), metadata spec files
//! ([`spec_file`]), reading committed runs from outside a server ([`inspect`]), data
//! models and the flows between them ([`flows`]), the `weir` command line's building
//! blocks ([`cli`]), the metrics it exports ([`metrics`]), the HTTP server that
//! serves them ([`http`]) and the read-only queries it also serves ([`query`]). The
//! runtime underneath never learns of any of them.

pub mod builder;
pub mod cli;
pub mod client;
pub mod config;
pub mod core;
pub mod flows;
pub mod http;
pub mod inspect;
pub mod lifecycle;
pub mod metadata;
pub mod metrics;
pub mod output;
pub mod query;
pub mod spec_file;
pub mod topics;
pub mod worker;
