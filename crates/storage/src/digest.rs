//! The digest anti-entropy compares, and the running tally that keeps it up to date
//! without re-reading the data (SPEC §2.4).
//!
//! The digest of a set of records is the wrapping sum of [`record_digest`] over them.
//! A sum does not depend on the order in which records arrived, and it can be updated
//! in O(1) when one record comes or goes: adding a record adds its digest, discarding
//! a version beyond `--max-versions` subtracts it. So two replicas that hold the same
//! records of a range have the same digest, however they came by them, and a store can
//! keep the digest of every bucket of keys current as it changes.

use dida_core::Version;
use xxhash_rust::xxh3::Xxh3;

/// The digest of one record: xxh3 (seed 0) of the key's length and bytes, the
/// version's number and replica, and the value's length and bytes, every number
/// little-endian. Every node must compute it identically, since nodes compare sums of
/// it; the lengths keep two different records from hashing the same bytes.
pub(crate) fn record_digest(key: &str, version: Version, value: &str) -> u64 {
    let mut hasher = Xxh3::new();
    hasher.update(&(key.len() as u64).to_le_bytes());
    hasher.update(key.as_bytes());
    hasher.update(&version.number.to_le_bytes());
    hasher.update(&version.replica.to_le_bytes());
    hasher.update(&(value.len() as u64).to_le_bytes());
    hasher.update(value.as_bytes());
    hasher.digest()
}

/// How many records a bucket of keys holds and their digest, kept current as records
/// are stored and discarded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Records (versions) held.
    pub records: u64,
    /// Wrapping sum of [`record_digest`] over the records held.
    pub digest: u64,
}

impl Tally {
    /// Accounts for a record just stored.
    pub fn add(&mut self, key: &str, version: Version, value: &str) {
        self.records += 1;
        self.digest = self.digest.wrapping_add(record_digest(key, version, value));
    }

    /// Accounts for a record just discarded.
    pub fn remove(&mut self, key: &str, version: Version, value: &str) {
        self.records = self.records.saturating_sub(1);
        self.digest = self.digest.wrapping_sub(record_digest(key, version, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_then_removing_leaves_the_tally_as_it_was_in_any_order() {
        let (a, b) = (Version::new(1, 1), Version::new(2, 3));
        let mut tally = Tally::default();
        tally.add("k", a, "x");
        let one = tally;
        tally.add("k", b, "y");
        let mut other_order = Tally::default();
        other_order.add("k", b, "y");
        other_order.add("k", a, "x");
        assert_eq!(tally, other_order);
        tally.remove("k", b, "y");
        assert_eq!(tally, one);
        tally.remove("k", a, "x");
        assert_eq!(tally, Tally::default());
    }

    #[test]
    fn every_field_of_a_record_changes_its_digest() {
        let base = record_digest("k", Version::new(1, 1), "v");
        assert_ne!(base, record_digest("j", Version::new(1, 1), "v"));
        assert_ne!(base, record_digest("k", Version::new(2, 1), "v"));
        assert_ne!(base, record_digest("k", Version::new(1, 2), "v"));
        assert_ne!(base, record_digest("k", Version::new(1, 1), "w"));
        // The lengths separate key from value.
        assert_ne!(
            record_digest("ab", Version::new(1, 1), "c"),
            record_digest("a", Version::new(1, 1), "bc")
        );
    }
}
