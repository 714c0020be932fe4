//! The dida web dashboard: what a person looks at before reading logs.
//!
//! One HTTP server, every asset compiled into the binary (machines may have no
//! internet), shows a running cluster live: its nodes with their role, state
//! (alive, suspected, failed, fenced…), load and key share; the ring; a records
//! browser that shows a key's versions on each replica; the executions with a
//! per-operator timeline across workers; throughput and latency charts; and, when a
//! PuppetMaster runs it, the PuppetMaster's output, the workers' debug reports and a
//! console that runs script lines.
//!
//! The dashboard only *reads* the cluster, through the same RPCs the CLI uses
//! (`Status`, `ListExecutions`, `Outcome`, `ListRecords`), every call under a
//! deadline, so a dead node shows as such instead of stalling the page. It polls
//! every [`POLL_INTERVAL`] and pushes each new [`snapshot::Snapshot`] to the
//! browsers over server-sent events.
//!
//! - [`colours`]: each node's colour, kept whoever else fails, joins or leaves;
//! - [`topology`]: which nodes to watch (fixed, or followed from a PuppetMaster);
//! - [`snapshot`]: what one poll of the cluster gathers, and how node states are
//!   decided from the nodes' own views;
//! - `records`: one key's versions on every replica;
//! - [`feed`]: the PuppetMaster's output and debug reports, and the script lines
//!   typed into the page;
//! - `http`: the routes and the embedded page;
//! - `origin`: the `Host` and `Origin` checks that keep other sites' pages out.
//!
//! The dashboard has no authentication: it refuses to listen on an address other
//! machines can reach unless the process was given `--insecure`
//! ([`check_exposure`]), and serves within the connection and header-time limits of
//! every dida listener ([`dida_proto::http_server`]).

pub mod colours;
pub mod feed;
mod http;
mod origin;
mod records;
pub mod snapshot;
pub mod topology;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use feed::{Feed, FeedKind, ScriptRequest};
pub use topology::{KnownNode, Topology};

/// How often the dashboard polls the cluster (and so how fresh the page is).
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Deadline of every call the dashboard makes to a node: a node that does not
/// answer within it is shown unreachable for that poll.
pub const RPC_DEADLINE: Duration = Duration::from_secs(1);

/// What a dashboard shows and where it serves.
#[derive(Debug)]
pub struct DashboardConfig {
    /// Where the page is served.
    pub listen: SocketAddr,
    /// The nodes to watch; follows the PuppetMaster's session when it runs one.
    pub topology: watch::Receiver<Topology>,
    /// The PuppetMaster's output and debug reports; `None` for a standalone
    /// dashboard (the page then says there is no console).
    pub feed: Option<Arc<Feed>>,
    /// Where script lines typed into the page go; `None`: no console.
    pub script: Option<mpsc::Sender<ScriptRequest>>,
}

/// A running dashboard.
#[derive(Debug)]
pub struct DashboardHandle {
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl DashboardHandle {
    /// Where it serves (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DashboardHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Refuses to serve the dashboard on an address other machines can reach unless
/// this process was given `--insecure`: anyone reaching it can read every record
/// and, beside a PuppetMaster, crash nodes from its console. A cluster token or TLS
/// does not help here, since the page checks neither.
pub fn check_exposure(listen: SocketAddr) -> anyhow::Result<()> {
    let host = listen.ip().to_string();
    if dida_proto::security::is_loopback(&host) || dida_proto::security::installed().insecure {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to serve the dashboard on {listen}, which other machines can reach: \
         the dashboard has no authentication (anyone could read records and run script \
         lines); listen on a loopback address such as 127.0.0.1, or pass --insecure"
    )
}

/// Starts polling the cluster and serving the page; both stop when the handle is
/// dropped. Refuses a non-loopback `listen` without `--insecure`
/// ([`check_exposure`]).
pub async fn start(config: DashboardConfig) -> anyhow::Result<DashboardHandle> {
    check_exposure(config.listen)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the dashboard (is the port in use?)",
                config.listen
            )
        })?;
    let addr = listener.local_addr().context("dashboard address")?;
    let (snapshots_tx, snapshots) = watch::channel(Arc::new(snapshot::Snapshot::default()));
    let poller = tokio::spawn(snapshot::poll(config.topology.clone(), snapshots_tx));
    let state = http::AppState {
        snapshots,
        topology: config.topology,
        feed: config.feed,
        script: config.script,
    };
    let server = tokio::spawn(dida_proto::http_server::serve(
        listener,
        http::router(state, addr),
        dida_proto::connections::ConnectionLimits::for_a_side_port(),
    ));
    tracing::info!(%addr, "dashboard serving");
    Ok(DashboardHandle {
        addr,
        tasks: vec![poller, server],
    })
}
