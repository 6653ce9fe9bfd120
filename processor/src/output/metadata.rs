//! Metadata-output records: every put of a `WfSpec`, `TaskDef`, `ExternalEventDef`,
//! `WorkflowEventDef` or `UserTaskDef` (an in-place `enable_entity_events` change
//! included) as a `MetadataOutputTopicRecord`, and a tombstone (no value, same key) for
//! a delete. The key is `{TYPE}/{id}`: `WF_SPEC/{name}/{major}/{revision}`,
//! `TASK_DEF/{name}`, `EXTERNAL_EVENT_DEF/{name}`, `WORKFLOW_EVENT_DEF/{name}`,
//! `USER_TASK_DEF/{name}`, so a user who wants a changelog view can compact the topic.

use prost::Message;
use weir_proto::metadata_output_topic_record::MetadataRecord;
use weir_proto::stored_metadata::Object;
use weir_proto::{MetadataOutputTopicRecord, StoredMetadata};
use weir_topology::OutputRecord;

use super::TYPE_HEADER;
use crate::topics::{CoreTopics, TENANT_HEADER};

/// The record key and payload case of a metadata object; `None` for a tenant, which
/// the metadata topic does not carry.
pub fn key_and_type(object: &StoredMetadata) -> Option<(String, &'static str)> {
    Some(match object.object.as_ref()? {
        Object::Tenant(_) => return None,
        Object::WfSpec(spec) => {
            let id = spec.id.clone().unwrap_or_default();
            (
                format!("WF_SPEC/{}/{}/{}", id.name, id.major_version, id.revision),
                "wf_spec",
            )
        }
        Object::TaskDef(def) => (format!("TASK_DEF/{}", def.name), "task_def"),
        Object::ExternalEventDef(def) => (
            format!("EXTERNAL_EVENT_DEF/{}", def.name),
            "external_event_def",
        ),
        Object::WorkflowEventDef(def) => (
            format!("WORKFLOW_EVENT_DEF/{}", def.name),
            "workflow_event_def",
        ),
        Object::UserTaskDef(def) => (format!("USER_TASK_DEF/{}", def.name), "user_task_def"),
    })
}

fn payload(object: StoredMetadata) -> Option<MetadataRecord> {
    Some(match object.object? {
        Object::Tenant(_) => return None,
        Object::WfSpec(spec) => MetadataRecord::WfSpec(spec),
        Object::TaskDef(def) => MetadataRecord::TaskDef(def),
        Object::ExternalEventDef(def) => MetadataRecord::ExternalEventDef(def),
        Object::WorkflowEventDef(def) => MetadataRecord::WorkflowEventDef(def),
        Object::UserTaskDef(def) => MetadataRecord::UserTaskDef(def),
    })
}

fn base(
    topics: &CoreTopics,
    tenant: &str,
    key: String,
    kind: &'static str,
    value: Option<Vec<u8>>,
) -> OutputRecord {
    super::count_published(tenant, kind);
    OutputRecord {
        topic: topics.metadata_output(tenant),
        partition: 0,
        key: Some(key.into_bytes().into()),
        value: value.map(Into::into),
        headers: Default::default(),
    }
    .with_header(TENANT_HEADER, tenant.as_bytes().to_vec())
    .with_header(TYPE_HEADER, kind.as_bytes().to_vec())
}

/// The record announcing `object` as it is after a put.
pub fn put_record(
    topics: &CoreTopics,
    tenant: &str,
    object: StoredMetadata,
) -> Option<OutputRecord> {
    let (key, kind) = key_and_type(&object)?;
    let record = MetadataOutputTopicRecord {
        metadata_record: Some(payload(object)?),
    };
    Some(base(
        topics,
        tenant,
        key,
        kind,
        Some(record.encode_to_vec()),
    ))
}

/// The tombstone announcing that `object` was deleted.
pub fn tombstone(
    topics: &CoreTopics,
    tenant: &str,
    object: &StoredMetadata,
) -> Option<OutputRecord> {
    let (key, kind) = key_and_type(object)?;
    Some(base(topics, tenant, key, kind, None))
}
