//! Producing records grouped by topic partition, every partition at once and each
//! partition's records in order, in chunks the broker accepts: all or nothing on known
//! partitions ([`produce_all`]), or by destination name with an answer per destination
//! ([`RecordCollector::send_each`]).

use std::collections::{BTreeMap, HashMap};

use futures::future::{join_all, try_join_all};

use crate::kafka::{KafkaClient, KafkaError, Record, TopicPartition};

/// Most records in one produce request.
const CHUNK_RECORDS: usize = 2_000;
/// Most bytes (approximate) in one produce request, well under Kafka's 1 MiB default.
const CHUNK_BYTES: usize = 512 * 1024;

/// A topic and partition.
pub(crate) type Destination = (String, i32);

/// Produces every group and waits for all acknowledgements. Returns the offsets of each
/// group's records, in the order given.
pub(crate) async fn produce_all<'a>(
    groups: impl IntoIterator<Item = (&'a TopicPartition, &'a [Record])>,
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
async fn produce_in_chunks(
    partition: &TopicPartition,
    records: &[Record],
) -> Result<Vec<i64>, KafkaError> {
    let mut offsets = Vec::with_capacity(records.len());
    for chunk in chunks(records) {
        offsets.extend(partition.produce(chunk.to_vec()).await?);
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
    pub(crate) async fn send_each<'a>(
        &mut self,
        groups: Vec<(&'a Destination, &'a [Record])>,
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
fn chunks(records: &[Record]) -> Vec<&[Record]> {
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
        let many: Vec<Record> = (0..4_500).map(|_| record(10)).collect();
        let sizes: Vec<usize> = chunks(&many).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![2_000, 2_000, 500]);
        let big: Vec<Record> = (0..5).map(|_| record(200 * 1024)).collect();
        let sizes: Vec<usize> = chunks(&big).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![2, 2, 1]);
        let huge = vec![record(2 * 1024 * 1024)];
        assert_eq!(
            chunks(&huge).len(),
            1,
            "an oversized record still goes alone"
        );
        assert!(chunks(&[]).is_empty());
    }
}
