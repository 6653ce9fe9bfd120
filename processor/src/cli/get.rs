//! `weir get`: reads a WfRun, its objects or a definition through the read-only HTTP
//! queries of any `weir server` ([`crate::query`]), following the redirect to the
//! instance that owns the WfRun, and prints the answer as pretty JSON. An answer of
//! 4xx or 5xx is an error carrying the server's message.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use reqwest::Url;
use serde_json::Value;

use crate::config::WeirConfig;

/// The port `weir get` asks when neither `--url`, `LHS_QUERY_URL` nor `LHS_METRICS_PORT`
/// says otherwise.
pub const DEFAULT_PORT: u16 = 9100;

/// What to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetTarget {
    /// The tenant itself.
    Tenant,
    WfRun(String),
    TaskRuns(String),
    Variables(String),
    ExternalEvents(String),
    UserTaskRuns(String),
    NodeRuns(String),
    /// The latest version, the latest revision of a major version, or an exact one.
    WfSpec {
        name: String,
        major: Option<i32>,
        revision: Option<i32>,
    },
    TaskDef(String),
    ExternalEventDef(String),
    WorkflowEventDef(String),
    UserTaskDef(String),
}

impl GetTarget {
    /// The path segments of the target's route, after `/tenants/{tenant}`.
    pub fn segments(&self) -> anyhow::Result<Vec<String>> {
        let run = |id: &str, objects: Option<&str>| {
            let mut segments = vec!["wf-runs".to_owned(), id.to_owned()];
            segments.extend(objects.map(str::to_owned));
            segments
        };
        let def = |kind: &str, name: &str| vec![kind.to_owned(), name.to_owned()];
        Ok(match self {
            Self::Tenant => Vec::new(),
            Self::WfRun(id) => run(id, None),
            Self::TaskRuns(id) => run(id, Some("task-runs")),
            Self::Variables(id) => run(id, Some("variables")),
            Self::ExternalEvents(id) => run(id, Some("external-events")),
            Self::UserTaskRuns(id) => run(id, Some("user-task-runs")),
            Self::NodeRuns(id) => run(id, Some("node-runs")),
            Self::WfSpec {
                name,
                major,
                revision,
            } => {
                let mut segments = def("wf-specs", name);
                match (major, revision) {
                    (None, None) => {}
                    (Some(major), None) => segments.push(major.to_string()),
                    (Some(major), Some(revision)) => {
                        segments.extend([major.to_string(), revision.to_string()]);
                    }
                    (None, Some(_)) => anyhow::bail!("--revision needs --major"),
                }
                segments
            }
            Self::TaskDef(name) => def("task-defs", name),
            Self::ExternalEventDef(name) => def("external-event-defs", name),
            Self::WorkflowEventDef(name) => def("workflow-event-defs", name),
            Self::UserTaskDef(name) => def("user-task-defs", name),
        })
    }

    /// The target's URL under `base` (any instance's HTTP base URL), each segment
    /// percent-encoded.
    pub fn url(&self, base: &str, tenant: &str) -> anyhow::Result<Url> {
        let mut url = Url::parse(base).with_context(|| format!("{base:?} is not a URL (--url)"))?;
        let segments = self.segments()?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("{base:?} cannot be a base URL (--url)"))?
            .pop_if_empty()
            .extend(["tenants", tenant])
            .extend(segments);
        Ok(url)
    }
}

/// The base URL when `--url` and `LHS_QUERY_URL` are not given: this machine, on
/// `LHS_METRICS_PORT` (9100 when unset or 0).
pub fn default_url(config: &WeirConfig) -> String {
    let port = config
        .metrics_port
        .filter(|&port| port != 0)
        .unwrap_or(DEFAULT_PORT);
    format!("http://127.0.0.1:{port}")
}

/// Asks `base` for `target` of `tenant`, following redirects, and prints the answer as
/// pretty JSON; a 4xx or 5xx answer is an error with the server's message.
pub async fn get(
    base: &str,
    tenant: &str,
    target: &GetTarget,
    timeout: Duration,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let url = target.url(base, tenant)?;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .context("building the HTTP client")?;
    let response = client
        .get(url.clone())
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let answered_by = response.url().clone();
    let body = response
        .text()
        .await
        .with_context(|| format!("reading the answer of {answered_by}"))?;
    let json: Option<Value> = serde_json::from_str(&body).ok();
    if !status.is_success() {
        let message = json
            .as_ref()
            .and_then(|j| j.get("error"))
            .and_then(Value::as_str)
            .map_or_else(|| body.trim().to_owned(), str::to_owned);
        anyhow::bail!("{answered_by} answered {status}: {message}");
    }
    let json = json.with_context(|| format!("{answered_by} answered with no JSON: {body}"))?;
    writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_become_percent_encoded_routes() -> anyhow::Result<()> {
        let base = "http://weir-1:9100";
        let url = |target: GetTarget| {
            target
                .url(base, "acme")
                .map(|u| u.to_string())
                .unwrap_or_else(|e| e.to_string())
        };
        assert_eq!(
            url(GetTarget::WfRun("order-1".to_owned())),
            "http://weir-1:9100/tenants/acme/wf-runs/order-1"
        );
        assert_eq!(
            url(GetTarget::Variables("a b/c".to_owned())),
            "http://weir-1:9100/tenants/acme/wf-runs/a%20b%2Fc/variables"
        );
        assert_eq!(
            url(GetTarget::WfSpec {
                name: "orders".to_owned(),
                major: Some(1),
                revision: Some(2),
            }),
            "http://weir-1:9100/tenants/acme/wf-specs/orders/1/2"
        );
        assert_eq!(
            url(GetTarget::TaskDef("ship-item".to_owned())),
            "http://weir-1:9100/tenants/acme/task-defs/ship-item"
        );
        assert_eq!(url(GetTarget::Tenant), "http://weir-1:9100/tenants/acme");
        let trailing = GetTarget::UserTaskRuns("r".to_owned()).url("http://h:1/", "t")?;
        assert_eq!(
            trailing.as_str(),
            "http://h:1/tenants/t/wf-runs/r/user-task-runs"
        );
        let revision_alone = GetTarget::WfSpec {
            name: "orders".to_owned(),
            major: None,
            revision: Some(2),
        };
        assert!(revision_alone.url(base, "acme").is_err());
        assert!(GetTarget::Tenant.url("not a url", "acme").is_err());
        Ok(())
    }

    #[test]
    fn the_default_url_follows_the_metrics_port() -> anyhow::Result<()> {
        let config = WeirConfig::from_lookup(|_| None)?;
        assert_eq!(default_url(&config), "http://127.0.0.1:9100");
        let config = WeirConfig::from_lookup(|name| {
            (name == "LHS_METRICS_PORT").then(|| "9464".to_owned())
        })?;
        assert_eq!(default_url(&config), "http://127.0.0.1:9464");
        Ok(())
    }
}
