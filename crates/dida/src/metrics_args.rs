//! `--metrics-listen`, the one definition every role's flags flatten in.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;

/// Where a node serves `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics (GET /metrics), liveness (GET /healthz) and
    /// readiness (GET /readyz) over HTTP at HOST:PORT (port 0 picks one). Without
    /// it the node records no per-RPC metrics. See docs/observability.md.
    /// Like every listener, it refuses an address other machines can reach unless
    /// the process has TLS or a cluster token, or --insecure.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_listen: Option<SocketAddr>,
}

impl MetricsArgs {
    /// Where to serve the metrics, once checked like every other listener
    /// (`Security::check_exposure`): the endpoint shows the cluster's members,
    /// load and traffic, so it is kept to loopback unless the cluster is secured or
    /// `--insecure` says so. The only way a role reads the flag.
    pub fn listen(&self) -> anyhow::Result<Option<SocketAddr>> {
        if let Some(addr) = self.metrics_listen {
            dida_proto::security::installed()
                .check_exposure(&addr.ip().to_string())
                .context("--metrics-listen")?;
        }
        Ok(self.metrics_listen)
    }
}
