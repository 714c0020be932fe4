//! The simulated cluster: which node and process run at each index, and how a node
//! is (re)started — a new process, a new `Node` with an empty store and a higher
//! incarnation, its background protocols gated by the process, exactly as a real
//! restart of `dida storage` with the same flags — or joins: a new node at the next
//! index, admitted by a member and started on the configuration that admitted it,
//! as `dida storage --join` does.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use dida_core::{ClusterConfig, MemberState, Standing};
use dida_proto::convert::config_from_wire;
use dida_proto::storage::{JoinRequest, RemoveMemberRequest};
use dida_storage::{Node, StorageConfig};
use dida_verify::plan::{InjectError, Injector};

use crate::network::{Call, Network, Sender};
use crate::process::{Gated, ProcState, Process};

/// Incarnations of successive starts of one node are this far apart, above any
/// number of start-overs (`+1` each) a fenced node may go through in one run.
pub(crate) const INCARNATION_STEP: u64 = 1_000_000;

/// How long a leave may take, from the request to the node stopping: its handoff
/// of every record it held.
const LEAVE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// How long a join may take, from the first request to the cluster listing the
/// node active: the admission, the newcomer's catch-up and the second epoch.
const JOIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// How often a join looks whether the newcomer is active yet.
const JOIN_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// The client number an operator's requests go out as (the workload's clients are
/// numbered from 0).
const OPERATOR: usize = 1000;

/// The client number a joining node's requests to be admitted go out as: it is
/// no member yet, so no partition of the members' links stops them (nor do they
/// get lost: gRPC retransmits), as for any client of the cluster.
const NEWCOMER: usize = 1001;

/// The first port of the simulated nodes' URLs (`http://127.0.0.1:7001` for the
/// first): node `index` listens at `FIRST_PORT + index`, so a node that joins has
/// an address no member ever had.
pub const FIRST_PORT: usize = 7001;

/// The nodes of one run.
#[derive(Debug)]
pub struct Cluster {
    /// The network between them.
    pub network: Arc<Network>,
    /// Each node's flags; a restart reuses them. A node that joins appends its
    /// own once admitted.
    configs: Mutex<Vec<StorageConfig>>,
    /// How many times each node has been started.
    starts: Mutex<Vec<u64>>,
    /// Nodes replaced by a restart, whose stores the checks still read.
    retired: Mutex<Vec<Arc<Node>>>,
    /// Nodes removed from the cluster (`leave`): stopped, and no longer members.
    removed: Mutex<BTreeSet<usize>>,
    /// Nodes that joined the cluster (`join`), admitted, whether or not they got
    /// to be active: the checks count them among the nodes that were out of some
    /// ring (before they joined) for the possible primaries of W2.
    joined: Mutex<BTreeSet<usize>>,
    /// Nodes admitted and still catching up for the first time: not lost, since
    /// they hold nothing anyone depends on yet (see [`lost_nodes`]).
    newcomers: Mutex<BTreeSet<usize>>,
}

impl Cluster {
    /// A cluster of the nodes `configs` on `network`, none started yet.
    pub fn new(network: Arc<Network>, configs: Vec<StorageConfig>) -> Arc<Self> {
        let count = configs.len();
        Arc::new(Self {
            network,
            configs: Mutex::new(configs),
            starts: Mutex::new(vec![0; count]),
            retired: Mutex::new(Vec::new()),
            removed: Mutex::new(BTreeSet::new()),
            joined: Mutex::new(BTreeSet::new()),
            newcomers: Mutex::new(BTreeSet::new()),
        })
    }

    /// The nodes removed from the cluster, by index.
    pub fn removed(&self) -> BTreeSet<usize> {
        self.removed.lock().expect("removed lock poisoned").clone()
    }

    /// The nodes that joined the cluster (admitted by it), by index.
    pub fn joined(&self) -> BTreeSet<usize> {
        self.joined.lock().expect("joined lock poisoned").clone()
    }

    /// How many nodes there are (started ones: a joining node counts once it
    /// was admitted and started).
    pub fn len(&self) -> usize {
        self.configs.lock().expect("configs lock poisoned").len()
    }

    /// Whether the cluster has no node.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Node `index`'s flags.
    fn config(&self, index: usize) -> StorageConfig {
        self.configs.lock().expect("configs lock poisoned")[index].clone()
    }

    /// Starts node `index` (again): a new process and node, at a higher incarnation
    /// than any before. The old node, if any, must have crashed. With `keep_data`
    /// the new node starts with every record the old one held, as a node restarted
    /// on its data directory with `--fsync always` does.
    pub fn start(&self, index: usize, keep_data: bool) -> anyhow::Result<()> {
        let starts = {
            let mut starts = self.starts.lock().expect("starts lock poisoned");
            starts[index] += 1;
            starts[index]
        };
        let mut config = self.config(index);
        config.incarnation = starts * INCARNATION_STEP;
        let node = Arc::new(Node::new(config, self.network.transport(index))?);
        let process = Process::new();
        if starts > 1 {
            let (old, _) = self.network.slot(index);
            if keep_data {
                for record in old.store().records() {
                    node.store().merge(&record);
                }
            }
            self.retired
                .lock()
                .expect("retired lock poisoned")
                .push(old);
        }
        self.network.install(index, node.clone(), process.clone());
        for task in node.background_tasks() {
            tokio::spawn(Gated::new(process.clone(), task));
        }
        Ok(())
    }

    /// The node at `index` now.
    pub fn node(&self, index: usize) -> Arc<Node> {
        self.network.slot(index).0
    }

    /// The process at `index` now.
    pub fn process(&self, index: usize) -> Arc<Process> {
        self.network.slot(index).1
    }

    /// Every node now, by index.
    pub fn nodes(&self) -> Vec<Arc<Node>> {
        (0..self.len()).map(|n| self.node(n)).collect()
    }

    /// Every process now, by index.
    pub fn processes(&self) -> Vec<Arc<Process>> {
        (0..self.len()).map(|n| self.process(n)).collect()
    }

    /// The nodes replaced by restarts.
    pub fn retired(&self) -> Vec<Arc<Node>> {
        self.retired.lock().expect("retired lock poisoned").clone()
    }
}

impl Cluster {
    /// The index of node `id`.
    fn index(&self, action: &'static str, id: &str) -> Result<usize, InjectError> {
        (0..self.len())
            .find(|&n| self.node(n).id() == id)
            .ok_or_else(|| InjectError {
                action,
                node: id.to_string(),
                reason: "no such node in the simulated cluster".to_string(),
            })
    }

    /// Puts node `id`'s process in `state`.
    fn set(&self, action: &'static str, id: &str, state: ProcState) -> Result<(), InjectError> {
        self.process(self.index(action, id)?).set(state);
        Ok(())
    }

    /// Has the cluster admit the node `request` names, which must come at
    /// `index`, then starts it there on the admitting configuration with the other
    /// nodes' flags, and waits until the cluster lists it active; all within
    /// [`JOIN_DEADLINE`] of `started`.
    async fn admit_and_run(
        &self,
        index: usize,
        request: JoinRequest,
        started: tokio::time::Instant,
    ) -> Result<(), String> {
        let id = request.id.clone();
        let admitted = self.admit(index, request, started).await?;
        let at = admitted.members.iter().position(|m| m.id == id);
        if at != Some(index) {
            return Err(format!(
                "admitted at index {at:?} of the configuration, not {index}: the \
                 simulator's indices and the cluster's differ"
            ));
        }
        // The flags of the others, but for what the admission decides (exactly as
        // `dida storage --join` builds its configuration).
        let mut config = self.config(0);
        config.id = id.clone();
        config.dial_overrides.clear();
        admit_into(&mut config, admitted)?;
        if self.network.add(id) != index {
            return Err("another node took its index meanwhile".to_string());
        }
        self.configs
            .lock()
            .expect("configs lock poisoned")
            .push(config);
        self.starts.lock().expect("starts lock poisoned").push(0);
        self.joined
            .lock()
            .expect("joined lock poisoned")
            .insert(index);
        self.start(index, false).map_err(|e| format!("{e:#}"))?;
        loop {
            if self.node(index).cluster_config().standing(index) == Standing::Active {
                return Ok(());
            }
            if started.elapsed() >= JOIN_DEADLINE {
                let standing = self.node(index).cluster_config().standing(index);
                return Err(format!(
                    "still {standing:?} {JOIN_DEADLINE:?} after it asked to join"
                ));
            }
            tokio::time::sleep(JOIN_POLL).await;
        }
    }

    /// Asks the members but `newcomer` and those removed, in turn, from outside
    /// the cluster, to admit the node `request` names, until one answers with a
    /// decided configuration that lists it (or [`JOIN_DEADLINE`] from `started`
    /// passed): what `dida storage --join` does with its seeds.
    async fn admit(
        &self,
        newcomer: usize,
        request: JoinRequest,
        started: tokio::time::Instant,
    ) -> Result<ClusterConfig, String> {
        let removed = self.removed();
        let mut refusals = Vec::new();
        for asker in (0..self.len()).filter(|&n| n != newcomer && !removed.contains(&n)) {
            let Some(left) = JOIN_DEADLINE.checked_sub(started.elapsed()) else {
                break;
            };
            let call = Call {
                what: "join",
                deadline: left,
                idempotent: false,
            };
            let answer = self
                .network
                .call(
                    Sender::Client(NEWCOMER),
                    asker,
                    call,
                    request.clone(),
                    |node: Arc<Node>, request| async move { node.admit(request).await },
                )
                .await;
            let asked = self.node(asker).id().to_string();
            match answer {
                Ok(reply) => {
                    let config = reply
                        .config
                        .ok_or_else(|| format!("{asked} answered without a configuration"))?;
                    let config = config_from_wire(config)
                        .map_err(|why| format!("{asked} answered a bad configuration: {why}"))?;
                    if !config.lists(&request.id, &request.url) {
                        return Err(format!("{asked}'s configuration does not list it"));
                    }
                    return Ok(config);
                }
                Err(status) => refusals.push(format!("{asked}: {}", status.message())),
            }
        }
        Err(format!("no member admitted it: {refusals:?}"))
    }
}

/// What node `config` asks the cluster when it (re)starts as a joined node: its
/// id, address and placement flags.
fn join_request(config: &StorageConfig) -> Result<JoinRequest, String> {
    let me = config
        .membership
        .get(&config.id)
        .map_err(|e| e.to_string())?;
    Ok(JoinRequest {
        id: config.id.clone(),
        url: me.url.to_string(),
        cluster_id: String::new(),
        vnodes: config.vnodes,
        replication_factor: u32::try_from(config.replication_factor).unwrap_or(u32::MAX),
    })
}

/// Makes `config` that of a node the cluster admitted with `admitted`: its
/// membership, cluster id and configuration (as `dida storage --join` does).
fn admit_into(config: &mut StorageConfig, admitted: ClusterConfig) -> Result<(), String> {
    config.membership = admitted
        .membership()
        .map_err(|e| format!("the admitting configuration does not check: {e}"))?;
    config.cluster_id = admitted.cluster_id.clone();
    config.admitted = Some(admitted);
    Ok(())
}

/// The simulator's faults: process states, links of the in-memory network, and
/// restarts as new nodes.
impl Injector for Cluster {
    fn ids(&self) -> Vec<String> {
        let configs = self.configs.lock().expect("configs lock poisoned");
        configs.iter().map(|c| c.id.clone()).collect()
    }

    async fn kill(&self, node: &str) -> Result<(), InjectError> {
        self.set("kill", node, ProcState::Crashed)
    }

    async fn pause(&self, node: &str) -> Result<(), InjectError> {
        self.set("pause", node, ProcState::Paused)
    }

    async fn resume(&self, node: &str) -> Result<(), InjectError> {
        self.set("resume", node, ProcState::Up)
    }

    async fn cut(&self, from: &str, to: &str) -> Result<(), InjectError> {
        let from = self.index("cut the links of", from)?;
        let to = self.index("cut the links to", to)?;
        self.network.cut(from, to);
        Ok(())
    }

    async fn heal(&self) {
        self.network.heal_all();
    }

    async fn leave(&self, node: &str) -> Result<(), InjectError> {
        let index = self.index("remove", node)?;
        let failed = |reason: String| InjectError {
            action: "remove",
            node: node.to_string(),
            reason,
        };
        // Asked from outside the cluster, of each other member in turn until one
        // decides it, as `dida cluster remove` does.
        let mut refusals = Vec::new();
        let mut decided = false;
        for asker in (0..self.len()).filter(|&n| n != index && !self.removed().contains(&n)) {
            let request = RemoveMemberRequest {
                id: node.to_string(),
                cluster_id: String::new(),
            };
            let call = Call {
                what: "remove-member",
                deadline: LEAVE_DEADLINE,
                idempotent: false,
            };
            let answer = self
                .network
                .call(
                    Sender::Client(OPERATOR),
                    asker,
                    call,
                    request,
                    |node: Arc<Node>, request| async move { node.remove_member(request).await },
                )
                .await;
            match answer {
                Ok(_) => {
                    decided = true;
                    break;
                }
                Err(status) => refusals.push(status.message().to_string()),
            }
        }
        if !decided {
            return Err(failed(format!("no member decided it: {refusals:?}")));
        }
        let mut departed = self.node(index).departed();
        match tokio::time::timeout(LEAVE_DEADLINE, departed.wait_for(|gone| *gone)).await {
            Ok(Ok(_)) => {}
            _ => {
                return Err(failed(format!(
                    "it did not hand its records off and leave within {LEAVE_DEADLINE:?}"
                )))
            }
        }
        // Its process stops, as `dida storage` exits once removed.
        self.process(index).set(ProcState::Crashed);
        self.removed
            .lock()
            .expect("removed lock poisoned")
            .insert(index);
        Ok(())
    }

    async fn join(&self, node: &str) -> Result<(), InjectError> {
        let failed = |reason: String| InjectError {
            action: "join",
            node: node.to_string(),
            reason,
        };
        if self.ids().iter().any(|id| id == node) {
            return Err(failed("a node of the cluster has that id".to_string()));
        }
        let started = tokio::time::Instant::now();
        // Members are only ever appended: the newcomer's index is the next one,
        // and so is its port.
        let index = self.network.len();
        let template = self.config(0);
        let request = JoinRequest {
            id: node.to_string(),
            url: format!("http://127.0.0.1:{}", FIRST_PORT + index),
            cluster_id: String::new(),
            vnodes: template.vnodes,
            replication_factor: u32::try_from(template.replication_factor).unwrap_or(u32::MAX),
        };
        // Not lost while it catches up for the first time: the members list it
        // out of their rings from the moment they admit it.
        self.newcomers
            .lock()
            .expect("newcomers lock poisoned")
            .insert(index);
        let joined = self.admit_and_run(index, request, started).await;
        self.newcomers
            .lock()
            .expect("newcomers lock poisoned")
            .remove(&index);
        joined.map_err(failed)
    }

    async fn restart(&self, node: &str, keep_data: bool) -> Result<(), InjectError> {
        let index = self.index("restart", node)?;
        let failed = |reason: String| InjectError {
            action: "restart",
            node: node.to_string(),
            reason,
        };
        if self.joined().contains(&index) {
            // `dida storage --join` asks again at every start, and is given the
            // cluster's configuration as it is now (it already lists the node).
            let config = self.config(index);
            let request = join_request(&config).map_err(failed)?;
            let started = tokio::time::Instant::now();
            let admitted = self.admit(index, request, started).await.map_err(failed)?;
            let mut configs = self.configs.lock().expect("configs lock poisoned");
            admit_into(&mut configs[index], admitted).map_err(failed)?;
        }
        self.start(index, keep_data)
            .map_err(|error| failed(format!("{error:#}")))
    }

    async fn lost(&self) -> BTreeSet<String> {
        let ids = self.ids();
        lost_nodes(self)
            .into_iter()
            .map(|n| ids[n].clone())
            .collect()
    }

    async fn declared_by(&self, node: &str) -> Vec<String> {
        let running = (0..self.len()).filter(|&n| self.process(n).state() != ProcState::Crashed);
        running
            .map(|n| self.node(n))
            .filter(|observer| {
                observer
                    .member_states()
                    .iter()
                    .any(|(id, state)| id == node && state.liveness == dida_core::Liveness::Failed)
            })
            .map(|observer| observer.id().to_string())
            .collect()
    }

    fn note(&self, what: fmt::Arguments<'_>) {
        self.network.trace().event(what);
    }
}

/// The nodes lost now, by index: crashed, or out of the ring (declared failed, or
/// restarted and still catching up, so holding less than its share) in the view of
/// some node still running. A node removed from the cluster is not lost: it
/// handed everything off before it stopped. Nor is a node catching up to join
/// for the first time: it never held anything anyone depends on; nor a member
/// only some node that has not heard from it yet lists as just admitted.
pub fn lost_nodes(cluster: &Cluster) -> BTreeSet<usize> {
    let processes = cluster.processes();
    let removed = cluster.removed();
    let newcomers = cluster
        .newcomers
        .lock()
        .expect("newcomers lock poisoned")
        .clone();
    let crashed = |n: usize| processes[n].state() == ProcState::Crashed;
    let mut lost: BTreeSet<usize> = (0..cluster.len()).filter(|&n| crashed(n)).collect();
    for node in (0..cluster.len())
        .filter(|&n| !crashed(n))
        .map(|n| cluster.node(n))
    {
        for (index, (_, state)) in node.member_states().into_iter().enumerate() {
            // A member listed as just admitted was never heard from by this node
            // (one that learned of a join late): that says nothing of its loss,
            // which the nodes that heard from it would tell.
            if !state.in_ring() && state != MemberState::ADMITTED {
                lost.insert(index);
            }
        }
    }
    // A member some node lists but the simulator never started (admitted by a
    // join that failed) holds nothing either.
    lost.retain(|n| !removed.contains(n) && !newcomers.contains(n) && *n < processes.len());
    lost
}
