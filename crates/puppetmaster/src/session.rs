//! A PuppetMaster session: runs script lines one after the other, whatever they come
//! from (a file, `--step`, the console), and reports every error with its line
//! number without ever stopping the session itself.
//!
//! Commands run in order. `client` returns as soon as the scheduler accepted the
//! execution (its outcome is printed when it arrives); the administrative commands
//! (`populate`, `status`, `listServer`, `listGlobal`, `crash`, `restart`, `addWorker`,
//! `addStorage`) finish before the next line, each bounded by deadlines; `wait` and
//! `await` block on purpose. `addStorage` returns once the storage cluster lists the
//! new node active: it has caught up the ranges it gains. `removeWorker` returns
//! once the worker is leaving (it takes no new work); the worker drains meanwhile
//! and its end is announced when its PCS reaps it — the session waits for that
//! before it stops its nodes. `removeStorage`
//! returns once the storage cluster decided the node leaves; the node hands its
//! records off, is removed and exits by itself, which is announced when its PCS
//! sees it — the session waits for that too before it stops its nodes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dida_core::script::{Command, Line, Role};
use dida_dashboard::{KnownNode, Topology};
use dida_pcs::auth::TOKEN_HEADER;
use dida_pcs::{PcsClient, PcsConfig, PcsHandle};
use dida_proto::server::ServerHandle;
use futures::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clients::Clients;
use crate::cluster::{Cluster, NodeState, Removal};
use crate::config::PmConfig;
use crate::error::CommandError;
use crate::output::Printer;
use crate::{debug_sink, inspect, process_watch};

/// A running session; see the module documentation.
#[derive(Debug)]
pub struct Session {
    config: Arc<PmConfig>,
    printer: Arc<Printer>,
    base_dir: PathBuf,
    cluster: Cluster,
    clients: Clients,
    local_pcs: Option<PcsHandle>,
    relays: Vec<JoinHandle<()>>,
    debug_sink: Option<(ServerHandle, String)>,
    errors: usize,
    start_failures: usize,
    /// Where the session publishes its nodes for a dashboard, after every line.
    topology: Option<watch::Sender<Topology>>,
    /// Nodes whose process ended without the session's doing, as the PCSs say
    /// (followed while a dashboard is shown).
    exited: process_watch::Exited,
    /// Workers asked to leave by `removeWorker`, and storage nodes by
    /// `removeStorage`, whose process has not ended yet.
    removals: Vec<Removal>,
}

/// How a session went, for the exit code of batch mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Lines that failed (invalid or refused).
    pub errors: usize,
    /// Nodes that could not start.
    pub start_failures: usize,
}

impl Summary {
    /// True when every line ran and every node started.
    pub fn is_clean(&self) -> bool {
        self.errors == 0 && self.start_failures == 0
    }
}

impl Session {
    /// Starts a session whose relative paths are resolved against `base_dir` (the
    /// script's folder). With no PCS configured, starts one in-process on a free
    /// loopback port, protected by a fresh random token.
    pub async fn start(
        config: PmConfig,
        printer: Arc<Printer>,
        base_dir: PathBuf,
    ) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        let (pcs, local_pcs) = if config.pcs.is_empty() {
            let token = random_token()?;
            let mut pcs_config = PcsConfig::new(config.binary.clone());
            pcs_config.token = Some(token.clone());
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
                .await
                .context("cannot start the local PCS")?;
            let handle = dida_pcs::node::start(pcs_config, listener).await?;
            let url = format!("http://{}", handle.local_addr());
            (vec![PcsClient::new(&url, Some(&token))?], Some(handle))
        } else {
            let clients = config
                .pcs
                .iter()
                .map(|url| PcsClient::new(url, config.token.as_deref()))
                .collect::<anyhow::Result<Vec<_>>>()?;
            for client in &clients {
                client.ping().await?;
            }
            (clients, None)
        };
        let relays = pcs
            .iter()
            .map(|client| tokio::spawn(relay_output(client.clone(), printer.clone())))
            .collect();
        Ok(Self {
            clients: Clients::new(config.client_timeout, printer.clone()),
            cluster: Cluster::new(config.clone(), pcs),
            config,
            printer,
            base_dir,
            local_pcs,
            relays,
            debug_sink: None,
            errors: 0,
            start_failures: 0,
            topology: None,
            exited: process_watch::Exited::default(),
            removals: Vec::new(),
        })
    }

    /// Publishes the session's nodes to `sink` now and after every line (a
    /// dashboard follows them).
    pub fn publish_topology(&mut self, sink: watch::Sender<Topology>) {
        let pcs = self.cluster.pcs().to_vec();
        // The task ends once the dashboard is gone (no receiver is left).
        process_watch::start(pcs, self.exited.clone(), sink.clone());
        self.topology = Some(sink);
        self.publish();
    }

    fn publish(&self) {
        let Some(sink) = &self.topology else { return };
        let nodes = self.cluster.nodes();
        let storage = nodes
            .iter()
            .filter(|n| n.decl.role == Role::Storage)
            .map(|n| (n.decl.id.clone(), n.decl.url.to_string()))
            .collect();
        let known = nodes
            .iter()
            .map(|n| KnownNode {
                id: n.decl.id.clone(),
                role: n.decl.role.to_string(),
                url: n.decl.url.to_string(),
                process: process_watch::shown_process(
                    &n.decl.id,
                    match n.state {
                        NodeState::Declared => "declared",
                        NodeState::Running(_) => "running",
                        NodeState::FailedToStart => "failed to start",
                        NodeState::Crashed(_) => "crashed",
                        NodeState::Stopped(_) => "stopped",
                        NodeState::Leaving(_) => "leaving",
                        NodeState::Removed(_) => "removed",
                    },
                    &self.exited,
                ),
                metrics: n.metrics.clone(),
            })
            .collect();
        sink.send_replace(Topology {
            storage,
            scheduler: self.cluster.scheduler_url().map(ToString::to_string),
            known,
        });
    }

    /// The session's nodes (for status displays and completion).
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// How the session has gone so far.
    pub fn summary(&self) -> Summary {
        Summary {
            errors: self.errors,
            start_failures: self.start_failures,
        }
    }

    /// Reports an error of line `line` (0: not from a script line).
    pub fn report(&mut self, line: usize, command: &str, message: &str) {
        self.errors += 1;
        self.printer
            .error((line > 0).then_some(line), command, message);
    }

    /// Runs one line; returns false (after reporting why) when it failed.
    pub async fn execute(&mut self, line: &Line) -> bool {
        self.reap_removals();
        let command = &line.command;
        let result = match command {
            Command::Node(decl) => self.cluster.declare(line.number, decl.clone()),
            Command::Debug => self.enable_debug().await,
            other => {
                // Start failures are reported on the node lines; this line still runs.
                self.finish_setup().await;
                self.run(line.number, other).await
            }
        };
        self.publish();
        match result {
            Ok(()) => true,
            Err(error) => {
                self.report(line.number, command.name(), &error.to_string());
                false
            }
        }
    }

    /// Ends the setup block if it is still open: starts its nodes. Returns false if
    /// some node could not start (each failure was reported on its line).
    pub async fn finish_setup(&mut self) -> bool {
        if self.cluster.is_started() {
            return true;
        }
        let sink = self.debug_sink.as_ref().map(|(_, url)| url.clone());
        let failures = self.cluster.start(sink.as_deref(), &self.printer).await;
        for (line, command, message) in &failures {
            self.start_failures += 1;
            self.printer.error(Some(*line), command, message);
        }
        self.publish();
        failures.is_empty()
    }

    async fn run(&mut self, number: usize, command: &Command) -> Result<(), CommandError> {
        match command {
            Command::Client { input, app } => {
                let scheduler = self
                    .cluster
                    .scheduler_url()
                    .cloned()
                    .ok_or(CommandError::Undeclared("scheduler"))?;
                let path = self.resolve(app);
                self.clients
                    .issue(number, input, &app.display().to_string(), &path, &scheduler)
                    .await
            }
            Command::Populate { data } => {
                inspect::populate(&self.cluster, &self.resolve(data), &self.printer).await
            }
            Command::Status => {
                inspect::status(&self.cluster, self.config.rpc_deadline, &self.printer).await;
                Ok(())
            }
            Command::ListServer { id } => {
                let node = self
                    .cluster
                    .node(id)
                    .ok_or_else(|| unknown(&self.cluster, id))?;
                if node.decl.role != Role::Storage {
                    return Err(CommandError::NotListable {
                        id: id.clone(),
                        role: node.decl.role,
                    });
                }
                inspect::list(&self.cluster, std::slice::from_ref(id), &self.printer).await
            }
            Command::ListGlobal => {
                let live: Vec<String> = self
                    .cluster
                    .nodes()
                    .iter()
                    .filter(|n| n.decl.role == Role::Storage)
                    .filter(|n| !matches!(n.state, NodeState::Crashed(_) | NodeState::Removed(_)))
                    .map(|n| n.decl.id.clone())
                    .collect();
                inspect::list(&self.cluster, &live, &self.printer).await
            }
            Command::Crash { id } => self.cluster.crash(id, &self.printer).await,
            Command::Restart { id } => self.restart(id).await,
            Command::Wait { ms } => {
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                Ok(())
            }
            Command::Await => {
                self.clients.wait_all().await;
                Ok(())
            }
            Command::AddWorker(decl) => {
                let sink = self.debug_sink.as_ref().map(|(_, url)| url.clone());
                self.cluster
                    .add_worker(number, decl.clone(), sink.as_deref(), &self.printer)
                    .await
                    .map(drop)
            }
            Command::AddStorage(decl) => {
                let took = self
                    .cluster
                    .add_storage(number, decl.clone(), &self.printer)
                    .await?;
                self.printer.text(|| {
                    format!(
                        "storage {} is active: it caught up {} ms after it listened",
                        decl.id,
                        took.as_millis()
                    )
                });
                Ok(())
            }
            Command::RemoveWorker { id } => {
                let removal = self.cluster.remove_worker(id, &self.printer).await?;
                self.removals.push(removal);
                Ok(())
            }
            Command::RemoveStorage { id } => {
                let removal = self.cluster.remove_storage(id, &self.printer).await?;
                self.removals.push(removal);
                Ok(())
            }
            Command::Node(_) | Command::Debug => unreachable!("handled by execute"),
        }
    }

    /// Records the end of every removal whose worker has been reaped (each already
    /// announced how its worker ended).
    fn reap_removals(&mut self) {
        let (done, pending): (Vec<Removal>, Vec<Removal>) = std::mem::take(&mut self.removals)
            .into_iter()
            .partition(|r| r.task.is_finished());
        self.removals = pending;
        for removal in done {
            let reaped = removal.task.now_or_never().and_then(Result::ok).flatten();
            self.cluster
                .finish_removal(&removal.id, removal.pid, reaped);
        }
    }

    /// Waits (each at most its limit — [`crate::cluster::REMOVE_GRACE`] for a worker — and a
    /// little more) for every node still leaving to end.
    async fn finish_removals(&mut self) {
        for removal in std::mem::take(&mut self.removals) {
            let limit = removal.limit + SHUTDOWN_LIMIT;
            let reaped = match tokio::time::timeout(limit, removal.task).await {
                Ok(Ok(reaped)) => reaped,
                _ => None,
            };
            self.cluster
                .finish_removal(&removal.id, removal.pid, reaped);
        }
    }

    /// `restart <id>`: restarts the node through its PCS, waits (up to
    /// [`RESTART_ANSWER_LIMIT`]) until it answers its status as alive (rejoined),
    /// and prints that status.
    async fn restart(&mut self, id: &str) -> Result<(), CommandError> {
        self.cluster.restart(id, &self.printer).await?;
        let took = self
            .cluster
            .wait_until_answering(id, RESTART_ANSWER_LIMIT)
            .await?;
        self.printer.text(|| {
            format!(
                "storage {id} rejoined ({} ms after it listened)",
                took.as_millis()
            )
        });
        let node = self
            .cluster
            .node(id)
            .cloned()
            .ok_or_else(|| unknown(&self.cluster, id))?;
        inspect::status_of(
            &self.cluster,
            std::slice::from_ref(&node),
            self.config.rpc_deadline,
            &self.printer,
        )
        .await;
        Ok(())
    }

    /// `debug`: starts the sink the workers will report to.
    async fn enable_debug(&mut self) -> Result<(), CommandError> {
        if self.cluster.is_started() {
            return Err(CommandError::DebugTooLate);
        }
        if self.debug_sink.is_some() {
            return Ok(());
        }
        let debug_listen = |source| CommandError::DebugListen {
            addr: self.config.debug_listen,
            source,
        };
        let listener = tokio::net::TcpListener::bind(self.config.debug_listen)
            .await
            .map_err(debug_listen)?;
        let addr = listener.local_addr().map_err(debug_listen)?;
        let url = match &self.config.debug_url {
            Some(url) => url.clone(),
            None => sink_url(addr)?,
        };
        let server =
            debug_sink::start(listener, self.printer.clone()).map_err(CommandError::DebugSink)?;
        self.printer
            .note(&format!("debug mode: workers report to {url}"));
        self.debug_sink = Some((server, url));
        Ok(())
    }

    /// The folder relative paths of `client` and `populate` resolve against (the
    /// script's); lines typed into the dashboard may read files only there.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// Waits for every client issued so far (their outcomes are printed).
    pub async fn wait_for_clients(&mut self) {
        self.clients.wait_all().await;
    }

    /// Stops every node the session started (and its own PCS, if it runs one);
    /// returns the pids stopped.
    pub async fn shutdown(mut self) -> Vec<u32> {
        // A worker asked to leave finishes what it runs first: its executions'
        // outcomes are what the clients wait for. A leaving storage node finishes
        // its handoff: stopping the others first could lose the records it moves.
        self.finish_removals().await;
        let mut pids = self.cluster.stop(&self.printer).await;
        self.publish();
        // The relays hold streams open on the PCSs; a PCS stops only once they close.
        for relay in self.relays.drain(..) {
            relay.abort();
        }
        if let Some(pcs) = self.local_pcs.take() {
            match tokio::time::timeout(SHUTDOWN_LIMIT, pcs.shutdown()).await {
                Ok(Ok(more)) => pids.extend(more),
                Ok(Err(error)) => self.printer.note(&format!("local PCS: {error:#}")),
                Err(_) => self.printer.note("local PCS: did not stop in time"),
            }
        }
        if let Some((sink, _)) = self.debug_sink.take() {
            let _ = tokio::time::timeout(SHUTDOWN_LIMIT, sink.shutdown()).await;
        }
        pids
    }
}

/// How long a restarted storage node gets to answer its status before `restart`
/// reports it as an error (the node stays running: `status` shows how it fares).
pub const RESTART_ANSWER_LIMIT: Duration = Duration::from_secs(10);

/// How long the session's own servers get to stop gracefully (dropping them then
/// stops them at once).
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(2);

/// Prints every line a PCS relays, until its stream ends.
async fn relay_output(pcs: PcsClient, printer: Arc<Printer>) {
    match pcs.output().await {
        Ok(mut lines) => {
            while let Ok(Some(line)) = lines.message().await {
                printer.relay(&line.node_id, &line.line);
            }
        }
        Err(error) => printer.note(&format!("cannot relay node output: {error:#}")),
    }
}

/// The URL workers reach the sink at when it listens on `addr`.
fn sink_url(addr: SocketAddr) -> Result<String, CommandError> {
    if addr.ip().is_unspecified() {
        return Err(CommandError::DebugUnreachable(addr));
    }
    Ok(format!("http://{addr}"))
}

/// The error of a command naming a node the session does not have.
fn unknown(cluster: &Cluster, id: &str) -> CommandError {
    CommandError::UnknownNode {
        id: id.to_string(),
        known: cluster
            .nodes()
            .iter()
            .map(|n| n.decl.id.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// 128 random bits, hex-encoded, for the in-process PCS's token.
fn random_token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .with_context(|| format!("cannot draw a random {TOKEN_HEADER} for the local PCS"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
