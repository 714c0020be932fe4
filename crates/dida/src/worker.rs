//! `dida worker`: flags of a worker.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use dida_core::limits::{check_deadline_ms, check_vnodes, replication_factor};
use dida_core::membership::NodeUrl;
use dida_core::script::MAX_GOSSIP_DELAY_MS;
use dida_core::Membership;
use dida_worker::consistency::ConsistencySettings;
use dida_worker::{SandboxLimits, WorkerConfig};

/// Flags of `dida worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// This worker's id (for example w1).
    #[arg(long)]
    id: String,
    /// Where this worker serves, for example http://127.0.0.1:4001.
    #[arg(long)]
    url: String,
    /// Milliseconds the worker waits before forwarding a request to the next worker.
    #[arg(long, default_value_t = 0)]
    gossip_delay: u64,
    /// Every storage node: ID=URL,ID=URL,…
    #[arg(long)]
    storage: String,
    /// The scheduler's URL.
    #[arg(long)]
    scheduler: String,
    /// A directory of <ClassName>.wasm operators; they take precedence over the
    /// built-in operators of the same name.
    #[arg(long)]
    operators: Option<PathBuf>,
    /// The storage cluster's replication factor (default 3, or the number of
    /// storage nodes if fewer).
    #[arg(long)]
    replication_factor: Option<usize>,
    /// The storage cluster's virtual nodes per node.
    #[arg(long, default_value_t = 128)]
    vnodes: u32,
    /// CPU budget of one operator invocation, in fuel units (~1 per instruction).
    #[arg(long, default_value_t = SandboxLimits::default().fuel)]
    max_fuel: u64,
    /// Memory limit of one operator invocation, in MiB (1 to 4096, WebAssembly's
    /// largest 32-bit memory).
    #[arg(long, default_value_t = 64)]
    max_memory_mb: usize,
    /// Wall-time limit of one operator invocation, loading the operator included, in
    /// milliseconds (1 to 3600000).
    #[arg(long, default_value_t = 30_000)]
    max_wall_ms: u64,
    /// Operator invocations that may run at once (1 to 1024: each reserves a sandbox
    /// slot of --max-memory-mb).
    #[arg(long, default_value_t = 64)]
    concurrency: u32,
    /// How long a read of a version this execution already read or wrote may wait for
    /// gossip to bring it to a replica, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    consistency_deadline: u64,
    /// Deadline, in milliseconds, of every call to another node.
    #[arg(long, default_value_t = 5000)]
    rpc_deadline: u64,
    /// Debug mode: after each operator, send the records it wrote and the metadata
    /// to this PuppetMaster debug sink (http://HOST:PORT, usually port 10001).
    #[arg(long)]
    debug_sink: Option<String>,
    #[command(flatten)]
    metrics: crate::metrics_args::MetricsArgs,
}

/// Most operator invocations a worker runs at once: each holds a pool slot whose
/// memories are reserved up front (virtual memory), so the pool must stay sane.
const MAX_CONCURRENCY: u32 = 1024;

/// Largest `--max-memory-mb`: a 32-bit WebAssembly memory cannot pass 4 GiB.
const MAX_MEMORY_MB: usize = 4096;

impl WorkerArgs {
    /// This node's id: the name of the certificate it presents by default.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn into_config(self) -> anyhow::Result<WorkerConfig> {
        let url = NodeUrl::parse(&self.url).context("invalid --url")?;
        let storage = Membership::parse(&self.storage).context("invalid --storage")?;
        let replication_factor = replication_factor(self.replication_factor, storage.len())
            .map_err(anyhow::Error::msg)?;
        check_vnodes(self.vnodes).map_err(anyhow::Error::msg)?;
        let deadline =
            |flag: &str, ms: u64| check_deadline_ms(flag, ms).map_err(anyhow::Error::msg);
        let wall_time = deadline("--max-wall-ms", self.max_wall_ms)?;
        let pinned_read_deadline = deadline("--consistency-deadline", self.consistency_deadline)?;
        let rpc_deadline = deadline("--rpc-deadline", self.rpc_deadline)?;
        if self.gossip_delay > MAX_GOSSIP_DELAY_MS {
            bail!(
                "--gossip-delay must be at most {MAX_GOSSIP_DELAY_MS} milliseconds, got {}",
                self.gossip_delay
            );
        }
        if self.max_memory_mb == 0 || self.max_memory_mb > MAX_MEMORY_MB {
            bail!(
                "--max-memory-mb must be from 1 to {MAX_MEMORY_MB}, got {}",
                self.max_memory_mb
            );
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            bail!(
                "--concurrency must be from 1 to {MAX_CONCURRENCY}, got {}",
                self.concurrency
            );
        }
        if self.max_fuel == 0 {
            bail!("--max-fuel must be positive");
        }
        let scheduler = NodeUrl::parse(&self.scheduler).context("invalid --scheduler")?;
        let mut config = WorkerConfig::new(self.id, url, storage, scheduler);
        config.gossip_delay = Duration::from_millis(self.gossip_delay);
        config.operators_dir = self.operators;
        config.replication_factor = replication_factor;
        config.vnodes = self.vnodes;
        config.builtins = dida_operators::builtin()
            .iter()
            .map(|op| (op.name.to_string(), op.wasm))
            .collect();
        config.limits = SandboxLimits {
            fuel: self.max_fuel,
            memory_bytes: self.max_memory_mb * 1024 * 1024,
            wall_time,
            concurrent_invocations: self.concurrency,
        };
        config.consistency = ConsistencySettings {
            pinned_read_deadline,
            ..ConsistencySettings::default()
        };
        config.rpc_deadline = rpc_deadline;
        config.metrics_listen = self.metrics.listen()?;
        config.debug_sink = self
            .debug_sink
            .map(|url| NodeUrl::parse(&url))
            .transpose()
            .context("invalid --debug-sink")?;
        Ok(config)
    }
}

/// Runs a worker until interrupted.
pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    // Deployed operators are compiled in a child `dida compile-operator`.
    dida_worker::bounded::use_compiler_process(
        std::env::current_exe().context("cannot locate the running dida binary")?,
    );
    dida_worker::node::run(config).await
}
