//! The crash detector's decisions, without I/O: which peers to ask for an indirect
//! probe, and — from each round's answers and the time — which peers become
//! suspected, which are cleared, and which are declared failed.
//!
//! **Only a majority declares.** A node declares a peer failed only while it reaches
//! (directly or indirectly) a strict majority of the nodes its view counts alive,
//! itself included. A node cut off from the others therefore suspects them but
//! declares no one: it cannot take over their keys (and acknowledge writes nobody
//! else will ever see), and when the partition heals it learns from the majority
//! that it was declared failed, instead of the majority learning the reverse.
//!
//! `detector` does the probing and applies what [`Suspicions::observe`] decides;
//! keeping the rules here makes them testable with plain values (no sockets, no
//! clock but the instants passed in).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

/// How many other peers are asked to probe a peer that missed a direct probe.
pub(crate) const INDIRECT_PROBES: usize = 2;

/// The peers asked to probe `target` indirectly: up to [`INDIRECT_PROBES`] of the
/// other live `peers` (never the target itself), starting at an offset that
/// depends on both nodes so that different nodes ask different helpers.
pub(crate) fn indirect_helpers(me: usize, target: usize, peers: &[usize]) -> Vec<usize> {
    let others: Vec<usize> = peers.iter().copied().filter(|&p| p != target).collect();
    if others.is_empty() {
        return Vec::new();
    }
    let start = (me + target) % others.len();
    others
        .iter()
        .cycle()
        .skip(start)
        .take(INDIRECT_PROBES.min(others.len()))
        .copied()
        .collect()
}

/// Whether a node that reaches `reached` of the `live` nodes of its view (itself
/// counted in both) may declare failures: it must reach a strict majority.
pub(crate) fn has_quorum(reached: usize, live: usize) -> bool {
    2 * reached > live
}

/// What one round of observations changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Peers that were suspected and answered again.
    pub cleared: Vec<usize>,
    /// Peers suspected from this round on.
    pub suspected: Vec<usize>,
    /// Peers suspected for the whole suspicion timeout: to be declared failed.
    pub failed: Vec<usize>,
    /// Some peer was suspected long enough but this node reached no majority of
    /// the live nodes, so it stays suspected, undeclared.
    pub without_quorum: bool,
}

/// The detector's memory between rounds.
#[derive(Debug)]
pub(crate) struct Suspicions {
    /// Suspected peers, with when each was first suspected.
    since: HashMap<usize, Instant>,
    /// Peers that have answered at least once.
    seen: HashSet<usize>,
    /// When the node started: a peer never heard from is given `startup_grace`.
    started: Instant,
    startup_grace: Duration,
    suspicion_timeout: Duration,
}

impl Suspicions {
    /// No suspicions; a peer that never answered is not suspected before
    /// `started + startup_grace`, a suspected peer is declared failed after
    /// `suspicion_timeout`.
    pub fn new(started: Instant, startup_grace: Duration, suspicion_timeout: Duration) -> Self {
        Self {
            since: HashMap::new(),
            seen: HashSet::new(),
            started,
            startup_grace,
            suspicion_timeout,
        }
    }

    /// Takes one round's `answers` (each probed peer and whether it was reached,
    /// directly or indirectly) at `now`; `failed` is the view's failed set, whose
    /// members are forgotten. Returns what changed.
    pub fn observe(
        &mut self,
        now: Instant,
        answers: &[(usize, bool)],
        failed: &BTreeSet<usize>,
    ) -> Verdict {
        let grace_over = now.duration_since(self.started) >= self.startup_grace;
        let reached = answers.iter().filter(|(_, answered)| *answered).count() + 1;
        let quorum = has_quorum(reached, answers.len() + 1);
        let mut verdict = Verdict::default();
        for &(peer, answered) in answers {
            if answered {
                self.seen.insert(peer);
                if self.since.remove(&peer).is_some() {
                    verdict.cleared.push(peer);
                }
                continue;
            }
            if !self.seen.contains(&peer) && !grace_over {
                continue;
            }
            let since = *self.since.entry(peer).or_insert_with(|| {
                verdict.suspected.push(peer);
                now
            });
            if now.duration_since(since) >= self.suspicion_timeout {
                if quorum {
                    verdict.failed.push(peer);
                } else {
                    verdict.without_quorum = true;
                }
            }
        }
        for peer in &verdict.failed {
            self.since.remove(peer);
        }
        self.since.retain(|peer, _| !failed.contains(peer));
        verdict
    }

    /// Records that `peers` have started (they probed this node): the start-up
    /// grace no longer spares them.
    pub fn started(&mut self, peers: impl IntoIterator<Item = usize>) {
        self.seen.extend(peers);
    }

    /// The peers suspected now.
    pub fn suspected(&self) -> BTreeSet<usize> {
        self.since.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(30);
    const TIMEOUT: Duration = Duration::from_millis(1500);
    const MS: Duration = Duration::from_millis(1);

    fn none() -> BTreeSet<usize> {
        BTreeSet::new()
    }

    #[test]
    fn a_silent_peer_is_declared_failed_after_the_suspicion_timeout_and_not_before() {
        let t0 = Instant::now();
        let mut s = Suspicions::new(t0, GRACE, TIMEOUT);
        s.observe(t0, &[(1, true), (2, true)], &none());
        let first = s.observe(t0 + 250 * MS, &[(1, false), (2, true)], &none());
        assert_eq!(first.suspected, vec![1]);
        assert!(first.failed.is_empty());
        let before = s.observe(t0 + 1749 * MS, &[(1, false), (2, true)], &none());
        assert_eq!(before, Verdict::default());
        assert_eq!(s.suspected(), BTreeSet::from([1]));
        let after = s.observe(t0 + 1750 * MS, &[(1, false), (2, true)], &none());
        assert_eq!(after.failed, vec![1]);
        assert!(
            s.suspected().is_empty(),
            "a declared peer is no longer suspected"
        );
    }

    #[test]
    fn an_answer_clears_a_suspicion_and_the_next_silence_starts_the_clock_again() {
        let t0 = Instant::now();
        let mut s = Suspicions::new(t0, GRACE, TIMEOUT);
        s.observe(t0, &[(1, true), (2, true)], &none());
        s.observe(t0 + 100 * MS, &[(1, false), (2, true)], &none());
        let cleared = s.observe(t0 + 1000 * MS, &[(1, true), (2, true)], &none());
        assert_eq!(cleared.cleared, vec![1]);
        // Silent again: suspected anew, so 1.5 s from now, not from the first time.
        s.observe(t0 + 1200 * MS, &[(1, false), (2, true)], &none());
        assert!(s
            .observe(t0 + 2000 * MS, &[(1, false), (2, true)], &none())
            .failed
            .is_empty());
        assert_eq!(
            s.observe(t0 + 2700 * MS, &[(1, false), (2, true)], &none())
                .failed,
            vec![1]
        );
    }

    #[test]
    fn a_peer_never_heard_from_is_spared_until_the_startup_grace_is_over() {
        let t0 = Instant::now();
        let mut s = Suspicions::new(t0, GRACE, TIMEOUT);
        for ms in (0..30_000).step_by(250) {
            assert_eq!(
                s.observe(t0 + ms * MS, &[(3, false)], &none()),
                Verdict::default()
            );
        }
        let late = s.observe(t0 + GRACE, &[(3, false)], &none());
        assert_eq!(late.suspected, vec![3]);
        // A peer that answered once is suspected at once, grace or not.
        let mut s = Suspicions::new(t0, GRACE, TIMEOUT);
        s.observe(t0, &[(4, true)], &none());
        assert_eq!(
            s.observe(t0 + MS, &[(4, false)], &none()).suspected,
            vec![4]
        );
    }

    #[test]
    fn a_peer_that_probed_this_node_is_not_spared_by_the_startup_grace() {
        let t0 = Instant::now();
        let mut s = Suspicions::new(t0, GRACE, TIMEOUT);
        s.started([5]);
        assert_eq!(
            s.observe(t0 + MS, &[(5, false), (6, true)], &none())
                .suspected,
            vec![5]
        );
        assert_eq!(
            s.observe(t0 + MS + TIMEOUT, &[(5, false), (6, true)], &none())
                .failed,
            vec![5]
        );
    }

    #[test]
    fn peers_the_view_already_counts_failed_are_forgotten() {
        let t0 = Instant::now();
        let mut s = Suspicions::new(t0, GRACE, TIMEOUT);
        s.observe(t0, &[(1, true), (2, true)], &none());
        s.observe(t0 + MS, &[(1, false), (2, false)], &none());
        s.observe(t0 + 2 * MS, &[(1, false)], &BTreeSet::from([2]));
        assert_eq!(s.suspected(), BTreeSet::from([1]));
    }

    #[test]
    fn a_node_reaching_no_majority_suspects_but_declares_no_one_until_it_does() {
        let t0 = Instant::now();
        let mut s = Suspicions::new(t0, GRACE, TIMEOUT);
        let all = [(1, true), (2, true), (3, true), (4, true)];
        s.observe(t0, &all, &none());
        // Cut off from everyone: 1 of 5 reached.
        let alone = [(1, false), (2, false), (3, false), (4, false)];
        s.observe(t0 + MS, &alone, &none());
        let later = s.observe(t0 + MS + TIMEOUT, &alone, &none());
        assert!(later.failed.is_empty() && later.without_quorum);
        assert_eq!(s.suspected().len(), 4, "still suspected");
        // Two of five silent while it reaches the other two: 3 of 5, a majority.
        let minority_silent = [(1, false), (2, false), (3, true), (4, true)];
        let declared = s.observe(t0 + 2 * TIMEOUT, &minority_silent, &none());
        assert_eq!(declared.failed, vec![1, 2]);
        assert!(!declared.without_quorum);
        assert!(has_quorum(2, 3) && !has_quorum(1, 2) && !has_quorum(2, 4));
    }

    #[test]
    fn indirect_helpers_are_other_live_peers_never_the_target() {
        let peers = [0, 2, 3, 4];
        for me in 0..5 {
            for &target in &peers {
                let helpers = indirect_helpers(me, target, &peers);
                assert_eq!(helpers.len(), INDIRECT_PROBES);
                assert!(!helpers.contains(&target));
                assert!(helpers.iter().all(|h| peers.contains(h)));
                let distinct: HashSet<_> = helpers.iter().collect();
                assert_eq!(distinct.len(), helpers.len());
            }
        }
        assert_eq!(indirect_helpers(0, 2, &[2]), Vec::<usize>::new());
        assert_eq!(indirect_helpers(0, 2, &[2, 3]), vec![3]);
    }

    #[test]
    fn different_nodes_ask_different_helpers() {
        let peers = [1, 2, 3, 4, 5];
        let chosen: HashSet<Vec<usize>> =
            (0..5).map(|me| indirect_helpers(me, 3, &peers)).collect();
        assert!(chosen.len() > 1, "{chosen:?}");
    }
}
