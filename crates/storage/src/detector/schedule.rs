//! Whom the detector probes each period: a few peers (the *fan-out*), taken in turn
//! from a shuffled list of every other member, as SWIM does (Das et al., 2002, §4.3).
//!
//! Probing every peer every period made a node's cost grow with the cluster, and the
//! cluster's with its square. Probing `fanout` peers keeps a node's cost constant.
//! Round-robin over a shuffled list, rather than a fresh random pick each period,
//! bounds how long a peer goes unprobed: once a list is used up it is shuffled again,
//! so a node probes every member at least once in any
//! `2 × ⌈(members − 1) / fanout⌉` consecutive periods (tested) — a random pick
//! could pass a crashed peer over for any number of periods. Different nodes shuffle
//! differently, so the probes of a period spread over the cluster.
//!
//! The shuffle is deterministic — seeded from the node, its incarnation and the
//! list's number ([`shuffle_seed`]), never from a thread-local generator — so the
//! simulator replays a run exactly.

use std::collections::BTreeSet;

/// A node's turn through the other members.
#[derive(Debug, Clone)]
pub(crate) struct ProbeSchedule {
    me: usize,
    /// Every member but `me`, in the current shuffled order.
    order: Vec<usize>,
    /// Position in `order` of the next peer to probe.
    cursor: usize,
    /// How many lists have been used up (part of the next shuffle's seed).
    lists: u64,
}

impl ProbeSchedule {
    /// The schedule of member `me` of a cluster of `members`; the first list is
    /// shuffled at the first [`ProbeSchedule::next`].
    pub fn new(me: usize, members: usize) -> Self {
        let order: Vec<usize> = (0..members).filter(|&n| n != me).collect();
        Self {
            me,
            cursor: order.len(),
            order,
            lists: 0,
        }
    }

    /// Takes in the members of a cluster grown to `members` (nodes admitted
    /// since): each new one is appended to the current list, so it is probed within
    /// this list's turn and shuffled in with the others from the next.
    pub fn grow(&mut self, members: usize) {
        let known = self.order.len() + 1;
        self.order
            .extend((known..members).filter(|&n| n != self.me));
    }

    /// The peers to probe this period: the next `fanout` members of the list that
    /// are `eligible`, distinct (fewer if fewer are eligible). Members not eligible
    /// are passed over without using the budget. When the list runs out it is
    /// shuffled again with a seed drawn from `seed` (the node's incarnation) and the
    /// list's number. A member already taken this period is passed over in the new
    /// list: it was just probed, which is its turn in that list too.
    pub fn next(
        &mut self,
        fanout: usize,
        seed: u64,
        eligible: impl Fn(usize) -> bool,
    ) -> Vec<usize> {
        let mut chosen = Vec::new();
        // Two lists at most: the rest of the current one, then a whole new one.
        let mut steps = 2 * self.order.len();
        while chosen.len() < fanout && steps > 0 {
            if self.cursor == self.order.len() {
                self.order = shuffled(self.order.clone(), shuffle_seed(self.me, seed, self.lists));
                self.lists += 1;
                self.cursor = 0;
            }
            let peer = self.order[self.cursor];
            self.cursor += 1;
            steps -= 1;
            if eligible(peer) && !chosen.contains(&peer) {
                chosen.push(peer);
            }
        }
        chosen
    }
}

/// One period's probes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Targets {
    /// Peers the view does not count failed, probed directly and, if they miss,
    /// indirectly: the schedule's, then every suspect (a suspect is probed every
    /// period, so that its suspicion is cleared or confirmed on time).
    pub live: Vec<usize>,
    /// Peers the view counts failed that the schedule chose: probed directly, to
    /// tell them they were declared, and counted towards nothing.
    pub declared: Vec<usize>,
}

/// Splits the schedule's `chosen` peers by the view's `failed` set, and adds the
/// `suspected` peers not chosen.
pub(crate) fn targets(
    chosen: &[usize],
    suspected: &BTreeSet<usize>,
    failed: &BTreeSet<usize>,
) -> Targets {
    let (declared, mut live): (Vec<usize>, Vec<usize>) =
        chosen.iter().partition(|peer| failed.contains(peer));
    live.extend(
        suspected
            .iter()
            .filter(|peer| !failed.contains(peer) && !chosen.contains(peer)),
    );
    Targets { live, declared }
}

/// The seed of a node's `list`-th shuffle: a hash of the node, its incarnation and
/// the list's number, so that nodes (and a node's successive incarnations) go round
/// in different orders, and a run replays exactly.
pub(crate) fn shuffle_seed(me: usize, incarnation: u64, list: u64) -> u64 {
    let mut state =
        incarnation ^ (me as u64).rotate_left(32) ^ list.wrapping_mul(0xA24B_AED4_963E_E407);
    splitmix64(&mut state)
}

/// `items` in an order drawn from `seed` (Fisher–Yates).
fn shuffled(mut items: Vec<usize>, seed: u64) -> Vec<usize> {
    let mut state = seed;
    for i in (1..items.len()).rev() {
        let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
    items
}

/// SplitMix64 (Steele, Lea and Flood, 2014): a tiny, well-mixed generator, enough
/// to shuffle a list of peers; not for anything secret.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The most periods between two probes of the same member by one node, when every
    /// member is eligible: `members − 1` peers taken `fanout` a period make a list last
    /// `⌈(members − 1) / fanout⌉` periods, and a peer probed first in one list can come
    /// last in the next.
    fn longest_gap(members: usize, fanout: usize) -> usize {
        let peers = members.saturating_sub(1).max(1);
        2 * peers.div_ceil(fanout.clamp(1, peers))
    }

    fn all(_: usize) -> bool {
        true
    }

    #[test]
    fn each_period_probes_fanout_distinct_peers_never_itself() {
        for members in 2..12 {
            for fanout in 1..members + 2 {
                let mut schedule = ProbeSchedule::new(1, members);
                for _ in 0..50 {
                    let chosen = schedule.next(fanout, 7, all);
                    assert_eq!(chosen.len(), fanout.min(members - 1));
                    assert!(!chosen.contains(&1));
                    let distinct: BTreeSet<_> = chosen.iter().collect();
                    assert_eq!(distinct.len(), chosen.len(), "{chosen:?}");
                }
            }
        }
    }

    #[test]
    fn every_peer_is_probed_within_the_longest_gap() {
        for members in 2..25 {
            for fanout in 1..members {
                let mut schedule = ProbeSchedule::new(0, members);
                let mut last: BTreeMap<usize, usize> = BTreeMap::new();
                let bound = longest_gap(members, fanout);
                for period in 0..400 {
                    for peer in schedule.next(fanout, 99, all) {
                        let since = last.insert(peer, period).unwrap_or(0);
                        assert!(
                            period - since <= bound,
                            "{members} members, fan-out {fanout}: peer {peer} waited {} periods (bound {bound})",
                            period - since
                        );
                    }
                }
                assert_eq!(last.len(), members - 1, "every peer probed");
            }
        }
    }

    #[test]
    fn admitted_members_are_probed_within_the_longest_gap_of_the_grown_cluster() {
        let mut schedule = ProbeSchedule::new(2, 4);
        schedule.next(2, 5, all);
        schedule.grow(6);
        schedule.grow(6);
        let bound = longest_gap(6, 2);
        let mut seen = BTreeSet::new();
        for _ in 0..bound {
            seen.extend(schedule.next(2, 5, all));
        }
        assert_eq!(seen, BTreeSet::from([0, 1, 3, 4, 5]));
    }

    #[test]
    fn peers_not_eligible_are_passed_over_without_using_the_budget() {
        let mut schedule = ProbeSchedule::new(0, 10);
        for _ in 0..30 {
            let chosen = schedule.next(3, 1, |p| p % 2 == 1);
            assert_eq!(chosen.len(), 3);
            assert!(chosen.iter().all(|p| p % 2 == 1), "{chosen:?}");
        }
        assert!(schedule.next(3, 1, |_| false).is_empty());
        assert_eq!(schedule.next(3, 1, |p| p == 4), vec![4]);
    }

    #[test]
    fn the_order_is_the_same_for_the_same_seed_and_differs_between_nodes() {
        let run = |me: usize, seed: u64| {
            let mut schedule = ProbeSchedule::new(me, 20);
            (0..20)
                .map(|_| schedule.next(2, seed, all))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3, 5), run(3, 5));
        assert_ne!(run(3, 5), run(3, 6), "another incarnation");
        let first: BTreeSet<Vec<usize>> = (0..5).map(|me| run(me, 5)[0].clone()).collect();
        assert!(first.len() > 1, "nodes start at different peers: {first:?}");
    }

    #[test]
    fn suspects_are_probed_on_top_of_the_schedule_and_declared_peers_apart() {
        let chosen = [4, 2, 7];
        let suspected = BTreeSet::from([1, 2, 9]);
        let failed = BTreeSet::from([7, 9]);
        assert_eq!(
            targets(&chosen, &suspected, &failed),
            Targets {
                live: vec![4, 2, 1],
                declared: vec![7],
            }
        );
    }

    #[test]
    fn a_shuffle_is_a_permutation() {
        for seed in 0..100 {
            let mut items = shuffled((0..17).collect(), seed);
            items.sort_unstable();
            assert_eq!(items, (0..17).collect::<Vec<_>>());
        }
    }
}
