//! `dida scheduler`: flags of the scheduler.

use anyhow::{bail, Context};
use clap::Args;
use dida_core::limits::{
    check_deadline_ms, check_deadline_s, replication_factor, DEFAULT_RETAINED_BYTES,
};
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
    /// Seconds after which an execution with no outcome is failed (1 to 3600).
    #[arg(long, default_value_t = 300)]
    execution_timeout: u64,
    /// Deadline, in milliseconds, of every call to a worker.
    #[arg(long, default_value_t = 5000)]
    rpc_deadline: u64,
    /// Every storage node, ID=URL,…: the scheduler then follows which of them
    /// crashed and shows it in its status (it does not otherwise use storage).
    #[arg(long)]
    storage: Option<String>,
    /// The storage cluster's replication factor (with --storage; default 3, or the
    /// number of storage nodes if fewer).
    #[arg(long)]
    replication_factor: Option<usize>,
    /// MiB of outcomes (and of running executions' inputs) kept for clients to
    /// fetch; beyond it the oldest outcomes are forgotten, and submits are refused
    /// while running executions hold it all. See docs/limits.md.
    #[arg(long, default_value_t = DEFAULT_RETAINED_BYTES / MIB)]
    max_retained_mb: usize,
    /// Serve the HTTP gateway (JSON: register and invoke applications, inspect
    /// executions and operators; see docs/http.md) on this address, for example
    /// 127.0.0.1:8080.
    #[arg(long)]
    http_listen: Option<String>,
    #[command(flatten)]
    metrics: crate::metrics_args::MetricsArgs,
}

const MIB: usize = 1024 * 1024;

/// Largest `--max-retained-mb` (64 GiB): beyond it the flag is surely a typo.
const MAX_RETAINED_MB: usize = 64 * 1024;

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
    config.execution_timeout = check_deadline_s("--execution-timeout", args.execution_timeout)
        .map_err(anyhow::Error::msg)?;
    config.rpc_deadline =
        check_deadline_ms("--rpc-deadline", args.rpc_deadline).map_err(anyhow::Error::msg)?;
    if args.max_retained_mb == 0 || args.max_retained_mb > MAX_RETAINED_MB {
        bail!(
            "--max-retained-mb must be from 1 to {MAX_RETAINED_MB}, got {}",
            args.max_retained_mb
        );
    }
    config.max_retained_bytes = args.max_retained_mb * MIB;
    config.metrics_listen = args.metrics.listen()?;
    config.builtin_operators = dida_operators::builtin()
        .iter()
        .map(|operator| operator.name.to_string())
        .collect();
    // Deploys are checked by compiling them in a child `dida compile-operator`.
    dida_worker::bounded::use_compiler_process(
        std::env::current_exe().context("cannot locate the running dida binary")?,
    );
    if let Some(storage) = &args.storage {
        let membership = Membership::parse(storage).context("invalid --storage")?;
        let replication_factor = replication_factor(args.replication_factor, membership.len())
            .map_err(anyhow::Error::msg)?;
        config.storage = Some((membership, replication_factor));
    }
    if let Some(addr) = &args.http_listen {
        let url = NodeUrl::parse(&format!("http://{addr}"))
            .with_context(|| format!("invalid --http-listen {addr:?}: expected HOST:PORT"))?;
        config.http_listen = Some(url);
    }
    dida_scheduler::node::run(config).await
}
