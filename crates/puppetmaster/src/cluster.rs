//! The nodes of a session: declared by the setup block, started together through
//! the PCSs, crashed and stopped on request.
//!
//! Nodes are not started line by line: a script may declare them in any order, and
//! each needs to know the others (storage nodes their peers, workers the storage
//! nodes and the scheduler, the scheduler the workers). So the setup block is
//! collected first; at its end the storage nodes start (all at once), then the
//! scheduler and the workers, each with the full membership.

use std::sync::Arc;
use std::time::Duration;

use dida_core::membership::NodeUrl;
use dida_core::script::{NodeDecl, Role};
use dida_core::Membership;
use dida_core::Standing;
use dida_pcs::PcsClient;
use dida_proto::control::NodeProcess;
use dida_proto::convert::storage_state;
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::SchedulerStatusRequest;
use dida_proto::transport::lazy_channel;
use dida_storage_client::cluster::{
    members, remove_member, ClusterCallError, MembersView, MEMBERS_DEADLINE,
};
use dida_storage_client::{ClientConfig, StorageClient};
use futures::future::join_all;
use tokio::time::Instant;

use crate::config::PmConfig;
use crate::error::CommandError;
use crate::output::{PmEvent, Printer};
use crate::placement::place;
use crate::requests::{join_request, metrics_addr, start_request, Declared};

/// How long the storage nodes of a setup block may take to all count each other
/// alive (each joins at start).
const JOIN_LIMIT: Duration = Duration::from_secs(30);

/// How long a node gets to exit after SIGTERM when the session stops it (end of a
/// batch run, `quit`), before its PCS SIGKILLs it. Every dida role exits within
/// milliseconds of a SIGTERM; one that does not is reported `killed`.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How often a restarted node's `Status` (or the scheduler's, for a worker joining
/// or leaving) is polled until it answers.
const ANSWER_POLL: Duration = Duration::from_millis(50);

/// How long a worker started by `addWorker` may take, after it listens, until the
/// scheduler lists it `alive` (it registers at once, then every renewal).
pub const JOIN_WORKER_LIMIT: Duration = Duration::from_secs(10);

/// How long the scheduler may take to list a worker asked to leave as `leaving`
/// (it says so at its next renewal, a fraction of its lease).
const LEAVE_SEEN_LIMIT: Duration = Duration::from_secs(10);

/// How long a worker asked to leave by `removeWorker` may drain (finish what it
/// runs) before its PCS SIGKILLs it: the longest grace a PCS grants.
pub const REMOVE_GRACE: Duration = dida_pcs::MAX_STOP_GRACE;

/// How long a storage node `removeStorage` made leave may take to hand its records
/// off, be removed and exit by itself, before the session gives up waiting for it
/// (it is then stopped like any node when the session ends). A handoff moves the
/// node's records to their new replicas: seconds for a script's data.
pub const STORAGE_LEAVE_LIMIT: Duration = Duration::from_secs(120);

/// How often a PCS is asked whether a leaving storage node's process has exited.
const EXIT_POLL: Duration = Duration::from_millis(100);

/// How long a storage node started by `addStorage` may take, once the cluster
/// admitted it (it listens), to catch up the ranges it gains and be listed
/// `active`, before the line fails (the node is left running: `status` shows its
/// standing). Catching up copies every record of those ranges from their old
/// replicas: generous, so that a large data set is not cut short.
pub const STORAGE_JOIN_LIMIT: Duration = Duration::from_secs(120);

/// How often the cluster is asked whether a joining storage node is active yet.
const JOIN_POLL: Duration = Duration::from_millis(250);

/// How often `addStorage` says it is still waiting for a node to catch up, so a
/// long join is not mistaken for a hang.
const JOIN_PROGRESS: Duration = Duration::from_secs(10);

/// A node leaving: a worker after `removeWorker`, the task that ends once its PCS
/// reaped it; a storage node after `removeStorage`, the task that ends once its
/// PCS says its process exited by itself. The session hands it back to
/// [`Cluster::finish_removal`].
#[derive(Debug)]
pub struct Removal {
    /// The worker.
    pub id: String,
    /// Its process id.
    pub pid: u32,
    /// Its PCS's `StopNode` call, which announces how the worker ended: the pid
    /// reaped, or `None` if the PCS could not stop it.
    pub task: tokio::task::JoinHandle<Option<u32>>,
    /// How long the end of the session waits for the task, at most.
    pub limit: Duration,
}

/// Where a node stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    /// Declared by the setup block, not started yet.
    Declared,
    /// Running, with this pid.
    Running(u32),
    /// Could not be started.
    FailedToStart,
    /// Killed by `crash`.
    Crashed(u32),
    /// Stopped when the session ended, or after `removeWorker` once it drained.
    Stopped(u32),
    /// A worker asked to leave by `removeWorker`: SIGTERMed, it finishes what it
    /// runs and takes no new work; its PCS reaps it (see [`Removal`]). Or a
    /// storage node whose removal `removeStorage` had decided: it hands its
    /// records off, is removed and exits by itself.
    Leaving(u32),
    /// A storage node removed by `removeStorage` whose process then exited by
    /// itself: gone for good, not failed (its id is never used again).
    Removed(u32),
}

/// One node of the session.
#[derive(Debug, Clone)]
pub struct Node {
    /// What the setup line said.
    pub decl: NodeDecl,
    /// The line that declared it.
    pub line: usize,
    /// Index of the PCS that runs it.
    pub pcs: usize,
    /// Where it stands.
    pub state: NodeState,
    /// How many times `restart` started it again.
    pub restarts: u32,
    /// Where it serves `/metrics` (`--metrics-port-offset`), if it does.
    pub metrics: Option<String>,
}

/// The nodes of a session and the PCSs that run them.
#[derive(Debug)]
pub struct Cluster {
    config: Arc<PmConfig>,
    pcs: Vec<PcsClient>,
    nodes: Vec<Node>,
    started: bool,
    /// How many storage nodes the setup block declared, once it ended. The
    /// replication factor is capped at it for good: a node `addStorage` adds
    /// joins with the factor the cluster has (which refuses any other), and the
    /// session's clients keep routing with it.
    setup_storage_nodes: Option<usize>,
}

impl Cluster {
    /// A cluster with no node yet, placing nodes on `pcs`.
    pub fn new(config: Arc<PmConfig>, pcs: Vec<PcsClient>) -> Self {
        Self {
            config,
            pcs,
            nodes: Vec::new(),
            started: false,
            setup_storage_nodes: None,
        }
    }

    /// Whether the setup block is over (its nodes were started).
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Every node, in the order they were declared.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node called `id`.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.decl.id == id)
    }

    /// The PCSs nodes are placed on.
    pub fn pcs(&self) -> &[PcsClient] {
        &self.pcs
    }

    fn of_role(&self, role: Role) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(move |n| n.decl.role == role)
    }

    /// Adds a node of the setup block.
    pub fn declare(&mut self, line: usize, decl: NodeDecl) -> Result<(), CommandError> {
        if self.started {
            return Err(CommandError::SetupOver { role: decl.role });
        }
        let (pcs, metrics) = self.admit(&decl)?;
        self.nodes.push(Node {
            decl,
            line,
            pcs,
            state: NodeState::Declared,
            restarts: 0,
            metrics,
        });
        Ok(())
    }

    /// Checks that `decl` clashes with no node of the session (id, address, a
    /// second scheduler) and places it: the index of the PCS that will run it and
    /// its metrics address.
    fn admit(&self, decl: &NodeDecl) -> Result<(usize, Option<String>), CommandError> {
        if let Some(other) = self.node(&decl.id) {
            return Err(CommandError::IdTaken {
                id: decl.id.clone(),
                role: other.decl.role,
                line: other.line,
            });
        }
        if let Some(other) = self.nodes.iter().find(|n| n.decl.url == decl.url) {
            return Err(CommandError::UrlTaken {
                url: decl.url.clone(),
                id: other.decl.id.clone(),
                line: other.line,
            });
        }
        if decl.role == Role::Scheduler {
            if let Some(other) = self.of_role(Role::Scheduler).next() {
                return Err(CommandError::SecondScheduler {
                    id: other.decl.id.clone(),
                    line: other.line,
                });
            }
        }
        let pcs_urls: Vec<String> = self.pcs.iter().map(|p| p.url().to_string()).collect();
        let pcs = if self.pcs.len() == 1 && self.config.pcs.is_empty() {
            0 // the in-process PCS runs everything
        } else {
            place(&decl.url, &pcs_urls).map_err(CommandError::Placement)?
        };
        let metrics = metrics_addr(decl, self.config.metrics_port_offset);
        Ok((pcs, metrics))
    }

    /// `ID=URL,…` of the nodes of `role`.
    fn membership(&self, role: Role) -> String {
        id_urls(self.of_role(role))
    }

    /// The scheduler's URL, if one was declared.
    pub fn scheduler_url(&self) -> Option<&NodeUrl> {
        self.of_role(Role::Scheduler).next().map(|n| &n.decl.url)
    }

    /// The replication factor every node and client is given: `--replication-factor`,
    /// capped at the number of storage nodes the setup block declares (a key cannot
    /// have more replicas than there are nodes, and the nodes refuse a factor above
    /// it), so a script may declare fewer storage nodes than the default factor.
    fn replication_factor(&self) -> usize {
        self.declared().replication_factor(&self.config)
    }

    /// The nodes of the session, as every node's settings name them: the storage
    /// nodes in the cluster's configuration order (the setup block's, then those
    /// `addStorage` added, as the cluster appends them), with the replication
    /// factor of the setup block.
    fn declared(&self) -> Declared {
        let decls: Vec<NodeDecl> = self.nodes.iter().map(|n| n.decl.clone()).collect();
        let mut declared = Declared::of(&decls);
        if let Some(setup) = self.setup_storage_nodes {
            declared.storage_nodes = setup;
        }
        declared
    }

    /// A storage client for the declared storage nodes, configured like them.
    pub fn storage_client(&self) -> Result<StorageClient, CommandError> {
        let membership = Membership::parse(&self.membership(Role::Storage))
            .map_err(|_| CommandError::Undeclared("storage node"))?;
        Ok(StorageClient::new(
            membership,
            ClientConfig {
                replication_factor: self.replication_factor(),
                deadline: self.config.rpc_deadline,
                ..ClientConfig::default()
            },
        )?)
    }

    /// Ends the setup block: starts the storage nodes, then the scheduler and the
    /// workers. Returns one `(line, node, message)` per node that could not start (or
    /// per problem of the block as a whole, on the line of the first node).
    pub async fn start(
        &mut self,
        debug_sink: Option<&str>,
        printer: &Printer,
    ) -> Vec<(usize, String, String)> {
        self.started = true;
        self.setup_storage_nodes = Some(self.of_role(Role::Storage).count());
        if self.nodes.is_empty() {
            return Vec::new();
        }
        let first_line = self.nodes[0].line;
        let has = |role| self.of_role(role).next().is_some();
        let missing = match (has(Role::Storage), has(Role::Scheduler), has(Role::Worker)) {
            (_, true, false) => Some("a scheduler needs at least one worker"),
            (_, false, true) => Some("workers need a scheduler"),
            (false, _, true) => Some("workers need at least one storage node"),
            _ => None,
        };
        if let Some(missing) = missing {
            for node in &mut self.nodes {
                node.state = NodeState::FailedToStart;
            }
            return vec![(
                first_line,
                "setup".into(),
                format!("the setup block is incomplete: {missing}; no node was started"),
            )];
        }
        let any_storage = has(Role::Storage);
        let mut failures = self.start_role(&[Role::Storage], debug_sink, printer).await;
        if failures.is_empty() && any_storage {
            // Every storage node joins (catches up) before it leads its keys: the
            // script's first line runs on a settled cluster.
            let settled = match self.storage_client() {
                Ok(client) => client
                    .wait_until_all_alive(JOIN_LIMIT)
                    .await
                    .map_err(CommandError::from),
                Err(error) => Err(error),
            };
            if let Err(error) = settled {
                failures.push((first_line, "setup".into(), error.to_string()));
            }
        }
        failures.extend(
            self.start_role(&[Role::Scheduler, Role::Worker], debug_sink, printer)
                .await,
        );
        failures
    }

    /// Starts every declared node of `roles` at once.
    async fn start_role(
        &mut self,
        roles: &[Role],
        debug_sink: Option<&str>,
        printer: &Printer,
    ) -> Vec<(usize, String, String)> {
        let indexes: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| roles.contains(&self.nodes[i].decl.role))
            .collect();
        let declared = self.declared();
        let starts = indexes.iter().map(|&i| {
            let node = &self.nodes[i];
            let request = start_request(&self.config, &declared, &node.decl, debug_sink);
            let pcs = self.pcs[node.pcs].clone();
            async move {
                match request {
                    Ok(request) => pcs.start_node(request).await,
                    Err(refused) => Err(anyhow::Error::new(refused)),
                }
            }
        });
        let results = join_all(starts).await;
        let mut failures = Vec::new();
        for (i, result) in indexes.into_iter().zip(results) {
            let node = &mut self.nodes[i];
            match result {
                Ok(pid) => {
                    node.state = NodeState::Running(pid);
                    announce(printer, node, &self.pcs[node.pcs], "started", pid);
                }
                Err(error) => {
                    node.state = NodeState::FailedToStart;
                    failures.push((node.line, node.decl.role.to_string(), format!("{error:#}")));
                }
            }
        }
        failures
    }

    /// The storage node `id`, or why `verb` cannot apply to it.
    fn storage_node(&mut self, id: &str, verb: &'static str) -> Result<usize, CommandError> {
        let Some(index) = self.nodes.iter().position(|n| n.decl.id == id) else {
            let known = self
                .nodes
                .iter()
                .map(|n| n.decl.id.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(CommandError::UnknownNode {
                id: id.to_string(),
                known,
            });
        };
        let role = self.nodes[index].decl.role;
        if role != Role::Storage {
            return Err(CommandError::NotStorage {
                id: id.to_string(),
                role,
                verb,
            });
        }
        Ok(index)
    }

    /// `crash <id>`: SIGKILLs a running storage node.
    pub async fn crash(&mut self, id: &str, printer: &Printer) -> Result<(), CommandError> {
        let index = self.storage_node(id, "crash")?;
        let node = &mut self.nodes[index];
        let wrong = |state| {
            Err(CommandError::WrongState {
                id: id.to_string(),
                state,
            })
        };
        match node.state {
            NodeState::Running(_) => {}
            NodeState::Crashed(_) => return wrong("has already crashed"),
            NodeState::Declared => return wrong("is not started yet"),
            NodeState::FailedToStart => return wrong("never started"),
            NodeState::Stopped(_) => return wrong("was stopped"),
            NodeState::Leaving(_) => return wrong("is leaving (removeStorage)"),
            NodeState::Removed(_) => return wrong("was removed from the cluster"),
        }
        let pcs = &self.pcs[node.pcs];
        let pid = pcs.kill_node(id).await.map_err(CommandError::Pcs)?;
        node.state = NodeState::Crashed(pid);
        announce(printer, node, pcs, "crashed", pid);
        Ok(())
    }

    /// `restart <id>`: starts a crashed (or running: SIGKILLed first) storage node
    /// again, through the PCS that started it, with exactly its original flags —
    /// the same id, address and membership, so that it comes back as the same
    /// member. Returns once the PCS saw it listen; the caller then waits for it to
    /// answer (see [`Cluster::wait_until_answering`]).
    pub async fn restart(&mut self, id: &str, printer: &Printer) -> Result<(), CommandError> {
        let index = self.storage_node(id, "restart")?;
        let node = &mut self.nodes[index];
        let wrong = |state| {
            Err(CommandError::WrongState {
                id: id.to_string(),
                state,
            })
        };
        match node.state {
            NodeState::Running(_) | NodeState::Crashed(_) => {}
            NodeState::Declared => return wrong("is not started yet"),
            NodeState::FailedToStart => return wrong("never started: there is nothing to restart"),
            NodeState::Stopped(_) => return wrong("was stopped"),
            NodeState::Leaving(_) => return wrong("is leaving (removeStorage)"),
            NodeState::Removed(_) => {
                return wrong("was removed from the cluster: its id is never used again")
            }
        }
        let pcs = &self.pcs[node.pcs];
        let reply = match pcs.restart_node(id).await {
            Ok(reply) => reply,
            Err(error) => {
                // The PCS kills a running node before starting it again: if the
                // start then failed, the node is down either way.
                if let NodeState::Running(pid) = node.state {
                    node.state = NodeState::Crashed(pid);
                }
                return Err(CommandError::Pcs(error));
            }
        };
        if reply.killed_pid != 0 {
            announce(printer, node, pcs, "crashed", reply.killed_pid);
        }
        node.state = NodeState::Running(reply.pid);
        node.restarts += 1;
        announce(printer, node, pcs, "restarted", reply.pid);
        Ok(())
    }

    /// `addWorker`: starts worker `decl` on the running cluster, through the PCS of
    /// its host, with the flags a setup-block worker gets (the storage nodes, the
    /// scheduler, `--operators`, the debug sink). It is in no `--workers` list: it
    /// registers itself with the scheduler and holds a lease. Returns once the
    /// scheduler lists it `alive` (it places work on it), or an error after
    /// [`JOIN_WORKER_LIMIT`] (the worker is left running: `status` shows how it
    /// fares). A worker that could not start is not kept, so its id may be used
    /// again.
    pub async fn add_worker(
        &mut self,
        line: usize,
        decl: NodeDecl,
        debug_sink: Option<&str>,
        printer: &Printer,
    ) -> Result<Duration, CommandError> {
        let scheduler = self.running_scheduler()?;
        if self.of_role(Role::Storage).next().is_none() {
            return Err(CommandError::Undeclared("storage node"));
        }
        let (pcs, metrics) = self.admit(&decl)?;
        let request = start_request(&self.config, &self.declared(), &decl, debug_sink)
            .map_err(|refused| CommandError::Pcs(anyhow::Error::new(refused)))?;
        let pid = self.pcs[pcs]
            .start_node(request)
            .await
            .map_err(CommandError::Pcs)?;
        let node = Node {
            decl,
            line,
            pcs,
            state: NodeState::Running(pid),
            restarts: 0,
            metrics,
        };
        announce(printer, &node, &self.pcs[pcs], "started", pid);
        let id = node.decl.id.clone();
        self.nodes.push(node);
        let listened = Instant::now();
        self.wait_for_worker(&scheduler, &id, &["alive"], JOIN_WORKER_LIMIT)
            .await
            .map_err(|last| CommandError::NotJoined {
                id: id.clone(),
                limit: JOIN_WORKER_LIMIT,
                last,
            })?;
        if let Some(node) = self.node(&id) {
            announce(printer, node, &self.pcs[node.pcs], "joined", pid);
        }
        Ok(listened.elapsed())
    }

    /// `addStorage`: starts storage node `decl` on the running cluster, through
    /// the PCS of its host, with the flags a setup-block storage node gets but
    /// `--join` (the URLs of the session's running storage nodes) in place of
    /// `--peers`. The node asks the cluster to admit it before it listens, so the
    /// PCS's start returns once the cluster decided the change (it lists the node
    /// `joining`) — or fails with the process's last lines, the cluster's refusal
    /// in its own words (an id ever used, an address of a member, another change
    /// in progress), and nothing is kept. Refused before anything is asked: an id
    /// or URL of a node of the session, no storage node running to ask.
    ///
    /// Then follows the cluster's configuration until it lists the node `active`
    /// (announced `joined`, with the epoch) and returns how long that took after
    /// it listened; after [`STORAGE_JOIN_LIMIT`], or if its process ends, an error
    /// (a node still running is left so: `status` shows its standing).
    pub async fn add_storage(
        &mut self,
        line: usize,
        decl: NodeDecl,
        printer: &Printer,
    ) -> Result<Duration, CommandError> {
        if self.of_role(Role::Storage).next().is_none() {
            return Err(CommandError::Undeclared("storage node"));
        }
        let (pcs, metrics) = self.admit(&decl)?;
        let id = decl.id.clone();
        let seeds: Vec<&Node> = self.running_storage_except(&id).collect();
        if seeds.is_empty() {
            return Err(CommandError::NoStorageToAsk {
                id,
                change: "admit",
            });
        }
        let urls: Vec<String> = seeds.iter().map(|n| n.decl.url.to_string()).collect();
        let asked = format!("{},{}={}", id_urls(seeds.into_iter()), id, decl.url);
        let not_added = |source: anyhow::Error| CommandError::AddStorage {
            id: id.clone(),
            source,
        };
        let asked = Membership::parse(&asked).map_err(|e| not_added(e.into()))?;
        let request = join_request(&self.config, &self.declared(), &decl, &urls)
            .map_err(|refused| not_added(refused.into()))?;
        let pid = self.pcs[pcs].start_node(request).await.map_err(not_added)?;
        let node = Node {
            decl,
            line,
            pcs,
            state: NodeState::Running(pid),
            restarts: 0,
            metrics,
        };
        let pcs = self.pcs[pcs].clone();
        announce(printer, &node, &pcs, "started", pid);
        self.nodes.push(node.clone());
        let listened = Instant::now();
        let epoch = wait_until_active(&node, &pcs, &asked, printer)
            .await
            .map_err(|last| CommandError::NotActive {
                id: id.clone(),
                limit: STORAGE_JOIN_LIMIT,
                last,
            })?;
        announce_exit(printer, &node, &pcs, "joined", pid, None, Some(epoch));
        Ok(listened.elapsed())
    }

    /// `removeWorker`: asks worker `id` to leave. Its PCS sends it SIGTERM; the
    /// worker tells the scheduler it is leaving (no new work goes to it), finishes
    /// the operators it runs, deregisters and exits. Returns once the scheduler
    /// lists it `leaving` (or `gone`, for an idle worker that left at once), with
    /// the [`Removal`] that ends when its PCS has reaped it — SIGKILLed if it still
    /// runs after [`REMOVE_GRACE`]; the removal announces the worker `stopped` (or
    /// `killed`) itself, with how it ended, as soon as that happens.
    pub async fn remove_worker(
        &mut self,
        id: &str,
        printer: &Arc<Printer>,
    ) -> Result<Removal, CommandError> {
        let scheduler = self.running_scheduler()?;
        let index = self.node_index(id)?;
        let node = &self.nodes[index];
        if node.decl.role != Role::Worker {
            return Err(CommandError::NotWorker {
                id: id.to_string(),
                role: node.decl.role,
            });
        }
        let pid = self.pid_to_remove(index, "has crashed")?;
        let pcs = self.pcs[node.pcs].clone();
        let task = {
            let (node, pcs, printer) = (node.clone(), pcs.clone(), printer.clone());
            tokio::spawn(async move {
                let id = &node.decl.id;
                match pcs.stop_node(id, REMOVE_GRACE).await {
                    Ok(reply) => {
                        let (state, exit) = if reply.forced {
                            (
                                "killed",
                                format!(
                                    "SIGKILLed after {} s of draining: it {}",
                                    REMOVE_GRACE.as_secs(),
                                    reply.exit
                                ),
                            )
                        } else {
                            ("stopped", reply.exit)
                        };
                        announce_exit(&printer, &node, &pcs, state, reply.pid, Some(exit), None);
                        Some(reply.pid)
                    }
                    Err(error) => {
                        printer.error(
                            None,
                            "removeWorker",
                            &format!("worker {id} could not be stopped: {error:#}"),
                        );
                        None
                    }
                }
            })
        };
        self.nodes[index].state = NodeState::Leaving(pid);
        let seen = self
            .wait_for_worker(&scheduler, id, &["leaving", "gone"], LEAVE_SEEN_LIMIT)
            .await;
        let node = &self.nodes[index];
        match seen {
            Ok(()) => announce(printer, node, &pcs, "leaving", pid),
            // The process is being stopped whatever the scheduler says: the
            // removal goes on, and its end is reported.
            Err(last) => printer.error(
                None,
                "removeWorker",
                &format!(
                    "the scheduler did not list {id} as leaving within {LEAVE_SEEN_LIMIT:?} \
                     ({last}); its process is being stopped anyway"
                ),
            ),
        }
        Ok(Removal {
            id: id.to_string(),
            pid,
            task,
            limit: REMOVE_GRACE,
        })
    }

    /// The process of node `index` that `removeWorker` or `removeStorage` is to
    /// remove, or why it cannot be: only a running node can leave (`crashed` says
    /// what to tell of a crashed one).
    fn pid_to_remove(&self, index: usize, crashed: &'static str) -> Result<u32, CommandError> {
        let wrong = |state| {
            Err(CommandError::WrongState {
                id: self.nodes[index].decl.id.clone(),
                state,
            })
        };
        match self.nodes[index].state {
            NodeState::Running(pid) => Ok(pid),
            NodeState::Leaving(_) => wrong("is already leaving"),
            NodeState::Removed(_) => wrong("was already removed"),
            NodeState::Stopped(_) => wrong("was stopped"),
            NodeState::Crashed(_) => wrong(crashed),
            NodeState::Declared => wrong("is not started yet"),
            NodeState::FailedToStart => wrong("never started"),
        }
    }

    /// `removeStorage`: asks the storage cluster, through the other storage nodes
    /// of the session that run, to remove storage node `id` (the `Membership`
    /// service's `RemoveMember`). The cluster decides the change (a new epoch
    /// with `id` leaving) or refuses it with its reason, which the error carries.
    /// Returns once the change is decided, with `id` announced `leaving`, and the
    /// [`Removal`] that ends once its PCS says its process exited — by itself,
    /// after it handed its records off and was removed (announced `removed`, or
    /// `exited` if it ended otherwise), or `None` after [`STORAGE_LEAVE_LIMIT`].
    pub async fn remove_storage(
        &mut self,
        id: &str,
        printer: &Arc<Printer>,
    ) -> Result<Removal, CommandError> {
        let index = self.node_index(id)?;
        let node = &self.nodes[index];
        if node.decl.role != Role::Storage {
            return Err(CommandError::NotStorageNode {
                id: id.to_string(),
                role: node.decl.role,
            });
        }
        let pid = self.pid_to_remove(
            index,
            "has crashed: restart it first, so that it can hand its records off",
        )?;
        let seeds = id_urls(self.running_storage_except(id));
        if seeds.is_empty() {
            return Err(CommandError::NoStorageToAsk {
                id: id.to_string(),
                change: "remove",
            });
        }
        let seeds = Membership::parse(&seeds).map_err(|e| CommandError::RemoveStorage {
            id: id.to_string(),
            source: ClusterCallError::BadUrl {
                url: seeds.clone(),
                message: e.to_string(),
            },
        })?;
        let decided =
            remove_member(&seeds, id, "")
                .await
                .map_err(|source| CommandError::RemoveStorage {
                    id: id.to_string(),
                    source,
                })?;
        let epoch = decided.config.map(|c| c.epoch);
        self.nodes[index].state = NodeState::Leaving(pid);
        let node = self.nodes[index].clone();
        let pcs = self.pcs[node.pcs].clone();
        announce_exit(printer, &node, &pcs, "leaving", pid, None, epoch);
        let task = tokio::spawn(watch_departure(node, pcs, seeds, printer.clone()));
        Ok(Removal {
            id: id.to_string(),
            pid,
            task,
            limit: STORAGE_LEAVE_LIMIT,
        })
    }

    /// The storage nodes of the session that run, but `id`: those that can ask the
    /// cluster for a membership change (not crashed, stopped, leaving or removed).
    fn running_storage_except<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Node> {
        self.of_role(Role::Storage)
            .filter(move |n| n.decl.id != id && matches!(n.state, NodeState::Running(_)))
    }

    /// Records the end of a [`Removal`]: a worker `stopped` and a storage node
    /// `removed`, with the pid its PCS reaped, or, when the PCS could not stop it
    /// or it did not leave in time (`None`), running again as far as the session
    /// knows, so that the end of the session stops it.
    pub fn finish_removal(&mut self, removal_id: &str, pid: u32, reaped: Option<u32>) {
        if let Ok(index) = self.node_index(removal_id) {
            let storage = self.nodes[index].decl.role == Role::Storage;
            self.nodes[index].state = match reaped {
                Some(pid) if storage => NodeState::Removed(pid),
                Some(pid) => NodeState::Stopped(pid),
                None => NodeState::Running(pid),
            };
        }
    }

    /// The scheduler's URL, if it runs.
    fn running_scheduler(&self) -> Result<String, CommandError> {
        let scheduler = self
            .of_role(Role::Scheduler)
            .next()
            .ok_or(CommandError::Undeclared("scheduler"))?;
        match scheduler.state {
            NodeState::Running(_) => Ok(scheduler.decl.url.to_string()),
            _ => Err(CommandError::WrongState {
                id: scheduler.decl.id.clone(),
                state: "is not running",
            }),
        }
    }

    /// The index of node `id`, or the error naming the nodes there are.
    fn node_index(&self, id: &str) -> Result<usize, CommandError> {
        self.nodes
            .iter()
            .position(|n| n.decl.id == id)
            .ok_or_else(|| CommandError::UnknownNode {
                id: id.to_string(),
                known: self
                    .nodes
                    .iter()
                    .map(|n| n.decl.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Polls the scheduler's status (each call bounded by the RPC deadline) until
    /// it lists worker `id` in one of `states`, or `limit` passes; the error says
    /// what the scheduler last said.
    async fn wait_for_worker(
        &self,
        scheduler: &str,
        id: &str,
        states: &[&str],
        limit: Duration,
    ) -> Result<(), String> {
        let channel = lazy_channel(scheduler, self.config.rpc_deadline)
            .map_err(|e| format!("bad scheduler URL {scheduler}: {e}"))?;
        let mut client = SchedulerClient::new(channel);
        let started = Instant::now();
        loop {
            let call = client.status(SchedulerStatusRequest {});
            let last = match tokio::time::timeout(self.config.rpc_deadline, call).await {
                Ok(Ok(reply)) => {
                    let reply = reply.into_inner();
                    match reply.workers.iter().find(|w| w.worker_id == id) {
                        Some(w) if states.contains(&w.state.as_str()) => return Ok(()),
                        Some(w) => format!("the scheduler lists it {}", w.state),
                        None => "the scheduler does not list it yet".to_string(),
                    }
                }
                Ok(Err(status)) => format!("the scheduler failed: {}", status.message()),
                Err(_) => format!(
                    "the scheduler did not answer within {:?}",
                    self.config.rpc_deadline
                ),
            };
            if started.elapsed() >= limit {
                return Err(last);
            }
            tokio::time::sleep(ANSWER_POLL).await;
        }
    }

    /// Polls storage node `id`'s `Status` (each call bounded by the RPC deadline)
    /// until the node itself answers as alive, or `limit` passes; returns how long
    /// it took. A restarted process that listens first catches up from its peers
    /// (it says `joining`): only its own answer as alive says it is back.
    pub async fn wait_until_answering(
        &self,
        id: &str,
        limit: Duration,
    ) -> Result<Duration, CommandError> {
        let client = self.storage_client()?;
        let started = Instant::now();
        loop {
            let last_error =
                match tokio::time::timeout(self.config.rpc_deadline, client.status(id)).await {
                    Ok(Ok(status)) if status.id == id && storage_state(&status) == "alive" => {
                        return Ok(started.elapsed())
                    }
                    Ok(Ok(status)) if status.id == id => {
                        format!("it is {} (catching up)", storage_state(&status))
                    }
                    Ok(Ok(status)) => format!("its address is served by {}", status.id),
                    Ok(Err(error)) => error.to_string(),
                    Err(_) => format!("no answer within {:?}", self.config.rpc_deadline),
                };
            if started.elapsed() >= limit {
                return Err(CommandError::NotRejoined {
                    id: id.to_string(),
                    limit,
                    last: last_error,
                });
            }
            tokio::time::sleep(ANSWER_POLL).await;
        }
    }

    /// Stops every node still running, gracefully: its PCS sends SIGTERM and
    /// SIGKILLs it only if it still runs after [`STOP_GRACE`]. Each is announced
    /// `stopped`, or `killed` when it had to be SIGKILLed, with how it ended.
    /// Returns the pids stopped.
    ///
    /// The workers stop first, then the scheduler, then the storage nodes, each
    /// group at once: a worker leaves by telling the scheduler (it deregisters),
    /// which must still be there to hear it, and the scheduler keeps operators and
    /// applications in storage.
    pub async fn stop(&mut self, printer: &Printer) -> Vec<u32> {
        let mut pids = Vec::new();
        for role in [Role::Worker, Role::Scheduler, Role::Storage] {
            pids.extend(self.stop_role(role, printer).await);
        }
        pids
    }

    /// Stops every running node of `role` at once; see [`Cluster::stop`].
    async fn stop_role(&mut self, role: Role, printer: &Printer) -> Vec<u32> {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].decl.role == role)
            .filter(|&i| matches!(self.nodes[i].state, NodeState::Running(_)))
            .collect();
        let kills = running.iter().map(|&i| {
            let node = &self.nodes[i];
            let pcs = self.pcs[node.pcs].clone();
            let id = node.decl.id.clone();
            async move { pcs.stop_node(&id, STOP_GRACE).await }
        });
        let results = join_all(kills).await;
        let mut pids = Vec::new();
        for (i, result) in running.into_iter().zip(results) {
            let node = &mut self.nodes[i];
            match result {
                Ok(reply) => {
                    let pid = reply.pid;
                    node.state = NodeState::Stopped(pid);
                    let (state, exit) = if reply.forced {
                        (
                            "killed",
                            format!(
                                "SIGKILLed after {} s of grace: it {}",
                                STOP_GRACE.as_secs(),
                                reply.exit
                            ),
                        )
                    } else {
                        ("stopped", reply.exit)
                    };
                    announce_exit(
                        printer,
                        node,
                        &self.pcs[node.pcs],
                        state,
                        pid,
                        Some(exit),
                        None,
                    );
                    pids.push(pid);
                }
                Err(error) => printer.error(None, "stop", &format!("{error:#}")),
            }
        }
        pids
    }
}

/// Follows a storage node `removeStorage` made leave until its PCS says its
/// process ended, and announces how: `removed` when it exited with status 0 (a
/// leaving node exits by itself once the cluster removed it), with the epoch
/// `seeds` then know; `exited` otherwise. Returns the pid, or `None` (after an
/// error line) if it still runs after [`STORAGE_LEAVE_LIMIT`] or its PCS cannot
/// say.
async fn watch_departure(
    node: Node,
    pcs: PcsClient,
    seeds: Membership,
    printer: Arc<Printer>,
) -> Option<u32> {
    let id = node.decl.id.clone();
    let started = Instant::now();
    loop {
        let last = match process_end(&pcs, &id).await {
            Ok(Some(process)) => {
                let (state, epoch) = if process.exit == "exited with status 0" {
                    let known = members(&seeds, Some(&id), MEMBERS_DEADLINE).await;
                    let epoch = known.ok().and_then(|r| r.config).map(|c| c.epoch);
                    ("removed", epoch)
                } else {
                    ("exited", None)
                };
                announce_exit(
                    &printer,
                    &node,
                    &pcs,
                    state,
                    process.pid,
                    Some(process.exit),
                    epoch,
                );
                return Some(process.pid);
            }
            Ok(None) => "its process still runs (handing its records off)".to_string(),
            Err(last) => last,
        };
        if started.elapsed() >= STORAGE_LEAVE_LIMIT {
            printer.error(
                None,
                "removeStorage",
                &format!(
                    "storage node {id} did not leave within {STORAGE_LEAVE_LIMIT:?} ({last}); \
                     `status` shows its standing, and the session stops it when it ends"
                ),
            );
            return None;
        }
        tokio::time::sleep(EXIT_POLL).await;
    }
}

/// Follows storage node `node`, which the cluster admitted, until the
/// configuration the storage nodes `asked` know lists it `active` (it caught up
/// and entered the ring), and returns that configuration's epoch. Says every
/// [`JOIN_PROGRESS`] that it still waits; the error says what the cluster last
/// said, after [`STORAGE_JOIN_LIMIT`] or once the node's process ended.
async fn wait_until_active(
    node: &Node,
    pcs: &PcsClient,
    asked: &Membership,
    printer: &Printer,
) -> Result<u64, String> {
    let id = &node.decl.id;
    let started = Instant::now();
    let mut next_progress = JOIN_PROGRESS;
    loop {
        let known = members(asked, None, MEMBERS_DEADLINE).await;
        let view = known.map(|reply| MembersView::of(&reply));
        let last = match view {
            Ok(Ok(view)) => match view.standing(id) {
                Some(Standing::Active) => return Ok(view.config.epoch),
                Some(standing) => format!(
                    "the cluster lists it {} (epoch {}): catching up",
                    standing.name(),
                    view.config.epoch
                ),
                None => format!(
                    "the configuration {} knows (epoch {}) does not list it",
                    view.answered_by, view.config.epoch
                ),
            },
            Ok(Err(error)) | Err(error) => error.to_string(),
        };
        if let Ok(Some(process)) = process_end(pcs, id).await {
            return Err(format!("its process ended ({}); {last}", process.exit));
        }
        let waited = started.elapsed();
        if waited >= STORAGE_JOIN_LIMIT {
            return Err(last);
        }
        if waited >= next_progress {
            printer.note(&format!(
                "addStorage {id}: still joining after {} s ({last})",
                waited.as_secs()
            ));
            next_progress += JOIN_PROGRESS;
        }
        tokio::time::sleep(JOIN_POLL).await;
    }
}

/// How node `id`'s process stands on `pcs`: `None` while it runs, the process
/// once it ended, or why the PCS could not say.
async fn process_end(pcs: &PcsClient, id: &str) -> Result<Option<NodeProcess>, String> {
    match tokio::time::timeout(EXIT_POLL * 20, pcs.list_nodes()).await {
        Ok(Ok(processes)) => match processes.into_iter().find(|p| p.node_id == id) {
            Some(process) if !process.running => Ok(Some(process)),
            Some(_) => Ok(None),
            None => Err("its PCS no longer lists it".to_string()),
        },
        Ok(Err(error)) => Err(format!("its PCS failed: {error:#}")),
        Err(_) => Err("its PCS did not answer in time".to_string()),
    }
}

/// `ID=URL,…` of `nodes`, as `--peers` and a [`Membership`] are written.
fn id_urls<'a>(nodes: impl Iterator<Item = &'a Node>) -> String {
    nodes
        .map(|n| format!("{}={}", n.decl.id, n.decl.url))
        .collect::<Vec<_>>()
        .join(",")
}

fn announce(printer: &Printer, node: &Node, pcs: &PcsClient, state: &str, pid: u32) {
    announce_exit(printer, node, pcs, state, pid, None, None);
}

/// [`announce`] with how the process ended, for a node that stopped, and the
/// configuration epoch of a storage node's removal.
fn announce_exit(
    printer: &Printer,
    node: &Node,
    pcs: &PcsClient,
    state: &str,
    pid: u32,
    exit: Option<String>,
    epoch: Option<u64>,
) {
    let mut how = epoch.map(|e| format!(" (epoch {e})")).unwrap_or_default();
    if let Some(exit) = &exit {
        how.push_str(&format!(": {exit}"));
    }
    printer.pm_event(
        &PmEvent::Node {
            node: node.decl.id.clone(),
            role: node.decl.role.to_string(),
            url: node.decl.url.to_string(),
            state: state.to_string(),
            pid,
            pcs: pcs.url().to_string(),
            exit,
            metrics: node.metrics.clone(),
            epoch,
        },
        || {
            let metrics = node
                .metrics
                .as_deref()
                .map(|addr| format!(", metrics http://{addr}/metrics"))
                .unwrap_or_default();
            format!(
                "{} {} {state} (pid {pid}, {}{metrics}){how}",
                node.decl.role, node.decl.id, node.decl.url
            )
        },
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use dida_proto::control::StartNodeRequest;

    use super::*;

    /// The start request of `decl` in `cluster`.
    fn request(cluster: &Cluster, decl: &NodeDecl, debug_sink: Option<&str>) -> StartNodeRequest {
        start_request(&cluster.config, &cluster.declared(), decl, debug_sink).unwrap()
    }

    fn decl(role: Role, id: &str, port: u16) -> NodeDecl {
        NodeDecl {
            role,
            id: id.into(),
            url: NodeUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
            gossip_delay_ms: 0,
        }
    }

    fn cluster(pcs: &[&str]) -> Cluster {
        let mut config = PmConfig::new(PathBuf::from("/nonexistent/dida"));
        config.pcs = pcs.iter().map(|p| p.to_string()).collect();
        let clients = if pcs.is_empty() {
            vec![PcsClient::new("http://127.0.0.1:1", None).unwrap()]
        } else {
            pcs.iter()
                .map(|p| PcsClient::new(p, None).unwrap())
                .collect()
        };
        Cluster::new(Arc::new(config), clients)
    }

    #[tokio::test]
    async fn the_setup_block_refuses_clashing_nodes() {
        let mut cluster = cluster(&[]);
        cluster.declare(1, decl(Role::Storage, "s1", 3001)).unwrap();
        cluster
            .declare(2, decl(Role::Scheduler, "sched", 3000))
            .unwrap();
        let twice = cluster
            .declare(3, decl(Role::Worker, "s1", 4001))
            .unwrap_err();
        assert!(
            matches!(
                twice,
                CommandError::IdTaken {
                    role: Role::Storage,
                    line: 1,
                    ..
                }
            ),
            "{twice}"
        );
        let same_url = cluster
            .declare(4, decl(Role::Worker, "w1", 3001))
            .unwrap_err();
        assert!(
            matches!(&same_url, CommandError::UrlTaken { id, line: 1, .. } if id == "s1"),
            "{same_url}"
        );
        let second = cluster
            .declare(5, decl(Role::Scheduler, "other", 3009))
            .unwrap_err();
        assert!(
            matches!(&second, CommandError::SecondScheduler { id, line: 2 } if id == "sched"),
            "{second}"
        );
        cluster.started = true;
        let late = cluster
            .declare(6, decl(Role::Worker, "w2", 4002))
            .unwrap_err();
        assert!(
            matches!(late, CommandError::SetupOver { role: Role::Worker }),
            "{late}"
        );
    }

    #[tokio::test]
    async fn nodes_are_started_with_the_full_membership() {
        let mut cluster = cluster(&[]);
        cluster.declare(1, decl(Role::Worker, "w1", 4001)).unwrap();
        cluster.declare(2, decl(Role::Storage, "s2", 3002)).unwrap();
        cluster
            .declare(3, decl(Role::Scheduler, "sched", 3000))
            .unwrap();
        cluster.declare(4, decl(Role::Storage, "s1", 3001)).unwrap();
        let flags = |request: StartNodeRequest| -> BTreeMap<String, String> {
            request
                .flags
                .into_iter()
                .map(|f| (f.name, f.value))
                .collect()
        };
        let worker = flags(request(
            &cluster,
            &cluster.nodes[0].decl,
            Some("http://pm:10001"),
        ));
        assert_eq!(
            worker["storage"],
            "s2=http://127.0.0.1:3002,s1=http://127.0.0.1:3001"
        );
        assert_eq!(worker["scheduler"], "http://127.0.0.1:3000");
        assert_eq!(worker["debug-sink"], "http://pm:10001");
        let storage = flags(request(&cluster, &cluster.nodes[1].decl, None));
        assert_eq!(storage["peers"], worker["storage"]);
        // The default factor 3, capped at the two storage nodes declared.
        assert_eq!(storage["replication-factor"], "2");
        assert_eq!(worker["replication-factor"], "2");
        let scheduler = flags(request(&cluster, &cluster.nodes[2].decl, None));
        assert_eq!(scheduler["workers"], "w1=http://127.0.0.1:4001");
        assert_eq!(
            scheduler["storage"], worker["storage"],
            "the scheduler follows the storage view"
        );
    }

    #[tokio::test]
    async fn a_setting_the_node_would_refuse_fails_before_the_pcs_is_asked() {
        let mut config = PmConfig::new(PathBuf::from("/nonexistent/dida"));
        config.write_acks = 3;
        let clients = vec![PcsClient::new("http://127.0.0.1:1", None).unwrap()];
        let mut cluster = Cluster::new(Arc::new(config), clients);
        cluster.declare(1, decl(Role::Storage, "s1", 7001)).unwrap();
        cluster.declare(2, decl(Role::Storage, "s2", 7002)).unwrap();
        // The factor 3 is capped at the two nodes declared: 3 acks cannot be had.
        let refused = start_request(
            &cluster.config,
            &cluster.declared(),
            &cluster.nodes[0].decl,
            None,
        )
        .unwrap_err();
        assert!(
            matches!(refused, dida_settings::SettingsError::Inconsistent(_)),
            "{refused}"
        );
        assert!(refused
            .to_string()
            .contains("--write-acks must be from 1 to the replication factor (2)"));
    }

    /// The value of flag `name` in the start request of `decl`, if given.
    fn flag_value(cluster: &Cluster, decl: &NodeDecl, name: &str) -> Option<String> {
        request(cluster, decl, None)
            .flags
            .into_iter()
            .find(|f| f.name == name)
            .map(|f| f.value)
    }

    #[tokio::test]
    async fn every_node_gets_a_metrics_address_at_its_port_plus_the_offset() {
        let mut config = PmConfig::new(PathBuf::from("/nonexistent/dida"));
        config.metrics_port_offset = Some(10_000);
        let clients = vec![PcsClient::new("http://127.0.0.1:1", None).unwrap()];
        let mut cluster = Cluster::new(Arc::new(config), clients);
        cluster.declare(1, decl(Role::Storage, "s1", 7001)).unwrap();
        cluster
            .declare(2, decl(Role::Worker, "w1", 60_000))
            .unwrap();
        cluster
            .declare(3, decl(Role::Scheduler, "sched", 3000))
            .unwrap();
        let flag = |decl| flag_value(&cluster, decl, "metrics-listen");
        assert_eq!(
            flag(&cluster.nodes[0].decl).as_deref(),
            Some("127.0.0.1:17001")
        );
        assert_eq!(cluster.nodes[0].metrics.as_deref(), Some("127.0.0.1:17001"));
        // Past port 65535 there is no address to give.
        assert_eq!(flag(&cluster.nodes[1].decl), None);
    }

    #[tokio::test]
    async fn the_scheduler_serves_the_gateway_when_asked() {
        let mut config = PmConfig::new(PathBuf::from("/nonexistent/dida"));
        config.http_listen = Some("127.0.0.1:8080".parse().unwrap());
        let clients = vec![PcsClient::new("http://127.0.0.1:1", None).unwrap()];
        let mut cluster = Cluster::new(Arc::new(config), clients);
        cluster.declare(1, decl(Role::Worker, "w1", 4001)).unwrap();
        cluster
            .declare(2, decl(Role::Scheduler, "sched", 3000))
            .unwrap();
        cluster.declare(3, decl(Role::Storage, "s1", 7001)).unwrap();
        let flag = |decl| flag_value(&cluster, decl, "http-listen");
        assert_eq!(
            flag(&cluster.nodes[1].decl).as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(flag(&cluster.nodes[0].decl), None, "only the scheduler");
    }

    #[tokio::test]
    async fn workers_are_added_and_removed_only_on_a_running_cluster() {
        let printer = Arc::new(Printer::new(true, Arc::new(drop), Arc::new(drop)));
        let mut cluster = cluster(&[]);
        cluster.declare(1, decl(Role::Storage, "s1", 3001)).unwrap();
        let no_scheduler = cluster
            .add_worker(2, decl(Role::Worker, "w9", 4009), None, &printer)
            .await
            .unwrap_err();
        assert!(
            matches!(no_scheduler, CommandError::Undeclared("scheduler")),
            "{no_scheduler}"
        );
        cluster
            .declare(3, decl(Role::Scheduler, "sched", 3000))
            .unwrap();
        cluster.declare(4, decl(Role::Worker, "w1", 4001)).unwrap();
        // Declared, never started: nothing is asked of a PCS, nothing is kept.
        let not_running = cluster
            .add_worker(5, decl(Role::Worker, "w9", 4009), None, &printer)
            .await
            .unwrap_err();
        assert!(
            matches!(&not_running, CommandError::WrongState { id, state: "is not running" } if id == "sched"),
            "{not_running}"
        );
        assert!(
            cluster.node("w9").is_none(),
            "a worker that did not start is not kept"
        );
        cluster.nodes[1].state = NodeState::Running(42);
        let taken = cluster
            .add_worker(6, decl(Role::Worker, "w1", 4009), None, &printer)
            .await
            .unwrap_err();
        assert!(
            matches!(taken, CommandError::IdTaken { line: 4, .. }),
            "{taken}"
        );
        let unknown = cluster.remove_worker("nope", &printer).await.unwrap_err();
        assert!(
            matches!(&unknown, CommandError::UnknownNode { known, .. } if known == "s1, sched, w1"),
            "{unknown}"
        );
        let storage = cluster.remove_worker("s1", &printer).await.unwrap_err();
        assert!(
            matches!(
                storage,
                CommandError::NotWorker {
                    role: Role::Storage,
                    ..
                }
            ),
            "{storage}"
        );
        let idle = cluster.remove_worker("w1", &printer).await.unwrap_err();
        assert!(
            matches!(
                idle,
                CommandError::WrongState {
                    state: "is not started yet",
                    ..
                }
            ),
            "{idle}"
        );
    }

    #[tokio::test]
    async fn remove_storage_refuses_before_the_cluster_is_asked() {
        let printer = Arc::new(Printer::new(true, Arc::new(drop), Arc::new(drop)));
        let mut cluster = cluster(&[]);
        cluster.declare(1, decl(Role::Storage, "s1", 3001)).unwrap();
        cluster.declare(2, decl(Role::Storage, "s2", 3002)).unwrap();
        cluster
            .declare(3, decl(Role::Scheduler, "sched", 3000))
            .unwrap();
        let unknown = cluster.remove_storage("s9", &printer).await.unwrap_err();
        assert!(
            matches!(&unknown, CommandError::UnknownNode { known, .. } if known == "s1, s2, sched"),
            "{unknown}"
        );
        let scheduler = cluster.remove_storage("sched", &printer).await.unwrap_err();
        assert!(
            matches!(
                scheduler,
                CommandError::NotStorageNode {
                    role: Role::Scheduler,
                    ..
                }
            ),
            "{scheduler}"
        );
        assert!(scheduler
            .to_string()
            .contains("removeStorage removes storage nodes"));
        let idle = cluster.remove_storage("s1", &printer).await.unwrap_err();
        assert!(
            matches!(
                idle,
                CommandError::WrongState {
                    state: "is not started yet",
                    ..
                }
            ),
            "{idle}"
        );
        // s1 runs, but no other storage node does: nobody to decide the change.
        cluster.nodes[0].state = NodeState::Running(41);
        cluster.nodes[1].state = NodeState::Crashed(42);
        let alone = cluster.remove_storage("s1", &printer).await.unwrap_err();
        assert!(
            matches!(&alone, CommandError::NoStorageToAsk { id, change: "remove" } if id == "s1"),
            "{alone}"
        );
        let crashed = cluster.remove_storage("s2", &printer).await.unwrap_err();
        assert!(
            crashed.to_string().contains("restart it first"),
            "{crashed}"
        );
        assert_eq!(
            cluster.nodes[0].state,
            NodeState::Running(41),
            "a refusal changes nothing"
        );
    }

    #[tokio::test]
    async fn add_storage_refuses_before_anything_is_asked() {
        let printer = Arc::new(Printer::new(true, Arc::new(drop), Arc::new(drop)));
        let mut cluster = cluster(&[]);
        let no_storage = cluster
            .add_storage(1, decl(Role::Storage, "s9", 3009), &printer)
            .await
            .unwrap_err();
        assert!(
            matches!(no_storage, CommandError::Undeclared("storage node")),
            "{no_storage}"
        );
        cluster.declare(1, decl(Role::Storage, "s1", 3001)).unwrap();
        cluster.declare(2, decl(Role::Storage, "s2", 3002)).unwrap();
        let taken = cluster
            .add_storage(3, decl(Role::Storage, "s1", 3009), &printer)
            .await
            .unwrap_err();
        assert!(
            matches!(taken, CommandError::IdTaken { line: 1, .. }),
            "{taken}"
        );
        let same_url = cluster
            .add_storage(4, decl(Role::Storage, "s9", 3002), &printer)
            .await
            .unwrap_err();
        assert!(
            matches!(&same_url, CommandError::UrlTaken { id, line: 2, .. } if id == "s2"),
            "{same_url}"
        );
        // Declared, never started (or crashed): the cluster does not run, so
        // nobody can admit the node; no PCS is asked.
        cluster.nodes[1].state = NodeState::Crashed(42);
        let not_running = cluster
            .add_storage(5, decl(Role::Storage, "s9", 3009), &printer)
            .await
            .unwrap_err();
        assert!(
            matches!(&not_running, CommandError::NoStorageToAsk { id, change: "admit" } if id == "s9"),
            "{not_running}"
        );
        assert!(not_running.to_string().contains("to admit s9"));
        assert_eq!(cluster.nodes().len(), 2, "a refused node is not kept");
    }

    #[tokio::test]
    async fn a_storage_node_added_joins_with_the_setup_blocks_settings() {
        let mut config = PmConfig::new(PathBuf::from("/nonexistent/dida"));
        config.write_acks = 2;
        config.max_versions = 7;
        let clients = vec![PcsClient::new("http://127.0.0.1:1", None).unwrap()];
        let mut cluster = Cluster::new(Arc::new(config), clients);
        cluster.declare(1, decl(Role::Storage, "s1", 3001)).unwrap();
        cluster.declare(2, decl(Role::Storage, "s2", 3002)).unwrap();
        cluster.setup_storage_nodes = Some(2);
        let mut added = decl(Role::Storage, "s3", 3003);
        added.gossip_delay_ms = 40;
        let seeds = ["http://127.0.0.1:3001".to_string()];
        let flags: BTreeMap<String, String> =
            join_request(&cluster.config, &cluster.declared(), &added, &seeds)
                .unwrap()
                .flags
                .into_iter()
                .map(|f| (f.name, f.value))
                .collect();
        assert_eq!(flags["join"], "http://127.0.0.1:3001");
        assert!(!flags.contains_key("peers"), "{flags:?}");
        let setup: BTreeMap<String, String> = request(&cluster, &cluster.nodes[0].decl, None)
            .flags
            .into_iter()
            .map(|f| (f.name, f.value))
            .collect();
        for flag in ["replication-factor", "write-acks", "max-versions"] {
            assert_eq!(flags[flag], setup[flag], "--{flag}");
        }
        assert_eq!(flags["replication-factor"], "2");
        assert_eq!(flags["gossip-delay"], "40");
        // Once it is in, the factor stays the setup block's (the cluster's): a
        // third storage node does not raise it, and the membership grows in the
        // configuration's order.
        cluster.nodes.push(Node {
            decl: added,
            line: 3,
            pcs: 0,
            state: NodeState::Running(43),
            restarts: 0,
            metrics: None,
        });
        assert_eq!(cluster.replication_factor(), 2);
        assert_eq!(
            cluster.declared().storage,
            "s1=http://127.0.0.1:3001,s2=http://127.0.0.1:3002,s3=http://127.0.0.1:3003"
        );
    }

    #[tokio::test]
    async fn with_several_pcs_a_node_needs_one_on_its_host() {
        let mut cluster = cluster(&["http://10.0.0.1:10000", "http://10.0.0.2:10000"]);
        let mut remote = decl(Role::Storage, "s1", 3001);
        remote.url = NodeUrl::parse("http://10.0.0.2:3001").unwrap();
        cluster.declare(1, remote).unwrap();
        assert_eq!(cluster.nodes()[0].pcs, 1);
        let nowhere = cluster
            .declare(2, decl(Role::Storage, "s2", 3002))
            .unwrap_err();
        // The placement's refusal is text (placement.rs); its variant is typed.
        assert!(
            matches!(&nowhere, CommandError::Placement(why) if why.contains("127.0.0.1")),
            "{nowhere}"
        );
    }
}
