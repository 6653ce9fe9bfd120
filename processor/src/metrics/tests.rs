//! The names in the README's Metrics section, the Grafana dashboard and the alert rules
//! are exactly names the code exports, so none of them can drift; `promtool` (from
//! Debian's `prometheus` package) checks the rules and runs their unit tests.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::exported;

fn repository_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repository_file(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Every `weir_…` metric name in `text`: a word starting with `weir_`, made of
/// lowercase letters, digits and underscores, and not followed by `-` (that is a topic
/// name, such as `weir_core-cmd`).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let is_name = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
    let mut start = 0;
    while let Some(found) = text[start..].find("weir_") {
        let at = start + found;
        let end = at + text[at..].bytes().take_while(|&b| is_name(b)).count();
        let preceded = at > 0 && (is_name(bytes[at - 1]) || bytes[at - 1].is_ascii_uppercase());
        let topic = bytes.get(end) == Some(&b'-');
        if !preceded && !topic {
            names.insert(text[at..end].to_owned());
        }
        start = end.max(at + 1);
    }
    names
}

/// A name as a query may write it, mapped to the metric it reads: a histogram's
/// `_bucket`, `_sum` and `_count` series belong to the histogram.
fn metric_of(name: &str) -> &str {
    for (histogram, _) in weir_topology::metrics::HISTOGRAMS {
        for suffix in ["_bucket", "_sum", "_count"] {
            if name.strip_suffix(suffix) == Some(histogram) {
                return histogram;
            }
        }
    }
    name
}

fn unknown_names(path: &str) -> Vec<String> {
    let known: BTreeSet<&str> = exported().into_iter().collect();
    metric_names(&read(path))
        .into_iter()
        .filter(|name| !known.contains(metric_of(name)))
        .collect()
}

#[test]
fn metric_names_are_found_in_text() {
    let text = "sum(rate(weir_records_processed_total[1m])) / weir_records_lag{source=\"weir_core-cmd\"} WeirLag";
    assert_eq!(
        metric_names(text),
        BTreeSet::from([
            "weir_records_lag".to_owned(),
            "weir_records_processed_total".to_owned(),
        ])
    );
    assert_eq!(
        metric_of("weir_commit_latency_seconds_bucket"),
        "weir_commit_latency_seconds"
    );
    assert_eq!(
        metric_of("weir_records_lag_count"),
        "weir_records_lag_count"
    );
}

#[test]
fn every_exported_name_is_a_prometheus_name_listed_once() {
    let names = exported();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(
        unique.len(),
        names.len(),
        "a name is listed twice: {names:?}"
    );
    for name in names {
        assert_eq!(metric_names(name), BTreeSet::from([name.to_owned()]));
    }
}

#[test]
fn the_readme_lists_every_exported_metric_and_no_other() {
    let readme = read("README.md");
    let section = readme
        .split("\n## Metrics\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the README has a Metrics section");
    // The table's first column: | `name` | type | labels | meaning |
    let listed: BTreeSet<String> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_owned)
        .collect();
    let exported: BTreeSet<String> = exported().into_iter().map(str::to_owned).collect();
    assert_eq!(
        listed.difference(&exported).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "listed in the README but not exported"
    );
    assert_eq!(
        exported.difference(&listed).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "exported but missing from the README's table"
    );
    // Every name the section's PromQL examples use is exported too.
    let promql: Vec<&str> = section
        .split("```promql\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .collect();
    assert!(!promql.is_empty(), "the section shows PromQL");
    let unknown: Vec<String> = metric_names(&promql.concat())
        .into_iter()
        .filter(|name| !exported.contains(metric_of(name)))
        .collect();
    assert_eq!(unknown, Vec::<String>::new(), "README PromQL");
}

#[test]
fn the_grafana_dashboard_reads_only_exported_metrics() {
    let path = "deploy/grafana/weir-dashboard.json";
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(path)).expect("the dashboard is JSON");
    let queries: Vec<&str> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .filter_map(|target| target["expr"].as_str())
        .collect();
    assert!(queries.len() >= 10, "{queries:?}");
    assert!(
        queries.iter().all(|query| !metric_names(query).is_empty()),
        "every query reads a weir metric: {queries:?}"
    );
    assert_eq!(unknown_names(path), Vec::<String>::new());
}

#[test]
fn the_alert_rules_read_only_exported_metrics_and_pass_promtool() {
    for path in [
        "deploy/prometheus/alerts.yml",
        "deploy/prometheus/alerts_test.yml",
    ] {
        assert_eq!(unknown_names(path), Vec::<String>::new(), "{path}");
    }
    let rules = read("deploy/prometheus/alerts.yml");
    for alert in ["WeirLagGrowing", "WeirDeadLetters", "WeirRestoreStuck"] {
        assert!(
            rules.contains(&format!("alert: {alert}\n")),
            "{alert} is missing"
        );
    }
    // promtool comes with Debian's prometheus package (scripts/install-system-deps.sh);
    // without it the test fails when `CI` is set, and says loudly what it skipped
    // otherwise.
    let dir = repository_file("deploy/prometheus");
    match Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg("alerts.yml")
        .current_dir(&dir)
        .output()
    {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            // CI runs `make test`, which installs it: missing there is a broken set-up.
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool is not installed, and CI is set: `make deps` \
                 (scripts/install-system-deps.sh) installs Debian's prometheus package"
            );
            eprintln!(
                "WARNING: promtool is not installed (`make deps` installs it): the alert \
                 rules were checked by name only, not by promtool check/test rules"
            );
        }
        Err(error) => panic!("running promtool: {error}"),
        Ok(checked) => {
            assert!(
                checked.status.success(),
                "promtool check rules: {}{}",
                String::from_utf8_lossy(&checked.stdout),
                String::from_utf8_lossy(&checked.stderr)
            );
            let tested = Command::new("promtool")
                .args(["test", "rules", "alerts_test.yml"])
                .current_dir(&dir)
                .output()
                .expect("running promtool test rules");
            assert!(
                tested.status.success(),
                "promtool test rules: {}{}",
                String::from_utf8_lossy(&tested.stdout),
                String::from_utf8_lossy(&tested.stderr)
            );
        }
    }
}
