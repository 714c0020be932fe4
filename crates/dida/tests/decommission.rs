//! Decommissioning storage nodes (issue 25), with real processes on loopback:
//! `dida cluster remove` under concurrent writers and a compare-and-swap counter
//! loses no acknowledged write, leaves every key on exactly its replicas among the
//! members that stay, and stops the removed node; bad requests — an unknown node,
//! another cluster, a second change while one is in motion, a removal below the
//! replication factor — are refused with their reason and change nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dida_local_cluster::{ClusterSpec, LocalCluster};
use serde_json::Value;

mod support;
use support::{
    cluster_members, dida, dida_cluster, eventually, member_state, misplaced_keys, stderr, stdout,
    Load, LoadOutcome,
};

const REPLICATION_FACTOR: usize = 3;

async fn cluster(nodes: usize) -> LocalCluster {
    let cluster = LocalCluster::start(
        dida(),
        ClusterSpec {
            nodes,
            replication_factor: REPLICATION_FACTOR,
            write_acks: 2,
            ..ClusterSpec::default()
        },
    )
    .await
    .expect("the cluster starts");
    cluster
        .client()
        .unwrap()
        .wait_until_all_alive(Duration::from_secs(30))
        .await
        .expect("the cluster settles");
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_hands_its_records_off_under_load_and_loses_nothing() {
    let mut cluster = cluster(5).await;
    let peers = cluster.peers().to_string();
    let client = Arc::new(cluster.client().unwrap());

    let before = cluster_members(&peers).await;
    assert_eq!(before["epoch"], 0);
    assert_eq!(member_state(&before, "s1"), "alive");

    let mut acknowledged = BTreeMap::new();
    for n in 0..1500 {
        let (key, value) = (format!("pre-{n}"), format!("pre value {n}"));
        client
            .write(&key, &value)
            .await
            .expect("a write before the change");
        acknowledged.insert(key, value);
    }
    client.write("counter", "0").await.unwrap();

    // Two writers and a compare-and-swap counter run through the whole change.
    let load = Load::start(&client);

    let removal = dida_cluster(&peers, &["remove", "s1", "--json"]).await;
    assert!(
        removal.status.success(),
        "remove: {}{}",
        stdout(&removal),
        stderr(&removal)
    );
    let events: Vec<Value> = stdout(&removal)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.first().unwrap()["state"], "leaving", "{events:?}");
    assert_eq!(events.last().unwrap()["state"], "removed", "{events:?}");

    let LoadOutcome {
        acknowledged: during,
        failed,
        increments,
        unknown,
    } = load.stop().await;
    let during_count = during.len();
    acknowledged.extend(during);
    eprintln!("{during_count} writes and {increments} increments acknowledged during the removal");
    assert!(
        during_count > 0 && increments > 0,
        "the load ran through the change"
    );

    // The removed node stops by itself, successfully.
    let status = eventually(Duration::from_secs(30), "s1 to stop", || {
        let status = cluster.try_wait("s1").unwrap();
        async move { status }
    })
    .await;
    assert!(status.success(), "s1 exited with {status}");
    let after = cluster_members(&peers).await;
    assert_eq!(after["epoch"], 2, "{after}");
    assert_eq!(member_state(&after, "s1"), "removed");
    for id in ["s2", "s3", "s4", "s5"] {
        assert_eq!(member_state(&after, id), "alive", "{after}");
    }
    // `dida kv status` tells a removed node from a failed one.
    let status = tokio::process::Command::new(dida())
        .args([
            "kv", "--peers", &peers, "status", "--server", "s1", "--json",
        ])
        .output()
        .await
        .unwrap();
    let status: Value = serde_json::from_str(stdout(&status).trim()).unwrap();
    assert_eq!(status["state"], "removed", "{status}");

    // Nothing acknowledged is lost, and the counter counted every increment.
    client.refresh_view().await;
    for (key, value) in &acknowledged {
        let read = client
            .read(key, None)
            .await
            .expect("a read after the removal");
        assert_eq!(read.map(|r| r.value).as_ref(), Some(value), "{key}");
    }
    let counted: u64 = client
        .read("counter", None)
        .await
        .unwrap()
        .expect("the counter")
        .value
        .parse()
        .unwrap();
    assert!(
        (increments..=increments + unknown).contains(&counted),
        "the counter reads {counted} after {increments} acknowledged increments \
         ({unknown} unknown): an increment was lost or applied twice"
    );

    // At rest every key is on exactly its three replicas among s2..s5.
    let remaining = ["s2", "s3", "s4", "s5"];
    let reported = AtomicBool::new(false);
    // Every acknowledged key, the counter, and perhaps keys of failed writes.
    let keys = acknowledged.len() + 1..=acknowledged.len() + 1 + failed;
    eventually(
        Duration::from_secs(30),
        "exactly 3 copies of every key",
        || {
            let (client, reported, keys) = (&client, &reported, &keys);
            async move {
                let (misplaced, held) =
                    misplaced_keys(client, &remaining, REPLICATION_FACTOR).await?;
                if !reported.swap(true, Ordering::Relaxed) {
                    eprintln!("{misplaced} of {held} keys misplaced at first");
                }
                (misplaced == 0 && keys.contains(&held)).then_some(())
            }
        },
    )
    .await;

    // Asking again, or for another cluster, is refused with the reason.
    for (args, expected) in [
        (vec!["remove", "s1"], "not a member"),
        (vec!["remove", "s9"], "not a member"),
        (
            vec!["remove", "s2", "--cluster-id", "another"],
            "meant for another cluster",
        ),
    ] {
        let output = dida_cluster(&peers, &args).await;
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    assert_eq!(
        cluster_members(&peers).await["epoch"],
        2,
        "refusals changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_change_at_a_time_and_never_below_the_replication_factor() {
    let cluster = cluster(4).await;
    let peers = cluster.peers().to_string();

    // s4 is paused: its removal is decided without it, but it cannot hand off
    // and finish leaving until it runs again.
    cluster.pause("s4").unwrap();
    let leaving = dida_cluster(&peers, &["remove", "s4", "--no-wait"]).await;
    assert!(leaving.status.success(), "{}", stderr(&leaving));
    assert!(
        stdout(&leaving).contains("s4 is leaving (epoch 1)"),
        "{}",
        stdout(&leaving)
    );
    let second = dida_cluster(&peers, &["remove", "s3"]).await;
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains("another membership change is in progress"),
        "{}",
        stderr(&second)
    );

    // (Asking to remove s4 again now could go either way: refused while it is
    // leaving, or finished at once by a node that has declared the paused s4
    // failed. The rule itself is tested in dida_core::cluster.)
    cluster.resume("s4").unwrap();
    eventually(Duration::from_secs(30), "s4 to be removed", || {
        let peers = peers.clone();
        async move { (member_state(&cluster_members(&peers).await, "s4") == "removed").then_some(()) }
    })
    .await;

    let below = dida_cluster(&peers, &["remove", "s3"]).await;
    assert!(!below.status.success());
    assert!(
        stderr(&below).contains("fewer than the replication factor 3"),
        "{}",
        stderr(&below)
    );
    let after = cluster_members(&peers).await;
    assert_eq!(after["epoch"], 2);
    assert_eq!(member_state(&after, "s3"), "alive");
}
