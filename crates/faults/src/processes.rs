//! The real-process back-end of [`dida_verify::plan::Injector`]: storage nodes run
//! as processes of this machine ([`LocalCluster`]), faults are signals (SIGKILL,
//! SIGSTOP, SIGCONT), proxy links cut and healed, and restarts with the original
//! command line, and joins as spare nodes of the local cluster started with
//! `dida storage --join`. Each fault is confirmed: a killed node must stop
//! answering, a paused one must be stopped and answer nothing, a restarted one must
//! answer its status again, a joining one must be listed active by the cluster.
//! Which nodes are lost, the cluster says ([`crate::survey`]).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use dida_core::{Membership, Standing};
use dida_local_cluster::LocalCluster;
use dida_proto::storage::membership_client::MembershipClient;
use dida_proto::storage::RemoveMemberRequest;
use dida_proto::transport::lazy_channel;
use dida_storage_client::cluster::{self, MembersView};
use dida_storage_client::{ClientConfig, StorageClient};
use dida_verify::plan::{Fault, FaultKind, InjectError, Injector};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Mutex;

use crate::survey::{self, Survey};

/// How long a restarted node gets to answer its status before the restart counts as
/// failed (it starts in well under a second; this covers a loaded machine).
const RESTART_LIMIT: Duration = Duration::from_secs(10);
/// The deadline of the request that a node leave: the nodes' own proposal
/// deadline (10 s) and some.
const LEAVE_CALL_DEADLINE: Duration = Duration::from_secs(15);
/// How long a leaving node gets to hand its records off and stop.
const LEAVE_LIMIT: Duration = Duration::from_secs(60);
/// How long a joining node gets to answer its status: to be admitted (a decision
/// of the nodes, `--join`'s call deadline 15 s) and start serving.
const JOIN_START_LIMIT: Duration = Duration::from_secs(20);
/// How long a joining node gets, from its start, to catch up and be listed
/// active: like a leave's handoff, its catch-up of the ranges it gains.
const JOIN_LIMIT: Duration = Duration::from_secs(60);
/// The deadline of each status call of a survey, and of a confirming ping.
pub(crate) const SURVEY_DEADLINE: Duration = Duration::from_secs(1);
/// The longest a pause takes to be confirmed (SIGSTOP takes effect as each thread
/// of the node is next scheduled).
const PAUSE_CONFIRMATION: Duration = Duration::from_millis(500);
/// How the cluster is looked at once the nemesis is done: every so often, at least
/// a second, and at most long enough for a node declared failed at the last moment
/// to fence itself, start over and rejoin.
const SETTLE_POLL: Duration = Duration::from_millis(250);
const SETTLE_AT_LEAST: Duration = Duration::from_secs(1);
const SETTLE_AT_MOST: Duration = Duration::from_secs(15);

/// The cluster a run faults.
#[derive(Debug)]
pub struct Processes {
    /// The processes and their proxies.
    cluster: Mutex<LocalCluster>,
    /// Every storage node ever a member, in membership order, the nodes that
    /// joined included once they were started (removed ones too: see
    /// [`Processes::members`]).
    membership: SyncMutex<Membership>,
    /// The storage node ids surveyed and faulted: the first nodes, and each node
    /// that joined once its join was over.
    ids: SyncMutex<Vec<String>>,
    /// Whether the nodes keep their records in data directories: then a restart
    /// starts a node on its data, else empty (the suite's default).
    keeps_data: bool,
    /// How the clients that confirm faults and survey are configured (a short
    /// deadline).
    probe_config: ClientConfig,
    /// A client of the cluster's membership with `probe_config`, to confirm
    /// faults and survey; replaced when a node joins, so that it reaches it.
    probe: SyncMutex<Arc<StorageClient>>,
    /// The nodes killed and not started again (not asked in surveys).
    killed: SyncMutex<BTreeSet<String>>,
    /// The nodes removed from the cluster (a leave): no longer members, not asked.
    removed: SyncMutex<BTreeSet<String>>,
    /// Where each newly lost node is told (the timeline's watcher) until the last
    /// survey, and who was.
    losses: SyncMutex<Option<UnboundedSender<String>>>,
    reported: SyncMutex<BTreeSet<String>>,
}

impl Processes {
    /// Faults `cluster`, whose nodes keep their data on disk when `keeps_data`;
    /// clients configured with `probe_config` confirm faults and survey, and each
    /// node lost is sent on `losses`.
    pub fn new(
        cluster: LocalCluster,
        keeps_data: bool,
        probe_config: ClientConfig,
        losses: Option<UnboundedSender<String>>,
    ) -> anyhow::Result<Self> {
        let membership = cluster.members()?;
        let probe = StorageClient::new(membership.clone(), probe_config.clone())?;
        Ok(Self {
            ids: SyncMutex::new(cluster.ids().collect()),
            membership: SyncMutex::new(membership),
            cluster: Mutex::new(cluster),
            keeps_data,
            probe_config,
            probe: SyncMutex::new(Arc::new(probe)),
            killed: SyncMutex::default(),
            removed: SyncMutex::default(),
            losses: SyncMutex::new(losses),
            reported: SyncMutex::default(),
        })
    }

    /// Every storage node ever a member, joined ones included: a client of the
    /// cluster as it is now is made of it (removed members stay listed, as the
    /// cluster's configuration keeps them, so that every index is the cluster's).
    pub fn membership(&self) -> Membership {
        self.membership
            .lock()
            .map(|m| m.clone())
            .expect("membership lock poisoned")
    }

    /// The client that confirms faults and surveys.
    fn probe(&self) -> Arc<StorageClient> {
        self.probe
            .lock()
            .map(|p| p.clone())
            .expect("probe lock poisoned")
    }

    /// The members not killed (removed ones aside) but `except`, as `(id, url)`:
    /// those a request to the cluster is sent to.
    fn seeds(&self, except: &str) -> Vec<(String, String)> {
        let membership = self.membership();
        let killed = self.killed();
        self.members()
            .into_iter()
            .filter(|id| id != except && !killed.contains(id))
            .filter_map(|id| {
                let url = membership.get(&id).ok()?.url.to_string();
                Some((id, url))
            })
            .collect()
    }

    /// Waits until the cluster's configuration (the latest any member not killed
    /// tells) lists `node` active, or `limit` from `started` passed.
    async fn wait_until_active(
        &self,
        node: &str,
        started: tokio::time::Instant,
        limit: Duration,
    ) -> Result<(), String> {
        loop {
            let seeds = Membership::in_order(self.seeds(node)).map_err(|e| e.to_string())?;
            let answer = cluster::members(&seeds, None, SURVEY_DEADLINE).await;
            let last = match answer.and_then(|reply| MembersView::of(&reply)) {
                Ok(view) if view.standing(node) == Some(Standing::Active) => return Ok(()),
                Ok(view) => format!(
                    "{} lists it {:?} (epoch {})",
                    view.answered_by,
                    view.standing(node),
                    view.config.epoch
                ),
                Err(error) => error.to_string(),
            };
            if started.elapsed() >= limit {
                return Err(format!("not active within {limit:?}: {last}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn killed(&self) -> BTreeSet<String> {
        self.killed.lock().map(|k| k.clone()).unwrap_or_default()
    }

    /// The nodes removed from the cluster by a leave.
    pub fn removed(&self) -> BTreeSet<String> {
        self.removed.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The members: every node but those removed (and a joining node's only once
    /// its join is over).
    fn members(&self) -> Vec<String> {
        let removed = self.removed();
        self.ids()
            .into_iter()
            .filter(|id| !removed.contains(id))
            .collect()
    }

    /// Asks every member not killed for its status; tells the watcher of nodes lost
    /// since the last survey.
    async fn survey(&self) -> Survey {
        let members = self.members();
        let probe = self.probe();
        let survey = survey::survey(&probe, &members, &self.killed(), SURVEY_DEADLINE).await;
        self.report(&survey.lost);
        survey
    }

    /// Tells the timeline's watcher of each node of `lost` not told of before.
    fn report(&self, lost: &BTreeSet<String>) {
        let (Ok(losses), Ok(mut reported)) = (self.losses.lock(), self.reported.lock()) else {
            return;
        };
        let Some(losses) = losses.as_ref() else {
            return;
        };
        for node in lost {
            if reported.insert(node.clone()) {
                // The watcher may be gone (a stopped run): nothing to tell then.
                let _ = losses.send(node.clone());
            }
        }
    }

    /// Surveys the cluster until two surveys in a row agree with every node
    /// answering and none fenced or joining (and at least [`SETTLE_AT_LEAST`] has
    /// passed), or [`SETTLE_AT_MOST`]: a declaration made just as the last fault
    /// ended takes a probe round or two to spread, and a node declared failed then
    /// rejoins. Records on each of `faults` what became of its target, and tells
    /// the watcher no more (its channel closes, so it can finish).
    pub async fn settle(&self, faults: &mut [Fault]) -> Survey {
        let started = tokio::time::Instant::now();
        let mut previous = self.survey().await;
        let survey = loop {
            tokio::time::sleep(SETTLE_POLL).await;
            let current = self.survey().await;
            let calm =
                current == previous && current.silent.is_empty() && current.fenced.is_empty();
            if (calm && started.elapsed() >= SETTLE_AT_LEAST) || started.elapsed() >= SETTLE_AT_MOST
            {
                break current;
            }
            previous = current;
        };
        if let Ok(mut losses) = self.losses.lock() {
            losses.take();
        }
        for fault in faults.iter_mut().filter(|f| !f.node.is_empty()) {
            fault.declared_failed_by = survey.declared_by(&fault.node);
            fault.lost = survey.lost.contains(&fault.node);
            fault.fenced = (fault.kind != FaultKind::Kill && !survey.silent.contains(&fault.node))
                .then(|| survey.fenced.contains(&fault.node));
        }
        survey
    }

    /// Whether `node` answers a ping within `within`.
    async fn answers(&self, node: &str, within: Duration) -> bool {
        matches!(
            tokio::time::timeout(within, self.probe().ping(node)).await,
            Ok(Ok(()))
        )
    }
}

/// `InjectError` from what the local cluster said.
fn failed(action: &'static str, node: &str, reason: impl fmt::Display) -> InjectError {
    InjectError {
        action,
        node: node.to_string(),
        reason: format!("{reason:#}"),
    }
}

impl Injector for Processes {
    fn ids(&self) -> Vec<String> {
        self.ids.lock().map(|ids| ids.clone()).unwrap_or_default()
    }

    async fn kill(&self, node: &str) -> Result<(), InjectError> {
        let killed = self.cluster.lock().await.kill(node).await;
        killed.map_err(|e| failed("kill", node, e))?;
        if self.answers(node, SURVEY_DEADLINE).await {
            return Err(failed("kill", node, "it still answers after SIGKILL"));
        }
        if let Ok(mut killed) = self.killed.lock() {
            killed.insert(node.to_string());
        }
        self.report(&self.killed());
        Ok(())
    }

    async fn pause(&self, node: &str) -> Result<(), InjectError> {
        let cluster = self.cluster.lock().await;
        cluster.pause(node).map_err(|e| failed("pause", node, e))?;
        let started = tokio::time::Instant::now();
        while !cluster
            .is_stopped(node)
            .map_err(|e| failed("pause", node, e))?
        {
            if started.elapsed() >= PAUSE_CONFIRMATION {
                return Err(failed("pause", node, "the process did not stop"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        drop(cluster);
        let left = PAUSE_CONFIRMATION.saturating_sub(started.elapsed());
        if self
            .answers(node, left.max(Duration::from_millis(50)))
            .await
        {
            return Err(failed("pause", node, "it still answers while stopped"));
        }
        Ok(())
    }

    async fn resume(&self, node: &str) -> Result<(), InjectError> {
        let cluster = self.cluster.lock().await;
        cluster.resume(node).map_err(|e| failed("resume", node, e))
    }

    async fn cut(&self, from: &str, to: &str) -> Result<(), InjectError> {
        let cluster = self.cluster.lock().await;
        cluster
            .cut(from, to)
            .map_err(|e| failed("cut the link", &format!("{from}->{to}"), e))
    }

    async fn heal(&self) {
        self.cluster.lock().await.heal_all();
    }

    async fn leave(&self, node: &str) -> Result<(), InjectError> {
        let request = RemoveMemberRequest {
            id: node.to_string(),
            cluster_id: String::new(),
        };
        let askers = self.seeds(node).into_iter().map(|(_, url)| url);
        let mut refusals = Vec::new();
        let mut decided = false;
        for url in askers {
            let channel =
                lazy_channel(&url, LEAVE_CALL_DEADLINE).map_err(|e| failed("remove", node, e))?;
            match MembershipClient::new(channel)
                .remove_member(request.clone())
                .await
            {
                Ok(_) => {
                    decided = true;
                    break;
                }
                Err(status) => refusals.push(status.message().to_string()),
            }
        }
        if !decided {
            return Err(failed(
                "remove",
                node,
                format!("no member decided it: {refusals:?}"),
            ));
        }
        let started = tokio::time::Instant::now();
        loop {
            let exited = self.cluster.lock().await.try_wait(node);
            match exited.map_err(|e| failed("remove", node, e))? {
                Some(status) if status.success() => break,
                Some(status) => {
                    return Err(failed("remove", node, format!("it exited with {status}")))
                }
                None if started.elapsed() >= LEAVE_LIMIT => {
                    return Err(failed(
                        "remove",
                        node,
                        format!("it did not hand its records off and stop within {LEAVE_LIMIT:?}"),
                    ))
                }
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        if let Ok(mut removed) = self.removed.lock() {
            removed.insert(node.to_string());
        }
        Ok(())
    }

    /// Starts `node`, a spare node of the local cluster (its port and proxy
    /// links chosen at start), with `--join` and the URLs of the members not
    /// killed as seeds, and waits until the cluster lists it active; from then on
    /// it is surveyed, and faulted, like the others.
    async fn join(&self, node: &str) -> Result<(), InjectError> {
        let started = tokio::time::Instant::now();
        let seeds: Vec<String> = self.seeds(node).into_iter().map(|(_, url)| url).collect();
        let membership = {
            let mut cluster = self.cluster.lock().await;
            cluster
                .join(node, &seeds, JOIN_START_LIMIT)
                .await
                .map_err(|e| failed("join", node, e))?;
            cluster.members().map_err(|e| failed("join", node, e))?
        };
        // The cluster admitted it: a client of the cluster now reaches it too.
        let probe = StorageClient::new(membership.clone(), self.probe_config.clone())
            .map_err(|e| failed("join", node, e))?;
        if let (Ok(mut current), Ok(mut client)) = (self.membership.lock(), self.probe.lock()) {
            *current = membership;
            *client = Arc::new(probe);
        }
        let active = self.wait_until_active(node, started, JOIN_LIMIT).await;
        // Running and admitted, whether or not it got to be active: a member.
        if let Ok(mut ids) = self.ids.lock() {
            ids.push(node.to_string());
        }
        active.map_err(|reason| failed("join", node, reason))
    }

    async fn restart(&self, node: &str, keep_data: bool) -> Result<(), InjectError> {
        let mut cluster = self.cluster.lock().await;
        if keep_data && !self.keeps_data {
            let reason = "on its data: the cluster keeps no data directories";
            return Err(failed("restart", node, reason));
        }
        if !keep_data && self.keeps_data {
            cluster
                .delete_data(node)
                .map_err(|e| failed("empty the data of", node, e))?;
        }
        cluster
            .restart(node, RESTART_LIMIT)
            .await
            .map_err(|e| failed("restart", node, e))?;
        if let Ok(mut killed) = self.killed.lock() {
            killed.remove(node);
        }
        Ok(())
    }

    async fn lost(&self) -> BTreeSet<String> {
        let survey = self.survey().await;
        survey.lost.union(&survey.silent).cloned().collect()
    }

    /// Not a [`Processes::survey`]: that asks `node` too, and a paused target
    /// would hold the call for a whole deadline past the fault's planned end.
    async fn declared_by(&self, node: &str) -> Vec<String> {
        let mut declaring = Vec::new();
        let probe = self.probe();
        for other in self.members().iter().filter(|id| *id != node) {
            let status = tokio::time::timeout(SURVEY_DEADLINE, probe.status(other)).await;
            if let Ok(Ok(status)) = status {
                if status.failed.iter().any(|f| f == node) {
                    declaring.push(other.clone());
                }
            }
        }
        declaring
    }

    fn note(&self, what: fmt::Arguments<'_>) {
        tracing::info!("{what}");
    }
}
