use bytes::Bytes;
use weir_proto::WfRunId;

use crate::test_support::{TestResult, encoded, open, run};
use crate::{Change, Checkpoint, StateError, StoreId, TaskDb};

/// A database whose store "a" holds k1 -> "one" and k2 -> "two", committed.
fn seeded(
    path: &std::path::Path,
) -> Result<(TaskDb, StoreId, StoreId), Box<dyn std::error::Error>> {
    let (mut db, a, b) = open(path)?;
    let mut record = db.record();
    record.put(a, b"k1", &run("one"));
    record.put(a, b"k2", &run("two"));
    assert_eq!(record.finish()?.len(), 2);
    db.commit_pending(&Checkpoint::default())?;
    Ok((db, a, b))
}

#[test]
fn read_only_record_changes_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut db, a, b) = seeded(dir.path())?;
    let mut record = db.record();
    assert_eq!(record.get::<WfRunId>(a, b"k1")?, Some(run("one")));
    assert_eq!(record.get::<WfRunId>(b, b"absent")?, None);
    assert_eq!(record.scan_prefix::<WfRunId>(a, b"k")?.len(), 2);
    let changes = record.finish()?;
    assert!(changes.is_empty());
    assert_eq!(db.pending_len(), 0);
    assert_eq!(db.commit_pending(&Checkpoint::default())?, 0);
    assert_eq!(db.scan_all(a)?.len(), 2);
    assert!(db.scan_all(b)?.is_empty());
    Ok(())
}

#[test]
fn only_changed_bytes_are_changes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut db, a, _) = seeded(dir.path())?;
    let mut record = db.record();
    record.put(a, b"k1", &run("one")); // same bytes as stored
    record.put(a, b"k2", &run("TWO")); // different bytes
    record.delete(a, b"absent"); // delete of an absent key
    record.put(a, b"new", &run("x")); // put then delete of a new key
    record.delete(a, b"new");
    assert_eq!(record.writes(), 5);
    let changes = record.finish()?.into_vec();
    assert_eq!(
        changes,
        vec![Change {
            store: a,
            key: Bytes::from_static(b"k2"),
            previous: Some(encoded("two")),
            value: Some(encoded("TWO")),
        }]
    );

    let mut record = db.record();
    record.delete(a, b"k1");
    let changes = record.finish()?.into_vec();
    assert_eq!(
        changes,
        vec![Change {
            store: a,
            key: Bytes::from_static(b"k1"),
            previous: Some(encoded("one")),
            value: None,
        }]
    );
    Ok(())
}

#[test]
fn second_get_hits_the_record_cache() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut db, a, _) = seeded(dir.path())?;
    let mut record = db.record();
    assert_eq!(record.get::<WfRunId>(a, b"k1")?, Some(run("one")));
    assert_eq!(record.get::<WfRunId>(a, b"k1")?, Some(run("one")));
    assert_eq!(record.get_raw(a, b"k1")?, Some(encoded("one")));
    assert_eq!(record.reads(), 1);
    record.put(a, b"k1", &run("uno"));
    assert_eq!(record.get::<WfRunId>(a, b"k1")?, Some(run("uno")));
    assert_eq!((record.reads(), record.writes()), (1, 1));
    Ok(())
}

#[test]
fn later_records_of_a_batch_see_the_overlay() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut db, a, _) = open(dir.path())?;
    let mut record = db.record();
    record.put(a, b"k", &run("first"));
    record.finish()?;
    assert_eq!(db.pending_len(), 1);

    let mut record = db.record();
    assert_eq!(record.get::<WfRunId>(a, b"k")?, Some(run("first")));
    record.put(a, b"k", &run("second"));
    let changes = record.finish()?.into_vec();
    assert_eq!(changes[0].previous, Some(encoded("first")));
    assert_eq!(db.pending_len(), 1);
    assert_eq!(db.get_raw(a, b"k")?, Some(encoded("second")));
    Ok(())
}

#[test]
fn scans_merge_cache_overlay_and_rocksdb_in_key_order() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut db, a, b) = open(dir.path())?;
    // RocksDB: p/1, p/3, p/5, q/1; store b: p/2.
    let mut record = db.record();
    for key in ["p/1", "p/3", "p/5", "q/1"] {
        record.put(a, key.as_bytes(), &run(&format!("db {key}")));
    }
    record.put(b, b"p/2", &run("other store"));
    record.finish()?;
    db.commit_pending(&Checkpoint::default())?;
    // Overlay: p/2 added, p/3 deleted, p/5 replaced.
    let mut record = db.record();
    record.put(a, b"p/2", &run("overlay p/2"));
    record.delete(a, b"p/3");
    record.put(a, b"p/5", &run("overlay p/5"));
    record.finish()?;
    // Record cache: p/0 added, p/1 deleted, p/2 replaced.
    let mut record = db.record();
    record.put(a, b"p/0", &run("cache p/0"));
    record.delete(a, b"p/1");
    record.put(a, b"p/2", &run("cache p/2"));
    let seen = record.scan_prefix::<WfRunId>(a, b"p/")?;
    let expected = [
        ("p/0", "cache p/0"),
        ("p/2", "cache p/2"),
        ("p/5", "overlay p/5"),
    ]
    .map(|(k, v)| (Bytes::copy_from_slice(k.as_bytes()), run(v)));
    assert_eq!(seen, expected);
    let ranged = record.scan_range::<WfRunId>(a, b"p/2", b"q/1")?;
    assert_eq!(ranged, expected[1..]);
    assert!(record.scan_range::<WfRunId>(a, b"q", b"p")?.is_empty());
    assert_eq!(record.scan_prefix::<WfRunId>(a, b"")?.len(), 4);
    Ok(())
}

#[test]
fn scanned_entries_keep_their_original_bytes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut db, a, _) = seeded(dir.path())?;
    let mut record = db.record();
    let entries = record.scan_prefix::<WfRunId>(a, b"k")?;
    let reads = record.reads();
    for (key, value) in &entries {
        record.put(a, key, value);
    }
    assert_eq!(record.reads(), reads, "writes after a scan hit the cache");
    assert!(record.finish()?.is_empty());
    Ok(())
}

#[test]
fn dropping_a_record_discards_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut db, a, _) = seeded(dir.path())?;
    let mut record = db.record();
    record.put(a, b"k1", &run("changed"));
    record.delete(a, b"k2");
    drop(record);
    assert_eq!(db.pending_len(), 0);
    assert_eq!(db.get_raw(a, b"k1")?, Some(encoded("one")));
    assert_eq!(db.get_raw(a, b"k2")?, Some(encoded("two")));
    Ok(())
}

#[test]
fn change_set_is_sorted_by_store_then_key() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut db, a, b) = open(dir.path())?;
    let mut record = db.record();
    for (store, key) in [(b, "z"), (a, "m"), (b, "a"), (a, "z"), (a, "a")] {
        record.put_raw(store, key.as_bytes(), Bytes::from_static(b"v"));
    }
    let order: Vec<(StoreId, Bytes)> = record
        .finish()?
        .iter()
        .map(|c| (c.store, c.key.clone()))
        .collect();
    let expected: Vec<(StoreId, Bytes)> = [(a, "a"), (a, "m"), (a, "z"), (b, "a"), (b, "z")]
        .into_iter()
        .map(|(s, k)| (s, Bytes::copy_from_slice(k.as_bytes())))
        .collect();
    assert_eq!(order, expected);
    Ok(())
}

#[test]
fn decode_error_names_store_and_key() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut db, a, _) = open(dir.path())?;
    let mut record = db.record();
    record.put_raw(a, b"bad\x01", Bytes::from_static(&[0xff, 0xff]));
    let err = match record.get::<WfRunId>(a, b"bad\x01") {
        Err(err @ StateError::Decode { .. }) => err.to_string(),
        other => return Err(format!("expected a decode error, got {other:?}").into()),
    };
    assert!(
        err.contains("store a") && err.contains("0x62616401"),
        "{err}"
    );
    Ok(())
}
