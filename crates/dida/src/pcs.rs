//! `dida pcs`: flags of the Process Creation Service.

use anyhow::{bail, Context};
use clap::Args;
use dida_core::limits::{check_deadline_s, DEFAULT_PCS_MAX_NODES};
use dida_pcs::auth::TOKEN_ENV;
use dida_pcs::PcsConfig;

/// Flags of `dida pcs`.
#[derive(Debug, Args)]
pub struct PcsArgs {
    /// Address to listen on. Loopback by default: give an address reachable from the
    /// PuppetMaster's machine (and a --token) to start nodes for a remote PuppetMaster.
    #[arg(long, default_value_t = format!("127.0.0.1:{}", dida_pcs::DEFAULT_PORT))]
    listen: String,
    /// Every request must carry this token (the PuppetMaster's --token).
    #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
    token: Option<String>,
    /// Seconds a started node may take to listen on its URL before it is killed
    /// (1 to 3600).
    #[arg(long, default_value_t = 30)]
    start_timeout: u64,
    /// Most nodes this PCS runs at once; a start beyond it is refused. See
    /// docs/limits.md.
    #[arg(long, default_value_t = DEFAULT_PCS_MAX_NODES)]
    max_nodes: usize,
    #[command(flatten)]
    metrics: crate::metrics_args::MetricsArgs,
}

/// Runs a PCS until interrupted; the nodes it started are killed when it stops.
pub async fn run(args: PcsArgs) -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("cannot locate the running dida binary")?;
    let mut config = PcsConfig::new(binary);
    config.token = args.token.filter(|t| !t.is_empty());
    if args.max_nodes == 0 {
        bail!("--max-nodes must be at least 1");
    }
    config.start_timeout =
        check_deadline_s("--start-timeout", args.start_timeout).map_err(anyhow::Error::msg)?;
    config.max_nodes = args.max_nodes;
    config.metrics_listen = args.metrics.listen()?;
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
