//! Committed offsets of consumer groups: where a group left off in each partition, kept
//! by the group's coordinator (FindCoordinator, then OffsetCommit or OffsetFetch there).
//!
//! Commits are "simple", as a consumer that assigns its own partitions makes them:
//! generation `-1` and no member id, so no membership (join, heartbeat) is needed.
//! Kafka accepts them while the group has no members; a group with members refuses
//! them with `UNKNOWN_MEMBER_ID`.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::time::{Duration, Instant};

use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};

use super::admin::topic_name;
use super::connection::BrokerConnection;
use super::{KafkaAdmin, KafkaError};

/// FindCoordinator's key type for a consumer group (1 is a transaction).
const GROUP_KEY_TYPE: i8 = 0;
/// The offset OffsetFetch answers for a partition the group never committed (any
/// negative offset means none).
const NO_OFFSET: i64 = -1;
/// First wait before retrying a retriable group error; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Why one try at a group request did not succeed.
enum Failure {
    /// Worth another try against a freshly found coordinator (coordinator moved or
    /// loading, connection lost).
    Retry(KafkaError),
    /// The broker's final word.
    Fatal(KafkaError),
}

impl Failure {
    /// The same failure with the broker's error message, when it sent one.
    fn with_message(self, broker_message: Option<String>) -> Self {
        let add = |error: KafkaError| match error {
            KafkaError::GroupRequest {
                operation,
                group,
                partition,
                code,
                message,
            } => KafkaError::GroupRequest {
                operation,
                group,
                partition,
                code,
                message: broker_message.or(message),
            },
            other => other,
        };
        match self {
            Failure::Retry(error) => Failure::Retry(add(error)),
            Failure::Fatal(error) => Failure::Fatal(add(error)),
        }
    }
}

impl From<KafkaError> for Failure {
    fn from(error: KafkaError) -> Self {
        match error {
            KafkaError::Io { .. } | KafkaError::Timeout { .. } => Failure::Retry(error),
            other => Failure::Fatal(other),
        }
    }
}

impl KafkaAdmin {
    /// Commits `(topic, partition, next offset to read)` for `group` as a simple
    /// consumer (generation -1, no member id). Retriable refusals (coordinator moving or
    /// loading, lost connection) are retried until the request timeout; any other error
    /// code names the group and the partition it came with.
    pub async fn commit_offsets(
        &self,
        group: &str,
        offsets: &[(String, i32, i64)],
    ) -> Result<(), KafkaError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (topic, partition, offset) in offsets {
            by_topic.entry(topic.as_str()).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(*offset),
            );
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::default())
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(topic_name(topic))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        self.with_coordinator(group, "commit offsets", |admin, coordinator| {
            let request = request.clone();
            async move {
                let (_, response) = admin
                    .call_at(&coordinator, "OffsetCommit", |_| request)
                    .await?;
                for (topic, partition, _) in offsets {
                    let code = response
                        .topics
                        .iter()
                        .filter(|t| t.name.0.as_str() == topic)
                        .flat_map(|t| &t.partitions)
                        .find(|p| p.partition_index == *partition)
                        .map(|p| p.error_code);
                    let Some(code) = code else {
                        return Err(Failure::Fatal(KafkaError::GroupRequest {
                            operation: "commit offsets",
                            group: group.to_owned(),
                            partition: Some((topic.clone(), *partition)),
                            code: "partition missing from response".to_owned(),
                            message: None,
                        }));
                    };
                    check(code, "commit offsets", group, Some((topic, *partition)))?;
                }
                Ok(())
            }
        })
        .await
    }

    /// The offsets `group` committed for `partitions` of `topic`: `None` where it
    /// committed none (or the group or topic is unknown to the broker).
    pub async fn committed_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, Option<i64>>, KafkaError> {
        if partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        self.with_coordinator(
            group,
            "fetch committed offsets",
            |admin, coordinator| async move {
                let (version, response) = admin
                    .call_at(&coordinator, "OffsetFetch", |version| {
                        offset_fetch_request(version, group, topic, partitions)
                    })
                    .await?;
                // Up to version 7 the answer is for the one group asked; from 8 on, per group.
                let (group_code, answered): (i16, Vec<(i32, i64, i16)>) = if version >= 8 {
                    let Some(answer) = response
                        .groups
                        .iter()
                        .find(|g| g.group_id.0.as_str() == group)
                    else {
                        return Err(Failure::Fatal(KafkaError::GroupRequest {
                            operation: "fetch committed offsets",
                            group: group.to_owned(),
                            partition: None,
                            code: "group missing from response".to_owned(),
                            message: None,
                        }));
                    };
                    let partitions = answer
                        .topics
                        .iter()
                        .filter(|t| t.name.0.as_str() == topic)
                        .flat_map(|t| &t.partitions)
                        .map(|p| (p.partition_index, p.committed_offset, p.error_code))
                        .collect();
                    (answer.error_code, partitions)
                } else {
                    let partitions = response
                        .topics
                        .iter()
                        .filter(|t| t.name.0.as_str() == topic)
                        .flat_map(|t| &t.partitions)
                        .map(|p| (p.partition_index, p.committed_offset, p.error_code))
                        .collect();
                    (response.error_code, partitions)
                };
                check(group_code, "fetch committed offsets", group, None)?;
                let mut offsets: BTreeMap<i32, Option<i64>> =
                    partitions.iter().map(|p| (*p, None)).collect();
                for (partition, offset, code) in answered {
                    match code.err() {
                        // Some brokers answer an unknown topic per partition; nothing is
                        // committed there.
                        Some(ResponseError::UnknownTopicOrPartition) => {}
                        _ => check(
                            code,
                            "fetch committed offsets",
                            group,
                            Some((topic, partition)),
                        )?,
                    }
                    if let Some(slot) = offsets.get_mut(&partition) {
                        *slot = (offset > NO_OFFSET).then_some(offset);
                    }
                }
                Ok(offsets)
            },
        )
        .await
    }

    /// Runs `attempt` against the coordinator of `group`, finding the coordinator
    /// anew and backing off after each retriable failure, until the request timeout.
    async fn with_coordinator<'a, T, F, Fut>(
        &'a self,
        group: &str,
        operation: &'static str,
        mut attempt: F,
    ) -> Result<T, KafkaError>
    where
        F: FnMut(&'a Self, String) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let deadline = Instant::now() + self.config.request_timeout;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let result = match self.find_coordinator(group).await {
                Ok(coordinator) => attempt(self, coordinator).await,
                Err(failure) => Err(failure),
            };
            let error = match result {
                Ok(value) => return Ok(value),
                Err(Failure::Fatal(error)) => return Err(error),
                Err(Failure::Retry(error)) => error,
            };
            if Instant::now() + backoff >= deadline {
                return Err(error);
            }
            tracing::debug!(%group, operation, %error, ?backoff, "retrying group request");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// `host:port` of the broker coordinating `group`, asked of the bootstrap broker.
    async fn find_coordinator(&self, group: &str) -> Result<String, Failure> {
        let key = StrBytes::from_string(group.to_owned());
        let bootstrap = self.bootstrap.lock().await.address().to_owned();
        let (version, response) = self
            .call_at(&bootstrap, "FindCoordinator", |version| {
                let request = FindCoordinatorRequest::default().with_key_type(GROUP_KEY_TYPE);
                // Version 4 replaced the single key with a list of keys.
                if version >= 4 {
                    request.with_coordinator_keys(vec![key])
                } else {
                    request.with_key(key)
                }
            })
            .await?;
        let (code, message, host, port) = if version >= 4 {
            let coordinator = response
                .coordinators
                .iter()
                .find(|c| c.key.as_str() == group)
                .ok_or_else(|| {
                    Failure::Fatal(KafkaError::GroupRequest {
                        operation: "find coordinator",
                        group: group.to_owned(),
                        partition: None,
                        code: "group missing from response".to_owned(),
                        message: None,
                    })
                })?;
            (
                coordinator.error_code,
                coordinator.error_message.clone(),
                coordinator.host.clone(),
                coordinator.port,
            )
        } else {
            (
                response.error_code,
                response.error_message.clone(),
                response.host.clone(),
                response.port,
            )
        };
        check(code, "find coordinator", group, None).map_err(|failure| {
            failure.with_message(message.as_ref().map(|m| m.as_str().to_owned()))
        })?;
        Ok(format!("{}:{port}", host.as_str()))
    }

    /// Sends the request `build` makes to the broker at `address`: over the bootstrap
    /// connection when that is the one, else over a kept connection to it. A connection
    /// that failed under a request is replaced before the next one.
    async fn call_at<R: Request>(
        &self,
        address: &str,
        api: &'static str,
        build: impl FnOnce(i16) -> R,
    ) -> Result<(i16, R::Response), KafkaError> {
        let timeout = self.config.request_timeout;
        let client_id = self.config.client_id.as_str();
        let mut bootstrap = self.bootstrap.lock().await;
        if bootstrap.address() == address {
            let result = bootstrap.call_versioned(api, build).await;
            if result.as_ref().is_err_and(breaks_connection) {
                // A fresh connection for the next request; if the broker is away, the
                // old one stays and fails again until it is back.
                if let Ok(fresh) = BrokerConnection::connect(address, client_id, timeout).await {
                    *bootstrap = fresh;
                }
            }
            return result;
        }
        drop(bootstrap);
        let mut brokers = self.brokers.lock().await;
        let connection = match brokers.entry(address.to_owned()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                entry.insert(BrokerConnection::connect(address, client_id, timeout).await?)
            }
        };
        let result = connection.call_versioned(api, build).await;
        if result.as_ref().is_err_and(breaks_connection) {
            brokers.remove(address);
        }
        result
    }
}

/// Whether an error leaves a connection unusable (a request may be half sent or its
/// answer half read).
fn breaks_connection(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::Io { .. } | KafkaError::Timeout { .. } | KafkaError::Protocol { .. }
    )
}

/// Turns a response error code into a [`Failure`]: retriable codes (coordinator not
/// available, loading or moved, unknown topic just created) may be tried again.
fn check(
    code: i16,
    operation: &'static str,
    group: &str,
    partition: Option<(&str, i32)>,
) -> Result<(), Failure> {
    let Some(error) = code.err() else {
        return Ok(());
    };
    let failure = KafkaError::GroupRequest {
        operation,
        group: group.to_owned(),
        partition: partition.map(|(t, p)| (t.to_owned(), p)),
        code: format!("{error:?}"),
        message: (error == ResponseError::UnknownMemberId).then(|| {
            "the group has active members; only a group without members takes commits \
             without a generation"
                .to_owned()
        }),
    };
    if error.is_retriable() {
        Err(Failure::Retry(failure))
    } else {
        Err(Failure::Fatal(failure))
    }
}

fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_owned()))
}

/// OffsetFetch for one group and topic in the shape `version` has: version 8 moved the
/// group and its topics into a list of groups.
fn offset_fetch_request(
    version: i16,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> OffsetFetchRequest {
    if version >= 8 {
        OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(group_id(group))
                .with_topics(Some(vec![
                    OffsetFetchRequestTopics::default()
                        .with_name(topic_name(topic))
                        .with_partition_indexes(partitions.to_vec()),
                ])),
        ])
    } else {
        OffsetFetchRequest::default()
            .with_group_id(group_id(group))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partition_indexes(partitions.to_vec()),
            ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Encodable, Message};

    #[test]
    fn offset_fetch_encodes_in_every_version() {
        for version in OffsetFetchRequest::VERSIONS.min..=OffsetFetchRequest::VERSIONS.max {
            let request = offset_fetch_request(version, "g", "t", &[0, 1]);
            let mut buf = BytesMut::new();
            assert!(
                request.encode(&mut buf, version).is_ok(),
                "version {version} does not encode"
            );
        }
    }

    #[test]
    fn coordinator_errors_are_retried_and_others_are_not() {
        let retried = check(
            ResponseError::NotCoordinator.code(),
            "commit offsets",
            "g",
            None,
        );
        assert!(matches!(retried, Err(Failure::Retry(_))));
        let refused = check(
            ResponseError::UnknownMemberId.code(),
            "commit offsets",
            "g",
            Some(("t", 3)),
        );
        let Err(Failure::Fatal(error)) = refused else {
            panic!("UNKNOWN_MEMBER_ID must not be retried");
        };
        let text = error.to_string();
        assert!(text.contains("group g on t/3"), "{text}");
        assert!(check(0, "commit offsets", "g", None).is_ok());
    }
}
