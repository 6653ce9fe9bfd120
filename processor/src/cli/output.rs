//! `weir output tail`: a tenant's output topic as JSON lines, each record's value
//! decoded from protobuf (`OutputTopicRecord` or `MetadataOutputTopicRecord`) into the
//! proto3 JSON mapping, so its changes can be read without protobuf tools.

use std::io::Write;

use anyhow::Context;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use weir_topology::kafka::{KafkaConfig, KafkaError, RecordAndOffset};

use crate::spec_file;
use crate::topics::CoreTopics;

/// Which of a tenant's two output topics to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputTopic {
    /// `{cluster}_{tenant}_execution-output`: `OutputTopicRecord`s.
    Execution,
    /// `{cluster}_{tenant}_metadata-output`: `MetadataOutputTopicRecord`s and tombstones.
    Metadata,
}

impl OutputTopic {
    /// The topic's name for `tenant`.
    pub fn topic(self, topics: &CoreTopics, tenant: &str) -> String {
        match self {
            Self::Execution => topics.execution_output(tenant),
            Self::Metadata => topics.metadata_output(tenant),
        }
    }

    /// The full protobuf name of the topic's record values.
    pub fn message_name(self) -> &'static str {
        match self {
            Self::Execution => "weir.OutputTopicRecord",
            Self::Metadata => "weir.MetadataOutputTopicRecord",
        }
    }

    /// The descriptor of the topic's record values.
    pub fn descriptor(self) -> anyhow::Result<MessageDescriptor> {
        spec_file::pool()?
            .get_message_by_name(self.message_name())
            .with_context(|| format!("weir's schemas have no {}", self.message_name()))
    }
}

/// Prints every record of `tenant`'s `which` output topic (all partitions) as a JSON
/// line with its value decoded, until `stop` resolves; from each partition's end, or
/// its beginning with `from_beginning`. A tenant without output topics is an error
/// saying so.
pub async fn tail(
    kafka: &KafkaConfig,
    topics: &CoreTopics,
    tenant: &str,
    which: OutputTopic,
    from_beginning: bool,
    stop: impl Future<Output = ()>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let topic = which.topic(topics, tenant);
    let descriptor = which.descriptor()?;
    let describe =
        |partition: i32, record: &RecordAndOffset| record_json(&descriptor, partition, record);
    match super::topics::tail_with(kafka, &topic, from_beginning, stop, out, describe).await {
        Err(error)
            if matches!(
                error.downcast_ref::<KafkaError>(),
                Some(KafkaError::UnknownTopic { .. })
            ) =>
        {
            anyhow::bail!(
                "tenant {tenant} has no output topic: {topic} does not exist (put the tenant \
                 with an outputTopicConfig to enable it; the server creates the topics within \
                 a few seconds)"
            )
        }
        other => other,
    }
}

/// One output record as a JSON object: partition, offset, timestamp, key and headers as
/// `weir topics tail` prints them, and `value` decoded as `descriptor` in the proto3
/// JSON mapping (`null` for a tombstone). A value that does not decode keeps its bytes
/// as `value_hex` and says why in `value_error`.
pub fn record_json(
    descriptor: &MessageDescriptor,
    partition: i32,
    record: &RecordAndOffset,
) -> serde_json::Value {
    let mut json = super::topics::record_json(partition, record);
    let Some(object) = json.as_object_mut() else {
        return json;
    };
    let Some(bytes) = record.record.value.as_deref() else {
        return json;
    };
    let decoded = DynamicMessage::decode(descriptor.clone(), bytes)
        .map_err(|e| e.to_string())
        .and_then(|message| serde_json::to_value(&message).map_err(|e| e.to_string()));
    match decoded {
        Ok(value) => {
            object.remove("value_hex");
            object.insert("value".to_owned(), value);
        }
        Err(error) => {
            object.remove("value");
            object.insert("value_hex".to_owned(), hex::encode(bytes).into());
            object.insert(
                "value_error".to_owned(),
                format!("not a {}: {error}", descriptor.full_name()).into(),
            );
        }
    }
    json
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use prost::Message;
    use serde_json::json;
    use weir_proto::metadata_output_topic_record::MetadataRecord;
    use weir_proto::output_topic_record::Payload;
    use weir_proto::{
        MetadataOutputTopicRecord, OutputTopicRecord, TaskDef, TaskRun, TaskRunId, TaskStatus,
        WfRunId,
    };
    use weir_topology::kafka::Record;

    use super::*;

    fn record(key: &str, value: Option<Vec<u8>>, headers: &[(&str, &str)]) -> RecordAndOffset {
        RecordAndOffset {
            record: Record {
                key: Some(key.as_bytes().to_vec()),
                value,
                headers: headers
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                    .collect::<BTreeMap<_, _>>(),
                timestamp: chrono::DateTime::from_timestamp_millis(1_700_000_000_000)
                    .expect("a valid time"),
            },
            offset: 41,
        }
    }

    #[test]
    fn an_execution_record_prints_in_the_proto3_json_mapping() {
        let value = OutputTopicRecord {
            timestamp: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            payload: Some(Payload::TaskRun(TaskRun {
                id: Some(TaskRunId {
                    wf_run_id: Some(WfRunId {
                        id: "order-7".to_owned(),
                    }),
                    task_guid: "1-0".to_owned(),
                }),
                task_def_name: "ship-item".to_owned(),
                status: TaskStatus::TaskSuccess as i32,
                max_attempts: 1,
                ..Default::default()
            })),
        };
        let descriptor = OutputTopic::Execution.descriptor().expect("descriptor");
        let line = record_json(
            &descriptor,
            2,
            &record(
                "order-7",
                Some(value.encode_to_vec()),
                &[("weir-tenant", "acme"), ("weir-type", "task_run")],
            ),
        );
        assert_eq!(
            line,
            json!({
                "partition": 2,
                "offset": 41,
                "timestamp_ms": 1_700_000_000_000_i64,
                "key": "order-7",
                "headers": {"weir-tenant": "acme", "weir-type": "task_run"},
                "value": {
                    "timestamp": "2023-11-14T22:13:20Z",
                    "taskRun": {
                        "id": {"wfRunId": {"id": "order-7"}, "taskGuid": "1-0"},
                        "taskDefName": "ship-item",
                        "status": "TASK_SUCCESS",
                        "maxAttempts": 1,
                    },
                },
            })
        );
    }

    #[test]
    fn a_metadata_record_decodes_and_a_tombstone_is_null() {
        let descriptor = OutputTopic::Metadata.descriptor().expect("descriptor");
        let value = MetadataOutputTopicRecord {
            metadata_record: Some(MetadataRecord::TaskDef(TaskDef {
                name: "fetch-price".to_owned(),
                enable_entity_events: Some(false),
                ..Default::default()
            })),
        };
        let put = record_json(
            &descriptor,
            0,
            &record("TASK_DEF/fetch-price", Some(value.encode_to_vec()), &[]),
        );
        assert_eq!(put["key"], json!("TASK_DEF/fetch-price"));
        assert_eq!(put["value"]["taskDef"]["name"], json!("fetch-price"));
        assert_eq!(
            put["value"]["taskDef"]["enableEntityEvents"],
            json!(false),
            "a set optional field prints even when false"
        );

        let tombstone = record_json(&descriptor, 0, &record("TASK_DEF/fetch-price", None, &[]));
        assert_eq!(tombstone["value"], serde_json::Value::Null);
        assert!(tombstone.get("value_hex").is_none(), "{tombstone}");
    }

    #[test]
    fn a_value_that_does_not_decode_keeps_its_bytes_and_says_why() {
        let descriptor = OutputTopic::Execution.descriptor().expect("descriptor");
        let line = record_json(&descriptor, 0, &record("k", Some(vec![0xff, 0xff]), &[]));
        assert_eq!(line["value_hex"], json!("ffff"));
        assert!(line.get("value").is_none(), "{line}");
        let error = line["value_error"].as_str().expect("an error");
        assert!(error.starts_with("not a weir.OutputTopicRecord"), "{error}");
    }

    #[test]
    fn the_topics_are_the_tenants_output_topics() {
        let config = crate::config::WeirConfig::from_lookup(|name| {
            (name == "LHS_CLUSTER_ID").then(|| "c1".to_owned())
        })
        .expect("config");
        let topics = CoreTopics::new(&config);
        assert_eq!(
            OutputTopic::Execution.topic(&topics, "acme"),
            "c1_acme_execution-output"
        );
        assert_eq!(
            OutputTopic::Metadata.topic(&topics, "acme"),
            "c1_acme_metadata-output"
        );
    }
}
