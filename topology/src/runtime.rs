//! The runtime (Kafka Streams' `KafkaStreams` and `TaskManager` in one): creates the
//! topics a topology needs, opens the global replicas, and runs one supervised task per
//! partition this instance owns until told to stop.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use weir_state::StateResources;

use crate::assignment::PartitionAssignor;
use crate::config::RuntimeConfig;
use crate::error::RuntimeError;
use crate::global::{self, GlobalStores};
use crate::kafka::{KafkaAdmin, KafkaClient, KafkaError, TopicSpec};
use crate::readers::StateReaders;
use crate::task::stream_task::StreamTask;
use crate::topology::Topology;

/// Pause before a failed task is opened again.
const TASK_RESTART_DELAY: Duration = Duration::from_secs(1);

/// A topology ready to run on one instance.
#[derive(Debug)]
pub struct Runtime {
    topology: Arc<Topology>,
    config: Arc<RuntimeConfig>,
    assignor: Arc<dyn PartitionAssignor>,
    readers: StateReaders,
}

/// A started runtime; stop it with [`RunningRuntime::shutdown`].
#[derive(Debug)]
pub struct RunningRuntime {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// The tasks this instance runs, `{sub-topology}-{partition}`.
    pub task_ids: Vec<String>,
    readers: StateReaders,
}

impl Runtime {
    /// Checks the topology and binds it to a configuration and an assignment.
    pub fn new(
        topology: Topology,
        config: RuntimeConfig,
        assignor: Arc<dyn PartitionAssignor>,
    ) -> Result<Self, RuntimeError> {
        topology.validate()?;
        Ok(Self {
            topology: Arc::new(topology),
            config: Arc::new(config),
            assignor,
            readers: StateReaders::default(),
        })
    }

    /// Read handles on the committed state of this instance's tasks and global replicas,
    /// filled in as they become ready once the runtime is started ([`StateReaders`]).
    pub fn readers(&self) -> StateReaders {
        self.readers.clone()
    }

    /// The topics the topology needs: sources, one compacted changelog per store
    /// (including each sub-topology's timer and parked-output stores), the dead-letter
    /// topic and sinks.
    pub fn required_topics(&self) -> Vec<TopicSpec> {
        let config = &self.config;
        let rf = config.replication_factor;
        let mut topics = Vec::new();
        for sub in &self.topology.subtopologies {
            for source in &sub.sources {
                let mut spec = TopicSpec::new(&source.topic, source.partitions, rf);
                for (key, value) in &source.configs {
                    spec = spec.with_config(key, value);
                }
                topics.push(spec);
            }
            for store in self.topology.task_store_names(sub) {
                topics.push(
                    TopicSpec::new(
                        Topology::changelog_topic(&config.cluster_id, &store),
                        sub.partitions(),
                        rf,
                    )
                    .compacted(),
                );
            }
        }
        topics.push(TopicSpec::new(config.dead_letter_topic(), 1, rf));
        topics.extend(self.topology.sinks.iter().cloned());
        topics
    }

    /// Creates (or checks) every topic, opens the global replicas and starts the tasks
    /// this instance owns.
    pub async fn start(self) -> Result<RunningRuntime, RuntimeError> {
        crate::metrics::describe();
        let admin = KafkaAdmin::connect(&self.config.kafka).await?;
        let topics = self.required_topics();
        if self.config.create_topics {
            admin.ensure_topics(&topics).await?;
        } else {
            for topic in &topics {
                match admin
                    .describe_topics(std::slice::from_ref(&topic.name))
                    .await
                {
                    Ok(_) => {}
                    Err(KafkaError::UnknownTopic { .. }) => {
                        return Err(RuntimeError::MissingTopic {
                            topic: topic.name.clone(),
                            partitions: topic.partitions,
                        });
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        std::fs::create_dir_all(&self.config.state_dir).map_err(|source| {
            RuntimeError::StateDir {
                path: self.config.state_dir.display().to_string(),
                source,
            }
        })?;
        let client = KafkaClient::connect(&self.config.kafka).await?;
        let resources = Arc::new(StateResources::new(&self.config.state));
        let global_specs: Vec<(Arc<str>, String)> = self
            .topology
            .globals
            .iter()
            .map(|&i| {
                let name = Arc::clone(&self.topology.stores[i].name);
                let topic = Topology::changelog_topic(&self.config.cluster_id, &name);
                (name, topic)
            })
            .collect();
        let globals = GlobalStores::open(&self.config.state_dir, &global_specs, &resources)?;
        for replica in globals.replicas() {
            if let Some(reader) = replica.reader() {
                self.readers.register_global(&replica.name, reader);
            }
        }

        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for replica in globals.replicas() {
            tasks.spawn(global::run_updater(
                Arc::clone(replica),
                client.clone(),
                stop_rx.clone(),
            ));
        }
        let mut task_ids = Vec::new();
        for (index, sub) in self.topology.subtopologies.iter().enumerate() {
            for partition in 0..sub.partitions() {
                if !self.assignor.owns(&sub.name, partition) {
                    continue;
                }
                task_ids.push(format!("{}-{partition}", sub.name));
                tasks.spawn(supervise(TaskSpawn {
                    topology: Arc::clone(&self.topology),
                    config: Arc::clone(&self.config),
                    subtopology: index,
                    partition,
                    client: client.clone(),
                    globals: globals.clone(),
                    resources: Arc::clone(&resources),
                    stop: stop_rx.clone(),
                    readers: self.readers.clone(),
                }));
            }
        }
        tracing::info!(tasks = ?task_ids, "runtime started");
        Ok(RunningRuntime {
            stop,
            tasks,
            task_ids,
            readers: self.readers,
        })
    }
}

impl RunningRuntime {
    /// Read handles on the committed state of this instance's tasks and global replicas.
    pub fn readers(&self) -> StateReaders {
        self.readers.clone()
    }

    /// Asks every task to finish its batch, commit and flush, and waits for them.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
        tracing::info!("runtime stopped");
    }
}

struct TaskSpawn {
    topology: Arc<Topology>,
    config: Arc<RuntimeConfig>,
    subtopology: usize,
    partition: i32,
    client: KafkaClient,
    globals: GlobalStores,
    resources: Arc<StateResources>,
    stop: watch::Receiver<bool>,
    readers: StateReaders,
}

/// Runs one task, opening it again from its last commit whenever it fails.
async fn supervise(spawn: TaskSpawn) {
    let sub = &spawn.topology.subtopologies[spawn.subtopology];
    let id = format!("{}-{}", sub.name, spawn.partition);
    loop {
        if *spawn.stop.borrow() {
            return;
        }
        let opened = StreamTask::open(
            Arc::clone(&spawn.config),
            &spawn.topology,
            sub,
            spawn.partition,
            spawn.client.clone(),
            spawn.globals.clone(),
            &spawn.resources,
            spawn.stop.clone(),
        )
        .await;
        let result = match opened {
            Ok(task) => {
                // Readable from its restored state on, until it closes.
                spawn
                    .readers
                    .register_task(&sub.name, spawn.partition, task.reader());
                let result = task.run().await;
                spawn.readers.deregister_task(&sub.name, spawn.partition);
                result
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => return,
            Err(error) => {
                tracing::error!(task = %id, %error, "task failed; reopening it from its last commit");
                tokio::time::sleep(TASK_RESTART_DELAY).await;
            }
        }
    }
}
