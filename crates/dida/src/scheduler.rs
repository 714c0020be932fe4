//! `dida scheduler`: flags of the scheduler.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use dida_core::membership::NodeUrl;
use dida_core::Membership;
use dida_scheduler::SchedulerConfig;

/// Flags of `dida scheduler`.
#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// The scheduler's id.
    #[arg(long, default_value = "scheduler")]
    id: String,
    /// Where the scheduler serves, for example http://127.0.0.1:3000.
    #[arg(long)]
    url: String,
    /// Every worker: ID=URL,ID=URL,…
    #[arg(long)]
    workers: String,
    /// Seconds after which an execution with no outcome is failed.
    #[arg(long, default_value_t = 300)]
    execution_timeout: u64,
    /// Deadline, in milliseconds, of every call to a worker.
    #[arg(long, default_value_t = 5000)]
    rpc_deadline: u64,
    /// Every storage node, ID=URL,…: the scheduler then follows which of them
    /// crashed and shows it in its status (it does not otherwise use storage).
    #[arg(long)]
    storage: Option<String>,
    /// The storage cluster's replication factor (with --storage).
    #[arg(long, default_value_t = 3)]
    replication_factor: usize,
}

impl SchedulerArgs {
    /// The scheduler's id: the name of the certificate it presents by default.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Runs the scheduler until interrupted.
pub async fn run(args: SchedulerArgs) -> anyhow::Result<()> {
    let url = NodeUrl::parse(&args.url).context("invalid --url")?;
    let workers = Membership::parse(&args.workers).context("invalid --workers")?;
    let mut config = SchedulerConfig::new(args.id, url, workers);
    config.execution_timeout = Duration::from_secs(args.execution_timeout);
    config.rpc_deadline = Duration::from_millis(args.rpc_deadline);
    if let Some(storage) = &args.storage {
        let membership = Membership::parse(storage).context("invalid --storage")?;
        config.storage = Some((membership, args.replication_factor));
    }
    dida_scheduler::node::run(config).await
}
