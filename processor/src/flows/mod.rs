//! Flows: data models, the records of their ingestion topics, and the flows that
//! transform the records of one model version into another (the Flows Input/Output
//! Topics RFD). Most of this module is I/O-free: no Kafka, no stores.
//!
//! A data model version `{Model}` `major.minor` has an ingestion topic and a table, both
//! named `{Model}_{major}_{minor}` ([`naming`]); its records are JSON objects checked
//! against the model ([`record`]). A flow owns an input and an output topic,
//! `{source}_{major}_{minor}_{target}_{major}_{minor}_input` / `_output`, with the source
//! ingestion topic's partition count, and a Rust transform registered by name
//! ([`transform`]). A regular flow's output is copied to the target model's ingestion
//! topic; a migration flow's output (version N to the next declared version N+1 of the
//! same model) is written straight to the target's table, so no record reaches a model
//! version twice.
//!
//! Models and flows are declared in one manifest file, read and validated by
//! [`manifest`]; [`plan`] is the difference between a manifest and what exists (what
//! `weir flows plan` prints and `weir flows apply` does); [`cutover`] is the initial
//! load of a flow, per partition: a snapshot of the source table at a known offset of
//! the ingestion topic, then live records from that offset on.
//!
//! [`topology`] is the runtime part: the sub-topologies that keep each version's table
//! ([`ingest`]) and run each flow ([`flow_task`]) on `weir-topology`.

pub mod app;
pub mod apply;
pub mod cutover;
mod flow_task;
mod ingest;
pub mod manifest;
pub mod naming;
pub mod plan;
pub mod record;
pub mod topology;
pub mod transform;
