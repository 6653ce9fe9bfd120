//! The `weir` command line's subcommands, one module per noun. `main.rs` only parses
//! arguments and reports errors; the work is done here so it can be tested.

pub mod commands;
pub mod flows;
pub mod get;
pub mod output;
pub mod topics;
