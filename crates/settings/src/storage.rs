//! The settings of a storage node (`dida storage`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use dida_core::limits::{check_write_acks, replication_factor};
use dida_core::membership::NodeUrl;
use dida_core::script::Role;
use dida_core::Membership;

use crate::command_line::Flags;
use crate::values;
use crate::{Flag, RoleSettings, SettingsError};

/// Default `--max-versions`.
pub const DEFAULT_MAX_VERSIONS: usize = 5;
/// Default `--write-acks`: the course's mode, acknowledged by the primary alone.
pub const DEFAULT_WRITE_ACKS: usize = 1;
/// Default `--vnodes` (every node and client of a cluster must agree).
pub const DEFAULT_VNODES: u32 = 128;

/// Default `--probe-fanout` (the storage crate's `DEFAULT_PROBE_FANOUT`).
pub const DEFAULT_PROBE_FANOUT: usize = 3;
/// Largest `--probe-fanout`: past the number of peers a node probes them all, so
/// more is a typo.
pub const MAX_PROBE_FANOUT: usize = 1024;

/// When a durable node's records reach the disk (`--fsync`); the storage crate's
/// `FsyncPolicy` says what each costs and may lose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fsync {
    /// Before each record is acknowledged.
    Always,
    /// Within 10 ms.
    Batch,
    /// Left to the operating system.
    Never,
}

impl std::fmt::Display for Fsync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fsync::Always => "always",
            Fsync::Batch => "batch",
            Fsync::Never => "never",
        })
    }
}

/// Flags of `dida storage`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct StorageSettings {
    /// This node's id (for example s1).
    #[arg(long, env = "DIDA_STORAGE_ID", value_parser = values::node_id())]
    pub id: String,
    /// Where this node serves, for example http://127.0.0.1:7001.
    #[arg(long, env = "DIDA_STORAGE_URL", value_parser = values::node_url())]
    pub url: String,
    /// The address to bind, HOST:PORT (default: the host and port of --url). Give
    /// it when peers reach this node by a name or address it cannot bind itself
    /// (a container, a pod, NAT): `--listen 0.0.0.0:7001 --url http://NAME:7001`.
    /// Its port must be --url's.
    #[arg(long, env = "DIDA_STORAGE_LISTEN", value_parser = values::listen_addr(),
          value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Milliseconds every gossip message this node sends waits before leaving (0 to
    /// 600000).
    #[arg(long, env = "DIDA_STORAGE_GOSSIP_DELAY", default_value_t = 0,
          value_parser = values::gossip_delay_ms())]
    pub gossip_delay: u64,
    /// The storage nodes the cluster started with: ID=URL,ID=URL,… (this node may
    /// be omitted). Every node of the first membership is started with the same
    /// list, members removed since (`dida cluster remove`) included: it fixes each
    /// member's replica number. A node added later starts with --join instead.
    #[arg(long, env = "DIDA_STORAGE_PEERS", value_parser = values::membership(),
          required_unless_present = "join", conflicts_with = "join")]
    pub peers: Option<String>,
    /// Join a running cluster instead of starting one: the URLs of some of its
    /// storage nodes, URL[,URL…]. The node asks them to admit it under --id at
    /// --url (an id never used in the cluster, an address of its own), then catches
    /// up the ranges it gains and enters the ring. Restarted, it asks again and is
    /// told the configuration that lists it.
    #[arg(long, env = "DIDA_STORAGE_JOIN", value_parser = values::node_urls(),
          value_name = "SEED_URL[,…]")]
    pub join: Option<String>,
    /// Names the cluster: a membership request naming another cluster is refused
    /// (letters, digits, '-', '_', '.'; default: derived from --peers, so every
    /// node started with the same list agrees).
    #[arg(long, env = "DIDA_STORAGE_CLUSTER_ID", value_parser = values::node_id())]
    pub cluster_id: Option<String>,
    /// Distinct nodes holding each key (1 to the number of storage nodes; default 3,
    /// or the number of nodes if fewer).
    #[arg(long, env = "DIDA_STORAGE_REPLICATION_FACTOR", value_parser = values::positive::<usize>())]
    pub replication_factor: Option<usize>,
    /// Versions of each key a replica keeps (1 to 1024).
    #[arg(long, env = "DIDA_STORAGE_MAX_VERSIONS", default_value_t = DEFAULT_MAX_VERSIONS,
          value_parser = values::max_versions())]
    pub max_versions: usize,
    /// Replicas (the primary included) that must hold a write before it is
    /// acknowledged (1 to the replication factor).
    #[arg(long, env = "DIDA_STORAGE_WRITE_ACKS", default_value_t = DEFAULT_WRITE_ACKS,
          value_parser = values::positive::<usize>())]
    pub write_acks: usize,
    /// Virtual nodes per storage node on the ring, 1 to 4096 (all nodes and clients
    /// must agree).
    #[arg(long, env = "DIDA_STORAGE_VNODES", default_value_t = DEFAULT_VNODES,
          value_parser = values::vnodes())]
    pub vnodes: u32,
    /// Milliseconds between two anti-entropy rounds (1 to 3600000, as every
    /// deadline below).
    #[arg(long, env = "DIDA_STORAGE_ANTI_ENTROPY_INTERVAL", default_value_t = 1000,
          value_parser = values::deadline_ms())]
    pub anti_entropy_interval: u64,
    /// Deadline, in milliseconds, of every call this node makes to another node.
    #[arg(long, env = "DIDA_STORAGE_RPC_DEADLINE", default_value_t = 2000,
          value_parser = values::deadline_ms())]
    pub rpc_deadline: u64,
    /// Milliseconds a write waits for --write-acks replicas before failing.
    #[arg(long, env = "DIDA_STORAGE_ACK_TIMEOUT", default_value_t = 5000,
          value_parser = values::deadline_ms())]
    pub ack_timeout: u64,
    /// Milliseconds between two probe rounds of the crash detector.
    #[arg(long, env = "DIDA_STORAGE_PROBE_INTERVAL", default_value_t = 250,
          value_parser = values::deadline_ms())]
    pub probe_interval: u64,
    /// Milliseconds a probe of a peer (direct or indirect) may take.
    #[arg(long, env = "DIDA_STORAGE_PROBE_TIMEOUT", default_value_t = 500,
          value_parser = values::deadline_ms())]
    pub probe_timeout: u64,
    /// Peers the crash detector probes each --probe-interval, in turn (1 to 1024;
    /// at least the number of peers probes them all every time). A node's probing
    /// costs the same whatever the cluster's size.
    #[arg(long, env = "DIDA_STORAGE_PROBE_FANOUT", default_value_t = DEFAULT_PROBE_FANOUT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_PROBE_FANOUT as u64))]
    pub probe_fanout: usize,
    /// Milliseconds a peer nobody reaches stays suspected before it is declared failed.
    #[arg(long, env = "DIDA_STORAGE_SUSPICION_TIMEOUT", default_value_t = 1500,
          value_parser = values::deadline_ms())]
    pub suspicion_timeout: u64,
    /// Peers to reach at another address than --peers gives: ID=URL,ID=URL,… (a
    /// proxy or a NAT in between; the fault suite partitions nodes this way). It
    /// may name nodes that join later (`--join`): a restart keeps the flags.
    #[arg(long, env = "DIDA_STORAGE_DIAL", value_parser = values::membership())]
    pub dial: Option<String>,
    /// Directory where this node keeps its records, to recover them after a
    /// restart; without it the node holds them in memory only. See docs/durability.md.
    #[arg(long, env = "DIDA_STORAGE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// With --data-dir, when records reach the disk: always (before each is
    /// acknowledged), batch (within 10 ms) or never (left to the OS). [default: always]
    #[arg(long, env = "DIDA_STORAGE_FSYNC", value_enum, requires = "data_dir")]
    pub fsync: Option<Fsync>,
    /// Serve Prometheus metrics (GET /metrics), liveness (GET /healthz) and
    /// readiness (GET /readyz) over HTTP at HOST:PORT (port 0 picks one). See
    /// docs/observability.md. Like every listener, it refuses an address other
    /// machines can reach unless the process has TLS or a cluster token, or
    /// --insecure.
    #[arg(long, env = "DIDA_STORAGE_METRICS_LISTEN", value_name = "HOST:PORT")]
    pub metrics_listen: Option<SocketAddr>,
    /// Also speak the Redis protocol (RESP2/RESP3) at HOST:PORT (port 0 picks one),
    /// for redis-cli, redis-benchmark and Redis clients: GET, SET, MGET and dida's
    /// DIDA.CAS and DIDA.GET (docs/resp.md). With --cluster-token, clients must
    /// AUTH with it. Like every listener, it refuses an address other machines can
    /// reach unless the process has TLS or a cluster token, or --insecure.
    #[arg(long, env = "DIDA_STORAGE_RESP_LISTEN", value_name = "HOST:PORT")]
    pub resp_listen: Option<SocketAddr>,
    /// A deliberate bug, for the fault back-ends only (`dida faults --break-acks`):
    /// acknowledge a write before the other --write-acks replicas hold it, to show
    /// that the checkers catch it. Hidden, and not a flag the PCS passes.
    #[arg(long, hide = true, env = "DIDA_STORAGE_BREAK_ACKS", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub break_acks: bool,
}

impl StorageSettings {
    /// The settings of node `id` at `url` in the cluster `peers`, every other flag
    /// at its default (whatever this process's environment says).
    pub fn new(id: &str, url: &str, peers: &str) -> Result<Self, SettingsError> {
        Self::parse_without_env([
            format!("--id={id}"),
            format!("--url={url}"),
            format!("--peers={peers}"),
        ])
    }

    /// The settings of node `id` at `url` joining the cluster that the storage
    /// nodes at `seeds` belong to, every other flag at its default.
    pub fn joining(id: &str, url: &str, seeds: &[String]) -> Result<Self, SettingsError> {
        Self::parse_without_env([
            format!("--id={id}"),
            format!("--url={url}"),
            format!("--join={}", seeds.join(",")),
        ])
    }

    /// The seed URLs of `--join`, if the node joins a running cluster.
    pub fn seeds(&self) -> Option<Vec<String>> {
        self.join
            .as_ref()
            .map(|seeds| values::split_urls(seeds).map(String::from).collect())
    }

    /// Every storage node: `--peers`, with this node added when it leaves it out.
    /// A node started with `--join` learns the membership from the cluster, so
    /// asking it here is an error.
    pub fn membership(&self) -> Result<Membership, SettingsError> {
        let url = NodeUrl::parse(&self.url).map_err(|e| SettingsError::Flag(e.to_string()))?;
        let peers = self.peers.as_deref().ok_or_else(|| {
            SettingsError::Inconsistent(
                "a node started with --join learns the membership from the cluster".into(),
            )
        })?;
        let mut nodes: Vec<(String, String)> = Membership::parse(peers)
            .map_err(|e| SettingsError::Flag(format!("invalid --peers: {e}")))?
            .members()
            .iter()
            .map(|m| (m.id.clone(), m.url.to_string()))
            .collect();
        match nodes.iter().find(|(id, _)| *id == self.id) {
            Some((_, listed)) if *listed != url.to_string() => {
                return Err(SettingsError::Inconsistent(format!(
                    "--url {url} differs from the address --peers gives {} ({listed})",
                    self.id
                )))
            }
            Some(_) => {}
            None => nodes.push((self.id.clone(), url.to_string())),
        }
        Membership::new(nodes).map_err(|e| SettingsError::Flag(format!("invalid --peers: {e}")))
    }

    /// The replication factor: `--replication-factor` checked against the number of
    /// storage nodes, or its default for them. A joining node takes the flag, or
    /// the default of a cluster of at least three nodes; the cluster refuses it if
    /// its own differs.
    pub fn resolved_replication_factor(&self) -> Result<usize, SettingsError> {
        let nodes = match self.join {
            Some(_) => usize::MAX,
            None => self.membership()?.len(),
        };
        replication_factor(self.replication_factor, nodes).map_err(SettingsError::Inconsistent)
    }
}

impl RoleSettings for StorageSettings {
    const ROLE: Role = Role::Storage;

    fn flags(&self) -> Vec<Flag> {
        Flags::default()
            .value("id", &self.id)
            .value("url", &self.url)
            .optional("listen", self.listen.as_ref())
            .value("gossip-delay", self.gossip_delay)
            .optional("peers", self.peers.as_ref())
            .optional("join", self.join.as_ref())
            .optional("cluster-id", self.cluster_id.as_ref())
            .optional("replication-factor", self.replication_factor)
            .value("max-versions", self.max_versions)
            .value("write-acks", self.write_acks)
            .value("vnodes", self.vnodes)
            .value("anti-entropy-interval", self.anti_entropy_interval)
            .value("rpc-deadline", self.rpc_deadline)
            .value("ack-timeout", self.ack_timeout)
            .value("probe-interval", self.probe_interval)
            .value("probe-timeout", self.probe_timeout)
            .value("probe-fanout", self.probe_fanout)
            .value("suspicion-timeout", self.suspicion_timeout)
            .optional("dial", self.dial.as_ref())
            .optional("data-dir", self.data_dir.as_ref().map(|d| d.display()))
            .optional("fsync", self.fsync)
            .optional("metrics-listen", self.metrics_listen)
            .optional("resp-listen", self.resp_listen)
            .optional("break-acks", self.break_acks.then_some(true))
            .build()
    }

    fn check(&self) -> Result<(), SettingsError> {
        self.listen_addr()?;
        let factor = self.resolved_replication_factor()?;
        check_write_acks(self.write_acks, factor).map_err(SettingsError::Inconsistent)?;
        Ok(())
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn url(&self) -> &str {
        &self.url
    }

    fn listen(&self) -> Option<&str> {
        self.listen.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use dida_core::limits::{MAX_DEADLINE_MS, MAX_GOSSIP_DELAY_MS, MAX_VERSIONS, MAX_VNODES};

    use super::*;
    use crate::command_line::tests::{check_bounds, check_definition};

    const PEERS: &str =
        "s1=http://127.0.0.1:7001,s2=http://127.0.0.1:7002,s3=http://127.0.0.1:7003";

    fn parse(extra: &[String]) -> Result<StorageSettings, SettingsError> {
        let mut args = vec![
            "--id=s1".to_string(),
            "--url=http://127.0.0.1:7001".to_string(),
            format!("--peers={PEERS}"),
        ];
        args.extend_from_slice(extra);
        StorageSettings::parse_without_env(args)
    }

    #[test]
    fn every_flag_is_written_back_and_has_its_variable() {
        let full = StorageSettings {
            id: "s1".into(),
            url: "http://127.0.0.1:7001".into(),
            listen: Some("0.0.0.0:7001".into()),
            gossip_delay: 7,
            peers: Some(PEERS.into()),
            join: None,
            cluster_id: Some("blue".into()),
            replication_factor: Some(2),
            max_versions: 9,
            write_acks: 2,
            vnodes: 64,
            anti_entropy_interval: 11,
            rpc_deadline: 12,
            ack_timeout: 13,
            probe_interval: 14,
            probe_timeout: 15,
            probe_fanout: 17,
            suspicion_timeout: 16,
            dial: Some("s2=http://127.0.0.1:9002".into()),
            data_dir: Some("/var/lib/dida/s1".into()),
            fsync: Some(Fsync::Batch),
            metrics_listen: Some("127.0.0.1:17001".parse().unwrap()),
            resp_listen: Some("127.0.0.1:16379".parse().unwrap()),
            break_acks: true,
        };
        let joining = StorageSettings {
            peers: None,
            join: Some("http://127.0.0.1:7002,http://127.0.0.1:7003".into()),
            ..full.clone()
        };
        check_definition(&[full, joining]);
    }

    #[test]
    fn a_node_starts_a_cluster_or_joins_one_never_both() {
        let joining = StorageSettings::parse_without_env([
            "--id=s4",
            "--url=http://127.0.0.1:7004",
            "--join=http://127.0.0.1:7001, http://127.0.0.1:7002",
        ])
        .expect("valid");
        assert_eq!(
            joining.seeds().unwrap(),
            ["http://127.0.0.1:7001", "http://127.0.0.1:7002"]
        );
        assert_eq!(joining.resolved_replication_factor().unwrap(), 3);
        assert!(joining.membership().is_err());
        for (args, says) in [
            (vec!["--id=s4", "--url=http://127.0.0.1:7004"], "--peers"),
            (
                vec![
                    "--id=s4",
                    "--url=http://127.0.0.1:7004",
                    "--join=http://127.0.0.1:7001",
                    &format!("--peers={PEERS}"),
                ],
                "cannot be used with",
            ),
            (
                vec![
                    "--id=s4",
                    "--url=http://127.0.0.1:7004",
                    "--join=127.0.0.1:7001",
                ],
                "http://",
            ),
        ] {
            let err = StorageSettings::parse_without_env(args)
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn every_bound_is_its_constant() {
        let base = StorageSettings::new("s1", "http://127.0.0.1:7001", PEERS).unwrap();
        check_bounds(
            &base,
            &[
                ("rpc-deadline", MAX_DEADLINE_MS),
                ("ack-timeout", MAX_DEADLINE_MS),
                ("gossip-delay", MAX_GOSSIP_DELAY_MS),
                ("vnodes", u64::from(MAX_VNODES)),
                ("max-versions", MAX_VERSIONS as u64),
                ("probe-fanout", MAX_PROBE_FANOUT as u64),
            ],
        );
    }

    #[test]
    fn write_acks_and_replication_factor_are_checked_together() {
        assert!(parse(&["--write-acks=3".into()]).is_ok());
        let refused = parse(&["--write-acks=4".into()]).unwrap_err();
        assert!(
            matches!(refused, SettingsError::Inconsistent(_)),
            "{refused}"
        );
        let refused =
            parse(&["--replication-factor=2".into(), "--write-acks=3".into()]).unwrap_err();
        assert!(
            matches!(refused, SettingsError::Inconsistent(_)),
            "{refused}"
        );
        let refused = parse(&["--replication-factor=4".into()]).unwrap_err();
        assert!(
            matches!(refused, SettingsError::Inconsistent(_)),
            "{refused}"
        );
    }

    #[test]
    fn the_node_joins_the_membership_at_its_own_address() {
        let alone = StorageSettings::new("s4", "http://127.0.0.1:7004", PEERS).unwrap();
        assert_eq!(alone.membership().unwrap().len(), 4);
        let refused = StorageSettings::new("s1", "http://127.0.0.1:9999", PEERS).unwrap_err();
        assert!(
            matches!(refused, SettingsError::Inconsistent(_)),
            "{refused}"
        );
        let mut above = alone.clone();
        above.max_versions = MAX_VERSIONS + 1;
        assert!(matches!(above.validated(), Err(SettingsError::Flag(_))));
        // A node that is no member yet may be routed: it may join later.
        let mut dial = alone.clone();
        dial.dial = Some("s9=http://127.0.0.1:1".into());
        assert!(dial.check().is_ok());
    }

    #[test]
    fn a_value_is_never_read_as_a_flag() {
        let refused = StorageSettings::new("s1", "http://127.0.0.1:7001", "--help").unwrap_err();
        assert!(refused.to_string().contains("--peers"), "{refused}");
        assert!(
            parse(&["--fsync=batch".into()]).is_err(),
            "--fsync needs --data-dir"
        );
    }
}
