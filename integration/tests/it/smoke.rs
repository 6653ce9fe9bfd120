//! Smoke tests of the ground everything stands on: topic creation with configs, records
//! with keys and headers through two partitions, every broker connection without Nagle's
//! delay, a clear error when no broker is there, and the life cycle of a `weir` child
//! process.

use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

use nix::sys::socket::{SockaddrStorage, getpeername, getsockopt, sockopt};

use weir_integration::{TestNamespace, WeirProcess, consume_until, produce_protobuf};
use weir_proto::output_topic_record::Payload;
use weir_proto::variable_value::Value;
use weir_proto::{OutputTopicRecord, Variable, VariableId, VariableValue, WfRunId};
use weir_topology::kafka::{
    CreateOutcome, KafkaAdmin, KafkaClient, KafkaConfig, KafkaError, TopicSpec,
};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn compacted_topic_is_created_with_its_configs() {
    let ns = TestNamespace::new("compacted-topic").await;
    let admin = ns.admin().await;
    let name = ns.topic("store-changelog");
    let spec = TopicSpec::new(&name, 3, 1)
        .compacted()
        .with_config("retention.ms", "86400000");

    admin
        .ensure_topics(std::slice::from_ref(&spec))
        .await
        .expect("create topic");

    let configs = admin.topic_configs(&name).await.expect("describe configs");
    assert_eq!(
        configs.get("cleanup.policy").map(String::as_str),
        Some("compact"),
        "configs: {configs:?}"
    );
    assert_eq!(
        configs.get("retention.ms").map(String::as_str),
        Some("86400000"),
        "configs: {configs:?}"
    );
    let described = admin
        .describe_topics(std::slice::from_ref(&name))
        .await
        .expect("describe");
    assert_eq!(described[0].partitions.len(), 3);
    assert!(described[0].partitions.iter().all(|p| p.leader.is_some()));
    assert!(admin.list_topics().await.expect("list").contains(&name));

    // Creating it again is not an error; asking for another shape is.
    assert_eq!(
        admin
            .create_topics(std::slice::from_ref(&spec))
            .await
            .expect("re-create"),
        vec![CreateOutcome::AlreadyExisted]
    );
    let mismatch = admin.ensure_topics(&[TopicSpec::new(&name, 5, 1)]).await;
    assert!(
        matches!(
            mismatch,
            Err(KafkaError::PartitionCountMismatch {
                expected: 5,
                actual: 3,
                ..
            })
        ),
        "got {mismatch:?}"
    );
    let missing = admin.describe_topics(&[ns.topic("never-created")]).await;
    assert!(
        matches!(missing, Err(KafkaError::UnknownTopic { .. })),
        "got {missing:?}"
    );

    // Deleting removes it (DeleteTopics v6 and later name topics in another field than
    // earlier versions; a request that filled the wrong one deleted nothing and said
    // nothing); deleting a topic that does not exist is not an error.
    admin
        .delete_topics(&[name.clone(), ns.topic("never-created")])
        .await
        .expect("delete");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while admin.list_topics().await.expect("list").contains(&name) {
        assert!(
            std::time::Instant::now() < deadline,
            "{name} is still listed 30 s after its deletion"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn records_keep_keys_headers_and_values_across_two_partitions() {
    let ns = TestNamespace::new("two-partitions").await;
    let topic = ns.topic("records");
    ns.create_topic(TopicSpec::new(&topic, 2, 1)).await;
    let client = ns.client().await;

    let mut sent = Vec::new();
    for i in 0..10_i64 {
        let partition = i32::from(i % 2 == 1);
        let wf_run = format!("order-{i}");
        let record = output_record(&wf_run, i);
        let header_value = i.to_string();
        let headers: [(&str, &[u8]); 2] = [
            ("weir-tenant", b"acme"),
            ("sequence", header_value.as_bytes()),
        ];
        let offset = produce_protobuf(&client, &topic, partition, &wf_run, &headers, &record).await;
        sent.push((partition, offset, wf_run, header_value, record));
    }

    let seen = consume_until(&client, &topic, 2, WAIT, "all 10 records", |seen| {
        seen.len() >= 10
    })
    .await;
    assert_eq!(seen.len(), 10);
    for (partition, offset, key, sequence, record) in sent {
        let got = seen
            .iter()
            .find(|r| r.partition == partition && r.offset == offset)
            .unwrap_or_else(|| panic!("record {partition}@{offset} missing"));
        assert_eq!(got.key_str(), key);
        assert_eq!(got.header_str("weir-tenant").as_deref(), Some("acme"));
        assert_eq!(got.header_str("sequence"), Some(sequence));
        assert_eq!(got.decode::<OutputTopicRecord>(), record);
    }
    // Five records per partition, and the high watermark says so.
    for partition in 0..2 {
        let handle = client
            .partition(&topic, partition)
            .await
            .expect("partition");
        assert_eq!(handle.high_watermark().await.expect("high watermark"), 5);
    }
}

/// Every connection of this process to the broker has `TCP_NODELAY` set, the data-path
/// client's (rskafka, patched: vendor/rskafka/WEIR-PATCH.md) as well as the admin
/// client's. Without it a request could wait up to 40 ms for the broker's delayed ACK.
#[tokio::test]
async fn every_broker_connection_sends_without_delay() {
    let ns = TestNamespace::new("nodelay").await;
    let topic = ns.topic("records");
    ns.create_topic(TopicSpec::new(&topic, 1, 1)).await;
    let client = ns.client().await;
    let record = output_record("order-1", 1);
    produce_protobuf(&client, &topic, 0, "order-1", &[], &record).await;
    let seen = consume_until(&client, &topic, 1, WAIT, "the record", |seen| {
        !seen.is_empty()
    })
    .await;
    assert_eq!(seen.len(), 1);

    let port: u16 = ns
        .bootstrap
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {:?}", ns.bootstrap));
    let without_nodelay = |sockets: Vec<(RawFd, bool)>| -> Vec<RawFd> {
        sockets
            .into_iter()
            .filter_map(|(fd, nodelay)| (!nodelay).then_some(fd))
            .collect()
    };
    let sockets = sockets_connected_to(port);
    assert!(!sockets.is_empty(), "no connection to port {port} found");
    // Other tests open connections meanwhile: one caught between its connect and its
    // set_nodelay is looked at again.
    let delayed = without_nodelay(sockets);
    if !delayed.is_empty() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let still: Vec<RawFd> = without_nodelay(sockets_connected_to(port))
            .into_iter()
            .filter(|fd| delayed.contains(fd))
            .collect();
        assert!(
            still.is_empty(),
            "connections to the broker without TCP_NODELAY: fds {still:?}"
        );
    }
}

/// The TCP sockets of this process whose peer is `port`, each with whether it has
/// `TCP_NODELAY` set.
#[allow(unsafe_code)]
fn sockets_connected_to(port: u16) -> Vec<(RawFd, bool)> {
    let mut sockets = Vec::new();
    let entries = std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd is readable");
    for entry in entries.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        let Ok(peer) = getpeername::<SockaddrStorage>(fd) else {
            continue;
        };
        let peer_port = match (peer.as_sockaddr_in(), peer.as_sockaddr_in6()) {
            (Some(v4), _) => v4.port(),
            (_, Some(v6)) => v6.port(),
            _ => continue,
        };
        if peer_port != port {
            continue;
        }
        // SAFETY: the descriptor is only read from, for the one call below. Should another
        // task close it meanwhile, the call fails and the descriptor is skipped; should a
        // new socket take its number, the caller looks at it again.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Ok(nodelay) = getsockopt(&borrowed, sockopt::TcpNoDelay) {
            sockets.push((fd, nodelay));
        }
    }
    sockets
}

#[tokio::test]
async fn absent_broker_is_a_clear_error_not_a_hang() {
    // A port that nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let bootstrap = format!("127.0.0.1:{port}");
    let config = KafkaConfig::new(&bootstrap).with_connect_timeout(Duration::from_secs(2));
    // The guard only catches a hang; the connect timeout is what ends each attempt.
    let guard = Duration::from_secs(60);

    let admin = tokio::time::timeout(guard, KafkaAdmin::connect(&config))
        .await
        .expect("admin connect hung");
    let message = admin.expect_err("no broker there").to_string();
    assert!(
        message.contains(&bootstrap) && message.contains("could not reach"),
        "{message}"
    );

    let client = tokio::time::timeout(guard, KafkaClient::connect(&config))
        .await
        .expect("client connect hung");
    let message = client.expect_err("no broker there").to_string();
    assert!(message.contains(&bootstrap), "{message}");

    // The command line says so in one line and exits non-zero.
    let env = [
        ("LHS_KAFKA_BOOTSTRAP_SERVERS".to_owned(), bootstrap.clone()),
        ("LHS_KAFKA_CONNECT_TIMEOUT_MS".to_owned(), "2000".to_owned()),
    ];
    let mut weir = WeirProcess::start("absent-broker-list", &["topics", "list"], &env);
    let status = weir.wait_for_exit(guard).await;
    assert!(!status.success());
    let stderr = weir.stderr();
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(
        stderr.starts_with("weir: could not reach a Kafka broker at"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}

#[tokio::test]
async fn weir_process_tails_then_stops_on_sigterm_and_dies_on_sigkill() {
    let ns = TestNamespace::new("process-life").await;
    let topic = ns.topic("tailed");
    ns.create_topic(TopicSpec::new(&topic, 1, 1).compacted())
        .await;
    let client = ns.client().await;

    // `weir topics describe` shows what the admin module created.
    let mut describe = WeirProcess::start("describe", &["topics", "describe", &topic], &ns.env());
    assert!(
        describe.wait_for_exit(WAIT).await.success(),
        "stderr: {}",
        describe.stderr()
    );
    let described = describe.stdout();
    assert!(
        described.contains("(1 partitions)") && described.contains("cleanup.policy=compact"),
        "{described}"
    );

    let mut tail = WeirProcess::start(
        "tail",
        &["topics", "tail", &topic, "--from-beginning"],
        &ns.env(),
    );
    produce_protobuf(
        &client,
        &topic,
        0,
        "order-1",
        &[("weir-tenant", b"acme")],
        &output_record("order-1", 1),
    )
    .await;
    let stdout = tail
        .wait_for_stdout(WAIT, "the produced record as a JSON line", |out| {
            out.contains(r#""key":"order-1""#)
        })
        .await;
    assert!(stdout.contains(r#""weir-tenant":"acme""#), "{stdout}");
    tail.sigterm();
    let status = tail.wait_for_exit(WAIT).await;
    assert!(
        status.success(),
        "SIGTERM should end tail cleanly, got {status}; stderr: {}",
        tail.stderr()
    );

    let mut killed = WeirProcess::start("tail-killed", &["topics", "tail", &topic], &ns.env());
    tokio::time::sleep(Duration::from_millis(300)).await;
    killed.sigkill();
    let status = killed.wait_for_exit(WAIT).await;
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "got {status}");
}

fn output_record(wf_run: &str, value: i64) -> OutputTopicRecord {
    OutputTopicRecord {
        timestamp: Some(prost_types::Timestamp {
            seconds: 1_700_000_000 + value,
            nanos: 0,
        }),
        payload: Some(Payload::Variable(Variable {
            id: Some(VariableId {
                wf_run_id: Some(WfRunId {
                    id: wf_run.to_owned(),
                }),
                thread_run_number: 0,
                name: "order-status".to_owned(),
            }),
            value: Some(VariableValue {
                value: Some(Value::Int(value)),
            }),
            ..Default::default()
        })),
    }
}
