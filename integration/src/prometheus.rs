//! A real Prometheus server for a test (Debian's `prometheus` package, installed by
//! `scripts/install-system-deps.sh`): started on a free port with a generated
//! configuration that scrapes the given targets every second into its own temporary
//! storage, asked through its HTTP API, and stopped when dropped. Also the plain HTTP
//! GET tests use to read a `/metrics` page.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::broker::free_port;

/// How long one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long Prometheus may take to start.
const READY_WAIT: Duration = Duration::from_secs(60);

/// `GET url`: the status and the body, or what went wrong.
pub async fn http_get(url: &str) -> Result<(u16, String), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let exchange = async {
        let response = client.get(uri).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("GET {url}: no answer within {REQUEST_TIMEOUT:?}"))?
        .map_err(|e| format!("GET {url}: {e}"))
}

/// One element of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// A label's value, or "" when the sample has none.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// The samples of metric `name` on a `/metrics` page in the Prometheus text format
/// (`name{label="value",…} value` lines; a histogram's series are `name_bucket`,
/// `name_sum` and `name_count`). Label values must not hold `",` (weir's never do).
pub fn exposition_samples(page: &str, name: &str) -> Vec<Sample> {
    page.lines()
        .filter_map(|line| line.strip_prefix(name))
        .filter_map(|rest| {
            let (labels, value) = match rest.strip_prefix('{') {
                Some(labelled) => labelled.rsplit_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let labels = labels
                .trim_end_matches(',')
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| pair.split_once("=\""))
                .map(|(k, v)| (k.to_owned(), v.trim_end_matches('"').to_owned()))
                .collect();
            let value = value.trim().parse().ok()?;
            Some(Sample { labels, value })
        })
        .collect()
}

/// The value of the sample of metric `name` on a `/metrics` page whose labels include
/// every one of `labels`, when there is one.
pub fn exposition_value(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition_samples(page, name)
        .iter()
        .find(|s| labels.iter().all(|(k, v)| s.label(k) == *v))
        .map(|s| s.value)
}

/// GETs `http://{target}/metrics` and returns the page.
pub async fn scrape(target: &str) -> Result<String, String> {
    match http_get(&format!("http://{target}/metrics")).await? {
        (200, page) => Ok(page),
        (status, body) => Err(format!("GET http://{target}/metrics: {status} {body}")),
    }
}

/// A running Prometheus server.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    address: String,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port`, path `/metrics`) every second as
    /// job `weir`, evaluating `rule_files` every second, and waits until it is ready.
    /// Panics when it cannot, naming the script that installs it when it is missing.
    /// `WEIR_PROMETHEUS_BIN` overrides the binary.
    pub async fn start(targets: &[String], rule_files: &[PathBuf]) -> Self {
        let port = free_port().unwrap_or_else(|e| panic!("{e}"));
        let dir =
            std::env::temp_dir().join(format!("weir-it-prometheus-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, configuration(targets, rule_files))
            .unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
        let log = |name: &str| {
            std::fs::File::create(dir.join(name))
                .unwrap_or_else(|e| panic!("creating the Prometheus log {name}: {e}"))
        };
        let binary = std::env::var("WEIR_PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into());
        let address = format!("127.0.0.1:{port}");
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={address}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log("stdout.log"))
            .stderr(log("stderr.log"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {binary}: {e} (Debian's prometheus package: run scripts/install-system-deps.sh)"
                )
            });
        let mut prometheus = Self {
            child,
            address,
            dir,
        };
        prometheus.wait_until_ready().await;
        prometheus
    }

    /// `host:port` of its web interface and API.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Evaluates `promql` now; the instant vector it returns.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, String> {
        let answer = self
            .api(&format!("query?query={}", url_encode(promql)))
            .await?;
        let result = answer["data"]["result"]
            .as_array()
            .ok_or_else(|| format!("{promql}: not an instant vector: {answer}"))?;
        result
            .iter()
            .map(|element| {
                let labels = element["metric"]
                    .as_object()
                    .map(|labels| {
                        labels
                            .iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                let value = element["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("{promql}: a sample without a value: {element}"))?;
                Ok(Sample { labels, value })
            })
            .collect()
    }

    /// Evaluates `promql` until `accept` likes the answer, and returns it; panics at
    /// `timeout` with the last answer and the scrape targets' health.
    pub async fn wait_for(
        &self,
        promql: &str,
        timeout: Duration,
        accept: impl Fn(&[Sample]) -> bool,
    ) -> Vec<Sample> {
        let deadline = Instant::now() + timeout;
        loop {
            let answer = self.query(promql).await;
            if let Ok(samples) = &answer
                && accept(samples)
            {
                return samples.clone();
            }
            if Instant::now() >= deadline {
                let targets = self.api("targets").await;
                panic!(
                    "Prometheus at {} never gave an acceptable answer to {promql} within {timeout:?}; last: {answer:?}; targets: {targets:?}",
                    self.address
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// `GET /api/v1/{path}`: the JSON answer of a successful call.
    pub async fn api(&self, path: &str) -> Result<serde_json::Value, String> {
        let url = format!("http://{}/api/v1/{path}", self.address);
        let (status, body) = http_get(&url).await?;
        let answer: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("GET {url}: {e}: {body}"))?;
        if status != 200 || answer["status"] != "success" {
            return Err(format!("GET {url}: {status} {body}"));
        }
        Ok(answer)
    }

    async fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + READY_WAIT;
        let url = format!("http://{}/-/ready", self.address);
        loop {
            if let Ok((200, _)) = http_get(&url).await {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("Prometheus exited ({status}) at start: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus was not ready within {READY_WAIT:?}: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The configuration: one job scraping `targets` every second, and `rule_files`.
fn configuration(targets: &[String], rule_files: &[PathBuf]) -> String {
    let quoted = |items: Vec<String>| {
        items
            .iter()
            .map(|item| format!("\"{item}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rules: Vec<String> = rule_files
        .iter()
        .map(|path| absolute(path).display().to_string())
        .collect();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files: [{}]\n\
         scrape_configs:\n  - job_name: weir\n    static_configs:\n      - targets: [{}]\n",
        quoted(rules),
        quoted(targets.to_vec())
    )
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            url_encode("sum by (instance) (rate(x{a=\"b\"}[1m]))"),
            "sum%20by%20%28instance%29%20%28rate%28x%7Ba%3D%22b%22%7D%5B1m%5D%29%29"
        );
    }

    #[test]
    fn exposition_lines_are_read_by_exact_name_with_their_labels() {
        let page = "# TYPE weir_records_lag gauge\n\
                    weir_records_lag{task=\"core-1\",source=\"c_core-cmd\",partition=\"1\"} 3\n\
                    weir_records_lag_other{task=\"core-1\"} 9\n\
                    weir_commit_latency_seconds_count{task=\"core-10\"} 12\n\
                    weir_up 1\n";
        let lag = exposition_samples(page, "weir_records_lag");
        assert_eq!(lag.len(), 1, "{lag:?}");
        assert_eq!(
            (
                lag[0].label("task"),
                lag[0].label("source"),
                lag[0].label("partition")
            ),
            ("core-1", "c_core-cmd", "1")
        );
        assert_eq!(lag[0].labels.len(), 3);
        assert_eq!(lag[0].value, 3.0);
        let count = exposition_samples(page, "weir_commit_latency_seconds_count");
        assert_eq!((count[0].label("task"), count[0].value), ("core-10", 12.0));
        let up = exposition_samples(page, "weir_up");
        assert_eq!((up[0].labels.len(), up[0].value), (0, 1.0));
    }

    #[test]
    fn the_configuration_scrapes_every_target_every_second() {
        let config = configuration(
            &["127.0.0.1:1".to_owned(), "127.0.0.1:2".to_owned()],
            &[PathBuf::from("/rules/alerts.yml")],
        );
        assert!(config.contains("scrape_interval: 1s"), "{config}");
        assert!(
            config.contains("targets: [\"127.0.0.1:1\", \"127.0.0.1:2\"]"),
            "{config}"
        );
        assert!(
            config.contains("rule_files: [\"/rules/alerts.yml\"]"),
            "{config}"
        );
    }
}
