//! One storage node's protocol core: its context, store and outboxes, and how it
//! executes a write as a key's primary (catching up after a takeover, then
//! replicating).
//!
//! A [`Node`] does no I/O of its own: it reaches its peers through the
//! [`PeerTransport`] it is given and runs on tokio's clock. The gRPC services
//! (`api`, `replication`) and the simulator (`dida-sim`) both drive the same `Node`
//! — the first from sockets, the second from an in-memory network under a seed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use dida_core::{Record, Ring};
use dida_proto::convert::record_from_wire;
use dida_proto::storage::FetchKeyRequest;
use futures::future::{join_all, BoxFuture};
use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Status;
use tracing::info;

use crate::anti_entropy::{self, Repairer};
use crate::config::StorageConfig;
use crate::detector;
use crate::durable::Persistence;
use crate::gossip::Gossip;
use crate::peering::Peering;
use crate::store::{CasOutcome, MultiVersionStore};
use crate::transport::PeerTransport;

/// A storage node's state and protocols, independent of how messages travel.
#[derive(Debug)]
pub struct Node {
    pub(crate) peering: Arc<Peering>,
    pub(crate) store: Arc<MultiVersionStore>,
    pub(crate) gossip: Arc<Gossip>,
    /// The replica number stamped on versions this node creates.
    pub(crate) replica: u32,
    /// Keys this node took over as primary after a crash and has brought up to date.
    taken_over: Mutex<HashSet<String>>,
    /// Serializes takeover syncs, so concurrent writes of a key sync it once.
    takeover_lock: tokio::sync::Mutex<()>,
}

impl Node {
    /// The node `config.id` of `config.membership`, reaching its peers through
    /// `transport`. Nothing runs until [`Node::background_tasks`] are spawned.
    pub fn new(config: StorageConfig, transport: Arc<dyn PeerTransport>) -> anyhow::Result<Self> {
        let peering = Peering::new(config, transport)?;
        let config = &peering.config;
        Ok(Self {
            replica: config.membership.members()[peering.me].replica,
            store: Arc::new(MultiVersionStore::open(
                config.max_versions,
                peering.view.initial_ring(),
                Persistence::of(config).as_ref(),
            )?),
            gossip: Arc::new(Gossip::new(
                config.membership.len(),
                peering.me,
                config.gossip_delay,
            )),
            peering: Arc::new(peering),
            taken_over: Mutex::new(HashSet::new()),
            takeover_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The node's protocols that run on their own — a gossip sender per peer,
    /// anti-entropy and the crash detector — for the caller to spawn (the simulator
    /// wraps them so a pause or crash of the node stops them).
    pub fn background_tasks(&self) -> Vec<BoxFuture<'static, ()>> {
        let mut tasks = self.gossip.senders(&self.peering);
        tasks.push(
            anti_entropy::run(Repairer {
                peering: self.peering.clone(),
                store: self.store.clone(),
                gossip: self.gossip.clone(),
            })
            .boxed(),
        );
        tasks.push(detector::run(self.peering.clone()).boxed());
        tasks
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        self.peering.id()
    }

    /// The node's store, for in-process inspection (tests, the simulator's checks).
    pub fn store(&self) -> &MultiVersionStore {
        &self.store
    }

    /// The ring of the live nodes as this node sees it.
    pub fn ring(&self) -> Arc<Ring> {
        self.peering.ring()
    }

    /// Ids of the nodes this node counts failed.
    pub fn failed_ids(&self) -> Vec<String> {
        self.peering.failed_ids()
    }

    /// Whether the other nodes declared this node failed (it no longer serves).
    pub fn is_fenced(&self) -> bool {
        self.peering.is_fenced()
    }

    /// Brings `key` up to date before this node executes its first write or
    /// conditional update of it as primary after a crash (SPEC §2.5): pulls every
    /// version the key's other live replicas hold. The surviving replicas of the
    /// crashed primary are all among them, so once every one has answered (or has
    /// itself been declared failed) this node holds every version that any live node
    /// holds — with `--write-acks N ≥ 2`, every acknowledged write — and the versions
    /// it creates next follow all of them: the total order of §2.2 holds across the
    /// takeover. Each pull carries this node's view, which the replica adopts before
    /// answering: from then on it refuses the old primary's pushes (D2).
    async fn catch_up(&self, key: &str) -> Result<(), Status> {
        let state = &self.peering;
        let led_from_start = state.view.initial_ring().primary(key) == state.me;
        if led_from_start || self.is_caught_up(key) {
            return Ok(());
        }
        let _one_sync_at_a_time = self.takeover_lock.lock().await;
        if self.is_caught_up(key) {
            return Ok(());
        }
        let deadline = Instant::now() + state.config.ack_timeout;
        loop {
            let ring = state.ring();
            let others: Vec<usize> = ring
                .replicas(key)
                .iter()
                .copied()
                .filter(|&n| n != state.me)
                .collect();
            let pulls = others.iter().map(|&peer| self.pull_key(peer, key));
            let silent: Vec<&str> = others
                .iter()
                .zip(join_all(pulls).await)
                .filter(|(_, pulled)| !pulled)
                .map(|(&peer, _)| state.id_of(peer))
                .collect();
            if silent.is_empty() {
                info!(node = state.id(), key, "took over key as primary");
                self.taken_over
                    .lock()
                    .expect("takeover lock poisoned")
                    .insert(key.to_string());
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Status::unavailable(format!(
                    "node {} became primary of key {key:?} after a crash but could not bring it \
                     up to date: replica(s) {} did not answer within {:?}; nothing was written",
                    state.id(),
                    silent.join(", "),
                    state.config.ack_timeout
                )));
            }
            // A replica that does not answer is being detected; retry with the view
            // the detector will have updated.
            tokio::time::sleep(state.config.probe_interval).await;
        }
    }

    fn is_caught_up(&self, key: &str) -> bool {
        self.taken_over
            .lock()
            .expect("takeover lock poisoned")
            .contains(key)
    }

    /// Pulls and merges `peer`'s versions of `key`; false if it did not answer.
    async fn pull_key(&self, peer: usize, key: &str) -> bool {
        let state = &self.peering;
        let request = FetchKeyRequest {
            from: state.id().to_string(),
            key: key.to_string(),
            failed: if state.config.fence {
                state.failed_ids()
            } else {
                Vec::new()
            },
        };
        let Ok(reply) = state.transport.fetch_key(peer, request).await else {
            return false;
        };
        for wire in reply.records {
            if let Ok(record) = record_from_wire(wire) {
                if record.key == key {
                    self.store.merge(&record);
                }
            }
        }
        true
    }

    /// Executes a write as the key's primary, then replicates it (SPEC §2.4).
    pub(crate) async fn execute_write(&self, key: &str, value: &str) -> Result<Record, Status> {
        self.catch_up(key).await?;
        let others = self.enough_replicas(key)?;
        let record = self.store.write(key, value, self.replica);
        if !self.replicate(&record, &others).await {
            return Err(self.not_acknowledged(&record));
        }
        Ok(record)
    }

    /// Executes a conditional update as the key's primary; `None` when the comparison
    /// failed.
    pub(crate) async fn execute_cas(
        &self,
        key: &str,
        old: &str,
        new: &str,
    ) -> Result<Option<Record>, Status> {
        self.catch_up(key).await?;
        let others = self.enough_replicas(key)?;
        match self.store.update_if_value_is(key, old, new, self.replica) {
            CasOutcome::Mismatch => {
                // The answer "it holds another value" reveals that value, which
                // may be a write not yet acknowledged (its replicas unreachable):
                // if that write were then lost in a takeover, the client would have
                // seen a value that never was. So the value compared against must
                // be held by --write-acks replicas before the mismatch is told.
                if let Some(current) = self.store.read(key, None) {
                    if !self.replicate(&current, &others).await {
                        return Err(Status::unavailable(format!(
                            "conditional update of key {key:?} found another value (version                              {}) on primary {}, but fewer than {} of its replicas confirmed                              holding it within {:?}; the outcome is unknown",
                            current.version,
                            self.peering.id(),
                            self.peering.config.write_acks,
                            self.peering.config.ack_timeout,
                        )));
                    }
                }
                Ok(None)
            }
            CasOutcome::Applied(record) => {
                if !self.replicate(&record, &others).await {
                    return Err(self.not_acknowledged(&record));
                }
                Ok(Some(record))
            }
        }
    }

    /// The other live replicas of `key`, provided that with this node they can make
    /// up `--write-acks`: a node whose view has fewer (most of the cluster failed,
    /// or it is cut off and its own view is wrong) refuses the write before applying
    /// it, rather than acknowledging a write too few nodes hold.
    fn enough_replicas(&self, key: &str) -> Result<Vec<usize>, Status> {
        let state = &self.peering;
        let others: Vec<usize> = state
            .ring()
            .replicas(key)
            .iter()
            .copied()
            .filter(|&n| n != state.me)
            .collect();
        let needed = state.config.write_acks - 1;
        if others.len() < needed {
            return Err(Status::unavailable(format!(
                "node {} counts only {} live replica(s) of key {key:?}, fewer than \
                 --write-acks {}; nothing was written",
                state.id(),
                others.len() + 1,
                state.config.write_acks
            )));
        }
        Ok(others)
    }

    /// Hands `record` to the `others` replicas of its key. With `write_acks > 1`,
    /// waits until that many replicas (this one included) hold it; false if they
    /// did not within the acknowledgement timeout. A replica that already holds it
    /// acknowledges it again, so this also confirms a record created earlier.
    async fn replicate(&self, record: &Record, others: &[usize]) -> bool {
        let state = &self.peering;
        let needed = state.config.write_acks - 1;
        if needed == 0 {
            for &peer in others {
                self.gossip.enqueue(peer, [record.clone()], None);
            }
            return true;
        }
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
        for &peer in others {
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
        let acked = tokio::time::timeout(state.config.ack_timeout, wait_for_acks)
            .await
            .unwrap_or(0);
        acked >= needed
    }

    /// The error for a record this node applied but too few replicas acknowledged.
    fn not_acknowledged(&self, record: &Record) -> Status {
        let state = &self.peering;
        Status::unavailable(format!(
            "write of key {:?} was applied by primary {} as version {} but fewer than {} of \
             its replicas acknowledged it within {:?}; it is not acknowledged, though \
             replication goes on in the background",
            record.key,
            state.id(),
            record.version,
            state.config.write_acks,
            state.config.ack_timeout,
        ))
    }
}
