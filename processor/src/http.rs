//! The HTTP side of a weir process: one axum [`Router`] served on `LHS_METRICS_PORT`,
//! whose first route is `GET /metrics` (the Prometheus text format, rendered from the
//! process-wide recorder [`install_recorder`] installs); other read-only routes (the
//! queries of `weir server`, [`crate::query`]) are merged into the same router, on the
//! same port ([`start_with`]).
//!
//! `weir server` calls [`start`]; so can any other weir program (a flows app, a worker
//! process). Call it before anything registers a metric: a handle taken while no
//! recorder is installed records nothing, ever.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::WeirConfig;

/// The content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Why the HTTP side could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Another metrics recorder is installed in this process, or a bucket list is bad.
    #[error("cannot install the Prometheus metrics recorder: {0}")]
    Recorder(String),
    /// The port is taken (or not ours to use).
    #[error("cannot listen for HTTP on port {port} (LHS_METRICS_PORT): {source}")]
    Bind { port: u16, source: std::io::Error },
}

/// The recorder's handle, once installed.
static RECORDER: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs the Prometheus recorder as this process's metrics recorder, once, with the
/// buckets of weir's histograms, and describes every metric; later calls return the
/// same handle.
pub fn install_recorder() -> Result<PrometheusHandle, HttpError> {
    let mut installed = RECORDER.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in weir_topology::metrics::HISTOGRAMS {
        builder = builder
            .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
            .map_err(|e| HttpError::Recorder(e.to_string()))?;
    }
    let handle = builder
        .install_recorder()
        .map_err(|e| HttpError::Recorder(e.to_string()))?;
    weir_topology::metrics::describe();
    crate::metrics::describe();
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let upkeep = handle.clone();
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(UPKEEP_INTERVAL).await;
                upkeep.run_upkeep();
            }
        });
    }
    *installed = Some(handle.clone());
    Ok(handle)
}

/// The router with its `/metrics` route; merge other routes into it.
pub fn router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                // Publishes descriptions made since the last upkeep.
                handle.run_upkeep();
                ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], handle.render()).into_response()
            }
        }),
    )
}

/// Serves `/metrics` on `LHS_METRICS_PORT` when it is set (`None` when it is not).
pub async fn start(config: &WeirConfig) -> Result<Option<HttpServer>, HttpError> {
    start_with(config, Router::new()).await
}

/// Serves `/metrics` and `routes` on `LHS_METRICS_PORT` when it is set (`None` when it
/// is not).
pub async fn start_with(
    config: &WeirConfig,
    routes: Router,
) -> Result<Option<HttpServer>, HttpError> {
    let Some(port) = config.metrics_port else {
        return Ok(None);
    };
    let handle = install_recorder()?;
    HttpServer::serve(port, router(handle).merge(routes))
        .await
        .map(Some)
}

/// A router being served on every interface; stopped by [`HttpServer::shutdown`] or
/// when dropped.
#[derive(Debug)]
pub struct HttpServer {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Listens on `port` (0: a free port the system picks) and serves `router`.
    pub async fn serve(port: u16, router: Router) -> Result<Self, HttpError> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
            .await
            .map_err(|source| HttpError::Bind { port, source })?;
        let address = listener
            .local_addr()
            .map_err(|source| HttpError::Bind { port, source })?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let serving = axum::serve(listener, router).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(error) = serving.await {
                tracing::error!(%error, "the HTTP server stopped");
            }
        });
        tracing::info!(%address, "serving HTTP");
        Ok(Self {
            address,
            stop: Some(stop),
            task,
        })
    }

    /// The address it listens on (the port the system picked, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Stops accepting connections, lets requests in flight finish, and waits.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// `GET path` over a plain socket, answered with the whole response.
    fn get(address: SocketAddr, path: &str) -> String {
        let mut stream =
            std::net::TcpStream::connect(("127.0.0.1", address.port())).expect("connect");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .expect("request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("response");
        response
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_are_served_in_the_prometheus_format_on_a_picked_port() {
        let handle = install_recorder().expect("recorder");
        assert!(
            install_recorder().is_ok(),
            "installing again returns the same handle"
        );
        metrics::counter!("weir_http_test_total", "task" => "t-0").increment(3);
        metrics::histogram!(weir_topology::metrics::COMMIT_LATENCY, "task" => "t-0").record(0.02);
        let server = HttpServer::serve(0, router(handle)).await.expect("serve");
        let address = server.local_addr();
        assert_ne!(address.port(), 0);
        let response = tokio::task::spawn_blocking(move || get(address, "/metrics"))
            .await
            .expect("join");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            response.contains("content-type: text/plain; version=0.0.4"),
            "{response}"
        );
        assert!(
            response.contains("weir_http_test_total{task=\"t-0\"} 3"),
            "{response}"
        );
        // Histograms are exported with buckets, so quantiles can be computed over time.
        assert!(
            response.contains("weir_commit_latency_seconds_bucket{task=\"t-0\",le=\"0.025\"} 1"),
            "{response}"
        );
        assert!(
            response.contains("# HELP weir_commit_latency_seconds"),
            "{response}"
        );
        let missing = tokio::task::spawn_blocking(move || get(address, "/nothing"))
            .await
            .expect("join");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        server.shutdown().await;
        assert!(std::net::TcpStream::connect(("127.0.0.1", address.port())).is_err());
    }
}
