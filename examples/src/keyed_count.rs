//! Keyed count: the smallest stateful processor. For each input record it adds the
//! record's value (a decimal increment) to a per-key counter in a store and forwards
//! `key -> new count` to the output topic, on the input's partition. A record without a
//! key or with a value that is not a number is a bad record (dead-lettered).

use weir_topology::{
    InputRecord, OutputRecord, ProcessingError, Processor, ProcessorContext, SourceTopic,
    StoreHandle, Topology, TopologyError,
};

/// Name of the counters' store (changelog `{cluster}_counts-changelog`).
pub const STORE: &str = "counts";
/// Name of the sub-topology (tasks `count-{partition}`).
pub const SUBTOPOLOGY: &str = "count";

/// `{cluster}_count-input`.
pub fn input_topic(cluster_id: &str) -> String {
    format!("{cluster_id}_count-input")
}

/// `{cluster}_count-output`.
pub fn output_topic(cluster_id: &str) -> String {
    format!("{cluster_id}_count-output")
}

/// The processor of one task.
#[derive(Debug)]
pub struct KeyedCount {
    counts: StoreHandle<i64>,
    output_topic: String,
}

impl Processor for KeyedCount {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, '_>,
        record: &InputRecord,
    ) -> Result<(), ProcessingError> {
        let key = record.key.clone().ok_or_else(|| {
            ProcessingError::record(format!("record at {} has no key", record.position()))
        })?;
        let value = record.value.as_deref().unwrap_or_default();
        let increment: i64 = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                ProcessingError::record(format!(
                    "value {:?} at {} is not a decimal increment",
                    String::from_utf8_lossy(value),
                    record.position()
                ))
            })?;
        let count = ctx.get(&self.counts, &key)?.unwrap_or(0) + increment;
        ctx.put(&self.counts, &key, &count)?;
        ctx.forward(OutputRecord::new(
            self.output_topic.clone(),
            record.partition,
            key,
            count.to_string(),
        ));
        Ok(())
    }
}

/// The keyed-count topology over `partitions` input partitions, and its store handle.
pub fn topology(
    cluster_id: &str,
    partitions: i32,
) -> Result<(Topology, StoreHandle<i64>), TopologyError> {
    let mut topology = Topology::new();
    let counts: StoreHandle<i64> = topology.store(STORE)?;
    let output = output_topic(cluster_id);
    topology.sink(weir_topology::kafka::TopicSpec::new(&output, partitions, 1));
    let handle = counts.clone();
    topology.add_subtopology(
        SUBTOPOLOGY,
        vec![SourceTopic::new(input_topic(cluster_id), partitions)],
        &[STORE],
        move |_partition| {
            Box::new(KeyedCount {
                counts: handle.clone(),
                output_topic: output.clone(),
            })
        },
    )?;
    Ok((topology, counts))
}
