//! A global store through the real runtime and broker: a single-partition owner writes
//! settings; tasks of another sub-topology, on every partition, read them from the
//! replica the runtime keeps current by tailing the owner's changelog.

use std::sync::Arc;
use std::time::Duration;

use weir_integration::{TestNamespace, consume_until};
use weir_topology::kafka::{Record, TopicSpec};
use weir_topology::{
    GlobalStoreHandle, InputRecord, OutputRecord, ProcessingError, Processor, ProcessorContext,
    Runtime, RuntimeConfig, SourceTopic, StaticAssignor, StoreHandle, Topology,
};

const WAIT: Duration = Duration::from_secs(60);
const READERS: i32 = 3;

/// Stores `key = value` (a decimal) in the settings store.
struct SettingsOwner {
    settings: StoreHandle<i64>,
}

impl Processor for SettingsOwner {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, '_>,
        record: &InputRecord,
    ) -> Result<(), ProcessingError> {
        let key = record.key.clone().unwrap_or_default();
        let value = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
            .parse::<i64>()
            .map_err(|e| ProcessingError::record(e.to_string()))?;
        ctx.put(&self.settings, &key, &value)
    }
}

/// Answers each key with the setting it currently sees (-1 when there is none).
struct SettingsReader {
    settings: GlobalStoreHandle<i64>,
    output: String,
}

impl Processor for SettingsReader {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, '_>,
        record: &InputRecord,
    ) -> Result<(), ProcessingError> {
        let key = record.key.clone().unwrap_or_default();
        let seen = ctx.global_get(&self.settings, &key)?.unwrap_or(-1);
        ctx.forward(OutputRecord::new(
            self.output.clone(),
            ctx.partition(),
            key,
            seen.to_string(),
        ));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_on_every_partition_read_the_global_store() {
    let ns = TestNamespace::new("global-store").await;
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (settings_cmd, reads, output) = (
        ns.topic("settings-cmd"),
        ns.topic("reads"),
        ns.topic("read-out"),
    );

    let mut topology = Topology::new();
    let settings: StoreHandle<i64> = topology.store("settings").unwrap_or_else(|e| panic!("{e}"));
    let global = topology.global_store(&settings);
    topology.sink(TopicSpec::new(&output, READERS, 1));
    topology
        .add_subtopology(
            "settings",
            vec![SourceTopic::new(&settings_cmd, 1)],
            &["settings"],
            move |_| {
                Box::new(SettingsOwner {
                    settings: settings.clone(),
                })
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let out = output.clone();
    topology
        .add_subtopology(
            "reader",
            vec![SourceTopic::new(&reads, READERS)],
            &[],
            move |_| {
                Box::new(SettingsReader {
                    settings: global.clone(),
                    output: out.clone(),
                })
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let mut config = RuntimeConfig::new(ns.kafka_config(), &ns.cluster_id, state.path());
    config.commit_interval = Duration::from_millis(50);
    let assignor = Arc::new(StaticAssignor::new(0, 1).unwrap_or_else(|e| panic!("{e}")));
    let running = Runtime::new(topology, config, assignor)
        .unwrap_or_else(|e| panic!("{e}"))
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let client = ns.client().await;
    let changelog = Topology::changelog_topic(&ns.cluster_id, "settings");
    for (round, value) in [(1_usize, "42"), (2, "43")] {
        produce(&client, &settings_cmd, 0, "limit", value).await;
        // The owner's commit has finished once its marker is in the changelog.
        consume_until(
            &client,
            &changelog,
            1,
            WAIT,
            "the setting's commit marker",
            |seen| seen.len() >= 2 * round,
        )
        .await;
        for partition in 0..READERS {
            produce(&client, &reads, partition, "limit", "").await;
        }
        let per_partition = |seen: &[weir_integration::ConsumedRecord]| {
            let mut by_partition: std::collections::BTreeMap<i32, Vec<String>> = Default::default();
            for record in seen {
                let value = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
                    .into_owned();
                by_partition
                    .entry(record.partition)
                    .or_default()
                    .push(value);
            }
            by_partition
        };
        let answers = consume_until(
            &client,
            &output,
            READERS,
            WAIT,
            "an answer per partition",
            |seen| {
                let by_partition = per_partition(seen);
                by_partition.len() == READERS as usize
                    && by_partition.values().all(|v| v.len() >= round)
            },
        )
        .await;
        // Each partition's answer to this round is its latest record.
        let latest: Vec<String> = per_partition(&answers)
            .into_values()
            .map(|v| v.last().cloned().unwrap_or_default())
            .collect();
        assert_eq!(latest, vec![value; READERS as usize], "round {round}");
    }
    running.shutdown().await;
}

async fn produce(
    client: &weir_topology::kafka::KafkaClient,
    topic: &str,
    partition: i32,
    key: &str,
    value: &str,
) {
    let handle = client
        .partition(topic, partition)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let record = Record {
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        headers: Default::default(),
        timestamp: chrono::Utc::now(),
    };
    handle
        .produce(vec![record])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}
