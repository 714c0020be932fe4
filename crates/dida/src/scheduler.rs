//! `dida scheduler`: the scheduler, configured from its settings
//! ([`dida_settings::SchedulerSettings`], where its flags are defined).

use std::time::Duration;

use anyhow::Context;
use dida_core::membership::NodeUrl;
use dida_scheduler::SchedulerConfig;
use dida_settings::{RoleSettings, SchedulerSettings};

/// Runs the scheduler until interrupted.
pub async fn run(settings: SchedulerSettings) -> anyhow::Result<()> {
    settings.check()?;
    let url = NodeUrl::parse(&settings.url).context("invalid --url")?;
    let workers = settings.worker_membership()?;
    let storage = settings.storage_membership()?;
    let max_retained_bytes = settings.max_retained_bytes();
    let listen = settings.listen_addr()?;
    let compile_cache = settings.compile_cache_dir();
    let mut config = SchedulerConfig::new(settings.id, url, workers);
    config.compile_cache = compile_cache;
    config.listen = Some(listen);
    config.worker_lease = Duration::from_millis(settings.worker_lease_ms);
    config.execution_timeout = Duration::from_secs(settings.execution_timeout);
    config.rpc_deadline = Duration::from_millis(settings.rpc_deadline);
    config.max_retained_bytes = max_retained_bytes;
    config.metrics_listen = crate::metrics_args::checked(settings.metrics_listen)?;
    config.builtin_operators = dida_operators::builtin()
        .iter()
        .map(|operator| operator.name.to_string())
        .collect();
    // Deploys are checked by compiling them in a child `dida compile-operator`.
    dida_worker::bounded::use_compiler_process(
        std::env::current_exe().context("cannot locate the running dida binary")?,
    );
    config.storage = storage;
    if let Some(addr) = &settings.http_listen {
        let url = NodeUrl::parse(&format!("http://{addr}"))
            .with_context(|| format!("invalid --http-listen {addr:?}: expected HOST:PORT"))?;
        config.http_listen = Some(url);
    }
    dida_scheduler::node::run(config).await
}
