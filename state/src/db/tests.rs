use std::collections::BTreeMap;

use bytes::Bytes;

use crate::test_support::{TestResult, encoded, open, resources, run};
use crate::{Checkpoint, StateError, StoreId, TaskDb};

fn checkpoint(offset: i64) -> Checkpoint {
    let mut checkpoint = Checkpoint::default();
    checkpoint.set("input/core-cmd/3", offset);
    checkpoint.set("epoch", 7);
    checkpoint
}

#[test]
fn new_db_has_no_checkpoint() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (db, a, b) = open(dir.path())?;
    assert_eq!(db.checkpoint()?, None);
    assert_eq!(db.store_names(), ["a", "b"]);
    assert_eq!((db.store_name(a), db.store_name(b)), ("a", "b"));
    assert_eq!(db.store_id("c"), None);
    Ok(())
}

#[test]
fn committed_state_survives_flush_and_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let (mut db, a, b) = open(dir.path())?;
        let mut record = db.record();
        record.put(a, b"k", &run("v"));
        record.put(b, b"k2", &run("w"));
        record.finish()?;
        let written = db.commit_pending(&checkpoint(10))?;
        assert_eq!(
            written,
            (1 + encoded("v").len() + 2 + encoded("w").len()) as u64
        );
        assert_eq!(db.pending_len(), 0);
        // Committed but not flushed: in the memtable, not yet in an SST file.
        let unflushed = db.store_sizes(a)?;
        assert_eq!((unflushed.keys, unflushed.live_data_bytes), (1, 0));
        assert!(unflushed.memtable_bytes > 0, "{unflushed:?}");
        db.flush()?;
        let flushed = db.store_sizes(a)?;
        assert_eq!(flushed.keys, 1);
        assert!(flushed.live_data_bytes > 0, "{flushed:?}");
    }
    let (db, a, b) = open(dir.path())?;
    assert_eq!(db.checkpoint()?, Some(checkpoint(10)));
    assert_eq!(db.get_raw(a, b"k")?, Some(encoded("v")));
    assert_eq!(db.get_raw(b, b"k2")?, Some(encoded("w")));
    Ok(())
}

#[test]
fn a_persisted_checkpoint_is_read_back_after_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let (mut db, _, _) = open(dir.path())?;
        db.persist_checkpoint(&checkpoint(12))?;
        assert_eq!(db.checkpoint()?, Some(checkpoint(12)));
    }
    let (db, _, _) = open(dir.path())?;
    assert_eq!(db.checkpoint()?, Some(checkpoint(12)));
    Ok(())
}

#[test]
fn committed_state_survives_close_without_flush() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let (mut db, a, _) = open(dir.path())?;
        let mut record = db.record();
        record.put(a, b"k", &run("v"));
        record.finish()?;
        db.commit_pending(&checkpoint(3))?;
    }
    let (db, a, _) = open(dir.path())?;
    assert_eq!(db.checkpoint()?, Some(checkpoint(3)));
    assert_eq!(db.get_raw(a, b"k")?, Some(encoded("v")));
    Ok(())
}

#[test]
fn discarded_changes_are_not_committed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut db, a, _) = open(dir.path())?;
    let mut record = db.record();
    record.put(a, b"k", &run("v"));
    record.finish()?;
    db.discard_pending();
    assert_eq!(db.pending_len(), 0);
    assert_eq!(db.commit_pending(&checkpoint(1))?, 0);
    assert_eq!(db.get_raw(a, b"k")?, None);
    assert_eq!(db.checkpoint()?, Some(checkpoint(1)));
    Ok(())
}

#[test]
fn restored_changes_are_applied_in_bulk() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut db, a, b) = open(dir.path())?;
    let mut expected: BTreeMap<Bytes, Bytes> = BTreeMap::new();
    let key = |i: u32| Bytes::from(format!("key/{i:08}"));
    for chunk in 0..4u32 {
        let mut changes = Vec::new();
        for i in chunk * 25_000..(chunk + 1) * 25_000 {
            let value = Bytes::from(format!("value {i} of chunk {chunk}"));
            expected.insert(key(i), value.clone());
            changes.push((a, key(i), Some(value)));
        }
        // Each later chunk deletes some keys of the first and rewrites others.
        if chunk > 0 {
            for i in (chunk..25_000).step_by(97) {
                expected.remove(&key(i));
                changes.push((a, key(i), None));
            }
            let value = Bytes::from(format!("rewritten in {chunk}"));
            expected.insert(key(chunk), value.clone());
            changes.push((a, key(chunk), Some(value)));
        }
        db.apply_restored(changes, &checkpoint(i64::from(chunk)))?;
    }
    db.apply_restored(
        [(b, key(1), Some(Bytes::from_static(b"b")))],
        &checkpoint(4),
    )?;
    let scanned: BTreeMap<Bytes, Bytes> = db.scan_all(a)?.into_iter().collect();
    assert_eq!(scanned.len(), expected.len());
    assert!(scanned == expected);
    assert_eq!(db.scan_all(b)?.len(), 1);
    assert_eq!(db.checkpoint()?, Some(checkpoint(4)));
    Ok(())
}

#[test]
fn restore_refuses_pending_changes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut db, a, _) = open(dir.path())?;
    let mut record = db.record();
    record.put(a, b"k", &run("v"));
    record.finish()?;
    let result = db.apply_restored([], &checkpoint(0));
    assert!(
        matches!(result, Err(StateError::PendingChanges { pending: 1, .. })),
        "{result:?}"
    );
    Ok(())
}

#[test]
fn unknown_column_family_is_named() -> TestResult {
    let dir = tempfile::tempdir()?;
    drop(open(dir.path())?);
    let err = match TaskDb::open(dir.path(), &["a"], &resources()) {
        Err(err) => err,
        Ok(db) => return Err(format!("opened {db:?}").into()),
    };
    assert!(
        matches!(&err, StateError::UnknownColumnFamilies { names, .. } if names == &["b"]),
        "{err}"
    );
    assert!(err.to_string().contains(": b"), "{err}");
    // Adding a store to an existing db is fine.
    let db = TaskDb::open(dir.path(), &["a", "b", "c"], &resources())?;
    assert_eq!(db.store_names(), ["a", "b", "c"]);
    Ok(())
}

#[test]
fn invalid_store_names_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    for stores in [&["a", "a"][..], &["default"], &[""], &["__weir_meta"]] {
        let result = TaskDb::open(dir.path(), stores, &resources());
        assert!(
            matches!(result, Err(StateError::InvalidStoreName { .. })),
            "{stores:?}"
        );
    }
    Ok(())
}

#[test]
fn destroy_removes_the_directory() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("task-0");
    drop(open(&path)?);
    assert!(path.exists());
    TaskDb::destroy(&path)?;
    assert!(!path.exists());
    TaskDb::destroy(&path)?;
    let (db, _, _) = open(&path)?;
    assert_eq!(db.checkpoint()?, None);
    Ok(())
}

#[test]
fn task_dbs_share_resources_and_move_between_threads() -> TestResult {
    fn assert_send<T: Send>() {}
    assert_send::<TaskDb>();
    let dir = tempfile::tempdir()?;
    let resources = resources();
    let first = TaskDb::open(&dir.path().join("0"), &["s"], &resources)?;
    let second = TaskDb::open(&dir.path().join("1"), &["s"], &resources)?;
    std::thread::spawn(move || drop(first))
        .join()
        .map_err(|_| "thread panicked")?;
    drop(second);
    Ok(())
}

/// Puts `value` (a WfRunId) at `key` of `store` and commits it with checkpoint `offset`.
fn put_and_commit(
    db: &mut TaskDb,
    store: crate::StoreId,
    key: &[u8],
    value: &str,
    offset: i64,
) -> Result<(), StateError> {
    let mut record = db.record();
    record.put(store, key, &run(value));
    record.finish()?;
    db.commit_pending(&checkpoint(offset))?;
    Ok(())
}

/// Reads `key` of `store` in a record scope; returns the value and whether the value
/// cache answered.
fn read_counting(
    db: &mut TaskDb,
    store: crate::StoreId,
    key: &[u8],
) -> Result<(Option<Bytes>, bool), StateError> {
    let mut record = db.record();
    let value = record.get_raw(store, key)?;
    let hit = record.value_cache_hits() == 1;
    record.finish()?;
    Ok((value, hit))
}

#[test]
fn committed_values_and_absent_keys_are_read_from_the_value_cache_after_the_first_read()
-> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut db, a, b) = open(dir.path())?;
    let mut record = db.record();
    record.put(a, b"k", &run("v"));
    record.finish()?;
    // Pending: the overlay answers, not the cache.
    assert_eq!(
        read_counting(&mut db, a, b"k")?,
        (Some(encoded("v")), false)
    );
    db.commit_pending(&checkpoint(1))?;
    // Committed: the commit put the value in the cache.
    assert_eq!(read_counting(&mut db, a, b"k")?, (Some(encoded("v")), true));
    // An absent key: RocksDB once, then the cache remembers it is absent.
    assert_eq!(read_counting(&mut db, b, b"k")?, (None, false));
    assert_eq!(read_counting(&mut db, b, b"k")?, (None, true));
    // A pending change hides the cached value; discarded, the cached value is back.
    let mut record = db.record();
    record.put(a, b"k", &run("changed"));
    record.finish()?;
    assert_eq!(
        read_counting(&mut db, a, b"k")?,
        (Some(encoded("changed")), false)
    );
    db.discard_pending();
    assert_eq!(read_counting(&mut db, a, b"k")?, (Some(encoded("v")), true));
    // A delete commits as an absent key.
    let mut record = db.record();
    record.delete(a, b"k");
    record.finish()?;
    db.commit_pending(&checkpoint(2))?;
    assert_eq!(read_counting(&mut db, a, b"k")?, (None, true));
    Ok(())
}

#[test]
fn a_restore_write_is_read_back_not_the_value_cached_before_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut db, a, _) = open(dir.path())?;
    put_and_commit(&mut db, a, b"k", "old", 1)?;
    assert_eq!(
        read_counting(&mut db, a, b"k")?,
        (Some(encoded("old")), true)
    );
    db.apply_restored(
        [(a, Bytes::from_static(b"k"), Some(encoded("new")))],
        &checkpoint(2),
    )?;
    assert_eq!(
        read_counting(&mut db, a, b"k")?,
        (Some(encoded("new")), false)
    );
    assert_eq!(
        read_counting(&mut db, a, b"k")?,
        (Some(encoded("new")), true)
    );
    Ok(())
}

#[test]
fn two_databases_sharing_the_value_cache_see_their_own_values() -> TestResult {
    let resources = resources();
    let (one, two) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let mut first = TaskDb::open(one.path(), &["a"], &resources)?;
    let mut second = TaskDb::open(two.path(), &["a"], &resources)?;
    let a = first.store_id("a").ok_or("no store a")?;
    put_and_commit(&mut first, a, b"k", "first", 1)?;
    put_and_commit(&mut second, a, b"k", "second", 1)?;
    assert_eq!(
        read_counting(&mut first, a, b"k")?,
        (Some(encoded("first")), true)
    );
    assert_eq!(
        read_counting(&mut second, a, b"k")?,
        (Some(encoded("second")), true)
    );
    Ok(())
}

#[test]
fn frozen_batches_are_read_by_later_records_and_committed_oldest_first() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut db, a, _) = open(dir.path())?;
    let mut record = db.record();
    record.put(a, b"k", &run("batch 1"));
    record.finish()?;
    db.freeze_pending();

    let mut record = db.record();
    assert_eq!(record.get(a, b"k")?, Some(run("batch 1")));
    record.put(a, b"k", &run("batch 2"));
    record.put(a, b"j", &run("batch 2"));
    record.finish()?;
    db.freeze_pending();
    let mut record = db.record();
    record.put(a, b"open", &run("batch 3"));
    record.finish()?;
    assert_eq!((db.frozen_layers(), db.pending_len()), (2, 4));

    db.commit_oldest_frozen(&checkpoint(1))?;
    assert_eq!(db.checkpoint()?, Some(checkpoint(1)));
    assert_eq!(db.frozen_layers(), 1);
    assert_eq!(db.get_raw(a, b"k")?, Some(encoded("batch 2")));
    // What RocksDB holds: batch 1 only.
    db.discard_pending();
    assert_eq!(db.pending_len(), 0);
    assert_eq!(db.get_raw(a, b"k")?, Some(encoded("batch 1")));
    assert_eq!(db.get_raw(a, b"j")?, None);
    assert_eq!(db.get_raw(a, b"open")?, None);
    Ok(())
}

#[test]
fn scans_merge_every_layer_newest_last() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut db, a, _) = open(dir.path())?;
    let mut record = db.record();
    record.put(a, b"a", &run("stored a"));
    record.put(a, b"c", &run("stored c"));
    record.finish()?;
    db.commit_pending(&checkpoint(1))?;

    let mut record = db.record();
    record.put(a, b"b", &run("frozen b"));
    record.delete(a, b"c");
    record.finish()?;
    let frozen = db.freeze_pending();
    let expected_frozen: BTreeMap<StoreId, Vec<(Bytes, Option<Bytes>)>> = BTreeMap::from([(
        a,
        vec![
            (Bytes::from("b"), Some(encoded("frozen b"))),
            (Bytes::from("c"), None),
        ],
    )]);
    assert_eq!(
        frozen, expected_frozen,
        "only the changed store, in key order"
    );
    let mut record = db.record();
    record.put(a, b"c", &run("open c"));
    record.put(a, b"d", &run("open d"));
    record.delete(a, b"a");
    record.finish()?;

    let keys: Vec<(Bytes, Bytes)> = db.scan_all(a)?;
    let expected: Vec<(Bytes, Bytes)> = [("b", "frozen b"), ("c", "open c"), ("d", "open d")]
        .map(|(k, v)| (Bytes::from(k), encoded(v)))
        .into();
    assert_eq!(keys, expected);
    Ok(())
}

#[test]
fn commit_pending_writes_every_layer_in_order() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let (mut db, a, _) = open(dir.path())?;
        let mut record = db.record();
        record.put(a, b"k", &run("frozen"));
        record.put(a, b"gone", &run("frozen"));
        record.finish()?;
        db.freeze_pending();
        let mut record = db.record();
        record.put(a, b"k", &run("open"));
        record.delete(a, b"gone");
        record.finish()?;
        db.commit_pending(&checkpoint(2))?;
        assert_eq!((db.frozen_layers(), db.pending_len()), (0, 0));
    }
    let (db, a, _) = open(dir.path())?;
    assert_eq!(db.get_raw(a, b"k")?, Some(encoded("open")));
    assert_eq!(db.get_raw(a, b"gone")?, None);
    assert_eq!(db.checkpoint()?, Some(checkpoint(2)));
    Ok(())
}

#[test]
fn committing_a_frozen_batch_when_none_is_frozen_is_an_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut db, a, _) = open(dir.path())?;
    let mut record = db.record();
    record.put(a, b"k", &run("open"));
    record.finish()?;
    let result = db.commit_oldest_frozen(&checkpoint(1));
    assert!(
        matches!(result, Err(StateError::NothingFrozen { .. })),
        "{result:?}"
    );
    assert_eq!((db.pending_len(), db.checkpoint()?), (1, None));
    Ok(())
}
