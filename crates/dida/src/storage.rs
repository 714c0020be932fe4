//! `dida storage`: a storage node, configured from its settings
//! ([`dida_settings::StorageSettings`], where its flags are defined).

use std::time::Duration;

use anyhow::Context;
use dida_core::{ClusterConfig, Membership};
use dida_proto::storage::JoinRequest;
use dida_settings::{Fsync, RoleSettings, StorageSettings};
use dida_storage::config::FsyncPolicy;
use dida_storage::StorageConfig;

/// Turns the settings into a node configuration: with `--peers`, adding this node
/// to the membership when the list leaves it out; with `--join`, the membership of
/// `admitted`, the configuration the cluster admitted the node with. Every flag's
/// bound was checked when it was parsed; the settings that depend on one another
/// are checked here.
fn into_config(
    settings: StorageSettings,
    admitted: Option<ClusterConfig>,
) -> anyhow::Result<StorageConfig> {
    let replication_factor = settings.resolved_replication_factor()?;
    let listen = settings.listen_addr()?;
    let mut config = match admitted {
        Some(admitted) => {
            let membership = admitted
                .membership()
                .context("the cluster sent a configuration that does not check")?;
            let mut config = StorageConfig::new(settings.id.clone(), membership);
            config.cluster_id = admitted.cluster_id.clone();
            config.admitted = Some(admitted);
            config
        }
        None => StorageConfig::new(settings.id.clone(), settings.membership()?),
    };
    if let Some(cluster_id) = settings.cluster_id {
        config.cluster_id = cluster_id;
    }
    config.listen = Some(listen);
    config.gossip_delay = Duration::from_millis(settings.gossip_delay);
    config.replication_factor = replication_factor;
    config.max_versions = settings.max_versions;
    config.write_acks = settings.write_acks;
    config.await_acks = !settings.break_acks;
    config.vnodes = settings.vnodes;
    config.anti_entropy_interval = Duration::from_millis(settings.anti_entropy_interval);
    config.rpc_deadline = Duration::from_millis(settings.rpc_deadline);
    config.metrics_listen = crate::metrics_args::checked(settings.metrics_listen)?;
    config.resp_listen =
        crate::metrics_args::checked_listener("--resp-listen", settings.resp_listen)?;
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

/// Runs a storage node until interrupted; one started with `--join` is first
/// admitted by the cluster.
pub async fn run(settings: StorageSettings) -> anyhow::Result<()> {
    settings.check()?;
    let admitted = match settings.seeds() {
        Some(seeds) => Some(join(&settings, &seeds).await?),
        None => None,
    };
    Ok(dida_storage::node::run(into_config(settings, admitted)?).await?)
}

/// Asks the storage nodes at `seeds` to admit this node, and returns the
/// configuration that lists it.
async fn join(settings: &StorageSettings, seeds: &[String]) -> anyhow::Result<ClusterConfig> {
    let request = JoinRequest {
        id: settings.id.clone(),
        url: settings.url.clone(),
        cluster_id: settings.cluster_id.clone().unwrap_or_default(),
        vnodes: settings.vnodes,
        replication_factor: settings.resolved_replication_factor()? as u32,
    };
    let config = dida_storage_client::cluster::join(seeds, request)
        .await
        .with_context(|| {
            format!(
                "storage node {} could not join the cluster at {}",
                settings.id,
                seeds.join(",")
            )
        })?;
    tracing::info!(
        id = %settings.id,
        cluster_id = %config.cluster_id,
        config_epoch = config.epoch,
        "admitted to the cluster: catching up"
    );
    Ok(config)
}
