//! The decisions of reconfiguration, as plain functions over plain state: one
//! single-decree Paxos instance per epoch (Lamport, "Paxos Made Simple"), among the
//! voters of the epoch before it.
//!
//! Each storage node is an acceptor. For the epoch after its decided configuration
//! it keeps the highest ballot it promised and the proposal it last accepted. A
//! proposer carries its own decided configuration (`base`) in every message, so an
//! acceptor that is behind first adopts it — a decided configuration is safe to
//! adopt from anyone — and one that is ahead answers with its own instead. The
//! classic argument then holds per epoch: a value is decided once a majority of
//! `base`'s voters accepted it at one ballot, and any later ballot's phase 1 meets
//! one of them and must propose that value again.

use dida_core::{ClusterConfig, Standing};

/// Orders proposals: a higher round wins, then a higher proposer number. Ballot
/// zero is below every proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Ballot {
    /// Raised by a proposer past every ballot it has seen.
    pub round: u64,
    /// The proposer's member index plus one, so that two proposers never share a
    /// ballot.
    pub proposer: u32,
}

/// One node's acceptor, with the configuration it has decided.
#[derive(Debug, Clone)]
pub(crate) struct Acceptor {
    /// The latest configuration this node knows decided.
    pub decided: ClusterConfig,
    /// The highest ballot promised for epoch `decided.epoch + 1`.
    pub promised: Ballot,
    /// What it accepted for that epoch, at which ballot.
    pub accepted: Option<(Ballot, ClusterConfig)>,
}

/// An acceptor's answer to phase 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Prepared {
    /// Promised; here is what it accepted for the epoch, if anything.
    Promise(Option<(Ballot, ClusterConfig)>),
    /// Refused: it promised this higher ballot.
    Refused(Ballot),
    /// The epoch is decided already: here is a later configuration.
    Decided(ClusterConfig),
}

/// An acceptor's answer to phase 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Accepted {
    /// Accepted.
    Yes,
    /// Refused: it promised this higher ballot.
    Refused(Ballot),
    /// The epoch is decided already: here is a later configuration.
    Decided(ClusterConfig),
}

impl Acceptor {
    /// A fresh acceptor whose decided configuration is `decided`.
    pub fn new(decided: ClusterConfig) -> Self {
        Self {
            decided,
            promised: Ballot::default(),
            accepted: None,
        }
    }

    /// Adopts `config` if it is a later decided configuration of the same
    /// cluster; true if it did. The promise and acceptance of the epoch it decided
    /// are over.
    pub fn learn(&mut self, config: &ClusterConfig) -> bool {
        if config.epoch <= self.decided.epoch || !extends(&self.decided, config) {
            return false;
        }
        self.decided = config.clone();
        self.promised = Ballot::default();
        self.accepted = None;
        true
    }

    /// Phase 1 for the epoch after `base`.
    pub fn prepare(&mut self, base: &ClusterConfig, ballot: Ballot) -> Prepared {
        self.learn(base);
        if self.decided.epoch > base.epoch {
            return Prepared::Decided(self.decided.clone());
        }
        if ballot > self.promised {
            self.promised = ballot;
            Prepared::Promise(self.accepted.clone())
        } else {
            Prepared::Refused(self.promised)
        }
    }

    /// Phase 2 for the epoch after `base`: accepts `value` (which must be a
    /// successor of `base`) unless a higher ballot was promised.
    pub fn accept(
        &mut self,
        base: &ClusterConfig,
        ballot: Ballot,
        value: &ClusterConfig,
    ) -> Accepted {
        self.learn(base);
        if self.decided.epoch > base.epoch {
            return Accepted::Decided(self.decided.clone());
        }
        if ballot < self.promised || !is_successor(&self.decided, value) {
            return Accepted::Refused(self.promised.max(ballot));
        }
        self.promised = ballot;
        self.accepted = Some((ballot, value.clone()));
        Accepted::Yes
    }
}

/// What a proposer proposes in phase 2: the value accepted at the highest ballot
/// among the promises, or its own when none accepted anything.
pub(crate) fn value_to_propose(
    promises: &[Option<(Ballot, ClusterConfig)>],
    own: &ClusterConfig,
) -> ClusterConfig {
    promises
        .iter()
        .flatten()
        .max_by_key(|(ballot, _)| *ballot)
        .map_or_else(|| own.clone(), |(_, value)| value.clone())
}

/// Whether `later` could follow `earlier` through decided changes: same cluster,
/// the same members in the same order (later ones may be appended), each standing
/// only moved forward ([`rank`]).
pub(crate) fn extends(earlier: &ClusterConfig, later: &ClusterConfig) -> bool {
    later.cluster_id == earlier.cluster_id
        && later.members.len() >= earlier.members.len()
        && earlier
            .members
            .iter()
            .zip(&later.members)
            .all(|(a, b)| a.id == b.id && a.url == b.url && rank(b.standing) >= rank(a.standing))
}

/// Whether `next` is one change after `base`: the next epoch, extending it, with
/// exactly one change — one member's standing moved, or one joining member
/// appended and nothing else moved.
pub(crate) fn is_successor(base: &ClusterConfig, next: &ClusterConfig) -> bool {
    let moved = base
        .members
        .iter()
        .zip(&next.members)
        .filter(|(a, b)| a.standing != b.standing)
        .count();
    let one_change = match next.members.len().checked_sub(base.members.len()) {
        Some(0) => moved == 1,
        Some(1) => moved == 0 && next.members.last().map(|m| m.standing) == Some(Standing::Joining),
        _ => false,
    };
    next.epoch == base.epoch + 1 && extends(base, next) && one_change
}

/// The order in which a standing moves: joining, active, leaving, removed (a
/// joining member may also be removed without ever being active).
fn rank(standing: Standing) -> u8 {
    match standing {
        Standing::Joining => 0,
        Standing::Active => 1,
        Standing::Leaving => 2,
        Standing::Removed => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dida_core::cluster::derived_cluster_id;
    use dida_core::Membership;

    fn first() -> ClusterConfig {
        let membership =
            Membership::parse("s1=http://h:1,s2=http://h:2,s3=http://h:3,s4=http://h:4").unwrap();
        ClusterConfig::initial(derived_cluster_id(&membership), &membership)
    }

    fn ballot(round: u64, proposer: u32) -> Ballot {
        Ballot { round, proposer }
    }

    /// Runs one proposer's two phases over `acceptors` (the reachable ones), as
    /// `reconfig` does over the network; `Some` decided value if a majority of
    /// `total` accepted.
    fn round(
        acceptors: &mut [&mut Acceptor],
        total: usize,
        base: &ClusterConfig,
        b: Ballot,
        own: &ClusterConfig,
    ) -> Option<ClusterConfig> {
        let mut promises = Vec::new();
        for acceptor in acceptors.iter_mut() {
            if let Prepared::Promise(accepted) = acceptor.prepare(base, b) {
                promises.push(accepted);
            }
        }
        if promises.len() <= total / 2 {
            return None;
        }
        let value = value_to_propose(&promises, own);
        let mut yes = 0;
        for acceptor in acceptors.iter_mut() {
            if acceptor.accept(base, b, &value) == Accepted::Yes {
                yes += 1;
            }
        }
        (yes > total / 2).then_some(value)
    }

    #[test]
    fn a_later_ballot_must_repropose_what_a_majority_accepted() {
        let base = first();
        let leave_s1 = base.begin_leave("s1", 3).unwrap();
        let leave_s2 = base.begin_leave("s2", 3).unwrap();
        let [mut a, mut b, mut c, mut d] = std::array::from_fn(|_| Acceptor::new(base.clone()));
        // Proposer 1 gets s1's leave accepted by a, b, c (a majority of 4), then
        // is cut off before telling anyone.
        let decided = round(
            &mut [&mut a, &mut b, &mut c],
            4,
            &base,
            ballot(1, 1),
            &leave_s1,
        );
        assert_eq!(decided.as_ref(), Some(&leave_s1));
        // Proposer 2, with its own change, reaches c and d only: no majority.
        assert!(round(&mut [&mut c, &mut d], 4, &base, ballot(2, 2), &leave_s2).is_none());
        // With b, c and d it gets a majority, but must propose s1's leave again.
        let again = round(
            &mut [&mut b, &mut c, &mut d],
            4,
            &base,
            ballot(3, 2),
            &leave_s2,
        );
        assert_eq!(again, Some(leave_s1));
    }

    #[test]
    fn lower_ballots_and_stale_epochs_are_refused() {
        let base = first();
        let next = base.begin_leave("s3", 3).unwrap();
        let mut acceptor = Acceptor::new(base.clone());
        assert_eq!(
            acceptor.prepare(&base, ballot(5, 1)),
            Prepared::Promise(None)
        );
        assert_eq!(
            acceptor.prepare(&base, ballot(4, 2)),
            Prepared::Refused(ballot(5, 1))
        );
        assert_eq!(
            acceptor.accept(&base, ballot(4, 2), &next),
            Accepted::Refused(ballot(5, 1))
        );
        assert_eq!(acceptor.accept(&base, ballot(5, 1), &next), Accepted::Yes);
        assert!(acceptor.learn(&next));
        // A proposer still at the old base learns the decided epoch instead.
        assert_eq!(
            acceptor.prepare(&base, ballot(9, 3)),
            Prepared::Decided(next.clone())
        );
        // An acceptor that is behind adopts the proposer's base first.
        let mut behind = Acceptor::new(base.clone());
        let after = next.finish_leave("s3").unwrap();
        assert_eq!(behind.prepare(&next, ballot(1, 1)), Prepared::Promise(None));
        assert_eq!(behind.decided, next);
        assert_eq!(behind.accept(&next, ballot(1, 1), &after), Accepted::Yes);
    }

    #[test]
    fn only_one_forward_change_is_a_successor() {
        let base = first();
        let next = base.begin_leave("s1", 3).unwrap();
        assert!(is_successor(&base, &next));
        let mut two = next.clone();
        two.members[1].standing = Standing::Leaving;
        assert!(!is_successor(&base, &two), "two changes at once");
        let mut back = next.finish_leave("s1").unwrap();
        back.members[0].standing = Standing::Active;
        back.epoch = 3;
        assert!(!extends(&next, &back), "a standing never moves back");
        let mut other = next.clone();
        other.cluster_id = "other".into();
        assert!(!is_successor(&base, &other));
        let joined = base.begin_join("s9", "http://h:9").unwrap();
        assert!(is_successor(&base, &joined));
        assert!(is_successor(&joined, &joined.finish_join("s9").unwrap()));
        let mut joined_and_moved = joined.clone();
        joined_and_moved.members[0].standing = Standing::Leaving;
        assert!(
            !is_successor(&base, &joined_and_moved),
            "two changes at once"
        );
        let mut joined_active = joined.clone();
        joined_active.members[4].standing = Standing::Active;
        assert!(
            !is_successor(&base, &joined_active),
            "a node joins as joining"
        );
        let mut two_joined = joined.clone();
        two_joined.members.push(two_joined.members[4].clone());
        two_joined.members[5].id = "s10".into();
        assert!(!is_successor(&base, &two_joined));
        let mut acceptor = Acceptor::new(base.clone());
        assert!(!acceptor.learn(&other), "another cluster's configuration");
        assert_eq!(
            acceptor.accept(&base, ballot(1, 1), &two),
            Accepted::Refused(ballot(1, 1))
        );
    }
}
