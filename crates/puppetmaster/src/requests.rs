//! What the PuppetMaster asks a PCS to start for each declared node: the role's
//! typed settings (`dida_settings`, the definition `dida <role>` parses), filled
//! from the script and the PuppetMaster's flags, then validated as the node will
//! validate them — so a setting the node would refuse fails its setup line here,
//! with the node's message, before anything starts. A storage node `addStorage`
//! adds to the running cluster gets the same settings as those of the setup
//! block, with `--join` in place of `--peers`.

use dida_core::script::{NodeDecl, Role};
use dida_proto::control::{Flag, StartNodeRequest};
use dida_settings::{
    NodeSettings, RoleSettings, SchedulerSettings, SettingsError, StorageSettings, WorkerSettings,
};

use crate::config::PmConfig;

/// The nodes of the setup block (and those added to the running cluster since),
/// as every node's settings name them.
#[derive(Debug, Clone, Default)]
pub struct Declared {
    /// `ID=URL,…` of the storage nodes, in the order of the cluster's
    /// configuration.
    pub storage: String,
    /// How many storage nodes the setup block declares: the replication factor
    /// is capped at it.
    pub storage_nodes: usize,
    /// `ID=URL,…` of the workers.
    pub workers: String,
    /// The scheduler's URL, if one is declared.
    pub scheduler: Option<String>,
}

impl Declared {
    /// The declared nodes `decls`, in the order given.
    pub fn of(decls: &[NodeDecl]) -> Self {
        let list = |role: Role| {
            decls
                .iter()
                .filter(|d| d.role == role)
                .map(|d| format!("{}={}", d.id, d.url))
                .collect::<Vec<_>>()
                .join(",")
        };
        Self {
            storage: list(Role::Storage),
            storage_nodes: decls.iter().filter(|d| d.role == Role::Storage).count(),
            workers: list(Role::Worker),
            scheduler: decls
                .iter()
                .find(|d| d.role == Role::Scheduler)
                .map(|d| d.url.to_string()),
        }
    }

    /// The replication factor every node and client is given: `--replication-factor`,
    /// capped at the number of storage nodes the setup block declares (a key cannot
    /// have more replicas than there are nodes, and the nodes refuse a factor above
    /// it), so a script may declare fewer storage nodes than the default factor.
    pub fn replication_factor(&self, config: &PmConfig) -> usize {
        config.replication_factor.min(self.storage_nodes.max(1))
    }
}

/// The settings the PuppetMaster gives the node `decl` of the setup block
/// `declared`, validated as the node will validate them.
pub fn node_settings(
    config: &PmConfig,
    declared: &Declared,
    decl: &NodeDecl,
    debug_sink: Option<&str>,
) -> Result<NodeSettings, SettingsError> {
    let id = decl.id.as_str();
    let url = decl.url.to_string();
    let metrics_listen = metrics_listen(config, decl)?;
    let replication_factor = declared.replication_factor(config);
    let no_scheduler =
        || SettingsError::Inconsistent("the setup block declares no scheduler".into());
    let settings: NodeSettings = match decl.role {
        Role::Storage => {
            let settings = StorageSettings::new(id, &url, &declared.storage)?;
            storage_settings(settings, config, declared, decl)?.into()
        }
        Role::Worker => {
            let scheduler = declared.scheduler.as_deref().ok_or_else(no_scheduler)?;
            let mut settings = WorkerSettings::new(id, &url, &declared.storage, scheduler)?;
            settings.gossip_delay = decl.gossip_delay_ms;
            settings.replication_factor = Some(replication_factor);
            settings.operators = config.operators.clone();
            settings.debug_sink = debug_sink.map(str::to_string);
            settings.metrics_listen = metrics_listen;
            settings.validated()?.into()
        }
        Role::Scheduler => {
            let mut settings = SchedulerSettings::new(id, &url, &declared.workers)?;
            if declared.storage_nodes > 0 {
                settings.storage = Some(declared.storage.clone());
                settings.replication_factor = Some(replication_factor);
            }
            settings.http_listen = config.http_listen.map(|addr| addr.to_string());
            settings.metrics_listen = metrics_listen;
            settings.validated()?.into()
        }
    };
    Ok(settings)
}

/// `settings` (which say how storage node `decl` finds its cluster: `--peers` or
/// `--join`) with every other flag the PuppetMaster gives the storage nodes of the
/// setup block `declared`, validated. One place, so that a node `addStorage`
/// starts runs exactly like those of the setup block — a joining node whose
/// replication factor differs is refused by the cluster.
fn storage_settings(
    mut settings: StorageSettings,
    config: &PmConfig,
    declared: &Declared,
    decl: &NodeDecl,
) -> Result<StorageSettings, SettingsError> {
    settings.gossip_delay = decl.gossip_delay_ms;
    settings.replication_factor = Some(declared.replication_factor(config));
    settings.max_versions = config.max_versions;
    settings.write_acks = config.write_acks;
    settings.metrics_listen = metrics_listen(config, decl)?;
    settings.resp_listen = metrics_addr(decl, config.resp_port_offset)
        .map(|addr| {
            addr.parse().map_err(|_| {
                SettingsError::Flag(format!(
                    "--resp-listen {addr}: with --resp-port-offset, a node's host must be an                      IP address"
                ))
            })
        })
        .transpose()?;
    settings.validated()
}

/// `--metrics-listen` of node `decl`, with `--metrics-port-offset`.
fn metrics_listen(
    config: &PmConfig,
    decl: &NodeDecl,
) -> Result<Option<std::net::SocketAddr>, SettingsError> {
    metrics_addr(decl, config.metrics_port_offset)
        .map(|addr| {
            addr.parse().map_err(|_| {
                SettingsError::Flag(format!(
                    "--metrics-listen {addr}: with --metrics-port-offset, a node's host must be \
                     an IP address"
                ))
            })
        })
        .transpose()
}

/// What the PCS is asked to start for `decl`: its settings as flags (the id and
/// URL travel in the request's own fields).
pub fn start_request(
    config: &PmConfig,
    declared: &Declared,
    decl: &NodeDecl,
    debug_sink: Option<&str>,
) -> Result<StartNodeRequest, SettingsError> {
    let settings = node_settings(config, declared, decl, debug_sink)?;
    Ok(request_of(config, decl, &settings))
}

/// What the PCS is asked to start for storage node `decl` joining the running
/// cluster through the storage nodes at `seeds` (`addStorage`): `--join` in place
/// of `--peers`, every other flag as the setup block `declared` gives its storage
/// nodes.
pub fn join_request(
    config: &PmConfig,
    declared: &Declared,
    decl: &NodeDecl,
    seeds: &[String],
) -> Result<StartNodeRequest, SettingsError> {
    let settings = StorageSettings::joining(&decl.id, &decl.url.to_string(), seeds)?;
    let settings = storage_settings(settings, config, declared, decl)?.into();
    Ok(request_of(config, decl, &settings))
}

/// The start request of `decl` with `settings` as flags.
fn request_of(config: &PmConfig, decl: &NodeDecl, settings: &NodeSettings) -> StartNodeRequest {
    StartNodeRequest {
        role: decl.role.to_string(),
        node_id: decl.id.clone(),
        url: decl.url.to_string(),
        flags: settings
            .flags()
            .into_iter()
            .filter(|flag| flag.name != "id" && flag.name != "url")
            .map(|flag| Flag {
                name: flag.name.to_string(),
                value: flag.value,
            })
            .collect(),
        log_level: config.node_log.clone(),
    }
}

/// The start requests of a whole setup block, or the first node's refusal, named
/// with its id: the check a script's settings get before its cluster starts.
pub fn start_requests(
    config: &PmConfig,
    decls: &[NodeDecl],
) -> Result<Vec<StartNodeRequest>, String> {
    let declared = Declared::of(decls);
    decls
        .iter()
        .map(|decl| {
            start_request(config, &declared, decl, None)
                .map_err(|e| format!("{} {}: {e}", decl.role, decl.id))
        })
        .collect()
}

/// Where node `decl` serves its metrics with `--metrics-port-offset`: its own host,
/// at its port plus the offset.
pub(crate) fn metrics_addr(decl: &NodeDecl, offset: Option<u16>) -> Option<String> {
    let port = decl.url.port.checked_add(offset?)?;
    Some(format!("{}:{port}", decl.url.host))
}
