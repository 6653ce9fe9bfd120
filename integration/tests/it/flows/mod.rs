//! Flows against the real broker: `weir flows plan/apply` and `weir table` ([`cli`]),
//! ingestion into tables and transforms with dead letters ([`ingest`]), initial loads
//! while producers write, with a crash in the middle ([`load`]), a model removed with
//! its data and declared again ([`removal`]), and the example's demo (`make run-flows`,
//! [`demo`]).
//!
//! Flows topics carry no cluster prefix, so each test renames the example's models after
//! its namespace ([`FlowsCluster`]); the example's transforms and generator
//! (`weir_examples::flows_demo`) serve unchanged.

mod cli;
mod demo;
mod ingest;
mod load;
mod removal;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use weir_examples::flows_demo::{self, MANIFEST, Producer};
use weir_integration::WeirProcess;
use weir_processor::flows::naming::ModelVersion;
use weir_proto::DataModelVersion;

use crate::cluster::Cluster;

/// How long a `weir` command or a flows process may take to start.
const START_WAIT: Duration = Duration::from_secs(60);

/// A cluster for flows tests: its own model names, manifest files in a temp directory.
pub(crate) struct FlowsCluster {
    pub(crate) cluster: Cluster,
    /// `UserActivity` followed by the namespace.
    pub(crate) user_activity: String,
    /// `ParsedActivity` followed by the namespace.
    pub(crate) parsed_activity: String,
    files: tempfile::TempDir,
}

impl FlowsCluster {
    pub(crate) async fn new(name: &str) -> Self {
        let cluster = Cluster::with_env(name, &[]).await;
        let suffix: String = cluster
            .ns
            .cluster_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        Self {
            cluster,
            user_activity: format!("UserActivity{suffix}"),
            parsed_activity: format!("ParsedActivity{suffix}"),
            files: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The example manifest with this cluster's model names.
    pub(crate) fn manifest(&self) -> String {
        MANIFEST
            .replace("UserActivity", &self.user_activity)
            .replace("ParsedActivity", &self.parsed_activity)
    }

    /// The example manifest's models, without its flows.
    pub(crate) fn models_only(&self) -> String {
        let text = self.manifest();
        let flows = text.find("\nflows:").expect("the example declares flows");
        text[..flows].to_owned()
    }

    /// Writes `text` to the file `name` and returns its path.
    pub(crate) fn write(&self, name: &str, text: &str) -> String {
        let path: PathBuf = self.files.path().join(name);
        std::fs::write(&path, text).expect("manifest written");
        path.display().to_string()
    }

    /// `UserActivity` (or `ParsedActivity`, by its example name) `0.minor` here.
    pub(crate) fn model(&self, example_name: &str, minor: u32) -> ModelVersion {
        let name = match example_name {
            "UserActivity" => &self.user_activity,
            "ParsedActivity" => &self.parsed_activity,
            other => panic!("the example has no model {other}"),
        };
        ModelVersion::new(name, &DataModelVersion { major: 0, minor })
    }

    /// `weir flows apply FILE --partitions N`; its output.
    pub(crate) async fn apply(&self, file: &str, partitions: i32) -> String {
        let partitions = partitions.to_string();
        WeirProcess::run_ok(
            "flows-apply",
            &["flows", "apply", file, "--partitions", &partitions],
            self.cluster.env(),
            START_WAIT,
        )
        .await
    }

    /// Starts the example's `flows run FILE` with `extra` variables and waits until its
    /// tasks run.
    pub(crate) async fn start_flows(
        &self,
        name: &str,
        file: &str,
        extra: &[(&str, &str)],
    ) -> WeirProcess {
        let mut env = self.cluster.process_env();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let mut flows = WeirProcess::start_example("flows", name, &["run", file], &env);
        flows
            .wait_for_stdout(START_WAIT, "the flows' running line", |out| {
                out.contains("weir flows running tasks ")
            })
            .await;
        flows
    }

    /// Produces `records` to `model`'s ingestion topic (`what` names them should it
    /// fail).
    pub(crate) async fn produce(
        &self,
        model: &ModelVersion,
        records: Vec<(String, Value)>,
        what: &str,
    ) {
        Producer::connect(&self.cluster.config, model)
            .await
            .expect("producer")
            .send(records)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }

    /// Waits until `model`'s table equals `expected`, for each pair.
    pub(crate) async fn wait_for_tables(
        &self,
        timeout: Duration,
        what: &str,
        expected: &[(&ModelVersion, &BTreeMap<String, Value>)],
    ) {
        wait_until(timeout, what, || async {
            for (model, rows) in expected {
                let table = self.table(model).await;
                if let Some(difference) = table_difference(&model.to_string(), &table, rows) {
                    return Some(difference);
                }
            }
            None
        })
        .await;
    }

    /// The committed rows of `model`'s table.
    pub(crate) async fn table(&self, model: &ModelVersion) -> BTreeMap<String, Value> {
        flows_demo::table_values(&self.cluster.config, model)
            .await
            .unwrap_or_else(|e| panic!("reading table {}: {e:#}", model.table()))
    }
}

/// Polls `check` every half second until it gives `None`; past `timeout`, panics with
/// `what` and the last `Some(reason)` it gave.
pub(crate) async fn wait_until<F, Fut>(timeout: Duration, what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let Some(reason) = check().await else {
            return;
        };
        assert!(
            Instant::now() < deadline,
            "waited {timeout:?} for {what}: {reason}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `None` if `table` equals `expected`, else a short account of how they differ.
pub(crate) fn table_difference(
    name: &str,
    table: &BTreeMap<String, Value>,
    expected: &BTreeMap<String, Value>,
) -> Option<String> {
    if table == expected {
        return None;
    }
    let missing = expected.keys().filter(|k| !table.contains_key(*k)).count();
    let extra = table.keys().filter(|k| !expected.contains_key(*k)).count();
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(k, v)| table.get(*k).is_some_and(|t| t != *v))
        .take(3)
        .map(|(k, v)| format!("{k}: {} instead of {v}", table[k]))
        .collect();
    Some(format!(
        "{name}: {} rows for {} expected, {missing} missing, {extra} unexpected, values \
         differ for e.g. {wrong:?}",
        table.len(),
        expected.len()
    ))
}
