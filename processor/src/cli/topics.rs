//! `weir topics`: list, describe and tail topics, for operators who want to look at what
//! weir wrote without another Kafka tool.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::json;
use weir_topology::kafka::{KafkaAdmin, KafkaClient, KafkaConfig, RecordAndOffset, TopicPartition};

/// How long one fetch waits at the broker for new records while tailing.
const TAIL_FETCH_WAIT: Duration = Duration::from_millis(500);
/// Largest fetch while tailing.
const TAIL_FETCH_BYTES: i32 = 1024 * 1024;

/// Prints the cluster's topic names, one per line; with `prefix`, only those starting with it.
pub async fn list(
    kafka: &KafkaConfig,
    prefix: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let admin = KafkaAdmin::connect(kafka).await?;
    for name in admin.list_topics().await? {
        if prefix.is_none_or(|p| name.starts_with(p)) {
            writeln!(out, "{name}")?;
        }
    }
    Ok(())
}

/// Prints a topic's partitions with their leaders and the configs the broker reports.
pub async fn describe(
    kafka: &KafkaConfig,
    topic: &str,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let admin = KafkaAdmin::connect(kafka).await?;
    let described = admin.describe_topics(&[topic.to_owned()]).await?;
    let configs = admin.topic_configs(topic).await?;
    for description in described {
        writeln!(
            out,
            "topic {} ({} partitions)",
            description.name,
            description.partitions.len()
        )?;
        for partition in &description.partitions {
            let leader = partition
                .leader
                .map_or_else(|| "none".to_owned(), |l| l.to_string());
            writeln!(out, "  partition {} leader {leader}", partition.partition)?;
        }
    }
    for (key, value) in configs {
        writeln!(out, "  config {key}={value}")?;
    }
    Ok(())
}

/// Prints every record of `topic` as a JSON line as it arrives, until `stop` resolves.
/// Starts at each partition's end, or at its beginning with `from_beginning`.
pub async fn tail(
    kafka: &KafkaConfig,
    topic: &str,
    from_beginning: bool,
    stop: impl Future<Output = ()>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let describe = |partition: i32, record: &RecordAndOffset| record_json(partition, record);
    tail_with(kafka, topic, from_beginning, stop, out, describe).await
}

/// The loop behind every tail: fetches all partitions of `topic` at once (from each
/// partition's end, or its beginning with `from_beginning`) and prints the line
/// `describe` makes of each record, until `stop` resolves. A missing topic is
/// [`KafkaError::UnknownTopic`](weir_topology::kafka::KafkaError::UnknownTopic).
pub async fn tail_with(
    kafka: &KafkaConfig,
    topic: &str,
    from_beginning: bool,
    stop: impl Future<Output = ()>,
    out: &mut impl Write,
    mut describe: impl FnMut(i32, &RecordAndOffset) -> serde_json::Value,
) -> anyhow::Result<()> {
    let admin = KafkaAdmin::connect(kafka).await?;
    let described = admin.describe_topics(&[topic.to_owned()]).await?;
    let client = KafkaClient::connect(kafka).await?;
    let mut positions = Vec::new();
    for partition in described.iter().flat_map(|t| &t.partitions) {
        let handle = client.partition(topic, partition.partition).await?;
        let start = if from_beginning {
            handle.earliest_offset().await?
        } else {
            handle.high_watermark().await?
        };
        positions.push((handle, start));
    }
    out.flush()?;
    tokio::pin!(stop);
    let mut fetches: FuturesUnordered<_> = positions
        .into_iter()
        .map(|(handle, offset)| fetch_next(handle, offset))
        .collect();
    loop {
        tokio::select! {
            () = &mut stop => return Ok(()),
            next = fetches.next() => {
                let Some(result) = next else { return Ok(()) };
                let (handle, offset, records) = result?;
                let mut next_offset = offset;
                for record in &records {
                    writeln!(out, "{}", describe(handle.partition(), record))?;
                    next_offset = record.offset + 1;
                }
                out.flush()?;
                fetches.push(fetch_next(handle, next_offset));
            }
        }
    }
}

async fn fetch_next(
    handle: TopicPartition,
    offset: i64,
) -> anyhow::Result<(TopicPartition, i64, Vec<RecordAndOffset>)> {
    let (records, _high_watermark) = handle
        .fetch(offset, TAIL_FETCH_BYTES, TAIL_FETCH_WAIT)
        .await
        .with_context(|| format!("tailing {}/{}", handle.topic(), handle.partition()))?;
    Ok((handle, offset, records))
}

/// One record as a JSON object; keys, values and headers print as UTF-8 text when they
/// are, and as hex (with an `_hex` suffix on the field name) when they are not.
pub fn record_json(partition: i32, record: &RecordAndOffset) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    object.insert("partition".into(), json!(partition));
    object.insert("offset".into(), json!(record.offset));
    object.insert(
        "timestamp_ms".into(),
        json!(record.record.timestamp.timestamp_millis()),
    );
    insert_bytes(&mut object, "key", record.record.key.as_deref());
    insert_bytes(&mut object, "value", record.record.value.as_deref());
    let mut headers = serde_json::Map::new();
    for (name, value) in &record.record.headers {
        insert_bytes(&mut headers, name, Some(value));
    }
    object.insert("headers".into(), serde_json::Value::Object(headers));
    serde_json::Value::Object(object)
}

fn insert_bytes(
    object: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
    bytes: Option<&[u8]>,
) {
    match bytes {
        None => {
            object.insert(name.to_owned(), serde_json::Value::Null);
        }
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => {
                object.insert(name.to_owned(), json!(text));
            }
            Err(_) => {
                object.insert(format!("{name}_hex"), json!(hex::encode(bytes)));
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use weir_topology::kafka::Record;

    #[test]
    fn record_json_shows_text_and_binary() {
        let record = RecordAndOffset {
            record: Record {
                key: Some(b"order-1".to_vec()),
                value: Some(vec![0xff, 0x00]),
                headers: BTreeMap::from([("weir-tenant".to_owned(), b"acme".to_vec())]),
                timestamp: chrono::DateTime::from_timestamp_millis(1_700_000_000_000)
                    .unwrap_or_default(),
            },
            offset: 7,
        };
        assert_eq!(
            record_json(3, &record),
            json!({
                "partition": 3,
                "offset": 7,
                "timestamp_ms": 1_700_000_000_000_i64,
                "key": "order-1",
                "value_hex": "ff00",
                "headers": {"weir-tenant": "acme"},
            })
        );
    }
}
