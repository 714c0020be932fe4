//! The narrow context every background protocol of a node works in: who the node
//! is, its view of which peers failed, how it reaches them, and its counters.
//!
//! Gossip, the detector, anti-entropy and takeover take a [`Peering`] (plus, for the
//! last two, the store and the outboxes) instead of the whole node, so each can be
//! run and tested on its own, over any [`PeerTransport`]. Time is tokio's clock,
//! which the simulator pauses and advances.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use dida_core::Ring;
use tokio::sync::Notify;
use tonic::Status;
use tracing::{error, info};

use crate::config::StorageConfig;
use crate::stats::ReplicationStats;
use crate::transport::PeerTransport;
use crate::view::{View, ViewCell};

/// One node's identity, view, transport and counters.
#[derive(Debug)]
pub(crate) struct Peering {
    pub config: StorageConfig,
    /// This node's index in the membership (and so on the ring).
    pub me: usize,
    /// Which nodes have failed, and the ring of the live ones.
    pub view: ViewCell,
    /// Told at every change of the view (anti-entropy re-replicates at once).
    pub view_changed: Notify,
    /// Set when the other nodes declared this node failed: it then stops serving.
    pub fenced: AtomicBool,
    /// Peers the detector currently suspects (for `Status`).
    pub suspected: Mutex<BTreeSet<usize>>,
    /// Peers that have probed this node: they have started, so the detector's
    /// start-up grace no longer spares them even if none of its own probes reached
    /// them yet.
    pub heard_from: Mutex<BTreeSet<usize>>,
    pub transport: Arc<dyn PeerTransport>,
    pub stats: ReplicationStats,
}

impl Peering {
    /// The context of member `config.id`, reaching its peers through `transport`.
    pub fn new(config: StorageConfig, transport: Arc<dyn PeerTransport>) -> anyhow::Result<Self> {
        config.validate()?;
        let me = config.membership.index_of(&config.id)?;
        Ok(Self {
            me,
            view: ViewCell::new(&config.membership, config.vnodes, config.replication_factor),
            view_changed: Notify::new(),
            fenced: AtomicBool::new(false),
            suspected: Mutex::new(BTreeSet::new()),
            heard_from: Mutex::new(BTreeSet::new()),
            transport,
            stats: ReplicationStats::default(),
            config,
        })
    }

    /// Id of member `index`.
    pub fn id_of(&self, index: usize) -> &str {
        &self.config.membership.members()[index].id
    }

    /// URL of member `index`, for error messages.
    pub fn url_of(&self, index: usize) -> String {
        self.config.membership.members()[index].url.to_string()
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        self.id_of(self.me)
    }

    /// The ring of the live nodes, as this node currently sees it.
    pub fn ring(&self) -> Arc<Ring> {
        self.view.ring()
    }

    /// The peers `view` counts alive (a snapshot the caller also takes its ring or
    /// failed set from, so they agree).
    pub fn live_peers(&self, view: &View) -> Vec<usize> {
        (0..self.config.membership.len())
            .filter(|&n| n != self.me && !view.failed.contains(&n))
            .collect()
    }

    /// Whether the other nodes declared this node failed.
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Relaxed)
    }

    /// Refuses service once fenced: a node declared failed behaves as if crashed.
    /// The refusal is `ABORTED`, the code that tells clients nothing was applied
    /// and they may retry — here at the key's new primary, once they have the view
    /// in which this node failed.
    pub fn check_serving(&self) -> Result<(), Status> {
        if self.is_fenced() {
            return Err(Status::aborted(format!(
                "storage node {} was declared failed by its peers and has stopped serving; \
                 nothing was applied",
                self.id()
            )));
        }
        Ok(())
    }

    /// Ids of the nodes this node knows to have failed.
    pub fn failed_ids(&self) -> Vec<String> {
        self.view
            .current()
            .failed
            .iter()
            .map(|&n| self.id_of(n).to_string())
            .collect()
    }

    /// Adds the failed nodes another node told us about (unknown ids are ignored).
    pub fn learn_failed_ids(&self, ids: &[String]) {
        let nodes: Vec<usize> = ids
            .iter()
            .filter_map(|id| self.config.membership.index_of(id).ok())
            .collect();
        if !nodes.is_empty() {
            self.learn_failed(nodes);
        }
    }

    /// Adds `nodes` to this node's view. If the view changed, re-replication starts
    /// at once; if it names this node, the node fences itself.
    pub fn learn_failed(&self, nodes: Vec<usize>) {
        let Some(view) = self.view.mark_failed(nodes) else {
            return;
        };
        let failed: Vec<&str> = view.failed.iter().map(|&n| self.id_of(n)).collect();
        if view.failed.contains(&self.me) {
            if !self.fenced.swap(true, Ordering::Relaxed) {
                error!(
                    node = self.id(),
                    ?failed,
                    "the other storage nodes declared this node failed: it stops serving"
                );
            }
            return;
        }
        info!(
            node = self.id(),
            epoch = view.epoch,
            ?failed,
            "view changed"
        );
        self.view_changed.notify_waiters();
    }
}
