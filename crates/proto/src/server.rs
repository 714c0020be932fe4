//! Serving a dida role: the one way every node runs its gRPC server, so start-up,
//! shutdown, socket options and signal handling behave the same for storage nodes,
//! workers, the scheduler, the PCS and the debug sink, in-process or as processes.
//!
//! Every role builds its router with [`crate::transport::server_builder`] and serves
//! it with [`ServerHandle::spawn`]; the latter is where accepted sockets get their
//! options. That split matters: a router served on a caller's own listener never
//! applies the builder's `tcp_nodelay`, so a server built that way answered every
//! small reply under Nagle's algorithm (a 40 ms tail at 64 requests in flight).

use std::net::SocketAddr;

use anyhow::Context;
use dida_core::listen::ListenAddr;
use dida_core::membership::NodeUrl;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

use crate::connections::{self, ConnectionLimits, LimitedConnection};
use crate::transport::{NodeRouter, TCP_KEEPALIVE};

/// A running gRPC server and the background tasks of its node. Dropping it stops
/// them all.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    tasks: Vec<JoinHandle<()>>,
    stop_signal: Option<watch::Sender<()>>,
}

impl ServerHandle {
    /// Serves `router` on `listener` in the current runtime. Every accepted
    /// connection gets `TCP_NODELAY` and TCP keep-alive (see [`accepting`]).
    pub fn spawn(router: NodeRouter, listener: TcpListener) -> anyhow::Result<Self> {
        let addr = listener
            .local_addr()
            .context("listener has no local address")?;
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(router.serve_with_incoming_shutdown(
            accepting(listener),
            async {
                let _ = shutdown_rx.await;
            },
        ));
        Ok(Self {
            addr,
            shutdown: Some(shutdown_tx),
            server: Some(server),
            tasks: Vec::new(),
            stop_signal: None,
        })
    }

    /// Ties background tasks to the server: they are aborted when it stops.
    pub fn with_tasks(mut self, tasks: impl IntoIterator<Item = JoinHandle<()>>) -> Self {
        self.tasks.extend(tasks);
        self
    }

    /// Drops `signal` when the server stops, so every receiver of it sees its
    /// `changed()` fail. Long-lived calls (streams that would otherwise keep a
    /// graceful shutdown waiting for ever) and the tasks serving them end on it.
    pub fn with_stop_signal(mut self, signal: watch::Sender<()>) -> Self {
        self.stop_signal = Some(signal);
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the background tasks, then the server, and waits for it to finish.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop();
        if let Some(server) = self.server.take() {
            server.await.context("server task panicked")??;
        }
        Ok(())
    }

    fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        self.stop_signal = None;
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// The connections `listener` accepts, each with the options every dida server
/// socket needs: `TCP_NODELAY`, because every message is a small request or reply
/// that must leave at once (with Nagle's algorithm a reply waits for the peer's
/// delayed ACK), and TCP keep-alive, so a peer that vanished without a FIN is
/// noticed by the kernel even on an idle connection.
/// Connections are held within the limits of [`ConnectionLimits::for_this_process`]
/// (see [`crate::connections`]).
fn accepting(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<LimitedConnection>> {
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(TCP_KEEPALIVE));
    connections::limited(incoming, ConnectionLimits::for_this_process())
}

/// Binds `host:port` for a node, with an error that says what went wrong.
///
/// Refuses a host other machines can reach when this process authenticates
/// nothing ([`crate::security::Security::check_exposure`]).
pub async fn bind(host: &str, port: u16) -> anyhow::Result<TcpListener> {
    crate::security::installed().check_exposure(host)?;
    TcpListener::bind((host, port))
        .await
        .with_context(|| format!("cannot listen on {host}:{port} (is the port already in use?)"))
}

/// Binds the address a node listens on (`--listen`, or its URL's host and port)
/// for a node whose peers call it at `url`.
///
/// Refuses an `https://` URL when this process has no TLS: peers would call it
/// with TLS and never be answered.
pub async fn bind_node(listen: &ListenAddr, url: &NodeUrl) -> anyhow::Result<TcpListener> {
    crate::security::installed().check_scheme(&url.to_string())?;
    bind(&listen.host, listen.port).await
}

/// Resolves on Ctrl-C or SIGTERM: how a node process knows to stop.
pub async fn wait_for_termination() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
