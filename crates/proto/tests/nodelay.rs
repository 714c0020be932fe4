//! Regression test of the transport: both ends of every connection between dida
//! nodes run with `TCP_NODELAY`.
//!
//! A server once served its router on its own listener, which silently skipped the
//! builder's `tcp_nodelay`: every reply then waited under Nagle's algorithm for the
//! client's delayed ACK, which showed only as a 40 ms p99 in benchmarks. This test
//! reads the option back from the very sockets a [`ServerHandle`] accepted and a
//! [`lazy_channel`] opened — both live in this process — after a real call.

use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

use dida_proto::control::debug_sink_client::DebugSinkClient;
use dida_proto::control::debug_sink_server::{DebugSink, DebugSinkServer};
use dida_proto::control::{DebugReportReply, DebugReportRequest};
use dida_proto::server::ServerHandle;
use dida_proto::transport::{lazy_channel, server_builder};
use socket2::SockRef;
use tonic::{Request, Response, Status};

/// The smallest real service to serve.
struct Sink;

#[tonic::async_trait]
impl DebugSink for Sink {
    async fn report(
        &self,
        _request: Request<DebugReportRequest>,
    ) -> Result<Response<DebugReportReply>, Status> {
        Ok(Response::new(DebugReportReply {}))
    }
}

/// A TCP socket open in this process: its addresses and whether `TCP_NODELAY` is on.
#[derive(Debug)]
struct OpenSocket {
    local: SocketAddr,
    peer: SocketAddr,
    nodelay: bool,
}

/// Every connected TCP socket this process holds, read through `/proc/self/fd`.
fn open_sockets() -> Vec<OpenSocket> {
    let mut sockets = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd is readable") {
        let Ok(entry) = entry else { continue };
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor was open when listed and the test's connections stay
        // open until it ends; we only read options of it and never close it.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = SockRef::from(&fd);
        let (Ok(local), Ok(peer), Ok(nodelay)) = (
            socket.local_addr(),
            socket.peer_addr(),
            socket.tcp_nodelay(),
        ) else {
            continue;
        };
        let (Some(local), Some(peer)) = (local.as_socket(), peer.as_socket()) else {
            continue;
        };
        sockets.push(OpenSocket {
            local,
            peer,
            nodelay,
        });
    }
    sockets
}

#[tokio::test]
async fn both_ends_of_a_connection_run_with_tcp_nodelay() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let router = server_builder(Default::default())
        .unwrap()
        .add_service(DebugSinkServer::new(Sink));
    let server = ServerHandle::spawn(router, listener).unwrap();
    let addr = server.local_addr();

    let channel = lazy_channel(&format!("http://{addr}"), Duration::from_secs(5)).unwrap();
    DebugSinkClient::new(channel.clone())
        .report(DebugReportRequest::default())
        .await
        .expect("the call succeeds");

    let sockets = open_sockets();
    let accepted: Vec<&OpenSocket> = sockets.iter().filter(|s| s.local == addr).collect();
    let connected: Vec<&OpenSocket> = sockets.iter().filter(|s| s.peer == addr).collect();
    assert_eq!(accepted.len(), 1, "one accepted connection: {sockets:?}");
    assert_eq!(connected.len(), 1, "one client connection: {sockets:?}");
    assert_eq!(
        accepted[0].peer, connected[0].local,
        "the two ends of one connection"
    );
    assert!(
        accepted[0].nodelay,
        "the server's accepted socket runs without TCP_NODELAY (Nagle's algorithm on)"
    );
    assert!(
        connected[0].nodelay,
        "the client's socket runs without TCP_NODELAY (Nagle's algorithm on)"
    );
    drop(channel);
    server.shutdown().await.unwrap();
}
