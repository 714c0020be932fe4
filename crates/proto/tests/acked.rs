//! The acknowledged stream against a peer that takes the stream and never answers:
//! a send fails at its deadline (it never hangs), and the stalled stream is dropped
//! so the next send opens a new one.

use std::time::{Duration, Instant};

use dida_proto::acked;
use dida_proto::execution::worker_server::{Worker, WorkerServer};
use dida_proto::execution::{
    ChainRequest, HandOffReply, HandOffRequest, ListOperatorsReply, ListOperatorsRequest,
    WorkerStatusReply, WorkerStatusRequest,
};
use dida_proto::server::ServerHandle;
use dida_proto::storage::{PingReply, PingRequest};
use dida_proto::transport::server_builder;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

/// A worker that accepts hand-off streams, reads them, and never acknowledges.
#[derive(Default)]
struct Mute {
    streams: Arc<AtomicUsize>,
    /// Keeps every reply stream open (and silent).
    replies: std::sync::Mutex<Vec<mpsc::Sender<Result<HandOffReply, Status>>>>,
}

#[tonic::async_trait]
impl Worker for Mute {
    type HandOffStream = ReceiverStream<Result<HandOffReply, Status>>;

    async fn hand_off(
        &self,
        request: Request<Streaming<HandOffRequest>>,
    ) -> Result<Response<Self::HandOffStream>, Status> {
        self.streams.fetch_add(1, Ordering::SeqCst);
        let mut inbound = request.into_inner();
        tokio::spawn(async move { while let Ok(Some(_)) = inbound.message().await {} });
        let (tx, rx) = mpsc::channel(1);
        self.replies.lock().unwrap().push(tx);
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_operators(
        &self,
        _: Request<ListOperatorsRequest>,
    ) -> Result<Response<ListOperatorsReply>, Status> {
        Err(Status::unimplemented("mute"))
    }

    async fn status(
        &self,
        _: Request<WorkerStatusRequest>,
    ) -> Result<Response<WorkerStatusReply>, Status> {
        Err(Status::unimplemented("mute"))
    }

    async fn ping(&self, _: Request<PingRequest>) -> Result<Response<PingReply>, Status> {
        Ok(Response::new(PingReply {}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_acknowledges_fails_the_send_at_its_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mute = Mute::default();
    let streams = mute.streams.clone();
    let router = server_builder(Default::default())
        .unwrap()
        .add_service(WorkerServer::new(mute));
    let _server = ServerHandle::spawn(router, listener).unwrap();

    let deadline = Duration::from_millis(300);
    let (_stop_signal, stop) = watch::channel(());
    let links = acked::hand_offs(deadline, stop);
    for attempt in 1..=2 {
        let started = Instant::now();
        let failed = links
            .send(&url, |seq| HandOffRequest {
                seq,
                request: Some(ChainRequest::default()),
            })
            .await
            .unwrap_err();
        assert!(matches!(failed, acked::Failure::Lost(_)), "{failed:?}");
        assert_eq!(failed.status().code(), Code::DeadlineExceeded, "{failed:?}");
        let waited = started.elapsed();
        // Bounded, not timed: the margin only rules out a hang on a loaded machine.
        assert!(
            waited >= deadline && waited < deadline + Duration::from_secs(10),
            "{waited:?}"
        );
        // The stalled stream was dropped: each send opened its own.
        assert_eq!(links.open_peers(), 0);
        assert_eq!(streams.load(Ordering::SeqCst), attempt);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_to_a_port_nothing_listens_on_was_never_sent_and_says_why() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let (_stop_signal, stop) = watch::channel(());
    let links = acked::hand_offs(Duration::from_secs(2), stop);
    let failed = links
        .send(&url, |seq| HandOffRequest {
            seq,
            request: Some(ChainRequest::default()),
        })
        .await
        .unwrap_err();
    // Never sent: a caller may send it elsewhere without risk of applying it twice.
    assert!(matches!(failed, acked::Failure::NotSent(_)), "{failed:?}");
    // The transport's words survive for callers that show or classify them.
    let message = failed.status().message().to_ascii_lowercase();
    assert!(message.contains("connection refused"), "{message}");
}
