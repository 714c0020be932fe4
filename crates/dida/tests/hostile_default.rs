//! The default start, on real processes: no TLS, no `--cluster-token`, no flag at
//! all. The nodes authenticate one another with this user's cluster token file
//! (`~/.dida/cluster-token`, created on first use), so a local process without it
//! can forge none of the calls between nodes — the probes, pushes, key pulls,
//! outcome reports and hand-offs that once fenced nodes, rewrote data or replaced
//! outputs — while clients (`dida kv`, the storage client) need nothing.
//!
//! And a member, holding the token, that declares every node failed costs the
//! cluster a rejoin of every node, not its data: a durable cluster keeps every
//! acknowledged write, also across a restart of every node.

use std::time::Duration;

use dida_local_cluster::{ClusterSpec, ComputeSpec, LocalCluster};
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::worker_client::WorkerClient;
use dida_proto::execution::{HandOffRequest, ReportOutcomesRequest, SubmitRequest};
use dida_proto::security::CLUSTER_TOKEN_HEADER;
use dida_proto::storage::replication_client::ReplicationClient;
use dida_proto::storage::{FetchKeyRequest, Liveness, MemberView, ProbeRequest, PushRequest};
use dida_proto::transport::lazy_channel;
use dida_storage_client::StorageClient;
use tonic::transport::{Channel, Endpoint};

mod support;
use support::{dida, durable_cluster, eventually, member_token};

/// A bare channel to `url`, as a local process without the token holds it.
fn bare(url: &str) -> Channel {
    Endpoint::from_shared(url.to_string())
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect_lazy()
}

/// A probe from `from` declaring every member of `view` failed, at the
/// incarnation given.
fn declaring_failed(from: &str, view: &[(String, u64)]) -> ProbeRequest {
    ProbeRequest {
        from: from.into(),
        view: view
            .iter()
            .map(|(id, incarnation)| MemberView {
                id: id.clone(),
                incarnation: *incarnation,
                liveness: Liveness::Failed as i32,
            })
            .collect(),
        config_epoch: 0,
    }
}

/// Every node's id and current incarnation, from its own status.
async fn incarnations(cluster: &LocalCluster, client: &StorageClient) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for id in cluster.ids() {
        out.push((id.clone(), client.status(&id).await.unwrap().incarnation));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_calls_between_nodes_without_the_token_are_refused_and_change_nothing() {
    let mut cluster = LocalCluster::start(
        dida(),
        ClusterSpec {
            nodes: 3,
            replication_factor: 3,
            ..ClusterSpec::default()
        },
    )
    .await
    .unwrap();
    cluster
        .start_compute(
            dida(),
            ComputeSpec {
                workers: 1,
                ..ComputeSpec::default()
            },
        )
        .await
        .unwrap();
    // Clients need nothing: the storage client and `dida kv`, with no flag.
    let client = cluster.client().unwrap();
    client.write("k", "v").await.unwrap();
    let written = std::process::Command::new(dida())
        .args([
            "kv",
            "--peers",
            cluster.peers(),
            "write",
            "cli",
            "from the CLI",
        ])
        .output()
        .unwrap();
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    let scheduler_url = cluster.scheduler_url().unwrap().to_string();
    let scheduler =
        SchedulerClient::new(lazy_channel(&scheduler_url, Duration::from_secs(20)).unwrap());
    let id = scheduler
        .clone()
        .submit(SubmitRequest {
            app: "default".into(),
            operators: vec!["EchoOperator".into()],
            input: "no flags".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .execution_id;
    let outcome = support::outcome(&scheduler, &id).await;
    assert!(outcome.error.is_none(), "{outcome:?}");
    let before = incarnations(&cluster, &client).await;

    let unauthenticated = |status: tonic::Status, what: &str| {
        assert_eq!(
            status.code(),
            tonic::Code::Unauthenticated,
            "{what}: {status}"
        );
        assert!(
            status.message().contains("cluster token"),
            "{what}: {status}"
        );
    };
    for (id, _) in &before {
        let url = cluster.membership().get(id).unwrap().url.to_string();
        let mut replication = ReplicationClient::new(bare(&url));
        let probe = replication
            .probe(declaring_failed("s2", &before))
            .await
            .unwrap_err();
        unauthenticated(probe, "a probe declaring every node failed");
        let push = replication
            .push(PushRequest {
                from: "s2".into(),
                incarnation: before[1].1,
                records: vec![dida_proto::storage::Record {
                    key: "k".into(),
                    version: Some(dida_proto::storage::Version {
                        number: 99,
                        replica: 2,
                    }),
                    value: "forged".into(),
                }],
                handoff: false,
            })
            .await
            .unwrap_err();
        unauthenticated(push, "a push rewriting k");
        let fetch = replication
            .fetch_key(FetchKeyRequest {
                from: "s2".into(),
                key: "k".into(),
                view: declaring_failed("s2", &before).view,
            })
            .await
            .unwrap_err();
        unauthenticated(fetch, "a key pull declaring every node failed");
    }
    let w1 = cluster
        .workers()
        .unwrap()
        .get("w1")
        .unwrap()
        .url
        .to_string();
    let hand_off = WorkerClient::new(bare(&w1))
        .hand_off(futures::stream::iter(vec![HandOffRequest::default()]))
        .await
        .expect_err("a local process handed an execution to a worker");
    unauthenticated(hand_off, "a hand-off");
    let report = SchedulerClient::new(bare(&scheduler_url))
        .report_outcomes(futures::stream::iter(
            vec![ReportOutcomesRequest::default()],
        ))
        .await
        .expect_err("a local process reported an outcome");
    unauthenticated(report, "an outcome report");

    // Nothing changed: no node fenced or restarted, the key and the outputs as
    // they were.
    assert_eq!(incarnations(&cluster, &client).await, before);
    for (id, _) in &before {
        let status = client.status(id).await.unwrap();
        assert!(
            !status.fenced && status.failed.is_empty(),
            "{id}: {status:?}"
        );
    }
    assert_eq!(client.read("k", None).await.unwrap().unwrap().value, "v");
    let again = support::outcome(&scheduler, &id).await;
    assert_eq!(again.outputs, outcome.outputs);
}

/// Reads every key of `acked` back from the cluster, and fails on any value
/// missing or different.
async fn assert_all_kept(client: &StorageClient, acked: &[(String, String)]) {
    for (key, value) in acked {
        let record = eventually(
            Duration::from_secs(30),
            &format!("{key} to read"),
            || async { client.read(key, None).await.ok() },
        )
        .await;
        let record = record.unwrap_or_else(|| panic!("acknowledged {key} was lost"));
        assert_eq!(&record.value, value, "{key}");
    }
}

/// Waits until every node is serving and counts every node alive.
async fn all_alive(cluster: &LocalCluster, client: &StorageClient) {
    eventually(
        Duration::from_secs(60),
        "every node alive in every view",
        || async {
            for id in cluster.ids() {
                let status = client.status(&id).await.ok()?;
                let everyone_alive = status
                    .view
                    .iter()
                    .all(|member| member.liveness == Liveness::Alive as i32);
                if status.fenced || !everyone_alive {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_declaring_every_node_failed_costs_a_rejoin_not_a_single_acknowledged_write() {
    let root = tempfile::tempdir().unwrap();
    let mut cluster = durable_cluster(3, root.path()).await;
    let client = cluster.client().unwrap();
    let mut acked = Vec::new();
    for i in 0..100 {
        let (key, value) = (format!("key-{i}"), format!("value {i}"));
        client.write(&key, &value).await.unwrap();
        acked.push((key, value));
    }

    // Three rounds of forged probes, each telling every node, in the name of
    // another member and with the member's token, that every node failed.
    let before = incarnations(&cluster, &client).await;
    let token = member_token();
    for round in 0..3 {
        let now = incarnations(&cluster, &client).await;
        for (n, (id, _)) in now.iter().enumerate() {
            let url = cluster.membership().get(id).unwrap().url.to_string();
            let from = &now[(n + 1) % now.len()].0;
            let mut probe = tonic::Request::new(declaring_failed(from, &now));
            probe
                .metadata_mut()
                .insert(CLUSTER_TOKEN_HEADER, token.parse().unwrap());
            // Believed, or refused by a node fenced by an earlier probe: either
            // way, it must cost no data.
            let answer = ReplicationClient::new(bare(&url)).probe(probe).await;
            eprintln!("round {round}: {id} answered {:?}", answer.map(|_| ()));
        }
        all_alive(&cluster, &client).await;
    }
    let after = incarnations(&cluster, &client).await;
    eprintln!("incarnations after the forged declarations: {after:?}");
    // The declarations were believed: every node rejoined as a new incarnation.
    for ((id, was), (_, is)) in before.iter().zip(&after) {
        assert!(is > was, "{id} did not rejoin: incarnation {was} then {is}");
    }
    assert_all_kept(&client, &acked).await;

    // Still there after every node is SIGKILLed and restarted on its directory.
    cluster.kill_all().await.unwrap();
    cluster
        .start_stopped(Duration::from_secs(30))
        .await
        .unwrap();
    let client = cluster.client().unwrap();
    all_alive(&cluster, &client).await;
    assert_all_kept(&client, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_an_incarnation_no_node_announced_fences_no_one() {
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
    let client = cluster.client().unwrap();
    client.write("k", "v").await.unwrap();
    let before = incarnations(&cluster, &client).await;
    let token = member_token();
    // The review's 2^62: "s1 failed at incarnation 2^62", to every node.
    let forged: Vec<(String, u64)> = vec![("s1".into(), 1 << 62)];
    for id in cluster.ids() {
        let url = cluster.membership().get(&id).unwrap().url.to_string();
        let from = if id == "s2" { "s3" } else { "s2" };
        let mut probe = tonic::Request::new(declaring_failed(from, &forged));
        probe
            .metadata_mut()
            .insert(CLUSTER_TOKEN_HEADER, token.parse().unwrap());
        let _ = ReplicationClient::new(bare(&url)).probe(probe).await;
    }
    // s1 ignores a claim about an incarnation it never took; the others take it
    // as of the incarnation s1 announced, so s1 at most rejoins once, at the next
    // incarnation, and everyone counts it alive again.
    all_alive(&cluster, &client).await;
    let after = incarnations(&cluster, &client).await;
    let (s1_before, s1_after) = (before[0].1, after[0].1);
    assert!(
        s1_after == s1_before || s1_after == s1_before + 1,
        "s1 went from {s1_before} to {s1_after}"
    );
    assert!(s1_after < 1 << 62);
    assert_eq!(client.read("k", None).await.unwrap().unwrap().value, "v");
}
