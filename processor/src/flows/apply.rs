//! Reading what a cluster holds for flows and applying a [`Plan`] to it: the I/O half of
//! `weir flows plan` / `weir flows apply`.
//!
//! What exists is read from Kafka: every topic with its partition count, and the manifest
//! as last applied, stored (protobuf) in the compacted one-partition topic
//! `{LHS_CLUSTER_ID}_flows-manifest`, where the latest record wins. Applying creates the
//! plan's topics (ingestion and flow topics under their RFD names, without the cluster
//! prefix) and its tables' changelogs (`{cluster}_{table}-changelog`, compacted, with the
//! ingestion topic's partition count), deletes what the plan removes (only there with
//! `allow_data_removal`: topics, and the changelogs of removed tables and state), then
//! stores the manifest. A plan with conflicts is refused.
//!
//! A removed flow whose source ingestion topic stays gets a forget record
//! ([`FORGET_HEADER`]) on every partition of that topic: the flows process drops the
//! flow's initial load progress when it reaches it, so the flow declared again later
//! loads again, even if no flows process ran in between.

use std::collections::BTreeMap;
use std::fmt;

use prost::Message;
use weir_proto::FlowsManifest;
use weir_topology::Topology;
use weir_topology::kafka::{
    KafkaAdmin, KafkaClient, KafkaError, Record, TopicDescription, TopicSpec,
};

use super::manifest::{ValidManifest, flow_topics};
use super::plan::{ExistingState, Plan};
use super::topology::{FORGET_HEADER, send_control_records};

/// Suffix of the topic holding the applied manifest: `{LHS_CLUSTER_ID}_flows-manifest`.
pub const MANIFEST_TOPIC_SUFFIX: &str = "flows-manifest";

/// Key of the manifest record.
const MANIFEST_KEY: &[u8] = b"manifest";

/// Largest fetch while reading the manifest topic.
const FETCH_BYTES: i32 = 16 * 1024 * 1024;

/// `{cluster_id}_flows-manifest`.
pub fn manifest_topic(cluster_id: &str) -> String {
    format!("{cluster_id}_{MANIFEST_TOPIC_SUFFIX}")
}

/// The changelog topic of a flows table.
pub fn table_changelog(cluster_id: &str, table: &str) -> String {
    Topology::changelog_topic(cluster_id, table)
}

/// Reading or changing the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A Kafka request failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The applied manifest cannot be decoded.
    #[error("the applied manifest at offset {offset} of {topic} cannot be decoded: {error}")]
    BadManifest {
        topic: String,
        offset: i64,
        error: prost::DecodeError,
    },
    /// The plan has conflicts.
    #[error(
        "the plan has {count} conflicts and is not applied (run `weir flows plan` to see them)"
    )]
    Conflicts { count: usize },
}

/// What exists, from the described topics and the last manifest record's value (`None`
/// for no record, or a tombstone).
pub fn existing_state(
    topics: &[TopicDescription],
    last_manifest: Option<(i64, &[u8])>,
    manifest_topic: &str,
) -> Result<ExistingState, ApplyError> {
    let topics: BTreeMap<String, i32> = topics
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                i32::try_from(t.partitions.len()).unwrap_or(i32::MAX),
            )
        })
        .collect();
    let applied = match last_manifest {
        None => None,
        Some((_, [])) => None,
        Some((offset, bytes)) => {
            Some(
                FlowsManifest::decode(bytes).map_err(|error| ApplyError::BadManifest {
                    topic: manifest_topic.to_owned(),
                    offset,
                    error,
                })?,
            )
        }
    };
    Ok(ExistingState { topics, applied })
}

/// Reads what exists on the cluster for `cluster_id`.
pub async fn read_existing(
    admin: &KafkaAdmin,
    client: &KafkaClient,
    cluster_id: &str,
) -> Result<ExistingState, ApplyError> {
    let names = admin.list_topics().await?;
    let described = if names.is_empty() {
        Vec::new()
    } else {
        admin.describe_topics(&names).await?
    };
    let topic = manifest_topic(cluster_id);
    let last = if names.contains(&topic) {
        last_record(client, &topic).await?
    } else {
        None
    };
    existing_state(
        &described,
        last.as_ref()
            .map(|(offset, value)| (*offset, value.as_slice())),
        &topic,
    )
}

/// The last record's offset and value (empty for a tombstone) in partition 0 of `topic`.
async fn last_record(
    client: &KafkaClient,
    topic: &str,
) -> Result<Option<(i64, Vec<u8>)>, KafkaError> {
    let partition = client.partition(topic, 0).await?;
    let end = partition.high_watermark().await?;
    let mut offset = partition.earliest_offset().await?;
    let mut last = None;
    while offset < end {
        let (records, _) = partition
            .fetch(offset, FETCH_BYTES, std::time::Duration::from_millis(100))
            .await?;
        let before = offset;
        for record in records {
            if record.offset < offset || record.offset >= end {
                continue;
            }
            offset = record.offset + 1;
            last = Some((record.offset, record.record.value.unwrap_or_default()));
        }
        if offset == before {
            break;
        }
    }
    Ok(last)
}

/// What [`apply`] did, one line per action.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The actions, in the order they were taken.
    pub actions: Vec<String>,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for action in &self.actions {
            writeln!(f, "{action}")?;
        }
        Ok(())
    }
}

/// The topics [`apply`] creates for `plan`: its topics, then one compacted changelog per
/// new table with the partition count of the table's ingestion topic.
pub fn topics_to_create(
    plan: &Plan,
    existing: &ExistingState,
    cluster_id: &str,
    replication_factor: i16,
) -> Vec<TopicSpec> {
    let mut specs: Vec<TopicSpec> = plan
        .create_topics
        .iter()
        .map(|t| TopicSpec::new(&t.name, t.partitions, replication_factor))
        .collect();
    for table in &plan.create_tables {
        let ingestion = table.model.ingestion_topic();
        let partitions = plan
            .create_topics
            .iter()
            .find(|t| t.name == ingestion)
            .map(|t| t.partitions)
            .or_else(|| existing.topics.get(&ingestion).copied());
        let changelog = table_changelog(cluster_id, &table.name);
        if let Some(partitions) = partitions
            && !existing.topics.contains_key(&changelog)
        {
            specs.push(TopicSpec::new(changelog, partitions, replication_factor).compacted());
        }
    }
    specs
}

/// The topics [`apply`] deletes for `plan`: its topics, then the changelogs of its
/// removed tables and state that exist.
pub fn deletions(plan: &Plan, existing: &ExistingState, cluster_id: &str) -> Vec<String> {
    let stores = plan.remove_tables.iter().map(|t| &t.name);
    let changelogs = stores
        .chain(plan.remove_state.iter().map(|s| &s.store))
        .map(|store| table_changelog(cluster_id, store))
        .filter(|name| existing.topics.contains_key(name));
    plan.remove_topics
        .iter()
        .map(|t| t.name.clone())
        .chain(changelogs)
        .collect()
}

/// The forget records [`apply`] writes for `plan`: (source ingestion topic, its
/// partition count, flow) for each removed flow whose source topic exists and stays.
pub fn forget_records(plan: &Plan, existing: &ExistingState) -> Vec<(String, i32, String)> {
    plan.remove_flows
        .iter()
        .filter_map(|flow| {
            let topic = flow_topics(flow)?.source.ingestion_topic();
            let partitions = *existing.topics.get(&topic)?;
            let removed = plan.remove_topics.iter().any(|t| t.name == topic);
            (!removed).then(|| (topic, partitions, flow.name.clone()))
        })
        .collect()
}

/// Applies `plan` (made from `existing` for `manifest`) and stores the manifest as the
/// applied one.
pub async fn apply(
    admin: &KafkaAdmin,
    client: &KafkaClient,
    cluster_id: &str,
    replication_factor: i16,
    manifest: &ValidManifest,
    existing: &ExistingState,
    plan: &Plan,
) -> Result<Applied, ApplyError> {
    if !plan.is_applicable() {
        return Err(ApplyError::Conflicts {
            count: plan.conflicts.len(),
        });
    }
    let mut applied = Applied::default();
    for flow in &plan.remove_flows {
        applied.actions.push(format!("removed flow {}", flow.name));
    }
    for (topic, partitions, flow) in forget_records(plan, existing) {
        send_control_records(client, &topic, partitions, FORGET_HEADER, flow.as_bytes()).await?;
        applied.actions.push(format!(
            "wrote a forget record of flow {flow} to each partition of {topic}"
        ));
    }
    let deletions = deletions(plan, existing, cluster_id);
    if !deletions.is_empty() {
        admin.delete_topics(&deletions).await?;
        for name in &deletions {
            applied.actions.push(format!("deleted topic {name}"));
        }
    }
    let specs = topics_to_create(plan, existing, cluster_id, replication_factor);
    if !specs.is_empty() {
        admin.ensure_topics(&specs).await?;
        for spec in &specs {
            applied.actions.push(format!(
                "created topic {} ({} partitions)",
                spec.name, spec.partitions
            ));
        }
    }
    for table in &plan.create_tables {
        applied
            .actions
            .push(format!("created table {} of {}", table.name, table.model));
    }
    for creation in &plan.create_flows {
        applied
            .actions
            .push(format!("created flow {}", creation.flow.name));
    }
    for update in &plan.update_flows {
        applied
            .actions
            .push(format!("updated flow {}", update.after.name));
    }
    for kept in &plan.kept {
        applied
            .actions
            .push(format!("kept {}: {}", kept.what, kept.why));
    }
    let stored = existing.applied.as_ref() == Some(manifest.manifest());
    if !stored {
        let topic = manifest_topic(cluster_id);
        admin
            .ensure_topics(&[TopicSpec::new(&topic, 1, replication_factor).compacted()])
            .await?;
        let partition = client.partition(&topic, 0).await?;
        partition
            .produce(vec![Record {
                key: Some(MANIFEST_KEY.to_vec()),
                value: Some(manifest.manifest().encode_to_vec()),
                headers: BTreeMap::new(),
                timestamp: chrono::Utc::now(),
            }])
            .await?;
        applied
            .actions
            .push(format!("stored the manifest in {topic}"));
    }
    if applied.actions.is_empty() {
        applied.actions.push("No changes.".to_owned());
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::manifest::{parse, validate};
    use crate::flows::plan::{PlanOptions, plan};
    use crate::spec_file::SpecFormat;
    use weir_topology::kafka::PartitionInfo;

    const MANIFEST: &str = r#"
data_models:
  - name: A
    version: {major: 0, minor: 0}
    key_field: id
    fields: [{name: id, field_type: STRING, required: true}]
  - name: B
    version: {major: 0, minor: 0}
    key_field: id
    fields: [{name: id, field_type: STRING, required: true}]
flows:
  - name: a-to-b
    source_model: A
    source_version: {major: 0, minor: 0}
    target_model: B
    target_version: {major: 0, minor: 0}
    transform: t
"#;

    fn manifest() -> ValidManifest {
        let parsed = parse(MANIFEST, SpecFormat::Yaml, "test").expect("parses");
        validate(parsed, None).expect("valid")
    }

    fn described(name: &str, partitions: i32) -> TopicDescription {
        TopicDescription {
            name: name.to_owned(),
            partitions: (0..partitions)
                .map(|partition| PartitionInfo {
                    partition,
                    leader: Some(1),
                })
                .collect(),
        }
    }

    #[test]
    fn existing_state_reads_partition_counts_and_the_last_manifest() {
        let valid = manifest();
        let bytes = valid.manifest().encode_to_vec();
        let topics = [described("A_0_0", 4), described("other", 1)];
        let state = existing_state(&topics, Some((7, &bytes)), "c_flows-manifest").expect("ok");
        assert_eq!(state.topics.get("A_0_0"), Some(&4));
        assert_eq!(state.topics.get("other"), Some(&1));
        assert_eq!(state.applied.as_ref(), Some(valid.manifest()));

        let none = existing_state(&topics, None, "t").expect("ok");
        assert_eq!(none.applied, None);
        let tombstone = existing_state(&topics, Some((3, &[])), "t").expect("ok");
        assert_eq!(tombstone.applied, None);
    }

    #[test]
    fn a_corrupt_manifest_names_its_topic_and_offset() {
        let error = existing_state(&[], Some((9, &[0xff, 0xff, 0xff])), "c_flows-manifest")
            .expect_err("corrupt");
        let message = error.to_string();
        assert!(
            message.contains("offset 9 of c_flows-manifest"),
            "{message}"
        );
    }

    /// `MANIFEST` as applied, with every topic a run of it made, 4 partitions each.
    fn applied_state() -> ExistingState {
        let mut topics: BTreeMap<String, i32> = [
            "A_0_0",
            "B_0_0",
            "A_0_0_B_0_0_input",
            "A_0_0_B_0_0_output",
            "other",
        ]
        .into_iter()
        .map(|t| (t.to_owned(), 4))
        .collect();
        for store in [
            "A_0_0",
            "A_0_0-initial-load",
            "flows-model.A_0_0-timers",
            "flows-model.A_0_0-parked",
            "B_0_0",
            "B_0_0-initial-load",
            "flows-model.B_0_0-timers",
            "flows-model.B_0_0-parked",
            "flows-flow.a-to-b-timers",
            "flows-flow.a-to-b-parked",
            "flows-copy.a-to-b-timers",
            "flows-copy.a-to-b-parked",
        ] {
            topics.insert(table_changelog("c", store), 4);
        }
        ExistingState {
            topics,
            applied: Some(manifest().manifest().clone()),
        }
    }

    /// `MANIFEST` without model `name` and the flow.
    fn without(name: &str) -> ValidManifest {
        let mut smaller = manifest().manifest().clone();
        smaller.data_models.retain(|m| m.name != name);
        smaller.flows.clear();
        validate(smaller, None).expect("valid")
    }

    const REMOVE: PlanOptions = PlanOptions {
        partitions: 4,
        allow_data_removal: true,
    };

    #[test]
    fn a_removed_source_model_loses_every_changelog_of_its_sub_topology() {
        let existing = applied_state();
        let removed = plan(&without("A"), &existing, REMOVE);
        let mut deleted = deletions(&removed, &existing, "c");
        deleted.sort();
        assert_eq!(
            deleted,
            [
                "A_0_0",
                "A_0_0_B_0_0_input",
                "A_0_0_B_0_0_output",
                "c_A_0_0-changelog",
                "c_A_0_0-initial-load-changelog",
                "c_flows-copy.a-to-b-parked-changelog",
                "c_flows-copy.a-to-b-timers-changelog",
                "c_flows-flow.a-to-b-parked-changelog",
                "c_flows-flow.a-to-b-timers-changelog",
                "c_flows-model.A_0_0-parked-changelog",
                "c_flows-model.A_0_0-timers-changelog",
            ]
        );
        // Its flow's source topic goes: nothing to forget there.
        assert!(forget_records(&removed, &existing).is_empty());

        // Without the flag, nothing is deleted.
        let keep = PlanOptions {
            allow_data_removal: false,
            ..REMOVE
        };
        let kept = plan(&without("A"), &existing, keep);
        assert!(deletions(&kept, &existing, "c").is_empty());
    }

    #[test]
    fn a_removed_flow_whose_source_stays_gets_forget_records_with_or_without_the_flag() {
        let existing = applied_state();
        for allow_data_removal in [false, true] {
            let options = PlanOptions {
                allow_data_removal,
                ..REMOVE
            };
            let plan = plan(&without("B"), &existing, options);
            assert_eq!(
                forget_records(&plan, &existing),
                [("A_0_0".to_owned(), 4, "a-to-b".to_owned())],
                "allow_data_removal {allow_data_removal}"
            );
            let deleted = deletions(&plan, &existing, "c");
            assert_eq!(
                deleted.contains(&"c_B_0_0-initial-load-changelog".to_owned()),
                allow_data_removal
            );
            assert!(!deleted.iter().any(|t| t.contains("A_0_0-")), "{deleted:?}");
        }
    }

    #[test]
    fn new_tables_get_compacted_changelogs_with_their_ingestion_partitions() {
        let valid = manifest();
        let mut existing = ExistingState::default();
        existing.topics.insert("A_0_0".to_owned(), 5);
        let options = PlanOptions {
            partitions: 2,
            allow_data_removal: false,
        };
        let plan = plan(&valid, &existing, options);
        let specs = topics_to_create(&plan, &existing, "c", 1);
        let by_name: BTreeMap<&str, (i32, bool)> = specs
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    (s.partitions, s.configs.contains_key("cleanup.policy")),
                )
            })
            .collect();
        assert_eq!(by_name.get("A_0_0"), None, "exists already");
        assert_eq!(by_name.get("B_0_0"), Some(&(2, false)));
        assert_eq!(by_name.get("A_0_0_B_0_0_input"), Some(&(5, false)));
        assert_eq!(by_name.get("c_A_0_0-changelog"), Some(&(5, true)));
        assert_eq!(by_name.get("c_B_0_0-changelog"), Some(&(2, true)));
    }
}
