//! One poll of the cluster: every node's state, the ring, the recent executions
//! with their per-operator runs, and a point of the throughput and latency series.
//!
//! Node states are decided from what the storage nodes say of each other
//! ([`storage_state`]), not from whether the dashboard itself can reach a node: a
//! storage node is *failed* once a peer declared it, *suspected* while a peer
//! suspects it, and *unreachable* only when it does not answer and no peer has an
//! opinion yet. The dashboard's own reachability is a fact about one link; the
//! peers' views are what the cluster acts on.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use dida_core::ring::Ring;
use dida_core::{ClusterConfig, Standing};
use dida_proto::convert::config_from_wire;
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::worker_client::WorkerClient;
use dida_proto::execution::{
    ListExecutionsRequest, OutcomeRequest, SchedulerStatusReply, SchedulerStatusRequest,
    WorkerStatusReply, WorkerStatusRequest,
};
use dida_proto::storage::membership_client::MembershipClient;
use dida_proto::storage::storage_client::StorageClient;
use dida_proto::storage::{Liveness, MembersRequest, StatusReply, StatusRequest};
use dida_proto::transport::{lazy_channel, NodeChannel};
use futures::future::join_all;
use serde::Serialize;
use tokio::sync::watch;

use crate::colours::ColourBook;
use crate::feed::now_unix_ms;
use crate::topology::{KnownNode, Topology};
use crate::{POLL_INTERVAL, RPC_DEADLINE};

/// How many recent executions a snapshot lists.
pub const LISTED_EXECUTIONS: u32 = 40;

/// How many points the throughput and latency series keep (a minute at
/// [`POLL_INTERVAL`]).
pub const SERIES_POINTS: usize = 120;

/// What one poll saw; the page draws it as is.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// When the poll ended, Unix time in milliseconds.
    pub at_unix_ms: u64,
    /// Every node: storage nodes in membership order, then the scheduler, then the
    /// workers.
    pub nodes: Vec<NodeView>,
    /// The ring of the storage nodes in it, if any storage node answered.
    pub ring: Option<RingView>,
    /// The scheduler's counters, if it answered.
    pub scheduler: Option<SchedulerCounts>,
    /// The most recent executions, newest first.
    pub executions: Vec<ExecutionView>,
    /// Throughput and latency, oldest point first.
    pub series: Vec<SeriesPoint>,
}

/// The state the page shows a node in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Serving, and no peer doubts it.
    Alive,
    /// Started or restarted, catching up before it takes its ranges back.
    Joining,
    /// A peer cannot reach it and is waiting to be sure.
    Suspected,
    /// Declared failed by its peers: out of the ring.
    Failed,
    /// It learned that its peers declared it failed, and stopped serving.
    Fenced,
    /// It does not answer the dashboard, and no peer has said anything yet.
    Unreachable,
    /// Declared in the PuppetMaster's setup block, not started yet.
    Declared,
    /// Stopped by the PuppetMaster.
    Stopped,
    /// A worker asked to leave: it finishes what it runs and takes no new work.
    Leaving,
    /// A worker the scheduler no longer places work on: it deregistered after
    /// draining, or its lease ended.
    Gone,
    /// A storage node the cluster's configuration removed (decommissioned: `dida
    /// cluster remove`, the PuppetMaster's `removeStorage`): gone for good, out of
    /// the ring, not failed. A storage node still handing its records off is
    /// [`NodeState::Leaving`].
    Removed,
}

/// One node on the page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeView {
    /// Its id.
    pub id: String,
    /// `storage`, `scheduler` or `worker`.
    pub role: String,
    /// Where it serves.
    pub url: String,
    /// Its state.
    pub state: NodeState,
    /// Why it is in that state, in words (who declared or suspects it).
    pub detail: String,
    /// Workers: operators assigned and not yet confirmed (the scheduler's load).
    pub load: Option<u64>,
    /// Storage nodes: keys held.
    pub keys: Option<u64>,
    /// Storage nodes: records (versions) held.
    pub records: Option<u64>,
    /// Storage nodes: fraction of the key space it leads.
    pub primary_share: Option<f64>,
    /// Storage nodes: fraction of the key space it holds a replica of.
    pub replica_share: Option<f64>,
    /// What the PuppetMaster did to its process, when a PuppetMaster runs the page.
    pub process: Option<String>,
    /// Where it serves metrics, when the PuppetMaster gave it an address.
    pub metrics: Option<String>,
    /// Its CSS colour on the page, kept for as long as the dashboard runs
    /// ([`crate::colours`]): the same whoever else fails, joins or leaves.
    pub colour: String,
}

impl NodeView {
    /// A node in `state` for `detail`, with what the PuppetMaster knows of it
    /// (`known`) and none of the role-specific figures yet.
    fn new(
        id: String,
        role: &str,
        url: String,
        (state, detail): (NodeState, String),
        known: Option<&KnownNode>,
    ) -> Self {
        Self {
            id,
            role: role.to_string(),
            url,
            state,
            detail,
            load: None,
            keys: None,
            records: None,
            primary_share: None,
            replica_share: None,
            process: known.map(|k| k.process.clone()),
            metrics: known.and_then(|k| k.metrics.clone()),
            colour: String::new(),
        }
    }
}

/// The ring: who leads and who replicates each range of the key space.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RingView {
    /// Replicas per key.
    pub replication_factor: u32,
    /// Points per node.
    pub vnodes: u32,
    /// Nodes left out of it (failed, fenced, joining, leaving or removed).
    pub excluded: Vec<String>,
    /// The storage cluster's configuration epoch (every membership change adds
    /// one), when a storage node said it.
    pub epoch: Option<u64>,
    /// Its ranges in ring order.
    pub ranges: Vec<RangeView>,
}

/// One range of the ring, as fractions of the hash space: it covers `(start, end]`,
/// wrapping past 1 when `start > end`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RangeView {
    /// Where it starts.
    pub start: f64,
    /// Where it ends.
    pub end: f64,
    /// Its preference list: the primary first, then the other replicas.
    pub replicas: Vec<String>,
}

/// The scheduler's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SchedulerCounts {
    /// Executions submitted since it started.
    pub submitted: u64,
    /// Executions finished since it started.
    pub finished: u64,
    /// Executions running now.
    pub running: u64,
}

/// One execution on the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecutionView {
    /// Its id.
    pub id: String,
    /// Its application.
    pub app: String,
    /// `running`, `succeeded`, `failed` or `timed_out`.
    pub status: String,
    /// When it was submitted, Unix time in milliseconds.
    pub submitted_unix_ms: u64,
    /// When it ended.
    pub ended_unix_ms: Option<u64>,
    /// How each operator ran, in chain order (known once it ended: runs travel with
    /// the outcome).
    pub runs: Vec<RunView>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// One operator of an execution, on the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunView {
    /// Position in the chain.
    pub order: u32,
    /// The operator's class name.
    pub operator: String,
    /// The worker that ran it.
    pub worker: String,
    /// When it began, Unix time in milliseconds.
    pub started_unix_ms: u64,
    /// How long it took, in microseconds.
    pub duration_us: u64,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// One point of the charts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// When, Unix time in milliseconds.
    pub at_unix_ms: u64,
    /// Executions finished per second since the previous point.
    pub finished_per_s: f64,
    /// Median end-to-end latency of the executions that ended since the previous
    /// point (among those listed), in milliseconds.
    pub p50_ms: Option<u64>,
    /// Their 99th percentile.
    pub p99_ms: Option<u64>,
}

/// Decides a storage node's state from its own answer (`None`: it did not answer)
/// and the answers of the other storage nodes; see the module documentation.
pub fn storage_state(
    id: &str,
    own: Option<&StatusReply>,
    peers: &[&StatusReply],
) -> (NodeState, String) {
    let by = |list: fn(&StatusReply) -> &[String]| -> Vec<&str> {
        peers
            .iter()
            .filter(|p| p.id != id && list(p).iter().any(|f| f == id))
            .map(|p| p.id.as_str())
            .collect()
    };
    let declared_by = by(|p| &p.failed);
    let suspected_by = by(|p| &p.suspected);
    match own {
        Some(own) if own.fenced => (
            NodeState::Fenced,
            "its peers declared it failed; it stopped serving".into(),
        ),
        Some(own) if own.liveness == Liveness::Joining as i32 => {
            (NodeState::Joining, "catching up before it rejoins".into())
        }
        _ if !declared_by.is_empty() => (
            NodeState::Failed,
            format!("declared failed by {}", declared_by.join(", ")),
        ),
        None if !suspected_by.is_empty() => (
            NodeState::Suspected,
            format!("not answering; suspected by {}", suspected_by.join(", ")),
        ),
        None => (NodeState::Unreachable, "not answering".into()),
        Some(_) if !suspected_by.is_empty() => (
            NodeState::Suspected,
            format!("suspected by {}", suspected_by.join(", ")),
        ),
        Some(_) => (NodeState::Alive, String::new()),
    }
}

/// The ring of `ids` without `excluded`, as the page draws it.
pub fn ring_view(
    ids: &[String],
    excluded: &HashSet<String>,
    vnodes: u32,
    replication_factor: u32,
) -> (RingView, Vec<f64>, Vec<f64>) {
    let ring = Ring::without(ids, vnodes, replication_factor as usize, |n| {
        excluded.contains(&ids[n])
    });
    let full = 2f64.powi(64);
    let ends: Vec<u64> = ring.range_ends().collect();
    let ranges = (0..ends.len())
        .map(|i| {
            let start = ends[(i + ends.len() - 1) % ends.len()];
            RangeView {
                start: start as f64 / full,
                end: ends[i] as f64 / full,
                replicas: ring
                    .range_replicas(i as u32)
                    .iter()
                    .map(|&n| ids[n].clone())
                    .collect(),
            }
        })
        .collect();
    let mut excluded: Vec<String> = excluded.iter().cloned().collect();
    excluded.sort();
    (
        RingView {
            replication_factor: ring.replication_factor() as u32,
            vnodes,
            excluded,
            epoch: None,
            ranges,
        },
        ring.primary_shares(),
        ring.replica_shares(),
    )
}

/// Polls the cluster every [`POLL_INTERVAL`] and publishes each snapshot, until
/// every receiver is gone.
pub(crate) async fn poll(topology: watch::Receiver<Topology>, out: watch::Sender<Arc<Snapshot>>) {
    let mut poller = Poller::default();
    let mut ticks = tokio::time::interval(POLL_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let current = topology.borrow().clone();
        let snapshot = poller.poll(&current).await;
        if out.send(Arc::new(snapshot)).is_err() {
            return;
        }
    }
}

/// What the poller remembers between polls: its clients, the runs of finished
/// executions (they never change), and the series.
#[derive(Default)]
struct Poller {
    storage: HashMap<String, StorageClient<NodeChannel>>,
    membership: HashMap<String, MembershipClient<NodeChannel>>,
    workers: HashMap<String, WorkerClient<NodeChannel>>,
    schedulers: HashMap<String, SchedulerClient<NodeChannel>>,
    runs: HashMap<String, (Vec<RunView>, Option<String>)>,
    series: Vec<SeriesPoint>,
    last_finished: Option<(Instant, u64, u64)>,
    colours: ColourBook,
}

/// At most this many outcomes are fetched per poll, so a burst of executions does
/// not turn one poll into hundreds of calls (the rest come at the next polls).
const OUTCOMES_PER_POLL: usize = 16;

impl Poller {
    async fn poll(&mut self, topology: &Topology) -> Snapshot {
        let storage_replies = self.storage_statuses(topology).await;
        let configuration = self.configuration(topology, &storage_replies).await;
        let scheduler = match &topology.scheduler {
            Some(url) => self.scheduler_status(url).await,
            None => None,
        };
        let mut nodes = storage_nodes(topology, &storage_replies, configuration.as_ref());
        let mut ring = ring_of(topology, &storage_replies, &mut nodes);
        if let (Some(ring), Some(config)) = (ring.as_mut(), configuration.as_ref()) {
            ring.epoch = Some(config.epoch);
        }
        if let Some(url) = &topology.scheduler {
            nodes.push(self.scheduler_node(topology, url, scheduler.as_ref()));
        }
        nodes.extend(self.worker_nodes(topology, scheduler.as_ref()).await);
        let colours = self.colours.colours(nodes.iter().map(|n| n.id.as_str()));
        for (node, colour) in nodes.iter_mut().zip(colours) {
            node.colour = colour;
        }
        let executions = match &topology.scheduler {
            Some(url) => self.executions(url).await,
            None => Vec::new(),
        };
        let counts = scheduler.as_ref().map(|s| SchedulerCounts {
            submitted: s.executions_submitted,
            finished: s.executions_finished,
            running: s.executions_running,
        });
        self.extend_series(counts, &executions);
        Snapshot {
            at_unix_ms: now_unix_ms(),
            nodes,
            ring,
            scheduler: counts,
            executions,
            series: self.series.clone(),
        }
    }

    async fn storage_statuses(&mut self, topology: &Topology) -> Vec<Option<StatusReply>> {
        let clients: Vec<Option<StorageClient<NodeChannel>>> = topology
            .storage
            .iter()
            .map(|(_, url)| client(&mut self.storage, url, StorageClient::new))
            .collect();
        join_all(clients.into_iter().map(|c| async move {
            let mut c = c?;
            let call = c.status(StatusRequest {});
            match tokio::time::timeout(RPC_DEADLINE, call).await {
                Ok(Ok(reply)) => Some(reply.into_inner()),
                _ => None,
            }
        }))
        .await
    }

    /// The storage cluster's configuration (who is active, leaving or removed),
    /// as the highest epoch the storage nodes that answered their status know;
    /// `None` if none of them answers `Members` with a configuration that checks.
    async fn configuration(
        &mut self,
        topology: &Topology,
        replies: &[Option<StatusReply>],
    ) -> Option<ClusterConfig> {
        let clients: Vec<MembershipClient<NodeChannel>> = topology
            .storage
            .iter()
            .zip(replies)
            .filter(|(_, reply)| reply.is_some())
            .filter_map(|((_, url), _)| client(&mut self.membership, url, MembershipClient::new))
            .collect();
        let answers = join_all(clients.into_iter().map(|mut c| async move {
            match tokio::time::timeout(RPC_DEADLINE, c.members(MembersRequest {})).await {
                Ok(Ok(reply)) => config_from_wire(reply.into_inner().config?).ok(),
                _ => None,
            }
        }))
        .await;
        answers.into_iter().flatten().max_by_key(|c| c.epoch)
    }

    async fn scheduler_status(&mut self, url: &str) -> Option<SchedulerStatusReply> {
        let mut c = client(&mut self.schedulers, url, SchedulerClient::new)?;
        match tokio::time::timeout(RPC_DEADLINE, c.status(SchedulerStatusRequest {})).await {
            Ok(Ok(reply)) => Some(reply.into_inner()),
            _ => None,
        }
    }

    fn scheduler_node(
        &self,
        topology: &Topology,
        url: &str,
        status: Option<&SchedulerStatusReply>,
    ) -> NodeView {
        let known = topology.known.iter().find(|n| n.role == "scheduler");
        let id = status
            .map(|s| s.id.clone())
            .or_else(|| known.map(|k| k.id.clone()))
            .unwrap_or_else(|| "scheduler".into());
        let state = match status {
            Some(s) if s.failed_storage.is_empty() => (NodeState::Alive, String::new()),
            Some(s) => (
                NodeState::Alive,
                format!("routes around {}", s.failed_storage.join(", ")),
            ),
            None => process_state(known.map(|k| k.process.as_str())),
        };
        NodeView::new(id, "scheduler", url.to_string(), state, known)
    }

    /// The workers the PuppetMaster declared and those the scheduler knows, each
    /// asked for its status.
    async fn worker_nodes(
        &mut self,
        topology: &Topology,
        scheduler: Option<&SchedulerStatusReply>,
    ) -> Vec<NodeView> {
        let mut workers: Vec<(String, String)> = topology
            .known
            .iter()
            .filter(|n| n.role == "worker")
            .map(|n| (n.id.clone(), n.url.clone()))
            .collect();
        for w in scheduler.map(|s| s.workers.as_slice()).unwrap_or_default() {
            if !workers.iter().any(|(id, _)| *id == w.worker_id) {
                workers.push((w.worker_id.clone(), w.url.clone()));
            }
        }
        let calls = workers.iter().map(|(_, url)| {
            let c = client(&mut self.workers, url, WorkerClient::new);
            async move {
                let mut c = c?;
                match tokio::time::timeout(RPC_DEADLINE, c.status(WorkerStatusRequest {})).await {
                    Ok(Ok(reply)) => Some(reply.into_inner()),
                    _ => None,
                }
            }
        });
        let calls: Vec<_> = calls.collect();
        let replies = join_all(calls).await;
        workers
            .into_iter()
            .zip(replies)
            .map(|((id, url), reply)| {
                let known = topology.known(&id);
                let listed = scheduler.and_then(|s| s.workers.iter().find(|w| w.worker_id == id));
                let load = listed.map(|w| w.load);
                let in_scheduler = listed.map(|w| w.state.as_str());
                let state = worker_state(
                    reply.as_ref(),
                    in_scheduler,
                    known.map(|k| k.process.as_str()),
                );
                NodeView {
                    load,
                    ..NodeView::new(id, "worker", url, state, known)
                }
            })
            .collect()
    }

    /// The recent executions, with the runs of those that ended (fetched once each).
    async fn executions(&mut self, url: &str) -> Vec<ExecutionView> {
        let Some(mut c) = client(&mut self.schedulers, url, SchedulerClient::new) else {
            return Vec::new();
        };
        let listing = c.list_executions(ListExecutionsRequest {
            limit: LISTED_EXECUTIONS,
        });
        let Ok(Ok(listing)) = tokio::time::timeout(RPC_DEADLINE, listing).await else {
            return Vec::new();
        };
        let listed = listing.into_inner().executions;
        let wanted: Vec<String> = listed
            .iter()
            .filter(|e| e.ended_unix_ms.is_some() && !self.runs.contains_key(&e.execution_id))
            .map(|e| e.execution_id.clone())
            .take(OUTCOMES_PER_POLL)
            .collect();
        let fetched = join_all(wanted.into_iter().map(|id| {
            let mut c = c.clone();
            async move {
                let call = c.outcome(OutcomeRequest {
                    execution_id: id.clone(),
                    wait_ms: 0,
                });
                let outcome = match tokio::time::timeout(RPC_DEADLINE, call).await {
                    Ok(Ok(reply)) => reply.into_inner().outcome,
                    _ => None,
                };
                (id, outcome)
            }
        }))
        .await;
        for (id, outcome) in fetched {
            let Some(outcome) = outcome else { continue };
            let runs = outcome
                .runs
                .iter()
                .map(|r| RunView {
                    order: r.order,
                    operator: r.classname.clone(),
                    worker: r.worker_id.clone(),
                    started_unix_ms: r.started_unix_ms,
                    duration_us: r.duration_us,
                    error: r.error.clone(),
                })
                .collect();
            self.runs.insert(id, (runs, outcome.error));
        }
        let listed_ids: HashSet<&str> = listed.iter().map(|e| e.execution_id.as_str()).collect();
        self.runs.retain(|id, _| listed_ids.contains(id.as_str()));
        listed
            .into_iter()
            .map(|e| {
                let (runs, error) = self.runs.get(&e.execution_id).cloned().unwrap_or_default();
                ExecutionView {
                    id: e.execution_id,
                    app: e.app,
                    status: e.status,
                    submitted_unix_ms: e.submitted_unix_ms,
                    ended_unix_ms: e.ended_unix_ms,
                    runs,
                    error,
                }
            })
            .collect()
    }

    /// Adds a point: the scheduler's finished counter over the time since the last
    /// point, and the latencies of the listed executions that ended meanwhile.
    fn extend_series(&mut self, counts: Option<SchedulerCounts>, executions: &[ExecutionView]) {
        let now = Instant::now();
        let now_ms = now_unix_ms();
        let Some(counts) = counts else {
            self.last_finished = None;
            return;
        };
        let Some((then, finished_then, then_ms)) =
            self.last_finished.replace((now, counts.finished, now_ms))
        else {
            return;
        };
        let seconds = now.duration_since(then).as_secs_f64().max(1e-3);
        let mut latencies: Vec<u64> = executions
            .iter()
            .filter_map(|e| {
                let end = e.ended_unix_ms?;
                (end > then_ms && end <= now_ms).then(|| end.saturating_sub(e.submitted_unix_ms))
            })
            .collect();
        latencies.sort_unstable();
        let percentile = |p: f64| -> Option<u64> {
            let last = latencies.len().checked_sub(1)?;
            latencies.get(((last as f64) * p).round() as usize).copied()
        };
        if self.series.len() == SERIES_POINTS {
            self.series.remove(0);
        }
        self.series.push(SeriesPoint {
            at_unix_ms: now_ms,
            finished_per_s: counts.finished.saturating_sub(finished_then) as f64 / seconds,
            p50_ms: percentile(0.5),
            p99_ms: percentile(0.99),
        });
    }
}

/// A worker's state from its own answer (`None`: it did not answer), what the
/// scheduler says of it (`alive`, `leaving`, `gone`; `None`: the scheduler does not
/// list it or did not answer) and what the PuppetMaster did to its process. The
/// scheduler's word on leaving and gone stands even while the worker still answers:
/// it is what decides whether the worker gets work.
pub fn worker_state(
    own: Option<&WorkerStatusReply>,
    in_scheduler: Option<&str>,
    process: Option<&str>,
) -> (NodeState, String) {
    let activity = |r: &WorkerStatusReply| {
        format!(
            "{} running, {} completed, {} failed",
            r.running, r.completed, r.failed
        )
    };
    match (own, in_scheduler) {
        (Some(r), Some("leaving")) => (
            NodeState::Leaving,
            format!("draining, no new work: {}", activity(r)),
        ),
        (None, Some("leaving")) => (
            NodeState::Leaving,
            "draining, no new work; not answering".into(),
        ),
        (Some(r), Some("gone")) => (
            NodeState::Gone,
            format!(
                "the scheduler places no work on it (left, or its lease ended): {}",
                activity(r)
            ),
        ),
        (Some(r), _) => (NodeState::Alive, activity(r)),
        (None, Some("gone")) => match process {
            Some(p)
                if p.starts_with("exited")
                    || p.starts_with("left")
                    || p == "crashed"
                    || p == "stopped" =>
            {
                let (state, detail) = process_state(Some(p));
                (state, format!("{detail}; the scheduler dropped it"))
            }
            _ => (
                NodeState::Gone,
                "left the scheduler's workers (deregistered or its lease ended)".into(),
            ),
        },
        (None, _) => process_state(process),
    }
}

/// The state of a node that does not answer, from what the PuppetMaster did to it.
fn process_state(process: Option<&str>) -> (NodeState, String) {
    match process {
        Some("declared") => (NodeState::Declared, "not started yet".into()),
        Some("stopped") => (NodeState::Stopped, "stopped by the PuppetMaster".into()),
        Some("crashed") => (NodeState::Failed, "crashed by the PuppetMaster".into()),
        Some("removed") => (
            NodeState::Removed,
            "removed from the cluster by the PuppetMaster (removeStorage)".into(),
        ),
        Some("failed to start") => (NodeState::Failed, "could not be started".into()),
        Some(exited) if exited.starts_with("exited") => (
            NodeState::Failed,
            format!("its process {exited}, not by the PuppetMaster"),
        ),
        Some("leaving") => (
            NodeState::Leaving,
            "asked to leave by the PuppetMaster; not answering".into(),
        ),
        // A worker the PuppetMaster asked to leave whose process ended: gone when
        // it exited by itself (drained), failed when something else ended it.
        Some(left) if left.starts_with("left: ") => match &left["left: ".len()..] {
            how @ "exited with status 0" => (
                NodeState::Gone,
                format!("left when asked to: its process {how}"),
            ),
            how => (
                NodeState::Failed,
                format!("asked to leave, but its process {how}"),
            ),
        },
        _ => (NodeState::Unreachable, "not answering".into()),
    }
}

/// The storage nodes, each in the state its own and its peers' answers give — or,
/// for a member the cluster's `configuration` has leaving or removed, that
/// standing: a removed node no longer answers, and is gone, not failed.
fn storage_nodes(
    topology: &Topology,
    replies: &[Option<StatusReply>],
    configuration: Option<&ClusterConfig>,
) -> Vec<NodeView> {
    let answered: Vec<&StatusReply> = replies.iter().flatten().collect();
    topology
        .storage
        .iter()
        .zip(replies)
        .map(|((id, url), reply)| {
            let known = topology.known(id);
            let (mut state, mut detail) = storage_state(id, reply.as_ref(), &answered);
            if reply.is_none() {
                match known.map(|k| k.process.as_str()) {
                    Some(p @ ("declared" | "stopped" | "failed to start" | "removed")) => {
                        (state, detail) = process_state(Some(p));
                    }
                    Some("crashed") => detail.push_str(" (crashed by the PuppetMaster)"),
                    Some(exited) if exited.starts_with("exited") => {
                        detail.push_str(&format!(" (its process {exited})"));
                    }
                    _ => {}
                }
            }
            let standing = configuration.and_then(|config| {
                let member = config.members.iter().find(|m| m.id == *id)?;
                Some((member.standing, config.epoch))
            });
            match standing {
                Some((Standing::Joining, epoch)) => {
                    state = NodeState::Joining;
                    detail = format!(
                        "joining the cluster (epoch {epoch}): catching up the ranges it gains \
                         before it enters the ring"
                    );
                }
                Some((Standing::Leaving, epoch)) => {
                    state = NodeState::Leaving;
                    detail = format!(
                        "leaving the cluster (epoch {epoch}): out of the ring, handing its \
                         records to their new replicas"
                    );
                }
                Some((Standing::Removed, epoch)) => {
                    state = NodeState::Removed;
                    detail = format!("removed from the cluster (epoch {epoch})");
                    if let Some(process) = known.map(|k| k.process.as_str()) {
                        detail.push_str(&format!("; its process: {process}"));
                    }
                }
                _ => {}
            }
            NodeView {
                keys: reply.as_ref().map(|r| r.keys),
                records: reply.as_ref().map(|r| r.records),
                ..NodeView::new(id.clone(), "storage", url.clone(), (state, detail), known)
            }
        })
        .collect()
}

/// The ring the storage nodes route by (every node but the failed, fenced,
/// joining, leaving and removed ones), and each node's share of it.
fn ring_of(
    topology: &Topology,
    replies: &[Option<StatusReply>],
    nodes: &mut [NodeView],
) -> Option<RingView> {
    let settings = replies.iter().flatten().next()?;
    let ids: Vec<String> = topology.storage.iter().map(|(id, _)| id.clone()).collect();
    let excluded: HashSet<String> = nodes
        .iter()
        .filter(|n| {
            matches!(
                n.state,
                NodeState::Failed
                    | NodeState::Fenced
                    | NodeState::Joining
                    | NodeState::Leaving
                    | NodeState::Removed
            )
        })
        .map(|n| n.id.clone())
        .collect();
    let (ring, primary, replica) = ring_view(
        &ids,
        &excluded,
        settings.vnodes,
        settings.replication_factor,
    );
    for (n, node) in nodes.iter_mut().enumerate() {
        if !excluded.contains(&node.id) {
            node.primary_share = primary.get(n).copied();
            node.replica_share = replica.get(n).copied();
        }
    }
    Some(ring)
}

/// The cached client of `url`, made with `make` on first use; `None` (and a log
/// line) when the URL is not one a channel can be made to.
fn client<C: Clone>(
    cache: &mut HashMap<String, C>,
    url: &str,
    make: fn(NodeChannel) -> C,
) -> Option<C> {
    if let Some(c) = cache.get(url) {
        return Some(c.clone());
    }
    match lazy_channel(url, RPC_DEADLINE) {
        Ok(channel) => {
            let c = make(channel);
            cache.insert(url.to_string(), c.clone());
            Some(c)
        }
        Err(error) => {
            tracing::warn!(url, %error, "the dashboard cannot reach this node");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: &str, failed: &[&str], suspected: &[&str]) -> StatusReply {
        StatusReply {
            id: id.into(),
            failed: failed.iter().map(|s| s.to_string()).collect(),
            suspected: suspected.iter().map(|s| s.to_string()).collect(),
            liveness: Liveness::Alive as i32,
            ..Default::default()
        }
    }

    #[test]
    fn a_worker_shows_the_schedulers_leaving_and_gone_and_its_process() {
        let answer = WorkerStatusReply {
            running: 2,
            completed: 5,
            ..Default::default()
        };
        let state = |own, sched, process| worker_state(own, sched, process).0;
        assert_eq!(state(Some(&answer), Some("alive"), None), NodeState::Alive);
        assert_eq!(state(Some(&answer), None, None), NodeState::Alive);
        let (leaving, detail) = worker_state(Some(&answer), Some("leaving"), Some("running"));
        assert_eq!(leaving, NodeState::Leaving);
        assert!(detail.contains("2 running"), "{detail}");
        assert_eq!(state(None, Some("leaving"), None), NodeState::Leaving);
        assert_eq!(state(Some(&answer), Some("gone"), None), NodeState::Gone);
        // Gone and its process ended: how it ended is what the page says.
        assert_eq!(state(None, Some("gone"), None), NodeState::Gone);
        assert_eq!(
            state(None, Some("gone"), Some("stopped")),
            NodeState::Stopped
        );
        let (killed, detail) = worker_state(
            None,
            Some("gone"),
            Some("exited: was killed (signal: 9 (SIGKILL))"),
        );
        assert_eq!(killed, NodeState::Failed);
        assert!(detail.contains("SIGKILL"), "{detail}");
        // Killed outside the console while the scheduler still counts its lease.
        assert_eq!(
            state(None, Some("alive"), Some("exited: was killed")),
            NodeState::Failed
        );
        assert_eq!(state(None, None, Some("running")), NodeState::Unreachable);
        // Asked to leave by the PuppetMaster: gone once it exited by itself, failed
        // if something else ended it.
        let left = Some("left: exited with status 0");
        assert_eq!(state(None, Some("gone"), left), NodeState::Gone);
        assert_eq!(state(None, None, left), NodeState::Gone);
        assert_eq!(
            state(None, Some("gone"), Some("left: was killed (signal: 9)")),
            NodeState::Failed
        );
        assert_eq!(state(None, None, Some("leaving")), NodeState::Leaving);
    }

    #[test]
    fn a_node_is_failed_once_a_peer_declares_it() {
        let s1 = status("s1", &["s3"], &[]);
        let s2 = status("s2", &[], &["s3"]);
        let (state, detail) = storage_state("s3", None, &[&s1, &s2]);
        assert_eq!(state, NodeState::Failed);
        assert_eq!(detail, "declared failed by s1");
    }

    #[test]
    fn a_silent_node_is_suspected_or_unreachable_until_declared() {
        let s1 = status("s1", &[], &["s3"]);
        assert_eq!(storage_state("s3", None, &[&s1]).0, NodeState::Suspected);
        assert_eq!(storage_state("s3", None, &[]).0, NodeState::Unreachable);
    }

    #[test]
    fn its_own_answer_tells_fenced_and_joining_apart_from_failed() {
        let s1 = status("s1", &["s3"], &[]);
        let mut own = status("s3", &[], &[]);
        own.fenced = true;
        assert_eq!(storage_state("s3", Some(&own), &[&s1]).0, NodeState::Fenced);
        own.fenced = false;
        own.liveness = Liveness::Joining as i32;
        assert_eq!(
            storage_state("s3", Some(&own), &[&s1]).0,
            NodeState::Joining
        );
        own.liveness = Liveness::Alive as i32;
        assert_eq!(storage_state("s3", Some(&own), &[&s1]).0, NodeState::Failed);
        assert_eq!(storage_state("s3", Some(&own), &[&own]).0, NodeState::Alive);
    }

    #[test]
    fn the_ring_covers_the_key_space_once_and_leaves_out_failed_nodes() {
        let ids: Vec<String> = ["s1", "s2", "s3"].map(String::from).to_vec();
        let excluded = HashSet::from(["s2".to_string()]);
        let (ring, primary, replica) = ring_view(&ids, &excluded, 8, 2);
        let covered: f64 = ring
            .ranges
            .iter()
            .map(|r| (r.end - r.start).rem_euclid(1.0))
            .sum();
        assert!((covered - 1.0).abs() < 1e-9, "{covered}");
        assert!(ring
            .ranges
            .iter()
            .all(|r| !r.replicas.contains(&"s2".into())));
        assert_eq!(primary[1], 0.0);
        assert!((primary.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!((replica[0] - 1.0).abs() < 1e-9, "two replicas of two nodes");
        assert_eq!(ring.excluded, ["s2"]);
    }

    #[test]
    fn a_removed_storage_node_is_removed_not_failed_and_the_ring_leaves_it_out() {
        use dida_core::cluster::derived_cluster_id;
        use dida_core::Membership;

        let ids = ["s1", "s2", "s3", "s4"];
        let membership = Membership::parse(
            &ids.iter()
                .enumerate()
                .map(|(i, id)| format!("{id}=http://127.0.0.1:{}", i + 1))
                .collect::<Vec<_>>()
                .join(","),
        )
        .unwrap();
        let first = ClusterConfig::initial(derived_cluster_id(&membership), &membership);
        let leaving = first.begin_leave("s4", 3).unwrap();
        let removed = leaving.finish_leave("s4").unwrap();
        let topology = Topology {
            storage: membership
                .members()
                .iter()
                .map(|m| (m.id.clone(), m.url.to_string()))
                .collect(),
            scheduler: None,
            known: Vec::new(),
        };
        let answer = |id: &str| {
            Some(StatusReply {
                vnodes: 8,
                replication_factor: 3,
                ..status(id, &[], &[])
            })
        };
        let states = |config: &ClusterConfig, s4: Option<StatusReply>| {
            let replies = vec![answer("s1"), answer("s2"), answer("s3"), s4];
            let mut nodes = storage_nodes(&topology, &replies, Some(config));
            let ring = ring_of(&topology, &replies, &mut nodes).unwrap();
            (nodes, ring)
        };
        // Leaving: it still answers, but it is out of the ring.
        let (nodes, ring) = states(&leaving, answer("s4"));
        assert_eq!(nodes[3].state, NodeState::Leaving);
        assert!(nodes[3].detail.contains("epoch 1"), "{}", nodes[3].detail);
        assert_eq!(ring.excluded, ["s4"]);
        // Removed: it no longer answers, and is not failed.
        let (nodes, ring) = states(&removed, None);
        assert_eq!(nodes[3].state, NodeState::Removed);
        assert!(nodes[3].detail.contains("epoch 2"), "{}", nodes[3].detail);
        assert_eq!(ring.excluded, ["s4"]);
        assert!(ring
            .ranges
            .iter()
            .all(|r| !r.replicas.contains(&"s4".into())));
        assert!(nodes[..3].iter().all(|n| n.state == NodeState::Alive));
        assert_eq!(nodes[3].primary_share, None);
        let led: f64 = nodes[..3].iter().filter_map(|n| n.primary_share).sum();
        assert!((led - 1.0).abs() < 1e-9, "the three that stay lead it all");
        // Without the configuration, an unanswering node is what its peers say.
        let replies = vec![answer("s1"), answer("s2"), answer("s3"), None];
        let nodes = storage_nodes(&topology, &replies, None);
        assert_eq!(nodes[3].state, NodeState::Unreachable);
    }
}
