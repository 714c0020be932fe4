//! Configuring, starting and stopping a storage node.
//!
//! [`start`] runs a node on an already bound listener inside the current tokio runtime,
//! which is how tests run a whole cluster in one process; [`run`] is the `dida storage`
//! process: it binds the node's URL and serves until interrupted.

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use dida_proto::server::{bind, wait_for_termination, ServerHandle};
use dida_proto::storage::replication_server::ReplicationServer;
use dida_proto::storage::storage_server::StorageServer;
use dida_proto::transport::MAX_MESSAGE_BYTES;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tracing::info;

use crate::anti_entropy;
use crate::api::StorageApi;
use crate::config::StorageConfig;
use crate::detector;
use crate::gossip::Gossip;
use crate::peers::Peers;
use crate::replication::ReplicationService;
use crate::state::NodeState;
use crate::stats::ReplicationStats;
use crate::store::MultiVersionStore;
use crate::view::ViewCell;

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
        heard_from: Mutex::new(BTreeSet::new()),
        fenced: AtomicBool::new(false),
        taken_over: Mutex::new(HashSet::new()),
        takeover_lock: tokio::sync::Mutex::new(()),
        peers: Peers::new(&config, me, config.rpc_deadline)?,
        gossip: Gossip::new(config.membership.len(), me, config.gossip_delay),
        stats: ReplicationStats::default(),
        config,
    });

    let (stop_signal, stop) = watch::channel(());
    let storage = StorageServer::new(StorageApi {
        state: state.clone(),
        stop,
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
    let server = ServerHandle::spawn(router, listener)?
        .with_tasks(tasks)
        .with_stop_signal(stop_signal);
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
