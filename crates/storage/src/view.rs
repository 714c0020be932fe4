//! A node's view of the cluster: which storage nodes it knows to have crashed, and
//! the ring that follows from it (SPEC §2.5).
//!
//! Nodes fail by crashing and never come back, so a view only ever grows: the set of
//! failed nodes is monotonic and two views are merged by union. Each change bumps the
//! view's `epoch` and rebuilds the ring without the failed nodes
//! ([`dida_core::Ring::without`]), which is what moves primaryship to the next live
//! replica and makes the next live node a replica.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use dida_core::{Membership, Ring};

/// One view: the failed nodes and the ring without them.
#[derive(Debug)]
pub(crate) struct View {
    /// Bumped at every change; 0 is the view with every node alive.
    pub epoch: u64,
    /// Indices of the nodes known to have crashed.
    pub failed: BTreeSet<usize>,
    /// The ring of the live nodes.
    pub ring: Arc<Ring>,
}

/// The current view, replaced wholesale on every change so readers take a consistent
/// snapshot (`current()`) and never hold a lock across an `.await`.
#[derive(Debug)]
pub(crate) struct ViewCell {
    ids: Vec<String>,
    vnodes: u32,
    replication_factor: usize,
    current: RwLock<Arc<View>>,
    /// The ring with every node alive: who led each key before any crash.
    initial_ring: Arc<Ring>,
}

impl ViewCell {
    /// The view of a cluster where every member of `membership` is alive.
    pub fn new(membership: &Membership, vnodes: u32, replication_factor: usize) -> Self {
        let ids: Vec<String> = membership.ids().map(str::to_string).collect();
        let ring = Arc::new(Ring::new(&ids, vnodes, replication_factor));
        Self {
            ids,
            vnodes,
            replication_factor,
            current: RwLock::new(Arc::new(View {
                epoch: 0,
                failed: BTreeSet::new(),
                ring: ring.clone(),
            })),
            initial_ring: ring,
        }
    }

    /// The current view.
    pub fn current(&self) -> Arc<View> {
        self.current.read().expect("view lock poisoned").clone()
    }

    /// The ring of the current view.
    pub fn ring(&self) -> Arc<Ring> {
        self.current().ring.clone()
    }

    /// The ring with every node alive.
    pub fn initial_ring(&self) -> &Ring {
        &self.initial_ring
    }

    /// Runs `apply` unless `node` has failed, holding the view so that no change of
    /// view happens meanwhile: whatever `apply` does is done before any later
    /// [`ViewCell::mark_failed`] returns. Pushes from a peer are stored this way, so
    /// a replica that adopted a view naming their sender failed (a new primary's
    /// catch-up) has stored every push it will ever accept from it (invariant D2).
    ///
    /// `apply` gets the view it runs in and must not read the cell again: a second
    /// read lock taken while a change waits for the write lock deadlocks.
    pub fn unless_failed<R>(&self, node: usize, apply: impl FnOnce(&View) -> R) -> Option<R> {
        let current = self.current.read().expect("view lock poisoned");
        (!current.failed.contains(&node)).then(|| apply(&current))
    }

    /// Adds `nodes` to the failed set. Returns the new view if anything changed.
    pub fn mark_failed(&self, nodes: impl IntoIterator<Item = usize>) -> Option<Arc<View>> {
        let mut current = self.current.write().expect("view lock poisoned");
        let mut failed = current.failed.clone();
        let before = failed.len();
        failed.extend(nodes.into_iter().filter(|&n| n < self.ids.len()));
        if failed.len() == before {
            return None;
        }
        let ring = Ring::without(&self.ids, self.vnodes, self.replication_factor, |n| {
            failed.contains(&n)
        });
        let view = Arc::new(View {
            epoch: current.epoch + 1,
            failed,
            ring: Arc::new(ring),
        });
        *current = view.clone();
        Some(view)
    }
}
