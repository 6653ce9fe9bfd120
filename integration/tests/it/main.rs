//! All integration tests, in one test binary so the whole run shares one broker.

mod client;
mod global;
mod offsets;
mod runtime;
mod smoke;
mod worker;
