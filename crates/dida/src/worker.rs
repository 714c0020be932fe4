//! `dida worker`: a worker, configured from its settings
//! ([`dida_settings::WorkerSettings`], where its flags are defined).

use std::time::Duration;

use anyhow::Context;
use dida_core::membership::NodeUrl;
use dida_settings::{RoleSettings, WorkerSettings};
use dida_worker::consistency::ConsistencySettings;
use dida_worker::{SandboxLimits, WorkerConfig};

/// Turns the settings into a worker configuration. Every flag's bound was checked
/// when it was parsed; the settings that depend on one another are checked here.
fn into_config(settings: WorkerSettings) -> anyhow::Result<WorkerConfig> {
    settings.check()?;
    let url = NodeUrl::parse(&settings.url).context("invalid --url")?;
    let storage = settings.storage_membership()?;
    let replication_factor = settings.resolved_replication_factor()?;
    let scheduler = NodeUrl::parse(&settings.scheduler).context("invalid --scheduler")?;
    let listen = settings.listen_addr()?;
    let compile_cache = settings.compile_cache_dir();
    let limits = sandbox_limits(&settings);
    let mut config = WorkerConfig::new(settings.id, url, storage, scheduler);
    config.listen = Some(listen);
    config.gossip_delay = Duration::from_millis(settings.gossip_delay);
    config.drain_timeout = Duration::from_secs(settings.drain_timeout);
    config.compile_cache = compile_cache;
    config.limits = limits;
    config.operators_dir = settings.operators;
    config.replication_factor = replication_factor;
    config.vnodes = settings.vnodes;
    config.builtins = dida_operators::builtin()
        .iter()
        .map(|op| (op.name.to_string(), op.wasm))
        .collect();
    config.consistency = ConsistencySettings {
        pinned_read_deadline: Duration::from_millis(settings.consistency_deadline),
        ..ConsistencySettings::default()
    };
    config.rpc_deadline = Duration::from_millis(settings.rpc_deadline);
    config.metrics_listen = crate::metrics_args::checked(settings.metrics_listen)?;
    config.debug_sink = settings
        .debug_sink
        .map(|url| NodeUrl::parse(&url))
        .transpose()
        .context("invalid --debug-sink")?;
    Ok(config)
}

/// The sandbox limits of a worker with these settings.
fn sandbox_limits(settings: &WorkerSettings) -> SandboxLimits {
    SandboxLimits {
        fuel: settings.max_fuel,
        memory_bytes: settings.max_memory_mb * 1024 * 1024,
        wall_time: Duration::from_millis(settings.max_wall_ms),
        concurrent_invocations: settings.concurrency,
    }
}

/// The sandbox limits of a worker started with default settings, as the
/// PuppetMaster and local clusters start them: what `dida build` compiles an
/// operator for, so such workers find it in their compile cache.
pub fn default_sandbox_limits() -> anyhow::Result<SandboxLimits> {
    let settings = WorkerSettings::new(
        "w",
        "http://127.0.0.1:1",
        "s=http://127.0.0.1:2",
        "http://127.0.0.1:3",
    )?;
    Ok(sandbox_limits(&settings))
}

/// Runs a worker until interrupted.
pub async fn run(settings: WorkerSettings) -> anyhow::Result<()> {
    let config = into_config(settings)?;
    // Deployed operators are compiled in a child `dida compile-operator`.
    dida_worker::bounded::use_compiler_process(
        std::env::current_exe().context("cannot locate the running dida binary")?,
    );
    dida_worker::node::run(config).await
}
