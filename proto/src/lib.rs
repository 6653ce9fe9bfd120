//! Every message weir puts on the wire or in a store, as Rust types.
//!
//! The schemas live in `proto/schemas/*.proto`, all in the protobuf package
//! `weir`, and are compiled at build time by `prost-build` (fed by `protox`,
//! so no system `protoc` is needed). The generated module is [`weir`]; its
//! contents are also re-exported here, so `weir_proto::WfRun` and
//! `weir_proto::weir::WfRun` are the same type.
//!
//! The schema files, by concern:
//! - `common.proto`: statuses, typed values and object ids;
//! - `metadata.proto`: tenants, TaskDefs, WfSpecs and the other definitions;
//! - `execution.proto`: WfRuns, NodeRuns, TaskRuns, Variables, events, user
//!   tasks and the `ScheduledTask` a worker receives;
//! - `commands.proto`: the input envelopes `Command` and `MetadataCommand`,
//!   every request they carry, and the `CommandResult` answer;
//! - `output.proto`: `OutputTopicRecord` and `MetadataOutputTopicRecord`;
//! - `flows.proto`: data models, flows and initial-load progress;
//! - `runtime.proto`: the generic runtime's commit marker, timer record and parked
//!   output record.
//!
//! The output topic messages keep the exact names and field numbers of the
//! Output Topic proposal (`OutputTopicRecord`, `MetadataOutputTopicRecord`,
//! `OutputTopicConfig`, `Tenant.output_topic = 3`,
//! `PutTenantRequest.output_topic_config = 2`), so consumers written against
//! it decode weir's records unchanged. Maps are generated as `BTreeMap`, so
//! encoding a value always gives the same bytes.
//!
//! Besides the generated types the crate holds one helper, [`timestamp`],
//! which converts between `prost_types::Timestamp` and epoch milliseconds, and
//! the schemas' encoded descriptors, [`FILE_DESCRIPTOR_SET`].

pub mod timestamp;

/// The code prost generates from `proto/schemas/*.proto` (package `weir`).
/// Doc comments on each type and field come from the schema comments.
#[allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::pedantic
)]
pub mod weir {
    include!(concat!(env!("OUT_DIR"), "/weir.rs"));
}

pub use weir::*;

/// Every schema above as an encoded `FileDescriptorSet`, for reading messages by name
/// at run time (the `weir` command line parses JSON and YAML spec files with it).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/weir_descriptor.bin"));
