//! The Output Topic: what the core publishes, per tenant, for consumers outside weir.
//!
//! A tenant whose `Tenant.output_topic` is set has two topics:
//! `{cluster}_{tenant}_execution-output` (`LHS_OUTPUT_TOPIC_PARTITIONS` partitions; the
//! records of core-cmd partition `p` go to partition `p % n`, keyed by WfRun id) and
//! `{cluster}_{tenant}_metadata-output` (one partition, keyed `{TYPE}/{id}`). Which
//! objects are sent is [`policy`]; which changes of a command become records, in which
//! order, is [`execution`]; metadata records and tombstones are [`metadata`]; the
//! server keeps the topics of enabled tenants in existence with [`topic_keeper`].

pub mod execution;
pub mod metadata;
pub mod policy;
pub mod topic_keeper;

/// Header naming the payload case of an output record (`wf_run`, `task_def`, …), so
/// consumers can filter without decoding.
pub const TYPE_HEADER: &str = "weir-type";
