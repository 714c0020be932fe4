//! Hand-offs to a real worker (in-process, on loopback) over the acknowledged
//! stream of `dida_proto::acked`: accepted and refused requests share one stream, a
//! peer's open stream does not hold the worker's shutdown, a gone peer fails a
//! hand-off within its deadline, and a worker started again at the same address
//! gets hand-offs on a new stream.

use std::time::{Duration, Instant};

use dida_core::membership::NodeUrl;
use dida_core::Membership;
use dida_proto::acked;
use dida_proto::execution::{Assignment, ChainRequest, HandOffReply, HandOffRequest, Metadata};
use dida_worker::node::start;
use dida_worker::{NodeHandle, WorkerConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::{Code, Status};

/// A loopback address nothing listens on.
async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

/// Starts worker `w2` on `listener`, with a storage node and a scheduler that are
/// not there (a hand-off only needs the worker to accept the request).
async fn start_worker(listener: TcpListener) -> NodeHandle {
    let url = format!("http://{}", listener.local_addr().unwrap());
    let storage = Membership::parse(&format!("s1={}", closed_port().await)).unwrap();
    let scheduler = NodeUrl::parse(&closed_port().await).unwrap();
    let mut config = WorkerConfig::new("w2", NodeUrl::parse(&url).unwrap(), storage, scheduler);
    config.replication_factor = 1;
    start(config, listener).await.unwrap()
}

/// A one-operator request for worker `worker_id` at `url`.
fn request(worker_id: &str, url: &str) -> ChainRequest {
    ChainRequest {
        meta: Some(Metadata {
            id: "x-1".into(),
            ..Metadata::default()
        }),
        input: "in".into(),
        next: 0,
        chain: vec![Assignment {
            classname: "NoSuchOperator".into(),
            order: 0,
            worker_id: worker_id.into(),
            worker_url: url.into(),
            output: None,
            digest: String::new(),
            ..Assignment::default()
        }],
        app: "test".into(),
    }
}

type Links = acked::AckedLinks<HandOffRequest, HandOffReply>;

async fn hand_off(links: &Links, url: &str, worker_id: &str) -> Result<HandOffReply, Status> {
    links
        .send(url, |seq| HandOffRequest {
            seq,
            request: Some(request(worker_id, url)),
        })
        .await
        .map_err(Status::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_offs_share_one_stream_keep_refusals_and_reconnect_after_the_peer_restarts() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let worker = start_worker(listener).await;

    let deadline = Duration::from_secs(2);
    let (_stop_signal, stop) = watch::channel(());
    let links = acked::hand_offs(deadline, stop);

    // Accepted: the worker owns the request (its operator fails later, unseen here).
    // A new execution's acknowledgement carries the worker's queued completions.
    let ack = hand_off(&links, &url, "w2").await.unwrap();
    assert!(ack.completions.is_some());
    // Refused, with the code and the reason.
    let refused = hand_off(&links, &url, "w9").await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("assigned to w9"), "{refused:?}");
    // Both went over the one stream.
    assert_eq!(links.open_peers(), 1);

    // The open stream does not hold the worker's graceful shutdown.
    tokio::time::timeout(Duration::from_secs(10), worker.shutdown())
        .await
        .expect("shutdown waited on an open hand-off stream")
        .unwrap();

    // With the peer gone, a hand-off fails; it never waits past its deadline.
    let started = Instant::now();
    let gone = hand_off(&links, &url, "w2").await.unwrap_err();
    assert!(
        matches!(gone.code(), Code::Unavailable | Code::DeadlineExceeded),
        "{gone:?}"
    );
    // Bounded, not timed: the margin only rules out a hang on a loaded machine.
    assert!(started.elapsed() <= deadline + Duration::from_secs(10));

    // A worker started again at that address gets hand-offs on a new stream (the
    // first attempt may still find the old stream closing, as a caller's retry would).
    let listener = TcpListener::bind(url.trim_start_matches("http://"))
        .await
        .unwrap();
    let _again = start_worker(listener).await;
    let mut last = None;
    for _ in 0..3 {
        match hand_off(&links, &url, "w2").await {
            Ok(_) => return,
            Err(status) => last = Some(status),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no hand-off reached the restarted worker: {last:?}");
}
