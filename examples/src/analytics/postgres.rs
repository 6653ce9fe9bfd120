//! The PostgreSQL side: the `orders` and `orders_positions` tables, the reads of rows,
//! counts and stored positions, and the transaction that writes one batch's rows with
//! its partition's next offset. Every SQL statement of the example lives here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use tokio_postgres::{Client, NoTls};

use super::mapping::{OrderChange, OrderRow, SourcePosition};

/// The table and the consumer's positions; creating them again is a no-op. `id` is the
/// WfRun id (text, where the seed's sketch has a generated UUID); `user_id` and
/// `item_id` stay NULL until their variable's record is applied; `source_offset` and
/// `source_index` are the `weir-id` place of the newest record applied.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    user_id TEXT,
    item_id TEXT,
    order_status TEXT NOT NULL DEFAULT 'PENDING',
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL,
    source_offset BIGINT NOT NULL,
    source_index BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS orders_positions (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (topic, partition)
);";

/// Connects to `url` (a `postgresql://` URL or key=value string), with a 10 s connect
/// timeout unless the URL sets one; the connection runs on its own task.
pub async fn connect(url: &str) -> anyhow::Result<Client> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .context("the database URL is not a PostgreSQL connection string")?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    let (client, connection) = config
        .connect(NoTls)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {}", describe_target(&config)))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

/// Host, port and database of a connection, for messages (never the password).
fn describe_target(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{}",
        config.get_dbname().unwrap_or("(default database)")
    )
}

/// Creates the table and the positions table if they are missing.
pub async fn create_schema(client: &Client) -> anyhow::Result<()> {
    client
        .batch_execute(SCHEMA)
        .await
        .context("creating the orders tables")
}

/// Rows by `order_status` (of the ids starting with `id_prefix`, if given).
pub async fn status_counts(
    client: &Client,
    id_prefix: Option<&str>,
) -> anyhow::Result<BTreeMap<String, i64>> {
    let pattern = format!("{}%", like_escape(id_prefix.unwrap_or_default()));
    let rows = client
        .query(
            "SELECT order_status, count(*) FROM orders WHERE id LIKE $1 GROUP BY order_status",
            &[&pattern],
        )
        .await
        .context("counting orders by status")?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The stored next offset of every partition of `topic`.
pub async fn stored_positions(client: &Client, topic: &str) -> anyhow::Result<BTreeMap<i32, i64>> {
    let rows = client
        .query(
            "SELECT partition, next_offset FROM orders_positions WHERE topic = $1",
            &[&topic],
        )
        .await
        .with_context(|| format!("reading the positions of {topic}"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The stored next offset of `topic`/`partition`, storing `start` first when there is
/// none.
pub(super) async fn stored_position_or_insert(
    client: &Client,
    topic: &str,
    partition: i32,
    start: i64,
) -> anyhow::Result<i64> {
    client
        .execute(
            "INSERT INTO orders_positions (topic, partition, next_offset) VALUES ($1, $2, $3)
             ON CONFLICT (topic, partition) DO NOTHING",
            &[&topic, &partition, &start],
        )
        .await
        .with_context(|| format!("storing the start of {topic}/{partition}"))?;
    let stored: i64 = client
        .query_one(
            "SELECT next_offset FROM orders_positions WHERE topic = $1 AND partition = $2",
            &[&topic, &partition],
        )
        .await
        .with_context(|| format!("reading the position of {topic}/{partition}"))?
        .get(0);
    Ok(stored)
}

/// Stores `next` as the next offset of `topic`/`partition`, outside any batch (the
/// consumer moving a position that is outside the log).
pub(super) async fn move_position(
    client: &Client,
    topic: &str,
    partition: i32,
    next: i64,
) -> anyhow::Result<()> {
    client
        .execute(
            "UPDATE orders_positions SET next_offset = $3 WHERE topic = $1 AND partition = $2",
            &[&topic, &partition, &next],
        )
        .await
        .with_context(|| format!("moving the position of {topic}/{partition}"))?;
    Ok(())
}

const ROW_COLUMNS: &str =
    "id, user_id, item_id, order_status, created_at, updated_at, source_offset, source_index";

fn row_from(row: &tokio_postgres::Row) -> OrderRow {
    OrderRow {
        id: row.get(0),
        user_id: row.get(1),
        item_id: row.get(2),
        order_status: row.get(3),
        created_at: row.get(4),
        updated_at: row.get(5),
        position: SourcePosition {
            offset: row.get(6),
            index: row.get(7),
        },
    }
}

/// Every row of the table, by id.
pub async fn all_rows(client: &Client) -> anyhow::Result<BTreeMap<String, OrderRow>> {
    let rows = client
        .query(&format!("SELECT {ROW_COLUMNS} FROM orders"), &[])
        .await
        .context("reading the orders table")?;
    Ok(rows
        .iter()
        .map(row_from)
        .map(|r| (r.id.clone(), r))
        .collect())
}

/// What committing a batch came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Commit {
    /// The rows and the new position are written.
    Done { rows: usize },
    /// The stored position is not where this consumer left it (another consumer moved
    /// it): nothing was written; go on from the stored one.
    Moved(i64),
}

/// In one transaction: checks that `partition`'s stored position is `from`, applies
/// `changes` (in order) to the rows they name, and stores `to` as the next offset.
pub(super) async fn commit_batch(
    client: &mut Client,
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
    changes: &[OrderChange],
) -> anyhow::Result<Commit> {
    let tx = client.transaction().await?;
    let stored: Option<i64> = tx
        .query_opt(
            "SELECT next_offset FROM orders_positions WHERE topic = $1 AND partition = $2 FOR UPDATE",
            &[&topic, &partition],
        )
        .await?
        .map(|r| r.get(0));
    match stored {
        Some(stored) if stored == from => {}
        Some(stored) => return Ok(Commit::Moved(stored)),
        None => bail!("the position of {topic}/{partition} is no longer stored"),
    }
    let ids: Vec<&str> = changes
        .iter()
        .map(|c| c.id.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut rows: BTreeMap<String, OrderRow> = BTreeMap::new();
    if !ids.is_empty() {
        let found = tx
            .query(
                &format!("SELECT {ROW_COLUMNS} FROM orders WHERE id = ANY($1) FOR UPDATE"),
                &[&ids],
            )
            .await?;
        rows.extend(found.iter().map(row_from).map(|r| (r.id.clone(), r)));
    }
    let mut changed = BTreeSet::new();
    for change in changes {
        if let Some(row) = OrderRow::apply(rows.get(&change.id), change) {
            changed.insert(row.id.clone());
            rows.insert(row.id.clone(), row);
        }
    }
    let written: Vec<&OrderRow> = changed.iter().filter_map(|id| rows.get(id)).collect();
    if !written.is_empty() {
        upsert(&tx, &written).await?;
    }
    tx.execute(
        "UPDATE orders_positions SET next_offset = $3 WHERE topic = $1 AND partition = $2",
        &[&topic, &partition, &to],
    )
    .await?;
    tx.commit().await?;
    Ok(Commit::Done {
        rows: written.len(),
    })
}

/// Writes `rows` in one statement. The rows are locked and were computed by
/// [`OrderRow::apply`]; the `WHERE` states the same rule once more in SQL.
async fn upsert(tx: &tokio_postgres::Transaction<'_>, rows: &[&OrderRow]) -> anyhow::Result<()> {
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let users: Vec<Option<&str>> = rows.iter().map(|r| r.user_id.as_deref()).collect();
    let items: Vec<Option<&str>> = rows.iter().map(|r| r.item_id.as_deref()).collect();
    let statuses: Vec<&str> = rows.iter().map(|r| r.order_status.as_str()).collect();
    let created: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.created_at).collect();
    let updated: Vec<DateTime<Utc>> = rows.iter().map(|r| r.updated_at).collect();
    let offsets: Vec<i64> = rows.iter().map(|r| r.position.offset).collect();
    let indexes: Vec<i64> = rows.iter().map(|r| r.position.index).collect();
    tx.execute(
        &format!(
            "INSERT INTO orders ({ROW_COLUMNS})
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[],
                                  $5::timestamptz[], $6::timestamptz[], $7::int8[], $8::int8[])
             ON CONFLICT (id) DO UPDATE SET
                 user_id = EXCLUDED.user_id, item_id = EXCLUDED.item_id,
                 order_status = EXCLUDED.order_status, created_at = EXCLUDED.created_at,
                 updated_at = EXCLUDED.updated_at, source_offset = EXCLUDED.source_offset,
                 source_index = EXCLUDED.source_index
             WHERE (orders.source_offset, orders.source_index)
                 < (EXCLUDED.source_offset, EXCLUDED.source_index)"
        ),
        &[
            &ids, &users, &items, &statuses, &created, &updated, &offsets, &indexes,
        ],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_match_the_prefix_literally() {
        assert_eq!(like_escape("order_1%"), "order\\_1\\%");
    }
}
