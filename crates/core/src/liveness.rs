//! Which storage nodes take part in the ring, SWIM-style: every member has an
//! *incarnation*, a number its process picks anew at every start, and a liveness
//! within it (joining, alive, failed).
//!
//! Views are merged member by member, and a state replaces another only if it is
//! newer: a higher incarnation, or the same incarnation and a later liveness
//! ([`MemberState::supersedes`]). So a failure declared of incarnation 7 overrides
//! that incarnation's own "alive", but not the "joining" of incarnation 8 that its
//! restart announces. Merging is commutative, associative and idempotent, so views
//! converge whatever order the announcements travel in, and a node that restarted
//! is never taken for its crashed predecessor.
//!
//! Storage nodes, clients and the PuppetMaster all use these rules, so they agree on
//! which nodes are in the ring.

use std::fmt;

/// Where a member stands within one incarnation, in the order that wins at equal
/// incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Liveness {
    /// Started and catching up: not in the ring yet, forwards what it is sent.
    Joining,
    /// In the ring.
    Alive,
    /// Declared failed by its peers: out of the ring until a higher incarnation.
    Failed,
}

impl Liveness {
    /// The lowercase name shown by `status` and `dida kv status`.
    pub fn name(self) -> &'static str {
        match self {
            Liveness::Joining => "joining",
            Liveness::Alive => "alive",
            Liveness::Failed => "failed",
        }
    }
}

impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One member's state as some node knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MemberState {
    /// Picked by the member's process at start; grows from one start to the next.
    pub incarnation: u64,
    pub liveness: Liveness,
}

impl MemberState {
    /// What a node assumes of a peer it has heard nothing about: alive, in the
    /// ring, at incarnation 0 — which any real announcement supersedes. Nodes of a
    /// cluster start one after another, and routing to a peer not up yet fails
    /// fast (connection refused) and is retried.
    pub const ASSUMED: MemberState = MemberState {
        incarnation: 0,
        liveness: Liveness::Alive,
    };

    /// What a node assumes of a member the cluster just admitted (a join): joining,
    /// at incarnation 0, so it stays out of every ring until its own
    /// announcement, once it has caught up, says it is alive.
    pub const ADMITTED: MemberState = MemberState {
        incarnation: 0,
        liveness: Liveness::Joining,
    };

    /// The highest incarnation a member may have: 2^62.
    ///
    /// A process's incarnation is the wall clock in milliseconds (about 2^41
    /// today), plus one per start-over, so no honest incarnation comes near it.
    /// Views refuse a state above it, and a start-over that would pass it fails
    /// ([`MemberState::next_incarnation`]): a peer announcing incarnation
    /// `u64::MAX` for some node would otherwise make that node's next start-over
    /// overflow.
    pub const MAX_INCARNATION: u64 = 1 << 62;

    /// The incarnation a process starts over at, above `known` (the highest it or
    /// its peers knew for it); `None` past [`MemberState::MAX_INCARNATION`].
    pub fn next_incarnation(known: u64) -> Option<u64> {
        known
            .checked_add(1)
            .filter(|&next| next <= Self::MAX_INCARNATION)
    }

    /// Whether this state is newer than `other`: it replaces it in a merge.
    pub fn supersedes(&self, other: &MemberState) -> bool {
        (self.incarnation, self.liveness) > (other.incarnation, other.liveness)
    }

    /// Whether the member takes part in the ring in this state.
    pub fn in_ring(&self) -> bool {
        self.liveness == Liveness::Alive
    }
}

/// Every member's state, by membership index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStates(Vec<MemberState>);

impl MemberStates {
    /// `members` members, each [`MemberState::ASSUMED`].
    pub fn assumed(members: usize) -> Self {
        Self(vec![MemberState::ASSUMED; members])
    }

    /// The state of member `index`; [`MemberState::ADMITTED`] for an index past
    /// the list — a member admitted by a configuration a node is still taking in
    /// (its roster may list it a moment before its view does).
    pub fn get(&self, index: usize) -> MemberState {
        self.0.get(index).copied().unwrap_or(MemberState::ADMITTED)
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no members (never, in a node's view).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Lists members up to `members`, each new one in `state`: nodes admitted to
    /// the cluster since (their index follows every earlier member's).
    pub fn grow(&mut self, members: usize, state: MemberState) {
        if members > self.0.len() {
            self.0.resize(members, state);
        }
    }

    /// Every member's state, by index.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = MemberState> + '_ {
        self.0.iter().copied()
    }

    /// Adopts `state` for member `index` if it is newer; true if it was. Indices
    /// outside the membership are ignored.
    pub fn merge(&mut self, index: usize, state: MemberState) -> bool {
        match self.0.get_mut(index) {
            Some(current) if state.supersedes(current) => {
                *current = state;
                true
            }
            _ => false,
        }
    }

    /// Whether member `index` is out of the ring.
    pub fn excluded(&self, index: usize) -> bool {
        !self.get(index).in_ring()
    }

    /// Indices of the members declared failed (in their current incarnation).
    pub fn failed(&self) -> impl Iterator<Item = usize> + '_ {
        self.indices_where(Liveness::Failed)
    }

    /// Indices of the members out of the ring (failed or joining).
    pub fn out_of_ring(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.0.len()).filter(|&n| self.excluded(n))
    }

    fn indices_where(&self, liveness: Liveness) -> impl Iterator<Item = usize> + '_ {
        (0..self.0.len()).filter(move |&n| self.0[n].liveness == liveness)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(incarnation: u64, liveness: Liveness) -> MemberState {
        MemberState {
            incarnation,
            liveness,
        }
    }

    #[test]
    fn a_failure_overrides_its_own_incarnation_but_not_a_restart() {
        let alive7 = state(7, Liveness::Alive);
        let failed7 = state(7, Liveness::Failed);
        let joining8 = state(8, Liveness::Joining);
        assert!(failed7.supersedes(&alive7));
        assert!(!alive7.supersedes(&failed7));
        assert!(joining8.supersedes(&failed7));
        assert!(!failed7.supersedes(&joining8));
        assert!(state(8, Liveness::Alive).supersedes(&joining8));
    }

    #[test]
    fn merging_converges_whatever_the_order() {
        let updates = [
            (0, state(5, Liveness::Alive)),
            (0, state(5, Liveness::Failed)),
            (0, state(9, Liveness::Joining)),
            (1, state(3, Liveness::Failed)),
            (0, state(9, Liveness::Alive)),
        ];
        let mut forward = MemberStates::assumed(2);
        for &(n, s) in &updates {
            forward.merge(n, s);
        }
        let mut backward = MemberStates::assumed(2);
        for &(n, s) in updates.iter().rev() {
            backward.merge(n, s);
        }
        assert_eq!(forward, backward);
        assert_eq!(forward.get(0), state(9, Liveness::Alive));
        assert_eq!(forward.failed().collect::<Vec<_>>(), vec![1]);
        assert!(!forward.excluded(0));
    }

    #[test]
    fn a_start_over_never_passes_the_highest_incarnation() {
        assert_eq!(MemberState::next_incarnation(7), Some(8));
        assert_eq!(
            MemberState::next_incarnation(MemberState::MAX_INCARNATION - 1),
            Some(MemberState::MAX_INCARNATION)
        );
        assert_eq!(
            MemberState::next_incarnation(MemberState::MAX_INCARNATION),
            None
        );
        assert_eq!(MemberState::next_incarnation(u64::MAX), None);
    }

    #[test]
    fn unknown_indices_are_ignored() {
        let mut states = MemberStates::assumed(1);
        assert!(!states.merge(3, state(1, Liveness::Failed)));
    }
}
