//! The hand-built topology: named stores, sub-topologies (co-partitioned sources, the
//! stores they own and the processor that handles their records), global stores, and
//! the sink topics the runtime makes sure exist.
//!
//! A sub-topology runs as one task per partition of its sources; the task with
//! partition `p` reads partition `p` of every source and owns partition `p` of each of
//! its stores' changelogs.

use std::fmt;
use std::sync::Arc;

use weir_state::{StoreId, TaskDb};

use crate::kafka::TopicSpec;
use crate::processor::Processor;
use crate::store::{GlobalStoreHandle, StoreHandle};

/// Builds the processor of one task, given the task's partition.
pub type ProcessorFactory = Arc<dyn Fn(i32) -> Box<dyn Processor> + Send + Sync>;

/// A topology that does not hold together.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("store {0} is declared twice")]
    DuplicateStore(String),
    #[error(
        "store {store} is bound to sub-topologies {first} and {second}; a store belongs to one"
    )]
    StoreBoundTwice {
        store: String,
        first: String,
        second: String,
    },
    #[error("sub-topology {subtopology} names store {store}, which was never declared")]
    UnknownStore { subtopology: String, store: String },
    #[error("sub-topology {0} is declared twice")]
    DuplicateSubtopology(String),
    #[error("sub-topology {0} has no source topic")]
    NoSource(String),
    #[error(
        "sub-topology {subtopology}: source {topic} has {partitions} partitions, but co-partitioned sources need {expected}"
    )]
    NotCoPartitioned {
        subtopology: String,
        topic: String,
        partitions: i32,
        expected: i32,
    },
    #[error("global store {0} is not owned by any sub-topology")]
    UnownedGlobalStore(String),
    #[error("{kind} name {name:?} may hold only letters, digits, '.', '_' and '-'")]
    BadName { kind: &'static str, name: String },
}

/// A source topic of a sub-topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTopic {
    /// Full topic name.
    pub topic: String,
    /// Partition count; the runtime creates the topic with it when it is missing.
    pub partitions: i32,
    /// Configs used if the runtime creates the topic.
    pub configs: Vec<(String, String)>,
}

impl SourceTopic {
    /// A source topic with `partitions` partitions.
    pub fn new(topic: impl Into<String>, partitions: i32) -> Self {
        Self {
            topic: topic.into(),
            partitions,
            configs: Vec::new(),
        }
    }
}

pub(crate) struct StoreDef {
    pub(crate) name: Arc<str>,
    pub(crate) owner: Option<usize>,
}

/// Sources, stores and processor of one group of tasks.
pub(crate) struct SubTopology {
    pub(crate) name: String,
    pub(crate) sources: Vec<SourceTopic>,
    /// Indexes into [`Topology::stores`].
    pub(crate) stores: Vec<usize>,
    pub(crate) factory: ProcessorFactory,
}

impl SubTopology {
    pub(crate) fn partitions(&self) -> i32 {
        self.sources.first().map_or(0, |s| s.partitions)
    }

    /// The internal store holding this sub-topology's timers.
    pub(crate) fn timer_store_name(&self) -> String {
        Topology::timer_store(&self.name)
    }

    /// The internal store holding output records whose destination does not exist yet
    /// (see [`crate::task::parked`]).
    pub(crate) fn parked_store_name(&self) -> String {
        Topology::parked_store(&self.name)
    }
}

/// A complete processing graph, built by hand.
#[derive(Default)]
pub struct Topology {
    pub(crate) stores: Vec<StoreDef>,
    pub(crate) subtopologies: Vec<SubTopology>,
    /// Indexes into `stores` of the stores replicated to every instance.
    pub(crate) globals: Vec<usize>,
    pub(crate) sinks: Vec<TopicSpec>,
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subtopologies: Vec<&str> = self.subtopologies.iter().map(|s| s.name.as_str()).collect();
        let stores: Vec<&str> = self.stores.iter().map(|s| &*s.name).collect();
        f.debug_struct("Topology")
            .field("subtopologies", &subtopologies)
            .field("stores", &stores)
            .finish_non_exhaustive()
    }
}

impl Topology {
    /// An empty topology.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a store of `V` values; bind it to a sub-topology with
    /// [`Topology::add_subtopology`].
    pub fn store<V>(&mut self, name: &str) -> Result<StoreHandle<V>, TopologyError> {
        check_name("store", name)?;
        if self.stores.iter().any(|s| &*s.name == name) {
            return Err(TopologyError::DuplicateStore(name.to_owned()));
        }
        let name: Arc<str> = Arc::from(name);
        self.stores.push(StoreDef {
            name: Arc::clone(&name),
            owner: None,
        });
        Ok(StoreHandle::new(name, self.stores.len() - 1))
    }

    /// Replicates `store` read-only into every instance, so tasks of any sub-topology
    /// can read it. Its owner must be a single-partition sub-topology for reads to see
    /// one total order of changes.
    pub fn global_store<V>(&mut self, store: &StoreHandle<V>) -> GlobalStoreHandle<V> {
        if !self.globals.contains(&store.index) {
            self.globals.push(store.index);
        }
        let position = self
            .globals
            .iter()
            .position(|&i| i == store.index)
            .unwrap_or_default();
        GlobalStoreHandle::new(Arc::from(store.name()), position)
    }

    /// Adds a group of tasks: one per partition of the co-partitioned `sources`, each
    /// owning the named `stores` and running a processor built by `factory`.
    pub fn add_subtopology(
        &mut self,
        name: &str,
        sources: Vec<SourceTopic>,
        stores: &[&str],
        factory: impl Fn(i32) -> Box<dyn Processor> + Send + Sync + 'static,
    ) -> Result<(), TopologyError> {
        check_name("sub-topology", name)?;
        if self.subtopologies.iter().any(|s| s.name == name) {
            return Err(TopologyError::DuplicateSubtopology(name.to_owned()));
        }
        let Some(first) = sources.first() else {
            return Err(TopologyError::NoSource(name.to_owned()));
        };
        for source in &sources {
            if source.partitions != first.partitions {
                return Err(TopologyError::NotCoPartitioned {
                    subtopology: name.to_owned(),
                    topic: source.topic.clone(),
                    partitions: source.partitions,
                    expected: first.partitions,
                });
            }
        }
        let index = self.subtopologies.len();
        let mut bound = Vec::new();
        for store in stores {
            let position = self
                .stores
                .iter()
                .position(|s| &*s.name == *store)
                .ok_or_else(|| TopologyError::UnknownStore {
                    subtopology: name.to_owned(),
                    store: (*store).to_owned(),
                })?;
            if let Some(owner) = self.stores[position].owner {
                return Err(TopologyError::StoreBoundTwice {
                    store: (*store).to_owned(),
                    first: self.subtopologies[owner].name.clone(),
                    second: name.to_owned(),
                });
            }
            self.stores[position].owner = Some(index);
            bound.push(position);
        }
        self.subtopologies.push(SubTopology {
            name: name.to_owned(),
            sources,
            stores: bound,
            factory: Arc::new(factory),
        });
        Ok(())
    }

    /// A topic processors forward to, created at start if missing.
    pub fn sink(&mut self, spec: TopicSpec) {
        self.sinks.push(spec);
    }

    /// Checks what cannot be checked while building (every global store has an owner).
    pub fn validate(&self) -> Result<(), TopologyError> {
        for &global in &self.globals {
            if self.stores[global].owner.is_none() {
                return Err(TopologyError::UnownedGlobalStore(
                    self.stores[global].name.to_string(),
                ));
            }
        }
        Ok(())
    }

    /// The stores each task of `sub` holds: the sub-topology's own, then its timer store
    /// and its parked-output store.
    pub(crate) fn task_store_names(&self, sub: &SubTopology) -> Vec<String> {
        let mut names: Vec<String> = sub
            .stores
            .iter()
            .map(|&i| self.stores[i].name.to_string())
            .collect();
        names.push(sub.timer_store_name());
        names.push(sub.parked_store_name());
        names
    }

    /// For each of the topology's stores, its id in a task db of `sub` (`None` for the
    /// stores other sub-topologies own), indexed like the store handles.
    pub(crate) fn store_ids(&self, sub: &SubTopology, db: &TaskDb) -> Vec<Option<StoreId>> {
        let mut ids = vec![None; self.stores.len()];
        for &index in &sub.stores {
            ids[index] = db.store_id(&self.stores[index].name);
        }
        ids
    }

    /// The internal store every task of sub-topology `subtopology` keeps its timers in:
    /// `{subtopology}-timers` (for tools that read or remove a sub-topology's state).
    pub fn timer_store(subtopology: &str) -> String {
        format!("{subtopology}-timers")
    }

    /// The internal store every task of sub-topology `subtopology` parks outputs in:
    /// `{subtopology}-parked`.
    pub fn parked_store(subtopology: &str) -> String {
        format!("{subtopology}-parked")
    }

    /// The changelog topic of a store: `{cluster}_{store}-changelog`.
    pub fn changelog_topic(cluster_id: &str, store: &str) -> String {
        format!("{cluster_id}_{store}-changelog")
    }
}

fn check_name(kind: &'static str, name: &str) -> Result<(), TopologyError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(TopologyError::BadName {
            kind,
            name: name.to_owned(),
        })
    }
}
