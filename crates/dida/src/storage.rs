//! `dida storage`: flags of a storage node.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use dida_core::limits::{check_deadline_ms, check_vnodes, replication_factor};
use dida_core::membership::NodeUrl;
use dida_core::script::MAX_GOSSIP_DELAY_MS;
use dida_core::Membership;
use dida_storage::config::FsyncPolicy;
use dida_storage::StorageConfig;

/// Flags of `dida storage`.
#[derive(Debug, Args)]
pub struct StorageArgs {
    /// This node's id (for example s1).
    #[arg(long)]
    id: String,
    /// Where this node serves, for example http://127.0.0.1:7001.
    #[arg(long)]
    url: String,
    /// Milliseconds every gossip message this node sends waits before leaving.
    #[arg(long, default_value_t = 0)]
    gossip_delay: u64,
    /// Every storage node: ID=URL,ID=URL,… (this node may be omitted).
    #[arg(long)]
    peers: String,
    /// Distinct nodes holding each key (1 to the number of storage nodes; default 3,
    /// or the number of nodes if fewer).
    #[arg(long)]
    replication_factor: Option<usize>,
    /// Versions of each key a replica keeps.
    #[arg(long, default_value_t = 5)]
    max_versions: usize,
    /// Replicas (the primary included) that must hold a write before it is acknowledged.
    #[arg(long, default_value_t = 1)]
    write_acks: usize,
    /// Virtual nodes per storage node on the ring, 1 to 4096 (all nodes and clients
    /// must agree).
    #[arg(long, default_value_t = 128)]
    vnodes: u32,
    /// Milliseconds between two anti-entropy rounds.
    #[arg(long, default_value_t = 1000)]
    anti_entropy_interval: u64,
    /// Deadline, in milliseconds, of every call this node makes to another node.
    #[arg(long, default_value_t = 2000)]
    rpc_deadline: u64,
    /// A deliberate bug, for the fault back-ends only: acknowledge a write before
    /// the other --write-acks replicas hold it (set by `dida faults --break-acks`).
    #[arg(long, hide = true, env = "DIDA_BREAK_ACKS")]
    break_acks: bool,
    /// Milliseconds a write waits for --write-acks replicas before failing.
    #[arg(long, default_value_t = 5000)]
    ack_timeout: u64,
    /// Milliseconds between two probe rounds of the crash detector.
    #[arg(long, default_value_t = 250)]
    probe_interval: u64,
    /// Milliseconds a probe of a peer (direct or indirect) may take.
    #[arg(long, default_value_t = 500)]
    probe_timeout: u64,
    /// Milliseconds a peer nobody reaches stays suspected before it is declared failed.
    #[arg(long, default_value_t = 1500)]
    suspicion_timeout: u64,
    /// Peers to reach at another address than --peers gives: ID=URL,ID=URL,… (a
    /// proxy or a NAT in between; the fault suite partitions nodes this way).
    #[arg(long, default_value = "")]
    dial: String,
    /// Directory where this node keeps its records, to recover them after a
    /// restart; without it the node holds them in memory only. See docs/durability.md.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// With --data-dir, when records reach the disk: always (before each is
    /// acknowledged), batch (within 10 ms) or never (left to the OS).
    #[arg(long, default_value_t = FsyncPolicy::Always, requires = "data_dir")]
    fsync: FsyncPolicy,
    #[command(flatten)]
    metrics: crate::metrics_args::MetricsArgs,
}

impl StorageArgs {
    /// This node's id: the name of the certificate it presents by default.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Turns the flags into a node configuration, adding this node to the membership
    /// when `--peers` leaves it out.
    fn into_config(self) -> anyhow::Result<StorageConfig> {
        let url = NodeUrl::parse(&self.url)?;
        let mut nodes: Vec<(String, String)> = Membership::parse(&self.peers)
            .context("invalid --peers")?
            .members()
            .iter()
            .map(|m| (m.id.clone(), m.url.to_string()))
            .collect();
        match nodes.iter().find(|(id, _)| *id == self.id) {
            Some((_, listed)) if *listed != url.to_string() => bail!(
                "--url {url} differs from the address --peers gives {} ({listed})",
                self.id
            ),
            Some(_) => {}
            None => nodes.push((self.id.clone(), url.to_string())),
        }
        let membership = Membership::new(nodes).context("invalid --peers")?;
        let replication_factor = replication_factor(self.replication_factor, membership.len())
            .map_err(anyhow::Error::msg)?;
        check_vnodes(self.vnodes).map_err(anyhow::Error::msg)?;
        if self.gossip_delay > MAX_GOSSIP_DELAY_MS {
            bail!(
                "--gossip-delay must be at most {MAX_GOSSIP_DELAY_MS} milliseconds, got {}",
                self.gossip_delay
            );
        }
        let deadline =
            |flag: &str, ms: u64| check_deadline_ms(flag, ms).map_err(anyhow::Error::msg);
        let mut config = StorageConfig::new(self.id, membership);
        config.gossip_delay = Duration::from_millis(self.gossip_delay);
        config.replication_factor = replication_factor;
        config.max_versions = self.max_versions;
        config.write_acks = self.write_acks;
        config.await_acks = !self.break_acks;
        config.vnodes = self.vnodes;
        config.anti_entropy_interval =
            deadline("--anti-entropy-interval", self.anti_entropy_interval)?;
        config.rpc_deadline = deadline("--rpc-deadline", self.rpc_deadline)?;
        config.metrics_listen = self.metrics.listen()?;
        config.ack_timeout = deadline("--ack-timeout", self.ack_timeout)?;
        config.probe_interval = deadline("--probe-interval", self.probe_interval)?;
        config.probe_timeout = deadline("--probe-timeout", self.probe_timeout)?;
        config.suspicion_timeout = deadline("--suspicion-timeout", self.suspicion_timeout)?;
        config.data_dir = self.data_dir;
        config.fsync = self.fsync;
        if !self.dial.is_empty() {
            for member in Membership::parse(&self.dial)
                .context("invalid --dial")?
                .members()
            {
                config
                    .dial_overrides
                    .insert(member.id.clone(), member.url.clone());
            }
        }
        config.validate()?;
        Ok(config)
    }
}

/// Runs a storage node until interrupted.
pub async fn run(args: StorageArgs) -> anyhow::Result<()> {
    dida_storage::node::run(args.into_config()?).await
}
