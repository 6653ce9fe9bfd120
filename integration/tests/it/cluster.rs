//! A cluster for tests of the real workflow core: a namespace, the configuration the
//! test's own clients and workers use, a state directory for its `weir server`
//! processes, and the committed runs read back from the stores' changelogs.

use std::collections::BTreeMap;
use std::time::Duration;

use weir_integration::{TestNamespace, WeirProcess};
use weir_processor::config::WeirConfig;
use weir_processor::inspect::{self, RunSnapshot};
use weir_processor::topics::CoreTopics;
use weir_proto::LhStatus;
use weir_topology::kafka::KafkaClient;

/// How long a server may take to start or stop.
pub(crate) const START_WAIT: Duration = Duration::from_secs(60);

/// A namespace with a state directory for its server and the configuration the test's
/// own client and workers use.
pub(crate) struct Cluster {
    pub(crate) ns: TestNamespace,
    pub(crate) config: WeirConfig,
    /// The namespace's environment and the extra variables: what `weir` processes get.
    env: Vec<(String, String)>,
    state: tempfile::TempDir,
}

impl Cluster {
    /// How many partitions `topic` has (it must exist).
    pub(crate) async fn partition_count(&self, topic: &str) -> usize {
        let described = self
            .ns
            .admin()
            .await
            .describe_topics(&[topic.to_owned()])
            .await
            .unwrap_or_else(|e| panic!("describing {topic}: {e}"));
        described[0].partitions.len()
    }

    /// A cluster with the default configuration (12 partitions).
    pub(crate) async fn new(name: &str) -> Self {
        let cluster = Self::with_env(name, &[]).await;
        assert_eq!(
            cluster.config.cluster_partitions, 12,
            "the default partition count"
        );
        cluster
    }

    /// A cluster whose server, clients and CLI invocations also get the `extra`
    /// variables.
    pub(crate) async fn with_env(name: &str, extra: &[(&str, &str)]) -> Self {
        let ns = TestNamespace::new(name).await;
        let mut env = ns.env();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let vars: BTreeMap<String, String> = env.iter().cloned().collect();
        let config =
            WeirConfig::from_lookup(|name| vars.get(name).cloned()).expect("configuration");
        let state = tempfile::tempdir().expect("state dir");
        Self {
            ns,
            config,
            env,
            state,
        }
    }

    /// The environment a `weir` command needs to reach this cluster.
    pub(crate) fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The state directory of the cluster's processes.
    pub(crate) fn state_dir(&self) -> &std::path::Path {
        self.state.path()
    }

    /// [`Self::env`] and the state directory: what a process that runs tasks gets.
    pub(crate) fn process_env(&self) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        env.push((
            "LHS_STATE_DIR".to_owned(),
            self.state.path().display().to_string(),
        ));
        env
    }

    /// Starts `weir server` on the cluster and waits until its tasks run.
    pub(crate) async fn start_server(&self, name: &str) -> WeirProcess {
        let mut server = WeirProcess::start(name, &["server"], &self.process_env());
        server
            .wait_for_stdout(START_WAIT, "the server's running line", |out| {
                out.contains("weir server running tasks ")
            })
            .await;
        server
    }

    /// Every committed WfRun of `tenant`, by id.
    pub(crate) async fn runs(&self, tenant: &str) -> BTreeMap<String, RunSnapshot> {
        let kafka = KafkaClient::connect(&self.config.kafka())
            .await
            .expect("kafka");
        inspect::wf_runs(
            &kafka,
            &self.config.cluster_id,
            &CoreTopics::new(&self.config),
            tenant,
        )
        .await
        .expect("reading runs")
    }

    /// How many committed runs of `tenant` whose id starts with `prefix` have ended.
    pub(crate) async fn finished(&self, tenant: &str, prefix: &str) -> usize {
        self.runs(tenant)
            .await
            .iter()
            .filter(|(id, run)| id.starts_with(prefix) && run.status() != LhStatus::Running)
            .count()
    }
}

/// Stops a server (or any weir process) with SIGTERM, checks that it exits cleanly,
/// and returns it, for its output.
pub(crate) async fn stop_server(mut server: WeirProcess) -> WeirProcess {
    server.sigterm();
    let status = server.wait_for_exit(START_WAIT).await;
    assert!(
        status.success(),
        "server exit {status}; stderr: {}",
        server.stderr()
    );
    server
}

/// The `127.0.0.1:{port}` of a weir process's HTTP side (`/metrics`, and queries for a
/// server), from the `{program} http on 0.0.0.0:{port} …` line in its output `out`
/// (`program`: `weir server`, `weir flows`).
pub(crate) fn http_target(out: &str, program: &str) -> String {
    let http_line = format!("{program} http on ");
    let port = out
        .lines()
        .find_map(|line| line.strip_prefix(&http_line))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|address| address.rsplit(':').next())
        .and_then(|port| port.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no `{http_line}{{address}}:{{port}}` line in {out:?}"));
    format!("127.0.0.1:{port}")
}
