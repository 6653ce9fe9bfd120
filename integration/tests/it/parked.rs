//! Parked outputs against the real broker: a processor forwards every input to a topic
//! that exists and to one that does not. The existing destination gets every record
//! while the other is missing; the missing one's records wait in the task's parked
//! store (through a restart that loses the state directory, so they come back from the
//! changelog) and arrive in input order once the topic is created.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use weir_integration::{ConsumedRecord, TestNamespace, consume_until};
use weir_topology::kafka::{KafkaClient, KafkaError, Record, TopicSpec};
use weir_topology::task::WEIR_ID_HEADER;
use weir_topology::{
    InputRecord, OutputRecord, ProcessingError, Processor, ProcessorContext, RunningRuntime,
    Runtime, RuntimeConfig, SourceTopic, StaticAssignor, Topology, read_committed,
};

const WAIT: Duration = Duration::from_secs(90);
const PARTITIONS: i32 = 2;
const SUBTOPOLOGY: &str = "fanout";

/// Forwards each input, unchanged, to the same partition of both topics.
struct Fanout {
    present: String,
    absent: String,
}

impl Processor for Fanout {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, '_>,
        record: &InputRecord,
    ) -> Result<(), ProcessingError> {
        let key = record.key.clone().unwrap_or_default();
        let value = record.value.clone().unwrap_or_default();
        for topic in [&self.present, &self.absent] {
            ctx.forward(OutputRecord::new(
                topic.clone(),
                record.partition,
                key.clone(),
                value.clone(),
            ));
        }
        Ok(())
    }
}

struct Setup {
    ns: TestNamespace,
    input: String,
    present: String,
    absent: String,
}

impl Setup {
    async fn start(&self, state: &std::path::Path) -> RunningRuntime {
        let mut topology = Topology::new();
        topology.sink(TopicSpec::new(&self.present, PARTITIONS, 1));
        let (present, absent) = (self.present.clone(), self.absent.clone());
        topology
            .add_subtopology(
                SUBTOPOLOGY,
                vec![SourceTopic::new(&self.input, PARTITIONS)],
                &[],
                move |_| {
                    Box::new(Fanout {
                        present: present.clone(),
                        absent: absent.clone(),
                    })
                },
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let mut config = RuntimeConfig::new(self.ns.kafka_config(), &self.ns.cluster_id, state);
        config.commit_interval = Duration::from_millis(50);
        let assignor = Arc::new(StaticAssignor::new(0, 1).unwrap_or_else(|e| panic!("{e}")));
        Runtime::new(topology, config, assignor)
            .unwrap_or_else(|e| panic!("{e}"))
            .start()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Produces `values` to each input partition, one request per value so they span
    /// several batches; value `{round}-{partition}-{i}`.
    async fn produce_round(&self, client: &KafkaClient, round: &str, count: usize) {
        for partition in 0..PARTITIONS {
            let handle = client
                .partition(&self.input, partition)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            for i in 0..count {
                let record = Record {
                    key: Some(format!("k{i}").into_bytes()),
                    value: Some(format!("{round}-{partition}-{i}").into_bytes()),
                    headers: BTreeMap::new(),
                    timestamp: chrono::Utc::now(),
                };
                handle
                    .produce(vec![record])
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }

    /// Waits until the parked store's committed contents, read from its changelog,
    /// hold `expected` records (over all partitions).
    async fn await_parked(&self, client: &KafkaClient, expected: usize) {
        let changelog =
            Topology::changelog_topic(&self.ns.cluster_id, &format!("{SUBTOPOLOGY}-parked"));
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let mut total = 0;
            for partition in 0..PARTITIONS {
                let handle = client
                    .partition(&changelog, partition)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                total += read_committed(&handle)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"))
                    .len();
            }
            if total == expected {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the parked store holds {total} records, not {expected}, after {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Values per partition, in the order read.
fn by_partition(records: &[ConsumedRecord]) -> BTreeMap<i32, Vec<String>> {
    let mut grouped: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for record in records {
        grouped
            .entry(record.partition)
            .or_default()
            .push(String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into());
    }
    grouped
}

/// The values each partition should carry, in input order.
fn expected(rounds: &[(&str, usize)]) -> BTreeMap<i32, Vec<String>> {
    (0..PARTITIONS)
        .map(|p| {
            let values = rounds
                .iter()
                .flat_map(|(round, count)| (0..*count).map(move |i| format!("{round}-{p}-{i}")))
                .collect();
            (p, values)
        })
        .collect()
}

fn has_all(records: &[ConsumedRecord], want: &BTreeMap<i32, Vec<String>>) -> bool {
    let got = by_partition(records);
    want.iter().all(|(p, values)| {
        got.get(p)
            .is_some_and(|seen| values.iter().all(|v| seen.contains(v)))
    })
}

/// Drops exact redeliveries (same `weir-id`, same bytes) and returns the values per
/// partition in first-arrival order; panics on a duplicate id with other bytes.
fn deduplicated(records: &[ConsumedRecord]) -> BTreeMap<i32, Vec<String>> {
    let mut first: BTreeMap<String, &ConsumedRecord> = BTreeMap::new();
    let mut unique = Vec::new();
    for record in records {
        let id = record.header_str(WEIR_ID_HEADER).unwrap_or_else(|| {
            panic!(
                "record {}@{} has no weir-id",
                record.partition, record.offset
            )
        });
        match first.get(&id) {
            Some(original) => assert_eq!(
                (
                    original.partition,
                    &original.key,
                    &original.value,
                    &original.headers
                ),
                (
                    record.partition,
                    &record.key,
                    &record.value,
                    &record.headers
                ),
                "redelivery of {id} differs"
            ),
            None => {
                first.insert(id, record);
                unique.push(record.clone());
            }
        }
    }
    by_partition(&unique)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_to_a_missing_topic_wait_in_order_without_holding_up_others() {
    let ns = TestNamespace::new("parked-outputs").await;
    let setup = Setup {
        input: ns.topic("fanout-in"),
        present: ns.topic("present"),
        absent: ns.topic("absent"),
        ns,
    };
    let client = setup.ns.client().await;
    let admin = setup.ns.admin().await;

    // 1. The missing topic does not hold up the present one.
    let first_state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let running = setup.start(first_state.path()).await;
    setup.produce_round(&client, "a", 6).await;
    setup.produce_round(&client, "b", 4).await;
    let want = expected(&[("a", 6), ("b", 4)]);
    consume_until(
        &client,
        &setup.present,
        PARTITIONS,
        WAIT,
        "rounds a and b",
        |seen| has_all(seen, &want),
    )
    .await;
    setup.await_parked(&client, 20).await;
    match admin
        .describe_topics(std::slice::from_ref(&setup.absent))
        .await
    {
        Err(KafkaError::UnknownTopic { .. }) => {}
        other => panic!("{} should not exist: {other:?}", setup.absent),
    }
    running.shutdown().await;

    // 2. A restart that lost its state directory restores the parked records from
    //    the changelog, and new records still reach the present topic.
    let second_state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let running = setup.start(second_state.path()).await;
    setup.produce_round(&client, "c", 5).await;
    let want = expected(&[("a", 6), ("b", 4), ("c", 5)]);
    let present = consume_until(
        &client,
        &setup.present,
        PARTITIONS,
        WAIT,
        "round c",
        |seen| has_all(seen, &want),
    )
    .await;
    assert_eq!(
        deduplicated(&present),
        want,
        "present topic, in input order"
    );
    setup.await_parked(&client, 30).await;

    // 3. Once the topic exists, every parked record arrives, in input order, with the
    //    weir-id of its input, and the parked store drains.
    setup
        .ns
        .create_topic(TopicSpec::new(&setup.absent, PARTITIONS, 1))
        .await;
    let absent = consume_until(
        &client,
        &setup.absent,
        PARTITIONS,
        WAIT,
        "every parked record",
        |seen| has_all(seen, &want),
    )
    .await;
    assert_eq!(deduplicated(&absent), want, "absent topic, in input order");
    let present_ids: BTreeMap<String, String> = present
        .iter()
        .filter_map(|r| {
            let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into();
            r.header_str(WEIR_ID_HEADER).map(|id| (value, id))
        })
        .collect();
    // The present output is the input's output 0 (`{input}:{p}:{offset}:0`), the
    // absent one its output 1.
    for record in &absent {
        let value: String =
            String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into();
        let twin = present_ids
            .get(&value)
            .and_then(|id| id.strip_suffix(":0"))
            .map(|base| format!("{base}:1"));
        assert_eq!(
            record.header_str(WEIR_ID_HEADER),
            twin,
            "weir-id of {value}"
        );
    }
    setup.await_parked(&client, 0).await;

    // 4. With the topic there, new records go straight through.
    setup.produce_round(&client, "d", 2).await;
    let want = expected(&[("a", 6), ("b", 4), ("c", 5), ("d", 2)]);
    let absent = consume_until(
        &client,
        &setup.absent,
        PARTITIONS,
        WAIT,
        "round d",
        |seen| has_all(seen, &want),
    )
    .await;
    assert_eq!(deduplicated(&absent), want, "absent topic after round d");
    setup.await_parked(&client, 0).await;
    running.shutdown().await;
}
