//! The initial load of a flow, per partition of its source: the cut-over from the
//! source table's history to the live records of the source ingestion topic, as a state
//! machine over `InitialLoadProgress`, with no Kafka and no store. What runs it is the
//! model version's processor ([`super::ingest`]); this module owns the rules and why
//! they are correct.
//!
//! # The procedure
//!
//! Names, for one partition `p`: `S` is partition `p` of the source ingestion topic,
//! `T` the source table's partition `p`, `I` partition `p` of the flow's input topic
//! (flow topics have the source's partition count, so a key is in partition `p` of
//! each). One single-threaded task reads `S`, is the only writer of `T`, writes `I`, and
//! runs the loader: so its steps happen one at a time, each committed whole (its store
//! writes, its progress and its outputs together).
//!
//! 1. The first record of `S` the task processes after the flow appears, at offset `P`,
//!    starts the load: [`Cutover::start`] records `P` (stored, changelogged). `T` then
//!    holds exactly the effect of the records of `S` below `P`.
//! 2. Live path: every record of `S` from `P` on is written to `T` and copied to `I`
//!    in the same step ([`Cutover::live`] is [`LiveDecision::Copy`] from `P` on, from
//!    the start: nothing is held). Records below `P` are not this flow's live records
//!    ([`LiveDecision::Covered`]: a replay only).
//! 3. Loader: timer ticks scan `T` itself (no separate view) in ascending key order
//!    from strictly after [`Cutover::scan_after`] (the `last_loaded_key`), a bounded
//!    chunk per tick. A row whose value came from `S` at an offset from `P` on was
//!    already copied by the live path: it is skipped ([`Cutover::skipped`]). Any other
//!    row (from `S` below `P`, or written by a migration into this version, which the
//!    live path never copies) is written to `I` ([`Cutover::loaded`]). When the scan
//!    passes the last key, [`Cutover::finish`].
//!
//! Nothing waits: ingestion, the table, the live copy and every other flow go on during
//! the load; the loader only adds writes to `I` between live records. A flow without an
//! initial load starts live at `P` ([`Cutover::live_only`]): no history.
//!
//! # Why no record is lost
//!
//! A record of `S` at `o >= P` is copied by the live path, in the step that processes
//! it. A record at `o < P` is in effect in `T` at `P` (its key's latest value below
//! `P`). When the loader reaches its key `k`, either `k`'s row still has a value from
//! below `P` (nothing of `k` from `P` on was processed, as any would have replaced the
//! row), and it is loaded; or the row was replaced from `P` on, and `k`'s newest value
//! already went to `I` live. The scan misses no key: keys come in strictly ascending
//! order ([`Cutover::loaded`] and [`Cutover::skipped`] refuse anything else), each tick
//! resumes strictly after the last key whose step committed, and a key added to `T`
//! behind the scan position was added by a record from `P` on, so it went live.
//!
//! # Why none is applied twice
//!
//! A record from `P` on goes to `I` once, with the step that processes it. A row is
//! loaded only while its value is from below `P`, once: the loader's progress commits
//! with what it wrote. Were they not committed together (at-least-once output), a
//! resumed scan could write a key again: the same value (its row is still from below
//! `P`, so nothing of that key reached `I` in between), which changes nothing in the
//! target table: once in effect.
//!
//! # Why an older value cannot overwrite a newer one
//!
//! `I` receives the task's writes in the order of its steps. For a key `k`: if the
//! loader writes `k`'s value from below `P`, no live value of `k` was written before it
//! (see above), and every later one comes after it in `I`. If `k` got a live value, the
//! loader skips `k` (its row is from `P` on) or already loaded it before that live
//! value. So `k`'s values in `I` come in source offset order and the last one is its
//! newest. The flow reads `I` in order and writes its output partition in order, and
//! the target applies that in order.
//!
//! This holds per key of the source. A transform that maps several source keys to one
//! target key, or a target table also fed by its own ingestion topic, has no order
//! between those writers; the cut-over does not make one.
//!
//! A partition starts its load with its first record of `S` after the flow appears (or
//! a start record, see [`super::ingest`]); until then it has no progress.

use std::fmt;

use weir_proto::InitialLoadProgress;

/// What the live path does with a record of the source ingestion topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveDecision {
    /// Below the load's start position: not this flow's live record (the load holds its
    /// effect); skip it.
    Covered,
    /// Copy it to the flow's input topic.
    Copy,
}

/// A step the initial load of one flow partition cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CutoverError {
    /// A snapshot position below zero.
    #[error("flow {flow} partition {partition}: snapshot position {position} is negative")]
    NegativePosition {
        flow: String,
        partition: i32,
        position: i64,
    },
    /// The snapshot scan reported a key not after the last one scanned.
    #[error(
        "flow {flow} partition {partition}: snapshot key {} is not after the last loaded key {}",
        hex::encode(key),
        hex::encode(last)
    )]
    KeyOutOfOrder {
        flow: String,
        partition: i32,
        key: Vec<u8>,
        last: Vec<u8>,
    },
    /// A snapshot step after the snapshot was loaded.
    #[error("flow {flow} partition {partition}: the snapshot is already loaded")]
    AlreadyDone { flow: String, partition: i32 },
}
/// The cut-over of one flow on one partition of its source.
#[derive(Clone, PartialEq, Eq)]
pub struct Cutover {
    progress: InitialLoadProgress,
}

impl fmt::Debug for Cutover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.progress;
        f.debug_struct("Cutover")
            .field("flow", &p.flow_name)
            .field("partition", &p.partition)
            .field("snapshot_position", &p.snapshot_position)
            .field(
                "last_loaded_key",
                &p.last_loaded_key.as_deref().map(hex::encode),
            )
            .field("records_loaded", &p.records_loaded)
            .field("done", &p.done)
            .finish()
    }
}

impl Cutover {
    /// A new initial load of `flow` on `partition`: the source table holds the effect
    /// of the ingestion topic's records below `snapshot_position`, and live records are
    /// copied from it on.
    pub fn start(
        flow: impl Into<String>,
        partition: i32,
        snapshot_position: i64,
    ) -> Result<Self, CutoverError> {
        let flow = flow.into();
        if snapshot_position < 0 {
            return Err(CutoverError::NegativePosition {
                flow,
                partition,
                position: snapshot_position,
            });
        }
        Ok(Self {
            progress: InitialLoadProgress {
                flow_name: flow,
                partition,
                snapshot_position,
                last_loaded_key: None,
                records_loaded: 0,
                done: false,
            },
        })
    }

    /// A flow without an initial load: live records from `start` on are copied, those
    /// below it are not this flow's.
    pub fn live_only(flow: impl Into<String>, partition: i32, start: i64) -> Self {
        Self {
            progress: InitialLoadProgress {
                flow_name: flow.into(),
                partition,
                snapshot_position: start.max(0),
                last_loaded_key: None,
                records_loaded: 0,
                done: true,
            },
        }
    }

    /// The load as stored; the scan continues after [`Self::scan_after`].
    pub fn resume(progress: InitialLoadProgress) -> Self {
        Self { progress }
    }

    /// The progress to store, in the same commit as what was written to the input topic.
    pub fn progress(&self) -> &InitialLoadProgress {
        &self.progress
    }

    /// The offset of the ingestion topic the load started at.
    pub fn snapshot_position(&self) -> i64 {
        self.progress.snapshot_position
    }

    /// Whether the history is loaded.
    pub fn is_done(&self) -> bool {
        self.progress.done
    }

    /// The scan continues strictly after this key; `None` means from the first key.
    pub fn scan_after(&self) -> Option<&[u8]> {
        self.progress.last_loaded_key.as_deref()
    }

    /// Whether the scan writes the row of `key`, whose value came from the ingestion
    /// topic at `ingestion_offset` (`None`: from elsewhere, a migration into this
    /// version, which the live path never copies): the load is not done, `key` is
    /// after the scan position, and the live path has not already copied a newer value.
    pub fn should_load(&self, key: &[u8], ingestion_offset: Option<i64>) -> bool {
        !self.progress.done
            && self.scan_after().is_none_or(|last| key > last)
            && ingestion_offset.is_none_or(|o| o < self.progress.snapshot_position)
    }

    /// Records that the row of `key` was written to the input topic.
    pub fn loaded(&mut self, key: &[u8]) -> Result<(), CutoverError> {
        self.pass(key)?;
        self.progress.records_loaded += 1;
        Ok(())
    }

    /// Records that the scan passed `key` without writing it (the live path has it).
    pub fn skipped(&mut self, key: &[u8]) -> Result<(), CutoverError> {
        self.pass(key)
    }

    fn pass(&mut self, key: &[u8]) -> Result<(), CutoverError> {
        if self.progress.done {
            return Err(self.already_done());
        }
        if let Some(last) = self.scan_after()
            && key <= last
        {
            return Err(CutoverError::KeyOutOfOrder {
                flow: self.progress.flow_name.clone(),
                partition: self.progress.partition,
                key: key.to_vec(),
                last: last.to_vec(),
            });
        }
        self.progress.last_loaded_key = Some(key.to_vec());
        Ok(())
    }

    /// Records that the scan passed the table's last key: the history is loaded.
    pub fn finish(&mut self) -> Result<(), CutoverError> {
        if self.progress.done {
            return Err(self.already_done());
        }
        self.progress.done = true;
        Ok(())
    }

    /// What the live path does with the record at `offset` of the ingestion topic.
    pub fn live(&self, offset: i64) -> LiveDecision {
        if offset < self.progress.snapshot_position {
            LiveDecision::Covered
        } else {
            LiveDecision::Copy
        }
    }

    fn already_done(&self) -> CutoverError {
        CutoverError::AlreadyDone {
            flow: self.progress.flow_name.clone(),
            partition: self.progress.partition,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn live_records_from_the_position_on_are_copied_at_once() {
        let mut cutover = Cutover::start("migrate", 2, 100).expect("valid position");
        assert_eq!(cutover.live(0), LiveDecision::Covered);
        assert_eq!(cutover.live(99), LiveDecision::Covered);
        assert_eq!(cutover.live(100), LiveDecision::Copy);
        assert_eq!(cutover.live(5_000), LiveDecision::Copy);
        cutover.finish().expect("first finish");
        assert!(cutover.is_done());
        assert_eq!(cutover.live(99), LiveDecision::Covered);
        assert_eq!(cutover.live(100), LiveDecision::Copy);

        let live = Cutover::live_only("parse", 0, 7);
        assert_eq!(live.live(6), LiveDecision::Covered);
        assert_eq!(live.live(7), LiveDecision::Copy);
        assert!(!live.should_load(b"a", Some(1)));
        assert!(matches!(
            Cutover::start("m", 1, -1),
            Err(CutoverError::NegativePosition { .. })
        ));
    }

    #[test]
    fn scan_keys_ascend_skip_live_rows_and_resume_after_the_last() {
        let mut cutover = Cutover::start("migrate", 0, 10).expect("valid position");
        assert_eq!(cutover.scan_after(), None);
        assert!(cutover.should_load(b"", Some(9)));
        assert!(!cutover.should_load(b"", Some(10)), "copied live");
        assert!(cutover.should_load(b"", None), "from a migration");
        cutover.loaded(b"a").expect("first key");
        cutover.skipped(b"b").expect("next key");
        let err = cutover.loaded(b"b").expect_err("repeated key");
        assert_eq!(
            err.to_string(),
            "flow migrate partition 0: snapshot key 62 is not after the last loaded key 62"
        );
        assert!(cutover.skipped(b"a").is_err());

        // Crash: what was stored is all that is known.
        let stored = cutover.progress().clone();
        assert_eq!(stored.last_loaded_key.as_deref(), Some(&b"b"[..]));
        assert_eq!(stored.records_loaded, 1);
        assert_eq!(stored.snapshot_position, 10);
        let mut resumed = Cutover::resume(stored);
        assert_eq!(resumed.scan_after(), Some(&b"b"[..]));
        assert!(!resumed.should_load(b"a", Some(0)) && !resumed.should_load(b"b", Some(0)));
        assert!(resumed.should_load(b"ba", Some(0)) && resumed.should_load(b"c", Some(3)));
        resumed.loaded(b"c").expect("after b");
        resumed.finish().expect("end of scan");
        assert_eq!(resumed.progress().records_loaded, 2);
        assert!(resumed.progress().done);
        assert!(!resumed.should_load(b"d", Some(0)));
        assert_eq!(
            resumed.loaded(b"d").expect_err("done").to_string(),
            "flow migrate partition 0: the snapshot is already loaded"
        );
        assert!(resumed.finish().is_err());
        assert!(format!("{resumed:?}").contains("last_loaded_key: Some(\"63\")"));
    }

    /// One partition of an ingestion topic: `(key, value)` per offset; `None` deletes.
    type Log = Vec<(&'static str, Option<u32>)>;

    /// Everything written to the flow's input partition: key, value and the source
    /// offset the value came from.
    type Input = Vec<(&'static str, Option<u32>, usize)>;

    /// The table after the records below `position`: value and offset per key.
    fn table_at(log: &Log, position: usize) -> BTreeMap<&'static str, (usize, u32)> {
        let mut table = BTreeMap::new();
        for (offset, (key, value)) in log.iter().enumerate().take(position) {
            match value {
                Some(v) => table.insert(*key, (offset, *v)),
                None => table.remove(key),
            };
        }
        table
    }

    /// The task as it runs: records of the log up to `position` are in the table before
    /// the flow appears; from then on, `live_per_tick` live records between loader
    /// ticks of `chunk` keys each, reading the live table. After `crash_after` ticks the
    /// task restarts from the stored progress; when not `atomic`, the progress of the
    /// tick before the crash was not stored (its writes to the input were).
    fn run(
        log: &Log,
        position: usize,
        chunk: usize,
        live_per_tick: usize,
        crash_after: usize,
        atomic: bool,
    ) -> Input {
        let mut table = table_at(log, position);
        let mut input: Input = Vec::new();
        let p = i64::try_from(position).expect("small offsets");
        let mut cutover = Cutover::start("migrate", 0, p).expect("valid position");
        let mut stored = cutover.progress().clone();
        let mut next = position;
        let mut ticks = 0;
        loop {
            // Live records: written to the table and copied in the same step.
            for _ in 0..live_per_tick {
                if next < log.len() {
                    let (key, value) = log[next];
                    let offset = i64::try_from(next).expect("small offsets");
                    assert_eq!(cutover.live(offset), LiveDecision::Copy);
                    match value {
                        Some(v) => table.insert(key, (next, v)),
                        None => table.remove(key),
                    };
                    input.push((key, value, next));
                    next += 1;
                }
            }
            if cutover.is_done() {
                for (offset, (key, value)) in log.iter().enumerate().skip(next) {
                    input.push((key, *value, offset));
                }
                return input;
            }
            // One loader tick over the live table.
            let rows: Vec<(&'static str, (usize, u32))> = table
                .iter()
                .filter(|(k, _)| cutover.scan_after().is_none_or(|l| k.as_bytes() > l))
                .take(chunk)
                .map(|(k, v)| (*k, *v))
                .collect();
            for (key, (offset, value)) in &rows {
                let o = i64::try_from(*offset).expect("small offsets");
                if cutover.should_load(key.as_bytes(), Some(o)) {
                    input.push((key, Some(*value), *offset));
                    cutover.loaded(key.as_bytes()).expect("ascending");
                } else {
                    cutover.skipped(key.as_bytes()).expect("ascending");
                }
            }
            if rows.len() < chunk {
                cutover.finish().expect("end of scan");
            }
            ticks += 1;
            if ticks == crash_after && !atomic {
                // The tick's writes went out; its progress was lost.
                cutover = Cutover::resume(stored.clone());
            } else {
                stored = cutover.progress().clone();
                if ticks == crash_after {
                    cutover = Cutover::resume(stored.clone());
                }
            }
        }
    }

    fn check(log: &Log, position: usize, input: &Input) {
        let mut target = BTreeMap::new();
        let mut last_offset: BTreeMap<&str, usize> = BTreeMap::new();
        for (key, value, offset) in input {
            // Older never overwrites newer: each key's source offsets never go back.
            if let Some(previous) = last_offset.insert(*key, *offset) {
                assert!(previous <= *offset, "{key}: {previous} then {offset}");
            }
            match value {
                Some(v) => target.insert(*key, *v),
                None => target.remove(key),
            };
        }
        let expected: BTreeMap<&str, u32> = table_at(log, log.len())
            .into_iter()
            .map(|(k, (_, v))| (k, v))
            .collect();
        assert_eq!(target, expected);
        // Every live record is copied exactly once, in offset order.
        let live: Vec<usize> = input
            .iter()
            .map(|(_, _, o)| *o)
            .filter(|o| *o >= position)
            .collect();
        assert_eq!(live, (position..log.len()).collect::<Vec<_>>());
    }

    #[test]
    fn every_record_reaches_the_target_once_in_effect_and_in_order() {
        let log: Log = vec![
            ("a", Some(1)),
            ("b", Some(1)),
            ("c", Some(1)),
            ("a", Some(2)),
            ("d", Some(1)),
            ("c", None),
            ("f", Some(1)),
            // Snapshot position 7 (one of those tried).
            ("b", Some(2)),
            ("a", Some(3)),
            ("e", Some(1)),
            ("d", None),
            ("b", Some(3)),
            ("c", Some(2)),
            ("0", Some(1)),
        ];
        for position in [0, 3, 7, log.len()] {
            let keys = table_at(&log, position).len();
            for chunk in 1..=3 {
                for live_per_tick in 0..=2 {
                    for crash_after in 0..=keys + 1 {
                        for atomic in [true, false] {
                            let input =
                                run(&log, position, chunk, live_per_tick, crash_after, atomic);
                            check(&log, position, &input);
                            let loaded: Vec<&str> = input
                                .iter()
                                .filter(|(_, _, o)| *o < position)
                                .map(|(k, _, _)| *k)
                                .collect();
                            let distinct: std::collections::BTreeSet<&str> =
                                loaded.iter().copied().collect();
                            let loaded = loaded.len();
                            if atomic {
                                assert_eq!(loaded, distinct.len(), "each key loaded once");
                            } else {
                                // At most the one tick whose progress was lost again.
                                assert!(loaded <= keys + chunk);
                            }
                        }
                    }
                }
            }
        }
    }
}
