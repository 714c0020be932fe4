//! The state one storage node shares between its gRPC services and background tasks.

use dida_core::{Record, Ring};
use tokio::sync::mpsc;
use tonic::Status;

use crate::gossip::Gossip;
use crate::node::StorageConfig;
use crate::peers::Peers;
use crate::stats::ReplicationStats;
use crate::store::{CasOutcome, MultiVersionStore};

/// Everything a storage node knows, shared (behind an `Arc`) by its services and tasks.
#[derive(Debug)]
pub(crate) struct NodeState {
    pub config: StorageConfig,
    /// This node's index in the membership (and so on the ring).
    pub me: usize,
    /// The replica number stamped on versions this node creates.
    pub replica: u32,
    pub ring: Ring,
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

    /// Whether this node holds a replica of `key`.
    pub fn replicates(&self, key: &str) -> bool {
        self.ring.replicas(key).contains(&self.me)
    }

    /// Executes a write as the key's primary, then replicates it (SPEC §2.4).
    pub async fn execute_write(&self, key: &str, value: &str) -> Result<Record, Status> {
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
            .ring
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
