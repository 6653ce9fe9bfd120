//! Exponential backoff between retries of a failed Kafka request: the worker retries
//! every Kafka error rather than returning it.

use std::time::Duration;

/// First and longest wait between retries of a failed Kafka request.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Exponential backoff between retries of a failed Kafka request.
pub(super) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(super) fn new() -> Self {
        Self {
            next: FIRST_BACKOFF,
        }
    }

    pub(super) async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(MAX_BACKOFF);
    }

    pub(super) fn reset(&mut self) {
        self.next = FIRST_BACKOFF;
    }
}
