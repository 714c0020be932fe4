//! A store with a data directory: what it recovers after being dropped and
//! reopened, and what it refuses to open (docs/durability.md).

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dida_core::{Record, Ring, Version};
use dida_storage::config::FsyncPolicy;
use dida_storage::durable::{Persistence, COMPACT_AFTER_BYTES};
use dida_storage::store::CasOutcome;
use dida_storage::{DurabilityError, MultiVersionStore};

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

fn open_with(max_versions: usize, p: &Persistence) -> Result<MultiVersionStore, DurabilityError> {
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

/// Fills a store synced before every acknowledgement, then appends one more record
/// with `--fsync never`, never synced: what a crash mid-append may leave torn.
/// Returns the records held and the unsynced one.
fn fill_then_append_unsynced(dir: &Path) -> (Vec<Record>, Record) {
    let held = fill(&open(dir));
    let unsynced = record("unsynced", 1, 2, "pushed");
    let store = open_with(3, &persistence(dir, FsyncPolicy::Never)).unwrap();
    store.merge(&unsynced);
    (held, unsynced)
}

fn open_error(dir: &Path) -> DurabilityError {
    open_with(3, &persistence(dir, FsyncPolicy::Always)).unwrap_err()
}

/// The damage a refusal to recover `dir` names: recovery refuses a directory whole
/// (and says how to replace it), for the damage it found.
fn damage(dir: &Path) -> DurabilityError {
    match open_error(dir) {
        DurabilityError::Unrecoverable {
            dir: refused,
            cause,
        } => {
            assert_eq!(refused, dir);
            *cause
        }
        other => panic!("a refusal to recover {}, not {other:?}", dir.display()),
    }
}

/// The reason a corrupt `what` at `path` was refused for.
fn corrupt_reason(error: DurabilityError, file: &'static str, path: &Path) -> String {
    match error {
        DurabilityError::Corrupt {
            what,
            path: found,
            reason,
        } if what == file && found == path => reason,
        other => panic!("{file} {} corrupt, not {other:?}", path.display()),
    }
}

#[test]
fn a_cut_unsynced_last_entry_is_dropped_and_the_rest_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let (held, unsynced) = fill_then_append_unsynced(dir.path());
    let segment = segment(dir.path());
    let len = fs::metadata(&segment).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let store = open(dir.path());
    assert_eq!(store.records(), held);
    // Appends go on after the cut: a further reopen finds them.
    store.merge(&unsynced);
    let all = store.records();
    drop(store);
    assert_eq!(open(dir.path()).records(), all);
}

#[test]
fn a_damaged_unsynced_last_entry_is_dropped_and_the_rest_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let (held, _) = fill_then_append_unsynced(dir.path());
    let segment = segment(dir.path());
    let mut bytes = fs::read(&segment).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0xff;
    fs::write(&segment, bytes).unwrap();
    assert_eq!(open(dir.path()).records(), held);
}

#[test]
fn zeros_past_the_last_sync_are_a_torn_tail_of_any_length() {
    // With `--fsync never` a machine crash may lose every append since the last
    // sync (here, since the store opened): 200 records' worth.
    let dir = tempfile::tempdir().unwrap();
    let held = fill(&open(dir.path()));
    let segment = segment(dir.path());
    let synced = fs::metadata(&segment).unwrap().len() as usize;
    {
        let store = open_with(3, &persistence(dir.path(), FsyncPolicy::Never)).unwrap();
        for i in 0..200 {
            store.write(&format!("later-{i}"), "v", 1).unwrap();
        }
    }
    let mut bytes = fs::read(&segment).unwrap();
    bytes[synced..].fill(0);
    fs::write(&segment, bytes).unwrap();
    assert_eq!(open(dir.path()).records(), held);
}

#[test]
fn a_zeroed_middle_of_a_synced_log_is_refused_naming_the_file_and_nothing_is_changed() {
    for policy in [FsyncPolicy::Always, FsyncPolicy::Batch] {
        let dir = tempfile::tempdir().unwrap();
        fill(&open_with(3, &persistence(dir.path(), policy)).unwrap());
        let segment = segment(dir.path());
        let mut bytes = fs::read(&segment).unwrap();
        let half = bytes.len() / 2;
        bytes[half..].fill(0);
        fs::write(&segment, bytes).unwrap();
        let before = contents(dir.path());
        let error = open_error(dir.path());
        let text = error.to_string();
        for expected in ["nothing was changed", "move the directory aside"] {
            assert!(text.contains(expected), "{policy}: {text}");
        }
        let DurabilityError::Unrecoverable { cause, .. } = error else {
            panic!("{policy}: a refusal to recover, not {error:?}");
        };
        let reason = corrupt_reason(*cause, "log segment", &segment);
        assert!(
            reason.contains(&format!("zero bytes from byte {half} to the end")),
            "{policy}: {reason}"
        );
        assert!(reason.contains("bytes were synced"), "{policy}: {reason}");
        assert_eq!(contents(dir.path()), before, "{policy}");
        // Refused again: the first refusal cut nothing.
        let again = corrupt_reason(damage(dir.path()), "log segment", &segment);
        assert!(again.contains("bytes were synced"), "{again}");
    }
}

#[test]
fn a_synced_log_cut_short_or_missing_is_refused_and_nothing_is_changed() {
    let dir = tempfile::tempdir().unwrap();
    fill(&open(dir.path()));
    let segment = segment(dir.path());
    let len = fs::metadata(&segment).unwrap().len();
    // Cut the last entry (key-199's merge, 46 bytes) whole, so every entry left
    // checks out: only the synced mark tells that one is missing.
    let mut bytes = fs::read(&segment).unwrap();
    bytes.truncate(len as usize - 46);
    fs::write(&segment, &bytes).unwrap();
    let before = contents(dir.path());
    let reason = corrupt_reason(damage(dir.path()), "log segment", &segment);
    assert!(
        reason.contains(&format!(
            "ends at byte {} but its first {len} bytes",
            len - 46
        )),
        "{reason}"
    );
    assert_eq!(contents(dir.path()), before);

    fs::remove_file(&segment).unwrap();
    let before = contents(dir.path());
    match damage(dir.path()) {
        DurabilityError::MissingSegment { path, synced } => {
            assert_eq!((path, synced), (segment.clone(), len));
        }
        other => panic!("a missing segment, not {other:?}"),
    }
    assert_eq!(contents(dir.path()), before);
}

#[test]
fn a_directory_without_a_synced_mark_still_opens() {
    // As an older dida left it: no SYNCED, so a damaged last entry is a torn tail.
    let dir = tempfile::tempdir().unwrap();
    let (held, _) = fill_then_append_unsynced(dir.path());
    fs::remove_file(dir.path().join("SYNCED")).unwrap();
    let segment = segment(dir.path());
    let len = fs::metadata(&segment).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    assert_eq!(open(dir.path()).records(), held);
    assert!(dir.path().join("SYNCED").exists());
}

#[test]
fn the_directory_and_every_file_are_private_to_the_nodes_user() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("s1");
    {
        let store = open(&dir);
        fill(&store);
        store.compact().unwrap();
        store.write("after", "x", 1).unwrap();
    }
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let mut names = Vec::new();
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    names.sort();
    assert_eq!(names.len(), 5, "{names:?}");
    for name in ["IDENTITY", "LOCK", "SYNCED", "snapshot"] {
        assert!(names.iter().any(|n| n == name), "{names:?}");
    }
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
    let reason = corrupt_reason(damage(dir.path()), "log segment", &segment);
    assert!(reason.contains("a valid entry follows"), "{reason}");
    assert_eq!(contents(dir.path()), before);
}

#[test]
fn another_nodes_or_clusters_directory_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    fill(&open(dir.path()));
    let before = contents(dir.path());
    let mut other_node = persistence(dir.path(), FsyncPolicy::Always);
    other_node.node = "s2".into();
    match open_with(3, &other_node).unwrap_err() {
        DurabilityError::OtherNode {
            found, expected, ..
        } => {
            assert_eq!((found.as_str(), expected.as_str()), ("s1", "s2"));
        }
        other => panic!("another node's directory, not {other:?}"),
    }
    let mut other_cluster = persistence(dir.path(), FsyncPolicy::Always);
    other_cluster.cluster = "members s1#1,s2#2 vnodes 16 replication-factor 2".into();
    let error = open_with(3, &other_cluster).unwrap_err();
    assert!(
        matches!(&error, DurabilityError::OtherCluster { expected, .. } if *expected == other_cluster.cluster),
        "{error:?}"
    );
    assert_eq!(contents(dir.path()), before);
}

#[test]
fn a_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let error = open_with(3, &persistence(dir.path(), FsyncPolicy::Always)).unwrap_err();
    assert!(
        matches!(&error, DurabilityError::InUse { dir: busy, .. } if busy == dir.path()),
        "{error:?}"
    );
    drop(first);
    open(dir.path());
}

#[test]
fn an_unreadable_identity_or_unknown_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fill(&open(dir.path()));
    fs::write(dir.path().join("IDENTITY"), "hello").unwrap();
    let identity = dir.path().join("IDENTITY");
    corrupt_reason(open_error(dir.path()), "identity file", &identity);

    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("wal-x.log"), "").unwrap();
    match open_error(dir.path()) {
        DurabilityError::UnknownFile { name, .. } => assert_eq!(name, "wal-x.log"),
        other => panic!("an unknown file, not {other:?}"),
    }
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
