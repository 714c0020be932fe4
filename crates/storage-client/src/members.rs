//! The storage nodes a client knows, by index: those it was given, then those the
//! cluster admitted since (`dida storage --join`), learned from the configuration
//! a view carries.
//!
//! Only ever appended to, so an index keeps naming the same node and a borrowed id
//! lives as long as the client: reads take no lock, and the rare appends are
//! serialized. The ring's placement depends on node ids, not on their order, so a
//! client that lists the members in another order than the cluster's
//! configuration still places every key where the nodes do.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use dida_core::cluster::MAX_MEMBERS;
use dida_core::membership::{Member, MembershipError};
use dida_core::Membership;
use dida_proto::storage::storage_client::StorageClient as GrpcClient;
use dida_proto::transport::NodeChannel;

/// One storage node and the channel to it.
#[derive(Debug)]
pub(crate) struct Known {
    pub member: Member,
    /// Its URL, as the key of its `Calls` stream.
    pub url: String,
    pub node: GrpcClient<NodeChannel>,
}

/// An append-only list of the nodes a client knows, at most [`MAX_MEMBERS`].
#[derive(Debug)]
pub(crate) struct KnownMembers {
    slots: Box<[OnceLock<Known>]>,
    len: AtomicUsize,
    appending: Mutex<()>,
}

impl KnownMembers {
    /// An empty list.
    pub fn new() -> Self {
        Self {
            slots: (0..MAX_MEMBERS).map(|_| OnceLock::new()).collect(),
            len: AtomicUsize::new(0),
            appending: Mutex::new(()),
        }
    }

    /// Appends `member` with the channel `connect` makes to it, unless a node of
    /// that id is known or the list is full; returns whether it was appended.
    pub fn append<E>(
        &self,
        member: Member,
        connect: impl FnOnce(&Member) -> Result<GrpcClient<NodeChannel>, E>,
    ) -> Result<bool, E> {
        let _appending = self.appending.lock().expect("members lock poisoned");
        let len = self.len();
        if len == self.slots.len() || self.index_of(&member.id).is_ok() {
            return Ok(false);
        }
        let node = connect(&member)?;
        let url = member.url.to_string();
        let _ = self.slots[len].set(Known { member, url, node });
        self.len.store(len + 1, Ordering::Release);
        Ok(true)
    }

    /// Number of nodes known.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Node `index`; it must be below [`Self::len`].
    pub fn get(&self, index: usize) -> &Known {
        self.slots[index]
            .get()
            .expect("a member index below the list's length")
    }

    /// Every node, by index.
    pub fn iter(&self) -> impl Iterator<Item = &Known> + '_ {
        (0..self.len()).map(|index| self.get(index))
    }

    /// Their ids, by index.
    pub fn ids(&self) -> Vec<&str> {
        self.iter().map(|k| k.member.id.as_str()).collect()
    }

    /// The index of the node called `id`.
    pub fn index_of(&self, id: &str) -> Result<usize, MembershipError> {
        self.iter()
            .position(|k| k.member.id == id)
            .ok_or_else(|| MembershipError::UnknownNode {
                id: id.to_string(),
                known: self.ids().join(","),
            })
    }

    /// The nodes known now, as a membership in this list's order.
    pub fn membership(&self) -> Membership {
        Membership::in_order(
            self.iter()
                .map(|k| (k.member.id.clone(), k.member.url.to_string())),
        )
        .expect("known members have valid, distinct ids")
    }
}
