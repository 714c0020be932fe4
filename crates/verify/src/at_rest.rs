//! Replicas at rest (G2 of docs/protocols.md): once faults are healed and the
//! cluster has had time to repair, every serving replica of a key holds the same
//! versions of it.
//!
//! Apart from [`crate::lost_writes`] on purpose: a write held by one replica but not
//! another is not lost, it is unrepaired, and this is the check that says so.

use std::collections::BTreeMap;

use dida_core::Version;

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
    fn a_replica_missing_a_version_is_named() {
        let detail = divergence("k", &holdings(&[("s1", &[1, 2]), ("s2", &[1])]))
            .expect("the replicas differ");
        assert!(detail.contains("\"s2\": [\"1.1\"]"), "{detail}");
    }
}
