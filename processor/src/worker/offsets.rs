//! How far a worker has served each queue partition, kept in its consumer group: where
//! to start (the committed offset, or the earliest one still in the log), the
//! positions the partition loops move, and committing them periodically and on
//! shutdown.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use weir_topology::kafka::KafkaError;

use super::backoff::Backoff;
use super::shared::Shared;

/// Where each served partition is done up to: the offset after which nothing is left
/// unreported (`current`), and what the group has committed of it (`committed`).
pub(super) struct Positions {
    pub(super) current: BTreeMap<i32, i64>,
    pub(super) committed: BTreeMap<i32, i64>,
}

impl Shared {
    /// Where to start each partition: the group's committed offset, or the earliest
    /// offset still in the log when none is committed (or it fell out of retention).
    pub(super) async fn start_offsets(&self, partitions: &[i32]) -> BTreeMap<i32, i64> {
        let mut backoff = Backoff::new();
        let committed = loop {
            match self
                .admin
                .committed_offsets(&self.group, &self.queue, partitions)
                .await
            {
                Ok(committed) => break committed,
                Err(error) => {
                    tracing::warn!(group = %self.group, %error, "reading committed offsets; retrying");
                    backoff.wait().await;
                }
            }
        };
        let mut starts = BTreeMap::new();
        for &partition in partitions {
            let earliest = self.earliest_offset(partition).await;
            let start = match committed.get(&partition).copied().flatten() {
                Some(offset) if offset >= earliest => offset,
                Some(offset) => {
                    tracing::warn!(
                        queue = %self.queue, partition, committed = offset, earliest,
                        "committed offset is no longer in the log; starting at the earliest"
                    );
                    earliest
                }
                None => earliest,
            };
            starts.insert(partition, start);
        }
        starts
    }

    async fn earliest_offset(&self, partition: i32) -> i64 {
        let mut backoff = Backoff::new();
        loop {
            let result = match self.client.partition(&self.queue, partition).await {
                Ok(handle) => handle.earliest_offset().await,
                Err(error) => Err(error),
            };
            match result {
                Ok(offset) => return offset,
                Err(error) => {
                    tracing::warn!(queue = %self.queue, partition, %error, "reading the earliest offset; retrying");
                    backoff.wait().await;
                }
            }
        }
    }

    /// Commits every partition whose position moved since the last commit.
    async fn commit(&self, positions: &Mutex<Positions>) -> Result<(), KafkaError> {
        let changed: Vec<(String, i32, i64)> = {
            let positions = positions.lock().unwrap_or_else(PoisonError::into_inner);
            positions
                .current
                .iter()
                .filter(|(partition, offset)| positions.committed.get(partition) != Some(offset))
                .map(|(partition, offset)| (self.queue.clone(), *partition, *offset))
                .collect()
        };
        if changed.is_empty() {
            return Ok(());
        }
        self.admin.commit_offsets(&self.group, &changed).await?;
        let mut positions = positions.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, partition, offset) in changed {
            positions.committed.insert(partition, offset);
        }
        Ok(())
    }

    /// The commit on shutdown, tried a few times before giving up (what is not
    /// committed is served again by the next worker).
    pub(super) async fn final_commit(&self, positions: &Mutex<Positions>) {
        let mut backoff = Backoff::new();
        for attempt in 1..=5 {
            match self.commit(positions).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(group = %self.group, attempt, %error, "committing on shutdown failed");
                    backoff.wait().await;
                }
            }
        }
    }
}

/// Commits moved positions every `interval` until told to stop.
pub(super) async fn commit_periodically(
    shared: Arc<Shared>,
    positions: Arc<Mutex<Positions>>,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = ticker.tick() => {
                if let Err(error) = shared.commit(&positions).await {
                    tracing::warn!(group = %shared.group, %error, "committing offsets failed; retrying at the next interval");
                }
            }
        }
    }
}
