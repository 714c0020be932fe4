//! `dida pcs`: flags of the Process Creation Service.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use dida_core::limits::DEFAULT_PCS_MAX_NODES;
use dida_pcs::auth::TOKEN_ENV;
use dida_pcs::PcsConfig;
use dida_settings::values;

/// Flags of `dida pcs`.
#[derive(Debug, Args)]
pub struct PcsArgs {
    /// Address to listen on. Loopback by default: give an address reachable from the
    /// PuppetMaster's machine (and a --token) to start nodes for a remote PuppetMaster.
    #[arg(long, env = "DIDA_PCS_LISTEN",
          default_value_t = format!("127.0.0.1:{}", dida_pcs::DEFAULT_PORT))]
    listen: String,
    /// Every request must carry this token (the PuppetMaster's --token).
    #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
    token: Option<String>,
    /// Seconds a started node may take to listen on its URL before it is killed
    /// (1 to 3600).
    #[arg(long, env = "DIDA_PCS_START_TIMEOUT", default_value_t = 30,
          value_parser = values::deadline_s())]
    start_timeout: u64,
    /// Most nodes this PCS runs at once; a start beyond it is refused. See
    /// docs/limits.md.
    #[arg(long, env = "DIDA_PCS_MAX_NODES", default_value_t = DEFAULT_PCS_MAX_NODES,
          value_parser = values::positive::<usize>())]
    max_nodes: usize,
    /// Serve Prometheus metrics (GET /metrics), liveness (GET /healthz) and
    /// readiness (GET /readyz) over HTTP at HOST:PORT (port 0 picks one). See
    /// docs/observability.md. Like every listener, it refuses an address other
    /// machines can reach unless the process has TLS or a cluster token, or
    /// --insecure.
    #[arg(long, env = "DIDA_PCS_METRICS_LISTEN", value_name = "HOST:PORT")]
    metrics_listen: Option<SocketAddr>,
}

/// Runs a PCS until interrupted; the nodes it started are killed when it stops.
pub async fn run(args: PcsArgs) -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("cannot locate the running dida binary")?;
    let mut config = PcsConfig::new(binary);
    config.token = args.token.filter(|t| !t.is_empty());
    config.start_timeout = Duration::from_secs(args.start_timeout);
    config.max_nodes = args.max_nodes;
    config.metrics_listen = crate::metrics_args::checked(args.metrics_listen)?;
    // A PCS starts processes: reachable from other machines, it needs its own
    // token or the cluster's authentication.
    if config.token.is_none() {
        let host = args
            .listen
            .rsplit_once(':')
            .map_or(args.listen.as_str(), |(host, _)| host);
        dida_proto::security::installed().check_exposure(host)?;
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (is the port already in use?)",
                args.listen
            )
        })?;
    dida_pcs::node::run(config, listener).await
}
