//! Storage nodes joining a running cluster (issue 25), with real processes on
//! loopback: three nodes under concurrent writers and a compare-and-swap counter
//! (`--write-acks 2`) grow to five with `dida storage --join` and shrink to four
//! with `dida cluster remove`, losing no acknowledged write, every key at rest on
//! exactly its replicas, each join moving about its fair share of the records;
//! bad joins — an id in use, an address in use, another cluster, another ring,
//! a join while another change is in motion — are refused with their reason and
//! change nothing.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use dida_local_cluster::{free_ports, ClusterSpec, LocalCluster};
use dida_settings::{RoleSettings, StorageSettings};
use dida_storage_client::{ClientConfig, StorageClient};
use tokio::process::Command;

mod support;
use support::{
    cluster_members, dida, dida_cluster, eventually, member_state, misplaced_keys, stderr, stdout,
    Load, LoadOutcome,
};

const REPLICATION_FACTOR: usize = 3;
const WRITE_ACKS: usize = 2;

/// A cluster of `nodes` storage nodes, and `spare` more (named after them) that
/// may join later.
async fn cluster(nodes: usize, spare: usize) -> LocalCluster {
    let cluster = LocalCluster::start(
        dida(),
        ClusterSpec {
            nodes,
            spare,
            replication_factor: REPLICATION_FACTOR,
            write_acks: WRITE_ACKS,
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

/// How long a join may take to catch up and finish.
const JOIN_LIMIT: Duration = Duration::from_secs(120);

/// The settings of a new storage node `id` on a free port joining through the
/// nodes at `seeds`, with the cluster's replication settings.
fn joining(id: &str, seeds: &[String]) -> StorageSettings {
    let url = format!("http://127.0.0.1:{}", free_ports(1).unwrap()[0]);
    let mut settings = StorageSettings::joining(id, &url, seeds).expect("valid settings");
    settings.replication_factor = Some(REPLICATION_FACTOR);
    settings.write_acks = WRITE_ACKS;
    settings
}

/// Runs `dida storage` with `settings` (a join the cluster refuses) to its end.
async fn refused_join(settings: &StorageSettings) -> std::process::Output {
    Command::new(dida())
        .args(settings.to_args())
        .output()
        .await
        .expect("dida storage runs")
}

/// Starts spare node `id` with `--join` to the nodes `seeds`, and waits until the
/// cluster lists it active: it caught up, entered the ring and finished its join.
async fn join(cluster: &mut LocalCluster, id: &str, seeds: &[&str]) {
    let members = cluster.members().unwrap();
    let seeds: Vec<String> = seeds
        .iter()
        .map(|seed| members.get(seed).unwrap().url.to_string())
        .collect();
    cluster.join(id, &seeds, JOIN_LIMIT).await.unwrap();
    cluster.wait_active(id, JOIN_LIMIT).await.unwrap();
}

/// A routing client for every storage node the cluster started, joined ones too.
fn client_of(cluster: &LocalCluster) -> StorageClient {
    StorageClient::new(
        cluster.members().unwrap(),
        ClientConfig {
            replication_factor: REPLICATION_FACTOR,
            deadline: Duration::from_secs(5),
            ..ClientConfig::default()
        },
    )
    .unwrap()
}

/// Waits until every key the nodes `ids` hold is on exactly its replicas (and
/// the number of keys is in `keys`); returns how many keys each node then holds.
async fn at_rest(
    client: &StorageClient,
    ids: &[&str],
    keys: RangeInclusive<usize>,
) -> BTreeMap<String, u64> {
    client.refresh_view().await;
    eventually(
        Duration::from_secs(60),
        "exactly 3 copies of every key",
        || {
            let keys = &keys;
            async move {
                let (misplaced, held) = misplaced_keys(client, ids, REPLICATION_FACTOR).await?;
                (misplaced == 0 && keys.contains(&held)).then_some(())
            }
        },
    )
    .await;
    let mut records = BTreeMap::new();
    for id in ids {
        records.insert(id.to_string(), client.status(id).await.unwrap().keys);
    }
    records
}

/// Checks that node `id`, just joined to a cluster of `nodes`, holds about its
/// share of the `keys` written so far (`RF × keys / nodes`), at most 1.5 times.
async fn joined_share(client: &StorageClient, id: &str, nodes: usize, keys: usize) {
    let held = client.status(id).await.unwrap().keys;
    let ideal = (REPLICATION_FACTOR * keys) as f64 / nodes as f64;
    eprintln!(
        "{id} joined holding {held} keys of {keys}: {:.2}x its ideal share {ideal:.0}",
        held as f64 / ideal
    );
    assert!(
        held as f64 <= 1.5 * ideal,
        "{id} holds {held}, ideal {ideal}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_grow_to_five_and_shrink_to_four_under_load_losing_nothing() {
    let mut cluster = cluster(3, 2).await;
    let first_peers = cluster.peers().to_string();
    let client = Arc::new(cluster.client().unwrap());

    // 10,000 keys before the changes, written by 8 tasks at once.
    let preload: Vec<_> = (0..8)
        .map(|task| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut written = BTreeMap::new();
                for n in (task..10_000).step_by(8) {
                    let (key, value) = (format!("pre-{n}"), format!("pre value {n}"));
                    client.write(&key, &value).await.expect("a preload write");
                    written.insert(key, value);
                }
                written
            })
        })
        .collect();
    let mut acknowledged = BTreeMap::new();
    for task in preload {
        acknowledged.extend(task.await.unwrap());
    }
    client.write("counter", "0").await.unwrap();

    // Two writers and a compare-and-swap counter run through every change.
    let load = Load::start(&client);
    let keys_so_far = || acknowledged.len() + 1 + load.acknowledged();

    // s4 joins, then s5: each a two-epoch change, decided then finished. Once
    // active, each holds what it caught up: about its share of every key's 3
    // copies among 4 (then 5) nodes — consistent hashing moves no more.
    join(&mut cluster, "s4", &["s1", "s2", "s3"]).await;
    assert_eq!(cluster_members(&first_peers).await["epoch"], 2);
    joined_share(&client_of(&cluster), "s4", 4, keys_so_far()).await;
    join(&mut cluster, "s5", &["s2", "s3"]).await;
    assert_eq!(cluster_members(&first_peers).await["epoch"], 4);
    joined_share(&client_of(&cluster), "s5", 5, keys_so_far()).await;
    // Then s1 leaves.
    let removal = dida_cluster(&first_peers, &["remove", "s1"]).await;
    assert!(
        removal.status.success(),
        "remove: {}{}",
        stdout(&removal),
        stderr(&removal)
    );
    let LoadOutcome {
        acknowledged: during,
        failed,
        increments,
        unknown,
    } = load.stop().await;
    let during_count = during.len();
    acknowledged.extend(during);
    eprintln!("{during_count} writes and {increments} increments acknowledged during the changes");
    assert!(
        during_count > 0 && increments > 0,
        "the load ran through the changes"
    );
    for id in ["s4", "s5"] {
        assert!(
            cluster.try_wait(id).unwrap().is_none(),
            "{id} is still running"
        );
    }

    // The configuration: s1 removed, s2..s5 alive, epoch 6 (two per change).
    let after = cluster_members(&first_peers).await;
    assert_eq!(after["epoch"], 6, "{after}");
    assert_eq!(member_state(&after, "s1"), "removed", "{after}");
    for id in ["s2", "s3", "s4", "s5"] {
        assert_eq!(member_state(&after, id), "alive", "{after}");
    }

    // Nothing acknowledged is lost, and the counter counted every increment,
    // read through a client that knows the grown membership.
    let grown = client_of(&cluster);
    grown.refresh_view().await;
    for (key, value) in &acknowledged {
        let read = grown
            .read(key, None)
            .await
            .expect("a read after the changes");
        assert_eq!(read.map(|r| r.value).as_ref(), Some(value), "{key}");
    }
    let counted: u64 = grown
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

    // At rest every key is on exactly its three replicas among s2..s5, and each
    // node holds about its share: 3 copies of every key spread over 4 nodes.
    // Every acknowledged key, the counter, and perhaps keys of failed writes.
    let keys = acknowledged.len() + 1..=acknowledged.len() + 1 + failed;
    let records = at_rest(&grown, &["s2", "s3", "s4", "s5"], keys).await;
    let total: u64 = records.values().sum();
    assert_eq!(total % REPLICATION_FACTOR as u64, 0, "{records:?}");
    for (id, held) in &records {
        let share = *held as f64 / (total as f64 / 4.0);
        eprintln!("{id} holds {held} keys: {share:.2}x its ideal share");
        assert!(
            (0.5..=1.5).contains(&share),
            "{id}: {share:.2}x {records:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_moves_about_its_share_and_bad_joins_are_refused() {
    let mut cluster = cluster(4, 1).await;
    let peers = cluster.peers().to_string();
    let seeds: Vec<String> = cluster
        .membership()
        .members()
        .iter()
        .map(|m| m.url.to_string())
        .collect();
    let client = cluster.client().unwrap();
    for n in 0..2000 {
        client
            .write(&format!("key-{n}"), &"v".repeat(100))
            .await
            .unwrap();
    }
    let before = at_rest(&client, &["s1", "s2", "s3", "s4"], 2000..=2000).await;
    let total: u64 = before.values().sum();

    // Bad joins: each refused with its reason, the process exits with an error.
    let s2_url = cluster.membership().get("s2").unwrap().url.to_string();
    type Change<'a> = Box<dyn Fn(&mut StorageSettings) + 'a>;
    let cases: Vec<(&str, Change, &str)> = vec![
        ("s2", Box::new(|_| {}), "already used"),
        (
            "s9",
            Box::new(|s| s.url = s2_url.clone()),
            "address of member \"s2\"",
        ),
        (
            "s9",
            Box::new(|s| s.cluster_id = Some("another".into())),
            "another cluster",
        ),
        ("s9", Box::new(|s| s.vnodes = 64), "--vnodes 128"),
    ];
    for (id, change, expected) in cases {
        let mut settings = joining(id, &seeds);
        change(&mut settings);
        let output = refused_join(&settings).await;
        assert!(!output.status.success(), "{expected}: joined");
        assert!(
            stderr(&output).contains(expected),
            "{expected}: {}",
            stderr(&output)
        );
    }
    // A second change while one is in motion: s4, paused, cannot finish leaving.
    cluster.pause("s4").unwrap();
    let removal = dida_cluster(&peers, &["remove", "s4", "--no-wait"]).await;
    assert!(removal.status.success(), "{}", stderr(&removal));
    let output = refused_join(&joining("s9", &seeds[..3])).await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("in progress"),
        "{}",
        stderr(&output)
    );
    cluster.resume("s4").unwrap();
    eventually(Duration::from_secs(60), "s4 to leave", || {
        let peers = peers.clone();
        async move { (member_state(&cluster_members(&peers).await, "s4") == "removed").then_some(()) }
    })
    .await;
    assert_eq!(
        cluster_members(&peers).await["epoch"],
        2,
        "the refusals changed nothing"
    );

    // A good join now: it receives about its share and nothing else moves.
    join(&mut cluster, "s5", &["s1", "s2", "s3"]).await;
    assert_eq!(cluster_members(&peers).await["epoch"], 4);
    let grown = client_of(&cluster);
    let after = at_rest(&grown, &["s1", "s2", "s3", "s5"], 2000..=2000).await;
    let moved = after["s5"];
    let ideal = total as f64 / 4.0;
    eprintln!(
        "the join moved {moved} keys ({} bytes of values): {:.2}x the ideal {ideal:.0}",
        moved * 100,
        moved as f64 / ideal
    );
    assert!(moved as f64 <= 1.5 * ideal, "moved {moved}, ideal {ideal}");
    assert!(cluster.try_wait("s5").unwrap().is_none(), "s5 runs");
}
