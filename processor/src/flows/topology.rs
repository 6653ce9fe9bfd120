//! The runtime topology of a validated flows manifest: which sub-topologies read which
//! topics, which stores they own, and which topics they write. The processors
//! themselves are in [`super::ingest`] (a model version's table) and
//! [`super::flow_task`] (a flow's transform, and the copier of a regular flow).
//!
//! | sub-topology              | sources                                        | store        | writes                                   |
//! |---------------------------|------------------------------------------------|--------------|------------------------------------------|
//! | `flows-model.{Model}_{M}_{m}` | ingestion topic; output of the migration into this version | the table; `{table}-initial-load` | input topics of the flows from this version |
//! | `flows-flow.{flow}`       | the flow's input topic                         | none         | the flow's output topic                  |
//! | `flows-copy.{flow}`       | a regular flow's output topic                  | none         | the target's ingestion topic             |
//!
//! Partitions. Each model version's ingestion topic has the partition count given in
//! [`PartitionCounts`] (what exists on the cluster, or what `weir flows apply` creates);
//! a flow's input and output topics have its source's count, so a record keeps its
//! partition number from the ingestion topic to the flow's output. A migration's output
//! is a second source of the target version's sub-topology, so the two versions of a
//! migration must have the same count: [`topology`] refuses otherwise
//! ([`FlowsTopologyError::MigrationPartitions`]); a migration across partition counts
//! would need a repartition topic in between, which is not built. A regular flow's
//! target may have any count: the copier places each record on the target ingestion
//! topic's partition that Kafka's default partitioner picks for its key
//! ([`crate::topics::partition_for_key`]), where a producer would have put it.
//!
//! The initial load ([`super::cutover`]) runs in the model version's sub-topology,
//! whose task is the only writer of the table: it keeps each flow's
//! `InitialLoadProgress` in the version's `{table}-initial-load` store
//! ([`FlowStores::initial_load`]), copies live records from the load's start position
//! on, and loads the table's history to the flow's input with timer ticks of
//! [`FlowsOptions::load_chunk`] rows ([`super::ingest`]). A migration flow and a regular
//! flow with `initial_load: true` load; any other flow starts live, without history.

use std::collections::BTreeMap;
use std::sync::Arc;

use weir_proto::flow::FlowKind;
use weir_proto::{Flow, InitialLoadProgress, TableRow};
use weir_topology::kafka::{KafkaClient, KafkaError, Record, TopicSpec};
use weir_topology::{SourceTopic, StoreHandle, Topology, TopologyError};

use super::flow_task::{CopyProcessor, FlowProcessor};
use super::ingest::{FlowFeed, IngestParts, IngestProcessor, TableSource};
use super::manifest::{ValidManifest, flow_topics, needs_initial_load};
use super::naming::ModelVersion;
use super::transform::TransformRegistry;

/// The partition count of each model version's ingestion topic.
pub type PartitionCounts = BTreeMap<ModelVersion, i32>;

/// The same partition count for every model version of `manifest`.
pub fn uniform_partitions(manifest: &ValidManifest, partitions: i32) -> PartitionCounts {
    manifest
        .models()
        .map(|(id, _)| (id.clone(), partitions))
        .collect()
}

/// A flows topology that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum FlowsTopologyError {
    /// A model version has no partition count.
    #[error("no partition count for {0} (ingestion topic {topic})", topic = .0.ingestion_topic())]
    NoPartitions(ModelVersion),
    /// A partition count below one.
    #[error("{model}: partition count {partitions} is not positive")]
    BadPartitions {
        model: ModelVersion,
        partitions: i32,
    },
    /// A flow's transform is not registered in this program.
    #[error("flow {flow:?}: transform {transform:?} is not registered in this program")]
    UnknownTransform { flow: String, transform: String },
    /// A migration between versions with different partition counts.
    #[error(
        "migration flow {flow:?}: {source_model} has {source_partitions} partitions but \
         {target_model} has {target_partitions}; a migration writes partition p of its output \
         straight to partition p of the target table, so both versions need the same count"
    )]
    MigrationPartitions {
        flow: String,
        source_model: ModelVersion,
        source_partitions: i32,
        target_model: ModelVersion,
        target_partitions: i32,
    },
    /// The runtime refused the topology.
    #[error("flows topology: {0}")]
    Topology(#[from] TopologyError),
}

/// A record header that makes a record of an ingestion topic a start record: not data,
/// it starts the initial load (or the live copy) of every flow from that version that
/// has not started on its partition. A partition otherwise starts with its first record
/// after the flow appears.
pub const START_HEADER: &str = "weir-flows-start";

/// A record header that makes a record of an ingestion topic a forget record: not data,
/// it ends the flow its value names on that partition. Its initial load progress is
/// dropped there, so were the flow declared again it would be a new flow with a load of
/// its own; a process that still runs the flow starts it again at that offset.
/// `weir flows apply` writes one to every partition of a removed flow's source, so the
/// removal takes effect in order with the records around it, whether or not a flows
/// process runs before the flow is declared again.
pub const FORGET_HEADER: &str = "weir-flows-forget";

/// Writes one control record (no key, `value`, the `header`) to each of the first
/// `partitions` partitions of `topic`: the start records ([`START_HEADER`]) the flows
/// process sends when it starts, and the forget records ([`FORGET_HEADER`]) `weir flows
/// apply` sends when it removes a flow.
pub(super) async fn send_control_records(
    client: &KafkaClient,
    topic: &str,
    partitions: i32,
    header: &str,
    value: &[u8],
) -> Result<(), KafkaError> {
    for partition in 0..partitions {
        let record = Record {
            key: None,
            value: Some(value.to_vec()),
            headers: BTreeMap::from([(header.to_owned(), Vec::new())]),
            timestamp: chrono::Utc::now(),
        };
        client
            .partition(topic, partition)
            .await?
            .produce(vec![record])
            .await?;
    }
    Ok(())
}

/// Table rows the initial load wrote to a flow's input topic, by `flow`.
pub const LOAD_RECORDS_METRIC: &str = "weir_flows_initial_load_records_total";
/// Table rows the initial load passed because the live path had copied them, by `flow`.
pub const LOAD_SKIPPED_METRIC: &str = "weir_flows_initial_load_skipped_total";
/// 1 once a flow's history is loaded on a partition, 0 while it loads; by `flow` and
/// `partition`.
pub const LOAD_DONE_METRIC: &str = "weir_flows_initial_load_done";

/// How the initial loads run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowsOptions {
    /// Table rows one tick of the loader visits (at least one).
    pub load_chunk: usize,
    /// Milliseconds from one tick of the loader to the next.
    pub load_tick_ms: i64,
}

impl Default for FlowsOptions {
    fn default() -> Self {
        Self {
            load_chunk: 500,
            load_tick_ms: 10,
        }
    }
}

/// The store of the initial load progress of the flows from model version `model`.
pub fn initial_load_store(model: &ModelVersion) -> String {
    format!("{}-initial-load", model.table())
}

/// The sub-topology that keeps `model`'s table and feeds the flows from it.
pub fn model_subtopology(model: &ModelVersion) -> String {
    format!("flows-model.{}", model.table())
}

/// The sub-topology that runs the transform of the flow named `flow`.
pub fn flow_subtopology(flow: &str) -> String {
    format!("flows-flow.{flow}")
}

/// The sub-topology that copies the output of the regular flow named `flow` to its
/// target's ingestion topic.
pub fn copy_subtopology(flow: &str) -> String {
    format!("flows-copy.{flow}")
}

/// The stores the runtime adds to every sub-topology: its timers and its outputs
/// waiting for their topic. Their changelogs also hold the sub-topology's input
/// positions (in the commit markers), so a sub-topology whose input topics are
/// deleted loses them too.
pub fn runtime_stores(subtopology: &str) -> [String; 2] {
    [
        Topology::timer_store(subtopology),
        Topology::parked_store(subtopology),
    ]
}

/// Every store of `model`'s sub-topology besides its table: the initial load progress
/// and the runtime's stores ([`runtime_stores`]).
pub fn model_state_stores(model: &ModelVersion) -> Vec<String> {
    let mut stores = vec![initial_load_store(model)];
    stores.extend(runtime_stores(&model_subtopology(model)));
    stores
}

/// Every store of the sub-topologies of `flow` (its transform, and for a regular flow
/// its copier): the runtime's stores; a flow has none of its own.
pub fn flow_state_stores(flow: &Flow) -> Vec<String> {
    let mut stores = runtime_stores(&flow_subtopology(&flow.name)).to_vec();
    if flow.kind != FlowKind::Migration as i32 {
        stores.extend(runtime_stores(&copy_subtopology(&flow.name)));
    }
    stores
}

/// The table stores of a flows topology, one per model version, and the initial load
/// progress stores beside them.
#[derive(Debug, Clone, Default)]
pub struct FlowStores {
    tables: BTreeMap<ModelVersion, StoreHandle<TableRow>>,
    initial_load: BTreeMap<ModelVersion, StoreHandle<InitialLoadProgress>>,
}

impl FlowStores {
    /// The table of `model`, if the manifest declares it.
    pub fn table(&self, model: &ModelVersion) -> Option<&StoreHandle<TableRow>> {
        self.tables.get(model)
    }

    /// The initial load progress of the flows from `model`, keyed by flow name.
    pub fn initial_load(&self, model: &ModelVersion) -> Option<&StoreHandle<InitialLoadProgress>> {
        self.initial_load.get(model)
    }

    /// Every table, in model version order.
    pub fn tables(&self) -> impl Iterator<Item = (&ModelVersion, &StoreHandle<TableRow>)> {
        self.tables.iter()
    }
}

/// Builds the topology that runs every model version and flow of `manifest`, with
/// `partitions` for the ingestion topics and `replication_factor` for every topic it
/// declares. Each flow's transform must be registered in `registry`.
pub fn topology(
    manifest: &ValidManifest,
    registry: Arc<TransformRegistry>,
    partitions: &PartitionCounts,
    replication_factor: i16,
) -> Result<(Topology, FlowStores), FlowsTopologyError> {
    topology_with(
        manifest,
        registry,
        partitions,
        replication_factor,
        FlowsOptions::default(),
    )
}

/// [`topology`] with `options` for the initial loads.
pub fn topology_with(
    manifest: &ValidManifest,
    registry: Arc<TransformRegistry>,
    partitions: &PartitionCounts,
    replication_factor: i16,
    options: FlowsOptions,
) -> Result<(Topology, FlowStores), FlowsTopologyError> {
    let count = |model: &ModelVersion| -> Result<i32, FlowsTopologyError> {
        match partitions.get(model) {
            None => Err(FlowsTopologyError::NoPartitions(model.clone())),
            Some(&n) if n < 1 => Err(FlowsTopologyError::BadPartitions {
                model: model.clone(),
                partitions: n,
            }),
            Some(&n) => Ok(n),
        }
    };
    let mut topology = Topology::new();
    let mut stores = FlowStores::default();
    let mut sinks: BTreeMap<String, i32> = BTreeMap::new();

    // Flows first: their checks come before any sub-topology is added.
    for flow in manifest.flows() {
        let Some(topics) = flow_topics(flow) else {
            continue;
        };
        if !registry.contains(&flow.transform) {
            return Err(FlowsTopologyError::UnknownTransform {
                flow: flow.name.clone(),
                transform: flow.transform.clone(),
            });
        }
        let source_partitions = count(&topics.source)?;
        let target_partitions = count(&topics.target)?;
        let migration = flow.kind == FlowKind::Migration as i32;
        if migration && source_partitions != target_partitions {
            return Err(FlowsTopologyError::MigrationPartitions {
                flow: flow.name.clone(),
                source_model: topics.source.clone(),
                source_partitions,
                target_model: topics.target.clone(),
                target_partitions,
            });
        }
    }

    for (id, model) in manifest.models() {
        let partitions = count(id)?;
        let handle = topology.store::<TableRow>(&id.table())?;
        let progress_store = initial_load_store(id);
        let progress = topology.store::<InitialLoadProgress>(&progress_store)?;
        let mut sources = vec![SourceTopic::new(id.ingestion_topic(), partitions)];
        let mut kinds: Vec<(Arc<str>, TableSource)> =
            vec![(Arc::from(id.ingestion_topic()), TableSource::Ingestion)];
        let mut flows = Vec::new();
        for flow in manifest.flows() {
            let Some(topics) = flow_topics(flow) else {
                continue;
            };
            if topics.source == *id {
                flows.push(FlowFeed {
                    flow: flow.name.clone(),
                    input_topic: topics.input(),
                    initial_load: needs_initial_load(flow),
                });
                sinks.insert(topics.input(), partitions);
            }
            if topics.target == *id && flow.kind == FlowKind::Migration as i32 {
                sources.push(SourceTopic::new(topics.output(), partitions));
                kinds.push((
                    Arc::from(topics.output()),
                    TableSource::Migration {
                        flow: flow.name.clone(),
                    },
                ));
            }
        }
        let model = Arc::new(model.clone());
        let parts = IngestParts {
            table: handle.clone(),
            sources: Arc::new(kinds),
            flows: Arc::new(flows),
            progress: progress.clone(),
            ingestion_topic: Arc::from(id.ingestion_topic()),
            options,
        };
        let name = id.to_string();
        topology.add_subtopology(
            &model_subtopology(id),
            sources,
            &[&id.table(), &progress_store],
            move |_partition| {
                Box::new(IngestProcessor::new(
                    name.clone(),
                    Arc::clone(&model),
                    parts.clone(),
                ))
            },
        )?;
        stores.tables.insert(id.clone(), handle);
        stores.initial_load.insert(id.clone(), progress);
    }

    for flow in manifest.flows() {
        let Some(topics) = flow_topics(flow) else {
            continue;
        };
        let (Some(source), Some(target)) = (
            manifest.model(&topics.source),
            manifest.model(&topics.target),
        ) else {
            continue;
        };
        let source_partitions = count(&topics.source)?;
        let migration = flow.kind == FlowKind::Migration as i32;
        let processor = FlowProcessor::new(
            flow.name.clone(),
            flow.transform.clone(),
            Arc::clone(&registry),
            Arc::new(source.clone()),
            Arc::new(target.clone()),
            topics.output(),
            migration,
        );
        topology.add_subtopology(
            &flow_subtopology(&flow.name),
            vec![SourceTopic::new(topics.input(), source_partitions)],
            &[],
            move |_partition| Box::new(processor.clone()),
        )?;
        sinks.insert(topics.output(), source_partitions);
        if !migration {
            let target_topic = topics.target.ingestion_topic();
            let target_partitions = count(&topics.target)?;
            let copier =
                CopyProcessor::new(flow.name.clone(), target_topic.clone(), target_partitions);
            topology.add_subtopology(
                &copy_subtopology(&flow.name),
                vec![SourceTopic::new(topics.output(), source_partitions)],
                &[],
                move |_partition| Box::new(copier.clone()),
            )?;
            sinks.insert(target_topic, target_partitions);
        }
    }

    for (name, partitions) in sinks {
        topology.sink(TopicSpec::new(name, partitions, replication_factor));
    }
    topology.validate()?;
    Ok((topology, stores))
}
