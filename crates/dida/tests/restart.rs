//! Restarting storage nodes of a [`LocalCluster`]: a restarted node runs exactly its
//! original command line, answers at the same URL, and reaches (and is reached by)
//! its peers through the same partition proxies.

use std::time::Duration;

use dida_local_cluster::{ClusterSpec, LocalCluster};
use dida_proto::storage::Liveness;
use dida_storage_client::StorageClient;

mod support;
use support::{dida, eventually};

const RESTART_LIMIT: Duration = Duration::from_secs(10);

/// The arguments of live process `pid` after its binary, from `/proc/PID/cmdline`.
fn args_of(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|arg| !arg.is_empty())
        .skip(1)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

async fn partitionable(nodes: usize, write_acks: usize) -> LocalCluster {
    LocalCluster::start(
        dida(),
        ClusterSpec {
            nodes,
            write_acks,
            anti_entropy_interval_ms: 200,
            partitionable: true,
            ..ClusterSpec::default()
        },
    )
    .await
    .expect("cluster starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_runs_its_original_command_line_behind_the_same_proxies() {
    // Three nodes, R = 3 and every write acknowledged by all three replicas: a write
    // succeeds only if the nodes reach each other through their links.
    let mut cluster = partitionable(3, 3).await;
    let client = cluster.client().unwrap();
    let original = cluster.storage_args("s1").unwrap().to_vec();
    assert!(
        original.iter().any(|a| a.starts_with("--dial=")),
        "{original:?}"
    );
    let first = cluster.pid("s1").unwrap();
    assert_eq!(args_of(first), original);

    // Running: killed first, then started again, back before anyone declares it
    // failed.
    cluster.restart("s1", RESTART_LIMIT).await.unwrap();
    let second = cluster.pid("s1").unwrap();
    assert_ne!(second, first);
    assert_eq!(args_of(second), original, "the same command line");
    assert_eq!(cluster.storage_args("s1").unwrap(), original.as_slice());
    let status = client.status("s1").await.unwrap();
    assert_eq!(status.id, "s1");
    assert_eq!(status.members.len(), 3);
    // It joins (catches up) before it counts as a replica again.
    client
        .wait_until_all_alive(RESTART_LIMIT)
        .await
        .expect("s1 rejoins");
    for i in 0..20 {
        client
            .write(&format!("after-restart-{i}"), "v")
            .await
            .expect("a write acknowledged by all three replicas, s1 included");
    }

    // Killed: started again (nothing left to kill).
    cluster.kill("s1").await.unwrap();
    assert!(!cluster.is_running("s1").unwrap());
    cluster.restart("s1", RESTART_LIMIT).await.unwrap();
    assert!(cluster.is_running("s1").unwrap());
    assert_eq!(args_of(cluster.pid("s1").unwrap()), original);

    // The links still cut and heal the restarted node.
    cluster.cut("s2", "s1").unwrap();
    cluster.heal_all();
    assert!(cluster.restart("s9", RESTART_LIMIT).await.is_err());
}

/// Whether every node's view (as its `Status` reports it) has `id` alive at
/// `incarnation`, and `id` itself is alive (not joining, not fenced).
async fn alive_everywhere(
    client: &StorageClient,
    ids: &[String],
    id: &str,
    incarnation: u64,
) -> bool {
    for node in ids {
        let Ok(status) = client.status(node).await else {
            return false;
        };
        if status.fenced || status.liveness != Liveness::Alive as i32 {
            return false;
        }
        let seen = status.view.iter().find(|m| m.id == id);
        if !seen
            .is_some_and(|m| m.incarnation == incarnation && m.liveness == Liveness::Alive as i32)
        {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_after_it_was_declared_failed_rejoins_and_leads_its_keys_again() {
    let mut cluster = partitionable(5, 2).await;
    let client = cluster.client().unwrap();
    let ids: Vec<String> = cluster.ids().collect();
    // Keys s1 leads, with a history of writes and CAS before the crash.
    let keys: Vec<String> = (0..200)
        .map(|i| format!("k{i}"))
        .filter(|k| client.primary(k) == "s1")
        .take(5)
        .collect();
    assert_eq!(keys.len(), 5);
    for key in &keys {
        client.write(key, "0").await.unwrap();
        client
            .update_if_value_is(key, "0", "1")
            .await
            .unwrap()
            .unwrap();
    }
    let before = client.status("s1").await.unwrap().incarnation;

    cluster.kill("s1").await.unwrap();
    for node in &ids[1..] {
        eventually(
            Duration::from_secs(20),
            &format!("{node} to declare s1 failed"),
            || async {
                let status = client.status(node).await.ok()?;
                status.failed.iter().any(|f| f == "s1").then_some(())
            },
        )
        .await;
    }
    // The interim primaries take the keys over while s1 is down.
    let mut during = Vec::new();
    for key in &keys {
        during.push(
            client
                .update_if_value_is(key, "1", "2")
                .await
                .unwrap()
                .unwrap(),
        );
    }

    cluster.restart("s1", RESTART_LIMIT).await.unwrap();
    let restarted = std::time::Instant::now();
    let incarnation = client.status("s1").await.unwrap().incarnation;
    assert!(
        incarnation > before,
        "a restart announces a higher incarnation"
    );
    eventually(
        Duration::from_secs(10),
        "s1 alive at its new incarnation in every node's view",
        || async {
            alive_everywhere(&client, &ids, "s1", incarnation)
                .await
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "s1 alive everywhere {:?} after its restart",
        restarted.elapsed()
    );

    // It serves reads of what was written while it was down, and leads its keys
    // again: a CAS executed by s1 compares against the interim primary's value and
    // numbers its version above it.
    client.refresh_view().await;
    for (key, interim) in keys.iter().zip(&during) {
        let record = client.read_from("s1", key, None).await.unwrap().unwrap();
        assert_eq!(
            (record.value.as_str(), record.version),
            ("2", *interim),
            "{key}"
        );
        assert_eq!(client.primary(key), "s1");
        let version = client.update_if_value_is(key, "2", "3").await.unwrap();
        let version = version.expect("the CAS compares against the last acknowledged value");
        assert!(version > *interim, "{key}: {version} after {interim}");
        assert_eq!(
            version.replica,
            cluster.membership().get("s1").unwrap().replica
        );
    }
}
