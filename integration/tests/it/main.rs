//! All integration tests, in one test binary so the whole run shares one broker.

mod analytics;
mod cli;
mod client;
mod cluster;
mod flows;
mod global;
mod make_run;
mod metrics;
mod offsets;
mod orders;
mod output;
mod parked;
mod queries;
mod runtime;
mod scaled;
mod smoke;
mod worker;
