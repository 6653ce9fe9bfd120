//! A producer for records that many callers send one at a time (commands from clients
//! and workers): while a produce request to the partition is in flight, further
//! records queue, and the next request carries all of them, as Kafka's own producer
//! batches under load. A lone record still goes out at once; each caller is answered
//! once its record is acknowledged, with its offset.

use tokio::sync::{mpsc, oneshot};

use super::{KafkaError, Record, TopicPartition};

/// Most records one request carries.
const MAX_BATCH_RECORDS: usize = 500;

/// A queued record and where its offset goes (`None` when its request failed).
type Queued = (Record, oneshot::Sender<Option<i64>>);

/// A batching producer of one partition; clones share the queue.
#[derive(Debug, Clone)]
pub struct BatchingProducer {
    partition: TopicPartition,
    queue: mpsc::UnboundedSender<Queued>,
}

impl BatchingProducer {
    /// Starts the loop that sends queued records to `partition`; it ends when the last
    /// clone is dropped.
    pub fn new(partition: TopicPartition) -> Self {
        let (queue, queued) = mpsc::unbounded_channel();
        tokio::spawn(send_queued(partition.clone(), queued));
        Self { partition, queue }
    }

    /// The partition this producer writes to.
    pub fn partition(&self) -> &TopicPartition {
        &self.partition
    }

    /// Appends `record` and returns its offset once acknowledged. When the request that
    /// carried it fails, the record is sent again on its own, so the error returned is
    /// this record's.
    pub async fn send(&self, record: Record) -> Result<i64, KafkaError> {
        let (answer, answered) = oneshot::channel();
        if self.queue.send((record.clone(), answer)).is_ok()
            && let Ok(Some(offset)) = answered.await
        {
            return Ok(offset);
        }
        let offsets = self.partition.produce(vec![record]).await?;
        Ok(offsets.first().copied().unwrap_or_default())
    }
}

/// Sends what is queued, in order, a request at a time.
async fn send_queued(partition: TopicPartition, mut queued: mpsc::UnboundedReceiver<Queued>) {
    while let Some(first) = queued.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_RECORDS {
            match queued.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (records, answers): (Vec<Record>, Vec<oneshot::Sender<Option<i64>>>) =
            batch.into_iter().unzip();
        match partition.produce(records).await {
            Ok(offsets) => {
                for (answer, offset) in answers.into_iter().zip(offsets) {
                    let _ = answer.send(Some(offset));
                }
            }
            Err(error) => {
                tracing::debug!(%error, topic = partition.topic(), partition = partition.partition(), "a batched produce failed; its records are sent again one by one");
                for answer in answers {
                    let _ = answer.send(None);
                }
            }
        }
    }
}
