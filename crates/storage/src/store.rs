//! The in-memory multi-version store of one storage node (SPEC §2.1–2.2).
//!
//! Keys are spread over independently locked shards so that concurrent requests for
//! different keys rarely contend. Every operation on one key happens under its shard's
//! lock, which is what makes a conditional update atomic: the comparison and the write
//! it guards are one critical section, after every earlier write of the key.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use dida_core::{Record, Version};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

const SHARDS: usize = 64;

/// The versions one replica holds of one key, oldest first.
type KeyVersions = BTreeMap<Version, String>;

/// A multi-version key-value store that keeps at most `max_versions` versions per key.
#[derive(Debug)]
pub struct MultiVersionStore {
    shards: Vec<RwLock<HashMap<String, KeyVersions>>>,
    max_versions: usize,
}

/// What a conditional update found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome {
    /// The current value matched; the new value was written at this version.
    Applied(Record),
    /// The current value differed (or the key has no value); nothing was written.
    Mismatch,
}

impl MultiVersionStore {
    /// An empty store keeping at most `max_versions` (at least 1) versions per key.
    pub fn new(max_versions: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            max_versions: max_versions.max(1),
        }
    }

    /// How many versions per key this store keeps.
    pub fn max_versions(&self) -> usize {
        self.max_versions
    }

    fn shard(&self, key: &str) -> &RwLock<HashMap<String, KeyVersions>> {
        &self.shards[(xxh3_64(key.as_bytes()) as usize) % SHARDS]
    }

    /// The newest version of `key`, or exactly `version` when given; `None` when this
    /// replica does not hold it.
    pub fn read(&self, key: &str, version: Option<Version>) -> Option<Record> {
        let shard = self.shard(key).read().expect("store lock poisoned");
        let versions = shard.get(key)?;
        let (version, value) = match version {
            None => versions.last_key_value()?,
            Some(wanted) => versions.get_key_value(&wanted)?,
        };
        Some(Record {
            key: key.to_string(),
            version: *version,
            value: value.clone(),
        })
    }

    /// How many versions of `key` newer than `version` this replica holds. When that
    /// reaches `max_versions`, `version` can never be held here again: it was
    /// discarded, or would be the moment it arrived.
    pub fn newer_versions_held(&self, key: &str, version: Version) -> usize {
        let shard = self.shard(key).read().expect("store lock poisoned");
        shard.get(key).map_or(0, |versions| {
            versions
                .range(version..)
                .filter(|(v, _)| **v > version)
                .count()
        })
    }

    /// Executes a write as the key's primary: the new version's number is one more than
    /// the highest this replica knows for the key, stamped with `replica`.
    pub fn write(&self, key: &str, value: &str, replica: u32) -> Record {
        let mut shard = self.shard(key).write().expect("store lock poisoned");
        let versions = shard.entry(key.to_string()).or_default();
        self.append(key, versions, value, replica)
    }

    /// Executes a conditional update as the key's primary: writes `new` only if the
    /// newest value is `old`. A key with no value never matches.
    pub fn update_if_value_is(&self, key: &str, old: &str, new: &str, replica: u32) -> CasOutcome {
        let mut shard = self.shard(key).write().expect("store lock poisoned");
        let Some(versions) = shard.get_mut(key) else {
            return CasOutcome::Mismatch;
        };
        match versions.last_key_value() {
            Some((_, current)) if current == old => {
                CasOutcome::Applied(self.append(key, versions, new, replica))
            }
            _ => CasOutcome::Mismatch,
        }
    }

    fn append(&self, key: &str, versions: &mut KeyVersions, value: &str, replica: u32) -> Record {
        let number = versions.last_key_value().map_or(0, |(v, _)| v.number) + 1;
        let version = Version::new(number, replica);
        versions.insert(version, value.to_string());
        self.discard_oldest(versions);
        Record {
            key: key.to_string(),
            version,
            value: value.to_string(),
        }
    }

    /// Stores a record another replica created (gossip or anti-entropy). Returns
    /// `true` if the record was new to this replica and is kept (a version older than
    /// every one of `max_versions` held versions is dropped at once).
    pub fn merge(&self, record: &Record) -> bool {
        let mut shard = self
            .shard(&record.key)
            .write()
            .expect("store lock poisoned");
        let versions = shard.entry(record.key.clone()).or_default();
        if versions.contains_key(&record.version) {
            return false;
        }
        versions.insert(record.version, record.value.clone());
        self.discard_oldest(versions);
        versions.contains_key(&record.version)
    }

    fn discard_oldest(&self, versions: &mut KeyVersions) {
        while versions.len() > self.max_versions {
            versions.pop_first();
        }
    }

    /// Every record held, sorted by key then version.
    pub fn records(&self) -> Vec<Record> {
        let mut records = Vec::new();
        self.for_each_key(|key, versions| {
            records.extend(versions.iter().map(|(version, value)| Record {
                key: key.to_string(),
                version: *version,
                value: value.clone(),
            }));
        });
        records.sort_by(|a, b| a.key.cmp(&b.key).then(a.version.cmp(&b.version)));
        records
    }

    /// `(keys, records)` currently held.
    pub fn counts(&self) -> (u64, u64) {
        let (mut keys, mut records) = (0, 0);
        self.for_each_key(|_, versions| {
            keys += 1;
            records += versions.len() as u64;
        });
        (keys, records)
    }

    /// The versions held of every key for which `select` returns true.
    pub fn versions_where(
        &self,
        mut select: impl FnMut(&str) -> bool,
    ) -> Vec<(String, Vec<Version>)> {
        let mut out = Vec::new();
        self.for_each_key(|key, versions| {
            if select(key) {
                out.push((key.to_string(), versions.keys().copied().collect()));
            }
        });
        out
    }

    /// The held records of `key` whose versions `wanted` accepts.
    pub fn records_of(&self, key: &str, mut wanted: impl FnMut(Version) -> bool) -> Vec<Record> {
        let shard = self.shard(key).read().expect("store lock poisoned");
        shard.get(key).map_or_else(Vec::new, |versions| {
            versions
                .iter()
                .filter(|(v, _)| wanted(**v))
                .map(|(version, value)| Record {
                    key: key.to_string(),
                    version: *version,
                    value: value.clone(),
                })
                .collect()
        })
    }

    /// Calls `visit` with every key and a digest of the versions and values held of it.
    /// Two replicas holding the same versions of a key compute the same digest.
    pub fn for_each_key_digest(&self, mut visit: impl FnMut(&str, u64)) {
        self.for_each_key(|key, versions| {
            let mut hasher = Xxh3::new();
            hasher.update(key.as_bytes());
            for (version, value) in versions {
                hasher.update(&version.number.to_le_bytes());
                hasher.update(&version.replica.to_le_bytes());
                hasher.update(&(value.len() as u64).to_le_bytes());
                hasher.update(value.as_bytes());
            }
            visit(key, hasher.digest());
        });
    }

    fn for_each_key(&self, mut visit: impl FnMut(&str, &KeyVersions)) {
        for shard in &self.shards {
            let shard = shard.read().expect("store lock poisoned");
            for (key, versions) in shard.iter() {
                visit(key, versions);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, number: u64, replica: u32, value: &str) -> Record {
        Record {
            key: key.into(),
            version: Version::new(number, replica),
            value: value.into(),
        }
    }

    #[test]
    fn writes_get_increasing_numbers_and_reads_see_latest_or_exact() {
        let store = MultiVersionStore::new(5);
        assert_eq!(store.read("k", None), None);
        let a = store.write("k", "a", 2);
        let b = store.write("k", "b", 2);
        assert_eq!(a.version, Version::new(1, 2));
        assert_eq!(b.version, Version::new(2, 2));
        assert_eq!(store.read("k", None).unwrap().value, "b");
        assert_eq!(store.read("k", Some(a.version)).unwrap().value, "a");
        assert_eq!(store.read("k", Some(Version::new(1, 3))), None);
        // A write numbers past the highest version known, whoever created it.
        assert!(store.merge(&record("k", 9, 1, "gossiped")));
        assert_eq!(store.write("k", "c", 2).version, Version::new(10, 2));
    }

    #[test]
    fn keeps_at_most_max_versions_discarding_the_oldest() {
        let store = MultiVersionStore::new(3);
        let versions: Vec<Version> = (0..5)
            .map(|i| store.write("k", &i.to_string(), 1).version)
            .collect();
        assert_eq!(store.read("k", Some(versions[0])), None);
        assert_eq!(store.read("k", Some(versions[1])), None);
        for v in &versions[2..] {
            assert!(store.read("k", Some(*v)).is_some());
        }
        assert_eq!(store.counts(), (1, 3));
        assert_eq!(store.newer_versions_held("k", versions[0]), 3);
        assert_eq!(store.newer_versions_held("k", versions[3]), 1);
        assert_eq!(store.newer_versions_held("other", versions[0]), 0);
        // A gossiped version older than all kept ones is not kept.
        assert!(!store.merge(&record("k", 1, 9, "late")));
        assert_eq!(store.counts(), (1, 3));
        // A newer one pushes the oldest out.
        assert!(store.merge(&record("k", 7, 9, "new")));
        assert_eq!(store.read("k", Some(versions[2])), None);
        assert_eq!(store.read("k", None).unwrap().value, "new");
    }

    #[test]
    fn conditional_update_compares_the_newest_value() {
        let store = MultiVersionStore::new(5);
        assert_eq!(
            store.update_if_value_is("k", "", "x", 1),
            CasOutcome::Mismatch
        );
        assert_eq!(store.read("k", None), None, "a failed CAS writes nothing");
        store.write("k", "old", 1);
        assert_eq!(
            store.update_if_value_is("k", "nope", "x", 1),
            CasOutcome::Mismatch
        );
        let CasOutcome::Applied(applied) = store.update_if_value_is("k", "old", "new", 1) else {
            panic!("CAS should apply");
        };
        assert_eq!(applied.version, Version::new(2, 1));
        assert_eq!(store.read("k", None).unwrap().value, "new");
        // The same old value no longer matches.
        assert_eq!(
            store.update_if_value_is("k", "old", "again", 1),
            CasOutcome::Mismatch
        );
    }

    #[test]
    fn merge_is_idempotent_and_digests_agree_on_equal_contents() {
        let a = MultiVersionStore::new(5);
        let b = MultiVersionStore::new(5);
        let r1 = record("k", 1, 1, "x");
        let r2 = record("k", 2, 1, "y");
        assert!(a.merge(&r1));
        assert!(!a.merge(&r1));
        a.merge(&r2);
        b.merge(&r2);
        b.merge(&r1);
        let digest = |s: &MultiVersionStore| {
            let mut d = 0;
            s.for_each_key_digest(|_, h| d = h);
            d
        };
        assert_eq!(digest(&a), digest(&b));
        b.merge(&record("k", 3, 2, "z"));
        assert_ne!(digest(&a), digest(&b));
        assert_eq!(a.records(), vec![r1, r2]);
    }

    #[test]
    fn concurrent_increments_by_cas_never_lose_an_update() {
        let store = std::sync::Arc::new(MultiVersionStore::new(5));
        store.write("n", "0", 1);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut wins = 0;
                    while wins < 200 {
                        let current = store.read("n", None).unwrap().value;
                        let next = (current.parse::<u64>().unwrap() + 1).to_string();
                        if let CasOutcome::Applied(_) =
                            store.update_if_value_is("n", &current, &next, 1)
                        {
                            wins += 1;
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(store.read("n", None).unwrap().value, "1600");
    }
}
