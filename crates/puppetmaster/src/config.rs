//! What a PuppetMaster is configured with: where its PCSs are, and the cluster-wide
//! settings it gives every node it starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The PuppetMaster's configuration.
#[derive(Debug, Clone)]
pub struct PmConfig {
    /// The `dida` binary an in-process PCS runs (used only when `pcs` is empty).
    pub binary: PathBuf,
    /// URLs of the PCSs to place nodes on; empty: run a PCS in-process.
    pub pcs: Vec<String>,
    /// The token the PCSs require, if any.
    pub token: Option<String>,
    /// `--replication-factor` of every storage node, worker and storage client.
    pub replication_factor: usize,
    /// `--max-versions` of every storage node.
    pub max_versions: usize,
    /// `--write-acks` of every storage node.
    pub write_acks: usize,
    /// `--operators` of every worker (absolute); `None`: the built-in operators.
    pub operators: Option<PathBuf>,
    /// `RUST_LOG` of every node (their lines are relayed to stderr).
    pub node_log: String,
    /// Where the debug sink listens once a script says `debug`.
    pub debug_listen: SocketAddr,
    /// The sink's URL as workers reach it; by default `http://<debug_listen>`.
    pub debug_url: Option<String>,
    /// How long a client may wait for its outcome.
    pub client_timeout: Duration,
    /// Deadline of each call to a node (status, listings, populate).
    pub rpc_deadline: Duration,
    /// Where the scheduler serves its HTTP gateway (`--http-listen`), if it does.
    pub http_listen: Option<SocketAddr>,
    /// Gives every node `--metrics-listen` on its own host at its port plus this
    /// offset (`--metrics-port-offset`), so each node's metrics address follows
    /// from the script; `None`: nodes serve no metrics.
    pub metrics_port_offset: Option<u16>,
    /// Gives every storage node `--resp-listen` on its own host at its port plus
    /// this offset (`--resp-port-offset`), so each node speaks the Redis protocol
    /// at an address that follows from the script; `None`: no RESP.
    pub resp_port_offset: Option<u16>,
    /// Where the web dashboard of the session serves (`--dashboard`), if it does.
    pub dashboard: Option<SocketAddr>,
}

impl PmConfig {
    /// The defaults: an in-process PCS running `binary`, the storage defaults of the
    /// nodes (replication factor 3, 5 versions, 1 acknowledgement), built-in
    /// operators, quiet nodes, the debug sink on 127.0.0.1:10001.
    pub fn new(binary: PathBuf) -> Self {
        Self {
            binary,
            pcs: Vec::new(),
            token: None,
            replication_factor: dida_core::limits::DEFAULT_REPLICATION_FACTOR,
            max_versions: dida_settings::DEFAULT_MAX_VERSIONS,
            write_acks: dida_settings::DEFAULT_WRITE_ACKS,
            operators: None,
            node_log: "warn".into(),
            debug_listen: SocketAddr::from(([127, 0, 0, 1], DEBUG_PORT)),
            debug_url: None,
            client_timeout: Duration::from_secs(300),
            rpc_deadline: Duration::from_secs(2),
            http_listen: None,
            metrics_port_offset: None,
            resp_port_offset: None,
            dashboard: None,
        }
    }
}

/// The PuppetMaster's own port, where workers in debug mode report (SPEC §6.2).
pub const DEBUG_PORT: u16 = 10001;
