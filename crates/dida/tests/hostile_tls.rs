//! A cluster over mutual TLS, on real processes: nodes that hold certificates from
//! `dida certs` work together, and a caller without a certificate, with another
//! CA's, or with a certificate of the wrong role for the call is refused — the
//! forged probe that once fenced a node changes nothing.
//!
//! This test binary installs a client identity for its whole process (as the `dida`
//! binary does from `--tls-dir`); the callers that must be refused are built by hand.

use std::path::Path;
use std::time::Duration;

use dida_local_cluster::{ClusterSpec, ComputeSpec, LocalCluster};
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::worker_client::WorkerClient;
use dida_proto::execution::{HandOffRequest, ReportOutcomesRequest, SubmitRequest};
use dida_proto::security::{self, Security, TlsFiles, TlsIdentity};
use dida_proto::storage::replication_client::ReplicationClient;
use dida_proto::storage::storage_client::StorageClient as RawStorage;
use dida_proto::storage::{Liveness, MemberView, ProbeRequest, ReadRequest};
use dida_proto::transport::lazy_channel;
use tokio::sync::OnceCell;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

mod support;
use support::dida;

/// Runs `dida certs` into `dir` for a three-node cluster and its clients.
fn make_certs(dir: &Path) {
    let status = std::process::Command::new(dida())
        .args(["certs", "--out"])
        .arg(dir)
        .args(["--storage", "s1,s2,s3", "--workers", "w1"])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The certificates of this test binary: made once, the client one installed.
async fn certs() -> &'static Path {
    static DIR: OnceCell<tempfile::TempDir> = OnceCell::const_new();
    DIR.get_or_init(|| async {
        let dir = tempfile::tempdir().unwrap();
        make_certs(dir.path());
        let tls = TlsIdentity::load(&TlsFiles::in_dir(dir.path(), "client")).unwrap();
        security::install(Security {
            tls: Some(tls),
            ..Security::default()
        })
        .unwrap();
        dir
    })
    .await
    .path()
}

async fn tls_cluster() -> LocalCluster {
    tls_cluster_with(ClusterSpec::default()).await
}

/// A three-node TLS cluster, with `spec`'s other settings.
async fn tls_cluster_with(spec: ClusterSpec) -> LocalCluster {
    let dir = certs().await;
    LocalCluster::start(
        dida(),
        ClusterSpec {
            nodes: 3,
            replication_factor: 3,
            env: vec![("DIDA_TLS_DIR".into(), dir.to_string_lossy().into_owned())],
            ..spec
        },
    )
    .await
    .unwrap()
}

/// `redis-cli` against RESP port `addr`, with `tls` flags; its stdout and stderr.
fn redis_cli(addr: std::net::SocketAddr, tls: &[String], args: &[&str]) -> String {
    let output = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
        .args(tls)
        .args(args)
        .output()
        .expect("redis-cli runs (scripts/ensure-redis-clients.sh installs it)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
    .trim()
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp_speaks_tls_to_certified_clients_only() {
    let cluster = tls_cluster_with(ClusterSpec {
        resp: true,
        ..ClusterSpec::default()
    })
    .await;
    let dir = certs().await;
    let s1 = cluster.resp_addr("s1").unwrap();
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let certified = [
        "--tls".to_string(),
        "--cacert".to_string(),
        file("ca.pem"),
        "--cert".to_string(),
        file("client.pem"),
        "--key".to_string(),
        file("client.key"),
    ];
    assert_eq!(redis_cli(s1, &certified, &["SET", "resp-tls", "v"]), "OK");
    assert_eq!(redis_cli(s1, &certified, &["GET", "resp-tls"]), "v");
    // Without a client certificate, or without TLS at all: nothing is served.
    let anonymous = redis_cli(s1, &certified[..3], &["GET", "resp-tls"]);
    assert!(
        anonymous.starts_with("Error"),
        "served without a certificate: {anonymous}"
    );
    let plain = redis_cli(s1, &[], &["GET", "resp-tls"]);
    assert!(plain.starts_with("Error"), "served without TLS: {plain}");
    assert_eq!(redis_cli(s1, &certified, &["PING"]), "PONG");
}

/// A channel to `url` over TLS trusting `ca`, presenting `identity` (or nothing).
fn channel(url: &str, ca: &Path, identity: Option<(&Path, &Path)>) -> Channel {
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(cert).unwrap(),
            std::fs::read(key).unwrap(),
        ));
    }
    Endpoint::from_shared(url.replace("http://", "https://"))
        .unwrap()
        .timeout(Duration::from_secs(5))
        .tls_config(tls)
        .unwrap()
        .connect_lazy()
}

/// A probe that, believed, would make s1 fence itself.
fn forged_probe(s1_incarnation: u64) -> ProbeRequest {
    ProbeRequest {
        from: "s2".into(),
        view: vec![MemberView {
            id: "s1".into(),
            incarnation: s1_incarnation,
            liveness: Liveness::Failed as i32,
        }],
        config_epoch: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_serves_its_clients_and_refuses_everyone_else() {
    let cluster = tls_cluster().await;
    let dir = certs().await;
    let client = cluster.client().unwrap();
    client.write("k", "v").await.unwrap();
    assert_eq!(client.read("k", None).await.unwrap().unwrap().value, "v");
    let s1 = cluster.membership().get("s1").unwrap().url.to_string();
    let incarnation = client.status("s1").await.unwrap().incarnation;

    // No certificate: the handshake fails, nothing is read.
    let anonymous = RawStorage::new(channel(&s1, &dir.join("ca.pem"), None))
        .read(ReadRequest {
            key: "k".into(),
            ..ReadRequest::default()
        })
        .await;
    assert!(
        anonymous.is_err(),
        "a caller without a certificate was served"
    );

    // Plain HTTP/2 without TLS: refused too.
    let plain = Endpoint::from_shared(s1.clone())
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    assert!(RawStorage::new(plain)
        .read(ReadRequest {
            key: "k".into(),
            ..ReadRequest::default()
        })
        .await
        .is_err());

    // Another CA's certificate, even one naming a storage node: refused.
    let other = tempfile::tempdir().unwrap();
    make_certs(other.path());
    let impostor = ReplicationClient::new(channel(
        &s1,
        &dir.join("ca.pem"),
        Some((&other.path().join("s2.pem"), &other.path().join("s2.key"))),
    ))
    .probe(forged_probe(incarnation))
    .await;
    assert!(impostor.is_err(), "another CA's certificate was accepted");

    // The cluster's own certificates of the wrong role: refused by role.
    for name in ["client", "w1", "scheduler"] {
        let refused = ReplicationClient::new(channel(
            &s1,
            &dir.join("ca.pem"),
            Some((
                &dir.join(format!("{name}.pem")),
                &dir.join(format!("{name}.key")),
            )),
        ))
        .probe(forged_probe(incarnation))
        .await
        .expect_err("a forged probe from a non-storage certificate was answered");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
        assert!(refused.message().contains("may not call"), "{refused}");
    }

    // A storage node's own certificate may not speak for another member: s3 cannot
    // declare s1 failed in s2's name.
    let impersonation = ReplicationClient::new(channel(
        &s1,
        &dir.join("ca.pem"),
        Some((&dir.join("s3.pem"), &dir.join("s3.key"))),
    ))
    .probe(forged_probe(incarnation))
    .await
    .expect_err("s3 spoke for s2");
    assert_eq!(
        impersonation.code(),
        tonic::Code::PermissionDenied,
        "{impersonation}"
    );
    assert!(
        impersonation.message().contains("may not speak for"),
        "{impersonation}"
    );

    // Nothing changed: s1 is alive in its first incarnation and serves.
    let status = client.status("s1").await.unwrap();
    assert!(!status.fenced);
    assert_eq!(status.incarnation, incarnation);
    for id in ["s2", "s3"] {
        assert!(client.status(id).await.unwrap().failed.is_empty());
    }
    client.write("k", "w").await.unwrap();
    assert_eq!(client.read("k", None).await.unwrap().unwrap().value, "w");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_run_over_tls_and_forged_internal_calls_are_refused() {
    let mut cluster = tls_cluster().await;
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
    let dir = certs().await;
    let scheduler_url = cluster.scheduler_url().unwrap().to_string();
    let scheduler =
        SchedulerClient::new(lazy_channel(&scheduler_url, Duration::from_secs(20)).unwrap());
    let id = scheduler
        .clone()
        .submit(SubmitRequest {
            app: "tls".into(),
            operators: vec!["EchoOperator".into()],
            input: "over tls".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .execution_id;
    let outcome = support::outcome(&scheduler, &id).await;
    assert!(outcome.error.is_none(), "{outcome:?}");

    let as_client = |url: &str| {
        channel(
            url,
            &dir.join("ca.pem"),
            Some((&dir.join("client.pem"), &dir.join("client.key"))),
        )
    };
    // A forged hand-off (which once made a worker send a request anywhere).
    let w1 = cluster
        .workers()
        .unwrap()
        .get("w1")
        .unwrap()
        .url
        .to_string();
    let hand_off = WorkerClient::new(as_client(&w1))
        .hand_off(futures::stream::iter(vec![HandOffRequest::default()]))
        .await
        .expect_err("a client handed an execution to a worker");
    assert_eq!(hand_off.code(), tonic::Code::PermissionDenied, "{hand_off}");
    // A forged outcome report (which once replaced a client's outputs).
    let report = SchedulerClient::new(as_client(&scheduler_url))
        .report_outcomes(futures::stream::iter(
            vec![ReportOutcomesRequest::default()],
        ))
        .await
        .expect_err("a client reported an outcome");
    assert_eq!(report.code(), tonic::Code::PermissionDenied, "{report}");
    // The execution's outcome is unchanged.
    let again = support::outcome(&scheduler, &id).await;
    assert_eq!(again.outputs, outcome.outputs);
}
