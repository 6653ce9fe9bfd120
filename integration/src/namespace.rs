//! A test's own corner of the broker: a unique cluster id that prefixes every topic the
//! test (and any `weir` process it starts) creates, so tests run in parallel without
//! seeing each other's records.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use weir_topology::kafka::{KafkaAdmin, KafkaClient, KafkaConfig, TopicSpec};

use crate::broker;

static NEXT_NAMESPACE: AtomicU32 = AtomicU32::new(0);

/// One test's cluster id and broker connection settings.
#[derive(Debug, Clone)]
pub struct TestNamespace {
    /// Used as `LHS_CLUSTER_ID`: unique per test, per process and per run.
    pub cluster_id: String,
    /// The broker's bootstrap address.
    pub bootstrap: String,
}

impl TestNamespace {
    /// A fresh namespace on the test run's broker (started on first use).
    pub async fn new(test_name: &str) -> Self {
        let bootstrap = broker::bootstrap().await;
        let run = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() % 100_000)
            .unwrap_or_default();
        let sequence = NEXT_NAMESPACE.fetch_add(1, Ordering::Relaxed);
        let name: String = test_name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        Self {
            cluster_id: format!("{name}-{}-{run}-{sequence}", std::process::id()),
            bootstrap,
        }
    }

    /// `{cluster_id}_{suffix}`, the way weir names its topics.
    pub fn topic(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.cluster_id)
    }

    /// Connection settings for this test's broker.
    pub fn kafka_config(&self) -> KafkaConfig {
        KafkaConfig::new(&self.bootstrap).with_client_id(format!("test-{}", self.cluster_id))
    }

    /// An admin client on this test's broker.
    pub async fn admin(&self) -> KafkaAdmin {
        KafkaAdmin::connect(&self.kafka_config())
            .await
            .unwrap_or_else(|e| panic!("admin connection to {}: {e}", self.bootstrap))
    }

    /// A produce/fetch client on this test's broker.
    pub async fn client(&self) -> KafkaClient {
        KafkaClient::connect(&self.kafka_config())
            .await
            .unwrap_or_else(|e| panic!("client connection to {}: {e}", self.bootstrap))
    }

    /// Creates a topic (if missing) and waits until every partition has a leader.
    pub async fn create_topic(&self, spec: TopicSpec) {
        let name = spec.name.clone();
        self.admin()
            .await
            .ensure_topics(&[spec])
            .await
            .unwrap_or_else(|e| panic!("creating topic {name}: {e}"));
    }

    /// The environment a `weir` child process needs to work in this namespace.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "LHS_KAFKA_BOOTSTRAP_SERVERS".to_owned(),
                self.bootstrap.clone(),
            ),
            ("LHS_CLUSTER_ID".to_owned(), self.cluster_id.clone()),
        ]
    }
}
