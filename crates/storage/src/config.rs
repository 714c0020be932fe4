//! What a storage node is configured with, and how the settings are checked against
//! each other. Kept apart from start-up (`node`) so that every module that reads a
//! setting depends on this alone.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use dida_core::membership::{Member, NodeUrl};
use dida_core::Membership;

use crate::error::ConfigError;

/// Everything a storage node is configured with.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// This node's id; must be a member.
    pub id: String,
    /// Every storage node of the cluster, this one included.
    pub membership: Membership,
    /// Names the cluster (`--cluster-id`): a configuration or request naming
    /// another is refused. [`StorageConfig::new`] derives it from the membership.
    pub cluster_id: String,
    /// The configuration a joining node was admitted with (`--join`): the
    /// cluster's configuration from then on, `membership` being its members.
    /// `None` for a node of the first membership, whose configuration starts as
    /// every member of `membership` active (unless its data directory holds a
    /// later one).
    pub admitted: Option<dida_core::ClusterConfig>,
    /// How long every gossip message this node sends waits before leaving.
    pub gossip_delay: Duration,
    /// How many distinct nodes hold each key.
    pub replication_factor: usize,
    /// How many versions of each key a replica keeps.
    pub max_versions: usize,
    /// How many replicas (the primary included) must hold a write before it is
    /// acknowledged; 1 answers as soon as the primary applied it (the course's mode).
    pub write_acks: usize,
    /// Virtual nodes per storage node on the ring.
    pub vnodes: u32,
    /// Time between two anti-entropy rounds (each with the next peer in turn).
    pub anti_entropy_interval: Duration,
    /// Deadline of every call this node makes to another node.
    pub rpc_deadline: Duration,
    /// How long a write waits for `write_acks` replicas before failing (also how
    /// long a new primary tries to bring a key up to date after a crash).
    pub ack_timeout: Duration,
    /// Time between two probe rounds of the crash detector.
    pub probe_interval: Duration,
    /// How long a probe (direct, or indirect through another node) may take.
    pub probe_timeout: Duration,
    /// How many peers the crash detector probes each `probe_interval`, in turn from
    /// a shuffled list of the others (peers it suspects are probed every period on
    /// top). A node's probing costs the same whatever the size of the cluster; a
    /// fan-out at least the number of peers probes every peer every period.
    pub probe_fanout: usize,
    /// How long a peer stays suspected, unreachable by anyone, before it is declared
    /// failed.
    pub suspicion_timeout: Duration,
    /// Peers this node reaches at another address than the membership's URL (a
    /// proxy, a NAT), by id. The fault suite routes peer traffic through proxies it
    /// can cut this way, to partition nodes without root. An id may name a node
    /// that is no member yet: the route applies once the node joins (a node's
    /// flags do not change while it runs, nor when it restarts).
    pub dial_overrides: BTreeMap<String, NodeUrl>,
    /// Whether this node refuses the pushes of peers it counts failed or that do
    /// not replicate the pushed keys in its view (invariants D2, R2), makes the
    /// replicas it catches up from adopt its view (D2), and tells the peers it
    /// counts failed so (its detector probes them). Always on;
    /// only the simulator turns it off (`dida sim --break-fence`), to show that
    /// without it acknowledged writes are lost.
    pub fence: bool,
    /// Whether a write with `write_acks` ≥ 2 waits for the other replicas'
    /// acknowledgements before it is acknowledged. Always on; only the fault
    /// back-ends turn it off (`dida sim --break-acks`, `dida faults --break-acks`),
    /// a deliberate bug that acknowledges such a write while its primary alone holds
    /// it, to show that both catch the acknowledged writes it loses.
    pub await_acks: bool,
    /// This process's incarnation (SWIM-style): it must exceed that of every earlier
    /// process with this id, so that its announcement supersedes their failure.
    /// [`StorageConfig::new`] takes the wall clock in milliseconds, which grows from
    /// one start to the next; the simulator numbers restarts instead.
    pub incarnation: u64,
    /// Where this node keeps its records on disk (`--data-dir`); `None` keeps them
    /// in memory only, as the course's rule has it, and a restarted node starts
    /// empty. See docs/durability.md.
    pub data_dir: Option<PathBuf>,
    /// When a record logged to `data_dir` reaches the disk (`--fsync`); unused
    /// without a data directory.
    pub fsync: FsyncPolicy,
    /// Where to bind (`--listen`); `None` binds the host and port of the node's
    /// URL. Given when peers reach the node by a name it cannot bind (a container,
    /// a pod, NAT).
    pub listen: Option<dida_core::listen::ListenAddr>,
    /// Where to serve `/metrics`, `/healthz` and `/readyz` (`--metrics-listen`);
    /// `None` serves none of them and records no per-RPC metrics.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Where to serve the Redis protocol (`--resp-listen`); `None` serves it
    /// nowhere. See docs/resp.md.
    pub resp_listen: Option<std::net::SocketAddr>,
}

/// The rate at which a node moves records when the ring changes — a joining or
/// restarted node catching up its ranges (`rejoin`), a node handing off ranges it
/// no longer replicates (`handoff`) — so that moving data leaves each node's
/// bandwidth and CPU to its clients. A gigabyte moves in about half a minute.
pub const MOVE_BYTES_PER_SECOND: u64 = 32 * 1024 * 1024;

/// Default [`StorageConfig::probe_fanout`] (`--probe-fanout`): three peers a period.
/// With a handful of nodes that is nearly every peer (detection as fast as probing
/// all), and in a large cluster a failure is still probed by about three nodes a
/// period and a view exchanged with about six peers a period, so news spreads in a
/// few periods.
pub const DEFAULT_PROBE_FANOUT: usize = 3;

/// An incarnation for a process starting now: the wall clock in milliseconds
/// (at least 1, so it supersedes the incarnation 0 peers assume).
pub fn incarnation_now() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (since_epoch.as_millis() as u64).max(1)
}

/// When a durable node's records reach the disk, relative to the node
/// acknowledging them. A trade between what a crash of the machine (not just of the
/// process: the operating system keeps what was written in every mode) may lose and
/// how fast writes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Every record is on disk before the node acknowledges it; concurrent writers
    /// share one fsync (group commit). Loses nothing acknowledged.
    #[default]
    Always,
    /// A background flusher syncs the log every [`BATCH_INTERVAL`]: a machine crash
    /// may lose what was acknowledged within that interval.
    Batch,
    /// The log is written to the operating system and never synced by the node:
    /// a machine crash may lose whatever the OS had not yet written back.
    Never,
}

/// How often the flusher of [`FsyncPolicy::Batch`] syncs the log: the most a machine
/// crash can lose in that mode, short enough to be a few requests' latency.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(10);

impl FromStr for FsyncPolicy {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        match text {
            "always" => Ok(Self::Always),
            "batch" => Ok(Self::Batch),
            "never" => Ok(Self::Never),
            other => Err(ConfigError::FsyncPolicy(other.to_string())),
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Always => "always",
            Self::Batch => "batch",
            Self::Never => "never",
        })
    }
}

impl StorageConfig {
    /// A configuration with the platform's defaults: replication factor 3, 5 versions,
    /// acknowledgement by the primary alone, 128 virtual nodes, one anti-entropy round
    /// per second, 2 s call deadlines, a 5 s acknowledgement timeout, and crash
    /// detection probing 3 peers every 250 ms with 500 ms probes and 1.5 s of
    /// suspicion; in
    /// memory only (no data directory).
    pub fn new(id: impl Into<String>, membership: Membership) -> Self {
        Self {
            id: id.into(),
            cluster_id: dida_core::cluster::derived_cluster_id(&membership),
            membership,
            admitted: None,
            gossip_delay: Duration::ZERO,
            replication_factor: 3,
            max_versions: 5,
            write_acks: 1,
            vnodes: 128,
            anti_entropy_interval: Duration::from_secs(1),
            rpc_deadline: Duration::from_secs(2),
            ack_timeout: Duration::from_secs(5),
            probe_interval: Duration::from_millis(250),
            probe_timeout: Duration::from_millis(500),
            probe_fanout: DEFAULT_PROBE_FANOUT,
            suspicion_timeout: Duration::from_millis(1500),
            dial_overrides: BTreeMap::new(),
            fence: true,
            await_acks: true,
            incarnation: incarnation_now(),
            data_dir: None,
            fsync: FsyncPolicy::Always,
            listen: None,
            metrics_listen: None,
            resp_listen: None,
        }
    }

    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.membership.index_of(&self.id)?;
        dida_core::cluster::check_cluster_id(&self.cluster_id)?;
        for (flag, count) in [
            ("--replication-factor", self.replication_factor),
            ("--max-versions", self.max_versions),
        ] {
            if count == 0 {
                return Err(ConfigError::Zero { flag });
            }
        }
        if dida_core::limits::check_write_acks(self.write_acks, self.replication_factor).is_err() {
            return Err(ConfigError::WriteAcks {
                write_acks: self.write_acks,
                replication_factor: self.replication_factor,
            });
        }
        if self.vnodes == 0 {
            return Err(ConfigError::Zero { flag: "--vnodes" });
        }
        if self.anti_entropy_interval.is_zero() {
            return Err(ConfigError::NotPositive {
                what: "the anti-entropy interval",
            });
        }
        if self.probe_fanout == 0 {
            return Err(ConfigError::Zero {
                flag: "--probe-fanout",
            });
        }
        if self.probe_interval.is_zero() || self.probe_timeout.is_zero() {
            return Err(ConfigError::NotPositive {
                what: "the probe interval and probe timeout",
            });
        }
        Ok(())
    }

    /// The URL this node connects to in order to reach `member`: its
    /// membership URL unless `dial_overrides` routes it elsewhere.
    pub fn dial_url<'a>(&'a self, member: &'a Member) -> &'a NodeUrl {
        self.dial_overrides.get(&member.id).unwrap_or(&member.url)
    }
}
