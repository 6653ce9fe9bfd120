//! What every weir process does at its edges: set up logging, turn transparent huge
//! pages off, and wait for the signal to shut down cleanly.

/// Logs to stderr, filtered by `RUST_LOG`, else at `default_level`; colored only when
/// stderr is a terminal, so log files and collectors get plain text.
pub fn init_logging(default_level: &str) {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Turns transparent huge pages off for this process (`prctl(PR_SET_THP_DISABLE)`),
/// whatever the system setting; call it first thing in `main`, after logging.
///
/// Why: mimalloc asks the kernel for huge pages, and on a system whose THP setting
/// allows them each first touch of a fresh 2 MiB region has the kernel zero all of it.
/// Perf of `make bench`'s restore put 44% of the process's time in that zeroing; with
/// THP off restore went from about 200,000 to 315,000 records/s. Databases built on
/// RocksDB commonly advise THP off for the same reason and for latency.
pub fn disable_transparent_huge_pages() {
    if let Err(error) = nix::sys::prctl::set_thp_disable(true) {
        tracing::warn!(%error, "could not turn transparent huge pages off for this process");
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
