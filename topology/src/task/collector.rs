//! Producing records grouped by topic partition, every partition at once and each
//! partition's records in order, in chunks the broker accepts: all or nothing on known
//! partitions ([`produce_all`]), or by destination name with an answer per destination
//! ([`RecordCollector::send_each`]).
//!
//! What is produced is kept as [`ToRecord`]s, turned into Kafka records only when a
//! request is built, and built again when it is retried: a commit keeps no copy of its
//! records for the case a produce fails.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use futures::future::{join_all, try_join_all};

use crate::kafka::{KafkaClient, KafkaError, Record, TopicPartition};

/// Most records in one produce request. Small records (an output with its `weir-id`,
/// a changelog entry) run about 60 bytes, so this lets [`CHUNK_BYTES`] be the limit that
/// binds: a commit of 10,000 such records is two requests, not five round trips in
/// turn (at 2,000, keyed-count ran at 93k records/s on `make bench`'s machine; at
/// 10,000, 162k).
const CHUNK_RECORDS: usize = 10_000;
/// Most bytes (approximate) in one produce request, well under Kafka's 1 MiB default.
const CHUNK_BYTES: usize = 512 * 1024;

/// A topic and partition.
pub(crate) type Destination = (String, i32);

/// Something a produce request is built from.
pub(crate) trait ToRecord {
    /// The Kafka record, built for one request.
    fn to_record(&self) -> Record;
    /// Bytes of key, value and headers, roughly: what splits records into requests.
    fn approximate_size(&self) -> usize;
}

impl ToRecord for Record {
    fn to_record(&self) -> Record {
        self.clone()
    }

    fn approximate_size(&self) -> usize {
        Record::approximate_size(self)
    }
}

/// An output record on its way to one destination: key, value and headers as the
/// processor made them (shared, not copied) and the timestamp it is produced with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outgoing {
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    pub(crate) headers: BTreeMap<String, Bytes>,
    pub(crate) timestamp_ms: i64,
}

impl ToRecord for Outgoing {
    fn to_record(&self) -> Record {
        Record {
            key: self.key.as_deref().map(<[u8]>::to_vec),
            value: self.value.as_deref().map(<[u8]>::to_vec),
            headers: self
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.to_vec()))
                .collect(),
            timestamp: chrono::DateTime::from_timestamp_millis(self.timestamp_ms)
                .unwrap_or_default(),
        }
    }

    fn approximate_size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + headers
    }
}

/// Produces every group and waits for all acknowledgements. Returns the offsets of each
/// group's records, in the order given.
pub(crate) async fn produce_all<'a, R: ToRecord + 'a>(
    groups: impl IntoIterator<Item = (&'a TopicPartition, &'a [R])>,
) -> Result<Vec<Vec<i64>>, KafkaError> {
    try_join_all(
        groups
            .into_iter()
            .map(|(partition, records)| produce_in_chunks(partition, records)),
    )
    .await
}

/// Produces one partition's records in order, in produce-sized chunks; the offsets of
/// all of them, or the first error (earlier chunks may be on the broker).
async fn produce_in_chunks<R: ToRecord>(
    partition: &TopicPartition,
    records: &[R],
) -> Result<Vec<i64>, KafkaError> {
    let mut offsets = Vec::with_capacity(records.len());
    for chunk in chunks(records) {
        let request = chunk.iter().map(ToRecord::to_record).collect();
        offsets.extend(partition.produce(request).await?);
    }
    Ok(offsets)
}

/// Sends records to any partition, reusing a handle per partition.
#[derive(Debug)]
pub(crate) struct RecordCollector {
    client: KafkaClient,
    partitions: HashMap<Destination, TopicPartition>,
}

impl RecordCollector {
    pub(crate) fn new(client: KafkaClient) -> Self {
        Self {
            client,
            partitions: HashMap::new(),
        }
    }

    /// Produces every group and waits for every answer, returning per destination the
    /// offsets of its records or the error that stopped it. One destination failing
    /// does not stop the others. A destination whose error comes after some of its
    /// chunks were acknowledged reports the error: those records may be on the broker.
    pub(crate) async fn send_each<'a, R: ToRecord>(
        &mut self,
        groups: Vec<(&'a Destination, &'a [R])>,
    ) -> BTreeMap<Destination, Result<Vec<i64>, KafkaError>> {
        let mut results = BTreeMap::new();
        let mut ready = Vec::new();
        for (destination, records) in groups {
            match self.handle(destination).await {
                Ok(handle) => ready.push((destination, records, handle)),
                Err(error) => {
                    results.insert(destination.clone(), Err(error));
                }
            }
        }
        let sends = ready
            .into_iter()
            .map(|(destination, records, handle)| async move {
                (
                    destination.clone(),
                    produce_in_chunks(&handle, records).await,
                )
            });
        results.extend(join_all(sends).await);
        results
    }

    /// Drops the cached handle of a destination, so the next send looks it up again
    /// (after it was found missing).
    pub(crate) fn forget(&mut self, destination: &Destination) {
        self.partitions.remove(destination);
    }

    /// The handle on a destination's partition, looked up once and then reused; an
    /// error when the topic or partition does not exist (never created by the lookup).
    pub(crate) async fn handle(
        &mut self,
        destination: &Destination,
    ) -> Result<TopicPartition, KafkaError> {
        if let Some(handle) = self.partitions.get(destination) {
            return Ok(handle.clone());
        }
        // Checked first: looking a topic up by name may make the broker create it.
        self.client
            .check_partition_exists(&destination.0, destination.1)
            .await?;
        let handle = self.client.partition(&destination.0, destination.1).await?;
        self.partitions.insert(destination.clone(), handle.clone());
        Ok(handle)
    }
}

/// Splits records into produce-sized chunks, keeping their order.
fn chunks<R: ToRecord>(records: &[R]) -> Vec<&[R]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, record) in records.iter().enumerate() {
        let size = record.approximate_size();
        if i > start && (i - start >= CHUNK_RECORDS || bytes + size > CHUNK_BYTES) {
            chunks.push(&records[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < records.len() {
        chunks.push(&records[start..]);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(bytes: usize) -> Record {
        Record {
            key: None,
            value: Some(vec![0; bytes]),
            headers: BTreeMap::new(),
            timestamp: chrono::DateTime::from_timestamp_millis(0).unwrap_or_default(),
        }
    }

    #[test]
    fn chunks_respect_count_and_size_and_keep_order() {
        let many: Vec<Record> = (0..22_500).map(|_| record(10)).collect();
        let sizes: Vec<usize> = chunks(&many).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![10_000, 10_000, 2_500]);
        let big: Vec<Record> = (0..5).map(|_| record(200 * 1024)).collect();
        let sizes: Vec<usize> = chunks(&big).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![2, 2, 1]);
        let huge = vec![record(2 * 1024 * 1024)];
        assert_eq!(
            chunks(&huge).len(),
            1,
            "an oversized record still goes alone"
        );
        assert!(chunks::<Record>(&[]).is_empty());
    }
}
