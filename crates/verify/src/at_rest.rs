//! Replicas at rest (G2 and H2 of docs/protocols.md): once faults are healed and
//! the cluster has had time to repair, every serving replica of a key holds the
//! same versions of it, and no other node holds any.
//!
//! Apart from [`crate::lost_writes`] on purpose: a write held by one replica but not
//! another is not lost, it is unrepaired, and this is the check that says so.

use std::collections::{BTreeMap, BTreeSet};

use dida_core::Version;
use serde::{Deserialize, Serialize};

use crate::lost_writes::Snapshot;

/// The versions of one key each serving replica of it holds, by node id.
pub type Holdings = BTreeMap<String, Vec<Version>>;

/// What differs between the replicas of `key`, if anything: `None` when every
/// replica in `held` holds the same versions (or there is at most one replica).
pub fn divergence(key: &str, held: &Holdings) -> Option<String> {
    let mut replicas = held.values();
    let first = replicas.next()?;
    if replicas.all(|versions| versions == first) {
        return None;
    }
    let shown: BTreeMap<&str, Vec<String>> = held
        .iter()
        .map(|(id, versions)| {
            (
                id.as_str(),
                versions.iter().map(Version::to_string).collect(),
            )
        })
        .collect();
    Some(format!(
        "replicas of {key:?} differ after healing: {shown:?}"
    ))
}

/// The nodes other than its `replicas` that hold `key` (`held_by`, node ids), if
/// any: a copy left behind by an interim replica or a cluster forming, which
/// handoff should have dropped. `None` when every holder is a replica.
pub fn extra_holders(key: &str, held_by: &[String], replicas: &[String]) -> Option<String> {
    let extra: Vec<&str> = held_by
        .iter()
        .filter(|id| !replicas.contains(id))
        .map(String::as_str)
        .collect();
    (!extra.is_empty())
        .then(|| format!("{key:?} is held by {extra:?} at rest besides its replicas {replicas:?}"))
}

/// Checker (5) of a real-process run: how many keys some node other than their
/// replicas still holds once the cluster has converged (H2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementReport {
    /// Keys any node read holds.
    pub keys: u64,
    /// Of those, keys held by a node that is not one of their replicas.
    pub misplaced: u64,
    /// Up to ten of them, said as [`extra_holders`] says them.
    pub examples: Vec<String>,
}

/// Checks every key of `snapshot` against its `replicas` (node ids, in the
/// cluster's current ring).
pub fn placement(snapshot: &Snapshot, replicas: impl Fn(&str) -> Vec<String>) -> PlacementReport {
    let mut holders: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (node, contents) in &snapshot.nodes {
        for key in contents.keys() {
            holders.entry(key.as_str()).or_default().push(node.clone());
        }
    }
    let mut report = PlacementReport {
        keys: holders.len() as u64,
        ..PlacementReport::default()
    };
    for (key, held_by) in holders {
        let unique: BTreeSet<String> = held_by.into_iter().collect();
        let held_by: Vec<String> = unique.into_iter().collect();
        if let Some(detail) = extra_holders(key, &held_by, &replicas(key)) {
            report.misplaced += 1;
            if report.examples.len() < 10 {
                report.examples.push(detail);
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holdings(replicas: &[(&str, &[u64])]) -> Holdings {
        replicas
            .iter()
            .map(|(id, numbers)| {
                let versions = numbers.iter().map(|&n| Version::new(n, 1)).collect();
                (id.to_string(), versions)
            })
            .collect()
    }

    #[test]
    fn equal_replicas_are_at_rest() {
        assert_eq!(
            divergence("k", &holdings(&[("s1", &[1, 2]), ("s2", &[1, 2])])),
            None
        );
        assert_eq!(divergence("k", &holdings(&[("s1", &[1])])), None);
        assert_eq!(divergence("k", &Holdings::new()), None);
    }

    #[test]
    fn a_holder_that_is_not_a_replica_is_named() {
        let ids = |names: &[&str]| -> Vec<String> { names.iter().map(|n| n.to_string()).collect() };
        let replicas = ids(&["s1", "s2", "s3"]);
        assert_eq!(extra_holders("k", &ids(&["s1", "s3"]), &replicas), None);
        let detail = extra_holders("k", &ids(&["s1", "s2", "s3", "s5"]), &replicas)
            .expect("s5 is not a replica");
        assert!(detail.contains("[\"s5\"]"), "{detail}");
    }

    #[test]
    fn placement_counts_keys_held_beyond_their_replicas() {
        let mut snapshot = Snapshot::default();
        for (node, keys) in [("s1", &["a", "b"][..]), ("s2", &["a"]), ("s3", &["b"])] {
            let contents = keys
                .iter()
                .map(|k| {
                    (
                        k.to_string(),
                        BTreeMap::from([(Version::new(1, 1), "v".to_string())]),
                    )
                })
                .collect();
            snapshot.nodes.insert(node.to_string(), contents);
        }
        // "a" belongs on s1 and s2; "b" on s1 only, so s3's copy is extra.
        let report = placement(&snapshot, |key| match key {
            "a" => vec!["s1".to_string(), "s2".to_string()],
            _ => vec!["s1".to_string()],
        });
        assert_eq!((report.keys, report.misplaced), (2, 1));
        assert!(
            report.examples[0].contains("\"s3\""),
            "{:?}",
            report.examples
        );
    }

    #[test]
    fn a_replica_missing_a_version_is_named() {
        let detail = divergence("k", &holdings(&[("s1", &[1, 2]), ("s2", &[1])]))
            .expect("the replicas differ");
        assert!(detail.contains("\"s2\": [\"1.1\"]"), "{detail}");
    }
}
