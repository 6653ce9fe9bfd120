//! Global stores: a read-only replica, in every instance, of a store owned by a
//! single-partition sub-topology, kept current by tailing that store's changelog and
//! applying only complete batches (those closed by a commit marker).
//!
//! The guarantee tasks get: before a task processes a batch, every global replica has
//! read its changelog up to the high watermark seen when the batch began. So a task
//! sees every change whose commit (changelog records and marker acknowledged by the
//! broker) finished before its batch began; a change still being committed may or may
//! not be visible.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio::sync::watch;
use weir_state::{Checkpoint, StateResources, StoreId, TaskDb};

use crate::changelog::{self, BatchAssembler};
use crate::error::RuntimeError;
use crate::kafka::{KafkaClient, TopicPartition};
use crate::metrics::StoreSizeSampler;
use crate::processor::ProcessingError;
use crate::state_dir;
use crate::store::GlobalStoreHandle;

/// Checkpoint name of a replica's changelog position.
const POSITION: &str = "changelog";
/// Largest fetch while tailing a global changelog.
const FETCH_BYTES: i32 = 8 * 1024 * 1024;

/// One replica: its RocksDB, and how far its changelog has been read.
pub(crate) struct GlobalReplica {
    pub(crate) name: Arc<str>,
    pub(crate) changelog_topic: String,
    db: RwLock<TaskDb>,
    store: StoreId,
    /// Offset below which the changelog has been read (every complete batch applied).
    read_position: watch::Sender<i64>,
}

impl std::fmt::Debug for GlobalReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalReplica")
            .field("name", &self.name)
            .field("read_position", &*self.read_position.borrow())
            .finish_non_exhaustive()
    }
}

/// Every global replica of an instance, shared by all its tasks.
#[derive(Debug, Clone, Default)]
pub struct GlobalStores {
    replicas: Arc<Vec<Arc<GlobalReplica>>>,
}

impl GlobalStores {
    /// Opens (or creates) a replica per store under `dir/global-{name}`.
    pub(crate) fn open(
        dir: &Path,
        stores: &[(Arc<str>, String)],
        resources: &StateResources,
    ) -> Result<Self, RuntimeError> {
        let mut replicas = Vec::new();
        for (name, changelog_topic) in stores {
            let path = dir.join(format!("global-{name}"));
            let db = state_dir::open_or_rebuild(
                &format!("global store {name}"),
                &path,
                &[name],
                resources,
            )?;
            let store = db
                .store_id(name)
                .ok_or_else(|| RuntimeError::Internal(format!("global store {name} missing")))?;
            let position = db
                .checkpoint()?
                .and_then(|c| c.positions.get(POSITION).copied())
                .unwrap_or(0);
            replicas.push(Arc::new(GlobalReplica {
                name: Arc::clone(name),
                changelog_topic: changelog_topic.clone(),
                db: RwLock::new(db),
                store,
                read_position: watch::Sender::new(position),
            }));
        }
        Ok(Self {
            replicas: Arc::new(replicas),
        })
    }

    pub(crate) fn replicas(&self) -> &[Arc<GlobalReplica>] {
        &self.replicas
    }

    pub(crate) fn get<V: Message + Default>(
        &self,
        handle: &GlobalStoreHandle<V>,
        key: &[u8],
    ) -> Result<Option<V>, ProcessingError> {
        let replica = self.replica(handle)?;
        let db = replica.db.read().map_err(|_| poisoned(&replica.name))?;
        db.get_raw(replica.store, key)
            .map_err(ProcessingError::from)?
            .map(|bytes| decode(&replica.name, key, &bytes))
            .transpose()
    }

    pub(crate) fn scan_prefix<V: Message + Default>(
        &self,
        handle: &GlobalStoreHandle<V>,
        prefix: &[u8],
    ) -> Result<Vec<(Bytes, V)>, ProcessingError> {
        let replica = self.replica(handle)?;
        let db = replica.db.read().map_err(|_| poisoned(&replica.name))?;
        db.scan_prefix_raw(replica.store, prefix)
            .map_err(ProcessingError::from)?
            .into_iter()
            .map(|(key, bytes)| decode(&replica.name, &key, &bytes).map(|v| (key, v)))
            .collect()
    }

    fn replica<V>(&self, handle: &GlobalStoreHandle<V>) -> Result<&GlobalReplica, ProcessingError> {
        self.replicas
            .get(handle.index)
            .map(AsRef::as_ref)
            .ok_or_else(|| {
                ProcessingError::Fatal(format!(
                    "global store {} is not replicated here",
                    handle.name()
                ))
            })
    }

    /// Applies a complete batch of changes to a replica (the driver calls this
    /// directly; the updater after reading a marker).
    pub(crate) fn apply(
        replica: &GlobalReplica,
        changes: Vec<(Bytes, Option<Bytes>)>,
        position: i64,
    ) -> Result<(), RuntimeError> {
        let checkpoint = Checkpoint {
            positions: [(POSITION.to_owned(), position)].into_iter().collect(),
        };
        let mut db = replica.db.write().map_err(|_| {
            RuntimeError::Internal(format!(
                "global store {} lock poisoned by a panic",
                replica.name
            ))
        })?;
        db.apply_restored(
            changes.into_iter().map(|(k, v)| (replica.store, k, v)),
            &checkpoint,
        )?;
        Ok(())
    }
}

impl GlobalReplica {
    /// A read handle on the replica's committed state (`None` if its lock is poisoned).
    pub(crate) fn reader(&self) -> Option<weir_state::TaskDbReader> {
        self.db.read().ok().map(|db| db.reader())
    }

    /// Waits until the replica has read its changelog up to `offset`.
    pub(crate) async fn wait_for(&self, offset: i64) {
        let mut position = self.read_position.subscribe();
        let _ = position.wait_for(|&p| p >= offset).await;
    }
}

/// Tails one replica's changelog forever, applying each complete batch; a Kafka error
/// is logged and retried after a pause.
pub(crate) async fn run_updater(
    replica: Arc<GlobalReplica>,
    client: KafkaClient,
    mut stop: watch::Receiver<bool>,
) {
    let mut assembler = BatchAssembler::default();
    let mut handle: Option<TopicPartition> = None;
    let mut offset = *replica.read_position.borrow();
    let mut store_sizes = replica
        .db
        .read()
        .ok()
        .map(|db| StoreSizeSampler::new("global", &db));
    loop {
        if *stop.borrow() {
            return;
        }
        if let (Some(sampler), Ok(db)) = (&mut store_sizes, replica.db.read()) {
            sampler.sample_if_due(&db);
        }
        let partition = match &handle {
            Some(h) => h.clone(),
            None => match client.partition(&replica.changelog_topic, 0).await {
                Ok(h) => {
                    handle = Some(h.clone());
                    h
                }
                Err(e) => {
                    tracing::warn!(store = %replica.name, error = %e, "global store changelog not reachable; retrying");
                    pause(&mut stop).await;
                    continue;
                }
            },
        };
        let fetched = tokio::select! {
            result = partition.fetch(offset, FETCH_BYTES, Duration::from_millis(200)) => result,
            _ = stop.changed() => return,
        };
        let (records, high_watermark) = match fetched {
            Ok(fetched) => fetched,
            Err(e) => {
                tracing::warn!(store = %replica.name, error = %e, "reading global store changelog failed; retrying");
                pause(&mut stop).await;
                continue;
            }
        };
        for record in records {
            if record.offset < offset {
                continue;
            }
            offset = record.offset + 1;
            match changelog::parse(record) {
                Ok(entry) => {
                    if let Some(batch) = assembler.push(entry)
                        && let Err(e) = GlobalStores::apply(&replica, batch.changes, offset)
                    {
                        tracing::error!(store = %replica.name, error = %e, "applying to global store failed");
                    }
                }
                Err(reason) => {
                    tracing::warn!(store = %replica.name, %reason, "skipping foreign changelog record")
                }
            }
        }
        // Everything below `offset` has been read, so every batch committed below it is
        // applied. A batch still being committed stays pending without holding readers
        // up; its position in the checkpoint makes a restart read it again.
        let read = if offset >= high_watermark {
            offset.max(high_watermark)
        } else {
            offset
        };
        replica.read_position.send_if_modified(|p| {
            let advanced = read > *p;
            *p = (*p).max(read);
            advanced
        });
    }
}

async fn pause(stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(1)) => {}
        _ = stop.changed() => {}
    }
}

fn decode<V: Message + Default>(
    store: &str,
    key: &[u8],
    bytes: &[u8],
) -> Result<V, ProcessingError> {
    V::decode(bytes).map_err(|e| {
        ProcessingError::record(format!(
            "global store {store}: value of key {} does not decode: {e}",
            String::from_utf8_lossy(key)
        ))
    })
}

fn poisoned(name: &str) -> ProcessingError {
    ProcessingError::Fatal(format!("global store {name} lock poisoned by a panic"))
}
