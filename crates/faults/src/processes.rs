//! The real-process back-end of [`dida_verify::plan::Injector`]: storage nodes run
//! as processes of this machine ([`LocalCluster`]), faults are signals (SIGKILL,
//! SIGSTOP, SIGCONT), proxy links cut and healed, and restarts with the original
//! command line. Each fault is confirmed: a killed node must stop answering, a
//! paused one must be stopped and answer nothing, a restarted one must answer its
//! status again. Which nodes are lost, the cluster says ([`crate::survey`]).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Mutex as SyncMutex;
use std::time::Duration;

use dida_local_cluster::LocalCluster;
use dida_proto::storage::membership_client::MembershipClient;
use dida_proto::storage::RemoveMemberRequest;
use dida_proto::transport::lazy_channel;
use dida_storage_client::StorageClient;
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
    /// The storage node ids, in membership order.
    ids: Vec<String>,
    /// Whether the nodes keep their records in data directories: then a restart
    /// starts a node on its data, else empty (the suite's default).
    keeps_data: bool,
    /// A client of the cluster with a short deadline, to confirm faults and survey.
    probe: StorageClient,
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
    /// `probe` confirms faults and surveys, and each node lost is sent on `losses`.
    pub fn new(
        cluster: LocalCluster,
        keeps_data: bool,
        probe: StorageClient,
        losses: Option<UnboundedSender<String>>,
    ) -> Self {
        Self {
            ids: cluster.ids().collect(),
            cluster: Mutex::new(cluster),
            keeps_data,
            probe,
            killed: SyncMutex::default(),
            removed: SyncMutex::default(),
            losses: SyncMutex::new(losses),
            reported: SyncMutex::default(),
        }
    }

    fn killed(&self) -> BTreeSet<String> {
        self.killed.lock().map(|k| k.clone()).unwrap_or_default()
    }

    /// The nodes removed from the cluster by a leave.
    pub fn removed(&self) -> BTreeSet<String> {
        self.removed.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The members: every node but those removed.
    fn members(&self) -> Vec<String> {
        let removed = self.removed();
        self.ids
            .iter()
            .filter(|id| !removed.contains(*id))
            .cloned()
            .collect()
    }

    /// Asks every member not killed for its status; tells the watcher of nodes lost
    /// since the last survey.
    async fn survey(&self) -> Survey {
        let members = self.members();
        let survey = survey::survey(&self.probe, &members, &self.killed(), SURVEY_DEADLINE).await;
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
            tokio::time::timeout(within, self.probe.ping(node)).await,
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
        self.ids.clone()
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
        let killed = self.killed();
        let askers: Vec<String> = {
            let cluster = self.cluster.lock().await;
            self.members()
                .into_iter()
                .filter(|id| id != node && !killed.contains(id))
                .filter_map(|id| Some(cluster.membership().get(&id).ok()?.url.to_string()))
                .collect()
        };
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

    /// Not yet: the local cluster starts no node after the first ones.
    async fn join(&self, node: &str) -> Result<(), InjectError> {
        let reason = "the real-process suite does not start joining nodes yet";
        Err(failed("join", node, reason))
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
        for other in self.members().iter().filter(|id| *id != node) {
            let status = tokio::time::timeout(SURVEY_DEADLINE, self.probe.status(other)).await;
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
