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
//! Bounds: at most [`MAX_CONNECTIONS`] clients at once (the next is told so and
//! closed), commands and arguments bounded by `request`, pipelines answered in
//! rounds of bounded size. When the cluster has an explicit token
//! (`--cluster-token`), a client must `AUTH` with it before any other command;
//! when it runs with TLS, the endpoint speaks TLS too and wants a client
//! certificate of the cluster's CA (`tls`).

mod command;
mod connection;
mod reply;
mod request;
mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

use crate::node_core::Node;

/// The most clients served at once by one node's RESP endpoint, like Redis's
/// `maxclients`; the next client is answered with an error and closed.
pub const MAX_CONNECTIONS: usize = 4096;

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
             maxclients:{MAX_CONNECTIONS}\r\n\r\n# Replication\r\nrole:master\r\n\r\n\
             # Keyspace\r\ndb0:keys={keys},expires=0,avg_ttl=0\r\ndida_records:{records}\r\n",
            env!("CARGO_PKG_VERSION"),
            self.node.id(),
            std::process::id(),
            self.port,
            self.started.elapsed().as_secs(),
            self.connected.load(Ordering::Relaxed),
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
    let shared = Arc::new(Shared {
        node,
        token: dida_proto::security::installed().cluster_token.clone(),
        next_client_id: AtomicU64::new(1),
        connected: AtomicUsize::new(0),
        started: Instant::now(),
        port,
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    info!(port, tls = tls.is_some(), "serving RESP");
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or the like: back off, keep serving.
                    warn!(%error, "RESP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream, peer));
            continue;
        };
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
                        Ok(Err(error)) => debug!(%peer, %error, "RESP TLS handshake failed"),
                        Err(_) => debug!(%peer, "RESP TLS handshake timed out"),
                    }
                }
            }
            shared.connected.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
}

/// Tells a client over [`MAX_CONNECTIONS`] why it is closed.
async fn refuse(mut stream: tokio::net::TcpStream, peer: SocketAddr) {
    debug!(%peer, "RESP client refused: too many clients");
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        stream.write_all(b"-ERR max number of clients reached\r\n"),
    )
    .await;
}
