//! Configuring, starting and stopping a storage node.
//!
//! [`start`] runs a node on an already bound listener inside the current tokio runtime,
//! which is how tests run a whole cluster in one process; [`run`] is the `dida storage`
//! process: it binds the node's URL and serves until interrupted.

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use dida_core::Membership;
use dida_proto::server::{bind, wait_for_termination, ServerHandle};
use dida_proto::storage::replication_server::ReplicationServer;
use dida_proto::storage::storage_server::StorageServer;
use dida_proto::transport::MAX_MESSAGE_BYTES;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::info;

use crate::anti_entropy;
use crate::api::StorageApi;
use crate::detector;
use crate::gossip::Gossip;
use crate::peers::Peers;
use crate::replication::ReplicationService;
use crate::state::NodeState;
use crate::stats::ReplicationStats;
use crate::store::MultiVersionStore;
use crate::view::ViewCell;

/// Everything a storage node is configured with.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// This node's id; must be a member.
    pub id: String,
    /// Every storage node of the cluster, this one included.
    pub membership: Membership,
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
    /// How long a peer stays suspected, unreachable by anyone, before it is declared
    /// failed.
    pub suspicion_timeout: Duration,
}

impl StorageConfig {
    /// A configuration with the platform's defaults: replication factor 3, 5 versions,
    /// acknowledgement by the primary alone, 128 virtual nodes, one anti-entropy round
    /// per second, 2 s call deadlines, a 5 s acknowledgement timeout, and crash
    /// detection probing every 250 ms with 500 ms probes and 1.5 s of suspicion.
    pub fn new(id: impl Into<String>, membership: Membership) -> Self {
        Self {
            id: id.into(),
            membership,
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
            suspicion_timeout: Duration::from_millis(1500),
        }
    }

    /// Checks the settings against each other.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.membership.index_of(&self.id)?;
        if self.replication_factor == 0 {
            bail!("--replication-factor must be at least 1");
        }
        if self.max_versions == 0 {
            bail!("--max-versions must be at least 1");
        }
        if self.write_acks == 0 || self.write_acks > self.replication_factor {
            bail!(
                "--write-acks must be between 1 and the replication factor ({}), got {}",
                self.replication_factor,
                self.write_acks
            );
        }
        if self.vnodes == 0 {
            bail!("--vnodes must be at least 1");
        }
        if self.anti_entropy_interval.is_zero() {
            bail!("the anti-entropy interval must be positive");
        }
        if self.probe_interval.is_zero() || self.probe_timeout.is_zero() {
            bail!("the probe interval and probe timeout must be positive");
        }
        Ok(())
    }
}

/// A running storage node. Dropping the handle stops the node.
#[derive(Debug)]
pub struct NodeHandle {
    server: ServerHandle,
    state: Arc<NodeState>,
}

impl NodeHandle {
    /// The address the node serves on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The node's store, for in-process inspection (tests, embedding).
    pub fn store(&self) -> &MultiVersionStore {
        &self.state.store
    }

    /// Stops serving and waits for the server to finish.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.server.shutdown().await
    }
}

/// Starts a storage node serving on `listener`, in the current runtime.
pub async fn start(config: StorageConfig, listener: TcpListener) -> anyhow::Result<NodeHandle> {
    config.validate()?;
    let me = config.membership.index_of(&config.id)?;
    let view = ViewCell::new(&config.membership, config.vnodes, config.replication_factor);
    let state = Arc::new(NodeState {
        me,
        replica: config.membership.members()[me].replica,
        store: MultiVersionStore::new(config.max_versions, view.initial_ring()),
        view,
        view_changed: Notify::new(),
        suspected: Mutex::new(BTreeSet::new()),
        fenced: AtomicBool::new(false),
        taken_over: Mutex::new(HashSet::new()),
        takeover_lock: tokio::sync::Mutex::new(()),
        peers: Peers::new(&config.membership, me, config.rpc_deadline)?,
        gossip: Gossip::new(config.membership.len(), me, config.gossip_delay),
        stats: ReplicationStats::default(),
        config,
    });

    let storage = StorageServer::new(StorageApi {
        state: state.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let replication = ReplicationServer::new(ReplicationService {
        state: state.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let router = dida_proto::transport::server_builder()
        .add_service(storage)
        .add_service(replication);
    let mut tasks = Gossip::spawn_senders(&state);
    tasks.push(anti_entropy::spawn(state.clone()));
    tasks.push(detector::spawn(state.clone()));
    let server = ServerHandle::spawn(router, listener)?.with_tasks(tasks);
    info!(
        id = %state.id(),
        addr = %server.local_addr(),
        replica = state.replica,
        nodes = state.config.membership.len(),
        replication_factor = state.ring().replication_factor(),
        "storage node serving"
    );
    Ok(NodeHandle { server, state })
}

/// Runs the `dida storage` process: binds the node's own URL and serves until
/// Ctrl-C or SIGTERM.
pub async fn run(config: StorageConfig) -> anyhow::Result<()> {
    config.validate()?;
    let url = config.membership.get(&config.id)?.url.clone();
    let listener = bind(&url.host, url.port).await?;
    let handle = start(config, listener).await?;
    wait_for_termination().await;
    info!("storage node stopping");
    handle.shutdown().await
}
