//! Configuring, starting and stopping a PCS, in-process or as `dida pcs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dida_core::limits::DEFAULT_PCS_MAX_NODES;
use dida_proto::control::process_creation_server::ProcessCreationServer;
use dida_proto::control::OutputReply;
use dida_proto::server::{wait_for_termination, ServerHandle};
use dida_telemetry::NodeTelemetry;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::auth::RequireToken;
use crate::children::Children;
use crate::metrics::PcsCollector;
use crate::service::PcsService;

/// Everything a PCS is configured with. Requests never choose any of it.
#[derive(Debug, Clone)]
pub struct PcsConfig {
    /// The `dida` binary the PCS runs (for `dida pcs`, itself).
    pub binary: PathBuf,
    /// When set, every request must carry this token.
    pub token: Option<String>,
    /// How long a started node may take to listen on its URL.
    pub start_timeout: Duration,
    /// Most nodes it runs at once (`--max-nodes`); a start beyond it is refused
    /// with `RESOURCE_EXHAUSTED`.
    pub max_nodes: usize,
    /// Where to serve `/metrics`, `/healthz` and `/readyz` (`--metrics-listen`).
    pub metrics_listen: Option<SocketAddr>,
}

impl PcsConfig {
    /// A PCS running `binary`, without a token, giving nodes 30 s to start and
    /// running at most [`DEFAULT_PCS_MAX_NODES`] at once.
    pub fn new(binary: PathBuf) -> Self {
        Self {
            binary,
            token: None,
            start_timeout: Duration::from_secs(30),
            max_nodes: DEFAULT_PCS_MAX_NODES,
            metrics_listen: None,
        }
    }
}

/// A running PCS. Dropping it kills every node it started.
#[derive(Debug)]
pub struct PcsHandle {
    server: ServerHandle,
    children: Arc<Children>,
}

impl PcsHandle {
    /// The address the PCS serves on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Every line its nodes print from now on (the PCS's own lines use stream `pcs`).
    pub fn subscribe(&self) -> broadcast::Receiver<OutputReply> {
        self.children.subscribe()
    }

    /// Kills every node still running (returning their pids), then stops serving.
    pub async fn shutdown(self) -> anyhow::Result<Vec<u32>> {
        let pids = self.children.stop_all().await;
        self.server.shutdown().await?;
        Ok(pids)
    }
}

/// Starts a PCS serving on `listener`, in the current runtime.
pub async fn start(config: PcsConfig, listener: TcpListener) -> anyhow::Result<PcsHandle> {
    anyhow::ensure!(
        config.binary.is_file(),
        "the dida binary {} does not exist",
        config.binary.display()
    );
    anyhow::ensure!(config.max_nodes > 0, "--max-nodes must be at least 1");
    let children = Arc::new(Children::new(
        config.binary.clone(),
        config.start_timeout,
        config.max_nodes,
    ));
    let service = ProcessCreationServer::with_interceptor(
        PcsService {
            children: children.clone(),
        },
        RequireToken::new(config.token.clone()),
    );
    // Its RPCs (starts, kills, listings) are counted by the RPC layer; the
    // collector counts the processes it runs.
    let collector = PcsCollector::new(children.clone());
    let telemetry = NodeTelemetry::start(
        config.metrics_listen,
        dida_telemetry::always_ready(),
        |registry| registry.register_collector(Box::new(collector)),
    )
    .await?;
    let router = dida_proto::transport::server_builder(telemetry.telemetry.rpc_layer())?
        .add_service(telemetry.health)
        .add_service(service);
    let server = ServerHandle::spawn(router, listener)?.with_tasks(telemetry.tasks);
    info!(addr = %server.local_addr(), token = config.token.is_some(), binary = %config.binary.display(), "PCS serving");
    Ok(PcsHandle { server, children })
}

/// Runs `dida pcs` on `listener` until Ctrl-C or SIGTERM, printing every line its
/// nodes print as `[node] line` on stdout; then kills its nodes.
pub async fn run(config: PcsConfig, listener: TcpListener) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() && config.token.is_none() {
        warn!(%addr, "this PCS is reachable from other machines and has no token: anyone who can reach it can start and kill dida nodes here (give --token)");
    }
    let handle = start(config, listener).await?;
    let mut lines = handle.subscribe();
    let printer = tokio::spawn(async move {
        loop {
            match lines.recv().await {
                Ok(line) => println!("[{}] {}", line.node_id, line.line),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    println!("[pcs] {missed} lines of node output were dropped")
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    wait_for_termination().await;
    info!("PCS stopping: killing its nodes");
    let pids = handle.shutdown().await?;
    printer.abort();
    info!(stopped = pids.len(), "PCS stopped");
    Ok(())
}
