//! Observability of real nodes: `/metrics` parsed by a Prometheus text parser with
//! its counters moving under real traffic, `/healthz` and `/readyz`, readiness
//! following a storage node's fencing and rejoin, and the standard gRPC health
//! service on the nodes' own ports.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use dida_bench::http_client::{HttpClient, StatusCode};
use dida_local_cluster::{free_ports, ClusterSpec, ComputeSpec, LocalCluster};
use dida_proto::transport::lazy_channel;
use prometheus_parse::Scrape;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use support::prom::{any, scrape, total};
use support::{dida, eventually};

async fn readyz(http: &HttpClient, addr: SocketAddr) -> (StatusCode, String) {
    match http.get(&format!("http://{addr}/readyz")).await {
        Ok(reply) => (reply.status, reply.body),
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()),
    }
}

async fn grpc_health(url: &str) -> ServingStatus {
    let mut client = HealthClient::new(lazy_channel(url, Duration::from_secs(2)).unwrap());
    let reply = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("grpc.health.v1.Health/Check answers")
        .into_inner();
    ServingStatus::try_from(reply.status).unwrap()
}

/// Storage: the counters move with writes and gossip, the gRPC health service
/// answers, and `/readyz` turns not-ready while a node is fenced and rejoining, then
/// ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_metrics_move_and_readiness_follows_fencing() {
    let cluster = LocalCluster::start(
        dida(),
        ClusterSpec {
            nodes: 3,
            metrics: true,
            ..ClusterSpec::default()
        },
    )
    .await
    .unwrap();
    let http = HttpClient::new(Duration::from_secs(5));
    let addrs: Vec<SocketAddr> = cluster
        .ids()
        .map(|id| cluster.metrics_addr(&id).unwrap())
        .collect();
    for addr in &addrs {
        let health = http.get(&format!("http://{addr}/healthz")).await.unwrap();
        assert_eq!(health.status, StatusCode::OK);
        eventually(Duration::from_secs(30), "every node ready", || async {
            (readyz(&http, *addr).await.0 == StatusCode::OK).then_some(())
        })
        .await;
    }
    // The health service follows readiness within its refresh period.
    for member in cluster.membership().members() {
        let url = member.url.to_string();
        eventually(Duration::from_secs(10), "gRPC health SERVING", || async {
            (grpc_health(&url).await == ServingStatus::Serving).then_some(())
        })
        .await;
    }

    let before: Vec<Scrape> =
        futures::future::join_all(addrs.iter().map(|a| scrape(&http, *a))).await;
    let client = cluster.client().unwrap();
    for i in 0..50 {
        client.write(&format!("metric-key-{i}"), "v").await.unwrap();
    }
    // One key written past the versions kept (5): its oldest versions are dropped.
    for i in 0..8 {
        client
            .write("metric-versions", &i.to_string())
            .await
            .unwrap();
    }
    let sum = |scrapes: &[Scrape], name: &str| -> f64 {
        scrapes.iter().map(|s| total(s, name, any)).sum()
    };
    // Every key lives on 3 replicas once gossip has delivered it.
    eventually(
        Duration::from_secs(30),
        "the keys on every replica",
        || async {
            let after: Vec<Scrape> =
                futures::future::join_all(addrs.iter().map(|a| scrape(&http, *a))).await;
            (sum(&after, "dida_storage_keys") >= sum(&before, "dida_storage_keys") + 150.0)
                .then_some(())
        },
    )
    .await;
    let after: Vec<Scrape> =
        futures::future::join_all(addrs.iter().map(|a| scrape(&http, *a))).await;
    for name in [
        "dida_rpc_server_calls_total",
        "dida_rpc_server_duration_seconds",
        "dida_storage_gossip_pushes_total",
        "dida_storage_gossip_pushed_records_total",
        "dida_storage_records",
        "dida_storage_versions_discarded_total",
    ] {
        assert!(
            sum(&after, name) > sum(&before, name),
            "{name} did not grow: {} then {}",
            sum(&before, name),
            sum(&after, name)
        );
    }
    // Replication calls are counted by method and status.
    let pushes_ok = total(&after[0], "dida_rpc_server_calls_total", |labels| {
        labels
            .get("method")
            .is_some_and(|m| m.starts_with("/dida.storage.v1.Replication/"))
            && labels.get("code") == Some("Ok")
    });
    assert!(pushes_ok > 0.0, "no replication call counted on s1");

    // Declare s3 failed (paused past the suspicion timeout), then pause s2 and let
    // s3 go: s3 learns it was declared failed, fences itself and rejoins, which
    // waits for s2 until s1 declares it failed too. Meanwhile s3 is not ready.
    cluster.pause("s3").unwrap();
    eventually(
        Duration::from_secs(20),
        "s1 to declare s3 failed",
        || async {
            let s1 = scrape(&http, addrs[0]).await;
            (total(&s1, "dida_storage_failed_peers", any) >= 1.0).then_some(())
        },
    )
    .await;
    cluster.pause("s2").unwrap();
    cluster.resume("s3").unwrap();
    let (_, reason) = eventually(Duration::from_secs(20), "s3 not ready", || async {
        let (status, body) = readyz(&http, addrs[2]).await;
        (status == StatusCode::SERVICE_UNAVAILABLE).then_some((status, body))
    })
    .await;
    assert!(
        reason.contains("fenced") || reason.contains("joining"),
        "unexpected reason: {reason}"
    );
    cluster.resume("s2").unwrap();
    for (i, addr) in addrs.iter().enumerate() {
        eventually(
            Duration::from_secs(60),
            &format!("s{} ready again", i + 1),
            || async { (readyz(&http, *addr).await.0 == StatusCode::OK).then_some(()) },
        )
        .await;
    }
    // The detector's and the rejoin's counters tell the story: s1 suspected and
    // declared s3; s3 fenced itself once and caught up twice (start, rejoin).
    let s1 = scrape(&http, addrs[0]).await;
    let s3 = scrape(&http, addrs[2]).await;
    assert!(total(&s1, "dida_storage_suspicions_total", any) >= 1.0);
    assert!(total(&s1, "dida_storage_declarations_total", any) >= 1.0);
    assert!(total(&s1, "dida_storage_view_changes_total", any) >= 2.0);
    assert_eq!(total(&s3, "dida_storage_fences_total", any), 1.0);
    assert_eq!(total(&s3, "dida_storage_catch_ups_total", any), 2.0);
}

/// Scheduler, workers and PCS: execution and invocation metrics move with real
/// executions, and each answers the gRPC health check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_metrics_move_with_executions() {
    let mut cluster = LocalCluster::start(
        dida(),
        ClusterSpec {
            nodes: 3,
            ..ClusterSpec::default()
        },
    )
    .await
    .unwrap();
    let ports = free_ports(2).unwrap();
    let scheduler_metrics: SocketAddr = format!("127.0.0.1:{}", ports[0]).parse().unwrap();
    let worker_metrics: SocketAddr = format!("127.0.0.1:{}", ports[1]).parse().unwrap();
    cluster
        .start_compute(
            dida(),
            ComputeSpec {
                workers: 1,
                worker_args: vec!["--metrics-listen".into(), worker_metrics.to_string()],
                scheduler_args: vec!["--metrics-listen".into(), scheduler_metrics.to_string()],
                ..ComputeSpec::default()
            },
        )
        .await
        .unwrap();
    let scheduler_url = cluster.scheduler_url().unwrap().to_string();
    let http = HttpClient::new(Duration::from_secs(5));
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.txt");
    std::fs::write(&app, "operator EchoOperator 0\noperator EchoOperator 1\n").unwrap();
    for input in ["a", "b", "c"] {
        let run = Command::new(dida())
            .args(["run", "--scheduler", &scheduler_url, "--input", input])
            .arg(&app)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let scheduler = scrape(&http, scheduler_metrics).await;
    assert_eq!(
        total(
            &scheduler,
            "dida_scheduler_executions_finished_total",
            |l| { l.get("outcome") == Some("succeeded") }
        ),
        3.0
    );
    assert_eq!(
        total(&scheduler, "dida_scheduler_executions_submitted_total", any),
        3.0
    );
    assert_eq!(
        total(&scheduler, "dida_scheduler_execution_duration_seconds", any),
        3.0
    );
    assert!(scheduler
        .samples
        .iter()
        .any(|s| s.metric == "dida_scheduler_worker_load" && s.labels.get("worker") == Some("w1")));
    let worker = scrape(&http, worker_metrics).await;
    assert_eq!(
        total(&worker, "dida_worker_invocations_total", |l| {
            l.get("operator") == Some("EchoOperator") && l.get("outcome") == Some("ok")
        }),
        6.0
    );
    assert!(total(&worker, "dida_worker_fuel_used_total", any) > 0.0);
    // Every invocation instantiated its operator; all but the first loads of each
    // operator found it compiled (the worker compiles them when it starts).
    assert_eq!(
        total(&worker, "dida_worker_instantiation_duration_seconds", |l| {
            l.get("operator") == Some("EchoOperator")
        }),
        6.0
    );
    let hits = total(&worker, "dida_worker_operator_loads_total", |l| {
        l.get("cache") == Some("hit")
    });
    assert!(hits >= 5.0, "compile-cache hits: {hits}");
    assert!(total(&worker, "dida_rpc_server_calls_total", any) > 0.0);
    assert_eq!(grpc_health(&scheduler_url).await, ServingStatus::Serving);
    let worker_url = cluster.workers().unwrap().members()[0].url.to_string();
    assert_eq!(grpc_health(&worker_url).await, ServingStatus::Serving);
}
