//! Reading a tenant's committed WfRuns and variables from outside any server: the
//! `wf-runs`, `variables` and `task-runs` stores' changelog topics hold every committed change, so
//! reading them to their end gives what the servers hold (complete batches only). The
//! `orders` example and the integration tests watch runs finish this way.

use std::collections::BTreeMap;

use futures::future::try_join_all;
use prost::Message;
use weir_proto::{LhStatus, TaskRun, Variable, VariableValue, WfRun};
use weir_topology::kafka::{KafkaClient, KafkaError};
use weir_topology::{Topology, read_committed};

use crate::core::{keys, store_names};
use crate::topics::CoreTopics;

/// A WfRun as committed, with the values of its thread-0 variables.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSnapshot {
    pub wf_run: WfRun,
    pub variables: BTreeMap<String, VariableValue>,
}

impl RunSnapshot {
    pub fn status(&self) -> LhStatus {
        self.wf_run.status()
    }
}

/// Every committed WfRun of `tenant`, by id.
pub async fn wf_runs(
    client: &KafkaClient,
    cluster_id: &str,
    topics: &CoreTopics,
    tenant: &str,
) -> Result<BTreeMap<String, RunSnapshot>, KafkaError> {
    let prefix = keys::tenant_prefix(tenant);
    let runs = read_store(client, cluster_id, store_names::WF_RUNS, topics.partitions).await?;
    let variables = read_store(
        client,
        cluster_id,
        store_names::VARIABLES,
        topics.partitions,
    )
    .await?;
    let mut snapshots = BTreeMap::new();
    for (key, bytes) in runs {
        if !key.starts_with(&prefix) {
            continue;
        }
        let Ok(wf_run) = WfRun::decode(bytes.as_slice()) else {
            continue;
        };
        let id = wf_run.id.as_ref().map(|i| i.id.clone()).unwrap_or_default();
        snapshots.insert(
            id,
            RunSnapshot {
                wf_run,
                variables: BTreeMap::new(),
            },
        );
    }
    for (key, bytes) in variables {
        if !key.starts_with(&prefix) {
            continue;
        }
        let Ok(variable) = Variable::decode(bytes.as_slice()) else {
            continue;
        };
        let Some(id) = variable.id.as_ref().filter(|id| id.thread_run_number == 0) else {
            continue;
        };
        let run_id = id
            .wf_run_id
            .as_ref()
            .map(|w| w.id.clone())
            .unwrap_or_default();
        if let Some(snapshot) = snapshots.get_mut(&run_id) {
            snapshot
                .variables
                .insert(id.name.clone(), variable.value.clone().unwrap_or_default());
        }
    }
    Ok(snapshots)
}

/// Every committed TaskRun of `tenant`.
pub async fn task_runs(
    client: &KafkaClient,
    cluster_id: &str,
    topics: &CoreTopics,
    tenant: &str,
) -> Result<Vec<TaskRun>, KafkaError> {
    let prefix = keys::tenant_prefix(tenant);
    let entries = read_store(
        client,
        cluster_id,
        store_names::TASK_RUNS,
        topics.partitions,
    )
    .await?;
    Ok(entries
        .into_iter()
        .filter(|(key, _)| key.starts_with(&prefix))
        .filter_map(|(_, bytes)| TaskRun::decode(bytes.as_slice()).ok())
        .collect())
}

/// The committed contents of every partition of one store.
async fn read_store(
    client: &KafkaClient,
    cluster_id: &str,
    store: &str,
    partitions: i32,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, KafkaError> {
    let topic = Topology::changelog_topic(cluster_id, store);
    let reads = (0..partitions).map(|partition| {
        let topic = topic.clone();
        async move {
            let handle = client.partition(&topic, partition).await?;
            read_committed(&handle).await
        }
    });
    Ok(try_join_all(reads)
        .await?
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect())
}
