//! The workflow core: the topology that turns commands into workflow objects.
//!
//! Two sub-topologies share one [`Topology`]:
//! - `metadata` reads the single-partition `metadata-cmd` topic; its processor
//!   ([`metadata_processor`]) validates and versions metadata and keeps it in the
//!   `metadata` store, which every instance replicates as a global store;
//! - `core` reads `core-cmd` (one task per partition, keyed by WfRun id); its processor
//!   ([`execution`]) runs WfRuns, schedules tasks on the task queues and takes the
//!   workers' reports.
//!
//! Both answer every command with a `CommandResult` on `command-results`
//! ([`results`]). Store keys are laid out in [`keys`]; metadata is read through
//! [`metadata_view`] whichever side reads it.

pub mod execution;
pub mod keys;
pub mod metadata_processor;
pub mod metadata_view;
pub mod results;

use std::sync::Arc;

use weir_proto::{
    ExternalEvent, NodeRun, StoredMetadata, TaskRun, UserTaskRun, Variable, WfRun, WorkflowEvent,
};
use weir_topology::{GlobalStoreHandle, SourceTopic, StoreHandle, Topology, TopologyError};

use crate::topics::CoreTopics;

/// Store names; each store's changelog is `{cluster}_{name}-changelog`.
pub mod store_names {
    pub const METADATA: &str = "metadata";
    pub const WF_RUNS: &str = "wf-runs";
    pub const NODE_RUNS: &str = "node-runs";
    pub const TASK_RUNS: &str = "task-runs";
    pub const VARIABLES: &str = "variables";
    pub const EXTERNAL_EVENTS: &str = "external-events";
    pub const WORKFLOW_EVENTS: &str = "workflow-events";
    pub const USER_TASK_RUNS: &str = "user-task-runs";
}

/// Handles on every store of the core topology.
#[derive(Debug, Clone)]
pub struct CoreStores {
    /// The metadata store, as its owner (the metadata processor) writes it.
    pub metadata: StoreHandle<StoredMetadata>,
    /// The same store, as every core task reads its local replica.
    pub metadata_global: GlobalStoreHandle<StoredMetadata>,
    pub wf_runs: StoreHandle<WfRun>,
    pub node_runs: StoreHandle<NodeRun>,
    pub task_runs: StoreHandle<TaskRun>,
    pub variables: StoreHandle<Variable>,
    pub external_events: StoreHandle<ExternalEvent>,
    pub workflow_events: StoreHandle<WorkflowEvent>,
    pub user_task_runs: StoreHandle<UserTaskRun>,
}

/// Builds the workflow core's topology for the topics of one cluster.
pub fn topology(topics: &CoreTopics) -> Result<(Topology, Arc<CoreStores>), TopologyError> {
    use store_names::*;
    let mut topology = Topology::new();
    let metadata = topology.store::<StoredMetadata>(METADATA)?;
    let stores = Arc::new(CoreStores {
        metadata_global: topology.global_store(&metadata),
        metadata,
        wf_runs: topology.store(WF_RUNS)?,
        node_runs: topology.store(NODE_RUNS)?,
        task_runs: topology.store(TASK_RUNS)?,
        variables: topology.store(VARIABLES)?,
        external_events: topology.store(EXTERNAL_EVENTS)?,
        workflow_events: topology.store(WORKFLOW_EVENTS)?,
        user_task_runs: topology.store(USER_TASK_RUNS)?,
    });

    let metadata_stores = Arc::clone(&stores);
    let metadata_topics = topics.clone();
    topology.add_subtopology(
        "metadata",
        vec![SourceTopic::new(topics.metadata_cmd(), 1)],
        &[METADATA],
        move |_| {
            Box::new(metadata_processor::MetadataProcessor::new(
                Arc::clone(&metadata_stores),
                metadata_topics.clone(),
            ))
        },
    )?;

    let core_stores = Arc::clone(&stores);
    let core_topics = topics.clone();
    topology.add_subtopology(
        "core",
        vec![SourceTopic::new(topics.core_cmd(), topics.partitions)],
        &[
            WF_RUNS,
            NODE_RUNS,
            TASK_RUNS,
            VARIABLES,
            EXTERNAL_EVENTS,
            WORKFLOW_EVENTS,
            USER_TASK_RUNS,
        ],
        move |_| {
            Box::new(execution::CoreProcessor::new(
                Arc::clone(&core_stores),
                core_topics.clone(),
            ))
        },
    )?;
    topology.sink(topics.command_results_spec());
    Ok((topology, stores))
}
