//! The server's connection limits on real sockets: connections over the per-source
//! or the total limit are closed at once, every loopback address counts as one
//! source, and a closed connection gives its slot back.

use std::time::Duration;

use dida_proto::connections::{limited, ConnectionLimits};
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tonic::transport::server::TcpIncoming;

/// Connects to `to` from the loopback address `from` (127.0.0.0/8 is all local).
async fn connect_from(from: [u8; 4], to: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the server closed `stream` (end of stream or reset) within a second.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => panic!("the server sent data"),
        Err(_) => false,
    }
}

/// Serves `limits` on a fresh loopback port; the connections it admits arrive on
/// the receiver.
async fn serve(
    limits: ConnectionLimits,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<dida_proto::connections::LimitedConnection>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut admitted = Box::pin(limited(TcpIncoming::from(listener), limits));
    let (held_tx, held_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(connection) = admitted.next().await {
            held_tx.send(connection.unwrap()).unwrap();
        }
    });
    (addr, held_rx)
}

#[tokio::test]
async fn connections_over_the_per_source_limit_are_closed_and_slots_come_back() {
    let (addr, mut held_rx) = serve(ConnectionLimits {
        total: 3,
        per_address: 2,
    })
    .await;
    let mut first = connect_from([127, 0, 0, 1], addr).await;
    let _second = connect_from([127, 0, 0, 1], addr).await;
    let server_first = held_rx.recv().await.unwrap();
    let _server_second = held_rx.recv().await.unwrap();
    let mut third = connect_from([127, 0, 0, 1], addr).await;
    assert!(
        closed_by_server(&mut third).await,
        "over the per-source limit"
    );
    // The whole loopback range is one source: another loopback address gains
    // nothing (it once multiplied a local process's share).
    let mut other = connect_from([127, 0, 0, 2], addr).await;
    assert!(
        closed_by_server(&mut other).await,
        "127.0.0.2 counts with 127.0.0.1"
    );

    // Closing a connection gives its slot back.
    drop(server_first);
    assert!(closed_by_server(&mut first).await);
    let mut again = connect_from([127, 0, 0, 3], addr).await;
    assert!(!closed_by_server(&mut again).await, "the slot came back");
    held_rx.recv().await.unwrap();
}

#[tokio::test]
async fn connections_over_the_total_limit_are_closed() {
    let (addr, mut held_rx) = serve(ConnectionLimits {
        total: 2,
        per_address: 4,
    })
    .await;
    let _first = connect_from([127, 0, 0, 1], addr).await;
    let _second = connect_from([127, 0, 0, 1], addr).await;
    let _held = (held_rx.recv().await.unwrap(), held_rx.recv().await.unwrap());
    let mut third = connect_from([127, 0, 0, 1], addr).await;
    assert!(closed_by_server(&mut third).await, "over the total limit");
}

#[test]
fn the_limits_fit_the_process_descriptor_limit() {
    let limits = ConnectionLimits::for_this_process();
    assert!(limits.total >= 16 && limits.per_address <= limits.total);
}
