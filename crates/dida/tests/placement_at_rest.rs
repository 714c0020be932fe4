//! Exactly the replicas hold a key at rest (invariant H2 of docs/protocols.md), with
//! real processes: five durable nodes (`--fsync always`, `--write-acks 2`) written
//! to right after they start, then one node SIGKILLed and restarted with writes
//! around it, then every node SIGKILLed and restarted. After each, every key ends on
//! exactly its 3 replicas — copies taken while the cluster formed or while a node
//! was out are handed off and dropped — and every acknowledged write reads back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dida_local_cluster::LocalCluster;
use dida_storage_client::StorageClient;

mod support;
use support::{durable_cluster, eventually, misplaced_keys};

/// Replicas per key in the durable cluster.
const REPLICATION_FACTOR: usize = 3;
/// How long the cluster has to hand off and drop extra copies.
const SETTLE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_ends_on_exactly_its_replicas_after_start_restart_and_a_whole_cluster_kill() {
    let root = tempfile::tempdir().unwrap();
    let mut cluster = durable_cluster(5, root.path()).await;
    let client = cluster.client().unwrap();
    let mut acknowledged = BTreeMap::new();

    // Right after the ports open: nodes are still joining one after another.
    write_keys(&client, "cold", 0..60, &mut acknowledged).await;
    settle(&cluster, &client, "writes right after a cold start").await;

    // Around a crash and rejoin: the interim replicas take s2's ranges meanwhile.
    write_keys(&client, "before", 0..30, &mut acknowledged).await;
    cluster.kill("s2").await.unwrap();
    write_keys(&client, "during", 0..30, &mut acknowledged).await;
    cluster
        .restart("s2", Duration::from_secs(30))
        .await
        .expect("s2 restarts on its data directory");
    settle(&cluster, &client, "a restart and rejoin").await;

    // Every node SIGKILLed at once and started again.
    write_keys(&client, "whole", 0..110, &mut acknowledged).await;
    cluster.kill_all().await.unwrap();
    cluster
        .start_stopped(Duration::from_secs(30))
        .await
        .expect("the nodes restart on their data directories");
    settle(&cluster, &client, "a whole-cluster kill -9 and restart").await;

    for (key, value) in &acknowledged {
        let read = eventually(
            Duration::from_secs(10),
            "a read after the restart",
            || async { client.read(key, None).await.ok() },
        )
        .await;
        assert_eq!(read.map(|r| r.value).as_ref(), Some(value), "{key}");
    }
}

/// Writes `prefix-n` for each `n`, keeping the acknowledged ones; most must be.
async fn write_keys(
    client: &StorageClient,
    prefix: &str,
    numbers: std::ops::Range<usize>,
    acknowledged: &mut BTreeMap<String, String>,
) {
    let wanted = numbers.len();
    let mut written = 0;
    for n in numbers {
        let (key, value) = (format!("{prefix}-{n}"), format!("{prefix} value {n}"));
        // A write whose outcome is unknown (a stream a kill just closed) is not
        // counted; a refused one is retried by the client itself.
        if client.write(&key, &value).await.is_ok() {
            acknowledged.insert(key, value);
            written += 1;
        }
    }
    assert!(
        written * 10 >= wanted * 9,
        "{written} of {wanted} {prefix} writes acknowledged"
    );
}

/// Waits until every key any node holds is held by exactly its replicas, printing
/// how far from it the cluster was at first.
async fn settle(cluster: &LocalCluster, client: &StorageClient, after: &str) {
    let ids: Vec<String> = cluster.ids().collect();
    let reported = AtomicBool::new(false);
    let (ids, reported) = (&ids, &reported);
    let what = format!("exactly {REPLICATION_FACTOR} copies per key after {after}");
    eventually(SETTLE, &what, move || async move {
        client.refresh_view().await;
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let (misplaced, keys) = misplaced_keys(client, &ids, REPLICATION_FACTOR).await?;
        if !reported.swap(true, Ordering::Relaxed) {
            eprintln!(
                "after {after}: {misplaced} of {keys} keys not on exactly their replicas at first"
            );
        }
        (misplaced == 0).then_some(())
    })
    .await;
}
