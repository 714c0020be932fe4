//! The marks of the crash timeline ([`dida_verify::timeline`]) that only the cluster can
//! tell: when a killed node was detected, and when replication was restored.
//!
//! A background task learns of each lost node from the nemesis — a kill as soon as it
//! is confirmed, a node declared failed after a pause or partition when the nemesis's
//! survey finds it — and follows that crash, by polling, until both events are seen or
//! their deadlines pass (a mark not seen in time is left out, with a warning). For a
//! node lost to a pause or partition the `detected` mark is therefore when a survey
//! saw the declaration (before the next fault, or once the cluster has settled after
//! the last one): an upper bound, not the moment of the declaration.
//!
//! - **detected**: the first poll (every 50 ms) in which some live storage node's
//!   status lists the victim among the nodes it knows to have failed (SPEC §2.5);
//! - **re-replicated**: the first poll (every 100 ms) in which every record that a
//!   live node held when the crash was detected is held by each of its key's
//!   replicas on the ring of the live nodes (the nodes never killed): every key the
//!   run touched is on its R live replicas again, with everything that survived the
//!   crash. The storage nodes report no such thing themselves, so the watcher lists
//!   the nodes: once at detection (the baseline), then, at each poll, each live node
//!   that still lacks part of its share of the baseline. Writes made after the
//!   detection are not waited for; they are replicated as usual.
//!
//! Times are those of the poll that saw the event: later than the event itself by at
//! most one poll period and the calls of one poll.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dida_core::{Ring, Version};
use dida_storage_client::StorageClient;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use dida_verify::history::RunClock;
use dida_verify::lost_writes::NodeContents;

use crate::readback;
use dida_verify::timeline::{Mark, MarkEvent};

/// How the watcher polls.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Period of the polls for detection.
    pub detection_poll: Duration,
    /// Longest wait, from the kill, for the detection.
    pub detection_limit: Duration,
    /// Period of the polls for re-replication.
    pub replication_poll: Duration,
    /// Longest wait, from the detection, for re-replication.
    pub replication_limit: Duration,
    /// `--vnodes` of the cluster, to place keys as the nodes do.
    pub vnodes: u32,
    /// Replication factor of the cluster.
    pub replication_factor: usize,
}

impl WatchConfig {
    /// The longest the watcher can take after the last kill.
    pub fn limit(&self) -> Duration {
        self.detection_limit + self.replication_limit + Duration::from_secs(5)
    }
}

/// Every version some live node held at one moment, by key.
pub type Baseline = BTreeMap<String, BTreeSet<Version>>;

/// What following a crash takes, shared by the crashes being followed.
#[derive(Clone)]
struct Watcher {
    client: Arc<StorageClient>,
    /// The nodes killed so far.
    killed: Arc<Mutex<BTreeSet<String>>>,
    clock: RunClock,
    config: WatchConfig,
}

/// Follows every lost node the nemesis reports on `kills` until the channel closes and
/// every crash has been followed; returns the `detected` and `re-replicated` marks.
/// `client` is a client of the cluster with a short call deadline.
pub async fn watch_crashes(
    client: StorageClient,
    mut kills: UnboundedReceiver<String>,
    clock: RunClock,
    config: WatchConfig,
) -> Vec<Mark> {
    let watcher = Watcher {
        client: Arc::new(client),
        killed: Arc::default(),
        clock,
        config,
    };
    let mut followed: JoinSet<Vec<Mark>> = JoinSet::new();
    while let Some(node) = kills.recv().await {
        if let Ok(mut killed) = watcher.killed.lock() {
            killed.insert(node.clone());
        }
        followed.spawn(watcher.clone().follow(node));
    }
    let mut marks = Vec::new();
    while let Some(joined) = followed.join_next().await {
        match joined {
            Ok(found) => marks.extend(found),
            Err(error) => tracing::warn!("faults: a crash watcher failed: {error}"),
        }
    }
    marks.sort_by_key(|m| m.t_ms);
    marks
}

impl Watcher {
    /// The marks of one crash.
    async fn follow(self, victim: String) -> Vec<Mark> {
        let config = &self.config;
        let Some((at_ns, by)) = self.wait_for_detection(&victim).await else {
            tracing::warn!(node = %victim, limit = ?config.detection_limit,
                "faults: no live node declared the crash in time; no detected mark");
            return Vec::new();
        };
        let mut detected = Mark::at_ns(at_ns, MarkEvent::Detected, &victim);
        detected.by = Some(by);
        let mut marks = vec![detected];
        match self.wait_for_replication().await {
            Some(at_ns) => marks.push(Mark::at_ns(at_ns, MarkEvent::ReReplicated, &victim)),
            None => tracing::warn!(node = %victim, limit = ?config.replication_limit,
                "faults: replication not restored in time; no re-replicated mark"),
        }
        marks
    }

    /// The live nodes, in membership order.
    fn live_nodes(&self) -> Vec<String> {
        let killed = self.killed.lock().map(|k| k.clone()).unwrap_or_default();
        self.client
            .membership()
            .ids()
            .filter(|id| !killed.contains(*id))
            .map(str::to_string)
            .collect()
    }

    /// Polls the live nodes' status until one lists `victim` as failed; returns when
    /// it answered (on the run's clock) and who it was.
    async fn wait_for_detection(&self, victim: &str) -> Option<(u64, String)> {
        let deadline = Instant::now() + self.config.detection_limit;
        let mut ticker = ticker(self.config.detection_poll);
        while Instant::now() < deadline {
            ticker.tick().await;
            for node in self.live_nodes() {
                if let Ok(status) = self.client.status(&node).await {
                    if status.failed.iter().any(|f| f == victim) {
                        return Some((self.clock.now_ns(), node));
                    }
                }
            }
        }
        None
    }

    /// Takes the baseline, then polls until every live node holds its share of it;
    /// returns when that was seen (on the run's clock).
    async fn wait_for_replication(&self) -> Option<u64> {
        let (client, config) = (&*self.client, &self.config);
        let deadline = Instant::now() + config.replication_limit;
        let snapshot = readback::snapshot(client, &self.live_nodes()).await;
        let baseline = baseline(snapshot.nodes.values());
        let ids: Vec<String> = client.membership().ids().map(str::to_string).collect();
        let mut pending: Vec<String> = Vec::new();
        let mut view: Vec<String> = Vec::new();
        let mut ticker = ticker(config.replication_poll);
        while Instant::now() < deadline {
            ticker.tick().await;
            let live = self.live_nodes();
            if live != view {
                // First poll, or another crash: every live node's share is new.
                pending = live.clone();
                view = live;
            }
            let ring = Ring::without(&ids[..], config.vnodes, config.replication_factor, |n| {
                !view.contains(&ids[n])
            });
            // A node that cannot be listed (or placed) now stays pending.
            let listed = readback::snapshot(client, &pending).await.nodes;
            pending.retain(|node| {
                let index = client.membership().index_of(node);
                match (listed.get(node), index) {
                    (Some(held), Ok(index)) => missing_share(&baseline, held, &ring, index) > 0,
                    _ => true,
                }
            });
            if pending.is_empty() {
                return Some(self.clock.now_ns());
            }
        }
        None
    }
}

fn ticker(period: Duration) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

/// Every version held by any of `nodes`, by key.
pub fn baseline<'a>(nodes: impl IntoIterator<Item = &'a NodeContents>) -> Baseline {
    let mut result = Baseline::new();
    for contents in nodes {
        for (key, versions) in contents {
            result
                .entry(key.clone())
                .or_default()
                .extend(versions.keys().copied());
        }
    }
    result
}

/// How many versions of `baseline` node `node` (an index of `ring`) should hold,
/// being a replica of their key on `ring`, but does not.
pub fn missing_share(baseline: &Baseline, held: &NodeContents, ring: &Ring, node: usize) -> usize {
    baseline
        .iter()
        .filter(|(key, _)| ring.replicas(key).contains(&node))
        .map(|(key, versions)| match held.get(key) {
            Some(held) => versions.iter().filter(|v| !held.contains_key(v)).count(),
            None => versions.len(),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(entries: &[(&str, u64)]) -> NodeContents {
        let mut result = NodeContents::new();
        for (key, counter) in entries {
            result
                .entry(key.to_string())
                .or_default()
                .insert(Version::new(*counter, 1), format!("v{counter}"));
        }
        result
    }

    #[test]
    fn the_baseline_is_every_version_any_live_node_held() {
        let a = contents(&[("k0", 1), ("k0", 2), ("k1", 1)]);
        let b = contents(&[("k0", 3)]);
        let baseline = baseline([&a, &b]);
        assert_eq!(baseline["k0"].len(), 3);
        assert_eq!(baseline["k1"].len(), 1);
    }

    #[test]
    fn a_replica_lacking_a_version_of_its_keys_has_not_caught_up() {
        let ids = ["s1", "s2", "s3", "s4"];
        // s4 crashed: the ring of the others, on which every node replicates everything.
        let ring = Ring::without(&ids[..], 16, 3, |n| n == 3);
        let keys: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
        let all: Vec<(&str, u64)> = keys
            .iter()
            .flat_map(|k| [(k.as_str(), 1), (k.as_str(), 2)])
            .collect();
        let full = contents(&all);
        let baseline = baseline([&full]);
        for node in 0..3 {
            assert_eq!(missing_share(&baseline, &full, &ring, node), 0);
        }
        let partial = contents(&all[..all.len() - 1]);
        assert_eq!(missing_share(&baseline, &partial, &ring, 0), 1);
        assert_eq!(missing_share(&baseline, &NodeContents::new(), &ring, 1), 20);
        // Versions written after the baseline are not waited for.
        let mut more = full.clone();
        let k0 = more.get_mut("k0").expect("k0 is in the baseline");
        k0.insert(Version::new(3, 1), "v3".into());
        assert_eq!(missing_share(&baseline, &more, &ring, 2), 0);
    }

    #[test]
    fn a_node_owes_only_the_keys_it_replicates() {
        let ids = ["s1", "s2", "s3", "s4", "s5"];
        let ring = Ring::new(&ids[..], 64, 2);
        let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
        let all: Vec<(&str, u64)> = keys.iter().map(|k| (k.as_str(), 1)).collect();
        let baseline = baseline([&contents(&all)]);
        let nothing = NodeContents::new();
        let mut total = 0;
        for node in 0..ids.len() {
            let owed = keys.iter().filter(|k| ring.replicas(k).contains(&node));
            let missing = missing_share(&baseline, &nothing, &ring, node);
            assert_eq!(missing, owed.count());
            total += missing;
        }
        assert_eq!(total, 40 * 2);
    }
}
