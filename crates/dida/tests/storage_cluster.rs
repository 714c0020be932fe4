//! The storage service as real processes on loopback: 5 `dida storage` nodes,
//! replication factor 3, driven through the client library.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dida_core::{Record, Version};
use dida_local_cluster::{ClusterSpec, LocalCluster};
use dida_storage_client::StorageClient;

mod support;
use support::{dida, eventually};

/// Every record of every node, by node id.
async fn all_records(
    cluster: &LocalCluster,
    client: &StorageClient,
) -> BTreeMap<String, Vec<Record>> {
    let mut all = BTreeMap::new();
    for id in cluster.ids() {
        all.insert(id.clone(), client.list(&id).await.expect("list"));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_lands_on_exactly_its_replicas() {
    let cluster = LocalCluster::start(
        dida(),
        ClusterSpec {
            anti_entropy_interval_ms: 200,
            ..ClusterSpec::default()
        },
    )
    .await
    .unwrap();
    let client = cluster.client().unwrap();
    let ids: Vec<String> = cluster.ids().collect();

    // Send each write to a different node: non-primaries must forward, not store.
    let mut written = BTreeMap::new();
    for i in 0..300 {
        let key = format!("key-{i}");
        let via = &ids[i % ids.len()];
        let version = client
            .write_via(via, &key, &format!("value-{i}"))
            .await
            .unwrap();
        assert_eq!(version.number, 1);
        let primary = cluster.membership().get(client.primary(&key)).unwrap();
        assert_eq!(
            version.replica, primary.replica,
            "{key} must be executed by its primary"
        );
        written.insert(key, version);
    }

    let holders = eventually(
        Duration::from_secs(30),
        "all replicas to converge",
        || async {
            let all = all_records(&cluster, &client).await;
            let mut holders: BTreeMap<&String, HashSet<String>> = BTreeMap::new();
            for (node, records) in &all {
                for record in records {
                    let (key, version) = written
                        .get_key_value(&record.key)
                        .expect("only written keys exist");
                    assert_eq!(record.version, *version);
                    holders.entry(key).or_default().insert(node.clone());
                }
            }
            let converged = written.keys().all(|key| {
                let expected: HashSet<String> =
                    client.replicas(key).into_iter().map(String::from).collect();
                holders.get(key).is_some_and(|h| h.is_superset(&expected))
            });
            converged.then_some(
                holders
                    .into_iter()
                    .map(|(k, v)| (k.clone(), v))
                    .collect::<BTreeMap<_, _>>(),
            )
        },
    )
    .await;

    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for (key, nodes) in &holders {
        let expected: HashSet<String> =
            client.replicas(key).into_iter().map(String::from).collect();
        assert_eq!(expected.len(), 3);
        assert_eq!(
            nodes, &expected,
            "{key} must be held by exactly its 3 replicas"
        );
        for node in nodes {
            *per_node.entry(node.clone()).or_default() += 1;
        }
    }
    println!("keys held per node (300 keys x 3 replicas): {per_node:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_do_not_see_a_write_before_the_gossip_delay() {
    const DELAY_MS: u64 = 1500;
    let cluster = LocalCluster::start(
        dida(),
        ClusterSpec {
            gossip_delays_ms: vec![DELAY_MS; 5],
            anti_entropy_interval_ms: 200,
            ..ClusterSpec::default()
        },
    )
    .await
    .unwrap();
    let client = Arc::new(cluster.client().unwrap());

    for key in ["delayed-a", "delayed-b", "delayed-c"] {
        let started = Instant::now();
        let version = client.write(key, "v").await.unwrap();
        let primary = client.primary(key).to_string();
        assert!(client
            .read_from(&primary, key, Some(version))
            .await
            .unwrap()
            .is_some());
        let others: Vec<String> = client.replicas(key)[1..]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut watchers = Vec::new();
        for replica in others {
            let client = client.clone();
            watchers.push(tokio::spawn(async move {
                let seen_after = eventually(
                    Duration::from_secs(20),
                    "gossip to reach the replica",
                    || {
                        let (client, replica) = (client.clone(), replica.clone());
                        async move {
                            let found = client
                                .read_from(&replica, key, Some(version))
                                .await
                                .unwrap();
                            found.map(|_| started.elapsed())
                        }
                    },
                )
                .await;
                (replica, seen_after)
            }));
        }
        for watcher in watchers {
            let (replica, seen_after) = watcher.await.unwrap();
            println!("{key}: replica {replica} first saw the write after {seen_after:?}");
            assert!(
                seen_after >= Duration::from_millis(DELAY_MS),
                "{replica} saw {key} after {seen_after:?}, before the {DELAY_MS} ms gossip delay"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cas_increments_are_totally_ordered() {
    const CLIENTS: usize = 16;
    const ATTEMPTS: usize = 40;
    let cluster = LocalCluster::start(dida(), ClusterSpec::default())
        .await
        .unwrap();
    let setup = cluster.client().unwrap();
    setup.write("counter", "0").await.unwrap();
    let primary = setup.primary("counter").to_string();

    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        // Each task is its own client with its own connections.
        let client = cluster.client().unwrap();
        let primary = primary.clone();
        tasks.push(tokio::spawn(async move {
            let mut successes = Vec::new();
            for _ in 0..ATTEMPTS {
                let current = client
                    .read_from(&primary, "counter", None)
                    .await
                    .unwrap()
                    .unwrap();
                let old: u64 = current.value.parse().unwrap();
                let new = (old + 1).to_string();
                if let Some(version) = client
                    .update_if_value_is("counter", &current.value, &new)
                    .await
                    .unwrap()
                {
                    successes.push((old, version));
                }
            }
            successes
        }));
    }
    let mut successes: Vec<(u64, Version)> = Vec::new();
    for task in tasks {
        successes.extend(task.await.unwrap());
    }
    let final_value: u64 = setup
        .read_from(&primary, "counter", None)
        .await
        .unwrap()
        .unwrap()
        .value
        .parse()
        .unwrap();
    println!(
        "{} successful CAS out of {} attempts",
        successes.len(),
        CLIENTS * ATTEMPTS
    );
    assert!(!successes.is_empty());
    assert_eq!(
        final_value,
        successes.len() as u64,
        "every successful CAS is counted exactly once"
    );
    let olds: HashSet<u64> = successes.iter().map(|(old, _)| *old).collect();
    assert_eq!(
        olds.len(),
        successes.len(),
        "no two CAS may succeed from the same old value"
    );
    let versions: HashSet<Version> = successes.iter().map(|(_, v)| *v).collect();
    assert_eq!(
        versions.len(),
        successes.len(),
        "every successful CAS has its own version"
    );

    // And every replica converges on the final value.
    for replica in setup.replicas("counter") {
        eventually(
            Duration::from_secs(20),
            "replicas to converge on the counter",
            || async {
                let record = setup.read_from(replica, "counter", None).await.unwrap()?;
                (record.value == final_value.to_string()).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_acks_make_a_write_visible_on_every_replica_when_acknowledged() {
    let cluster = LocalCluster::start(
        dida(),
        ClusterSpec {
            write_acks: 3,
            // Long enough that anything seen at once must have been replicated before
            // the acknowledgement.
            gossip_delays_ms: vec![300; 5],
            ..ClusterSpec::default()
        },
    )
    .await
    .unwrap();
    let client = cluster.client().unwrap();
    for i in 0..20 {
        let key = format!("acked-{i}");
        let started = Instant::now();
        let version = client.write(&key, "durable").await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "acks wait for the gossip delay"
        );
        for replica in client.replicas(&key) {
            let record = client
                .read_from(replica, &key, Some(version))
                .await
                .unwrap();
            assert!(
                record.is_some(),
                "{replica} lacks acknowledged write {key}@{version}"
            );
        }
    }
}
