//! The initial load of a flow, per partition of its source: the cut-over from a
//! snapshot of the source table to the live records of the source ingestion topic,
//! as a state machine over `InitialLoadProgress`, with no Kafka and no store.
//!
//! # The procedure
//!
//! Names, for one partition `p`: `S` is partition `p` of the source ingestion topic,
//! `T` the source table's partition `p` (fed from `S`), `I` partition `p` of the flow's
//! input topic (the same partition number: flow topics have the source's partition
//! count, so a key is in partition `p` of each).
//!
//! 1. Take a read view `V` of `T` at a position `P` of `S`: `V` holds the effect of
//!    exactly the records of `S` at offsets below `P` (a RocksDB checkpoint taken at a
//!    commit, whose committed position is `P`). [`Cutover::start`] records `P`.
//! 2. The snapshot loader scans `V` in ascending key order (bytewise, as RocksDB
//!    iterates), writes each key's value to `I`, and reports it with
//!    [`Cutover::loaded`]. The progress is stored with what was written, in the same
//!    commit. After a crash, [`Cutover::resume`] continues the scan strictly after
//!    [`Cutover::scan_after`] (the `last_loaded_key`). At the end of the scan,
//!    [`Cutover::finish`].
//! 3. The live copier reads `S` and asks [`Cutover::live`] for each record's offset:
//!    below `P` it is [`LiveDecision::Covered`] by the snapshot and skipped; from `P` on
//!    it is [`LiveDecision::Hold`] until the snapshot is loaded (the copier stops there
//!    and asks again later, without committing past it), then [`LiveDecision::Copy`].
//!
//! Nothing else waits: the ingestion topic, the source table and every other flow go on
//! during the load; only this flow's input starts with the snapshot and then catches up
//! on the live records from `P`. (Moose, by contrast, paused syncing during the load.)
//! `S` must keep offset `P` until the copier has read it: if retention removed it first
//! (the copier's fetch at `P` is out of range), live records would be missing, so the
//! load must [`Cutover::restart`] at a fresh position instead of skipping ahead.
//!
//! # Why no record is lost
//!
//! A record of `S` at offset `o >= P` is copied by the live path: the copier starts at or
//! before `P`, skips nothing from `P` on, and copies every record once the snapshot is
//! loaded. A record at `o < P` is in effect in `V`: a table keeps the latest value per
//! key, so its key holds either that record's value or a later record's (below `P`)
//! that replaced it, or the key was deleted later (below `P`); loading `V` gives the
//! target that effect. The scan visits every key of `V`: it resumes strictly after the
//! last key whose write was committed, and the keys come in strictly ascending order
//! ([`Cutover::loaded`] refuses anything else), so none is passed over.
//!
//! # Why none is applied twice
//!
//! Each offset goes one way: below `P` only through the snapshot ([`LiveDecision::Covered`]),
//! from `P` on only through the live path. The live copier commits its position with
//! what it wrote, so each live record is copied once; the loader commits its progress
//! with what it wrote, so a resumed scan writes each key once. Were the two not
//! committed together (at-least-once), a resumed scan could write a key again: the same
//! value for the same key, with no other value of that key in between (the live path has
//! not started), so the second write changes nothing in the target table: once in
//! effect.
//!
//! # Why an older value cannot overwrite a newer one
//!
//! In `I`, the snapshot comes first, whole, then the live records in offset order,
//! because the copier holds every record from `P` on until the snapshot is loaded. So for
//! each key, its snapshot value (the latest below `P`) precedes all of its live values
//! (from `P` on), which follow in offset order. A key updated after `P` reaches the
//! target only through the live path, after its snapshot value. The flow reads `I` in
//! order and writes its output partition in order, and the target applies that in
//! order, so the last value applied for a key is its newest. If the view `V` is lost
//! mid-load (the machine that held the checkpoint is gone), [`Cutover::restart`] starts
//! again with a view at `P2 >= P`: `I` then holds a prefix of the snapshot at `P`, the
//! whole snapshot at `P2`, then the live records from `P2`; the source positions of any
//! key's values in `I` still never go backwards, and the last one is the newest.
//!
//! This holds per key of the source. A transform that maps several source keys to one
//! target key, or a target table also fed by its own ingestion topic, has no order
//! between those writers; the cut-over does not make one.

use std::fmt;

use weir_proto::InitialLoadProgress;

/// What the live copier does with a record of the source ingestion topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveDecision {
    /// Below the snapshot position: the snapshot holds its effect; skip it.
    Covered,
    /// From the snapshot position on, but the snapshot is not loaded yet: do not copy
    /// it or anything after it yet, and do not commit past it.
    Hold,
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
    /// The snapshot scan reported a key not after the last one loaded.
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
    /// A restart with a view older than the snapshot position already recorded.
    #[error(
        "flow {flow} partition {partition}: cannot restart at position {position}, before the snapshot position {snapshot_position}"
    )]
    PositionBackwards {
        flow: String,
        partition: i32,
        position: i64,
        snapshot_position: i64,
    },
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
    /// A new initial load of `flow` on `partition`, with the source table's view taken
    /// at `snapshot_position` of the ingestion topic.
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

    /// A flow without an initial load: live records from `start` on are copied at once,
    /// those below it are not this flow's.
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

    /// The load as stored, after a restart; the snapshot scan continues after
    /// [`Self::scan_after`], over the view at the same snapshot position.
    pub fn resume(progress: InitialLoadProgress) -> Self {
        Self { progress }
    }

    /// The progress to store, in the same commit as what was written to the input topic.
    pub fn progress(&self) -> &InitialLoadProgress {
        &self.progress
    }

    /// The offset of the ingestion topic the snapshot was cut at.
    pub fn snapshot_position(&self) -> i64 {
        self.progress.snapshot_position
    }

    /// Whether the snapshot is loaded (live records are then copied).
    pub fn is_done(&self) -> bool {
        self.progress.done
    }

    /// The scan continues strictly after this key; `None` means from the first key.
    pub fn scan_after(&self) -> Option<&[u8]> {
        self.progress.last_loaded_key.as_deref()
    }

    /// Whether the snapshot scan should write `key`: the snapshot is not loaded yet and
    /// `key` comes after the last loaded one (a resumed scan may see keys already
    /// loaded if it cannot seek exactly).
    pub fn should_load(&self, key: &[u8]) -> bool {
        !self.progress.done && self.scan_after().is_none_or(|last| key > last)
    }

    /// Records that the value of `key` was written to the input topic.
    pub fn loaded(&mut self, key: &[u8]) -> Result<(), CutoverError> {
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
        self.progress.records_loaded += 1;
        Ok(())
    }

    /// Records that the scan reached the end of the view: the snapshot is loaded, and
    /// live records from the snapshot position on are copied from now.
    pub fn finish(&mut self) -> Result<(), CutoverError> {
        if self.progress.done {
            return Err(self.already_done());
        }
        self.progress.done = true;
        Ok(())
    }

    /// What the live copier does with the record at `offset` of the ingestion topic.
    pub fn live(&self, offset: i64) -> LiveDecision {
        if offset < self.progress.snapshot_position {
            LiveDecision::Covered
        } else if self.progress.done {
            LiveDecision::Copy
        } else {
            LiveDecision::Hold
        }
    }

    /// Starts the scan again over a new view at `position`, when the view of the
    /// recorded position is lost (or the ingestion topic no longer holds it). Only before
    /// the snapshot is loaded, and never at an older position.
    pub fn restart(&mut self, position: i64) -> Result<(), CutoverError> {
        if self.progress.done {
            return Err(self.already_done());
        }
        if position < self.progress.snapshot_position {
            return Err(CutoverError::PositionBackwards {
                flow: self.progress.flow_name.clone(),
                partition: self.progress.partition,
                position,
                snapshot_position: self.progress.snapshot_position,
            });
        }
        self.progress.snapshot_position = position;
        self.progress.last_loaded_key = None;
        self.progress.records_loaded = 0;
        Ok(())
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
    fn live_records_are_covered_held_then_copied() {
        let mut cutover = Cutover::start("migrate", 2, 100).expect("valid position");
        assert_eq!(cutover.live(0), LiveDecision::Covered);
        assert_eq!(cutover.live(99), LiveDecision::Covered);
        assert_eq!(cutover.live(100), LiveDecision::Hold);
        assert_eq!(cutover.live(5_000), LiveDecision::Hold);
        cutover.finish().expect("first finish");
        assert!(cutover.is_done());
        assert_eq!(cutover.live(99), LiveDecision::Covered);
        assert_eq!(cutover.live(100), LiveDecision::Copy);
        assert_eq!(cutover.live(5_000), LiveDecision::Copy);

        let live = Cutover::live_only("parse", 0, 7);
        assert_eq!(live.live(6), LiveDecision::Covered);
        assert_eq!(live.live(7), LiveDecision::Copy);
        assert!(!live.should_load(b"a"));
    }

    #[test]
    fn snapshot_keys_ascend_and_resume_after_the_last_loaded() {
        let mut cutover = Cutover::start("migrate", 0, 10).expect("valid position");
        assert_eq!(cutover.scan_after(), None);
        assert!(cutover.should_load(b""));
        cutover.loaded(b"a").expect("first key");
        cutover.loaded(b"b").expect("next key");
        let err = cutover.loaded(b"b").expect_err("repeated key");
        assert_eq!(
            err.to_string(),
            "flow migrate partition 0: snapshot key 62 is not after the last loaded key 62"
        );
        assert!(cutover.loaded(b"a").is_err());

        // Crash: what was stored is all that is known.
        let stored = cutover.progress().clone();
        assert_eq!(stored.last_loaded_key.as_deref(), Some(&b"b"[..]));
        assert_eq!(stored.records_loaded, 2);
        assert_eq!(stored.snapshot_position, 10);
        let mut resumed = Cutover::resume(stored);
        assert_eq!(resumed.scan_after(), Some(&b"b"[..]));
        assert!(!resumed.should_load(b"a") && !resumed.should_load(b"b"));
        assert!(resumed.should_load(b"ba") && resumed.should_load(b"c"));
        assert_eq!(resumed.live(10), LiveDecision::Hold);
        resumed.loaded(b"c").expect("after b");
        resumed.finish().expect("end of scan");
        assert_eq!(resumed.progress().records_loaded, 3);
        assert!(resumed.progress().done);
        assert!(!resumed.should_load(b"d"));
        assert_eq!(
            resumed.loaded(b"d").expect_err("done").to_string(),
            "flow migrate partition 0: the snapshot is already loaded"
        );
        assert!(resumed.finish().is_err());
        assert!(format!("{resumed:?}").contains("last_loaded_key: Some(\"63\")"));
    }

    #[test]
    fn a_lost_view_restarts_at_a_later_position_only() {
        assert!(matches!(
            Cutover::start("m", 1, -1),
            Err(CutoverError::NegativePosition { .. })
        ));
        let mut cutover = Cutover::start("m", 1, 50).expect("valid position");
        cutover.loaded(b"k1").expect("first key");
        assert!(matches!(
            cutover.restart(49),
            Err(CutoverError::PositionBackwards { .. })
        ));
        cutover.restart(80).expect("later view");
        assert_eq!(cutover.snapshot_position(), 80);
        assert_eq!(cutover.scan_after(), None);
        assert!(cutover.should_load(b"k1"));
        assert_eq!(cutover.live(79), LiveDecision::Covered);
        assert_eq!(cutover.live(80), LiveDecision::Hold);
        cutover.finish().expect("end of scan");
        assert!(cutover.restart(90).is_err());
    }

    /// One partition of an ingestion topic: `(key, value)` per offset; `None` deletes.
    type Log = Vec<(&'static str, Option<u32>)>;

    /// The source table after the records below `position`, with the offset of each
    /// key's value.
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

    /// Everything written to the flow's input partition: key, value and the source
    /// offset the value came from.
    type Input = Vec<(&'static str, Option<u32>, usize)>;

    /// Runs the loader (crashing after `crash_after` keys, and optionally losing the
    /// write-progress atomicity) and the live copier, interleaved: the copier polls
    /// after every snapshot key and while the log keeps growing.
    fn run(log: &Log, position: usize, crash_after: usize, atomic: bool) -> Input {
        let view = table_at(log, position);
        let mut input: Input = Vec::new();
        let mut copier_at = 0usize; // the copier starts before P: at the beginning
        let mut poll = |cutover: &Cutover, input: &mut Input| {
            while copier_at < log.len() {
                let offset = i64::try_from(copier_at).expect("small offsets");
                match cutover.live(offset) {
                    LiveDecision::Covered => copier_at += 1,
                    LiveDecision::Hold => break,
                    LiveDecision::Copy => {
                        let (key, value) = log[copier_at];
                        input.push((key, value, copier_at));
                        copier_at += 1;
                    }
                }
            }
        };
        let p = i64::try_from(position).expect("small offsets");
        let mut cutover = Cutover::start("migrate", 0, p).expect("valid position");
        let mut stored = cutover.progress().clone();
        let mut written = 0;
        for (key, (offset, value)) in &view {
            if written == crash_after {
                break;
            }
            input.push((key, Some(*value), *offset));
            cutover.loaded(key.as_bytes()).expect("ascending");
            written += 1;
            // Not atomic: the last write's progress is lost in the crash.
            if atomic || written < crash_after {
                stored = cutover.progress().clone();
            }
            poll(&cutover, &mut input);
        }
        // Crash and resume from what was stored.
        let mut cutover = Cutover::resume(stored);
        for (key, (offset, value)) in &view {
            if cutover.should_load(key.as_bytes()) {
                input.push((key, Some(*value), *offset));
                cutover.loaded(key.as_bytes()).expect("ascending");
                poll(&cutover, &mut input);
            }
        }
        cutover.finish().expect("end of scan");
        poll(&cutover, &mut input);
        input
    }

    fn check(log: &Log, position: usize, input: &Input) {
        // The target table built from the input equals the source table at the end.
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
            // Snapshot position 6.
            ("b", Some(2)),
            ("a", Some(3)),
            ("e", Some(1)),
            ("d", None),
            ("b", Some(3)),
        ];
        for position in [0, 3, 6, log.len()] {
            let keys = table_at(&log, position).len();
            for crash_after in 0..=keys {
                for atomic in [true, false] {
                    let input = run(&log, position, crash_after, atomic);
                    check(&log, position, &input);
                    let snapshot_writes = input.iter().filter(|(_, _, o)| *o < position).count();
                    if atomic {
                        assert_eq!(snapshot_writes, keys, "each key loaded once");
                    } else {
                        // At most the one key whose progress was lost is written again.
                        assert!(snapshot_writes <= keys + 1);
                    }
                }
            }
        }
    }
}
