//! gRPC clients to the other storage nodes, one lazily connected channel each.

use std::time::Duration;

use crate::config::StorageConfig;
use dida_proto::storage::replication_client::ReplicationClient;
use dida_proto::storage::storage_client::StorageClient;
use dida_proto::transport::{lazy_channel, MAX_MESSAGE_BYTES};
use tonic::transport::Channel;

/// Clients for every member but this node, indexed like the membership.
#[derive(Debug)]
pub(crate) struct Peers {
    storage: Vec<Option<StorageClient<Channel>>>,
    replication: Vec<Option<ReplicationClient<Channel>>>,
}

impl Peers {
    /// Prepares (without connecting) a channel to every member other than `me`, at
    /// the address `config` dials it.
    pub fn new(config: &StorageConfig, me: usize, deadline: Duration) -> anyhow::Result<Self> {
        let mut storage = Vec::new();
        let mut replication = Vec::new();
        for (index, member) in config.membership.members().iter().enumerate() {
            if index == me {
                storage.push(None);
                replication.push(None);
                continue;
            }
            let channel = lazy_channel(&config.dial_url(index).to_string(), deadline)
                .map_err(|e| anyhow::anyhow!("bad address for peer {}: {e}", member.id))?;
            storage.push(Some(
                StorageClient::new(channel.clone())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            ));
            replication.push(Some(
                ReplicationClient::new(channel)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            ));
        }
        Ok(Self {
            storage,
            replication,
        })
    }

    /// Storage-API client of peer `index` (cheap to clone).
    pub fn storage(&self, index: usize) -> StorageClient<Channel> {
        self.storage[index]
            .clone()
            .expect("a node never calls itself over the network")
    }

    /// Replication client of peer `index` (cheap to clone).
    pub fn replication(&self, index: usize) -> ReplicationClient<Channel> {
        self.replication[index]
            .clone()
            .expect("a node never calls itself over the network")
    }
}
