//! The members a node knows, by index: the membership it started with, then each
//! node the cluster admitted since (`reconfig`), appended.
//!
//! A member's index names it everywhere — on every ring, in every view, in every
//! per-peer structure — and a join only ever appends, so an index, once given,
//! names the same member for the life of the process. The roster is therefore a
//! list that only grows and whose entries never change, read by every protocol on
//! every message: reads take no lock and borrow the member for as long as the
//! roster lives, and the (rare) appends are serialized by a mutex.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use dida_core::cluster::MAX_MEMBERS;
use dida_core::membership::{Member, MembershipError};
use dida_core::Membership;

/// An append-only list of members, at most [`MAX_MEMBERS`].
#[derive(Debug)]
pub(crate) struct Roster {
    /// Every slot a member may take; slots below `len` are set.
    slots: Box<[OnceLock<Member>]>,
    /// How many slots are set (published after the slot is).
    len: AtomicUsize,
    /// Serializes appends.
    appending: Mutex<()>,
}

impl Roster {
    /// The members of `membership`, in its order.
    pub fn new(membership: &Membership) -> Self {
        let roster = Self {
            slots: (0..MAX_MEMBERS).map(|_| OnceLock::new()).collect(),
            len: AtomicUsize::new(0),
            appending: Mutex::new(()),
        };
        roster.extend(membership);
        roster
    }

    /// Appends the members of `membership` past this roster's length: the
    /// membership of a later configuration, which lists every member this one
    /// does, at the same indices. Returns the indices appended.
    pub fn extend(&self, membership: &Membership) -> std::ops::Range<usize> {
        let _appending = self.appending.lock().expect("roster lock poisoned");
        let start = self.len();
        let end = membership.len().min(self.slots.len());
        for index in start..end {
            let _ = self.slots[index].set(membership.members()[index].clone());
            self.len.store(index + 1, Ordering::Release);
        }
        start..end.max(start)
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Member `index`; it must be below [`Self::len`].
    pub fn get(&self, index: usize) -> &Member {
        self.slots[index]
            .get()
            .expect("a member index below the roster's length")
    }

    /// Every member, by index.
    pub fn iter(&self) -> impl Iterator<Item = &Member> + '_ {
        (0..self.len()).map(|index| self.get(index))
    }

    /// Member ids, by index.
    pub fn ids(&self) -> Vec<String> {
        self.iter().map(|m| m.id.clone()).collect()
    }

    /// The index of the member called `id`.
    pub fn index_of(&self, id: &str) -> Result<usize, MembershipError> {
        self.iter()
            .position(|m| m.id == id)
            .ok_or_else(|| MembershipError::UnknownNode {
                id: id.to_string(),
                known: self.ids().join(","),
            })
    }

    /// Whether some member stamps versions with replica number `replica`.
    pub fn has_replica(&self, replica: u32) -> bool {
        self.iter().any(|m| m.replica == replica)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_roster_only_appends_and_keeps_every_index() {
        let three = Membership::parse("s1=http://h:1,s2=http://h:2,s3=http://h:3").expect("valid");
        let roster = Roster::new(&three);
        assert_eq!(roster.len(), 3);
        assert_eq!(roster.index_of("s2"), Ok(1));
        let four = Membership::in_order(
            roster
                .iter()
                .map(|m| (m.id.clone(), m.url.to_string()))
                .chain([("a0".to_string(), "http://h:4".to_string())]),
        )
        .expect("valid");
        assert_eq!(roster.extend(&four), 3..4);
        assert_eq!(roster.extend(&four), 4..4, "nothing new");
        assert_eq!(roster.extend(&three), 4..4, "never shrinks");
        assert_eq!(roster.get(3).id, "a0");
        assert_eq!(roster.get(3).replica, 4);
        assert!(roster.has_replica(4) && !roster.has_replica(5));
        assert!(roster
            .index_of("s9")
            .unwrap_err()
            .to_string()
            .contains("s1,s2,s3,a0"));
    }
}
