//! Which storage nodes the cluster has lost, as the cluster itself says.
//!
//! A killed node is lost. A paused or partitioned node is lost when the other nodes
//! declare it failed: it then fences itself (`fenced` in its status) as soon as it
//! hears of it, and even before that the survivors have taken its keys over. It
//! then rejoins with its records, and a restarted node also rejoins: while it
//! is fenced or still catching up (`joining` in its status) it holds less than its
//! share, so it counts like a crashed node — it spends the fault budget (at most
//! R − 1 nodes lost) — until it is alive again.
//!
//! The survey asks every node not killed for its status. A node is **lost** if it is
//! fenced, or if more than half of the other nodes that answered and are not fenced
//! list it as failed. The majority matters: a node cut off from all its peers
//! declares *them* failed in turn (the detector has no quorum), and its word must not
//! make the majority look lost.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use dida_proto::storage::Liveness;
use dida_storage_client::StorageClient;

/// What the nodes said about each other at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    /// For each node, the nodes (that answered, not fenced) listing it as failed.
    pub failed_by: BTreeMap<String, Vec<String>>,
    /// Nodes whose own status says they are fenced or still joining.
    pub fenced: BTreeSet<String>,
    /// Nodes not killed that did not answer the status call.
    pub silent: BTreeSet<String>,
    /// The nodes lost: killed, fenced, or declared failed by a majority (see the
    /// module documentation).
    pub lost: BTreeSet<String>,
}

impl Survey {
    /// The survivors listing `node` as failed.
    pub fn declared_by(&self, node: &str) -> Vec<String> {
        self.failed_by.get(node).cloned().unwrap_or_default()
    }
}

/// Asks every node of `nodes` not in `killed` for its status (each call bounded by
/// `deadline`) and decides which nodes are lost.
pub async fn survey(
    client: &StorageClient,
    nodes: &[String],
    killed: &BTreeSet<String>,
    deadline: Duration,
) -> Survey {
    let mut statuses = BTreeMap::new();
    let mut silent = BTreeSet::new();
    for node in nodes.iter().filter(|n| !killed.contains(*n)) {
        match tokio::time::timeout(deadline, client.status(node)).await {
            Ok(Ok(status)) => {
                let out_of_service = status.fenced || status.liveness == Liveness::Joining as i32;
                statuses.insert(node.clone(), (out_of_service, status.failed));
            }
            _ => {
                silent.insert(node.clone());
            }
        }
    }
    decide(nodes, killed, &statuses, silent)
}

/// The rule of [`survey`], on the statuses gathered: node → (fenced, failed list).
fn decide(
    nodes: &[String],
    killed: &BTreeSet<String>,
    statuses: &BTreeMap<String, (bool, Vec<String>)>,
    silent: BTreeSet<String>,
) -> Survey {
    let fenced: BTreeSet<String> = statuses
        .iter()
        .filter(|(_, (fenced, _))| *fenced)
        .map(|(node, _)| node.clone())
        .collect();
    let witnesses: Vec<(&String, &Vec<String>)> = statuses
        .iter()
        .filter(|(_, (fenced, _))| !*fenced)
        .map(|(node, (_, failed))| (node, failed))
        .collect();
    let mut failed_by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (witness, failed) in &witnesses {
        for node in failed.iter() {
            failed_by
                .entry(node.clone())
                .or_default()
                .push((*witness).clone());
        }
    }
    let mut lost: BTreeSet<String> = killed.union(&fenced).cloned().collect();
    for node in nodes {
        let others = witnesses.iter().filter(|(w, _)| *w != node).count();
        let declaring = failed_by.get(node).map_or(0, Vec::len);
        if others > 0 && declaring * 2 > others {
            lost.insert(node.clone());
        }
    }
    Survey {
        failed_by,
        fenced,
        silent,
        lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn nodes() -> Vec<String> {
        ids(&["s1", "s2", "s3", "s4", "s5"])
    }

    #[test]
    fn a_node_declared_by_the_majority_is_lost_and_its_own_claims_are_not_enough() {
        // s1 was isolated: the others declared it, and it declared them all.
        let mut statuses = BTreeMap::new();
        statuses.insert("s1".to_string(), (false, ids(&["s2", "s3", "s4", "s5"])));
        for node in ["s2", "s3", "s4", "s5"] {
            statuses.insert(node.to_string(), (false, ids(&["s1"])));
        }
        let survey = decide(&nodes(), &BTreeSet::new(), &statuses, BTreeSet::new());
        assert_eq!(survey.lost, BTreeSet::from(["s1".to_string()]));
        assert_eq!(survey.declared_by("s1").len(), 4);
        assert_eq!(survey.declared_by("s2"), ids(&["s1"]));
    }

    #[test]
    fn killed_and_fenced_nodes_are_lost_and_fenced_nodes_are_no_witnesses() {
        let killed = BTreeSet::from(["s5".to_string()]);
        let mut statuses = BTreeMap::new();
        // s4 is fenced; whatever it lists does not count.
        statuses.insert("s4".to_string(), (true, ids(&["s1", "s2", "s3", "s5"])));
        for node in ["s1", "s2", "s3"] {
            statuses.insert(node.to_string(), (false, ids(&["s4", "s5"])));
        }
        let survey = decide(&nodes(), &killed, &statuses, BTreeSet::new());
        assert_eq!(survey.lost, BTreeSet::from(["s4".into(), "s5".into()]));
        assert!(survey.fenced.contains("s4"));
    }

    #[test]
    fn a_declaration_not_yet_spread_to_a_majority_does_not_count() {
        let mut statuses = BTreeMap::new();
        statuses.insert("s2".to_string(), (false, ids(&["s1"])));
        for node in ["s1", "s3", "s4", "s5"] {
            statuses.insert(node.to_string(), (false, Vec::new()));
        }
        let survey = decide(&nodes(), &BTreeSet::new(), &statuses, BTreeSet::new());
        assert!(survey.lost.is_empty());
    }
}
