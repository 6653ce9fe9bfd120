//! The analytics example end to end: a `weir server`, the `orders` example's workers
//! and driver, and the `orders-analytics` consumer as a child process keeping the
//! `orders` table in a PostgreSQL database of the test's own. A thousand orders reach
//! the table once each through a SIGKILL of the consumer (the restart resumes from the
//! positions stored with the rows); a stale record delivered again (as a server
//! redelivers after a crash) and reading the whole topic again change no row.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use prost::Message;
use weir_examples::analytics::{self, OrderRow};
use weir_examples::orders;
use weir_integration::{TestDatabase, WeirProcess};
use weir_processor::client::WeirClient;
use weir_processor::topics::{CoreTopics, partition_for_key};
use weir_proto::output_topic_record::Payload;
use weir_proto::variable_value::Value;
use weir_proto::{LhStatus, OutputTopicRecord};
use weir_topology::kafka::Record;

use crate::cluster::{Cluster, START_WAIT, stop_server};

const TENANT: &str = "acme";
const ORDERS: usize = 1_000;
/// Generous bounds for failing, not expectations of speed.
const RUN_WAIT: Duration = Duration::from_secs(600);
const TABLE_WAIT: Duration = Duration::from_secs(180);

/// Starts the consumer on the test's database and waits for its start line; returns
/// the process and the offset each partition starts from.
async fn start_consumer(
    cluster: &Cluster,
    db: &TestDatabase,
    name: &str,
) -> (WeirProcess, BTreeMap<i32, i64>) {
    let mut env = cluster.env().to_vec();
    env.push(("ANALYTICS_DATABASE_URL".to_owned(), db.url.clone()));
    let mut consumer =
        WeirProcess::start_example("orders-analytics", name, &["run", "--tenant", TENANT], &env);
    let stdout = consumer
        .wait_for_stdout(START_WAIT, "the consumer's start line", |out| {
            out.contains("from offsets")
        })
        .await;
    let line = stdout
        .lines()
        .find(|l| l.contains("from offsets"))
        .expect("the start line");
    let starts = line
        .rsplit("from offsets ")
        .next()
        .expect("offsets")
        .split_whitespace()
        .map(|pair| {
            let (partition, offset) = pair.split_once(':').expect("partition:offset");
            (
                partition.parse().expect("a partition"),
                offset.parse().expect("an offset"),
            )
        })
        .collect();
    (consumer, starts)
}

/// Waits until the server has created the tenant's execution-output topic.
async fn wait_for_topic(cluster: &Cluster, topic: &str) {
    let admin = cluster.ns.admin().await;
    let deadline = Instant::now() + START_WAIT;
    while !admin
        .list_topics()
        .await
        .expect("listing topics")
        .iter()
        .any(|t| t == topic)
    {
        assert!(Instant::now() < deadline, "{topic} was not created");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each partition's first and next offset (the fetch high watermark).
async fn topic_bounds(cluster: &Cluster, topic: &str) -> BTreeMap<i32, (i64, i64)> {
    let described = cluster
        .ns
        .admin()
        .await
        .describe_topics(&[topic.to_owned()])
        .await
        .expect("describing the topic");
    let client = cluster.ns.client().await;
    let mut bounds = BTreeMap::new();
    for partition in described.iter().flat_map(|t| &t.partitions) {
        let handle = client
            .partition(topic, partition.partition)
            .await
            .expect("partition");
        let earliest = handle.earliest_offset().await.expect("earliest offset");
        let end = handle.high_watermark().await.expect("high watermark");
        bounds.insert(partition.partition, (earliest, end));
    }
    bounds
}

/// Produces again, byte for byte and with its headers, the record that published
/// `order`'s first `order-status` (`PENDING`), as a server does with the records of a
/// batch it did not commit before a crash. Returns its partition and new end.
async fn redeliver_first_status(cluster: &Cluster, topic: &str, order: &str) -> (i32, i64) {
    let partition = partition_for_key(order.as_bytes(), 12);
    let handle = cluster
        .ns
        .client()
        .await
        .partition(topic, partition)
        .await
        .expect("partition");
    let mut next = handle.earliest_offset().await.expect("earliest offset");
    let found = 'search: loop {
        let (records, end) = handle
            .fetch(next, 1024 * 1024, Duration::from_millis(100))
            .await
            .expect("fetch");
        for record in records {
            next = record.offset + 1;
            if record.record.key.as_deref() != Some(order.as_bytes()) {
                continue;
            }
            let value = record.record.value.as_deref().unwrap_or_default();
            let decoded = OutputTopicRecord::decode(value).expect("an OutputTopicRecord");
            if let Some(Payload::Variable(variable)) = decoded.payload
                && variable.id.is_some_and(|id| id.name == "order-status")
            {
                let pending = Some(Value::Str("PENDING".to_owned()));
                assert_eq!(variable.value.and_then(|v| v.value), pending);
                break 'search record.record;
            }
        }
        assert!(
            next < end,
            "{order} published no order-status on {topic}/{partition}"
        );
    };
    let copy = Record {
        key: found.key,
        value: found.value,
        headers: found.headers,
        timestamp: found.timestamp,
    };
    let offsets = handle.produce(vec![copy]).await.expect("produce");
    (partition, offsets[0] + 1)
}

async fn row_count(sql: &tokio_postgres::Client) -> i64 {
    sql.query_one("SELECT count(*) FROM orders", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(0)
}

/// Waits until the stored positions are `ends` (every record consumed); panics at
/// [`TABLE_WAIT`] showing both.
async fn wait_for_positions(
    sql: &tokio_postgres::Client,
    topic: &str,
    ends: &BTreeMap<i32, i64>,
    consumer: &WeirProcess,
) {
    let deadline = Instant::now() + TABLE_WAIT;
    loop {
        let stored = analytics::stored_positions(sql, topic)
            .await
            .expect("positions");
        if &stored == ends {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the consumer stopped at {stored:?}, the topic ends at {ends:?}; its stderr:\n{}",
            consumer.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Exactly the rows of orders `order-0..ORDERS`, each COMPLETED with its own user and
/// item, dated, and last changed by a record newer than its first.
fn assert_rows(rows: &BTreeMap<String, OrderRow>) {
    assert_eq!(rows.len(), ORDERS, "one row per order, no other");
    for n in 0..ORDERS {
        let id = orders::order_id("order", n);
        let row = rows.get(&id).unwrap_or_else(|| panic!("no row for {id}"));
        assert_eq!(
            (
                row.user_id.as_deref(),
                row.item_id.as_deref(),
                row.order_status.as_str()
            ),
            (
                Some(format!("user-{}", n % 17).as_str()),
                Some(format!("item-{n}").as_str()),
                "COMPLETED"
            ),
            "{row:?}"
        );
        let created = row
            .created_at
            .unwrap_or_else(|| panic!("{id} has no created_at"));
        assert!(created <= row.updated_at, "{row:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_orders_reach_the_table_once_each_through_a_consumer_kill_and_a_replay() {
    let cluster = Cluster::new("analytics").await;
    let server = cluster.start_server("analytics-server").await;
    let client = WeirClient::connect(&cluster.config)
        .await
        .expect("client")
        .with_timeout(Duration::from_secs(120));
    analytics::setup(&client, TENANT, &orders::NO_RETRY)
        .await
        .expect("setup");
    let topic = CoreTopics::new(&cluster.config).execution_output(TENANT);
    wait_for_topic(&cluster, &topic).await;
    let db = TestDatabase::create(&cluster.ns).await;
    let sql = db.connect().await;

    let (mut consumer, starts) = start_consumer(&cluster, &db, "analytics-consumer-1").await;
    assert_eq!(starts.len(), 12, "every partition: {starts:?}");
    assert!(starts.values().all(|o| *o == 0), "{starts:?}");

    let (workers, delivery) = orders::start_workers_and_delivery(&cluster.config, &client, TENANT)
        .await
        .expect("workers");
    let starting = {
        let client = client.clone();
        tokio::spawn(async move { orders::start_orders(&client, TENANT, "order", ORDERS).await })
    };

    // Some rows are in: kill the consumer, wherever it is.
    let deadline = Instant::now() + RUN_WAIT;
    while row_count(&sql).await < 100 {
        assert!(
            Instant::now() < deadline,
            "no rows; consumer stderr:\n{}",
            consumer.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    consumer.sigkill();
    // A transaction the kill cut short is rolled back once its session ends.
    while db.other_sessions(&sql).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the killed consumer's sessions stay"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored = analytics::stored_positions(&sql, &topic)
        .await
        .expect("positions");
    println!(
        "killed the consumer with {} rows in the table, {} orders finished",
        row_count(&sql).await,
        cluster.finished(TENANT, "order-").await
    );
    let (consumer, restarts) = start_consumer(&cluster, &db, "analytics-consumer-2").await;
    assert_eq!(
        restarts, stored,
        "the restart resumes from the stored positions"
    );

    starting
        .await
        .expect("join")
        .expect("every order was accepted");
    let runs = orders::wait_for_orders(
        &cluster.config,
        TENANT,
        "order",
        ORDERS,
        RUN_WAIT,
        |_, _| {},
    )
    .await
    .expect("waiting for orders");
    let completed = runs
        .values()
        .filter(|r| r.status() == LhStatus::Completed)
        .count();
    assert_eq!(completed, ORDERS);
    for stat in workers.stop().await.expect("workers stop") {
        assert_eq!(stat.failed, 0, "{stat:?}");
    }
    delivery.abort();

    // Every run is committed COMPLETED, so all its records are in the topic: the
    // consumer is done when its positions are the topic's end.
    let bounds = topic_bounds(&cluster, &topic).await;
    let ends: BTreeMap<i32, i64> = bounds.iter().map(|(p, (_, end))| (*p, *end)).collect();
    wait_for_positions(&sql, &topic, &ends, &consumer).await;
    let rows = analytics::all_rows(&sql).await.expect("rows");
    assert_rows(&rows);

    // A stale record again: applied, it would take order-0 back to PENDING.
    let (partition, end) = redeliver_first_status(&cluster, &topic, "order-0").await;
    let mut ends = ends;
    ends.insert(partition, end);
    wait_for_positions(&sql, &topic, &ends, &consumer).await;
    assert_eq!(
        analytics::all_rows(&sql).await.expect("rows"),
        rows,
        "a redelivered record changed rows"
    );

    // Reading the whole topic again (positions forgotten) changes no row, not even a
    // date: every record is already in.
    let mut consumer = consumer;
    consumer.sigterm();
    let status = consumer.wait_for_exit(START_WAIT).await;
    assert!(
        status.success(),
        "consumer exit {status}; stderr: {}",
        consumer.stderr()
    );
    assert!(consumer.stdout().contains("orders-analytics: stopped"));
    sql.execute("DELETE FROM orders_positions", &[])
        .await
        .expect("forgetting the positions");
    let (consumer, replay_starts) = start_consumer(&cluster, &db, "analytics-consumer-3").await;
    let earliest: BTreeMap<i32, i64> = bounds.iter().map(|(p, (first, _))| (*p, *first)).collect();
    assert_eq!(
        replay_starts, earliest,
        "forgotten positions start at the log's start"
    );
    wait_for_positions(&sql, &topic, &ends, &consumer).await;
    assert_eq!(
        analytics::all_rows(&sql).await.expect("rows"),
        rows,
        "the replay changed rows"
    );
    drop(consumer);

    stop_server(server).await;
    drop(sql);
    db.drop_database().await;
}
