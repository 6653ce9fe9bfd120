//! Process configuration: one typed struct loaded from `LHS_*` environment variables,
//! with the same names LittleHorse uses where the meaning is the same. Every variable
//! is listed, with its default, in the README's configuration table.

use std::fmt::Display;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use weir_state::StateOptions;
use weir_topology::kafka::{KafkaConfig, ProduceCompression};
use weir_topology::{RuntimeConfig, StaticAssignor};

use crate::topics::is_valid_name;

/// A variable was set to something weir cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{variable} must be {expected}, but it is {value:?}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub expected: &'static str,
    pub value: String,
}

/// Everything a weir process reads from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeirConfig {
    /// `LHS_KAFKA_BOOTSTRAP_SERVERS`: comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// `LHS_CLUSTER_ID`: prefix of every topic this cluster owns.
    pub cluster_id: String,
    /// `LHS_REPLICATION_FACTOR`: replication factor of every topic weir creates.
    pub replication_factor: i16,
    /// `LHS_KAFKA_CONNECT_TIMEOUT_MS`: how long to keep trying to reach the cluster.
    pub connect_timeout: Duration,
    /// `LHS_STATE_DIR`: root of the task state directories.
    pub state_dir: PathBuf,
    /// `LHS_COMMIT_INTERVAL_MS`: longest time a batch stays open.
    pub commit_interval: Duration,
    /// `LHS_COMMIT_MAX_RECORDS`: most input records in one batch per task (bounds the
    /// memory a batch's outputs and changes take until they commit).
    pub max_batch_records: u64,
    /// `LHS_FETCH_MAX_WAIT_MS`: how long an input fetch may wait at the broker while
    /// its partition has nothing new.
    pub fetch_max_wait: Duration,
    /// `LHS_PRODUCE_COMPRESSION`: how produced record batches are compressed (`none`,
    /// `lz4` or `zstd`).
    pub compression: ProduceCompression,
    /// The memory every store of the process shares: `LHS_ROCKSDB_TOTAL_BLOCK_CACHE_BYTES`
    /// (block cache), `LHS_ROCKSDB_TOTAL_MEMTABLE_BYTES` (memtables together) and
    /// `LHS_STATE_VALUE_CACHE_BYTES` (committed values; 0 turns it off).
    pub state: StateOptions,
    /// `LHS_INSTANCE_ID`: this instance's number, from 0.
    pub instance_id: u32,
    /// `LHS_INSTANCE_COUNT`: how many instances share the partitions.
    pub instance_count: u32,
    /// `LHS_SHOULD_CREATE_TOPICS`: create missing topics at start (else fail naming them).
    pub create_topics: bool,
    /// `LHS_CLUSTER_PARTITIONS`: partitions of `core-cmd`, and so of every task queue.
    pub cluster_partitions: i32,
    /// `LHS_OUTPUT_TOPIC_PARTITIONS`: partitions of each tenant's execution-output topic;
    /// a divisor of `cluster_partitions`, so command partition `p` maps to output
    /// partition `p % output_partitions`.
    pub output_partitions: i32,
    /// `LHS_METRICS_PORT`: the port of the process's HTTP server (`/metrics`), on every
    /// interface; `Some(0)` lets the system pick a free one; `None` (unset or empty):
    /// no HTTP server.
    pub metrics_port: Option<u16>,
    /// `LHS_ADVERTISED_HTTP`: the base URL other instances send query clients to for the
    /// partitions this one owns (`{port}` in it stands for the bound port); `None`:
    /// `http://{hostname}:{bound port}`.
    pub advertised_http: Option<String>,
}

impl WeirConfig {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let string = |name: &str, default: &str| lookup(name).unwrap_or_else(|| default.to_owned());
        let cluster_id = string("LHS_CLUSTER_ID", "weir");
        if !is_valid_name(&cluster_id) {
            return Err(ConfigError {
                variable: "LHS_CLUSTER_ID",
                expected: "a non-empty name of letters, digits, '.', '_' or '-' (it prefixes topic names)",
                value: cluster_id,
            });
        }
        let replication_factor: i16 = positive(
            &lookup,
            "LHS_REPLICATION_FACTOR",
            1,
            "an integer from 1 to 32767",
        )?;
        let connect_timeout_ms: u64 = parse(
            &lookup,
            "LHS_KAFKA_CONNECT_TIMEOUT_MS",
            10_000,
            "a number of milliseconds",
        )?;
        let commit_interval_ms: u64 = parse(
            &lookup,
            "LHS_COMMIT_INTERVAL_MS",
            100,
            "a number of milliseconds",
        )?;
        let max_batch_records: u64 =
            positive(&lookup, "LHS_COMMIT_MAX_RECORDS", 10_000, POSITIVE_INTEGER)?;
        let fetch_max_wait_ms: u64 = positive(
            &lookup,
            "LHS_FETCH_MAX_WAIT_MS",
            50,
            "a positive number of milliseconds",
        )?;
        let compression = parse(
            &lookup,
            "LHS_PRODUCE_COMPRESSION",
            ProduceCompression::default(),
            ProduceCompression::NAMES,
        )?;
        let defaults = StateOptions::default();
        let state = StateOptions {
            block_cache_bytes: positive(
                &lookup,
                "LHS_ROCKSDB_TOTAL_BLOCK_CACHE_BYTES",
                defaults.block_cache_bytes,
                POSITIVE_INTEGER,
            )?,
            write_buffer_bytes: positive(
                &lookup,
                "LHS_ROCKSDB_TOTAL_MEMTABLE_BYTES",
                defaults.write_buffer_bytes,
                POSITIVE_INTEGER,
            )?,
            value_cache_bytes: parse(
                &lookup,
                "LHS_STATE_VALUE_CACHE_BYTES",
                defaults.value_cache_bytes,
                "a number of bytes (0 turns the cache off)",
            )?,
            ..defaults
        };
        let instance_count: u32 = parse(&lookup, "LHS_INSTANCE_COUNT", 1, "a positive integer")?;
        let instance_id: u32 = parse(
            &lookup,
            "LHS_INSTANCE_ID",
            0,
            "an integer below LHS_INSTANCE_COUNT",
        )?;
        if instance_count == 0 || instance_id >= instance_count {
            return Err(ConfigError {
                variable: "LHS_INSTANCE_ID",
                expected: "an integer from 0 to LHS_INSTANCE_COUNT - 1",
                value: format!("{instance_id} (with LHS_INSTANCE_COUNT={instance_count})"),
            });
        }
        let cluster_partitions: i32 = positive(
            &lookup,
            "LHS_CLUSTER_PARTITIONS",
            12,
            "a positive number of partitions",
        )?;
        let output_partitions: i32 = parse(
            &lookup,
            "LHS_OUTPUT_TOPIC_PARTITIONS",
            cluster_partitions,
            "a positive number of partitions that divides LHS_CLUSTER_PARTITIONS",
        )?;
        if output_partitions < 1 || cluster_partitions % output_partitions != 0 {
            return Err(ConfigError {
                variable: "LHS_OUTPUT_TOPIC_PARTITIONS",
                expected: "a positive number of partitions that divides LHS_CLUSTER_PARTITIONS (so each command partition feeds exactly one output partition)",
                value: format!(
                    "{output_partitions} (with LHS_CLUSTER_PARTITIONS={cluster_partitions})"
                ),
            });
        }
        let create_topics = match string("LHS_SHOULD_CREATE_TOPICS", "true")
            .to_ascii_lowercase()
            .as_str()
        {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => {
                return Err(ConfigError {
                    variable: "LHS_SHOULD_CREATE_TOPICS",
                    expected: "true or false",
                    value: string("LHS_SHOULD_CREATE_TOPICS", ""),
                });
            }
        };
        let metrics_port = match lookup("LHS_METRICS_PORT") {
            None => None,
            Some(value) if value.trim().is_empty() => None,
            Some(value) => Some(value.trim().parse::<u16>().map_err(|_| ConfigError {
                variable: "LHS_METRICS_PORT",
                expected: "a port number from 0 to 65535 (0: any free port), or empty for no HTTP server",
                value,
            })?),
        };
        let advertised_http = match lookup("LHS_ADVERTISED_HTTP") {
            None => None,
            Some(value) if value.trim().is_empty() => None,
            Some(value) => {
                let url = value.trim().trim_end_matches('/').to_owned();
                let host = url
                    .strip_prefix("http://")
                    .or_else(|| url.strip_prefix("https://"));
                if host.is_none_or(|host| host.is_empty() || host.contains('/')) {
                    return Err(ConfigError {
                        variable: "LHS_ADVERTISED_HTTP",
                        expected: "an http:// or https:// base URL without a path, such as http://weir-1:9100",
                        value,
                    });
                }
                Some(url)
            }
        };
        Ok(Self {
            bootstrap_servers: string("LHS_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            state_dir: PathBuf::from(string(
                "LHS_STATE_DIR",
                &format!("/tmp/weir-state/{cluster_id}"),
            )),
            cluster_id,
            replication_factor,
            connect_timeout: Duration::from_millis(connect_timeout_ms),
            commit_interval: Duration::from_millis(commit_interval_ms.max(1)),
            max_batch_records,
            fetch_max_wait: Duration::from_millis(fetch_max_wait_ms),
            compression,
            state,
            instance_id,
            instance_count,
            create_topics,
            cluster_partitions,
            output_partitions,
            metrics_port,
            advertised_http,
        })
    }

    /// Kafka connection settings derived from this configuration.
    pub fn kafka(&self) -> KafkaConfig {
        KafkaConfig::new(&self.bootstrap_servers)
            .with_client_id(format!("weir-{}", self.cluster_id))
            .with_connect_timeout(self.connect_timeout)
            .with_compression(self.compression)
    }

    /// Runtime settings derived from this configuration.
    pub fn runtime(&self) -> RuntimeConfig {
        let mut runtime = RuntimeConfig::new(self.kafka(), &self.cluster_id, &self.state_dir);
        runtime.commit_interval = self.commit_interval;
        runtime.max_batch_records = self.max_batch_records;
        runtime.fetch_max_wait = self.fetch_max_wait;
        runtime.state = self.state.clone();
        runtime.replication_factor = self.replication_factor;
        runtime.create_topics = self.create_topics;
        runtime
    }

    /// The static partition assignment of this instance.
    pub fn assignor(&self) -> Result<Arc<StaticAssignor>, ConfigError> {
        StaticAssignor::new(self.instance_id, self.instance_count)
            .map(Arc::new)
            .map_err(|_| ConfigError {
                variable: "LHS_INSTANCE_ID",
                expected: "an integer from 0 to LHS_INSTANCE_COUNT - 1",
                value: format!(
                    "{} (with LHS_INSTANCE_COUNT={})",
                    self.instance_id, self.instance_count
                ),
            })
    }

    /// The base URL this instance advertises for queries once its HTTP server listens on
    /// `port`: `LHS_ADVERTISED_HTTP` with `{port}` replaced, else
    /// `http://{hostname}:{port}`.
    pub fn advertised_http(&self, port: u16) -> String {
        match &self.advertised_http {
            Some(url) => url.replace("{port}", &port.to_string()),
            None => format!("http://{}:{port}", hostname()),
        }
    }

    /// The full name of one of this cluster's topics: `{LHS_CLUSTER_ID}_{suffix}`.
    pub fn topic(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.cluster_id)
    }
}

/// This machine's host name (the kernel's, else `HOSTNAME`), or `localhost`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn parse<T>(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: T,
    expected: &'static str,
) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    match lookup(variable) {
        None => Ok(default),
        Some(value) => value.trim().parse().map_err(|_| ConfigError {
            variable,
            expected,
            value,
        }),
    }
}

const POSITIVE_INTEGER: &str = "a positive integer";

/// A positive number from `variable`, or `default` when it is unset; `expected` says
/// what else is wrong.
fn positive<T>(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: T,
    expected: &'static str,
) -> Result<T, ConfigError>
where
    T: FromStr + Default + PartialOrd + Display,
    T::Err: Display,
{
    let value = parse(lookup, variable, default, expected)?;
    if value <= T::default() {
        return Err(ConfigError {
            variable,
            expected,
            value: value.to_string(),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use weir_topology::PartitionAssignor;

    fn load(vars: &[(&str, &str)]) -> Result<WeirConfig, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        WeirConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() -> Result<(), ConfigError> {
        let config = load(&[])?;
        assert_eq!(config.bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(config.cluster_id, "weir");
        assert_eq!(config.replication_factor, 1);
        assert_eq!(config.connect_timeout, Duration::from_secs(10));
        assert_eq!(config.topic("core-cmd"), "weir_core-cmd");
        assert_eq!(config.state_dir, PathBuf::from("/tmp/weir-state/weir"));
        assert_eq!(config.commit_interval, Duration::from_millis(100));
        assert_eq!((config.instance_id, config.instance_count), (0, 1));
        assert!(config.create_topics);
        assert_eq!(config.metrics_port, None);
        assert_eq!(config.runtime().max_batch_records, 10_000);
        assert_eq!(config.runtime().fetch_max_wait, Duration::from_millis(50));
        assert_eq!(config.runtime().state, StateOptions::default());
        assert_eq!(config.kafka().compression, ProduceCompression::Lz4);
        Ok(())
    }

    #[test]
    fn memory_bounds_are_configured_and_must_be_positive() -> Result<(), ConfigError> {
        let config = load(&[
            ("LHS_COMMIT_MAX_RECORDS", "2000"),
            ("LHS_ROCKSDB_TOTAL_BLOCK_CACHE_BYTES", "268435456"),
            ("LHS_ROCKSDB_TOTAL_MEMTABLE_BYTES", "33554432"),
            ("LHS_STATE_VALUE_CACHE_BYTES", "1048576"),
        ])?;
        let runtime = config.runtime();
        assert_eq!(runtime.max_batch_records, 2_000);
        assert_eq!(runtime.state.block_cache_bytes, 256 << 20);
        assert_eq!(runtime.state.write_buffer_bytes, 32 << 20);
        assert_eq!(runtime.state.value_cache_bytes, 1 << 20);
        let off = load(&[("LHS_STATE_VALUE_CACHE_BYTES", "0")])?;
        assert_eq!(off.runtime().state.value_cache_bytes, 0);
        for bad in ["-1", "lots"] {
            let error = load(&[("LHS_STATE_VALUE_CACHE_BYTES", bad)]).err();
            assert_eq!(
                error.as_ref().map(|e| e.variable),
                Some("LHS_STATE_VALUE_CACHE_BYTES"),
                "{bad}"
            );
        }
        for variable in [
            "LHS_COMMIT_MAX_RECORDS",
            "LHS_ROCKSDB_TOTAL_BLOCK_CACHE_BYTES",
            "LHS_ROCKSDB_TOTAL_MEMTABLE_BYTES",
        ] {
            for bad in ["0", "-1", "lots"] {
                let error = load(&[(variable, bad)]).err();
                assert_eq!(
                    error.as_ref().map(|e| (e.variable, e.expected)),
                    Some((variable, "a positive integer")),
                    "{variable}={bad}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn variables_override_defaults() -> Result<(), ConfigError> {
        let config = load(&[
            ("LHS_KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092"),
            ("LHS_CLUSTER_ID", "prod-eu"),
            ("LHS_REPLICATION_FACTOR", "3"),
            ("LHS_KAFKA_CONNECT_TIMEOUT_MS", "2500"),
            ("LHS_STATE_DIR", "/var/lib/weir"),
            ("LHS_COMMIT_INTERVAL_MS", "250"),
            ("LHS_FETCH_MAX_WAIT_MS", "10"),
            ("LHS_PRODUCE_COMPRESSION", "zstd"),
            ("LHS_INSTANCE_ID", "2"),
            ("LHS_INSTANCE_COUNT", "3"),
            ("LHS_SHOULD_CREATE_TOPICS", "false"),
        ])?;
        assert_eq!(config.state_dir, PathBuf::from("/var/lib/weir"));
        assert_eq!(config.runtime().commit_interval, Duration::from_millis(250));
        assert_eq!(config.runtime().fetch_max_wait, Duration::from_millis(10));
        assert!(!config.runtime().create_topics);
        let assignor = config.assignor()?;
        assert!(assignor.owns("core", 5) && !assignor.owns("core", 4));
        assert_eq!(config.kafka().bootstrap_servers, vec!["k1:9092", "k2:9092"]);
        assert_eq!(config.kafka().client_id, "weir-prod-eu");
        assert_eq!(config.replication_factor, 3);
        assert_eq!(config.connect_timeout, Duration::from_millis(2500));
        assert_eq!(config.kafka().compression, ProduceCompression::Zstd);
        Ok(())
    }

    #[test]
    fn output_partitions_default_to_the_cluster_and_must_divide_it() -> Result<(), ConfigError> {
        assert_eq!(load(&[])?.output_partitions, 12);
        assert_eq!(
            load(&[("LHS_OUTPUT_TOPIC_PARTITIONS", "4")])?.output_partitions,
            4
        );
        let refused = load(&[("LHS_OUTPUT_TOPIC_PARTITIONS", "5")])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(refused.contains("LHS_OUTPUT_TOPIC_PARTITIONS"), "{refused}");
        assert!(
            refused.contains("divides LHS_CLUSTER_PARTITIONS"),
            "{refused}"
        );
        assert!(load(&[("LHS_OUTPUT_TOPIC_PARTITIONS", "0")]).is_err());
        Ok(())
    }

    #[test]
    fn the_metrics_port_is_off_unless_set_and_zero_picks_one() -> Result<(), ConfigError> {
        assert_eq!(load(&[("LHS_METRICS_PORT", "")])?.metrics_port, None);
        assert_eq!(
            load(&[("LHS_METRICS_PORT", "9464")])?.metrics_port,
            Some(9464)
        );
        assert_eq!(load(&[("LHS_METRICS_PORT", "0")])?.metrics_port, Some(0));
        let refused = load(&[("LHS_METRICS_PORT", "70000")])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            refused.starts_with("LHS_METRICS_PORT must be a port number"),
            "{refused}"
        );
        Ok(())
    }

    #[test]
    fn the_advertised_url_fills_in_the_bound_port() -> Result<(), ConfigError> {
        let set = load(&[("LHS_ADVERTISED_HTTP", "http://weir-1:9100/")])?;
        assert_eq!(set.advertised_http(9100), "http://weir-1:9100");
        let templated = load(&[("LHS_ADVERTISED_HTTP", "http://127.0.0.1:{port}")])?;
        assert_eq!(templated.advertised_http(40123), "http://127.0.0.1:40123");
        let default = load(&[])?.advertised_http(9464);
        assert!(
            default.starts_with("http://") && default.ends_with(":9464"),
            "{default}"
        );
        for bad in ["weir-1:9100", "http://", "http://host/path"] {
            assert!(load(&[("LHS_ADVERTISED_HTTP", bad)]).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = load(&[("LHS_REPLICATION_FACTOR", "three")])
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("LHS_REPLICATION_FACTOR must be an integer from 1 to 32767, but it is \"three\"")
        );
        assert!(load(&[("LHS_REPLICATION_FACTOR", "0")]).is_err());
        assert!(load(&[("LHS_CLUSTER_ID", "has space")]).is_err());
        assert!(load(&[("LHS_CLUSTER_ID", "")]).is_err());
        assert!(load(&[("LHS_KAFKA_CONNECT_TIMEOUT_MS", "-1")]).is_err());
        assert!(load(&[("LHS_INSTANCE_ID", "3"), ("LHS_INSTANCE_COUNT", "3")]).is_err());
        assert!(load(&[("LHS_INSTANCE_COUNT", "0")]).is_err());
        assert!(load(&[("LHS_FETCH_MAX_WAIT_MS", "0")]).is_err());
        assert!(load(&[("LHS_SHOULD_CREATE_TOPICS", "maybe")]).is_err());
        let err = load(&[("LHS_PRODUCE_COMPRESSION", "snappy")])
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("LHS_PRODUCE_COMPRESSION must be none, lz4 or zstd, but it is \"snappy\"")
        );
    }
}
