//! `dida pcs`: flags of the Process Creation Service.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
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
    /// Seconds a started node may take to listen on its URL before it is killed.
    #[arg(long, default_value_t = 30)]
    start_timeout: u64,
}

/// Runs a PCS until interrupted; the nodes it started are killed when it stops.
pub async fn run(args: PcsArgs) -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("cannot locate the running dida binary")?;
    let mut config = PcsConfig::new(binary);
    config.token = args.token.filter(|t| !t.is_empty());
    config.start_timeout = Duration::from_secs(args.start_timeout);
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
