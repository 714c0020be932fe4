//! Storage-node crashes with real processes (SPEC §2.5): 5 `dida storage` nodes,
//! replication factor 3, nodes SIGKILLed. The survivors must detect the crash, the
//! next replica must take over the crashed primary's keys without breaking the total
//! order of writes, and the replication factor must be restored.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dida_core::Version;
use dida_local_cluster::{ClusterSpec, LocalCluster};
use dida_proto::convert::storage_state;
use dida_proto::storage::Liveness;
use dida_storage_client::StorageClient;

mod support;
use support::{dida, eventually};

/// A cluster whose writes are acknowledged by 2 replicas, so none is lost to one crash.
async fn cluster() -> LocalCluster {
    LocalCluster::start(
        dida(),
        ClusterSpec {
            write_acks: 2,
            anti_entropy_interval_ms: 200,
            ..ClusterSpec::default()
        },
    )
    .await
    .expect("cluster starts")
}

/// SIGKILLs `victim` and waits until every other live node lists it as failed;
/// returns how long each took to learn it (the detection time).
async fn crash_and_detect(
    cluster: &mut LocalCluster,
    client: &StorageClient,
    victim: &str,
    already_failed: &[&str],
) -> Vec<Duration> {
    cluster.kill(victim).await.expect("kill");
    let crashed_at = Instant::now();
    let survivors: Vec<String> = cluster
        .ids()
        .filter(|id| id != victim && !already_failed.contains(&id.as_str()))
        .collect();
    let mut detection = Vec::new();
    for node in &survivors {
        eventually(
            Duration::from_secs(20),
            &format!("{node} to declare {victim} failed"),
            || async {
                let status = client.status(node).await.ok()?;
                status.failed.iter().any(|f| f == victim).then_some(())
            },
        )
        .await;
        detection.push(crashed_at.elapsed());
    }
    detection
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_replica_takes_over_a_crashed_primary_in_order() {
    let mut cluster = cluster().await;
    let client = cluster.client().unwrap();
    let key = "account";
    let primary = client.primary(key).to_string();
    let replicas: Vec<String> = client.replicas(key).iter().map(|r| r.to_string()).collect();

    // A history of writes and conditional updates led by the original primary.
    let mut versions: Vec<Version> = vec![client.write(key, "0").await.unwrap()];
    for n in 0..5 {
        let version = client
            .update_if_value_is(key, &n.to_string(), &(n + 1).to_string())
            .await
            .unwrap()
            .expect("the only writer's CAS succeeds");
        versions.push(version);
    }

    let detection = crash_and_detect(&mut cluster, &client, &primary, &[]).await;
    eprintln!("detection times after SIGKILL of {primary}: {detection:?}");

    // The client learns the crash and goes to the next replica, which pulls the
    // key's versions first: the CAS compares against "5", the last acknowledged value.
    let next = client
        .update_if_value_is(key, "5", "6")
        .await
        .expect("the next primary serves the CAS")
        .expect("it compares against the last acknowledged value");
    versions.push(next);
    assert_eq!(client.primary(key), replicas[1], "the next replica leads");
    assert!(
        versions.windows(2).all(|pair| pair[0] < pair[1]),
        "versions keep increasing across the takeover: {versions:?}"
    );
    assert_eq!(
        client.update_if_value_is(key, "5", "7").await.unwrap(),
        None,
        "a CAS from a value already replaced fails"
    );

    // Every live replica in the new view (one of them new) ends with the newest value.
    let new_replicas: Vec<String> = client.replicas(key).iter().map(|r| r.to_string()).collect();
    assert!(!new_replicas.contains(&primary));
    assert_eq!(new_replicas.len(), 3);
    for replica in &new_replicas {
        eventually(
            Duration::from_secs(20),
            &format!("{replica} to hold version {next}"),
            || async {
                let record = client.read_from(replica, key, None).await.ok()??;
                (record.version == next && record.value == "6").then_some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_is_restored_and_two_crashes_lose_no_acknowledged_write() {
    let mut cluster = cluster().await;
    let client = cluster.client().unwrap();
    let mut acknowledged: BTreeMap<String, (Version, String)> = BTreeMap::new();
    for i in 0..150 {
        let (key, value) = (format!("key-{i}"), format!("value-{i}"));
        let version = client
            .write(&key, &value)
            .await
            .expect("write acknowledged");
        acknowledged.insert(key, (version, value));
    }

    // First crash; then every key must be back on 3 live replicas, the new view's.
    let detection = crash_and_detect(&mut cluster, &client, "s1", &[]).await;
    eprintln!("detection times after SIGKILL of s1: {detection:?}");
    assert!(client.refresh_view().await, "the client learns the crash");
    assert_eq!(client.failed(), ["s1"]);
    assert_every_key_on_its_replicas(&client, &acknowledged).await;

    // Second crash, after re-replication: nothing acknowledged is lost.
    crash_and_detect(&mut cluster, &client, "s3", &["s1"]).await;
    client.refresh_view().await;
    assert_eq!(client.failed(), ["s1", "s3"]);
    for (key, (version, value)) in &acknowledged {
        let record = client
            .read(key, None)
            .await
            .expect("read after two crashes")
            .unwrap_or_else(|| panic!("{key} lost after two crashes"));
        assert_eq!((&record.version, &record.value), (version, value), "{key}");
    }
    assert_every_key_on_its_replicas(&client, &acknowledged).await;

    // Writes go on, led by the survivors.
    client.write("key-0", "after-two-crashes").await.unwrap();
}

/// Waits until every key of `expected` is held, at its acknowledged version, by
/// each of its replicas in the client's current view — and by no other live node.
async fn assert_every_key_on_its_replicas(
    client: &StorageClient,
    expected: &BTreeMap<String, (Version, String)>,
) {
    let failed = client.failed();
    let live: Vec<String> = client
        .membership()
        .ids()
        .filter(|id| !failed.iter().any(|f| f == id))
        .map(str::to_string)
        .collect();
    eventually(
        Duration::from_secs(30),
        "re-replication onto the live replicas",
        || async {
            let mut holders: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for node in &live {
                for record in client.list(node).await.ok()? {
                    if expected.get(&record.key).map(|(v, _)| *v) == Some(record.version) {
                        holders.entry(record.key).or_default().push(node.clone());
                    }
                }
            }
            expected
                .keys()
                .all(|key| {
                    let mut want: Vec<String> =
                        client.replicas(key).iter().map(|r| r.to_string()).collect();
                    want.sort();
                    holders.get(key) == Some(&want)
                })
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_entropy_on_a_converged_store_costs_digests_not_data() {
    let cluster = cluster().await;
    let client = cluster.client().unwrap();
    let value = "v".repeat(100);
    for i in 0..1000 {
        client.write(&format!("key-{i}"), &value).await.unwrap();
    }
    // Converged: every node holds its 3-replica share (3000 records in all).
    eventually(Duration::from_secs(30), "replicas to converge", || async {
        let mut total = 0;
        for id in cluster.ids() {
            total += client.status(&id).await.ok()?.records;
        }
        (total == 3000).then_some(())
    })
    .await;
    let stats = |status: dida_proto::storage::StatusReply| status.replication.unwrap();
    let before = stats(client.status("s1").await.unwrap());
    let after = eventually(Duration::from_secs(30), "five more rounds", || async {
        let now = stats(client.status("s1").await.ok()?);
        (now.anti_entropy_rounds >= before.anti_entropy_rounds + 5).then_some(now)
    })
    .await;
    let rounds = after.anti_entropy_rounds - before.anti_entropy_rounds;
    let sent = (after.anti_entropy_bytes_sent - before.anti_entropy_bytes_sent) / rounds;
    let received =
        (after.anti_entropy_bytes_received - before.anti_entropy_bytes_received) / rounds;
    let held = client.status("s1").await.unwrap().records * 100;
    eprintln!(
        "anti-entropy on a converged store: {sent} bytes sent and {received} received per \
         round; s1 holds {held} bytes of values"
    );
    assert_eq!(received, 0, "digests agree: the reply is empty");
    assert!(
        sent * 10 < held,
        "a round ({sent} B) costs a small fraction of the data ({held} B)"
    );
    assert_eq!(
        after.records_repaired, before.records_repaired,
        "nothing to repair"
    );
}

/// Sends `signal` (`STOP` or `CONT`) to process `pid` with the system's `kill`.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// A node paused (SIGSTOP) for longer than the suspicion timeout is declared failed
/// by the others; resumed (SIGCONT), it learns so from its first probe, fences
/// itself, and every status says so — `Status`, `dida kv status` — rather than
/// showing a live node that serves nothing (D2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_declared_failed_fences_itself_then_rejoins_as_a_new_incarnation() {
    let cluster = cluster().await;
    let client = cluster.client().unwrap();
    let ids: Vec<String> = cluster.ids().collect();
    let victim = ids[1].clone();
    let before = client.status(&victim).await.unwrap().incarnation;
    let pid = cluster.pids()[1];
    signal(pid, "STOP");
    for node in ids.iter().filter(|id| **id != victim) {
        eventually(
            Duration::from_secs(20),
            &format!("{node} to declare the paused {victim} failed"),
            || async {
                let status = client.status(node).await.ok()?;
                status.failed.contains(&victim).then_some(())
            },
        )
        .await;
    }
    signal(pid, "CONT");
    // On its first probe it hears it was declared failed: it fences itself, drops
    // what it held, and rejoins as a new incarnation that every node counts alive.
    eventually(
        Duration::from_secs(20),
        &format!("the resumed {victim} to rejoin as a new incarnation"),
        || async {
            let status = client.status(&victim).await.ok()?;
            let incarnation = status.incarnation;
            (incarnation > before && storage_state(&status) == "alive").then_some(())?;
            for node in &ids {
                let view = client.status(node).await.ok()?.view;
                let seen = view.iter().find(|m| m.id == victim)?;
                (seen.incarnation == incarnation && seen.liveness == Liveness::Alive as i32)
                    .then_some(())?;
            }
            Some(())
        },
    )
    .await;
    let output = tokio::process::Command::new(dida())
        .args([
            "kv",
            "--peers",
            cluster.peers(),
            "status",
            "--server",
            &victim,
        ])
        .output()
        .await
        .expect("run dida kv status");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(text.contains(" alive "), "{text}");
    assert!(text.contains("\"incarnation\""), "{text}");
    // It leads its keys again.
    client.refresh_view().await;
    let replica = cluster.membership().get(&victim).unwrap().replica;
    let led: Vec<String> = (0..200)
        .map(|i| format!("after-pause-{i}"))
        .filter(|k| client.primary(k) == victim)
        .take(5)
        .collect();
    for key in &led {
        let version = client.write(key, "v").await.expect("write");
        assert_eq!(version.replica, replica, "{key} executed by its primary");
    }
}
