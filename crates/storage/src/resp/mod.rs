//! The RESP endpoint of a storage node (`--resp-listen`): the node speaks the
//! Redis protocol (RESP2, and RESP3 after `HELLO 3`), so `redis-cli`,
//! `redis-benchmark` and every language's Redis client read and write dida.
//! docs/resp.md lists the commands.
//!
//! - `request`: reading commands off the wire, bounded;
//! - `command`: what each command means, and the error replies for the rest;
//! - `reply`: writing replies in RESP2 or RESP3;
//! - `connection`: one client's connection, its pipeline run in segments.
//!
//! Every command goes through the node as the gRPC call would (`routing`): a node
//! that does not lead a key forwards the write to the key's primary, and a read
//! to its replicas. Forwarding rather than answering `MOVED`: dida's ring is not
//! Redis Cluster's 16,384 slots, and a plain client (`redis-cli`, `redis-py`'s
//! `Redis`) cannot follow a redirection at all, while forwarding costs one hop
//! only for the keys the node does not lead.
//!
//! Bounds: connections are held within the limits of every port beside a node's
//! gRPC port (`ConnectionLimits::for_a_side_port`: a quarter of the process's
//! budget, a quarter of that per source; one over is closed at once), commands and
//! arguments are bounded by `request`, pipelines answered in rounds of bounded
//! size. When the cluster has an explicit token
//! (`--cluster-token`), a client must `AUTH` with it before any other command;
//! when it runs with TLS, the endpoint speaks TLS too and wants a client
//! certificate of the cluster's CA (`tls`).

mod command;
mod connection;
mod reply;
mod request;
mod tls;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use dida_proto::connections::{self, ConnectionLimits};
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tracing::{debug, info};

use crate::node_core::Node;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// What every connection of one endpoint shares.
struct Shared {
    node: Arc<Node>,
    /// The password `AUTH` must give: the cluster's explicit token, if it has one.
    token: Option<String>,
    next_client_id: AtomicU64,
    connected: AtomicUsize,
    started: Instant,
    port: u16,
    /// The most clients held at once (`INFO`'s `maxclients`).
    max_clients: usize,
}

impl Shared {
    /// The `INFO` text: Redis's sections and fields where clients read them, and
    /// dida's own. The `redis_version` line is the Redis version whose commands
    /// dida's subset follows, for clients that choose features by it.
    fn info(&self) -> String {
        let (keys, records) = self.node.store.counts();
        format!(
            "# Server\r\nredis_version:7.2.0\r\nredis_mode:standalone\r\n\
             dida_version:{}\r\ndida_node:{}\r\nprocess_id:{}\r\ntcp_port:{}\r\n\
             uptime_in_seconds:{}\r\n\r\n# Clients\r\nconnected_clients:{}\r\n\
             maxclients:{}\r\n\r\n# Replication\r\nrole:master\r\n\r\n\
             # Keyspace\r\ndb0:keys={keys},expires=0,avg_ttl=0\r\ndida_records:{records}\r\n",
            env!("CARGO_PKG_VERSION"),
            self.node.id(),
            std::process::id(),
            self.port,
            self.started.elapsed().as_secs(),
            self.connected.load(Ordering::Relaxed),
            self.max_clients,
        )
    }
}

/// Serves RESP on `listener` until `stop` fires: over TLS when the process has
/// a TLS identity.
pub(crate) fn start(
    listener: TcpListener,
    node: Arc<Node>,
    stop: watch::Receiver<()>,
) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let tls = match &dida_proto::security::installed().tls {
        Some(identity) => Some(tls::acceptor(identity)?),
        None => None,
    };
    Ok(serve(listener, node, tls, stop))
}

async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<()>,
) {
    let port = listener.local_addr().map_or(0, |addr| addr.port());
    let limits = ConnectionLimits::for_a_side_port();
    let shared = Arc::new(Shared {
        node,
        token: dida_proto::security::installed().cluster_token.clone(),
        next_client_id: AtomicU64::new(1),
        connected: AtomicUsize::new(0),
        started: Instant::now(),
        port,
        max_clients: limits.total,
    });
    info!(port, tls = tls.is_some(), "serving RESP");
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut accepted = std::pin::pin!(connections::limited(incoming, limits));
    loop {
        let stream = tokio::select! {
            connection = accepted.next() => match connection {
                Some(Ok(connection)) => connection,
                // `limited` pauses on accept errors rather than yielding them.
                Some(Err(error)) => {
                    debug!(%error, "could not accept a RESP connection");
                    continue;
                }
                None => return,
            },
            _ = stop.changed() => return,
        };
        let peer = tonic::transport::server::Connected::connect_info(&stream).remote_addr();
        let shared = shared.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            shared.connected.fetch_add(1, Ordering::Relaxed);
            match tls {
                None => connection::serve(stream, shared.clone(), stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => connection::serve(stream, shared.clone(), stop).await,
                        Ok(Err(error)) => debug!(?peer, %error, "RESP TLS handshake failed"),
                        Err(_) => debug!(?peer, "RESP TLS handshake timed out"),
                    }
                }
            }
            shared.connected.fetch_sub(1, Ordering::Relaxed);
        });
    }
}
