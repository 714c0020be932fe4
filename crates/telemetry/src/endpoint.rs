//! The HTTP endpoint of `--metrics-listen`: `GET /metrics` for Prometheus,
//! `GET /healthz` (the process serves) and `GET /readyz` (it can take traffic).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{ReadinessCheck, Telemetry};

/// The content type of the OpenMetrics text format `Telemetry::encode` writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone)]
struct Endpoint {
    telemetry: Arc<Telemetry>,
    ready: ReadinessCheck,
}

/// Binds `addr` and serves the node's metrics, liveness and readiness there, until
/// the returned task is aborted (tie it to the node's server). Returns the bound
/// address (the port chosen when asked for port 0).
pub(crate) async fn serve(
    addr: SocketAddr,
    telemetry: Arc<Telemetry>,
    ready: ReadinessCheck,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))?;
    let addr = listener
        .local_addr()
        .context("metrics listener has no address")?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Endpoint { telemetry, ready });
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            warn!(%error, "metrics endpoint stopped");
        }
    });
    info!(%addr, "serving /metrics, /healthz and /readyz");
    Ok((addr, task))
}

async fn metrics(State(endpoint): State<Endpoint>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, OPENMETRICS)],
        endpoint.telemetry.encode(),
    )
}

async fn readyz(State(endpoint): State<Endpoint>) -> impl IntoResponse {
    match (endpoint.ready)() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}
