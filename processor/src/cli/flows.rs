//! The flows commands of `weir`: `flows plan` and `flows apply` (a manifest against what
//! the cluster holds, through [`crate::flows::apply`]), and `table get` / `table scan`,
//! which read a model version's table from its changelog as committed, one JSON line
//! per row.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use futures::future::try_join_all;
use prost::Message;
use serde_json::{Value, json};
use weir_proto::{DataModelVersion, InitialLoadProgress, TableRow};
use weir_topology::kafka::{KafkaAdmin, KafkaClient, KafkaError};
use weir_topology::read_committed;

use crate::config::WeirConfig;
use crate::flows::apply::{self, table_changelog};
use crate::flows::manifest::{self, ValidManifest};
use crate::flows::naming::ModelVersion;
use crate::flows::plan::{self, PlanOptions};
use crate::flows::topology::initial_load_store;
use crate::topics::partition_for_key;

fn read_manifest(file: &Path) -> anyhow::Result<ValidManifest> {
    let parsed = manifest::read(file)?;
    manifest::validate(parsed, None).map_err(|invalid| anyhow::anyhow!("{invalid}"))
}

/// `weir flows plan FILE`: prints what `apply` would do.
pub async fn plan(
    config: &WeirConfig,
    file: &Path,
    options: PlanOptions,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let manifest = read_manifest(file)?;
    let (admin, client) = connect(config).await?;
    let existing = apply::read_existing(&admin, &client, &config.cluster_id).await?;
    let plan = plan::plan(&manifest, &existing, options);
    writeln!(out, "{plan}")?;
    Ok(())
}

/// `weir flows apply FILE`: applies the plan and prints what it did.
pub async fn apply(
    config: &WeirConfig,
    file: &Path,
    options: PlanOptions,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let manifest = read_manifest(file)?;
    let (admin, client) = connect(config).await?;
    let applied = apply_manifest(config, &admin, &client, &manifest, options).await?;
    write!(out, "{applied}")?;
    Ok(())
}

/// Plans and applies `manifest` on the cluster of `config`.
pub async fn apply_manifest(
    config: &WeirConfig,
    admin: &KafkaAdmin,
    client: &KafkaClient,
    manifest: &ValidManifest,
    options: PlanOptions,
) -> anyhow::Result<apply::Applied> {
    let existing = apply::read_existing(admin, client, &config.cluster_id).await?;
    let plan = plan::plan(manifest, &existing, options);
    if !plan.is_applicable() {
        anyhow::bail!(
            "the plan has conflicts and is not applied: {}",
            plan.conflicts
                .iter()
                .map(|c| format!("{}: {}", c.what, c.why))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(apply::apply(
        admin,
        client,
        &config.cluster_id,
        config.replication_factor,
        manifest,
        &existing,
        &plan,
    )
    .await?)
}

async fn connect(config: &WeirConfig) -> anyhow::Result<(KafkaAdmin, KafkaClient)> {
    let kafka = config.kafka();
    let admin = KafkaAdmin::connect(&kafka).await?;
    let client = KafkaClient::connect(&kafka).await?;
    Ok((admin, client))
}

/// Reads `MAJOR.MINOR` (or `MAJOR_MINOR`).
pub fn parse_version(text: &str) -> Result<DataModelVersion, String> {
    let (major, minor) = text
        .split_once(['.', '_'])
        .ok_or_else(|| format!("version {text:?} is not MAJOR.MINOR"))?;
    let number = |part: &str| {
        part.parse::<u32>()
            .map_err(|_| format!("version {text:?} is not MAJOR.MINOR"))
    };
    Ok(DataModelVersion {
        major: number(major)?,
        minor: number(minor)?,
    })
}

/// One table row as a JSON line: `{"key":…,"value":…,"source_topic":…,"source_offset":…}`;
/// a value that is not JSON is shown as text.
pub fn row_json(key: &[u8], row: &TableRow) -> String {
    let value = serde_json::from_slice::<Value>(&row.value)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&row.value).into_owned()));
    json!({
        "key": String::from_utf8_lossy(key),
        "value": value,
        "source_topic": row.source_topic,
        "source_offset": row.source_offset,
    })
    .to_string()
}

/// The partition count of a table's changelog.
async fn table_partitions(admin: &KafkaAdmin, changelog: &str) -> anyhow::Result<i32> {
    match admin.describe_topics(&[changelog.to_owned()]).await {
        Ok(described) => Ok(described
            .first()
            .map_or(0, |d| i32::try_from(d.partitions.len()).unwrap_or(i32::MAX))),
        Err(KafkaError::UnknownTopic { .. }) => anyhow::bail!(
            "the table has no changelog topic {changelog}: is the model version declared \
             and the manifest applied?"
        ),
        Err(e) => Err(e.into()),
    }
}

/// The committed entries of one partition of a store, decoded as `M`, in key order.
async fn read_store_partition<M: Message + Default>(
    client: &KafkaClient,
    changelog: &str,
    partition: i32,
) -> anyhow::Result<Vec<(Vec<u8>, M)>> {
    let handle = client.partition(changelog, partition).await?;
    let contents = read_committed(&handle).await?;
    contents
        .into_iter()
        .map(|(key, value)| {
            let decoded = M::decode(value.as_ref()).with_context(|| {
                format!(
                    "entry {:?} of {changelog} partition {partition} is not a {}",
                    String::from_utf8_lossy(&key),
                    std::any::type_name::<M>()
                )
            })?;
            Ok((key.to_vec(), decoded))
        })
        .collect()
}

/// Every committed row of `model`'s table, in key order.
pub async fn table_rows(
    config: &WeirConfig,
    model: &ModelVersion,
) -> anyhow::Result<BTreeMap<Vec<u8>, TableRow>> {
    let (admin, client) = connect(config).await?;
    let changelog = table_changelog(&config.cluster_id, &model.table());
    let partitions = table_partitions(&admin, &changelog).await?;
    let reads = (0..partitions).map(|p| read_store_partition(&client, &changelog, p));
    Ok(try_join_all(reads).await?.into_iter().flatten().collect())
}

/// The committed initial load progress of every flow from `model`, on every partition
/// (none before the flows first ran).
pub async fn load_progress(
    config: &WeirConfig,
    model: &ModelVersion,
) -> anyhow::Result<Vec<InitialLoadProgress>> {
    let (admin, client) = connect(config).await?;
    let changelog = table_changelog(&config.cluster_id, &initial_load_store(model));
    let partitions = match admin
        .describe_topics(std::slice::from_ref(&changelog))
        .await
    {
        Ok(described) => described
            .first()
            .map_or(0, |d| i32::try_from(d.partitions.len()).unwrap_or(i32::MAX)),
        Err(KafkaError::UnknownTopic { .. }) => 0,
        Err(e) => return Err(e.into()),
    };
    let reads = (0..partitions)
        .map(|p| read_store_partition::<InitialLoadProgress>(&client, &changelog, p));
    Ok(try_join_all(reads)
        .await?
        .into_iter()
        .flatten()
        .map(|(_, progress)| progress)
        .collect())
}

/// `weir table get MODEL VERSION KEY`: the row of `key`, or an error naming the table.
pub async fn table_get(
    config: &WeirConfig,
    model: &ModelVersion,
    key: &str,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let (admin, client) = connect(config).await?;
    let changelog = table_changelog(&config.cluster_id, &model.table());
    let partitions = table_partitions(&admin, &changelog).await?;
    let partition = partition_for_key(key.as_bytes(), partitions);
    let rows = read_store_partition::<TableRow>(&client, &changelog, partition).await?;
    match rows.iter().find(|(k, _)| k.as_slice() == key.as_bytes()) {
        Some((k, row)) => writeln!(out, "{}", row_json(k, row))?,
        None => anyhow::bail!("no row with key {key:?} in table {}", model.table()),
    }
    Ok(())
}

/// `weir table scan MODEL VERSION [--limit N]`: rows in key order.
pub async fn table_scan(
    config: &WeirConfig,
    model: &ModelVersion,
    limit: Option<usize>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let rows = table_rows(config, model).await?;
    for (key, row) in rows.iter().take(limit.unwrap_or(usize::MAX)) {
        writeln!(out, "{}", row_json(key, row))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_as_major_dot_minor() {
        assert_eq!(
            parse_version("0.1"),
            Ok(DataModelVersion { major: 0, minor: 1 })
        );
        assert_eq!(
            parse_version("2_10"),
            Ok(DataModelVersion {
                major: 2,
                minor: 10
            })
        );
        for bad in ["1", "a.b", "1.", "-1.0", ""] {
            assert!(parse_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rows_print_as_one_json_line() {
        let row = TableRow {
            value: br#"{"event":"click","user_id":"u1"}"#.to_vec(),
            source_topic: "UserActivity_0_1".to_owned(),
            source_offset: 42,
        };
        assert_eq!(
            row_json(b"u1", &row),
            r#"{"key":"u1","source_offset":42,"source_topic":"UserActivity_0_1","value":{"event":"click","user_id":"u1"}}"#
        );
        let text = TableRow {
            value: b"not json".to_vec(),
            ..row
        };
        assert!(row_json(b"k", &text).contains(r#""value":"not json""#));
    }
}
