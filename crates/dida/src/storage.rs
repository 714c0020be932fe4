//! `dida storage`: a storage node, configured from its settings
//! ([`dida_settings::StorageSettings`], where its flags are defined).

use std::time::Duration;

use anyhow::Context;
use dida_core::Membership;
use dida_settings::{Fsync, RoleSettings, StorageSettings};
use dida_storage::config::FsyncPolicy;
use dida_storage::StorageConfig;

/// Turns the settings into a node configuration, adding this node to the
/// membership when `--peers` leaves it out. Every flag's bound was checked when it
/// was parsed; the settings that depend on one another are checked here.
fn into_config(settings: StorageSettings) -> anyhow::Result<StorageConfig> {
    let membership = settings.membership()?;
    let replication_factor = settings.resolved_replication_factor()?;
    let mut config = StorageConfig::new(settings.id.clone(), membership);
    if let Some(cluster_id) = settings.cluster_id {
        config.cluster_id = cluster_id;
    }
    config.gossip_delay = Duration::from_millis(settings.gossip_delay);
    config.replication_factor = replication_factor;
    config.max_versions = settings.max_versions;
    config.write_acks = settings.write_acks;
    config.await_acks = !settings.break_acks;
    config.vnodes = settings.vnodes;
    config.anti_entropy_interval = Duration::from_millis(settings.anti_entropy_interval);
    config.rpc_deadline = Duration::from_millis(settings.rpc_deadline);
    config.metrics_listen = crate::metrics_args::checked(settings.metrics_listen)?;
    config.ack_timeout = Duration::from_millis(settings.ack_timeout);
    config.probe_interval = Duration::from_millis(settings.probe_interval);
    config.probe_timeout = Duration::from_millis(settings.probe_timeout);
    config.probe_fanout = settings.probe_fanout;
    config.suspicion_timeout = Duration::from_millis(settings.suspicion_timeout);
    config.data_dir = settings.data_dir;
    config.fsync = match settings.fsync {
        None | Some(Fsync::Always) => FsyncPolicy::Always,
        Some(Fsync::Batch) => FsyncPolicy::Batch,
        Some(Fsync::Never) => FsyncPolicy::Never,
    };
    if let Some(dial) = &settings.dial {
        for member in Membership::parse(dial).context("invalid --dial")?.members() {
            config
                .dial_overrides
                .insert(member.id.clone(), member.url.clone());
        }
    }
    config.validate()?;
    Ok(config)
}

/// Runs a storage node until interrupted.
pub async fn run(settings: StorageSettings) -> anyhow::Result<()> {
    settings.check()?;
    Ok(dida_storage::node::run(into_config(settings)?).await?)
}
