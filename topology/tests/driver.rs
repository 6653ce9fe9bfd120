//! The runtime's processing rules, through the broker-free test driver: change tracking,
//! read-only records, dead letters (errors and panics leave the store untouched),
//! `weir-id` stamping, timers that fire exactly once, and global stores.

use weir_topology::task::{ERROR_HEADER, RecordOutcome, SOURCE_OFFSET_HEADER, WEIR_ID_HEADER};
use weir_topology::{
    GlobalStoreHandle, InputRecord, OutputRecord, ProcessingError, Processor, ProcessorContext,
    SourceTopic, StoreHandle, Topology, TopologyTestDriver,
};

const CORE: &str = "t_core-cmd";
const META: &str = "t_meta-cmd";
const OUT: &str = "t_out";

/// Does what the record's value says.
struct Scripted {
    counts: StoreHandle<i64>,
    settings: GlobalStoreHandle<i64>,
}

impl Processor for Scripted {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, '_>,
        record: &InputRecord,
    ) -> Result<(), ProcessingError> {
        let key = record.key.clone().unwrap_or_default();
        let command =
            String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned();
        match command.as_str() {
            "inc" => {
                let count = ctx.get(&self.counts, &key)?.unwrap_or(0) + 1;
                ctx.put(&self.counts, &key, &count)?;
                ctx.forward(OutputRecord::new(
                    OUT,
                    ctx.partition(),
                    key,
                    count.to_string(),
                ));
            }
            "read" => {
                let _ = ctx.get(&self.counts, &key)?;
                let _ = ctx.scan_prefix(&self.counts, b"")?;
            }
            "rewrite" => {
                // Writes back exactly what is stored: not a change.
                if let Some(count) = ctx.get(&self.counts, &key)? {
                    ctx.put(&self.counts, &key, &count)?;
                }
            }
            "fail" => {
                ctx.put(&self.counts, &key, &1_000)?;
                ctx.forward(OutputRecord::new(OUT, 0, "never", "sent"));
                return Err(ProcessingError::record("asked to fail"));
            }
            "panic" => {
                ctx.put(&self.counts, &key, &2_000)?;
                panic!("asked to panic");
            }
            "changes" => {
                ctx.put(&self.counts, b"b", &2)?;
                ctx.put(&self.counts, b"a", &1)?;
                let changes: Vec<String> = ctx
                    .changes()
                    .iter()
                    .map(|c| {
                        format!(
                            "{}:{}",
                            ctx.store_name(c.store),
                            String::from_utf8_lossy(&c.key)
                        )
                    })
                    .collect();
                ctx.forward(OutputRecord::new(OUT, 0, "changes", changes.join(",")));
            }
            "setting" => {
                let value = ctx.global_get(&self.settings, &key)?.unwrap_or(-1);
                ctx.forward(OutputRecord::new(OUT, 0, key, value.to_string()));
            }
            timer if timer.starts_with("timer:") => {
                let at: i64 = timer[6..]
                    .parse()
                    .map_err(|_| ProcessingError::record("bad timer"))?;
                ctx.schedule(at, key, "fired");
            }
            "fired" => {
                assert!(record.is_timer());
                ctx.forward(OutputRecord::new(
                    OUT,
                    0,
                    key,
                    format!("fired at {}", ctx.timestamp_ms()),
                ));
            }
            other => return Err(ProcessingError::record(format!("unknown command {other}"))),
        }
        Ok(())
    }
}

/// Writes `key = value` into the global settings store.
struct Settings {
    settings: StoreHandle<i64>,
}

impl Processor for Settings {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, '_>,
        record: &InputRecord,
    ) -> Result<(), ProcessingError> {
        let key = record.key.clone().unwrap_or_default();
        let value: i64 = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
            .parse()
            .map_err(|_| ProcessingError::record("not a number"))?;
        ctx.put(&self.settings, &key, &value)?;
        Ok(())
    }
}

struct Fixture {
    driver: TopologyTestDriver,
    counts: StoreHandle<i64>,
    _dir: Option<tempfile::TempDir>,
}

/// The scripted processor on `t_core-cmd` (2 partitions) and the settings owner on
/// `t_meta-cmd` (1 partition), whose store is global.
fn scripted_topology() -> (Topology, StoreHandle<i64>) {
    let mut topology = Topology::new();
    let counts: StoreHandle<i64> = topology.store("counts").expect("store");
    let settings: StoreHandle<i64> = topology.store("settings").expect("store");
    let global = topology.global_store(&settings);
    let (c, g) = (counts.clone(), global.clone());
    topology
        .add_subtopology(
            "core",
            vec![SourceTopic::new(CORE, 2)],
            &["counts"],
            move |_| {
                Box::new(Scripted {
                    counts: c.clone(),
                    settings: g.clone(),
                })
            },
        )
        .expect("core");
    topology
        .add_subtopology(
            "meta",
            vec![SourceTopic::new(META, 1)],
            &["settings"],
            move |_| {
                Box::new(Settings {
                    settings: settings.clone(),
                })
            },
        )
        .expect("meta");
    (topology, counts)
}

/// The scripted topology on `dir`, or on a fresh temp dir.
fn fixture_in(dir: Option<&std::path::Path>) -> Fixture {
    let (topology, counts) = scripted_topology();
    let own = if dir.is_none() {
        Some(tempfile::tempdir().expect("temp dir"))
    } else {
        None
    };
    let path = dir
        .or(own.as_ref().map(tempfile::TempDir::path))
        .expect("a directory");
    let driver = TopologyTestDriver::new(topology, "t", path).expect("driver");
    Fixture {
        driver,
        counts,
        _dir: own,
    }
}

fn fixture() -> Fixture {
    fixture_in(None)
}

fn pipe(f: &mut Fixture, partition: i32, key: &str, command: &str) -> RecordOutcome {
    f.driver
        .pipe(
            CORE,
            partition,
            Some(key.as_bytes()),
            Some(command.as_bytes()),
            &[],
            1_000,
        )
        .expect("pipe")
}

fn values(f: &Fixture, topic: &str) -> Vec<String> {
    f.driver
        .outputs_to(topic)
        .iter()
        .map(|o| {
            String::from_utf8_lossy(o.record.value.as_deref().unwrap_or_default()).into_owned()
        })
        .collect()
}

#[test]
fn counts_are_stored_logged_and_forwarded_with_weir_ids() {
    let mut f = fixture();
    pipe(&mut f, 0, "x", "inc");
    pipe(&mut f, 0, "x", "inc");
    pipe(&mut f, 1, "y", "inc");
    assert_eq!(values(&f, OUT), vec!["1", "2", "1"]);
    let ids: Vec<String> = f
        .driver
        .outputs_to(OUT)
        .iter()
        .map(|o| String::from_utf8_lossy(&o.record.headers[WEIR_ID_HEADER]).into_owned())
        .collect();
    assert_eq!(
        ids,
        vec!["t_core-cmd:0:0:0", "t_core-cmd:0:1:0", "t_core-cmd:1:0:0"]
    );
    assert_eq!(
        f.driver.store_contents(&f.counts, 0).expect("store").len(),
        1
    );
    assert_eq!(
        f.driver.store_contents(&f.counts, 1).expect("store")[0].1,
        1
    );
    assert_eq!(f.driver.changelog("counts").len(), 3);
    assert!(
        f.driver
            .changelog("counts")
            .iter()
            .all(|c| c.topic == "t_counts-changelog")
    );
}

#[test]
fn a_record_that_only_reads_or_rewrites_changes_nothing() {
    let mut f = fixture();
    pipe(&mut f, 0, "x", "inc");
    let changelog_before = f.driver.changelog("counts").len();
    let outputs_before = f.driver.outputs().len();
    assert_eq!(pipe(&mut f, 0, "x", "read"), RecordOutcome::Processed);
    assert_eq!(pipe(&mut f, 0, "x", "rewrite"), RecordOutcome::Processed);
    assert_eq!(f.driver.changelog("counts").len(), changelog_before);
    assert_eq!(f.driver.outputs().len(), outputs_before);
}

#[test]
fn the_change_set_is_exposed_in_key_order() {
    let mut f = fixture();
    pipe(&mut f, 0, "ignored", "changes");
    assert_eq!(values(&f, OUT), vec!["counts:a,counts:b"]);
}

#[test]
fn failures_and_panics_are_dead_lettered_and_leave_the_store_untouched() {
    let mut f = fixture();
    pipe(&mut f, 0, "x", "inc");
    let failed = pipe(&mut f, 0, "x", "fail");
    assert_eq!(
        failed,
        RecordOutcome::DeadLettered("asked to fail".to_owned())
    );
    let panicked = pipe(&mut f, 0, "x", "panic");
    assert!(
        matches!(&panicked, RecordOutcome::DeadLettered(r) if r.contains("asked to panic")),
        "{panicked:?}"
    );
    pipe(&mut f, 0, "x", "inc");
    assert_eq!(
        values(&f, OUT),
        vec!["1", "2"],
        "the failed record's output is discarded"
    );
    assert_eq!(
        f.driver.store_contents(&f.counts, 0).expect("store")[0].1,
        2
    );
    let dead = f.driver.outputs_to("t_dead-letter");
    assert_eq!(dead.len(), 2);
    assert_eq!(
        dead[0].record.headers[ERROR_HEADER].as_ref(),
        b"asked to fail"
    );
    assert_eq!(dead[0].record.headers[SOURCE_OFFSET_HEADER].as_ref(), b"1");
    assert_eq!(dead[0].record.value.as_deref(), Some(b"fail".as_slice()));
}

#[test]
fn timers_fire_once_when_the_wall_clock_passes_them() {
    let mut f = fixture();
    pipe(&mut f, 1, "t1", "timer:5000");
    pipe(&mut f, 1, "t2", "timer:9000");
    f.driver.advance_wall_clock(4_999).expect("clock");
    assert!(values(&f, OUT).is_empty());
    f.driver.advance_wall_clock(5_000).expect("clock");
    assert_eq!(values(&f, OUT), vec!["fired at 5000"]);
    // The timer record went back to the task's own input partition.
    let timer_records: Vec<_> = f.driver.outputs_to(CORE).into_iter().cloned().collect();
    assert_eq!(timer_records.len(), 1);
    assert_eq!(timer_records[0].record.partition, 1);
    f.driver.advance_wall_clock(20_000).expect("clock");
    assert_eq!(values(&f, OUT), vec!["fired at 5000", "fired at 9000"]);
    f.driver.advance_wall_clock(30_000).expect("clock");
    assert_eq!(values(&f, OUT).len(), 2, "a timer fires once");

    // A redelivered timer record (same bytes, at-least-once output) is dropped.
    let again = timer_records[0].record.clone();
    let headers: Vec<(&str, &[u8])> = again
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_ref()))
        .collect();
    let outcome = f
        .driver
        .pipe(
            CORE,
            1,
            again.key.as_deref(),
            again.value.as_deref(),
            &headers,
            5_000,
        )
        .expect("pipe");
    assert_eq!(outcome, RecordOutcome::DuplicateTimer);
    assert_eq!(values(&f, OUT).len(), 2);
}

#[test]
fn global_stores_are_readable_from_every_task() {
    let mut f = fixture();
    pipe(&mut f, 0, "limit", "setting");
    f.driver
        .pipe(META, 0, Some(b"limit"), Some(b"42"), &[], 1_000)
        .expect("pipe");
    pipe(&mut f, 0, "limit", "setting");
    pipe(&mut f, 1, "limit", "setting");
    assert_eq!(values(&f, OUT), vec!["-1", "42", "42"]);
}

#[test]
fn topology_mistakes_are_refused_with_their_names() {
    let mut topology = Topology::new();
    let _: StoreHandle<i64> = topology.store("s").expect("store");
    assert!(topology.store::<i64>("s").is_err());
    assert!(topology.store::<i64>("bad name").is_err());
    let factory = |_| -> Box<dyn Processor> { unreachable!() };
    let error = topology
        .add_subtopology(
            "a",
            vec![SourceTopic::new("x", 2), SourceTopic::new("y", 3)],
            &[],
            factory,
        )
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        error.as_deref(),
        Some("sub-topology a: source y has 3 partitions, but co-partitioned sources need 2")
    );
    topology
        .add_subtopology("a", vec![SourceTopic::new("x", 2)], &["s"], factory)
        .expect("first owner");
    let twice = topology.add_subtopology("b", vec![SourceTopic::new("z", 2)], &["s"], factory);
    assert!(twice.is_err());
    assert!(
        topology
            .add_subtopology("c", vec![SourceTopic::new("z", 2)], &["missing"], factory)
            .is_err()
    );
}

#[test]
fn timers_are_state_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut before = fixture_in(Some(dir.path()));
    pipe(&mut before, 0, "t1", "timer:5000");
    drop(before);

    let mut after = fixture_in(Some(dir.path()));
    after.driver.advance_wall_clock(6_000).expect("clock");
    assert_eq!(values(&after, OUT), vec!["fired at 5000"]);
}

/// Counts records of both its co-partitioned sources in one store.
struct CountBoth {
    counts: StoreHandle<i64>,
}

impl Processor for CountBoth {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, '_>,
        record: &InputRecord,
    ) -> Result<(), ProcessingError> {
        let key = record.key.clone().unwrap_or_default();
        let count = ctx.get(&self.counts, &key)?.unwrap_or(0) + 1;
        ctx.put(&self.counts, &key, &count)?;
        ctx.forward(OutputRecord::new(
            OUT,
            ctx.partition(),
            key,
            format!("{}:{count}", record.topic),
        ));
        Ok(())
    }
}

#[test]
fn co_partitioned_sources_share_one_task_and_its_store() {
    let mut topology = Topology::new();
    let counts: StoreHandle<i64> = topology.store("both").expect("store");
    let handle = counts.clone();
    topology
        .add_subtopology(
            "join",
            vec![
                SourceTopic::new("t_left", 3),
                SourceTopic::new("t_right", 3),
            ],
            &["both"],
            move |_| {
                Box::new(CountBoth {
                    counts: handle.clone(),
                })
            },
        )
        .expect("subtopology");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut driver = TopologyTestDriver::new(topology, "t", dir.path()).expect("driver");
    driver
        .pipe("t_left", 2, Some(b"k"), Some(b""), &[], 0)
        .expect("pipe");
    driver
        .pipe("t_right", 2, Some(b"k"), Some(b""), &[], 0)
        .expect("pipe");
    driver
        .pipe("t_right", 1, Some(b"k"), Some(b""), &[], 0)
        .expect("pipe");
    let outputs: Vec<String> = driver
        .outputs_to(OUT)
        .iter()
        .map(|o| {
            String::from_utf8_lossy(o.record.value.as_deref().unwrap_or_default()).into_owned()
        })
        .collect();
    assert_eq!(outputs, vec!["t_left:1", "t_right:2", "t_right:1"]);
    assert_eq!(driver.store_contents(&counts, 2).expect("store")[0].1, 2);
    assert_eq!(driver.store_contents(&counts, 1).expect("store")[0].1, 1);
}
