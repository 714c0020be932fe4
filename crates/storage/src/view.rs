//! A node's view of the cluster: every member's incarnation and liveness
//! ([`dida_core::liveness`]), and the ring that follows from it (SPEC §2.5).
//!
//! A member is in the ring only while alive: a node declared failed leaves it, and
//! so does a node that (re)started and is still catching up. A restarted node
//! announces a higher incarnation, which supersedes its failure everywhere, so views
//! move both ways — but each member's state only ever moves forward in the order of
//! [`MemberState::supersedes`], and two views merge member by member. Each change
//! bumps the view's `epoch` and rebuilds the ring without the members out of it
//! ([`dida_core::Ring::without`]), which moves primaryship to the next live replica
//! and back.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};

use dida_core::{Liveness, MemberState, MemberStates, Ring};

/// One view: every member's state and the ring of those alive.
#[derive(Debug)]
pub(crate) struct View {
    /// Bumped at every change; 0 is the view this node started with.
    pub epoch: u64,
    /// Every member's incarnation and liveness.
    pub members: MemberStates,
    /// Indices of the members out of the ring (failed, joining, or departed).
    pub out: BTreeSet<usize>,
    /// Indices of the members the cluster's configuration takes out of every ring
    /// (leaving or removed, `reconfig`), whatever their liveness.
    pub departed: BTreeSet<usize>,
    /// Of those, the removed ones: no longer peers at all (not probed, not synced).
    pub removed: BTreeSet<usize>,
    /// The ring of the alive members.
    pub ring: Arc<Ring>,
    /// Every member's id, by index: the ring's nodes.
    pub ids: Arc<Vec<String>>,
    /// The ring with every member alive: the finest ranges any ring of this
    /// membership has (it splits only when a member joins).
    pub first: Arc<Ring>,
}

impl View {
    /// Whether `node` is still a peer: not removed from the cluster.
    pub fn is_member(&self, node: usize) -> bool {
        !self.removed.contains(&node)
    }

    /// Whether `node` may hand records off to this node: a member alive in this
    /// view, in the ring or leaving it by the configuration's say. One out of the
    /// ring for its liveness (failed, joining) holds nothing it may hand off (D2
    /// fences it like any push).
    pub fn may_hand_off(&self, node: usize) -> bool {
        self.is_member(node) && self.members.get(node).in_ring()
    }

    /// Whether `node` was declared failed in its current incarnation.
    pub fn is_failed(&self, node: usize) -> bool {
        self.members.get(node).liveness == Liveness::Failed
    }

    /// Whether messages of `node`'s incarnation `incarnation` still count: not
    /// superseded by a restart this node knows of, and not declared failed.
    pub fn accepts(&self, node: usize, incarnation: u64) -> bool {
        let known = self.members.get(node);
        incarnation > known.incarnation
            || (incarnation == known.incarnation && known.liveness != Liveness::Failed)
    }
}

/// The current view, replaced wholesale on every change so readers take a consistent
/// snapshot (`current()`) and never hold a lock across an `.await`.
#[derive(Debug)]
pub(crate) struct ViewCell {
    vnodes: u32,
    replication_factor: usize,
    current: RwLock<Arc<View>>,
    /// Every view's ring by epoch, oldest first, so a node can tell whether it led
    /// a key throughout since some view ([`ViewCell::led_throughout`]). Appended
    /// under the write lock of `current`; one entry per change of view.
    history: Mutex<Vec<(u64, Arc<Ring>)>>,
}

impl ViewCell {
    /// The view of a cluster where every member of `ids` is assumed alive,
    /// except this node, `me`, which starts as `own`.
    pub fn new(
        ids: Vec<String>,
        vnodes: u32,
        replication_factor: usize,
        me: usize,
        own: MemberState,
    ) -> Self {
        let first = Arc::new(Ring::new(&ids, vnodes, replication_factor));
        let ids = Arc::new(ids);
        let mut members = MemberStates::assumed(ids.len());
        members.merge(me, own);
        let cell = Self {
            vnodes,
            replication_factor,
            current: RwLock::new(Arc::new(View {
                epoch: 0,
                out: BTreeSet::new(),
                departed: BTreeSet::new(),
                removed: BTreeSet::new(),
                members: members.clone(),
                ring: first.clone(),
                ids: ids.clone(),
                first: first.clone(),
            })),
            history: Mutex::new(Vec::new()),
        };
        let view = cell.build(0, members, BTreeSet::new(), BTreeSet::new(), (ids, first));
        cell.record(&view);
        *cell.current.write().expect("view lock poisoned") = Arc::new(view);
        cell
    }

    fn record(&self, view: &View) {
        self.history
            .lock()
            .expect("view history lock poisoned")
            .push((view.epoch, view.ring.clone()));
    }

    /// Whether `node` was the primary of `key` in every view since `epoch`
    /// (included), the current one too.
    pub fn led_throughout(&self, key: &str, node: usize, epoch: u64) -> bool {
        let history = self.history.lock().expect("view history lock poisoned");
        let first = history.partition_point(|(e, _)| *e < epoch);
        first < history.len()
            && history[first..]
                .iter()
                .all(|(_, ring)| ring.primary(key) == Some(node))
    }

    fn build(
        &self,
        epoch: u64,
        members: MemberStates,
        departed: BTreeSet<usize>,
        removed: BTreeSet<usize>,
        (ids, first): (Arc<Vec<String>>, Arc<Ring>),
    ) -> View {
        let out: BTreeSet<usize> = members
            .out_of_ring()
            .chain(departed.iter().copied())
            .collect();
        let ring = if out.is_empty() {
            first.clone()
        } else {
            Arc::new(Ring::without(
                &ids,
                self.vnodes,
                self.replication_factor,
                |n| out.contains(&n),
            ))
        };
        View {
            epoch,
            members,
            out,
            departed,
            removed,
            ring,
            ids,
            first,
        }
    }

    /// The current view.
    pub fn current(&self) -> Arc<View> {
        self.current.read().expect("view lock poisoned").clone()
    }

    /// The ring of `view` if `node` were alive in it: the ring a joining node
    /// catches up for (a departed node stays out: it catches up for nothing).
    pub fn ring_with_alive(&self, view: &View, node: usize) -> Arc<Ring> {
        let out: BTreeSet<usize> = view
            .out
            .iter()
            .copied()
            .filter(|&n| n != node || view.departed.contains(&n))
            .collect();
        if out.is_empty() {
            return view.first.clone();
        }
        Arc::new(Ring::without(
            &view.ids,
            self.vnodes,
            self.replication_factor,
            |n| out.contains(&n),
        ))
    }

    /// The ring of the current view.
    pub fn ring(&self) -> Arc<Ring> {
        self.current().ring.clone()
    }

    /// The ring with every member alive, of the current membership: the store's
    /// buckets and the ranges a catch-up names.
    pub fn initial_ring(&self) -> Arc<Ring> {
        self.current().first.clone()
    }

    /// Runs `apply` with the current view, holding it so that no change of view
    /// happens meanwhile: whatever `apply` does is done before any later
    /// [`ViewCell::merge`] returns. Pushes from a peer are stored this way (so a
    /// replica that adopted a view naming their sender failed has stored every
    /// push it will ever accept from it, invariant D2), and a primary applies a
    /// write this way (so a node that adopted a view taking the key from it has
    /// applied every write it will ever execute of the key, invariant H1).
    ///
    /// `apply` gets the view it runs in and must not read the cell again: a second
    /// read lock taken while a change waits for the write lock deadlocks.
    pub fn with_current<R>(&self, apply: impl FnOnce(&View) -> R) -> R {
        let current = self.current.read().expect("view lock poisoned");
        apply(&current)
    }

    /// Adopts every state in `updates` that is newer than the one held. Returns the
    /// new view if anything changed.
    pub fn merge(
        &self,
        updates: impl IntoIterator<Item = (usize, MemberState)>,
    ) -> Option<Arc<View>> {
        let mut current = self.current.write().expect("view lock poisoned");
        let mut members = current.members.clone();
        let mut changed = false;
        for (node, state) in updates {
            changed |= members.merge(node, state);
        }
        if !changed {
            return None;
        }
        let view = Arc::new(self.build(
            current.epoch + 1,
            members,
            current.departed.clone(),
            current.removed.clone(),
            (current.ids.clone(), current.first.clone()),
        ));
        self.record(&view);
        *current = view.clone();
        Some(view)
    }

    /// Takes the members of `departed` out of every ring, and those of `removed`
    /// out of the peers, as a newly decided configuration says (`reconfig`).
    /// Returns the new view if anything changed.
    pub fn set_departed(
        &self,
        departed: BTreeSet<usize>,
        removed: BTreeSet<usize>,
    ) -> Option<Arc<View>> {
        let mut current = self.current.write().expect("view lock poisoned");
        if current.departed == departed && current.removed == removed {
            return None;
        }
        let view = Arc::new(self.build(
            current.epoch + 1,
            current.members.clone(),
            departed,
            removed,
            (current.ids.clone(), current.first.clone()),
        ));
        self.record(&view);
        *current = view.clone();
        Some(view)
    }

    /// Lists the members of `ids` past those the view has (nodes the cluster
    /// admitted) as [`MemberState::ADMITTED`], with `first`, the ring of every
    /// member of `ids`, as the new finest ring. The members already listed keep
    /// their states, so the ring is unchanged until an admitted node turns alive.
    pub fn grow(&self, ids: Vec<String>, first: Arc<Ring>) -> Option<Arc<View>> {
        let mut current = self.current.write().expect("view lock poisoned");
        if ids.len() <= current.ids.len() {
            return None;
        }
        let mut members = current.members.clone();
        members.grow(ids.len(), MemberState::ADMITTED);
        let view = Arc::new(self.build(
            current.epoch + 1,
            members,
            current.departed.clone(),
            current.removed.clone(),
            (Arc::new(ids), first),
        ));
        self.record(&view);
        *current = view.clone();
        Some(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell() -> ViewCell {
        let ids = ["a", "b", "c"].map(String::from).to_vec();
        let own = MemberState {
            incarnation: 5,
            liveness: Liveness::Joining,
        };
        ViewCell::new(ids, 8, 2, 0, own)
    }

    #[test]
    fn a_joining_node_is_out_of_its_own_ring_until_alive() {
        let cell = cell();
        assert_eq!(cell.current().out, BTreeSet::from([0]));
        let alive = MemberState {
            incarnation: 5,
            liveness: Liveness::Alive,
        };
        let view = cell.merge([(0, alive)]).expect("changed");
        assert!(view.out.is_empty());
        assert_eq!(view.ring.fingerprint(), cell.initial_ring().fingerprint());
    }

    #[test]
    fn a_restart_supersedes_a_failure_and_old_incarnations_are_refused() {
        let cell = cell();
        let failed = MemberState {
            incarnation: 3,
            liveness: Liveness::Failed,
        };
        let view = cell.merge([(1, failed)]).expect("changed");
        assert!(view.is_failed(1));
        assert!(!view.accepts(1, 3));
        assert!(view.accepts(1, 4));
        let rejoined = MemberState {
            incarnation: 4,
            liveness: Liveness::Alive,
        };
        let view = cell.merge([(1, rejoined)]).expect("changed");
        assert!(!view.is_failed(1));
        assert!(!view.accepts(1, 3));
        assert!(cell.merge([(1, failed)]).is_none(), "stale failure ignored");
    }

    #[test]
    fn leading_throughout_sees_every_view_since() {
        let cell = cell();
        let key = (0..1000)
            .map(|i| format!("k{i}"))
            .find(|k| cell.initial_ring().primary(k) == Some(0))
            .expect("node 0 leads some key");
        let alive = |incarnation| MemberState {
            incarnation,
            liveness: Liveness::Alive,
        };
        let joined = cell.merge([(0, alive(5))]).expect("changed").epoch;
        assert!(cell.led_throughout(&key, 0, joined));
        let failed = MemberState {
            incarnation: 5,
            liveness: Liveness::Failed,
        };
        cell.merge([(0, failed)]);
        let back = cell.merge([(0, alive(6))]).expect("changed").epoch;
        assert!(!cell.led_throughout(&key, 0, joined), "lost it in between");
        assert!(cell.led_throughout(&key, 0, back));
    }
}
