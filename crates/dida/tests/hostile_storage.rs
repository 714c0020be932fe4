//! The hostile-client cases against storage nodes, replayed on real processes on
//! loopback: each was once an outage or unbounded growth, and each test asserts the
//! fixed behaviour — the request refused or served within bounds, nothing changed,
//! the node still serving and never declared failed for load alone.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dida_local_cluster::{ClusterSpec, LocalCluster};
use dida_proto::connections::ConnectionLimits;
use dida_proto::storage::replication_client::ReplicationClient;
use dida_proto::storage::{Liveness, MemberView, ProbeRequest, PushRequest};
use dida_storage_client::{ClientError, StorageClient};
use futures::future::join_all;
use tokio::net::{TcpSocket, TcpStream};

mod support;
use support::{dida, eventually};

/// Resident memory of a process, in bytes (from `/proc`).
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status");
    kib * 1024
}

/// A replication client of the node at `url` as a forger holds it: a bare channel,
/// without this process's credentials.
fn raw_replication(url: &str) -> ReplicationClient<tonic::transport::Channel> {
    ReplicationClient::new(
        tonic::transport::Endpoint::from_shared(url.to_string())
            .unwrap()
            .timeout(Duration::from_secs(5))
            .connect_lazy(),
    )
}

/// A three-node cluster where every node holds every key.
async fn three_replicas() -> (LocalCluster, Arc<StorageClient>) {
    let cluster = LocalCluster::start(
        dida(),
        ClusterSpec {
            nodes: 3,
            replication_factor: 3,
            ..ClusterSpec::default()
        },
    )
    .await
    .unwrap();
    let client = Arc::new(cluster.client().unwrap());
    (cluster, client)
}

/// Fails the test if any node counts `watched` failed, or `watched` reports itself
/// fenced or a new incarnation, at any moment until `done` is set: load must never
/// get a live node declared failed.
async fn watch_never_declared(
    client: Arc<StorageClient>,
    watched: String,
    done: Arc<AtomicBool>,
) -> usize {
    let incarnation = client.status(&watched).await.unwrap().incarnation;
    let mut samples = 0;
    while !done.load(Ordering::Relaxed) {
        for id in ["s1", "s2", "s3"] {
            // A busy node may answer slowly; a node that answers is what counts.
            let Ok(status) = client.status(id).await else {
                continue;
            };
            assert!(
                !status.failed.contains(&watched),
                "{id} declared {watched} failed under load alone: {:?}",
                status.failed
            );
            if id == watched {
                assert!(!status.fenced, "{watched} was fenced under load alone");
                assert_eq!(status.incarnation, incarnation, "{watched} started over");
            }
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_100_mb_lists_in_pages_and_parallel_listings_are_bounded() {
    // 100 MB, as in the report (100k × 1 KiB); half as many writes to set up.
    const KEYS: usize = 50_000;
    let (cluster, client) = three_replicas().await;
    let value = "v".repeat(2048);
    let keys: Vec<String> = (0..KEYS).map(|i| format!("key{i:06}")).collect();
    let started = std::time::Instant::now();
    for batch in keys.chunks(100) {
        join_all(batch.iter().map(|k| write_surely(&client, k, &value))).await;
    }
    // Replicas catch up by gossip; the listing below must see all of s1's records.
    eventually(Duration::from_secs(60), "s1 to hold every key", || async {
        (client.status("s1").await.ok()?.keys == KEYS as u64).then_some(())
    })
    .await;

    eprintln!("filled in {:?}", started.elapsed());

    // 100 MB of records: once over the 64 MiB message limit, now pages.
    let listed = tokio::process::Command::new(dida())
        .args(["kv", "--peers", cluster.peers(), "list", "--server", "s1"])
        .output()
        .await
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let lines = listed
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty());
    assert_eq!(lines.count(), KEYS);

    eprintln!("listed by the CLI after {:?}", started.elapsed());

    // Forty listings at once: a few run, the rest are told the node is busy; the
    // node's memory stays bounded and its peers never count it failed.
    let pid = cluster.pid("s1").unwrap();
    let before = rss_bytes(pid);
    let done = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch_never_declared(
        client.clone(),
        "s1".into(),
        done.clone(),
    ));
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let listings = join_all((0..40).map(|_| {
        let client = client.clone();
        async move { client.list_pages("s1", |_| {}).await }
    }))
    .await;
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for listing in &listings {
        let outcome = match listing {
            Ok(count) => {
                assert_eq!(*count, KEYS);
                "complete".to_string()
            }
            Err(ClientError::Rejected { code, message, .. })
                if *code == tonic::Code::ResourceExhausted =>
            {
                assert!(message.contains("try again later"), "{message}");
                "refused as busy".to_string()
            }
            Err(other) => panic!("a listing failed otherwise: {other}"),
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    // Reads and writes go on.
    client.write("after-listings", "x").await.unwrap();
    done.store(true, Ordering::Relaxed);
    let samples = watcher.await.unwrap();
    sampler.await.unwrap();
    let grew = peak.load(Ordering::Relaxed).saturating_sub(before);
    eprintln!(
        "40 listings: {outcomes:?}; s1 grew {} MiB over {} MiB; {samples} status samples",
        grew >> 20,
        before >> 20
    );
    assert!(outcomes.get("complete").copied().unwrap_or(0) >= 4);
    assert!(
        grew < 256 << 20,
        "40 listings grew s1 by {} MiB (bound: 256 MiB)",
        grew >> 20
    );
}

/// Writes `key` for a test's setup, again after a failure (a write's outcome may be
/// unknown after a timeout; writing the same value again is harmless here).
async fn write_surely(client: &StorageClient, key: &str, value: &str) {
    for _ in 0..20 {
        if client.write(key, value).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not write {key} in 20 attempts");
}

/// Raises this process's soft descriptor limit to its hard limit (the nodes it
/// starts inherit it) and returns it.
fn raise_descriptor_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    hard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_is_capped_and_the_node_serves_on() {
    let descriptors = raise_descriptor_limit();
    let (cluster, client) = three_replicas().await;
    let limits = ConnectionLimits::for_this_process();
    client.write("before-flood", "x").await.unwrap();
    let pid = cluster.pid("s1").unwrap();
    let before = rss_bytes(pid);
    let url = &cluster.membership().get("s1").unwrap().url;
    let target: std::net::SocketAddr = format!("{}:{}", url.host, url.port).parse().unwrap();

    // More connections than the node may hold, all from one address (not the
    // address the cluster's own nodes and clients use).
    let flood_size = (limits.total + 2000).min(descriptors as usize - 512);
    let done = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch_never_declared(
        client.clone(),
        "s1".into(),
        done.clone(),
    ));
    let mut flood: Vec<TcpStream> = Vec::new();
    for _ in 0..flood_size {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 0, 9], 0).into()).unwrap();
        if let Ok(stream) = socket.connect(target).await {
            flood.push(stream);
        }
    }
    // The node closes every connection over its per-address limit at once.
    let open = eventually(Duration::from_secs(30), "the excess to be closed", || {
        let open = flood.iter().filter(|s| still_open(s)).count();
        async move { (open <= limits.per_address).then_some(open) }
    })
    .await;
    let during = rss_bytes(pid);
    // The node serves everyone else meanwhile.
    client.write("during-flood", "y").await.unwrap();
    assert_eq!(
        client
            .read("before-flood", None)
            .await
            .unwrap()
            .unwrap()
            .value,
        "x"
    );
    drop(flood);
    client.write("after-flood", "z").await.unwrap();
    done.store(true, Ordering::Relaxed);
    watcher.await.unwrap();
    let grew = during.saturating_sub(before);
    eprintln!(
        "flood of {flood_size}: {open} held (limit {} per address), s1 grew {} MiB",
        limits.per_address,
        grew >> 20
    );
    assert!(
        grew < 128 << 20,
        "the flood grew s1 by {} MiB (bound: 128 MiB)",
        grew >> 20
    );
}

/// Whether the server has not closed `stream`: no end of stream, no reset (an
/// admitted connection has the server's HTTP/2 settings to read, or nothing yet).
fn still_open(stream: &TcpStream) -> bool {
    let mut buffer = [0u8; 256];
    match stream.try_read(&mut buffer) {
        Ok(read) => read > 0,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_a_fenced_primary_fail_over_and_none_fails() {
    let (cluster, client) = three_replicas().await;
    let key = (0..)
        .map(|i| format!("fenced-{i}"))
        .find(|k| client.primary(k) == "s1")
        .unwrap();
    client.write(&key, "0").await.unwrap();

    // s1 stops answering until the others declare it failed; when it runs again it
    // learns it was declared failed, refuses service and starts over.
    cluster.pause("s1").unwrap();
    eventually(
        Duration::from_secs(30),
        "s2 to declare s1 failed",
        || async {
            client
                .status("s2")
                .await
                .ok()?
                .failed
                .contains(&"s1".to_string())
                .then_some(())
        },
    )
    .await;
    cluster.resume("s1").unwrap();

    // Fresh clients (the CLI) start from the initial ring, where s1 leads the key:
    // each must get past the fenced node, to the interim primary or to s1 rejoined.
    for i in 1..=10 {
        let written = tokio::process::Command::new(dida())
            .args([
                "kv",
                "--peers",
                cluster.peers(),
                "write",
                &key,
                &i.to_string(),
            ])
            .output()
            .await
            .unwrap();
        assert!(
            written.status.success(),
            "write {i} failed: {}",
            String::from_utf8_lossy(&written.stderr)
        );
    }
    let last = eventually(Duration::from_secs(30), "the last value", || async {
        client.read(&key, None).await.ok().flatten()
    })
    .await;
    assert_eq!(last.value, "10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_cluster_token_forged_probes_and_pushes_are_refused() {
    let cluster = LocalCluster::start(
        dida(),
        ClusterSpec {
            nodes: 3,
            replication_factor: 3,
            env: vec![("DIDA_CLUSTER_TOKEN".into(), "s3cret-token".into())],
            ..ClusterSpec::default()
        },
    )
    .await
    .unwrap();
    // Clients need no token: the nodes work together with it, and serve them.
    let client = cluster.client().unwrap();
    client.write("k", "v").await.unwrap();
    let incarnation = client.status("s1").await.unwrap().incarnation;
    let s1 = cluster.membership().get("s1").unwrap().url.to_string();

    let forged_probe = ProbeRequest {
        from: "s2".into(),
        view: vec![MemberView {
            id: "s1".into(),
            incarnation,
            liveness: Liveness::Failed as i32,
        }],
        config_epoch: 0,
    };
    let forged_push = PushRequest {
        from: "s2".into(),
        records: vec![dida_proto::storage::Record {
            key: "k".into(),
            version: Some(dida_proto::storage::Version {
                number: 99,
                replica: 2,
            }),
            value: "forged".into(),
        }],
        ..PushRequest::default()
    };
    for token in [None, Some("guess")] {
        let mut replication = raw_replication(&s1);
        let mut probe = tonic::Request::new(forged_probe.clone());
        let mut push = tonic::Request::new(forged_push.clone());
        if let Some(token) = token {
            probe
                .metadata_mut()
                .insert("x-dida-cluster-token", token.parse().unwrap());
            push.metadata_mut()
                .insert("x-dida-cluster-token", token.parse().unwrap());
        }
        let refused = replication.probe(probe).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
        assert!(refused.message().contains("cluster token"), "{refused}");
        let refused = replication.push(push).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
    }
    // Nothing changed.
    let status = client.status("s1").await.unwrap();
    assert!(!status.fenced && status.incarnation == incarnation);
    assert_eq!(client.read("k", None).await.unwrap().unwrap().value, "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_pushes_that_cannot_be_right_are_refused_and_change_nothing() {
    let (cluster, client) = three_replicas().await;
    let version = client.write("k", "v").await.unwrap();
    let s1 = cluster.membership().get("s1").unwrap().url.to_string();
    let mut replication = raw_replication(&s1);
    // Sent as a member would: with this user's cluster token, which every node of
    // the default start demands of calls between nodes. What a member says is
    // still validated.
    let token = support::member_token();
    let push = |from: &str, number: u64, replica: u32| PushRequest {
        from: from.into(),
        records: vec![dida_proto::storage::Record {
            key: "k".into(),
            version: Some(dida_proto::storage::Version { number, replica }),
            value: "forged".into(),
        }],
        ..PushRequest::default()
    };
    // A version that would wrap the key's numbering (the review's u64::MAX), version
    // 0.0, replica numbers no member has, and senders that are not members.
    for forged in [
        push("s2", u64::MAX, 2),
        push("s2", 0, 0),
        push("s2", 5, 99),
        push("s2", 5, u32::MAX),
        push("", 5, 2),
        push("intruder", 5, 2),
    ] {
        let mut request = tonic::Request::new(forged.clone());
        request.metadata_mut().insert(
            dida_proto::security::CLUSTER_TOKEN_HEADER,
            token.parse().unwrap(),
        );
        let refused = replication.push(request).await.unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::InvalidArgument,
            "{forged:?}: {refused}"
        );
    }
    // Nothing changed: the key reads as written, and the next write follows it.
    let record = client.read("k", None).await.unwrap().unwrap();
    assert_eq!((record.value.as_str(), record.version), ("v", version));
    let next = client.write("k", "w").await.unwrap();
    assert_eq!(next.number, version.number + 1);
}

#[tokio::test]
async fn a_node_reachable_from_other_machines_needs_authentication() {
    let refused = tokio::process::Command::new(dida())
        .env_remove("DIDA_TLS_DIR")
        .env_remove("DIDA_CLUSTER_TOKEN")
        .args(["storage", "--id", "s1", "--url", "http://0.0.0.0:7999"])
        .args(["--peers", "s1=http://0.0.0.0:7999"])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("without authentication") && stderr.contains("--insecure"),
        "{stderr}"
    );
}
