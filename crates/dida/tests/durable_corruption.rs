//! A durable node whose log was damaged where it had been synced, with real
//! processes (docs/durability.md, "A damaged data directory"): the node refuses to
//! start, naming the file, the offset and what it found, and changes nothing; its
//! directory moved aside, it starts empty, rejoins, and its replicas refill it
//! with every acknowledged write.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dida_core::Version;

mod support;
use support::{dida, durable_cluster, eventually};

/// Keys written (and acknowledged) before the damage.
const KEYS: usize = 150;

/// The newest log segment of data directory `dir`.
fn newest_segment(dir: &Path) -> PathBuf {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("wal-") && name.ends_with(".log")
        })
        .max()
        .expect("the data directory holds a log segment")
}

/// Every file of `dir` but `LOCK`, with its contents: to show nothing changed.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_synced_log_was_zeroed_refuses_to_start_then_rejoins_empty_losing_nothing() {
    let root = tempfile::tempdir().unwrap();
    let mut cluster = durable_cluster(3, root.path()).await;
    let client = cluster.client().unwrap();
    let mut acked: Vec<(String, String, Version)> = Vec::new();
    for n in 0..KEYS {
        let (key, value) = (format!("key-{n}"), format!("value {n}"));
        let version = client
            .write(&key, &value)
            .await
            .expect("the write is acked");
        acked.push((key, value, version));
    }

    // s1 crashes, and the second half of its newest segment turns to zeros: entries
    // it had synced before acknowledging them, which no crash takes back.
    cluster.kill("s1").await.unwrap();
    let dir = root.path().join("s1");
    let segment = newest_segment(&dir);
    let mut bytes = fs::read(&segment).unwrap();
    let half = bytes.len() / 2;
    bytes[half..].fill(0);
    fs::write(&segment, &bytes).unwrap();
    let before = contents(&dir);

    let mut command = tokio::process::Command::new(dida());
    command
        .args(cluster.storage_args("s1").unwrap())
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("s1 exits instead of starting on a damaged log")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("s1 on its damaged directory: {}\n{stderr}", output.status);
    assert!(!output.status.success());
    for expected in [
        format!("log segment {} is corrupt", segment.display()),
        format!("zero bytes from byte {half} to the end of the file"),
        "bytes were synced".to_string(),
        "nothing was changed".to_string(),
        "move the directory aside".to_string(),
    ] {
        assert!(stderr.contains(&expected), "{expected:?} missing: {stderr}");
    }
    assert_eq!(
        contents(&dir),
        before,
        "the refused start changed the directory"
    );

    // The operator's recovery: the directory moved aside, s1 starts empty.
    fs::rename(&dir, root.path().join("s1.damaged")).unwrap();
    cluster
        .start_stopped(Duration::from_secs(30))
        .await
        .expect("s1 starts empty and rejoins");

    // Every acknowledged write reads back from the cluster, and s1 (a replica of
    // every key with R = 3 of 3 nodes) is refilled with each of them.
    for (key, value, version) in &acked {
        let record = client
            .read(key, Some(*version))
            .await
            .expect("the cluster answers")
            .unwrap_or_else(|| panic!("acknowledged {key}@{version} was lost"));
        assert_eq!(&record.value, value, "{key}@{version}");
    }
    client.refresh_view().await;
    eventually(
        Duration::from_secs(30),
        "s1 to hold every acknowledged write again",
        || async {
            let held = client.list("s1").await.ok()?;
            acked
                .iter()
                .all(|(key, value, version)| {
                    held.iter()
                        .any(|r| &r.key == key && r.version == *version && &r.value == value)
                })
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "s1 refilled: all {} acknowledged writes back, 0 lost",
        acked.len()
    );
}
