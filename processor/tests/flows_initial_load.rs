//! The initial load of a flow, run end to end in the `TopologyTestDriver`, without
//! pausing ingestion: a migration added over a filled table loads every key into the
//! new version's table; live updates during the load win; a crash mid-load resumes after
//! the last loaded key; a regular flow with `initial_load: true` fills its target from
//! history while one without starts live; and progress reaches done on every partition.
//!
//! "Added later" is a driver over the same state directory built from a manifest with
//! the flow, after a driver built from one without it. A new driver numbers every topic
//! from offset 0 again, where Kafka would go on; so each reopening first pipes, per
//! ingestion partition, as many refused records (no value: dead-lettered, nothing kept)
//! as the earlier drivers delivered there, and the offsets go on as on a broker.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use weir_processor::flows::manifest;
use weir_processor::flows::naming::ModelVersion;
use weir_processor::flows::topology::{
    FORGET_HEADER, FlowStores, FlowsOptions, START_HEADER, initial_load_store, topology_with,
    uniform_partitions,
};
use weir_processor::flows::transform::TransformRegistry;
use weir_processor::spec_file::SpecFormat;
use weir_processor::topics::partition_for_key;
use weir_proto::{DataModelVersion, InitialLoadProgress, TableRow};
use weir_topology::TopologyTestDriver;
use weir_topology::task::StampedOutput;

const CLUSTER: &str = "weir";
const PARTITIONS: i32 = 3;
/// Far enough in the future that every scheduled tick is due.
const NOW: i64 = 1 << 40;

const UA00: &str = "UserActivity_0_0";
const UA01: &str = "UserActivity_0_1";
const PA01: &str = "ParsedActivity_0_1";
const LA01: &str = "LiveActivity_0_1";
const MIGRATE_IN: &str = "UserActivity_0_0_UserActivity_0_1_input";
const MIGRATE: &str = "migrate-user-activity";
const PARSE_ALL: &str = "parse-all";
const PARSE_LIVE: &str = "parse-live";
const INGESTION: [&str; 4] = [UA00, UA01, PA01, LA01];

const UA00_MODEL: &str = r#"
  - name: UserActivity
    version: {major: 0, minor: 0}
    key_field: user_id
    fields:
      - {name: user_id, field_type: STRING, required: true}
      - {name: event, field_type: STRING}
"#;

const UA01_AND_MIGRATION: &str = r#"
  - name: UserActivity
    version: {major: 0, minor: 1}
    key_field: user_id
    fields:
      - {name: user_id, field_type: STRING, required: true}
      - {name: event, field_type: STRING, required: true}
flows:
  - name: migrate-user-activity
    source_model: UserActivity
    source_version: {major: 0, minor: 0}
    target_model: UserActivity
    target_version: {major: 0, minor: 1}
    kind: MIGRATION
    transform: shout
"#;

const REGULAR: &str = r#"
  - name: ParsedActivity
    version: {major: 0, minor: 1}
    key_field: user_id
    fields:
      - {name: user_id, field_type: STRING, required: true}
      - {name: words, field_type: INT, required: true}
  - name: LiveActivity
    version: {major: 0, minor: 1}
    key_field: user_id
    fields:
      - {name: user_id, field_type: STRING, required: true}
      - {name: words, field_type: INT, required: true}
flows:
  - name: parse-all
    source_model: UserActivity
    source_version: {major: 0, minor: 0}
    target_model: ParsedActivity
    target_version: {major: 0, minor: 1}
    transform: count_words
    initial_load: true
  - name: parse-live
    source_model: UserActivity
    source_version: {major: 0, minor: 0}
    target_model: LiveActivity
    target_version: {major: 0, minor: 1}
    transform: count_words
"#;

fn shout(v: &Value) -> Value {
    let event = v.get("event").and_then(Value::as_str).unwrap_or("unknown");
    json!({"user_id": v["user_id"], "event": event.to_uppercase()})
}

fn count_words(v: &Value) -> Value {
    let event = v.get("event").and_then(Value::as_str).unwrap_or("");
    json!({"user_id": v["user_id"], "words": event.split(' ').count()})
}

fn exclaim(v: &Value) -> Value {
    let event = v.get("event").and_then(Value::as_str).unwrap_or("unknown");
    json!({"user_id": v["user_id"], "event": format!("{event}!")})
}

fn registry() -> TransformRegistry {
    let mut registry = TransformRegistry::new();
    registry
        .register("shout", |v: &Value| Ok(vec![shout(v)]))
        .and_then(|r| r.register("count_words", |v: &Value| Ok(vec![count_words(v)])))
        .and_then(|r| r.register("exclaim", |v: &Value| Ok(vec![exclaim(v)])))
        .expect("distinct names");
    registry
}

fn mv(name: &str, major: u32, minor: u32) -> ModelVersion {
    ModelVersion::new(name, &DataModelVersion { major, minor })
}

fn part(key: &str) -> i32 {
    partition_for_key(key.as_bytes(), PARTITIONS)
}

/// The number in an event `"v{n} ..."`.
fn version_of(value: &Value) -> u64 {
    let event = value["event"].as_str().expect("event");
    event
        .trim_start_matches('v')
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("v{n}")
}

/// `UserActivity 0.0` and `0.1` with the migration between them.
fn with_migration() -> String {
    format!("{UA00_MODEL}{UA01_AND_MIGRATION}")
}

/// Drivers, one after the other, over one state directory.
struct Harness {
    dir: tempfile::TempDir,
    driver: Option<TopologyTestDriver>,
    stores: FlowStores,
    /// Records each ingestion partition received under earlier drivers.
    delivered: BTreeMap<(String, i32), i64>,
    /// Records the test piped to each ingestion partition under this driver.
    piped: BTreeMap<(String, i32), i64>,
    /// Outputs of earlier drivers.
    history: Vec<StampedOutput>,
    /// Events produced so far; each event's number is unique and grows.
    events: u64,
}

impl Harness {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            driver: None,
            stores: FlowStores::default(),
            delivered: BTreeMap::new(),
            piped: BTreeMap::new(),
            history: Vec::new(),
            events: 0,
        }
    }

    /// Closes the current driver, if any (a crash: only what it committed stays), and
    /// opens one running `models_and_flows` (after the `data_models:` line) on the same
    /// state directory, with offsets going on from where the earlier drivers left them.
    fn open(&mut self, models_and_flows: &str, load_chunk: usize) {
        if let Some(driver) = self.driver.take() {
            for (partition, n) in std::mem::take(&mut self.piped) {
                *self.delivered.entry(partition).or_default() += n;
            }
            for output in driver.outputs() {
                if INGESTION.contains(&output.record.topic.as_str()) {
                    *self
                        .delivered
                        .entry((output.record.topic.clone(), output.record.partition))
                        .or_default() += 1;
                }
            }
            self.history.extend(driver.outputs().iter().cloned());
        }
        let text = format!("data_models:{models_and_flows}");
        let parsed = manifest::parse(&text, SpecFormat::Yaml, "flows.yaml").expect("parses");
        let manifest = manifest::validate(parsed, Some(&registry())).expect("valid");
        let partitions = uniform_partitions(&manifest, PARTITIONS);
        let options = FlowsOptions {
            load_chunk,
            ..FlowsOptions::default()
        };
        let (topology, stores) =
            topology_with(&manifest, Arc::new(registry()), &partitions, 1, options)
                .expect("topology");
        let mut driver =
            TopologyTestDriver::new(topology, CLUSTER, self.dir.path()).expect("driver");
        for ((topic, partition), n) in &self.delivered {
            for _ in 0..*n {
                driver
                    .pipe(topic, *partition, None, None, &[], 0)
                    .expect("filler record");
            }
        }
        self.driver = Some(driver);
        self.stores = stores;
    }

    /// `UserActivity 0.0` alone, filled ([`Harness::fill`]), then the migration added
    /// (`load_chunk` rows a tick) and started on every partition.
    fn migration_started(load_chunk: usize, users: usize, updated: usize) -> Self {
        let mut h = Self::new();
        h.open(UA00_MODEL, load_chunk);
        h.fill(users, updated);
        h.open(&with_migration(), load_chunk);
        h.start_all();
        h
    }

    fn driver(&mut self) -> &mut TopologyTestDriver {
        self.driver.as_mut().expect("open")
    }

    fn pipe(
        &mut self,
        topic: &str,
        partition: i32,
        key: Option<&str>,
        value: &[u8],
        headers: &[(&str, &[u8])],
    ) {
        self.pipe_record(topic, partition, key, Some(value), headers);
    }

    /// Pipes a record, counted for the offsets of the next driver.
    fn pipe_record(
        &mut self,
        topic: &str,
        partition: i32,
        key: Option<&str>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) {
        *self.piped.entry((topic.to_owned(), partition)).or_default() += 1;
        self.driver()
            .pipe(
                topic,
                partition,
                key.map(str::as_bytes),
                value,
                headers,
                1_000,
            )
            .expect("pipe");
    }

    /// Produces a new event `"v{n}{suffix}"` of `user` to `UserActivity 0.0`.
    fn produce(&mut self, user: &str, suffix: &str) -> u64 {
        self.events += 1;
        let n = self.events;
        let value = json!({"user_id": user, "event": format!("v{n}{suffix}")});
        self.pipe(
            UA00,
            part(user),
            Some(user),
            value.to_string().as_bytes(),
            &[],
        );
        n
    }

    /// A delete of `user` (a tombstone) on `UserActivity 0.0`.
    fn delete(&mut self, user: &str) {
        self.pipe_record(UA00, part(user), Some(user), None, &[]);
    }

    /// A control record (`value`, `header`, no key) on every partition of `topic`.
    fn control_all(&mut self, topic: &str, value: &[u8], header: &str) {
        for partition in 0..PARTITIONS {
            self.pipe(topic, partition, None, value, &[(header, b"")]);
        }
    }

    /// A start record on every partition of `UserActivity 0.0`.
    fn start_all(&mut self) {
        self.control_all(UA00, b"", START_HEADER);
    }

    /// A forget record of `flow` on every partition of `UserActivity 0.0`, as `weir
    /// flows apply` writes when it removes the flow.
    fn forget_all(&mut self, flow: &str) {
        self.control_all(UA00, flow.as_bytes(), FORGET_HEADER);
    }

    /// One loader tick on every partition that has one due.
    fn tick(&mut self) {
        self.driver().advance_wall_clock(NOW).expect("timers");
    }

    /// The load progress of the flows from `UserActivity 0.0` on `partition`, by flow.
    fn progress(&self, partition: i32) -> BTreeMap<String, InitialLoadProgress> {
        self.progress_from(&mv("UserActivity", 0, 0), partition)
    }

    /// The load progress of the flows from `model` on `partition`, by flow.
    fn progress_from(
        &self,
        model: &ModelVersion,
        partition: i32,
    ) -> BTreeMap<String, InitialLoadProgress> {
        let handle = self.stores.initial_load(model).expect("declared");
        self.driver
            .as_ref()
            .expect("open")
            .store_contents::<InitialLoadProgress>(handle, partition)
            .expect("store")
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k.to_vec()).expect("flow name"), v))
            .collect()
    }

    /// The load progress of `flow` from `UserActivity 0.0`, per partition (each must
    /// have one).
    fn loads(&self, flow: &str) -> Vec<InitialLoadProgress> {
        (0..PARTITIONS)
            .map(|p| {
                self.progress(p)
                    .remove(flow)
                    .unwrap_or_else(|| panic!("no progress of {flow} on partition {p}"))
            })
            .collect()
    }

    /// The rows the load of `flow` wrote to its input, over every partition.
    fn records_loaded(&self, flow: &str) -> u64 {
        self.loads(flow).iter().map(|l| l.records_loaded).sum()
    }

    fn done(&self, flow: &str) -> bool {
        self.done_from(&mv("UserActivity", 0, 0), flow)
    }

    /// Whether the load of `flow` from `model` is done on every partition.
    fn done_from(&self, model: &ModelVersion, flow: &str) -> bool {
        (0..PARTITIONS).all(|p| {
            self.progress_from(model, p)
                .get(flow)
                .is_some_and(|l| l.done)
        })
    }

    /// Ticks until `flow` is loaded on every partition; returns how many ticks it took.
    fn load(&mut self, flow: &str) -> usize {
        self.load_from(&mv("UserActivity", 0, 0), flow)
    }

    /// Ticks until `flow` from `model` is loaded on every partition; returns how many
    /// ticks it took.
    fn load_from(&mut self, model: &ModelVersion, flow: &str) -> usize {
        for ticks in 0..1_000 {
            if self.done_from(model, flow) {
                return ticks;
            }
            self.tick();
        }
        panic!("the initial load of {flow} does not end");
    }

    /// The table of `model`: key -> record.
    fn table(&self, model: &ModelVersion) -> BTreeMap<String, Value> {
        let handle = self.stores.table(model).expect("declared");
        let mut rows = BTreeMap::new();
        for partition in 0..PARTITIONS {
            for (key, row) in self
                .driver
                .as_ref()
                .expect("open")
                .store_contents::<TableRow>(handle, partition)
                .expect("store")
            {
                let value: Value = serde_json::from_slice(&row.value).expect("JSON row");
                let key = String::from_utf8(key.to_vec()).expect("text key");
                assert_eq!(part(&key), partition, "{key} in its partition");
                rows.insert(key, value);
            }
        }
        rows
    }

    /// Every record written to `topic` under every driver: (key, value), in order.
    fn records(&self, topic: &str) -> Vec<(String, Value)> {
        self.history
            .iter()
            .chain(self.driver.as_ref().expect("open").outputs())
            .filter(|o| o.record.topic == topic)
            .map(|o| {
                let key = o.record.key.as_deref().expect("keyed");
                let value = o.record.value.as_deref().expect("valued");
                (
                    String::from_utf8(key.to_vec()).expect("text key"),
                    serde_json::from_slice(value).expect("JSON"),
                )
            })
            .collect()
    }

    /// Fills `UserActivity 0.0` with `users` keys, then updates the first `updated`.
    fn fill(&mut self, users: usize, updated: usize) {
        for i in 0..users {
            self.produce(&format!("user-{i}"), "");
        }
        for i in 0..updated {
            self.produce(&format!("user-{i}"), " again");
        }
    }
}

/// Each key's event numbers in the migration's input only grow (no older value after a
/// newer one, no value twice), and the last one is the newest of the source table.
fn check_migration_input(h: &Harness) {
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for (key, value) in h.records(MIGRATE_IN) {
        let n = version_of(&value);
        if let Some(previous) = last.insert(key.clone(), n) {
            assert!(
                previous < n,
                "{key}: v{previous} then v{n} in the migration input"
            );
        }
    }
    let source = h.table(&mv("UserActivity", 0, 0));
    let newest: BTreeMap<String, u64> = source
        .iter()
        .map(|(k, v)| (k.clone(), version_of(v)))
        .collect();
    assert_eq!(last, newest);
}

/// The new version's table is the migration of the old one, key for key.
fn check_migrated_table(h: &Harness) {
    let expected: BTreeMap<String, Value> = h
        .table(&mv("UserActivity", 0, 0))
        .iter()
        .map(|(k, v)| (k.clone(), shout(v)))
        .collect();
    assert_eq!(h.table(&mv("UserActivity", 0, 1)), expected);
}

#[test]
fn adding_a_migration_loads_every_key_of_the_old_table_into_the_new_version() {
    let mut h = Harness::new();
    h.open(UA00_MODEL, 4);
    h.fill(30, 10);
    assert_eq!(h.table(&mv("UserActivity", 0, 0)).len(), 30);

    h.open(&with_migration(), 4);
    assert!(
        (0..PARTITIONS).all(|p| h.progress(p).is_empty()),
        "nothing started yet"
    );
    h.start_all();
    for partition in 0..PARTITIONS {
        let progress = &h.progress(partition)[MIGRATE];
        assert!(!progress.done && progress.last_loaded_key.is_none());
        assert_eq!(progress.partition, partition);
    }
    let ticks = h.load(MIGRATE);
    assert!(ticks > 1, "chunks of 4 keys take more than one tick");

    check_migrated_table(&h);
    assert_eq!(h.table(&mv("UserActivity", 0, 1)).len(), 30);
    check_migration_input(&h);
    // Only history: each key once, with its newest value.
    assert_eq!(h.records(MIGRATE_IN).len(), 30);
    let mut loaded = 0;
    for partition in 0..PARTITIONS {
        let progress = &h.progress(partition)[MIGRATE];
        let keys = h
            .table(&mv("UserActivity", 0, 0))
            .keys()
            .filter(|k| part(k) == partition)
            .count();
        assert!(progress.done);
        assert_eq!(
            progress.records_loaded, keys as u64,
            "partition {partition}"
        );
        loaded += progress.records_loaded;
    }
    assert_eq!(loaded, 30);

    // The migration goes on live after the load.
    h.produce("user-3", " later");
    h.produce("newcomer", "");
    check_migrated_table(&h);
    check_migration_input(&h);
    assert_eq!(h.records(MIGRATE_IN).len(), 32);
}

#[test]
fn live_updates_during_the_load_win_over_the_history() {
    let mut h = Harness::new();
    h.open(UA00_MODEL, 2);
    h.fill(30, 0);

    h.open(&with_migration(), 2);
    // No start record: each partition starts with its first live record. Producers go
    // on between ticks: updates of keys the scan has passed and of keys it has not
    // reached yet, and new keys.
    for round in 0..12 {
        for step in 0..3 {
            let user = format!("user-{}", (round * 7 + step * 11) % 30);
            h.produce(&user, " live");
        }
        h.produce(&format!("new-{round}"), "");
        h.tick();
    }
    assert!((0..PARTITIONS).all(|p| h.progress(p).contains_key(MIGRATE)));
    h.load(MIGRATE);

    check_migrated_table(&h);
    check_migration_input(&h);
    let loaded = h.records_loaded(MIGRATE);
    assert!(
        loaded < 30,
        "keys updated live before the scan reached them are skipped: {loaded}"
    );
    assert!(loaded > 0);
}

#[test]
fn a_crash_mid_load_resumes_after_the_last_loaded_key() {
    let mut h = Harness::migration_started(3, 30, 5);
    h.tick();
    h.tick();
    h.produce("user-29", " live");
    let before = h.loads(MIGRATE);
    for progress in &before {
        assert!(!progress.done, "mid-load");
        assert!(progress.last_loaded_key.is_some());
    }

    // The progress is changelogged, like any store: a restore on another machine has it.
    let store = initial_load_store(&mv("UserActivity", 0, 0));
    let changelog = h.driver().changelog(&store);
    let last = changelog.last().expect("progress changelogged");
    assert_eq!(
        last.topic,
        format!("{CLUSTER}_UserActivity_0_0-initial-load-changelog")
    );
    assert_eq!(last.key.as_ref(), MIGRATE.as_bytes());

    // Crash and restart on the same state.
    h.open(&with_migration(), 3);
    let after = h.loads(MIGRATE);
    assert_eq!(after, before, "progress is state");
    h.produce("user-0", " after the crash");
    h.load(MIGRATE);

    check_migrated_table(&h);
    // No key loaded twice, none lost, newest last.
    check_migration_input(&h);
    let loaded = h.records_loaded(MIGRATE);
    let live = 2;
    assert_eq!(h.records(MIGRATE_IN).len() as u64, loaded + live);
}

#[test]
fn a_regular_flow_with_initial_load_fills_its_target_and_one_without_starts_live() {
    let mut h = Harness::new();
    h.open(UA00_MODEL, 5);
    for i in 0..20 {
        let words = ["one", "two words", "now three words"][i % 3];
        h.produce(&format!("user-{i}"), &format!(" {words}"));
    }

    let with_flows = format!("{UA00_MODEL}{REGULAR}");
    h.open(&with_flows, 5);
    h.produce("user-1", " updated live");
    h.produce("late", " hello there");
    h.start_all();
    for partition in 0..PARTITIONS {
        let live = &h.progress(partition)[PARSE_LIVE];
        assert!(
            live.done,
            "a flow without initial load has no history to load"
        );
        assert_eq!(live.records_loaded, 0);
    }
    h.load(PARSE_ALL);

    let expected: BTreeMap<String, Value> = h
        .table(&mv("UserActivity", 0, 0))
        .iter()
        .map(|(k, v)| (k.clone(), count_words(v)))
        .collect();
    assert_eq!(expected.len(), 21);
    assert_eq!(h.table(&mv("ParsedActivity", 0, 1)), expected);
    let live: BTreeMap<String, Value> = ["user-1", "late"]
        .iter()
        .map(|k| ((*k).to_owned(), expected[*k].clone()))
        .collect();
    assert_eq!(
        h.table(&mv("LiveActivity", 0, 1)),
        live,
        "only what came after it"
    );
    assert!(h.done(PARSE_LIVE));
}

#[test]
fn a_flow_removed_and_declared_again_loads_again() {
    let mut h = Harness::migration_started(10, 12, 0);
    h.load(MIGRATE);
    assert_eq!(h.records(MIGRATE_IN).len(), 12);

    // Removed: its progress goes with the first record on each partition.
    h.open(UA00_MODEL, 10);
    h.start_all();
    assert!((0..PARTITIONS).all(|p| h.progress(p).is_empty()));
    h.produce("user-1", " while no migration runs");

    // Declared again: a new flow, loaded again from the table.
    h.open(&with_migration(), 10);
    h.start_all();
    for partition in 0..PARTITIONS {
        assert!(
            !h.progress(partition)[MIGRATE].done,
            "partition {partition}"
        );
    }
    h.load(MIGRATE);
    check_migrated_table(&h);
    assert_eq!(h.records(MIGRATE_IN).len(), 24);
    let loaded = h.records_loaded(MIGRATE);
    assert_eq!(loaded, 12);
}

#[test]
fn a_flow_removed_and_declared_again_with_no_run_between_loads_again() {
    let mut h = Harness::migration_started(10, 12, 0);
    h.load(MIGRATE);
    let before: Vec<i64> = h
        .loads(MIGRATE)
        .iter()
        .map(|l| l.snapshot_position)
        .collect();

    // `weir flows apply` removes the flow (its forget records), then declares it again;
    // the next process runs it without any process having run without it. Records
    // written between the two applies are migrated live up to the forget records.
    h.produce("user-1", " before the removal");
    h.forget_all(MIGRATE);
    h.produce("user-2", " after the removal");
    h.open(&with_migration(), 10);
    h.start_all();
    for partition in 0..PARTITIONS {
        let progress = &h.progress(partition)[MIGRATE];
        assert!(!progress.done, "partition {partition}: a new load");
        assert!(
            progress.snapshot_position > before[partition as usize],
            "partition {partition}: starts at the forget record, not at {}",
            before[partition as usize]
        );
    }
    h.load(MIGRATE);
    check_migrated_table(&h);
    let loaded = h.records_loaded(MIGRATE);
    // user-2's value came after the forget record: copied live by the new flow, so
    // its row is skipped by the load.
    assert_eq!(loaded, 11);
}

#[test]
fn a_forget_record_reached_by_a_process_still_running_the_flow_restarts_its_load() {
    let mut h = Harness::migration_started(1, 30, 0);
    h.tick();
    for partition in 0..PARTITIONS {
        let progress = &h.progress(partition)[MIGRATE];
        assert!(
            !progress.done,
            "partition {partition} mid-load: {progress:?}"
        );
    }

    // The flow's removal reaches a process that still runs it (not restarted yet): its
    // load starts again at the forget record. The first load's pending tick is passed
    // over, so one chain of ticks runs, one row each.
    h.forget_all(MIGRATE);
    let table = h.table(&mv("UserActivity", 0, 0));
    let rows = |partition: i32| table.keys().filter(|k| part(k) == partition).count();
    let most = (0..PARTITIONS).map(rows).max().expect("partitions");
    let ticks = h.load(MIGRATE);
    assert_eq!(ticks, most, "one row per tick, from one chain of ticks");
    check_migrated_table(&h);
    for partition in 0..PARTITIONS {
        assert_eq!(
            h.progress(partition)[MIGRATE].records_loaded,
            rows(partition) as u64,
            "partition {partition}"
        );
    }
}

const UA02_MODEL: &str = r#"
  - name: UserActivity
    version: {major: 0, minor: 2}
    key_field: user_id
    fields:
      - {name: user_id, field_type: STRING, required: true}
      - {name: event, field_type: STRING, required: true}
"#;

const MIGRATE_0_2: &str = r#"
  - name: migrate-to-0-2
    source_model: UserActivity
    source_version: {major: 0, minor: 1}
    target_model: UserActivity
    target_version: {major: 0, minor: 2}
    kind: MIGRATION
    transform: exclaim
"#;

/// A chain of migrations, 0.0 -> 0.1 -> 0.2, the second added after the first loaded.
/// Migrated rows are written to 0.1's table and feed none of 0.1's flows (the RFD's
/// rule), so what reaches 0.2 is: 0.1's table as the second load passes it (0.0's
/// history, migrated, included), and records produced to 0.1 itself; records produced
/// to 0.0 after that stop at 0.1. The README's Flows section says so.
#[test]
fn a_chain_of_migrations_brings_the_history_through_but_later_old_version_records_stop_at_the_middle()
 {
    let mut h = Harness::migration_started(4, 12, 3);
    h.load(MIGRATE);
    check_migrated_table(&h);

    let (ua01, flows) = UA01_AND_MIGRATION
        .split_once("flows:\n")
        .expect("models, then flows");
    let chain = format!("{UA00_MODEL}{ua01}{UA02_MODEL}flows:\n{flows}{MIGRATE_0_2}");
    h.open(&chain, 4);
    let ua01_model = mv("UserActivity", 0, 1);
    h.control_all(UA01, b"", START_HEADER);
    h.load_from(&ua01_model, "migrate-to-0-2"); // the second migration's load ends

    // The history went through both migrations: 0.2 is exclaim(shout(0.0)).
    let through: BTreeMap<String, Value> = h
        .table(&mv("UserActivity", 0, 0))
        .iter()
        .map(|(k, v)| (k.clone(), exclaim(&shout(v))))
        .collect();
    let ua02 = mv("UserActivity", 0, 2);
    assert_eq!(h.table(&ua02), through);

    // Later records of 0.0 are migrated into 0.1 only: 0.2 keeps user-1's old value and
    // never sees the newcomer.
    h.produce("user-1", " later");
    h.produce("newcomer", "");
    check_migrated_table(&h);
    assert!(h.table(&ua01_model).contains_key("newcomer"));
    assert_eq!(h.table(&ua02), through);

    // Records produced to 0.1 itself do reach 0.2.
    let app = json!({"user_id": "app-user", "event": "opened the app"});
    h.pipe(
        UA01,
        part("app-user"),
        Some("app-user"),
        app.to_string().as_bytes(),
        &[],
    );
    let mut expected = through;
    expected.insert("app-user".to_owned(), exclaim(&app));
    assert_eq!(h.table(&ua02), expected);
}

#[test]
fn deletes_during_and_after_a_load_leave_the_new_version_without_the_key() {
    let mut h = Harness::migration_started(2, 30, 0);
    h.tick();
    assert!(
        (0..PARTITIONS).all(|p| !h.progress(p)[MIGRATE].done),
        "mid-load"
    );

    // Deleted during the load: keys the scan has passed and keys it has not reached.
    for user in ["user-0", "user-1", "user-17", "user-29", "user-9"] {
        h.delete(user);
    }
    h.load(MIGRATE);
    check_migrated_table(&h);
    assert_eq!(h.table(&mv("UserActivity", 0, 1)).len(), 25);

    // After the load, a delete goes on live.
    h.delete("user-3");
    check_migrated_table(&h);
    assert_eq!(h.table(&mv("UserActivity", 0, 1)).len(), 24);
}
