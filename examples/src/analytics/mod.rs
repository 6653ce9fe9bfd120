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
//!
//! The parts, each in its own file: `mapping` is the rule without I/O (a record to an
//! [`OrderChange`], a change to an [`OrderRow`] if newer); `postgres` holds every SQL
//! statement (the schema, the reads, the batch transaction and its upsert);
//! `consumer` is the loop that fetches from Kafka, maps with `mapping` and commits
//! through `postgres` ([`OrdersConsumer`]); `setup` prepares a tenant for the example.
//! Dependencies point that way only: `mapping` knows neither PostgreSQL nor Kafka
//! clients, `postgres` knows no Kafka.

mod consumer;
mod mapping;
mod postgres;
mod setup;

pub use consumer::OrdersConsumer;
pub use mapping::{
    DEFAULT_STATUS, OrderChange, OrderField, OrderRow, SourcePosition, change_from_record,
};
pub use postgres::{SCHEMA, all_rows, connect, create_schema, status_counts, stored_positions};
pub use setup::{published_wf_spec, setup};
