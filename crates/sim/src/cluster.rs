//! The simulated cluster: which node and process run at each index, and how a node
//! is (re)started — a new process, a new `Node` with an empty store and a higher
//! incarnation, its background protocols gated by the process, exactly as a real
//! restart of `dida storage` with the same flags.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use dida_proto::storage::RemoveMemberRequest;
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

/// The client number an operator's requests go out as (the workload's clients are
/// numbered from 0).
const OPERATOR: usize = 1000;

/// The nodes of one run.
#[derive(Debug)]
pub struct Cluster {
    /// The network between them.
    pub network: Arc<Network>,
    /// Each node's flags; a restart reuses them.
    configs: Vec<StorageConfig>,
    /// How many times each node has been started.
    starts: Mutex<Vec<u64>>,
    /// Nodes replaced by a restart, whose stores the checks still read.
    retired: Mutex<Vec<Arc<Node>>>,
    /// Nodes removed from the cluster (`leave`): stopped, and no longer members.
    removed: Mutex<BTreeSet<usize>>,
}

impl Cluster {
    /// A cluster of the nodes `configs` on `network`, none started yet.
    pub fn new(network: Arc<Network>, configs: Vec<StorageConfig>) -> Arc<Self> {
        let count = configs.len();
        Arc::new(Self {
            network,
            configs,
            starts: Mutex::new(vec![0; count]),
            retired: Mutex::new(Vec::new()),
            removed: Mutex::new(BTreeSet::new()),
        })
    }

    /// The nodes removed from the cluster, by index.
    pub fn removed(&self) -> BTreeSet<usize> {
        self.removed.lock().expect("removed lock poisoned").clone()
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.configs.len()
    }

    /// Whether the cluster has no node.
    pub fn is_empty(&self) -> bool {
        self.configs.is_empty()
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
        let mut config = self.configs[index].clone();
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
}

/// The simulator's faults: process states, links of the in-memory network, and
/// restarts as new nodes.
impl Injector for Cluster {
    fn ids(&self) -> Vec<String> {
        self.configs.iter().map(|c| c.id.clone()).collect()
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

    async fn restart(&self, node: &str, keep_data: bool) -> Result<(), InjectError> {
        let index = self.index("restart", node)?;
        self.start(index, keep_data).map_err(|error| InjectError {
            action: "restart",
            node: node.to_string(),
            reason: format!("{error:#}"),
        })
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
/// handed everything off before it stopped.
pub fn lost_nodes(cluster: &Cluster) -> BTreeSet<usize> {
    let processes = cluster.processes();
    let removed = cluster.removed();
    let crashed = |n: usize| processes[n].state() == ProcState::Crashed;
    let mut lost: BTreeSet<usize> = (0..cluster.len()).filter(|&n| crashed(n)).collect();
    for node in (0..cluster.len())
        .filter(|&n| !crashed(n))
        .map(|n| cluster.node(n))
    {
        for (index, (_, state)) in node.member_states().into_iter().enumerate() {
            if !state.in_ring() {
                lost.insert(index);
            }
        }
    }
    lost.retain(|n| !removed.contains(n));
    lost
}
