//! `dida dashboard`: the web dashboard of a cluster that is already running (the
//! PuppetMaster serves its own with `dida pm --dashboard`).

use std::net::SocketAddr;

use anyhow::{bail, Context};
use clap::Args;
use dida_core::membership::{Membership, NodeUrl};
use dida_dashboard::{DashboardConfig, Topology};
use tokio::sync::watch;

/// Flags of `dida dashboard`.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Where to serve the page (HOST:PORT).
    #[arg(long, env = "DIDA_DASHBOARD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Every storage node: ID=URL,ID=URL,… in the order the nodes were given it.
    #[arg(long, env = "DIDA_PEERS")]
    storage: Option<String>,
    /// The scheduler's URL (the workers are learned from it).
    #[arg(long, env = "DIDA_SCHEDULER")]
    scheduler: Option<String>,
}

/// Serves the dashboard until Ctrl-C.
pub async fn run(args: DashboardArgs) -> anyhow::Result<()> {
    if args.storage.is_none() && args.scheduler.is_none() {
        bail!(
            "give --storage ID=URL,… and/or --scheduler URL: the dashboard needs a cluster to show"
        );
    }
    let storage = match &args.storage {
        Some(spec) => Membership::parse(spec)
            .context("invalid --storage")?
            .members()
            .iter()
            .map(|m| (m.id.clone(), m.url.to_string()))
            .collect(),
        None => Vec::new(),
    };
    if let Some(url) = &args.scheduler {
        NodeUrl::parse(url).context("invalid --scheduler")?;
    }
    let (_topology_tx, topology) = watch::channel(Topology::fixed(storage, args.scheduler));
    let handle = dida_dashboard::start(DashboardConfig {
        listen: args.listen,
        topology,
        feed: None,
        script: None,
    })
    .await?;
    eprintln!("dashboard: http://{}/", handle.local_addr());
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    Ok(())
}
