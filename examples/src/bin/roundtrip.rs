//! `make run` (for now): a round trip of protobuf records through the broker.
//!
//! Creates `{LHS_CLUSTER_ID}_roundtrip` (two partitions, with a retention config) through
//! weir's admin module, produces the output-topic records of two small orders (keyed
//! by WfRun id, with `weir-tenant` and `weir-type` headers), reads them back from the
//! fetch high watermark it started at, decodes them and checks each is intact.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use prost::Message;
use weir_processor::config::WeirConfig;
use weir_proto::output_topic_record::Payload;
use weir_proto::variable_value::Value;
use weir_proto::{
    LhStatus, OutputTopicRecord, TaskRun, TaskRunId, TaskStatus, Variable, VariableId,
    VariableValue, WfRun, WfRunId,
};
use weir_topology::kafka::{KafkaAdmin, KafkaClient, Record, TopicSpec};

/// mimalloc for every allocation of this process (why: the workspace Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PARTITIONS: i32 = 2;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    weir_processor::lifecycle::disable_transparent_huge_pages();
    let config = WeirConfig::from_env()?;
    let kafka = config.kafka();
    let topic = config.topic("roundtrip");
    println!("broker {} / topic {topic}", config.bootstrap_servers);

    let admin = KafkaAdmin::connect(&kafka).await?;
    admin
        .ensure_topics(&[
            TopicSpec::new(&topic, PARTITIONS, config.replication_factor)
                .with_config("retention.ms", "3600000"),
        ])
        .await?;
    let configs = admin.topic_configs(&topic).await?;
    println!("created {topic}: {PARTITIONS} partitions, configs {configs:?}");

    let client = KafkaClient::connect(&kafka).await?;
    let started = Instant::now();
    let mut sent = 0;
    for (partition, order) in [(0, "order-1"), (1, "order-2")] {
        let handle = client.partition(&topic, partition).await?;
        let start = handle.high_watermark().await?;
        let records: Vec<(&str, OutputTopicRecord)> = order_records(order);
        let produced: Vec<Record> = records
            .iter()
            .map(|(kind, r)| to_kafka(order, kind, r))
            .collect();
        let offsets = handle.produce(produced).await?;
        println!(
            "produced {} records for {order} to partition {partition} at offsets {offsets:?}",
            offsets.len()
        );

        let mut received = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while received.len() < records.len() {
            ensure!(
                Instant::now() < deadline,
                "only {} of {} records came back",
                received.len(),
                records.len()
            );
            let next = start + i64::try_from(received.len())?;
            let (batch, _high_watermark) = handle
                .fetch(next, 1024 * 1024, Duration::from_millis(200))
                .await?;
            received.extend(batch.into_iter().filter(|r| r.offset >= start));
        }
        for ((kind, expected), got) in records.iter().zip(&received) {
            let decoded =
                OutputTopicRecord::decode(got.record.value.as_deref().unwrap_or_default())
                    .with_context(|| {
                        format!("record {partition}@{} does not decode", got.offset)
                    })?;
            if &decoded != expected || got.record.key.as_deref() != Some(order.as_bytes()) {
                bail!(
                    "record {partition}@{} came back different from what was sent",
                    got.offset
                );
            }
            let tenant = got
                .record
                .headers
                .get("weir-tenant")
                .map(|v| String::from_utf8_lossy(v));
            println!(
                "  read back p{partition}@{} key={order} weir-type={kind} weir-tenant={} {}",
                got.offset,
                tenant.unwrap_or_default(),
                summary(&decoded)
            );
            sent += 1;
        }
    }
    println!(
        "round trip ok: {sent} records produced, fetched and decoded intact in {:?}",
        started.elapsed()
    );
    Ok(())
}

/// The records the output topic would carry for one small order.
fn order_records(order: &str) -> Vec<(&'static str, OutputTopicRecord)> {
    let wf_run_id = Some(WfRunId {
        id: order.to_owned(),
    });
    let at = |second: i64| {
        Some(weir_proto::timestamp::from_millis(
            1_700_000_000_000 + second * 1000,
        ))
    };
    let wf_run = |status: LhStatus, second| OutputTopicRecord {
        timestamp: at(second),
        payload: Some(Payload::WfRun(WfRun {
            id: wf_run_id.clone(),
            status: status.into(),
            ..Default::default()
        })),
    };
    let variable = |value: &str, second| OutputTopicRecord {
        timestamp: at(second),
        payload: Some(Payload::Variable(Variable {
            id: Some(VariableId {
                wf_run_id: wf_run_id.clone(),
                thread_run_number: 0,
                name: "order-status".to_owned(),
            }),
            value: Some(VariableValue {
                value: Some(Value::Str(value.to_owned())),
            }),
            ..Default::default()
        })),
    };
    let task_run = OutputTopicRecord {
        timestamp: at(2),
        payload: Some(Payload::TaskRun(TaskRun {
            id: Some(TaskRunId {
                wf_run_id: wf_run_id.clone(),
                task_guid: format!("{order}-ship"),
            }),
            task_def_name: "ship-item".to_owned(),
            status: TaskStatus::TaskSuccess.into(),
            ..Default::default()
        })),
    };
    vec![
        ("wf_run", wf_run(LhStatus::Running, 0)),
        ("variable", variable("PENDING", 0)),
        ("task_run", task_run),
        ("variable", variable("COMPLETED", 3)),
        ("wf_run", wf_run(LhStatus::Completed, 3)),
    ]
}

fn to_kafka(order: &str, kind: &str, record: &OutputTopicRecord) -> Record {
    Record {
        key: Some(order.as_bytes().to_vec()),
        value: Some(record.encode_to_vec()),
        headers: BTreeMap::from([
            ("weir-tenant".to_owned(), b"default".to_vec()),
            ("weir-type".to_owned(), kind.as_bytes().to_vec()),
        ]),
        timestamp: chrono::Utc::now(),
    }
}

fn summary(record: &OutputTopicRecord) -> String {
    match &record.payload {
        Some(Payload::WfRun(run)) => format!("WfRun status={:?}", run.status()),
        Some(Payload::Variable(var)) => format!(
            "Variable {}={:?}",
            var.id.as_ref().map(|i| i.name.as_str()).unwrap_or_default(),
            var.value.as_ref().and_then(|v| v.value.clone())
        ),
        Some(Payload::TaskRun(task)) => {
            format!("TaskRun {} status={:?}", task.task_def_name, task.status())
        }
        other => format!("{other:?}"),
    }
}
