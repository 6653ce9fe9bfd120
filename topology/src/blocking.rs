//! Blocking work (RocksDB opens, restore writes, flushes) run from an async task
//! without stalling the other tasks of its runtime worker.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `work` on the current thread. On a multi-threaded runtime this worker's other
/// tasks are first handed to another thread ([`tokio::task::block_in_place`]), so their
/// fetches and produces go on meanwhile: without it, a task flushing RocksDB at the end
/// of its restore held back the opening of the tasks queued behind it on that worker.
/// On a current-thread runtime (tests) or outside a runtime it just runs `work`.
pub(crate) fn run<T>(work: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_the_work_outside_a_runtime() {
        assert_eq!(super::run(|| 7), 7);
    }

    #[tokio::test]
    async fn runs_the_work_on_a_current_thread_runtime() {
        assert_eq!(super::run(|| 7), 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_the_work_on_a_multi_threaded_runtime() {
        let other = tokio::spawn(async { 5 });
        assert_eq!(super::run(|| 7), 7);
        assert_eq!(other.await.ok(), Some(5));
    }
}
