//! Pins the wire format of the output topic messages. The expected bytes are
//! written by hand from the protobuf encoding rules, not captured from the
//! encoder, so a changed field number or type fails here.
//!
//! Reminders: a field's key is `(field_number << 3) | wire_type`, with wire
//! type 0 for varints and 2 for length-delimited values (strings, bytes,
//! embedded messages). A varint stores 7 bits per byte, low group first, and
//! sets the top bit on every byte but the last. Proto3 leaves out scalar
//! fields that hold their default, except `optional` ones that are set.

use prost::Message;
use weir_proto::output_topic_config::OutputTopicRecordingLevel;
use weir_proto::{
    MetadataOutputTopicRecord, OutputTopicConfig, OutputTopicRecord, PutTenantRequest, TaskDef,
    Tenant, Variable, VariableId, VariableValue, WfRunId, metadata_output_topic_record,
    output_topic_record, variable_value,
};

/// Asserts `message` encodes to exactly `expected` and decodes back from it.
fn assert_wire<M: Message + Default + PartialEq + std::fmt::Debug>(message: &M, expected: &[u8]) {
    let encoded = message.encode_to_vec();
    assert_eq!(
        hex::encode(&encoded),
        hex::encode(expected),
        "encoding differs (left: actual, right: expected)"
    );
    let decoded = M::decode(expected).expect("the expected bytes must decode");
    assert_eq!(&decoded, message);
}

#[test]
fn output_topic_record_with_a_variable() {
    let record = OutputTopicRecord {
        timestamp: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        payload: Some(output_topic_record::Payload::Variable(Variable {
            id: Some(VariableId {
                wf_run_id: Some(WfRunId { id: "w1".into() }),
                thread_run_number: 1,
                name: "x".into(),
            }),
            value: Some(VariableValue {
                value: Some(variable_value::Value::Str("hi".into())),
            }),
            created_at: None,
            wf_spec_id: None,
        })),
    };

    // 1_700_000_000 as a varint, 7 bits at a time from the low end:
    //   1_700_000_000 = 13_281_250 * 128 + 0   -> 0x00 | 0x80 = 0x80
    //      13_281_250 =    103_759 * 128 + 98  -> 0x62 | 0x80 = 0xe2
    //         103_759 =        810 * 128 + 79  -> 0x4f | 0x80 = 0xcf
    //             810 =          6 * 128 + 42  -> 0x2a | 0x80 = 0xaa
    //               6                          -> 0x06 (last byte)
    #[rustfmt::skip]
    let expected: &[u8] = &[
        // OutputTopicRecord.timestamp: field 1, length-delimited, 6 bytes.
        0x0a, 0x06,
            // Timestamp.seconds: field 1, varint.
            0x08, 0x80, 0xe2, 0xcf, 0xaa, 0x06,
            // Timestamp.nanos = 0: omitted.
        // OutputTopicRecord.payload.variable: field 6, length-delimited
        // (6 << 3 | 2 = 0x32), 19 bytes.
        0x32, 0x13,
            // Variable.id: field 1, length-delimited, 11 bytes.
            0x0a, 0x0b,
                // VariableId.wf_run_id: field 1, length-delimited, 4 bytes.
                0x0a, 0x04,
                    // WfRunId.id: field 1, length-delimited, "w1".
                    0x0a, 0x02, b'w', b'1',
                // VariableId.thread_run_number: field 2, varint (0x10), 1.
                0x10, 0x01,
                // VariableId.name: field 3, length-delimited (0x1a), "x".
                0x1a, 0x01, b'x',
            // Variable.value: field 2, length-delimited (0x12), 4 bytes.
            0x12, 0x04,
                // VariableValue.str: field 1, length-delimited, "hi".
                0x0a, 0x02, b'h', b'i',
    ];
    assert_eq!(expected.len(), 29);
    assert_wire(&record, expected);
}

#[test]
fn metadata_output_topic_record_with_a_task_def() {
    let record = MetadataOutputTopicRecord {
        metadata_record: Some(metadata_output_topic_record::MetadataRecord::TaskDef(
            TaskDef {
                name: "ship-item".into(),
                // An optional bool that is set is written even when false.
                enable_entity_events: Some(false),
                ..TaskDef::default()
            },
        )),
    };

    #[rustfmt::skip]
    let expected: &[u8] = &[
        // MetadataOutputTopicRecord.metadata_record.task_def: field 2,
        // length-delimited (2 << 3 | 2 = 0x12), 13 bytes.
        0x12, 0x0d,
            // TaskDef.name: field 1, length-delimited, 9 bytes, "ship-item".
            0x0a, 0x09, b's', b'h', b'i', b'p', b'-', b'i', b't', b'e', b'm',
            // TaskDef.enable_entity_events: field 6, varint (6 << 3 = 0x30),
            // present and false.
            0x30, 0x00,
    ];
    assert_wire(&record, expected);
}

#[test]
fn tenant_output_topic_is_field_3() {
    let tenant = Tenant {
        id: "t".into(),
        created_at: None,
        output_topic: Some(OutputTopicConfig {
            default_recording_level: OutputTopicRecordingLevel::NoEntityEvents as i32,
        }),
    };

    #[rustfmt::skip]
    let expected: &[u8] = &[
        // Tenant.id: field 1, length-delimited, "t".
        0x0a, 0x01, b't',
        // Tenant.output_topic: field 3, length-delimited (3 << 3 | 2 = 0x1a),
        // 2 bytes.
        0x1a, 0x02,
            // OutputTopicConfig.default_recording_level: field 1, varint,
            // NO_ENTITY_EVENTS = 1.
            0x08, 0x01,
    ];
    assert_wire(&tenant, expected);
}

#[test]
fn put_tenant_output_topic_config_is_field_2() {
    // A set but default config is still written, as an empty message: its
    // presence is what turns the output topic on.
    let request = PutTenantRequest {
        id: "t".into(),
        output_topic_config: Some(OutputTopicConfig::default()),
    };

    #[rustfmt::skip]
    let expected: &[u8] = &[
        // PutTenantRequest.id: field 1, length-delimited, "t".
        0x0a, 0x01, b't',
        // PutTenantRequest.output_topic_config: field 2, length-delimited
        // (0x12), empty (ALL_ENTITY_EVENTS = 0 is the default, so omitted).
        0x12, 0x00,
    ];
    assert_wire(&request, expected);
}
