//! Serving dida's browser- and HTTP-facing endpoints (the scheduler's gateway, the
//! dashboard) with the same connection policy as its gRPC servers.
//!
//! `axum::serve` holds every connection it accepts for as long as the peer keeps
//! it open, and waits for a request's headers for ever: 19,980 idle connections
//! once took every descriptor of a scheduler (its gRPC port stopped accepting too,
//! so `dida run` timed out), and a client sending its headers a byte at a time
//! (slowloris) holds a connection as long as it likes. Here every connection is
//! accepted within [`ConnectionLimits`] ([`crate::connections`], one definition of
//! the policy), and one that has not sent a request's headers within
//! [`HEADER_READ_TIMEOUT`] is closed. Handlers that read a body bound the time they
//! wait for it with [`BODY_READ_TIMEOUT`].

use std::time::Duration;

use futures::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tonic::transport::server::TcpIncoming;
use tracing::debug;

use crate::connections::{self, ConnectionLimits};

/// How long a connection may take to send a request's headers, counted from when
/// the server starts waiting for them (the connection opening, or the end of the
/// previous response): an idle or trickling client is closed after it. A browser
/// or `curl` sends its headers at once; keep-alive connections a browser parks are
/// simply reopened.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a handler waits for a whole request body (the largest is an
/// application file of 4 MiB): a body trickled slower than that is refused with
/// 408 instead of holding the connection and its buffer.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` over HTTP/1.1 on `listener` until the returned future is
/// dropped (every connection it serves is closed with it). Connections are held
/// within `limits`; headers must arrive within [`HEADER_READ_TIMEOUT`].
pub async fn serve(listener: TcpListener, router: axum::Router, limits: ConnectionLimits) {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut accepted = std::pin::pin!(connections::limited(incoming, limits));
    let mut serving = JoinSet::new();
    loop {
        tokio::select! {
            connection = accepted.next() => match connection {
                Some(Ok(connection)) => {
                    let service = TowerToHyperService::new(router.clone());
                    serving.spawn(async move {
                        let served = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEADER_READ_TIMEOUT)
                            .serve_connection(TokioIo::new(connection), service)
                            .with_upgrades()
                            .await;
                        if let Err(error) = served {
                            debug!(%error, "HTTP connection ended with an error");
                        }
                    });
                }
                // `limited` pauses on accept errors rather than yielding them.
                Some(Err(error)) => debug!(%error, "could not accept an HTTP connection"),
                None => return,
            },
            Some(_) = serving.join_next() => {}
        }
    }
}
