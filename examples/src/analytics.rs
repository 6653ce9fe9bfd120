//! The seed's analytics example: the `orders` table in PostgreSQL, kept from a tenant's
//! execution-output topic (`{LHS_CLUSTER_ID}_{tenant}_execution-output`), one row per
//! WfRun of the `orders` workflow. Owns the mapping from output records to rows, the rule
//! that makes applying a record idempotent, and the consumer that applies each fetched
//! batch and its next offset in one PostgreSQL transaction.
//!
//! - **Mapping.** A `Variable` record of the run's thread 0 sets `user_id` (`user-id`),
//!   `item_id` (`item-id`) or `order_status` (`order-status`); a `WfRun` record dates
//!   the row (`created_at`, its start time) and, when the run fails (`ERROR`,
//!   `EXCEPTION`), puts that status in `order_status`, since `order-status` would stay
//!   where the run stopped. `updated_at` is the time of the newest record applied. The
//!   example's spec keeps `user-id` and `item-id` private, and private variables are not
//!   published: [`setup`] puts the spec with both enabled for the output topic.
//! - **Newer only.** A record's `weir-id` (`{topic}:{partition}:{offset}:{n}`) names the
//!   command that produced it and its place among that command's outputs. All commands
//!   of a WfRun are on one `core-cmd` partition and processed in offset order, so
//!   `(offset, n)` orders a run's records, and a redelivered record has the same one.
//!   A row keeps the `(offset, n)` of the newest record applied to it, and a record is
//!   applied only if its own is greater ([`OrderRow::apply`]): a redelivered copy, or a
//!   copy read again, changes nothing, wherever it turns up.
//! - **Exactly where it stopped.** The consumer keeps each partition's next offset in
//!   `orders_positions`, written in the transaction that writes the batch's rows, and
//!   starts from there (not from consumer groups). The transaction first locks the
//!   position row and checks it is where this consumer left it, so two consumers of one
//!   database never apply a record twice.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use prost::Message;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_postgres::{Client, NoTls};
use weir_processor::client::{WeirClient, accepted};
use weir_processor::config::WeirConfig;
use weir_processor::topics::CoreTopics;
use weir_proto::metadata_command::Command as Meta;
use weir_proto::output_topic_config::OutputTopicRecordingLevel;
use weir_proto::output_topic_record::Payload;
use weir_proto::variable_value::Value;
use weir_proto::{
    LhStatus, OutputTopicConfig, OutputTopicRecord, PutExternalEventDefRequest, PutTenantRequest,
    PutWfSpecRequest, RetryPolicy, VariableValue, WfSpec,
};
use weir_topology::kafka::{KafkaAdmin, KafkaClient, Record, TopicPartition};
use weir_topology::task::WEIR_ID_HEADER;

use crate::orders;

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

/// `order_status` of a row no `order-status` record has reached yet (the variable's
/// default in the spec).
pub const DEFAULT_STATUS: &str = "PENDING";

/// Largest fetch per partition and request.
const FETCH_BYTES: i32 = 1024 * 1024;
/// How long a fetch waits for records at the end of a partition.
const FETCH_WAIT: Duration = Duration::from_millis(200);
/// How long one batch's transaction may take before the consumer gives up.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait before fetching again after a Kafka error.
const RETRY_WAIT: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------
// The rule: records to changes, changes to rows
// ---------------------------------------------------------------------------------

/// Where a record stands among the records of its WfRun: the offset of the command that
/// produced it and its index among that command's outputs, read from `weir-id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourcePosition {
    pub offset: i64,
    pub index: i64,
}

impl SourcePosition {
    /// Reads `{topic}:{partition}:{offset}:{n}` (the topic may hold `:` itself).
    pub fn parse(weir_id: &str) -> anyhow::Result<Self> {
        let mut parts = weir_id.rsplitn(4, ':');
        let (Some(index), Some(offset), Some(partition), Some(topic)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            bail!("weir-id {weir_id:?} is not {{topic}}:{{partition}}:{{offset}}:{{n}}");
        };
        let number = |text: &str, what: &str| -> anyhow::Result<i64> {
            text.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .with_context(|| format!("weir-id {weir_id:?}: {what} {text:?} is not a number"))
        };
        number(partition, "partition")?;
        if topic.is_empty() {
            bail!("weir-id {weir_id:?} names no topic");
        }
        Ok(Self {
            offset: number(offset, "offset")?,
            index: number(index, "output index")?,
        })
    }
}

/// The one column a record sets, besides the row's dates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderField {
    UserId(String),
    ItemId(String),
    Status(String),
}

/// What one output record says about one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderChange {
    /// The WfRun id, the row's key.
    pub id: String,
    pub position: SourcePosition,
    /// The record's time (its command's).
    pub time: DateTime<Utc>,
    /// When the run started, if the record says.
    pub created_at: Option<DateTime<Utc>>,
    pub field: Option<OrderField>,
}

/// The change a record of the execution-output topic makes to the `orders` table, or
/// `None` for a record about anything else (other payloads, other workflows, other
/// variables). A record that does not decode, or that names no WfRun or position, is
/// an error.
pub fn change_from_record(record: &Record) -> anyhow::Result<Option<OrderChange>> {
    let kind = record.headers.get("weir-type").map(Vec::as_slice);
    if kind.is_some_and(|k| k != b"wf_run" && k != b"variable") {
        return Ok(None);
    }
    let value = record.value.as_deref().unwrap_or_default();
    let decoded =
        OutputTopicRecord::decode(value).context("the value is not an OutputTopicRecord")?;
    let time = decoded.timestamp.as_ref().map(timestamp);
    let (id, created_at, field) = match decoded.payload {
        Some(Payload::WfRun(run)) => {
            if run.wf_spec_id.as_ref().map(|s| s.name.as_str()) != Some(orders::WF_SPEC) {
                return Ok(None);
            }
            let status = run.status();
            let field = matches!(status, LhStatus::Error | LhStatus::Exception)
                .then(|| OrderField::Status(status.as_str_name().to_owned()));
            (
                run.id.map(|i| i.id),
                run.start_time.as_ref().map(timestamp),
                field,
            )
        }
        Some(Payload::Variable(variable)) => {
            if variable.wf_spec_id.as_ref().map(|s| s.name.as_str()) != Some(orders::WF_SPEC) {
                return Ok(None);
            }
            let id = variable.id.unwrap_or_default();
            if id.thread_run_number != 0 {
                return Ok(None);
            }
            let Some(text) = variable.value.as_ref().and_then(text_of) else {
                return Ok(None);
            };
            let field = match id.name.as_str() {
                "user-id" => OrderField::UserId(text),
                "item-id" => OrderField::ItemId(text),
                "order-status" => OrderField::Status(text),
                _ => return Ok(None),
            };
            (
                id.wf_run_id.map(|i| i.id),
                variable.created_at.as_ref().map(timestamp),
                Some(field),
            )
        }
        _ => return Ok(None),
    };
    let id = id
        .filter(|id| !id.is_empty())
        .context("the record names no WfRun")?;
    let weir_id = record
        .headers
        .get(WEIR_ID_HEADER)
        .context("the record has no weir-id header")?;
    let position = SourcePosition::parse(&String::from_utf8_lossy(weir_id))?;
    Ok(Some(OrderChange {
        id,
        position,
        time: time.unwrap_or(record.timestamp),
        created_at,
        field,
    }))
}

/// A variable's value as the text a column holds; `None` for no value, JSON or bytes.
fn text_of(value: &VariableValue) -> Option<String> {
    match value.value.as_ref()? {
        Value::Str(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        Value::Double(d) => Some(d.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::JsonObj(_) | Value::JsonArr(_) | Value::Bytes(_) => None,
    }
}

fn timestamp(ts: &prost_types::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(weir_proto::timestamp::to_millis(ts)).unwrap_or_default()
}

/// One row of the `orders` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub id: String,
    pub user_id: Option<String>,
    pub item_id: Option<String>,
    pub order_status: String,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// The newest record applied to the row.
    pub position: SourcePosition,
}

impl OrderRow {
    /// The row after `change`, or `None` when `change` is not newer than what the row
    /// holds (a redelivered or re-read record): then nothing is written. A new row
    /// starts `PENDING`; `created_at` is set once, from the first record that knows it.
    pub fn apply(current: Option<&Self>, change: &OrderChange) -> Option<Self> {
        if current.is_some_and(|row| change.position <= row.position) {
            return None;
        }
        let mut row = current.cloned().unwrap_or_else(|| Self {
            id: change.id.clone(),
            user_id: None,
            item_id: None,
            order_status: DEFAULT_STATUS.to_owned(),
            created_at: None,
            updated_at: change.time,
            position: change.position,
        });
        match &change.field {
            Some(OrderField::UserId(user)) => row.user_id = Some(user.clone()),
            Some(OrderField::ItemId(item)) => row.item_id = Some(item.clone()),
            Some(OrderField::Status(status)) => row.order_status = status.clone(),
            None => {}
        }
        row.created_at = row.created_at.or(change.created_at);
        row.updated_at = change.time;
        row.position = change.position;
        Some(row)
    }
}

// ---------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------

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
enum Commit {
    /// The rows and the new position are written.
    Done { rows: usize },
    /// The stored position is not where this consumer left it (another consumer moved
    /// it): nothing was written; go on from the stored one.
    Moved(i64),
}

/// In one transaction: checks that `partition`'s stored position is `from`, applies
/// `changes` (in order) to the rows they name, and stores `to` as the next offset.
async fn commit_batch(
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

// ---------------------------------------------------------------------------------
// The consumer
// ---------------------------------------------------------------------------------

/// The consumer of one tenant's execution-output topic into one database.
#[derive(Debug, Clone)]
pub struct OrdersConsumer {
    pub config: WeirConfig,
    pub tenant: String,
    pub database_url: String,
}

impl OrdersConsumer {
    /// The topic it reads.
    pub fn topic(&self) -> String {
        CoreTopics::new(&self.config).execution_output(&self.tenant)
    }

    /// Creates the tables, waits for the topic, and keeps the table up to date from
    /// every partition until `stop` resolves (a batch being written is finished first).
    /// Prints one line once every partition has its start offset. Fails on the first
    /// PostgreSQL error or a record it cannot read; Kafka errors are retried.
    pub async fn run(&self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let work = self.run_until(stop_rx);
        tokio::pin!(work);
        tokio::select! {
            result = &mut work => return result,
            () = stop => {}
        }
        let _ = stop_tx.send(true);
        work.await
    }

    async fn run_until(&self, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let topic = self.topic();
        create_schema(&connect(&self.database_url).await?).await?;
        let kafka_config = self.config.kafka().with_client_id("orders-analytics");
        let admin = KafkaAdmin::connect(&kafka_config).await?;
        let partitions = wait_for_topic(&admin, &topic, stop.clone()).await?;
        let Some(partitions) = partitions else {
            return Ok(());
        };
        let kafka = KafkaClient::connect(&kafka_config).await?;
        let mut readers = Vec::new();
        for partition in partitions {
            let handle = kafka.partition(&topic, partition).await?;
            let client = connect(&self.database_url).await?;
            let start = start_offset(&client, &handle).await?;
            readers.push(PartitionReader {
                kafka: handle,
                client,
                next: start,
            });
        }
        let starts: Vec<String> = readers
            .iter()
            .map(|r| format!("{}:{}", r.kafka.partition(), r.next))
            .collect();
        println!(
            "orders-analytics: {topic} ({} partitions) into the orders table, from offsets {}",
            readers.len(),
            starts.join(" ")
        );
        let mut tasks = JoinSet::new();
        for reader in readers {
            tasks.spawn(reader.run(stop.clone()));
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            let result = joined
                .context("a partition reader panicked")
                .and_then(|r| r);
            if let Err(error) = result
                && first_error.is_none()
            {
                // One partition failing stops the rest: the process ends, and a restart
                // resumes every partition from its stored position.
                tasks.abort_all();
                first_error = Some(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Waits until `topic` exists and returns its partitions; `None` if stopped first.
async fn wait_for_topic(
    admin: &KafkaAdmin,
    topic: &str,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<Vec<i32>>> {
    let mut said = false;
    loop {
        if admin.list_topics().await?.iter().any(|t| t == topic) {
            let described = admin.describe_topics(&[topic.to_owned()]).await?;
            let partitions: Vec<i32> = described
                .iter()
                .flat_map(|t| &t.partitions)
                .map(|p| p.partition)
                .collect();
            if !partitions.is_empty() {
                return Ok(Some(partitions));
            }
        }
        if !said {
            tracing::info!(
                topic,
                "waiting for the topic (put the tenant with an outputTopicConfig to create it)"
            );
            said = true;
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY_WAIT) => {}
            _ = stop.wait_for(|s| *s) => return Ok(None),
        }
    }
}

/// The stored next offset of the partition, stored first as the log's start when there
/// is none. A stored offset outside the log moves to the log's start, with a warning:
/// below it, retention deleted those records unread; past its end (the fetch high
/// watermark), the topic is not the one the position was stored for (recreated, or a
/// broker that lost its data).
async fn start_offset(client: &Client, kafka: &TopicPartition) -> anyhow::Result<i64> {
    let (topic, partition) = (kafka.topic(), kafka.partition());
    let earliest = kafka.earliest_offset().await?;
    client
        .execute(
            "INSERT INTO orders_positions (topic, partition, next_offset) VALUES ($1, $2, $3)
             ON CONFLICT (topic, partition) DO NOTHING",
            &[&topic, &partition, &earliest],
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
    let end = kafka.high_watermark().await?;
    if (earliest..=end).contains(&stored) {
        return Ok(stored);
    }
    tracing::warn!(
        topic,
        partition,
        stored,
        earliest,
        end,
        "the stored position is outside the log; going on from the log's start"
    );
    client
        .execute(
            "UPDATE orders_positions SET next_offset = $3 WHERE topic = $1 AND partition = $2",
            &[&topic, &partition, &earliest],
        )
        .await
        .with_context(|| format!("moving the position of {topic}/{partition}"))?;
    Ok(earliest)
}

/// One partition: fetch from the next offset, commit the batch with its position.
struct PartitionReader {
    kafka: TopicPartition,
    client: Client,
    next: i64,
}

impl PartitionReader {
    async fn run(mut self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let (topic, partition) = (self.kafka.topic().to_owned(), self.kafka.partition());
        tracing::info!(topic, partition, offset = self.next, "reading");
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let fetched = tokio::select! {
                fetched = self.kafka.fetch(self.next, FETCH_BYTES, FETCH_WAIT) => fetched,
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            let (records, high_watermark) = match fetched {
                Ok(fetched) => fetched,
                Err(error) => {
                    tracing::warn!(topic, partition, offset = self.next, %error, "fetch failed; retrying");
                    tokio::time::sleep(RETRY_WAIT).await;
                    continue;
                }
            };
            // A fetch answers whole batches, so it may start before the offset asked for.
            let records: Vec<_> = records
                .into_iter()
                .filter(|r| r.offset >= self.next)
                .collect();
            let Some(last) = records.last().map(|r| r.offset) else {
                continue;
            };
            let mut changes = Vec::new();
            for record in &records {
                let change = change_from_record(&record.record)
                    .with_context(|| format!("record {topic}/{partition}@{}", record.offset))?;
                changes.extend(change);
            }
            let commit = commit_batch(
                &mut self.client,
                &topic,
                partition,
                self.next,
                last + 1,
                &changes,
            );
            let outcome = tokio::time::timeout(DATABASE_TIMEOUT, commit)
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "PostgreSQL did not commit {topic}/{partition} offsets {}..={last} within {DATABASE_TIMEOUT:?}",
                        self.next
                    )
                })?
                .with_context(|| {
                    format!(
                        "committing {topic}/{partition} offsets {}..={last}",
                        self.next
                    )
                })?;
            match outcome {
                Commit::Done { rows } => {
                    tracing::debug!(
                        topic,
                        partition,
                        from = self.next,
                        to = last + 1,
                        records = records.len(),
                        rows,
                        lag = high_watermark - last - 1,
                        "committed"
                    );
                    self.next = last + 1;
                }
                Commit::Moved(stored) => {
                    tracing::warn!(
                        topic,
                        partition,
                        expected = self.next,
                        stored,
                        "another consumer moved the stored position; going on from it"
                    );
                    self.next = stored;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Setting up a tenant for the example
// ---------------------------------------------------------------------------------

/// The `orders` workflow with `user-id` and `item-id` published to the output topic
/// (`enable_entity_events: true` on their definitions; they stay private variables).
pub fn published_wf_spec() -> WfSpec {
    let mut spec = orders::wf_spec();
    for thread in spec.thread_specs.values_mut() {
        for var in &mut thread.variable_defs {
            let name = var.var_def.as_ref().map(|d| d.name.as_str());
            if matches!(name, Some("user-id" | "item-id")) {
                var.enable_entity_events = Some(true);
            }
        }
    }
    spec
}

/// Enables `tenant`'s output topics (`ALL_ENTITY_EVENTS`) and puts the orders
/// metadata with [`published_wf_spec`]. The `orders` example's own setup puts the spec
/// without those flags, which would turn them off again in place.
pub async fn setup(client: &WeirClient, tenant: &str, retry: &RetryPolicy) -> anyhow::Result<()> {
    let put_tenant = Meta::PutTenant(PutTenantRequest {
        id: tenant.to_owned(),
        output_topic_config: Some(OutputTopicConfig {
            default_recording_level: OutputTopicRecordingLevel::AllEntityEvents as i32,
        }),
    });
    accepted(client.send_metadata(tenant, put_tenant).await?)
        .with_context(|| format!("enabling the output topic of tenant {tenant}"))?;
    for def in orders::task_defs(retry, 30) {
        let name = def.name.clone();
        accepted(client.put_task_def(tenant, def).await?)
            .with_context(|| format!("putting TaskDef {name}"))?;
    }
    let event = Meta::PutExternalEventDef(PutExternalEventDefRequest {
        name: orders::DELIVERED.to_owned(),
        enable_entity_events: None,
    });
    accepted(client.send_metadata(tenant, event).await?).context("putting the event def")?;
    let spec = published_wf_spec();
    let request = Meta::PutWfSpec(PutWfSpecRequest {
        name: orders::WF_SPEC.to_owned(),
        thread_specs: spec.thread_specs,
        entrypoint_thread_name: spec.entrypoint_thread_name,
        enable_entity_events: spec.enable_entity_events,
    });
    accepted(client.send_metadata(tenant, request).await?).context("putting the WfSpec")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use weir_proto::{Variable, VariableId, WfRun, WfRunId, WfSpecId};

    use super::*;

    fn time(millis: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + millis).expect("a time")
    }

    fn record(kind: &str, weir_id: &str, value: &OutputTopicRecord) -> Record {
        Record {
            key: Some(b"order-1".to_vec()),
            value: Some(value.encode_to_vec()),
            headers: BTreeMap::from([
                ("weir-type".to_owned(), kind.as_bytes().to_vec()),
                ("weir-id".to_owned(), weir_id.as_bytes().to_vec()),
                ("weir-tenant".to_owned(), b"acme".to_vec()),
            ]),
            timestamp: time(0),
        }
    }

    fn spec_id(name: &str) -> Option<WfSpecId> {
        Some(WfSpecId {
            name: name.to_owned(),
            major_version: 0,
            revision: 0,
        })
    }

    fn wf_run(spec: &str, status: LhStatus, at: i64) -> OutputTopicRecord {
        OutputTopicRecord {
            timestamp: Some(weir_proto::timestamp::from_millis(
                time(at).timestamp_millis(),
            )),
            payload: Some(Payload::WfRun(WfRun {
                id: Some(WfRunId {
                    id: "order-1".to_owned(),
                }),
                wf_spec_id: spec_id(spec),
                status: status as i32,
                start_time: Some(weir_proto::timestamp::from_millis(
                    time(0).timestamp_millis(),
                )),
                ..Default::default()
            })),
        }
    }

    fn variable(spec: &str, thread: i32, name: &str, value: &str, at: i64) -> OutputTopicRecord {
        OutputTopicRecord {
            timestamp: Some(weir_proto::timestamp::from_millis(
                time(at).timestamp_millis(),
            )),
            payload: Some(Payload::Variable(Variable {
                id: Some(VariableId {
                    wf_run_id: Some(WfRunId {
                        id: "order-1".to_owned(),
                    }),
                    thread_run_number: thread,
                    name: name.to_owned(),
                }),
                value: Some(VariableValue {
                    value: Some(Value::Str(value.to_owned())),
                }),
                created_at: Some(weir_proto::timestamp::from_millis(
                    time(0).timestamp_millis(),
                )),
                wf_spec_id: spec_id(spec),
            })),
        }
    }

    fn change(offset: i64, index: i64, field: Option<OrderField>) -> OrderChange {
        OrderChange {
            id: "order-1".to_owned(),
            position: SourcePosition { offset, index },
            time: time(offset),
            created_at: Some(time(0)),
            field,
        }
    }

    fn status(s: &str) -> Option<OrderField> {
        Some(OrderField::Status(s.to_owned()))
    }

    /// Applies `changes` in order to an empty table, as the consumer does.
    fn replay(changes: &[OrderChange]) -> Option<OrderRow> {
        let mut row = None;
        for change in changes {
            if let Some(new) = OrderRow::apply(row.as_ref(), change) {
                row = Some(new);
            }
        }
        row
    }

    #[test]
    fn a_weir_id_gives_the_command_offset_and_output_index() {
        assert_eq!(
            SourcePosition::parse("weir_core-cmd:7:1234:3").expect("parses"),
            SourcePosition {
                offset: 1234,
                index: 3
            }
        );
        // Only the last three parts are numbers; the topic may hold anything else.
        assert_eq!(
            SourcePosition::parse("a:b_core-cmd:0:5:0").expect("parses"),
            SourcePosition {
                offset: 5,
                index: 0
            }
        );
        for bad in [
            "",
            "core-cmd:1:2",
            ":1:2:3",
            "core-cmd:x:2:3",
            "core-cmd:1:2:-3",
            "t:1:2:dead-letter",
        ] {
            assert!(SourcePosition::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn positions_order_by_command_offset_then_output_index() {
        let p = |offset, index| SourcePosition { offset, index };
        assert!(p(10, 0) > p(9, 7));
        assert!(p(10, 1) > p(10, 0));
        assert!(p(10, 1) == p(10, 1));
    }

    #[test]
    fn records_of_the_orders_workflow_map_to_their_column() {
        let cases = [
            ("user-id", OrderField::UserId("user-3".to_owned())),
            ("item-id", OrderField::ItemId("user-3".to_owned())),
            ("order-status", OrderField::Status("user-3".to_owned())),
        ];
        for (name, field) in cases {
            let value = variable("orders", 0, name, "user-3", 5);
            let change = change_from_record(&record("variable", "c:1:40:2", &value))
                .expect("decodes")
                .expect("a change");
            assert_eq!(
                change,
                OrderChange {
                    id: "order-1".to_owned(),
                    position: SourcePosition {
                        offset: 40,
                        index: 2
                    },
                    time: time(5),
                    created_at: Some(time(0)),
                    field: Some(field),
                }
            );
        }
        let started = change_from_record(&record(
            "wf_run",
            "c:1:40:0",
            &wf_run("orders", LhStatus::Running, 0),
        ))
        .expect("decodes")
        .expect("a change");
        assert_eq!(started.field, None);
        assert_eq!(started.created_at, Some(time(0)));
        for (failed, name) in [
            (LhStatus::Error, "ERROR"),
            (LhStatus::Exception, "EXCEPTION"),
        ] {
            let change =
                change_from_record(&record("wf_run", "c:1:90:0", &wf_run("orders", failed, 9)))
                    .expect("decodes")
                    .expect("a change");
            assert_eq!(change.field, status(name));
        }
        let completed = change_from_record(&record(
            "wf_run",
            "c:1:90:4",
            &wf_run("orders", LhStatus::Completed, 9),
        ))
        .expect("decodes")
        .expect("a change");
        assert_eq!(completed.field, None, "completion is order-status's to say");
    }

    #[test]
    fn records_about_anything_else_change_nothing() {
        let ignored = [
            record(
                "wf_run",
                "c:1:1:0",
                &wf_run("refunds", LhStatus::Running, 0),
            ),
            record(
                "variable",
                "c:1:1:1",
                &variable("refunds", 0, "user-id", "u", 0),
            ),
            record(
                "variable",
                "c:1:1:1",
                &variable("orders", 0, "price", "7", 0),
            ),
            record(
                "variable",
                "c:1:1:1",
                &variable("orders", 1, "order-status", "X", 0),
            ),
            // Not even decoded: the type header says what it is.
            Record {
                value: Some(b"not protobuf".to_vec()),
                ..record("task_run", "c:1:1:2", &OutputTopicRecord::default())
            },
        ];
        for record in ignored {
            assert_eq!(change_from_record(&record).expect("reads"), None);
        }
    }

    #[test]
    fn an_orders_record_without_a_weir_id_or_value_is_an_error() {
        let mut no_id = record("variable", "x", &variable("orders", 0, "user-id", "u", 0));
        no_id.headers.remove("weir-id");
        assert!(change_from_record(&no_id).is_err());
        let garbage = Record {
            value: Some(vec![0xff, 0xff]),
            ..record("wf_run", "c:1:1:0", &OutputTopicRecord::default())
        };
        assert!(change_from_record(&garbage).is_err());
    }

    #[test]
    fn a_new_row_is_pending_until_its_status_arrives() {
        let row = OrderRow::apply(None, &change(3, 0, None)).expect("a new row");
        assert_eq!(
            row,
            OrderRow {
                id: "order-1".to_owned(),
                user_id: None,
                item_id: None,
                order_status: "PENDING".to_owned(),
                created_at: Some(time(0)),
                updated_at: time(3),
                position: SourcePosition {
                    offset: 3,
                    index: 0
                },
            }
        );
        let row = OrderRow::apply(Some(&row), &change(3, 1, status("SHIPPING"))).expect("newer");
        assert_eq!(row.order_status, "SHIPPING");
        assert_eq!(row.created_at, Some(time(0)));
    }

    #[test]
    fn a_record_not_newer_than_the_row_changes_nothing() {
        let row = replay(&[
            change(3, 0, None),
            change(3, 1, Some(OrderField::UserId("u".to_owned()))),
            change(8, 2, status("COMPLETED")),
        ])
        .expect("a row");
        // The same record again (a redelivery), and older ones read late.
        for stale in [
            change(8, 2, status("COMPLETED")),
            change(8, 1, status("SHIPPING")),
            change(5, 9, status("SHIPPING")),
            change(3, 1, Some(OrderField::UserId("someone else".to_owned()))),
        ] {
            assert_eq!(OrderRow::apply(Some(&row), &stale), None, "{stale:?}");
        }
    }

    #[test]
    fn an_order_s_records_redelivered_after_a_crash_never_take_its_row_back() {
        let user = |u: &str| Some(OrderField::UserId(u.to_owned()));
        let item = |i: &str| Some(OrderField::ItemId(i.to_owned()));
        let once = [
            change(3, 0, None),
            change(3, 1, user("user-1")),
            change(3, 2, item("item-1")),
            change(3, 3, status("PENDING")),
            change(20, 1, status("SHIPPING")),
            change(31, 2, status("COMPLETED")),
            change(31, 3, None),
        ];
        let expected = replay(&once).expect("a row");
        assert_eq!(expected.order_status, "COMPLETED");
        assert_eq!(
            (expected.user_id.as_deref(), expected.item_id.as_deref()),
            (Some("user-1"), Some("item-1"))
        );
        assert_eq!(expected.updated_at, time(31));
        // The server produced the records of offsets 3 to 31, crashed before its
        // commit, and produced them again from offset 20 on: after each copy the row is
        // still the one the newest record so far made.
        let mut delivered: Vec<OrderChange> = once[..6].to_vec();
        let newest_so_far = replay(&delivered);
        for copy in [&once[4], &once[5]] {
            delivered.push(copy.clone());
            assert_eq!(
                replay(&delivered),
                newest_so_far,
                "after a copy of {copy:?}"
            );
        }
        delivered.push(once[6].clone());
        assert_eq!(replay(&delivered), Some(expected.clone()));
        // A consumer reading the whole topic twice ends with the same row.
        let twice: Vec<OrderChange> = delivered.iter().chain(&delivered).cloned().collect();
        assert_eq!(replay(&twice), Some(expected));
    }

    #[test]
    fn a_failed_run_shows_its_status_until_a_newer_record_says_otherwise() {
        let row = replay(&[
            change(3, 0, None),
            change(3, 1, status("PENDING")),
            change(9, 0, status("ERROR")),
        ])
        .expect("a row");
        assert_eq!(row.order_status, "ERROR");
        let resumed =
            OrderRow::apply(Some(&row), &change(12, 0, status("SHIPPING"))).expect("newer");
        assert_eq!(resumed.order_status, "SHIPPING");
    }

    #[test]
    fn the_published_spec_is_the_example_s_with_the_ids_enabled() {
        let mut published = published_wf_spec();
        let thread = published
            .thread_specs
            .get_mut("entrypoint")
            .expect("the entrypoint");
        let flags: BTreeMap<String, Option<bool>> = thread
            .variable_defs
            .iter()
            .map(|v| {
                (
                    v.var_def
                        .as_ref()
                        .map(|d| d.name.clone())
                        .unwrap_or_default(),
                    v.enable_entity_events,
                )
            })
            .collect();
        assert_eq!(
            flags,
            BTreeMap::from([
                ("item-id".to_owned(), Some(true)),
                ("order-status".to_owned(), None),
                ("user-id".to_owned(), Some(true)),
            ])
        );
        for var in &mut thread.variable_defs {
            var.enable_entity_events = None;
        }
        assert_eq!(published, orders::wf_spec(), "nothing else differs");
    }

    #[test]
    fn like_patterns_match_the_prefix_literally() {
        assert_eq!(like_escape("order_1%"), "order\\_1\\%");
    }
}
