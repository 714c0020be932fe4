//! Checkers (1) and (4): were acknowledged writes lost?
//!
//! **The rule, the same for both back-ends.** Once the workload has stopped and the
//! cluster has converged, the checker lists every record of every *serving* node — a
//! node whose process runs and that is not fenced (the simulator reads its store,
//! the real-process suite lists it through the storage API). An acknowledged write —
//! a write or a successful CAS that returned a version, or the write of a completed
//! chain — is
//!
//! - **held** if some serving node holds exactly its version with its value;
//! - **discarded by `max_versions`** if it is held nowhere but some serving node
//!   holds at least `max_versions` newer versions of the key: that node may have
//!   garbage-collected it legitimately (SPEC §2.1). A node that once held the version
//!   discards it only when it holds `max_versions` newer ones, and from then on always
//!   holds at least that many, so this test is exact;
//! - **lost** otherwise. With `--write-acks` ≥ 2 that must never happen while fewer
//!   than that many replicas of a key fail; with `--write-acks 1` (the course's mode)
//!   it happens when a primary dies before gossiping a write it acknowledged.
//!
//! *Why "some serving node" and not "every serving replica":* durability is the
//! promise that a write survives somewhere the cluster will serve it from; that every
//! replica of a key ends up with the same versions is a separate promise (G2), judged
//! by [`crate::at_rest`]. Keeping the two apart means one finding names one broken
//! promise, instead of a divergence being reported twice, as a loss and as G2.
//!
//! Values are unique per write in the whole run, so a version held with another value
//! is a different write under a reused version number: that is reported too, and the
//! write counts as lost.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound::{Excluded, Unbounded};

use dida_core::{Record, Version};
use serde::{Deserialize, Serialize};

use crate::history::Operation;

/// What a node holds: key → version → value.
pub type NodeContents = HashMap<String, BTreeMap<Version, String>>;

/// What a node's listing holds, by key and version.
pub fn node_contents(records: impl IntoIterator<Item = Record>) -> NodeContents {
    let mut contents = NodeContents::new();
    for record in records {
        contents
            .entry(record.key)
            .or_default()
            .insert(record.version, record.value);
    }
    contents
}

/// Every live node's contents at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Contents of each node that answered, by node id.
    pub nodes: BTreeMap<String, NodeContents>,
    /// Nodes that did not answer, with the error.
    pub unreadable: BTreeMap<String, String>,
}

/// An acknowledged write, as the checker needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckedWrite {
    /// The operation in the history.
    pub op: u64,
    /// Key written.
    pub key: String,
    /// Value written (unique in the run).
    pub value: String,
    /// Version the service acknowledged.
    pub version: Version,
    /// When it was acknowledged, in nanoseconds since the start of the run.
    pub acked_ns: u64,
}

/// The result of checkers (1) and (4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostWritesReport {
    /// Nodes read (those never killed).
    pub live_nodes: Vec<String>,
    /// Live nodes that could not be listed (the count below is then an upper bound).
    pub unreadable_nodes: BTreeMap<String, String>,
    /// True when the cluster stopped changing before the check.
    pub converged: bool,
    /// Time spent waiting for convergence, in milliseconds.
    pub convergence_ms: u64,
    /// Acknowledged writes checked.
    pub acknowledged: u64,
    /// Held by at least one live node.
    pub held: u64,
    /// Held nowhere, but legitimately discardable by `max_versions`.
    pub discarded_by_max_versions: u64,
    /// Held nowhere and not excusable.
    pub lost: u64,
    /// Among the lost: their version is held with a different value.
    pub conflicting: u64,
    /// Up to twenty lost writes.
    pub examples: Vec<AckedWrite>,
}

/// What became of one acknowledged write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Held,
    DiscardedByMaxVersions,
    Lost { conflicting: bool },
}

fn fate(write: &AckedWrite, snapshot: &Snapshot, max_versions: usize) -> Fate {
    let mut conflicting = false;
    let mut excusable = false;
    for contents in snapshot.nodes.values() {
        let Some(versions) = contents.get(&write.key) else {
            continue;
        };
        match versions.get(&write.version) {
            Some(value) if *value == write.value => return Fate::Held,
            Some(_) => conflicting = true,
            None => {}
        }
        let newer = versions.range((Excluded(write.version), Unbounded)).count();
        if max_versions > 0 && newer >= max_versions {
            excusable = true;
        }
    }
    if excusable && !conflicting {
        Fate::DiscardedByMaxVersions
    } else {
        Fate::Lost { conflicting }
    }
}

/// Classifies every write of `acked` against `snapshot`.
pub fn count_lost(
    acked: &[AckedWrite],
    snapshot: &Snapshot,
    max_versions: usize,
) -> LostWritesReport {
    let mut report = LostWritesReport {
        live_nodes: snapshot
            .nodes
            .keys()
            .chain(snapshot.unreadable.keys())
            .cloned()
            .collect(),
        unreadable_nodes: snapshot.unreadable.clone(),
        acknowledged: acked.len() as u64,
        ..LostWritesReport::default()
    };
    for write in acked {
        match fate(write, snapshot, max_versions) {
            Fate::Held => report.held += 1,
            Fate::DiscardedByMaxVersions => report.discarded_by_max_versions += 1,
            Fate::Lost { conflicting } => {
                report.lost += 1;
                if conflicting {
                    report.conflicting += 1;
                }
                if report.examples.len() < 20 {
                    report.examples.push(write.clone());
                }
            }
        }
    }
    report
}

/// Every lost write of `acked` (the report keeps only examples).
pub fn all_lost(acked: &[AckedWrite], snapshot: &Snapshot, max_versions: usize) -> Vec<u64> {
    acked
        .iter()
        .filter(|w| matches!(fate(w, snapshot, max_versions), Fate::Lost { .. }))
        .map(|w| w.op)
        .collect()
}

/// Every acknowledged write of the history: storage writes and successful CAS, and
/// the writes of completed write-then-read chains.
pub fn acknowledged_writes(history: &[Operation]) -> Vec<AckedWrite> {
    history
        .iter()
        .filter_map(|op| {
            let (value, version) = op
                .acknowledged_write()
                .or_else(|| crate::chains::acknowledged_chain_write(op))?;
            Some(AckedWrite {
                op: op.id,
                key: op.key.clone(),
                value: value.to_string(),
                version,
                acked_ns: op.completed_ns,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(op: u64, key: &str, value: &str, number: u64) -> AckedWrite {
        AckedWrite {
            op,
            key: key.into(),
            value: value.into(),
            version: Version::new(number, 1),
            acked_ns: op,
        }
    }

    /// A node holding `records`, each `(key, version counter, value)`.
    fn node(records: &[(&str, u64, &str)]) -> NodeContents {
        node_contents(records.iter().map(|&(key, counter, value)| Record {
            key: key.into(),
            version: Version::new(counter, 1),
            value: value.into(),
        }))
    }

    /// A snapshot in which only `s2` answered, holding `records`.
    fn held_by_s2(records: &[(&str, u64, &str)]) -> Snapshot {
        let mut snapshot = Snapshot::default();
        snapshot.nodes.insert("s2".into(), node(records));
        snapshot
    }

    #[test]
    fn a_write_held_by_any_live_node_is_not_lost() {
        let mut snapshot = held_by_s2(&[("k", 1, "a")]);
        snapshot.nodes.insert("s3".into(), node(&[]));
        let report = count_lost(&[write(0, "k", "a", 1)], &snapshot, 1000);
        assert_eq!((report.held, report.lost), (1, 0));
    }

    #[test]
    fn a_write_held_nowhere_is_lost() {
        let snapshot = held_by_s2(&[("k", 1, "a"), ("k", 3, "c")]);
        let acked = [write(0, "k", "a", 1), write(1, "k", "b", 2)];
        let report = count_lost(&acked, &snapshot, 1000);
        assert_eq!((report.held, report.lost), (1, 1));
        assert_eq!(report.examples[0].value, "b");
        assert_eq!(all_lost(&acked, &snapshot, 1000), [1]);
    }

    #[test]
    fn a_write_with_max_versions_newer_versions_may_have_been_discarded() {
        let snapshot = held_by_s2(&[("k", 2, "b"), ("k", 3, "c")]);
        // With max_versions 2, version 1 was legitimately discarded.
        let report = count_lost(&[write(0, "k", "a", 1)], &snapshot, 2);
        assert_eq!((report.discarded_by_max_versions, report.lost), (1, 0));
        // With max_versions 3 it should still be there.
        let report = count_lost(&[write(0, "k", "a", 1)], &snapshot, 3);
        assert_eq!((report.discarded_by_max_versions, report.lost), (0, 1));
    }

    #[test]
    fn a_version_held_with_another_value_is_a_conflict() {
        let snapshot = held_by_s2(&[("k", 1, "other")]);
        let report = count_lost(&[write(0, "k", "a", 1)], &snapshot, 1000);
        assert_eq!((report.lost, report.conflicting), (1, 1));
    }
}
