//! Worker registrations against a real scheduler (in-process, on loopback, started
//! without `--workers`): forged, oversized and malformed registrations are refused
//! with the right code and a message saying why; an id held by a live worker is not
//! taken by another URL; the status lists each worker's state; a submit with no
//! live worker is refused, and one whose lease ended gets nothing. The gateway's
//! `GET /v1/workers` lists the same. No worker
//! process runs: the registrations are made by hand, as a hostile caller would.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dida_core::membership::NodeUrl;
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::{
    DeregisterWorkerRequest, RegisterWorkerReply, RegisterWorkerRequest, SchedulerStatusRequest,
    SubmitRequest,
};
use dida_proto::transport::{lazy_channel, NodeChannel};
use dida_scheduler::members::MAX_WORKER_URL_BYTES;
use dida_scheduler::{NodeHandle, SchedulerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::Code;

const LEASE: Duration = Duration::from_millis(600);

/// A scheduler without `--workers`, its client, and where its HTTP gateway serves.
async fn scheduler() -> (NodeHandle, SchedulerClient<NodeChannel>, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = http.local_addr().unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut config = SchedulerConfig::new("sched", NodeUrl::parse(&url).unwrap(), None);
    config.rpc_deadline = Duration::from_secs(2);
    config.worker_lease = LEASE;
    let handle = dida_scheduler::node::start_with_gateway(config, listener, Some(http))
        .await
        .unwrap();
    let client = SchedulerClient::new(lazy_channel(&url, Duration::from_secs(10)).unwrap());
    (handle, client, gateway)
}

/// The body of `GET /v1/workers` (HTTP/1.1 by hand: the test needs no client).
async fn http_workers(gateway: SocketAddr) -> String {
    let mut stream = TcpStream::connect(gateway).await.unwrap();
    let request =
        format!("GET /v1/workers HTTP/1.1\r\nHost: {gateway}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("the gateway answers within 10 s")
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

async fn register(
    client: &SchedulerClient<NodeChannel>,
    id: &str,
    url: &str,
    leaving: bool,
) -> Result<RegisterWorkerReply, tonic::Status> {
    client
        .clone()
        .register_worker(RegisterWorkerRequest {
            worker_id: id.into(),
            url: url.into(),
            leaving,
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn states(client: &SchedulerClient<NodeChannel>) -> Vec<(String, String)> {
    client
        .clone()
        .status(SchedulerStatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers
        .into_iter()
        .map(|w| (w.worker_id, w.state))
        .collect()
}

#[tokio::test]
async fn malformed_and_hijacking_registrations_are_refused() {
    let (_handle, client, gateway) = scheduler().await;
    let long_url = format!("http://{}:4001", "h".repeat(MAX_WORKER_URL_BYTES));
    for (id, url, why) in [
        ("", "http://127.0.0.1:4001", "node id"),
        ("w1/../s1", "http://127.0.0.1:4001", "node id"),
        (&"w".repeat(65) as &str, "http://127.0.0.1:4001", "node id"),
        ("w1", "https://127.0.0.1:4001", "http://"),
        ("w1", "http://127.0.0.1", "port"),
        ("w1", &long_url, "the limit is"),
    ] {
        let refused = register(&client, id, url, false).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{id:?} {url:?}");
        assert!(
            refused.message().contains(why),
            "{id:?} {url:?}: {}",
            refused.message()
        );
    }
    assert!(states(&client).await.is_empty(), "nothing was registered");

    let reply = register(&client, "w1", "http://127.0.0.1:4001", false)
        .await
        .unwrap();
    assert_eq!(reply.lease_ms, LEASE.as_millis() as u64);
    assert_eq!(reply.renew_ms, LEASE.as_millis() as u64 / 3);
    assert_eq!(reply.load, 0);
    let hijack = register(&client, "w1", "http://127.0.0.1:4002", false)
        .await
        .unwrap_err();
    assert_eq!(hijack.code(), Code::AlreadyExists);
    assert!(hijack
        .message()
        .contains("held by the live worker at http://127.0.0.1:4001"));
    // Nor may another URL deregister it.
    let forged = client
        .clone()
        .deregister_worker(DeregisterWorkerRequest {
            worker_id: "w1".into(),
            url: "http://127.0.0.1:4002".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(forged.code(), Code::NotFound);
    assert_eq!(states(&client).await, [("w1".into(), "alive".into())]);
    // The same worker registering again (a renewal, a restart) is fine; leaving
    // shows.
    register(&client, "w1", "http://127.0.0.1:4001", true)
        .await
        .unwrap();
    assert_eq!(states(&client).await, [("w1".into(), "leaving".into())]);
    let listed = http_workers(gateway).await;
    let body = listed.split("\r\n\r\n").nth(1).expect("a body");
    let listed: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        listed,
        serde_json::json!({"workers": [{"id": "w1", "url": "http://127.0.0.1:4001",
                                        "state": "leaving", "load": 0, "assigned": 0}]})
    );
}

#[tokio::test]
async fn no_placement_without_a_live_worker() {
    let (_handle, client, _) = scheduler().await;
    let submit = || SubmitRequest {
        app: "app.txt".into(),
        operators: vec!["EchoOperator".into()],
        input: "x".into(),
    };
    let refused = client.clone().submit(submit()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().contains("no worker is alive"),
        "{}",
        refused.message()
    );
    // A worker registers (at a port nothing listens on) and falls silent: once its
    // lease ended it is shown gone and gets nothing.
    register(&client, "w1", "http://127.0.0.1:9", false)
        .await
        .unwrap();
    let registered = Instant::now();
    loop {
        let states = states(&client).await;
        if states == [("w1".to_string(), "gone".to_string())] {
            break;
        }
        assert!(registered.elapsed() < LEASE * 10, "still {states:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(registered.elapsed() >= LEASE);
    let refused = client.clone().submit(submit()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(refused.message().contains("no worker is alive"));
}
