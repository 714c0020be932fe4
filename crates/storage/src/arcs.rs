//! The arcs of the first ring: the fixed buckets in which the store keeps its keys and
//! its digests, so that anti-entropy never has to re-read the data (SPEC §2.4).
//!
//! The ranges anti-entropy compares belong to the *current* ring, which changes when a
//! node crashes. But a crash only removes points: [`Ring::without`] keeps every
//! surviving node's points where they were. So the arcs between consecutive points of
//! the ring with every node alive (the first ring) never split on a crash: every range
//! of every later ring is a run of consecutive arcs of the first. Keeping a digest per
//! arc, a node sums the arcs of each current range; a change of view costs one pass
//! over the arcs, never one over the keys.
//!
//! A join is the exception: the new node's points are added to the ring and split
//! arcs. Every node then builds a new first ring, the old members with the new one
//! appended, whose points include the old first ring's ([`Arcs::includes`]), and the
//! store re-buckets its keys onto the new arcs (`MultiVersionStore::rebucket`). That
//! costs one pass over the keys, under a lock that stops every other operation of the
//! store meanwhile; it is rare (once per node added to the cluster). Since the old
//! points are still arc ends, every ring built from the old first ring remains a run
//! of the new arcs: a view not yet updated to the join still reads the store right.

use dida_core::{RangeId, Ring};

/// The arcs of the first ring, by the position of the point closing each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Arcs {
    /// Ascending positions of the first ring's points; arc `i` ends at `ends[i]`.
    ends: Vec<u64>,
}

impl Arcs {
    /// The arcs of `first`, which must be the ring with every node alive.
    pub fn of(first: &Ring) -> Self {
        Self {
            ends: first.range_ends().collect(),
        }
    }

    /// Number of arcs (at least 1: a ring without points is one arc, the whole
    /// circle).
    pub fn len(&self) -> usize {
        self.ends.len().max(1)
    }

    /// The arc holding ring position `hash`, by the rule [`Ring::range_at`] applies
    /// to ranges: the arc closed by the first point at or after it, wrapping around.
    pub fn arc_at(&self, hash: u64) -> usize {
        let index = self.ends.partition_point(|end| *end < hash);
        if index == self.ends.len() {
            0
        } else {
            index
        }
    }

    /// Whether every arc end of `earlier` is an arc end here too: true when these are
    /// the arcs of a first ring that only added points to `earlier`'s (a join), so
    /// that every arc here lies within one arc of `earlier`, and every ring whose
    /// points were among `earlier`'s ends still maps through these arcs.
    pub fn includes(&self, earlier: &Arcs) -> bool {
        earlier
            .ends
            .iter()
            .all(|end| self.ends.binary_search(end).is_ok())
    }

    /// For each arc, the range of `ring` it lies in. `ring`'s points must all be
    /// arc ends: the first ring, one built from it by [`Ring::without`], or a ring of
    /// an earlier first ring these arcs include ([`Arcs::includes`]). Every position
    /// of an arc then falls in the range that the arc's end falls in.
    pub fn ranges_in(&self, ring: &Ring) -> Vec<RangeId> {
        if self.ends.is_empty() {
            return vec![ring.range_at(0)];
        }
        self.ends.iter().map(|&end| ring.range_at(end)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dida_core::ring::key_hash;

    const FIVE: [&str; 5] = ["s1", "s2", "s3", "s4", "s5"];

    fn assert_arcs_map_keys_like_the_ring(arcs: &Arcs, ring: &Ring) {
        let ranges = arcs.ranges_in(ring);
        assert_eq!(ranges.len(), arcs.len());
        for i in 0..5000 {
            let key = format!("key-{i}");
            assert_eq!(
                ranges[arcs.arc_at(key_hash(&key))],
                ring.range_of(&key),
                "{key}"
            );
        }
    }

    #[test]
    fn arcs_of_the_first_ring_are_its_ranges() {
        let first = Ring::new(&FIVE, 16, 3);
        let arcs = Arcs::of(&first);
        assert_eq!(arcs.len(), first.range_count());
        assert_arcs_map_keys_like_the_ring(&arcs, &first);
    }

    #[test]
    fn every_range_after_crashes_is_a_run_of_first_arcs() {
        let first = Ring::new(&FIVE, 16, 3);
        let arcs = Arcs::of(&first);
        for crashed in [vec![0], vec![4], vec![1, 3], vec![0, 1, 2, 3]] {
            let later = Ring::without(&FIVE, 16, 3, |n| crashed.contains(&n));
            assert!(later.range_count() < first.range_count());
            assert_arcs_map_keys_like_the_ring(&arcs, &later);
        }
    }

    #[test]
    fn a_join_splits_arcs_and_earlier_rings_still_map_through_them() {
        let first = Ring::new(&FIVE[..4], 16, 3);
        let joined = Ring::new(&FIVE, 16, 3);
        let (before, after) = (Arcs::of(&first), Arcs::of(&joined));
        assert!(after.len() > before.len());
        assert!(after.includes(&before) && after.includes(&after));
        assert!(
            !before.includes(&after),
            "the joiner's points are new arc ends"
        );
        assert_arcs_map_keys_like_the_ring(&after, &joined);
        // Rings of the first ring before the join, with or without crashed nodes.
        assert_arcs_map_keys_like_the_ring(&after, &first);
        let crashed = Ring::without(&FIVE[..4], 16, 3, |n| n == 1);
        assert_arcs_map_keys_like_the_ring(&after, &crashed);
    }

    #[test]
    fn positions_at_the_edges_wrap_like_the_ring() {
        let first = Ring::new(&FIVE, 4, 3);
        let arcs = Arcs::of(&first);
        let ends: Vec<u64> = first.range_ends().collect();
        assert_eq!(arcs.arc_at(0), first.range_at(0) as usize);
        assert_eq!(arcs.arc_at(u64::MAX), 0);
        assert_eq!(arcs.arc_at(ends[2]), 2);
        assert_eq!(arcs.arc_at(ends[2] + 1), 3);
    }
}
