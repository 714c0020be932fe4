//! Durable storage nodes with real processes (docs/durability.md): a 3-node
//! cluster with `--data-dir` per node, `--fsync always` and `--write-acks 2`,
//! written to concurrently, SIGKILLed all at once and restarted on the same
//! directories. Every acknowledged write must come back with its value and
//! version, and the cluster must serve again within 10 s.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dida_bench::durable_cluster::{DurableCluster, DurableSpec};
use dida_core::Version;
use tokio::task::JoinSet;

mod support;
use support::{dida, eventually};

/// Writers running at once.
const WRITERS: usize = 8;
/// Acknowledged writes to wait for before the crash.
const ACKED_BEFORE_CRASH: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_a_crash_of_every_node() {
    let root = tempfile::tempdir().unwrap();
    let mut cluster = DurableCluster::start(
        dida(),
        DurableSpec {
            nodes: 3,
            replication_factor: 3,
            write_acks: 2,
            gossip_delay_ms: 0,
            fsync: "always".into(),
            root: root.path().to_path_buf(),
        },
    )
    .await
    .expect("the durable cluster starts");
    let client = Arc::new(cluster.client().unwrap());

    // Each write has a key of its own, so max_versions never discards one.
    let acked: Arc<Mutex<Vec<(String, String, Version)>>> = Arc::default();
    let mut writers = JoinSet::new();
    for w in 0..WRITERS {
        let (client, acked) = (client.clone(), acked.clone());
        writers.spawn(async move {
            for n in 0.. {
                let (key, value) = (format!("w{w}-{n}"), format!("value {w}/{n}"));
                if let Ok(version) = client.write(&key, &value).await {
                    acked.lock().unwrap().push((key, value, version));
                }
            }
        });
    }
    eventually(
        Duration::from_secs(30),
        "writes to be acknowledged",
        || async { (acked.lock().unwrap().len() >= ACKED_BEFORE_CRASH).then_some(()) },
    )
    .await;
    cluster.kill_all().await.expect("every node is SIGKILLed");
    writers.abort_all();
    while writers.join_next().await.is_some() {}
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "{} writes acknowledged before every node was killed",
        acked.len()
    );

    let restarted_at = Instant::now();
    cluster
        .start_all(Duration::from_secs(10))
        .await
        .expect("the nodes restart on their data directories");
    let client = cluster.client().unwrap();
    let served = eventually(
        Duration::from_secs(10),
        "a write after the restart",
        || async { client.write("after-restart", "x").await.ok() },
    )
    .await;
    eprintln!(
        "the cluster served a write {:?} after the restart (version {served})",
        restarted_at.elapsed()
    );
    assert!(restarted_at.elapsed() < Duration::from_secs(10));

    // Right after the restart, before anti-entropy could repair anything: the
    // primary holds every write it acknowledged, and --write-acks 2 replicas do.
    for (key, value, version) in &acked {
        let primary = client.primary(key).to_string();
        let record = client
            .read_from(&primary, key, Some(*version))
            .await
            .expect("the primary answers")
            .unwrap_or_else(|| panic!("{primary} lost acknowledged {key}@{version}"));
        assert_eq!(&record.value, value, "{key}@{version}");
        let mut holders = 0;
        for replica in client.replicas(key) {
            let held = client.read_from(replica, key, Some(*version)).await;
            if matches!(held, Ok(Some(ref r)) if r.value == *value) {
                holders += 1;
            }
        }
        assert!(
            holders >= 2,
            "{key}@{version} is held by {holders} replica(s)"
        );
    }
}
