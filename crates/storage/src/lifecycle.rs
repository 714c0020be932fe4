//! A node's life cycle, in one place: which incarnation this process is, whether
//! the other nodes declared it failed (fenced), and since which view it has been
//! alive having caught up.
//!
//! A process starts **joining** at `StorageConfig::incarnation`, out of every ring;
//! `rejoin` catches it up and turns it **alive** (`caught_up`). If its peers declare
//! this incarnation failed, it is **fenced** (`fence_if_declared`): it stops
//! serving, as if crashed, until `rejoin` has started it over as a new, joining
//! incarnation (`next_incarnation`, `start_over`, then `lift_fence`). Its liveness as others see it
//! (joining, alive, failed) is its entry in the view (`view`); this holds what only
//! the process itself knows. The rules are plain functions ([`is_declared`],
//! [`next_incarnation`]), tested without a node.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dida_core::{Liveness, MemberState};

/// The epoch `joined_epoch` holds until the incarnation has caught up: no view has
/// that epoch, so no key counts as led since the node joined.
const NOT_JOINED: u64 = u64::MAX;

/// This process's incarnation, fence and catch-up mark.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    /// The current incarnation: the configured one at start, higher after every
    /// rejoin.
    incarnation: AtomicU64,
    /// The epoch of the view in which this incarnation turned alive, having caught
    /// up ([`NOT_JOINED`] until then): keys it has led in every view since need no
    /// takeover catch-up.
    joined_epoch: AtomicU64,
    /// Set when the other nodes declared this incarnation failed.
    fenced: AtomicBool,
}

impl Lifecycle {
    /// A process starting (joining) as `incarnation`.
    pub fn new(incarnation: u64) -> Self {
        Self {
            incarnation: AtomicU64::new(incarnation),
            joined_epoch: AtomicU64::new(NOT_JOINED),
            fenced: AtomicBool::new(false),
        }
    }

    /// The current incarnation (it grows at every rejoin).
    pub fn incarnation(&self) -> u64 {
        self.incarnation.load(Ordering::Relaxed)
    }

    /// Whether the other nodes declared this incarnation failed: it serves nothing
    /// until it has started over.
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Relaxed)
    }

    /// The epoch of the view this incarnation turned alive in, having caught up
    /// (`u64::MAX` before: no key is then led "since it joined").
    pub fn joined_epoch(&self) -> u64 {
        self.joined_epoch.load(Ordering::Relaxed)
    }

    /// Fences the node if `own` (its entry in a view just adopted) declares the
    /// current incarnation failed; true only the first time, so the caller counts
    /// and logs each fence once.
    pub fn fence_if_declared(&self, own: MemberState) -> bool {
        is_declared(own, self.incarnation()) && !self.fenced.swap(true, Ordering::Relaxed)
    }

    /// Whether `own` (this node's entry in a view) declares the current incarnation
    /// failed.
    pub fn is_declared(&self, own: MemberState) -> bool {
        is_declared(own, self.incarnation())
    }

    /// The incarnation to start over as: above both `known` (what the view holds
    /// of this node) and the current one; `None` if no incarnation is left.
    pub fn next_incarnation(&self, known: u64) -> Option<u64> {
        next_incarnation(known, self.incarnation())
    }

    /// Becomes `incarnation` (from [`Lifecycle::next_incarnation`]), not yet
    /// caught up. The fence stays until [`Lifecycle::lift_fence`], so nothing is
    /// served before the view announces the new incarnation.
    pub fn start_over(&self, incarnation: u64) {
        self.incarnation.store(incarnation, Ordering::Relaxed);
        self.joined_epoch.store(NOT_JOINED, Ordering::Relaxed);
    }

    /// Ends the fence, once the new incarnation is in the view.
    pub fn lift_fence(&self) {
        self.fenced.store(false, Ordering::Relaxed);
    }

    /// Marks the incarnation caught up as of the view of `epoch`.
    pub fn caught_up(&self, epoch: u64) {
        self.joined_epoch.store(epoch, Ordering::Relaxed);
    }
}

/// Whether a view's entry for this node (`own`) declares incarnation `mine` failed:
/// a failure of an older incarnation is over already, and only a failure fences.
pub(crate) fn is_declared(own: MemberState, mine: u64) -> bool {
    own.liveness == Liveness::Failed && own.incarnation == mine
}

/// The incarnation a node starting over takes: above both what its peers know of
/// it (`known`) and its `current` one, so that it supersedes every declaration;
/// `None` past [`MemberState::MAX_INCARNATION`].
pub(crate) fn next_incarnation(known: u64, current: u64) -> Option<u64> {
    MemberState::next_incarnation(known.max(current))
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
    fn only_a_failure_of_the_current_incarnation_fences() {
        assert!(is_declared(state(4, Liveness::Failed), 4));
        assert!(!is_declared(state(3, Liveness::Failed), 4));
        assert!(!is_declared(state(4, Liveness::Alive), 4));
        assert!(!is_declared(state(4, Liveness::Joining), 4));
    }

    #[test]
    fn a_new_incarnation_is_above_what_anyone_knows() {
        let from_view = next_incarnation(9, 4).expect("room left");
        assert!(from_view > 9);
        let own = next_incarnation(2, 4).expect("room left");
        assert!(own > 4);
        assert_eq!(next_incarnation(MemberState::MAX_INCARNATION, 1), None);
    }

    #[test]
    fn a_fence_holds_across_start_over_until_lifted_and_counts_once() {
        let life = Lifecycle::new(4);
        assert!(!life.fence_if_declared(state(3, Liveness::Failed)));
        assert!(life.fence_if_declared(state(4, Liveness::Failed)));
        assert!(!life.fence_if_declared(state(4, Liveness::Failed)), "once");
        life.caught_up(7);
        let next = life.next_incarnation(4).expect("room left");
        assert!(next > 4);
        life.start_over(next);
        assert_eq!(life.incarnation(), next);
        assert_eq!(life.joined_epoch(), NOT_JOINED, "not caught up yet");
        assert!(life.is_fenced());
        life.lift_fence();
        assert!(!life.is_fenced());
        life.caught_up(9);
        assert_eq!(life.joined_epoch(), 9);
    }
}
