//! A store with a data directory: what it recovers after being dropped and
//! reopened, and what it refuses to open (docs/durability.md).

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dida_core::{Record, Ring, Version};
use dida_storage::config::FsyncPolicy;
use dida_storage::durable::{Persistence, COMPACT_AFTER_BYTES};
use dida_storage::store::CasOutcome;
use dida_storage::MultiVersionStore;

fn ring() -> Ring {
    Ring::new(&["s1", "s2", "s3"], 16, 3)
}

fn persistence(dir: &Path, fsync: FsyncPolicy) -> Persistence {
    Persistence {
        dir: dir.to_path_buf(),
        fsync,
        node: "s1".into(),
        cluster: "members s1#1,s2#2,s3#3 vnodes 16 replication-factor 3".into(),
        compact_after_bytes: COMPACT_AFTER_BYTES,
    }
}

fn open_with(max_versions: usize, p: &Persistence) -> anyhow::Result<MultiVersionStore> {
    MultiVersionStore::open(max_versions, &ring(), Some(p))
}

fn open(dir: &Path) -> MultiVersionStore {
    open_with(3, &persistence(dir, FsyncPolicy::Always)).expect("the store opens")
}

fn record(key: &str, number: u64, replica: u32, value: &str) -> Record {
    Record {
        key: key.into(),
        version: Version::new(number, replica),
        value: value.into(),
    }
}

/// The only log segment of a directory that was never compacted.
fn segment(dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("wal-"))
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    segments.pop().unwrap()
}

/// Every file of `dir` with its contents, to show that nothing was changed.
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("LOCK"))
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

/// Writes, conditional updates and merges of 200 keys; returns the records held.
fn fill(store: &MultiVersionStore) -> Vec<Record> {
    for i in 0..200 {
        let key = format!("key-{i}");
        store.write(&key, "a", 1).unwrap();
        assert!(matches!(
            store.update_if_value_is(&key, "a", "b", 1).unwrap(),
            CasOutcome::Applied(_)
        ));
        store.merge(&record(&key, 7, 2, "pushed"));
    }
    store.records()
}

#[test]
fn every_record_comes_back_with_its_version_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let held = {
        let store = open(dir.path());
        fill(&store)
    };
    assert_eq!(held.len(), 600);
    let store = open(dir.path());
    assert_eq!(store.records(), held);
    // The next write numbers past the recovered versions.
    assert_eq!(
        store.write("key-0", "c", 1).unwrap().version,
        Version::new(8, 1)
    );
}

#[test]
fn every_policy_recovers_after_a_clean_close() {
    for policy in [FsyncPolicy::Batch, FsyncPolicy::Never] {
        let dir = tempfile::tempdir().unwrap();
        let p = persistence(dir.path(), policy);
        let held = fill(&open_with(3, &p).unwrap());
        assert_eq!(open_with(3, &p).unwrap().records(), held, "{policy}");
    }
}

#[test]
fn max_versions_holds_after_a_reopen_even_a_smaller_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = persistence(dir.path(), FsyncPolicy::Always);
    {
        let store = open_with(5, &p).unwrap();
        for i in 0..10 {
            store.write("k", &i.to_string(), 1).unwrap();
        }
        assert_eq!(store.counts(), (1, 5));
    }
    let store = open_with(2, &p).unwrap();
    assert_eq!(store.counts(), (1, 2));
    let kept: Vec<Version> = store.records().iter().map(|r| r.version).collect();
    assert_eq!(kept, vec![Version::new(9, 1), Version::new(10, 1)]);
}

#[test]
fn a_cut_last_entry_is_dropped_and_the_rest_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let held = fill(&open(dir.path()));
    let segment = segment(dir.path());
    let len = fs::metadata(&segment).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let store = open(dir.path());
    // The last entry was the merge of key-199's version 7.
    let lost = record("key-199", 7, 2, "pushed");
    let expected: Vec<Record> = held.iter().filter(|r| **r != lost).cloned().collect();
    assert_eq!(store.records(), expected);
    // Appends go on after the cut: a further reopen finds them.
    store.merge(&lost);
    drop(store);
    assert_eq!(open(dir.path()).records(), held);
}

#[test]
fn a_damaged_last_entry_is_dropped_and_the_rest_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let held = fill(&open(dir.path()));
    let segment = segment(dir.path());
    let mut bytes = fs::read(&segment).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0xff;
    fs::write(&segment, bytes).unwrap();
    let lost = record("key-199", 7, 2, "pushed");
    let expected: Vec<Record> = held.into_iter().filter(|r| *r != lost).collect();
    assert_eq!(open(dir.path()).records(), expected);
}

#[test]
fn damage_before_the_last_entry_is_refused_and_nothing_is_changed() {
    let dir = tempfile::tempdir().unwrap();
    fill(&open(dir.path()));
    let segment = segment(dir.path());
    let mut bytes = fs::read(&segment).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&segment, bytes).unwrap();
    let before = contents(dir.path());
    let error = format!(
        "{:#}",
        open_with(3, &persistence(dir.path(), FsyncPolicy::Always)).unwrap_err()
    );
    assert!(error.contains("is corrupt"), "{error}");
    assert!(error.contains("a valid entry follows"), "{error}");
    assert_eq!(contents(dir.path()), before);
}

#[test]
fn another_nodes_or_clusters_directory_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    fill(&open(dir.path()));
    let before = contents(dir.path());
    let mut other_node = persistence(dir.path(), FsyncPolicy::Always);
    other_node.node = "s2".into();
    let error = open_with(3, &other_node).unwrap_err().to_string();
    assert!(error.contains("belongs to node s1, not s2"), "{error}");
    let mut other_cluster = persistence(dir.path(), FsyncPolicy::Always);
    other_cluster.cluster = "members s1#1,s2#2 vnodes 16 replication-factor 2".into();
    let error = open_with(3, &other_cluster).unwrap_err().to_string();
    assert!(error.contains("another cluster"), "{error}");
    assert_eq!(contents(dir.path()), before);
}

#[test]
fn a_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let error = open_with(3, &persistence(dir.path(), FsyncPolicy::Always))
        .unwrap_err()
        .to_string();
    assert!(error.contains("in use by another process"), "{error}");
    drop(first);
    open(dir.path());
}

#[test]
fn an_unreadable_identity_or_unknown_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fill(&open(dir.path()));
    fs::write(dir.path().join("IDENTITY"), "hello").unwrap();
    let error = format!(
        "{:#}",
        open_with(3, &persistence(dir.path(), FsyncPolicy::Always)).unwrap_err()
    );
    assert!(error.contains("IDENTITY is corrupt"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("wal-x.log"), "").unwrap();
    let error = format!(
        "{:#}",
        open_with(3, &persistence(dir.path(), FsyncPolicy::Always)).unwrap_err()
    );
    assert!(error.contains("not a log segment name"), "{error}");
}

#[test]
fn a_cleared_store_reopens_empty_and_keeps_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        fill(&store);
        store.clear();
        assert_eq!(store.counts(), (0, 0));
        store.write("after", "x", 1).unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.records(), vec![record("after", 1, 1, "x")]);
}

#[test]
fn compaction_bounds_the_log_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = persistence(dir.path(), FsyncPolicy::Never);
    p.compact_after_bytes = 64 << 10;
    let store = open_with(2, &p).unwrap();
    // 20 000 writes of 100 keys: ~1 MB of log for ~200 live records.
    for round in 0..200 {
        for i in 0..100 {
            store
                .write(&format!("key-{i}"), &format!("value-{round}"), 1)
                .unwrap();
        }
    }
    store.compact().unwrap();
    let held = store.records();
    drop(store);
    let on_disk: u64 = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk < 3 * (64 << 10), "{on_disk} bytes on disk");
    assert_eq!(open_with(2, &p).unwrap().records(), held);
}

#[test]
fn concurrent_writers_all_recover() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    store.write(&format!("t{t}-{i}"), "v", 1).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let held = store.records();
    assert_eq!(held.len(), 400);
    drop(store);
    assert_eq!(open(dir.path()).records(), held);
}
