//! The crash detector's decisions, without I/O: which peers to ask for an indirect
//! probe, whom this node has heard from lately, and — from each period's answers
//! and the time — which peers become suspected, which are cleared, and which are
//! due to be declared failed.
//!
//! **Only a majority declares.** A node declares a peer failed only while it has
//! *heard from* a strict majority of the nodes its view counts alive, itself
//! included, within the last suspicion timeout ([`Heard::majority`]): any message
//! proving a peer alive counts — an answer to this node's probe, a probe the peer
//! sent, an indirect probe of it that a helper got answered. A node cut off from the
//! others hears from none of them after the cut, so by the time a suspicion begun
//! after the cut is due (a suspicion timeout later) it has heard from no majority:
//! it suspects but declares no one. It cannot take over their keys (and acknowledge
//! writes nobody else will ever see), and when the partition heals it learns from
//! the majority that it was declared failed, instead of the majority learning the
//! reverse. Counting messages heard rather than peers probed this period is what
//! lets a node probe only a few peers a period (`schedule`).
//!
//! `detector` does the probing and applies what [`Suspicions::observe`] decides;
//! keeping the rules here makes them testable with plain values (no sockets, no
//! clock but the instants passed in).

use std::collections::{BTreeMap, BTreeSet};
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

/// Whether a node that has heard from `heard` of the `live` nodes of its view
/// (itself counted in both) may declare failures: a strict majority.
pub(crate) fn has_quorum(heard: usize, live: usize) -> bool {
    2 * heard > live
}

/// When this node last heard from each peer: any message that proves the peer
/// alive. Shared by the prober and the answers to peers' probes.
#[derive(Debug, Default)]
pub(crate) struct Heard {
    last: BTreeMap<usize, Instant>,
}

impl Heard {
    /// Records a message from `peer` at `at` (an earlier instant than the one
    /// recorded changes nothing).
    pub fn heard(&mut self, peer: usize, at: Instant) {
        let last = self.last.entry(peer).or_insert(at);
        *last = (*last).max(at);
    }

    /// Every peer ever heard from: it has started.
    pub fn ever(&self) -> impl Iterator<Item = usize> + '_ {
        self.last.keys().copied()
    }

    /// When `peer` was last heard from, if ever.
    pub fn last(&self, peer: usize) -> Option<Instant> {
        self.last.get(&peer).copied()
    }

    /// Whether `peer` was heard from within `window` before `now`.
    pub fn recently(&self, peer: usize, now: Instant, window: Duration) -> bool {
        self.last(peer)
            .is_some_and(|at| now.saturating_duration_since(at) <= window)
    }

    /// Whether this node heard, within `window` before `now`, from a strict
    /// majority of itself and its `live` peers ([`has_quorum`]).
    pub fn majority(&self, now: Instant, window: Duration, live: &[usize]) -> bool {
        let heard = live
            .iter()
            .filter(|&&peer| self.recently(peer, now, window))
            .count();
        has_quorum(heard + 1, live.len() + 1)
    }

    /// The `live` peers not heard from within `window` before `now`: those to probe
    /// when a declaration waits for a majority.
    pub fn stale(&self, now: Instant, window: Duration, live: &[usize]) -> Vec<usize> {
        live.iter()
            .copied()
            .filter(|&peer| !self.recently(peer, now, window))
            .collect()
    }
}

/// What one period of observations changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Peers that were suspected and were heard from again.
    pub cleared: Vec<usize>,
    /// Peers suspected from this period on.
    pub suspected: Vec<usize>,
    /// Peers suspected for the whole suspicion timeout and silent this period: to
    /// be declared failed if this node heard from a majority ([`Heard::majority`]),
    /// with [`Suspicions::declared`].
    pub due: Vec<usize>,
}

/// The detector's memory between periods.
#[derive(Debug)]
pub(crate) struct Suspicions {
    /// Suspected peers, with when each was first suspected.
    since: BTreeMap<usize, Instant>,
    /// Peers that have answered at least once, or probed this node.
    seen: BTreeSet<usize>,
    /// When the node started: a peer never heard from is given `startup_grace`.
    started: Instant,
    startup_grace: Duration,
}

impl Suspicions {
    /// No suspicions; a peer that never answered is not suspected before
    /// `started + startup_grace`.
    pub fn new(started: Instant, startup_grace: Duration) -> Self {
        Self {
            since: BTreeMap::new(),
            seen: BTreeSet::new(),
            started,
            startup_grace,
        }
    }

    /// Takes one period's `answers` (each probed peer and whether it was reached,
    /// directly or indirectly); `now` is the instant the period was scheduled for, so
    /// each period ages a suspicion by exactly one interval. A suspect heard from since it was
    /// suspected (`heard`, any message) is cleared, probed or not; a silent one is
    /// due once suspected for `suspicion_timeout` (which the caller stretches by
    /// its local health). `failed` is the view's failed set, whose members are
    /// forgotten. Returns what changed.
    pub fn observe(
        &mut self,
        now: Instant,
        answers: &[(usize, bool)],
        heard: &Heard,
        suspicion_timeout: Duration,
        failed: &BTreeSet<usize>,
    ) -> Verdict {
        let grace_over = now.duration_since(self.started) >= self.startup_grace;
        let mut verdict = Verdict::default();
        self.since.retain(|peer, since| {
            let alive = heard.last(*peer).is_some_and(|at| at >= *since);
            if alive {
                verdict.cleared.push(*peer);
            }
            !alive
        });
        for &(peer, answered) in answers {
            if answered {
                self.seen.insert(peer);
                continue;
            }
            if !self.seen.contains(&peer) && !grace_over {
                continue;
            }
            let since = *self.since.entry(peer).or_insert_with(|| {
                verdict.suspected.push(peer);
                now
            });
            if now.duration_since(since) >= suspicion_timeout {
                verdict.due.push(peer);
            }
        }
        self.since.retain(|peer, _| !failed.contains(peer));
        verdict
    }

    /// Restarts every suspicion's clock at `now`: called for a period in which this
    /// node heard from no majority. Cut off, its peers' silence says as much about
    /// itself as about them, so a suspicion ages only while a majority answers —
    /// else a node whose partition heals would declare, on its first period with a
    /// majority, every peer its probes had not reached again yet (the simulator
    /// found it: partition seed 196, an isolated node healed and declared two of
    /// the four).
    pub fn restart_clocks(&mut self, now: Instant) {
        for since in self.since.values_mut() {
            *since = now;
        }
    }

    /// Forgets the suspicions of `peers`, now declared failed.
    pub fn declared(&mut self, peers: &[usize]) {
        for peer in peers {
            self.since.remove(peer);
        }
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

    /// A node's detector memory and whom it heard from, fed as the detector feeds
    /// them: every answered probe is a message heard at that instant.
    struct Node {
        suspicions: Suspicions,
        heard: Heard,
    }

    impl Node {
        fn new(t0: Instant) -> Self {
            Self {
                suspicions: Suspicions::new(t0, GRACE),
                heard: Heard::default(),
            }
        }

        fn period(&mut self, now: Instant, answers: &[(usize, bool)]) -> Verdict {
            self.period_failed(now, answers, &BTreeSet::new())
        }

        fn period_failed(
            &mut self,
            now: Instant,
            answers: &[(usize, bool)],
            failed: &BTreeSet<usize>,
        ) -> Verdict {
            for &(peer, answered) in answers {
                if answered {
                    self.heard.heard(peer, now);
                }
            }
            let verdict = self
                .suspicions
                .observe(now, answers, &self.heard, TIMEOUT, failed);
            self.suspicions.declared(&verdict.due);
            verdict
        }
    }

    #[test]
    fn a_silent_peer_is_due_after_the_suspicion_timeout_and_not_before() {
        let t0 = Instant::now();
        let mut n = Node::new(t0);
        n.period(t0, &[(1, true), (2, true)]);
        let first = n.period(t0 + 250 * MS, &[(1, false), (2, true)]);
        assert_eq!(first.suspected, vec![1]);
        assert!(first.due.is_empty());
        let before = n.period(t0 + 1749 * MS, &[(1, false), (2, true)]);
        assert_eq!(before, Verdict::default());
        assert_eq!(n.suspicions.suspected(), BTreeSet::from([1]));
        let after = n.period(t0 + 1750 * MS, &[(1, false), (2, true)]);
        assert_eq!(after.due, vec![1]);
        assert!(
            n.suspicions.suspected().is_empty(),
            "a declared peer is no longer suspected"
        );
    }

    #[test]
    fn a_suspicion_ages_only_while_a_majority_answers() {
        let t0 = Instant::now();
        let mut n = Node::new(t0);
        n.period(t0, &[(1, true), (2, true)]);
        n.period(t0 + 250 * MS, &[(1, false), (2, false)]);
        // Cut off from 0.25 s to 3 s: the clocks restart every period.
        n.suspicions.restart_clocks(t0 + 3000 * MS);
        let healed = n.period(t0 + 3000 * MS, &[(1, false), (2, true)]);
        assert!(healed.due.is_empty(), "{healed:?}");
        let later = n.period(t0 + 4500 * MS, &[(1, false), (2, true)]);
        assert_eq!(later.due, vec![1]);
    }

    #[test]
    fn a_suspect_not_probed_in_a_period_keeps_its_suspicion_and_its_clock() {
        let t0 = Instant::now();
        let mut n = Node::new(t0);
        n.period(t0, &[(1, true), (2, true)]);
        n.period(t0 + MS, &[(1, false)]);
        assert_eq!(n.period(t0 + 500 * MS, &[(2, true)]), Verdict::default());
        assert_eq!(n.suspicions.suspected(), BTreeSet::from([1]));
        assert_eq!(n.period(t0 + MS + TIMEOUT, &[(1, false)]).due, vec![1]);
    }

    #[test]
    fn an_answer_clears_a_suspicion_and_the_next_silence_starts_the_clock_again() {
        let t0 = Instant::now();
        let mut n = Node::new(t0);
        n.period(t0, &[(1, true), (2, true)]);
        n.period(t0 + 100 * MS, &[(1, false), (2, true)]);
        let cleared = n.period(t0 + 1000 * MS, &[(1, true), (2, true)]);
        assert_eq!(cleared.cleared, vec![1]);
        // Silent again: suspected anew, so 1.5 s from now, not from the first time.
        n.period(t0 + 1200 * MS, &[(1, false), (2, true)]);
        assert!(n
            .period(t0 + 2000 * MS, &[(1, false), (2, true)])
            .due
            .is_empty());
        assert_eq!(
            n.period(t0 + 2700 * MS, &[(1, false), (2, true)]).due,
            vec![1]
        );
    }

    #[test]
    fn any_message_from_a_suspect_clears_it_even_unprobed() {
        let t0 = Instant::now();
        let mut n = Node::new(t0);
        n.period(t0, &[(1, true), (2, true)]);
        n.period(t0 + MS, &[(1, false)]);
        // Peer 1 probes this node (answer_probe records it); this period probes 2.
        n.heard.heard(1, t0 + 300 * MS);
        let verdict = n.period(t0 + 400 * MS, &[(2, true)]);
        assert_eq!(verdict.cleared, vec![1]);
        assert!(n.suspicions.suspected().is_empty());
        // A message from before the suspicion clears nothing.
        n.period(t0 + 500 * MS, &[(1, false)]);
        n.heard.heard(1, t0 + 450 * MS);
        assert!(n.period(t0 + 600 * MS, &[]).cleared.is_empty());
    }

    #[test]
    fn a_peer_never_heard_from_is_spared_until_the_startup_grace_is_over() {
        let t0 = Instant::now();
        let mut n = Node::new(t0);
        for ms in (0..30_000).step_by(250) {
            assert_eq!(n.period(t0 + ms * MS, &[(3, false)]), Verdict::default());
        }
        let late = n.period(t0 + GRACE, &[(3, false)]);
        assert_eq!(late.suspected, vec![3]);
        // A peer that answered once is suspected at once, grace or not.
        let mut n = Node::new(t0);
        n.period(t0, &[(4, true)]);
        assert_eq!(n.period(t0 + MS, &[(4, false)]).suspected, vec![4]);
    }

    #[test]
    fn a_peer_that_probed_this_node_is_not_spared_by_the_startup_grace() {
        let t0 = Instant::now();
        let mut n = Node::new(t0);
        n.suspicions.started([5]);
        assert_eq!(
            n.period(t0 + MS, &[(5, false), (6, true)]).suspected,
            vec![5]
        );
        assert_eq!(
            n.period(t0 + MS + TIMEOUT, &[(5, false), (6, true)]).due,
            vec![5]
        );
    }

    #[test]
    fn peers_the_view_already_counts_failed_are_forgotten() {
        let t0 = Instant::now();
        let mut n = Node::new(t0);
        n.period(t0, &[(1, true), (2, true)]);
        n.period(t0 + MS, &[(1, false), (2, false)]);
        n.period_failed(t0 + 2 * MS, &[(1, false)], &BTreeSet::from([2]));
        assert_eq!(n.suspicions.suspected(), BTreeSet::from([1]));
    }

    #[test]
    fn a_node_cut_off_hears_from_no_majority_by_the_time_its_suspicions_are_due() {
        let t0 = Instant::now();
        let live = [1, 2, 3, 4];
        let mut n = Node::new(t0);
        n.period(t0, &[(1, true), (2, true), (3, true), (4, true)]);
        assert!(n.heard.majority(t0, TIMEOUT, &live));
        // Cut off from everyone at t0: whatever it probes is silent.
        n.period(t0 + 250 * MS, &[(1, false), (2, false)]);
        n.period(t0 + 500 * MS, &[(3, false), (4, false)]);
        let due = n.period(t0 + 250 * MS + TIMEOUT, &[(1, false), (2, false)]);
        assert_eq!(due.due, vec![1, 2]);
        let now = t0 + 250 * MS + TIMEOUT;
        assert!(
            !n.heard.majority(now, TIMEOUT, &live),
            "heard from no one since the cut: declares no one"
        );
        assert_eq!(n.heard.stale(now, TIMEOUT, &live), live.to_vec());
    }

    #[test]
    fn a_majority_counts_the_node_itself_and_only_recent_messages() {
        let t0 = Instant::now();
        let mut heard = Heard::default();
        let live = [1, 2, 3, 4];
        heard.heard(1, t0);
        heard.heard(2, t0 + 100 * MS);
        // 3 of 5 (itself, 1 and 2) within the window: a majority.
        assert!(heard.majority(t0 + TIMEOUT, TIMEOUT, &live));
        // Peer 1's message is now too old: 2 of 5.
        assert!(!heard.majority(t0 + TIMEOUT + MS, TIMEOUT, &live));
        assert_eq!(
            heard.stale(t0 + TIMEOUT + MS, TIMEOUT, &live),
            vec![1, 3, 4]
        );
        // Itself and 3: of 4 live nodes no majority, of 3 one.
        heard.heard(3, t0 + 200 * MS);
        let now = t0 + 200 * MS + TIMEOUT;
        assert!(!heard.majority(now, TIMEOUT, &[3, 5, 6]));
        assert!(heard.majority(now, TIMEOUT, &[3, 5]));
        assert!(heard.majority(now, TIMEOUT, &[]), "alone, its own majority");
        assert!(has_quorum(2, 3) && !has_quorum(1, 2) && !has_quorum(2, 4));
        // An older message never moves the last one back.
        heard.heard(3, t0);
        assert_eq!(heard.last(3), Some(t0 + 200 * MS));
        assert_eq!(heard.ever().collect::<Vec<_>>(), vec![1, 2, 3]);
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
                let distinct: BTreeSet<_> = helpers.iter().collect();
                assert_eq!(distinct.len(), helpers.len());
            }
        }
        assert_eq!(indirect_helpers(0, 2, &[2]), Vec::<usize>::new());
        assert_eq!(indirect_helpers(0, 2, &[2, 3]), vec![3]);
    }

    #[test]
    fn different_nodes_ask_different_helpers() {
        let peers = [1, 2, 3, 4, 5];
        let chosen: BTreeSet<Vec<usize>> =
            (0..5).map(|me| indirect_helpers(me, 3, &peers)).collect();
        assert!(chosen.len() > 1, "{chosen:?}");
    }
}
