//! The state one storage node shares between its gRPC services and background tasks.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use dida_core::{Record, Ring};
use dida_proto::convert::record_from_wire;
use dida_proto::storage::FetchKeyRequest;
use futures::future::join_all;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tonic::Status;
use tracing::{error, info};

use crate::config::StorageConfig;
use crate::gossip::Gossip;
use crate::peers::Peers;
use crate::stats::ReplicationStats;
use crate::store::{CasOutcome, MultiVersionStore};
use crate::view::ViewCell;

/// Everything a storage node knows, shared (behind an `Arc`) by its services and tasks.
#[derive(Debug)]
pub(crate) struct NodeState {
    pub config: StorageConfig,
    /// This node's index in the membership (and so on the ring).
    pub me: usize,
    /// The replica number stamped on versions this node creates.
    pub replica: u32,
    /// Which nodes have crashed, and the ring of the live ones.
    pub view: ViewCell,
    /// Told at every change of the view (anti-entropy re-replicates at once).
    pub view_changed: Notify,
    /// Peers the detector currently suspects (for `Status`).
    pub suspected: Mutex<BTreeSet<usize>>,
    /// Peers that have probed this node: they have started, so the detector's
    /// start-up grace no longer spares them even if none of its own probes reached
    /// them yet.
    pub heard_from: Mutex<BTreeSet<usize>>,
    /// Set when the other nodes declared this node failed: it then stops serving.
    pub fenced: AtomicBool,
    /// Keys this node took over as primary after a crash and has brought up to date.
    pub taken_over: Mutex<HashSet<String>>,
    /// Serializes takeover syncs, so concurrent writes of a key sync it once.
    pub takeover_lock: tokio::sync::Mutex<()>,
    pub store: MultiVersionStore,
    pub peers: Peers,
    pub gossip: Gossip,
    pub stats: ReplicationStats,
}

impl NodeState {
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

    /// Whether this node holds a replica of `key`.
    pub fn replicates(&self, key: &str) -> bool {
        self.ring().replicas(key).contains(&self.me)
    }

    /// Whether the other nodes declared this node failed.
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Relaxed)
    }

    /// Refuses service once fenced: a node declared failed behaves as if crashed.
    pub fn check_serving(&self) -> Result<(), Status> {
        if self.is_fenced() {
            return Err(Status::unavailable(format!(
                "storage node {} was declared failed by its peers and has stopped serving",
                self.id()
            )));
        }
        Ok(())
    }

    /// Ids of the nodes this node knows to have crashed.
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
                    ?failed,
                    "the other storage nodes declared this node failed: it stops serving"
                );
            }
            return;
        }
        info!(epoch = view.epoch, ?failed, "view changed");
        self.view_changed.notify_waiters();
    }

    /// Brings `key` up to date before this node executes its first write or
    /// conditional update of it as primary after a crash (SPEC §2.5): pulls every
    /// version the key's other live replicas hold. The surviving replicas of the
    /// crashed primary are all among them, so once every one has answered (or has
    /// itself been declared failed) this node holds every version that any live node
    /// holds — with `--write-acks N ≥ 2`, every acknowledged write — and the versions
    /// it creates next follow all of them: the total order of §2.2 holds across the
    /// takeover.
    async fn catch_up(&self, key: &str) -> Result<(), Status> {
        let led_from_start = self.view.initial_ring().primary(key) == self.me;
        if led_from_start || self.is_caught_up(key) {
            return Ok(());
        }
        let _one_sync_at_a_time = self.takeover_lock.lock().await;
        if self.is_caught_up(key) {
            return Ok(());
        }
        let deadline = Instant::now() + self.config.ack_timeout;
        loop {
            let ring = self.ring();
            let others: Vec<usize> = ring
                .replicas(key)
                .iter()
                .copied()
                .filter(|&n| n != self.me)
                .collect();
            let pulls = others.iter().map(|&peer| self.fetch_key(peer, key));
            let silent: Vec<&str> = others
                .iter()
                .zip(join_all(pulls).await)
                .filter(|(_, pulled)| !pulled)
                .map(|(&peer, _)| self.id_of(peer))
                .collect();
            if silent.is_empty() {
                info!(key, "took over key as primary");
                self.taken_over
                    .lock()
                    .expect("takeover lock poisoned")
                    .insert(key.to_string());
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Status::unavailable(format!(
                    "node {} became primary of key {key:?} after a crash but could not bring it                      up to date: replica(s) {} did not answer within {:?}; nothing was written",
                    self.id(),
                    silent.join(", "),
                    self.config.ack_timeout
                )));
            }
            // A replica that does not answer is being detected; retry with the view
            // the detector will have updated.
            tokio::time::sleep(self.config.probe_interval).await;
        }
    }

    fn is_caught_up(&self, key: &str) -> bool {
        self.taken_over
            .lock()
            .expect("takeover lock poisoned")
            .contains(key)
    }

    /// Pulls and merges `peer`'s versions of `key`; false if it did not answer.
    async fn fetch_key(&self, peer: usize, key: &str) -> bool {
        let request = FetchKeyRequest {
            from: self.id().to_string(),
            key: key.to_string(),
        };
        let Ok(reply) = self.peers.replication(peer).fetch_key(request).await else {
            return false;
        };
        for wire in reply.into_inner().records {
            if let Ok(record) = record_from_wire(wire) {
                if record.key == key {
                    self.store.merge(&record);
                }
            }
        }
        true
    }

    /// Executes a write as the key's primary, then replicates it (SPEC §2.4).
    pub async fn execute_write(&self, key: &str, value: &str) -> Result<Record, Status> {
        self.catch_up(key).await?;
        let record = self.store.write(key, value, self.replica);
        self.replicate(&record).await?;
        Ok(record)
    }

    /// Executes a conditional update as the key's primary; `None` when the comparison
    /// failed.
    pub async fn execute_cas(
        &self,
        key: &str,
        old: &str,
        new: &str,
    ) -> Result<Option<Record>, Status> {
        self.catch_up(key).await?;
        match self.store.update_if_value_is(key, old, new, self.replica) {
            CasOutcome::Mismatch => Ok(None),
            CasOutcome::Applied(record) => {
                self.replicate(&record).await?;
                Ok(Some(record))
            }
        }
    }

    /// Hands a record this node just created to the other replicas of its key. With
    /// `write_acks > 1`, waits until that many replicas (this one included) hold it.
    async fn replicate(&self, record: &Record) -> Result<(), Status> {
        let others: Vec<usize> = self
            .ring()
            .replicas(&record.key)
            .iter()
            .copied()
            .filter(|&n| n != self.me)
            .collect();
        let needed = self.config.write_acks.min(others.len() + 1) - 1;
        if needed == 0 {
            for &peer in &others {
                self.gossip.enqueue(peer, [record.clone()], None);
            }
            return Ok(());
        }
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
        for &peer in &others {
            self.gossip
                .enqueue(peer, [record.clone()], Some(ack_tx.clone()));
        }
        drop(ack_tx);
        let wait_for_acks = async {
            let mut acked = 0;
            while acked < needed {
                match ack_rx.recv().await {
                    Some(_) => acked += 1,
                    None => break,
                }
            }
            acked
        };
        let acked = tokio::time::timeout(self.config.ack_timeout, wait_for_acks)
            .await
            .unwrap_or(0);
        if acked >= needed {
            return Ok(());
        }
        Err(Status::unavailable(format!(
            "write of key {:?} was applied by primary {} as version {} but fewer than {} of \
             its replicas acknowledged it within {:?}; it is not acknowledged, though \
             replication goes on in the background",
            record.key,
            self.id(),
            record.version,
            self.config.write_acks,
            self.config.ack_timeout,
        )))
    }
}
