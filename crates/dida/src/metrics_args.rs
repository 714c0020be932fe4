//! `--metrics-listen`, the one definition every role's flags flatten in.

use std::net::SocketAddr;

use clap::Args;

/// Where a node serves `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics (GET /metrics), liveness (GET /healthz) and
    /// readiness (GET /readyz) over HTTP at HOST:PORT (port 0 picks one). Without
    /// it the node records no per-RPC metrics. See docs/observability.md.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<SocketAddr>,
}
