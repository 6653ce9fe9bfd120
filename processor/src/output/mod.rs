//! The Output Topic: what the core publishes, per tenant, for consumers outside weir.
//!
//! A tenant whose `Tenant.output_topic` is set has two topics:
//! `{cluster}_{tenant}_execution-output` (`LHS_OUTPUT_TOPIC_PARTITIONS` partitions; the
//! records of core-cmd partition `p` go to partition `p % n`, keyed by WfRun id) and
//! `{cluster}_{tenant}_metadata-output` (one partition, keyed `{TYPE}/{id}`). Which
//! objects are sent is [`policy`]; which changes of a command become records, in which
//! order, is [`execution`]; metadata records and tombstones are [`metadata`]; the
//! server keeps the topics of enabled tenants in existence with [`topic_keeper`].
//! Every record built for either topic is counted in
//! [`crate::metrics::OUTPUT_TOPIC_RECORDS`], by tenant and type.

pub mod execution;
pub mod metadata;
pub mod policy;
pub mod topic_keeper;

/// Header naming the payload case of an output record (`wf_run`, `task_def`, …), so
/// consumers can filter without decoding.
pub const TYPE_HEADER: &str = "weir-type";

/// Counts a record built for a tenant's output topic, by tenant and `weir-type`. It is
/// counted when processing hands it to the runtime (which produces it, or parks it
/// until its topic exists); a batch processed again after a crash counts again, as its
/// records are produced again.
pub(crate) fn count_published(tenant: &str, kind: &'static str) {
    metrics::counter!(
        crate::metrics::OUTPUT_TOPIC_RECORDS,
        "tenant" => tenant.to_owned(),
        "type" => kind
    )
    .increment(1);
}
