//! Producing test input: protobuf messages with keys and headers, acknowledged by the
//! broker before the helper returns.

use std::collections::BTreeMap;

use prost::Message;
use weir_topology::kafka::{KafkaClient, Record};

/// Produces `message` to `topic`/`partition` with `key` and `headers`, and returns the
/// offset the broker assigned. Panics with the topic and partition on failure.
pub async fn produce_protobuf(
    client: &KafkaClient,
    topic: &str,
    partition: i32,
    key: &str,
    headers: &[(&str, &[u8])],
    message: &impl Message,
) -> i64 {
    let record = Record {
        key: Some(key.as_bytes().to_vec()),
        value: Some(message.encode_to_vec()),
        headers: headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.to_vec()))
            .collect::<BTreeMap<_, _>>(),
        timestamp: chrono::Utc::now(),
    };
    let handle = client
        .partition(topic, partition)
        .await
        .unwrap_or_else(|e| panic!("producing to {topic}/{partition}: {e}"));
    let offsets = handle
        .produce(vec![record])
        .await
        .unwrap_or_else(|e| panic!("producing to {topic}/{partition}: {e}"));
    match offsets.as_slice() {
        [offset] => *offset,
        other => panic!("producing one record to {topic}/{partition} returned offsets {other:?}"),
    }
}
