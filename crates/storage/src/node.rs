//! Configuring, starting and stopping a storage node.
//!
//! [`start`] runs a node on an already bound listener inside the current tokio runtime,
//! which is how tests run a whole cluster in one process; [`run`] is the `dida storage`
//! process: it binds the node's URL and serves until interrupted.

use dida_core::listen::ListenAddr;
use std::net::SocketAddr;
use std::sync::Arc;

use dida_proto::server::{bind_node, wait_for_termination, ServerHandle};
use dida_proto::storage::membership_server::MembershipServer;
use dida_proto::storage::replication_server::ReplicationServer;
use dida_proto::storage::storage_server::StorageServer;
use dida_proto::transport::MAX_MESSAGE_BYTES;
use dida_telemetry::NodeTelemetry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::api::StorageApi;
use crate::config::StorageConfig;
use crate::error::{ConfigError, StorageError};
use crate::grpc_peers::GrpcPeers;
use crate::membership_service::MembershipService;
use crate::metrics::{self, StorageCollector};
use crate::node_core::Node;
use crate::peer_service::ReplicationService;
use crate::store::MultiVersionStore;

/// A running storage node. Dropping the handle stops the node.
#[derive(Debug)]
pub struct NodeHandle {
    server: ServerHandle,
    node: Arc<Node>,
    metrics_addr: Option<SocketAddr>,
    resp_addr: Option<SocketAddr>,
}

impl NodeHandle {
    /// The address the node serves on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Where the node serves `/metrics`, `/healthz` and `/readyz`, if it does.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Where the node serves the Redis protocol (`--resp-listen`), if it does.
    pub fn resp_addr(&self) -> Option<SocketAddr> {
        self.resp_addr
    }

    /// Becomes true once the cluster removed this node (`dida cluster remove`): it
    /// has handed its records off, and its process should stop.
    pub fn departed(&self) -> watch::Receiver<bool> {
        self.node.departed()
    }

    /// The node's store, for in-process inspection (tests, embedding).
    pub fn store(&self) -> &MultiVersionStore {
        self.node.store()
    }

    /// Stops serving and waits for the server to finish.
    pub async fn shutdown(self) -> Result<(), StorageError> {
        self.server
            .shutdown()
            .await
            .map_err(|e| StorageError::serve("shut down cleanly", e))
    }
}

/// Starts a storage node serving on `listener`, in the current runtime.
pub async fn start(
    config: StorageConfig,
    listener: TcpListener,
) -> Result<NodeHandle, StorageError> {
    config.validate()?;
    let me = config
        .membership
        .index_of(&config.id)
        .map_err(ConfigError::from)?;
    let transport = Arc::new(GrpcPeers::new(&config, me)?);
    let config_metrics = config.metrics_listen;
    let resp_listener = match config.resp_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| StorageError::serve("bind --resp-listen", format!("{addr}: {e}")))?,
        ),
        None => None,
    };
    let resp_addr = resp_listener
        .as_ref()
        .and_then(|listener| listener.local_addr().ok());
    let node = Arc::new(Node::new(config, transport)?);

    let (stop_signal, stop) = watch::channel(());
    let storage = StorageServer::new(StorageApi {
        node: node.clone(),
        stop,
        listings: Default::default(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let membership = MembershipServer::new(MembershipService { node: node.clone() });
    let replication = ReplicationServer::new(ReplicationService { node: node.clone() })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let collector = StorageCollector::new(node.clone());
    let telemetry = NodeTelemetry::start(
        config_metrics,
        metrics::readiness(node.clone()),
        |registry| registry.register_collector(Box::new(collector)),
    )
    .await
    .map_err(|e| StorageError::serve("serve its metrics", e))?;
    let router = dida_proto::transport::server_builder(telemetry.telemetry.rpc_layer())
        .map_err(|e| StorageError::serve("set up its gRPC server", e))?
        .add_service(telemetry.health)
        .add_service(storage)
        .add_service(replication)
        .add_service(membership);
    let mut tasks: Vec<_> = node
        .background_tasks()
        .into_iter()
        .map(tokio::spawn)
        .collect();
    tasks.extend(telemetry.tasks);
    if let Some(listener) = resp_listener {
        let resp = crate::resp::start(listener, node.clone(), stop_signal.subscribe())
            .map_err(|e| StorageError::serve("serve RESP over TLS", format!("{e:#}")))?;
        tasks.push(tokio::spawn(resp));
    }
    let server = ServerHandle::spawn(router, listener)
        .map_err(|e| StorageError::serve("start serving", e))?
        .with_tasks(tasks)
        .with_stop_signal(stop_signal);
    info!(
        id = %node.id(),
        addr = %server.local_addr(),
        replica = node.replica,
        nodes = node.peering.roster().len(),
        replication_factor = node.ring().replication_factor(),
        "storage node serving"
    );
    Ok(NodeHandle {
        server,
        node,
        metrics_addr: telemetry.metrics_addr,
        resp_addr,
    })
}

/// Runs the `dida storage` process: binds `--listen` (or the node's own URL) and
/// serves until Ctrl-C or SIGTERM, or until the cluster removed it (`dida cluster remove`).
pub async fn run(config: StorageConfig) -> Result<(), StorageError> {
    config.validate()?;
    let url = config
        .membership
        .get(&config.id)
        .map_err(ConfigError::from)?
        .url
        .clone();
    let listen = config
        .listen
        .clone()
        .unwrap_or_else(|| ListenAddr::of_url(&url));
    let listener = bind_node(&listen, &url)
        .await
        .map_err(|e| StorageError::serve("bind its address", e))?;
    let handle = start(config, listener).await?;
    let mut departed = handle.departed();
    tokio::select! {
        () = wait_for_termination() => info!("storage node stopping"),
        _ = departed.wait_for(|gone| *gone) => {
            info!("removed from the cluster after handing every record off: stopping");
        }
    }
    handle.shutdown().await
}
