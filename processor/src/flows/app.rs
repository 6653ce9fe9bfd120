//! [`FlowsApp`]: running the flows of a manifest in a Rust program that holds their
//! transforms. The manifest is validated against the program's registry, the partition
//! counts come from the topics `weir flows apply` created (a missing one is an error
//! naming it), and the [`super::topology`] runs on a `weir-topology` runtime until
//! shutdown.
//!
//! A flow starts on a partition of its source with the first ingestion record it sees
//! there ([`super::cutover`]); a partition nobody writes to would never start its
//! initial load. So each start sends one start record ([`START_HEADER`], no key, an
//! empty value) to every partition of every ingestion topic that feeds a flow: it starts
//! what has not started and is passed over everywhere else.

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use std::collections::BTreeSet;

use weir_proto::FlowsManifest;
use weir_topology::kafka::{KafkaAdmin, KafkaClient, KafkaError};
use weir_topology::{RunningRuntime, Runtime, RuntimeError};

use super::manifest::{self, InvalidManifest, ManifestError, ValidManifest, flow_topics};
use super::topology::{
    FlowStores, FlowsOptions, FlowsTopologyError, PartitionCounts, START_HEADER,
    send_control_records, topology_with,
};
use super::transform::TransformRegistry;
use crate::config::{ConfigError, WeirConfig};

/// Why the flows cannot run.
#[derive(Debug, thiserror::Error)]
pub enum FlowsAppError {
    /// The manifest file cannot be read or parsed.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The manifest breaks a rule, or names a transform the program does not register.
    #[error(transparent)]
    Invalid(#[from] InvalidManifest),
    /// A topic the manifest needs does not exist.
    #[error(
        "topic {topic} ({purpose}) does not exist: apply the manifest first \
         (`weir flows apply FILE`)"
    )]
    MissingTopic { topic: String, purpose: String },
    /// A Kafka request failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The topology cannot be built.
    #[error(transparent)]
    Topology(#[from] FlowsTopologyError),
    /// The runtime failed to start.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `/metrics` cannot be served.
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
}

/// Where the manifest comes from.
#[derive(Debug, Clone)]
pub enum ManifestSource {
    /// A YAML or JSON file.
    Path(PathBuf),
    /// A manifest already read.
    Manifest(FlowsManifest),
}

impl From<PathBuf> for ManifestSource {
    fn from(path: PathBuf) -> Self {
        Self::Path(path)
    }
}

impl From<&str> for ManifestSource {
    fn from(path: &str) -> Self {
        Self::Path(PathBuf::from(path))
    }
}

impl From<FlowsManifest> for ManifestSource {
    fn from(manifest: FlowsManifest) -> Self {
        Self::Manifest(manifest)
    }
}

/// The flows of one manifest with the program's transforms.
#[derive(Debug, Clone)]
pub struct FlowsApp {
    manifest: ManifestSource,
    registry: Arc<TransformRegistry>,
    options: FlowsOptions,
}

/// Flows running on this instance.
#[derive(Debug)]
pub struct RunningFlows {
    runtime: RunningRuntime,
    /// The table stores, one per model version.
    pub stores: FlowStores,
}

impl RunningFlows {
    /// The tasks this instance runs.
    pub fn task_ids(&self) -> &[String] {
        &self.runtime.task_ids
    }

    /// Stops every task cleanly.
    pub async fn shutdown(self) {
        self.runtime.shutdown().await;
    }
}

impl FlowsApp {
    /// The flows of `manifest` (a path or a manifest) with the transforms of `registry`.
    pub fn new(manifest: impl Into<ManifestSource>, registry: TransformRegistry) -> Self {
        Self {
            manifest: manifest.into(),
            registry: Arc::new(registry),
            options: FlowsOptions::default(),
        }
    }

    /// The same flows, with `options` for the initial loads.
    #[must_use]
    pub fn with_options(mut self, options: FlowsOptions) -> Self {
        self.options = options;
        self
    }

    /// The manifest, read and validated against the registry.
    pub fn manifest(&self) -> Result<ValidManifest, FlowsAppError> {
        let manifest = match &self.manifest {
            ManifestSource::Path(path) => manifest::read(path)?,
            ManifestSource::Manifest(manifest) => manifest.clone(),
        };
        Ok(manifest::validate(manifest, Some(&self.registry))?)
    }

    /// Starts the runtime of the flows on the cluster of `config`.
    pub async fn start(&self, config: &WeirConfig) -> Result<RunningFlows, FlowsAppError> {
        let manifest = self.manifest()?;
        let admin = KafkaAdmin::connect(&config.kafka()).await?;
        let partitions = partition_counts(&admin, &manifest).await?;
        let (topology, stores) = topology_with(
            &manifest,
            Arc::clone(&self.registry),
            &partitions,
            config.replication_factor,
            self.options,
        )?;
        let runtime = Runtime::new(topology, config.runtime(), config.assignor()?)?;
        let runtime = runtime.start().await?;
        let client = KafkaClient::connect(&config.kafka()).await?;
        send_start_records(&client, &manifest, &partitions).await?;
        Ok(RunningFlows { runtime, stores })
    }

    /// Runs the flows until `shutdown` completes, printing `weir flows running tasks …`
    /// to `out` once every task has started, then stops them. With `LHS_METRICS_PORT`
    /// set it serves `/metrics` first ([`crate::http`]) and prints `weir flows http on
    /// {address} (/metrics)`.
    pub async fn run(
        &self,
        config: &WeirConfig,
        shutdown: impl Future<Output = ()>,
        out: &mut impl Write,
    ) -> Result<(), FlowsAppError> {
        // First, so every metric registered from here on is recorded.
        let http = crate::http::start(config).await?;
        if let Some(http) = &http {
            let _ = writeln!(out, "weir flows http on {} (/metrics)", http.local_addr());
        }
        let running = self.start(config).await?;
        // The running line is for people and scripts; a closed stdout does not stop us.
        let _ = writeln!(
            out,
            "weir flows running tasks {}",
            running.task_ids().join(",")
        );
        let _ = out.flush();
        shutdown.await;
        running.shutdown().await;
        if let Some(http) = http {
            http.shutdown().await;
        }
        let _ = writeln!(out, "weir flows stopped");
        let _ = out.flush();
        Ok(())
    }
}

/// The partition counts of the manifest's ingestion topics; every topic the manifest
/// needs (ingestion and flow topics) must exist.
async fn partition_counts(
    admin: &KafkaAdmin,
    manifest: &ValidManifest,
) -> Result<PartitionCounts, FlowsAppError> {
    let mut needed: Vec<(String, String)> = manifest
        .models()
        .map(|(id, _)| (id.ingestion_topic(), format!("ingestion topic of {id}")))
        .collect();
    for flow in manifest.flows() {
        if let Some(topics) = flow_topics(flow) {
            needed.push((topics.input(), format!("input topic of flow {}", flow.name)));
            needed.push((
                topics.output(),
                format!("output topic of flow {}", flow.name),
            ));
        }
    }
    let names: Vec<String> = needed.iter().map(|(n, _)| n.clone()).collect();
    let existing = admin.list_topics().await?;
    if let Some((topic, purpose)) = needed.iter().find(|(n, _)| !existing.contains(n)) {
        return Err(FlowsAppError::MissingTopic {
            topic: topic.clone(),
            purpose: purpose.clone(),
        });
    }
    let described = admin.describe_topics(&names).await?;
    let mut counts = PartitionCounts::new();
    for (id, _) in manifest.models() {
        let topic = id.ingestion_topic();
        if let Some(d) = described.iter().find(|d| d.name == topic) {
            counts.insert(
                id.clone(),
                i32::try_from(d.partitions.len()).unwrap_or(i32::MAX),
            );
        }
    }
    Ok(counts)
}

/// One start record to each partition of each ingestion topic that feeds a flow.
async fn send_start_records(
    client: &KafkaClient,
    manifest: &ValidManifest,
    partitions: &PartitionCounts,
) -> Result<(), FlowsAppError> {
    let sources: BTreeSet<_> = manifest
        .flows()
        .iter()
        .filter_map(flow_topics)
        .map(|topics| topics.source)
        .collect();
    for source in sources {
        let count = partitions.get(&source).copied().unwrap_or(0);
        send_control_records(client, &source.ingestion_topic(), count, START_HEADER, b"").await?;
    }
    Ok(())
}
