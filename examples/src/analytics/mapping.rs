//! The rule, free of I/O: which output records change the `orders` table, what they
//! change ([`change_from_record`]), and how a change is applied to a row only if it is
//! newer than the row's `weir-id` position ([`OrderRow::apply`]).

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use prost::Message;
use weir_proto::output_topic_record::Payload;
use weir_proto::variable_value::Value;
use weir_proto::{LhStatus, OutputTopicRecord, VariableValue};
use weir_topology::kafka::Record;
use weir_topology::task::WEIR_ID_HEADER;

use crate::orders;

/// `order_status` of a row no `order-status` record has reached yet (the variable's
/// default in the spec).
pub const DEFAULT_STATUS: &str = "PENDING";

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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use weir_proto::{Variable, VariableId, WfRun, WfRunId, WfSpecId};

    use super::*;

    fn time(millis: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + millis).expect("a time")
    }

    /// `time(millis)` as a record's protobuf timestamp.
    fn proto_time(millis: i64) -> Option<prost_types::Timestamp> {
        Some(weir_proto::timestamp::from_millis(
            time(millis).timestamp_millis(),
        ))
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

    /// The change of an `orders` record that must make one.
    fn change_of(kind: &str, weir_id: &str, value: &OutputTopicRecord) -> OrderChange {
        change_from_record(&record(kind, weir_id, value))
            .expect("decodes")
            .expect("a change")
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
            timestamp: proto_time(at),
            payload: Some(Payload::WfRun(WfRun {
                id: Some(WfRunId {
                    id: "order-1".to_owned(),
                }),
                wf_spec_id: spec_id(spec),
                status: status as i32,
                start_time: proto_time(0),
                ..Default::default()
            })),
        }
    }

    fn variable(spec: &str, thread: i32, name: &str, value: &str, at: i64) -> OutputTopicRecord {
        OutputTopicRecord {
            timestamp: proto_time(at),
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
                created_at: proto_time(0),
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
            let change = change_of("variable", "c:1:40:2", &value);
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
        let started = change_of(
            "wf_run",
            "c:1:40:0",
            &wf_run("orders", LhStatus::Running, 0),
        );
        assert_eq!(started.field, None);
        assert_eq!(started.created_at, Some(time(0)));
        for (failed, name) in [
            (LhStatus::Error, "ERROR"),
            (LhStatus::Exception, "EXCEPTION"),
        ] {
            let change = change_of("wf_run", "c:1:90:0", &wf_run("orders", failed, 9));
            assert_eq!(change.field, status(name));
        }
        let completed = change_of(
            "wf_run",
            "c:1:90:4",
            &wf_run("orders", LhStatus::Completed, 9),
        );
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
}
