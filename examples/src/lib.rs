//! Runnable examples of weir against a real broker; each binary in `src/bin` is one
//! example, started by a `make` target. Processors the examples (and the integration
//! tests and benchmarks) share live in the modules here.

pub mod analytics;
pub mod bench;
pub mod flows_demo;
pub mod keyed_count;
pub mod orders;
