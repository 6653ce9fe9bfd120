//! The runtime against the real broker, through the keyed-count processor running in a
//! child process: crashes (SIGKILL), lost and intact state directories, clean
//! restarts, two instances, dead letters, and a broker that goes away.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weir_examples::keyed_count;
use weir_integration::broker;
use weir_integration::{ConsumedRecord, TcpProxy, TestNamespace, WeirProcess, consume_until};
use weir_topology::kafka::{KafkaClient, KafkaConfig, Record, TopicSpec};
use weir_topology::task::{
    ERROR_HEADER, SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER, WEIR_ID_HEADER,
};

const PARTITIONS: i32 = 4;
const WAIT: Duration = Duration::from_secs(180);

/// One keyed-count deployment: its namespace and its state directory.
struct CountSetup {
    ns: TestNamespace,
    state: tempfile::TempDir,
}

impl CountSetup {
    async fn new(test: &str) -> Self {
        let ns = TestNamespace::new(test).await;
        ns.create_topic(TopicSpec::new(
            keyed_count::input_topic(&ns.cluster_id),
            PARTITIONS,
            1,
        ))
        .await;
        Self {
            ns,
            state: tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}")),
        }
    }

    fn env(&self, state_dir: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = self.ns.env();
        env.push(("LHS_STATE_DIR".to_owned(), state_dir.display().to_string()));
        env.push(("COUNT_PARTITIONS".to_owned(), PARTITIONS.to_string()));
        env.push(("LHS_COMMIT_INTERVAL_MS".to_owned(), "50".to_owned()));
        env.push(("RUST_LOG".to_owned(), "info".to_owned()));
        for (k, v) in extra {
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        env
    }

    /// Starts a keyed-count instance and waits until its tasks are running.
    async fn start(&self, name: &str, extra: &[(&str, &str)]) -> WeirProcess {
        let mut process = WeirProcess::start_example(
            "keyed-count",
            name,
            &["run"],
            &self.env(self.state.path(), extra),
        );
        process
            .wait_for_stdout(WAIT, "the runtime to start", |out| {
                out.contains("running tasks")
            })
            .await;
        process
    }

    /// The counters in the state directory, via `keyed-count dump`.
    async fn dump(&self, state_dir: &Path) -> BTreeMap<String, i64> {
        let mut dump =
            WeirProcess::start_example("keyed-count", "dump", &["dump"], &self.env(state_dir, &[]));
        assert!(
            dump.wait_for_exit(WAIT).await.success(),
            "dump failed: {}",
            dump.stderr()
        );
        dump.stdout()
            .lines()
            .filter_map(|line| line.split_once(' '))
            .map(|(k, v)| (k.to_owned(), v.parse().unwrap_or(-1)))
            .collect()
    }

    async fn client(&self) -> KafkaClient {
        self.ns.client().await
    }
}

/// Produces `records` increments of 1 over `keys` keys; key `k{n}` goes to partition
/// `n % 4`. Returns the expected count per key.
async fn produce_increments(
    client: &KafkaClient,
    topic: &str,
    records: usize,
    keys: usize,
) -> BTreeMap<String, i64> {
    let mut expected = BTreeMap::new();
    let mut by_partition: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    for i in 0..records {
        let key_index = i % keys;
        let key = format!("k{key_index}");
        *expected.entry(key.clone()).or_insert(0) += 1;
        let partition = i32::try_from(key_index).unwrap_or_default() % PARTITIONS;
        by_partition.entry(partition).or_default().push(Record {
            key: Some(key.into_bytes()),
            value: Some(b"1".to_vec()),
            headers: BTreeMap::new(),
            timestamp: chrono::DateTime::from_timestamp_millis(
                1_700_000_000_000 + i64::try_from(i).unwrap_or(0),
            )
            .unwrap_or_default(),
        });
    }
    for (partition, records) in by_partition {
        let handle = client
            .partition(topic, partition)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for chunk in records.chunks(2_000) {
            handle
                .produce(chunk.to_vec())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    expected
}

/// Reads the output topic until every key's highest count reaches its expected count.
async fn await_counts(setup: &CountSetup, expected: &BTreeMap<String, i64>) -> Vec<ConsumedRecord> {
    let client = setup.client().await;
    let topic = keyed_count::output_topic(&setup.ns.cluster_id);
    let mut highest: BTreeMap<String, i64> = BTreeMap::new();
    let mut read = 0;
    consume_until(
        &client,
        &topic,
        PARTITIONS,
        WAIT,
        "every key's final count",
        |seen| {
            for record in &seen[read..] {
                let count: i64 =
                    String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
                        .parse()
                        .unwrap_or(-1);
                let entry = highest.entry(record.key_str()).or_insert(0);
                *entry = (*entry).max(count);
            }
            read = seen.len();
            expected.iter().all(|(k, &n)| highest.get(k) == Some(&n))
        },
    )
    .await
}

/// Every input has its output (counts 1..=n per key, none higher), and every
/// duplicate carries the same `weir-id` and the same bytes as the original.
fn check_outputs(outputs: &[ConsumedRecord], expected: &BTreeMap<String, i64>) {
    let mut counts: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let mut by_id: BTreeMap<String, &ConsumedRecord> = BTreeMap::new();
    let mut duplicates = 0;
    for record in outputs {
        let count = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
            .parse()
            .unwrap_or(-1);
        counts.entry(record.key_str()).or_default().insert(count);
        let id = record.header_str(WEIR_ID_HEADER).unwrap_or_else(|| {
            panic!(
                "output {}@{} has no weir-id",
                record.partition, record.offset
            )
        });
        if let Some(first) = by_id.get(&id) {
            duplicates += 1;
            assert_eq!(
                (&first.key, &first.value, first.partition),
                (&record.key, &record.value, record.partition),
                "duplicate of {id} differs"
            );
        } else {
            by_id.insert(id, record);
        }
    }
    for (key, &n) in expected {
        let want: BTreeSet<i64> = (1..=n).collect();
        assert_eq!(counts.get(key), Some(&want), "counts output for {key}");
    }
    assert_eq!(counts.len(), expected.len(), "outputs for unexpected keys");
    println!(
        "{} outputs, {duplicates} redelivered duplicates",
        outputs.len()
    );
}

fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[tokio::test]
async fn state_is_exactly_once_across_repeated_sigkills() {
    let setup = CountSetup::new("crash").await;
    let client = setup.client().await;
    let expected = produce_increments(
        &client,
        &keyed_count::input_topic(&setup.ns.cluster_id),
        100_000,
        1_000,
    )
    .await;

    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    println!("kill schedule seed {seed}");
    let mut random = seed;
    let mut process = setup.start("crash-0", &[]).await;
    for round in 1..=3 {
        random = random
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let delay = Duration::from_millis(200 + (random >> 33) % 2_500);
        tokio::time::sleep(delay).await;
        process.sigkill();
        println!("killed after {delay:?}; restarting (round {round})");
        process = setup.start(&format!("crash-{round}"), &[]).await;
    }
    let outputs = await_counts(&setup, &expected).await;
    check_outputs(&outputs, &expected);
    process.sigterm();
    assert!(
        process.wait_for_exit(WAIT).await.success(),
        "stderr: {}",
        process.stderr()
    );
    assert_eq!(
        setup.dump(setup.state.path()).await,
        expected,
        "store after crashes"
    );
}

#[tokio::test]
async fn lost_state_directory_is_restored_identically() {
    let setup = CountSetup::new("lost-state").await;
    let client = setup.client().await;
    let expected = produce_increments(
        &client,
        &keyed_count::input_topic(&setup.ns.cluster_id),
        20_000,
        500,
    )
    .await;
    let mut first = setup.start("lost-first", &[]).await;
    await_counts(&setup, &expected).await;
    first.sigterm();
    assert!(
        first.wait_for_exit(WAIT).await.success(),
        "stderr: {}",
        first.stderr()
    );
    let before = setup.dump(setup.state.path()).await;
    assert_eq!(before, expected);

    std::fs::remove_dir_all(setup.state.path()).unwrap_or_else(|e| panic!("{e}"));
    let mut second = setup.start("lost-second", &[]).await;
    let stderr = wait_for_ready(&mut second, 4).await;
    let restored: usize = lines_with(&stderr, "task ready")
        .iter()
        .filter(|l| !l.contains("restored_records=0"))
        .count();
    assert!(
        restored > 0,
        "a full restore replays the changelog: {stderr}"
    );
    second.sigterm();
    assert!(
        second.wait_for_exit(WAIT).await.success(),
        "stderr: {}",
        second.stderr()
    );
    assert_eq!(
        setup.dump(setup.state.path()).await,
        before,
        "state after a full restore"
    );

    // An unreadable state directory (a corrupt RocksDB manifest pointer) is rebuilt too.
    let current = setup.state.path().join("count-1").join("CURRENT");
    std::fs::write(&current, b"garbage\n").unwrap_or_else(|e| panic!("{}: {e}", current.display()));
    let mut third = setup.start("lost-third", &[]).await;
    let stderr = wait_for_ready(&mut third, 4).await;
    assert!(stderr.contains("state directory unreadable"), "{stderr}");
    third.sigterm();
    assert!(
        third.wait_for_exit(WAIT).await.success(),
        "stderr: {}",
        third.stderr()
    );
    assert_eq!(
        setup.dump(setup.state.path()).await,
        before,
        "state after rebuilding a corrupt directory"
    );
}

#[tokio::test]
async fn clean_restart_replays_no_changelog_record() {
    let setup = CountSetup::new("clean-restart").await;
    let client = setup.client().await;
    let expected = produce_increments(
        &client,
        &keyed_count::input_topic(&setup.ns.cluster_id),
        10_000,
        200,
    )
    .await;
    let mut first = setup.start("clean-first", &[]).await;
    await_counts(&setup, &expected).await;
    first.sigterm();
    assert!(
        first.wait_for_exit(WAIT).await.success(),
        "stderr: {}",
        first.stderr()
    );

    let mut second = setup.start("clean-second", &[]).await;
    let stderr = wait_for_ready(&mut second, 4).await;
    let ready = lines_with(&stderr, "task ready");
    assert_eq!(ready.len(), 4, "{stderr}");
    assert!(
        ready.iter().all(|l| l.contains("restored_records=0")),
        "{stderr}"
    );
    second.sigterm();
    assert!(second.wait_for_exit(WAIT).await.success());
}

#[tokio::test]
async fn two_instances_split_the_partitions() {
    let setup = CountSetup::new("two-instances").await;
    let other_state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let client = setup.client().await;
    let expected = produce_increments(
        &client,
        &keyed_count::input_topic(&setup.ns.cluster_id),
        20_000,
        400,
    )
    .await;
    let mut zero = setup
        .start(
            "instance-0",
            &[("LHS_INSTANCE_ID", "0"), ("LHS_INSTANCE_COUNT", "2")],
        )
        .await;
    let mut one = WeirProcess::start_example(
        "keyed-count",
        "instance-1",
        &["run"],
        &setup.env(
            other_state.path(),
            &[("LHS_INSTANCE_ID", "1"), ("LHS_INSTANCE_COUNT", "2")],
        ),
    );
    one.wait_for_stdout(WAIT, "the runtime to start", |o| {
        o.contains("running tasks")
    })
    .await;
    assert!(
        zero.stdout().contains("running tasks count-0,count-2"),
        "{}",
        zero.stdout()
    );
    assert!(
        one.stdout().contains("running tasks count-1,count-3"),
        "{}",
        one.stdout()
    );

    let outputs = await_counts(&setup, &expected).await;
    check_outputs(&outputs, &expected);
    zero.sigterm();
    one.sigterm();
    assert!(zero.wait_for_exit(WAIT).await.success());
    assert!(one.wait_for_exit(WAIT).await.success());
    let mut combined = setup.dump(setup.state.path()).await;
    let other = setup.dump(other_state.path()).await;
    assert!(
        combined.keys().all(|k| !other.contains_key(k)),
        "a key was counted by both instances"
    );
    combined.extend(other);
    assert_eq!(combined, expected);
}

#[tokio::test]
async fn malformed_records_go_to_the_dead_letter_topic() {
    let setup = CountSetup::new("dead-letter").await;
    let client = setup.client().await;
    let input = keyed_count::input_topic(&setup.ns.cluster_id);
    let handle = client
        .partition(&input, 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let record = |key: Option<&str>, value: &str| Record {
        key: key.map(|k| k.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        headers: BTreeMap::from([("origin".to_owned(), b"test".to_vec())]),
        timestamp: chrono::Utc::now(),
    };
    let offsets = handle
        .produce(vec![
            record(Some("good"), "1"),
            record(None, "1"),
            record(Some("bad-value"), "one"),
            record(Some("good"), "2"),
        ])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut process = setup.start("dead-letter", &[]).await;

    let expected = BTreeMap::from([("good".to_owned(), 3)]);
    await_counts(&setup, &expected).await;
    let dead_letters = consume_until(
        &client,
        &format!("{}_dead-letter", setup.ns.cluster_id),
        1,
        WAIT,
        "two dead letters",
        |seen| seen.len() >= 2,
    )
    .await;
    assert_eq!(dead_letters.len(), 2);
    let no_key = &dead_letters[0];
    assert_eq!(no_key.key, None);
    assert_eq!(
        no_key.header_str(SOURCE_PARTITION_HEADER).as_deref(),
        Some("0")
    );
    assert_eq!(
        no_key.header_str(SOURCE_OFFSET_HEADER),
        Some(offsets[1].to_string())
    );
    assert_eq!(
        no_key.header_str("origin").as_deref(),
        Some("test"),
        "original headers are kept"
    );
    assert!(
        no_key
            .header_str(ERROR_HEADER)
            .is_some_and(|e| e.contains("has no key"))
    );
    let bad_value = &dead_letters[1];
    assert_eq!(bad_value.key_str(), "bad-value");
    assert_eq!(bad_value.value.as_deref(), Some(b"one".as_slice()));
    assert!(
        bad_value
            .header_str(ERROR_HEADER)
            .is_some_and(|e| e.contains("is not a decimal increment"))
    );
    process.sigterm();
    assert!(process.wait_for_exit(WAIT).await.success());
}

#[tokio::test]
async fn processing_survives_the_broker_going_away() {
    // A broker of its own, reached only through a proxy the test can cut.
    let upstream_port = broker::free_port().unwrap_or_else(|e| panic!("{e}"));
    let proxy = TcpProxy::start(format!("127.0.0.1:{upstream_port}")).await;
    let proxy_address = proxy.address();
    let _broker = broker::start_dedicated_on(upstream_port, proxy_address.clone()).await;
    let mut setup = CountSetup::new("outage").await;
    setup.ns.bootstrap = proxy_address.clone();
    let input = keyed_count::input_topic(&setup.ns.cluster_id);
    setup
        .ns
        .create_topic(TopicSpec::new(&input, PARTITIONS, 1))
        .await;
    let client = KafkaClient::connect(&KafkaConfig::new(&proxy_address))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut expected = produce_increments(&client, &input, 30_000, 300).await;

    // First cut: right after start, while tasks open, restore and process.
    let mut process = setup.start("outage", &[]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let dropped = proxy.cut();
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.restore();
    println!("first cut dropped {dropped} connections");
    await_counts(&setup, &expected).await;

    // Second cut: the running processor loses the broker between two waves of input.
    let dropped = proxy.cut();
    assert!(
        dropped > 0,
        "the processor should have had open connections to cut"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.restore();
    println!("second cut dropped {dropped} connections");
    for (key, count) in produce_increments(&client, &input, 30_000, 300).await {
        *expected.entry(key).or_insert(0) += count;
    }

    let outputs = await_counts(&setup, &expected).await;
    check_outputs(&outputs, &expected);
    process.sigterm();
    assert!(
        process.wait_for_exit(WAIT).await.success(),
        "stderr: {}",
        process.stderr()
    );
    assert_eq!(
        setup.dump(setup.state.path()).await,
        expected,
        "state after the outages"
    );
}

/// Waits until `count` tasks have logged that they are ready, and returns stderr.
async fn wait_for_ready(process: &mut WeirProcess, count: usize) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let stderr = process.stderr();
        if lines_with(&stderr, "task ready").len() >= count {
            return stderr;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tasks not ready: {stderr}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
