//! The gRPC [`PeerTransport`]: lazily connected channels to every other storage
//! node, at the address the configuration dials it.
//!
//! Each peer gets two connections: one for the failure detector's probes and one for
//! everything else. A probe must be answered within the detector's deadline even
//! while the data connection is busy — a handback or a burst of pushes fills its
//! HTTP/2 flow-control window, and a probe queued behind them would make a slow link
//! look like a crash. Load alone must never get a live node declared failed.

use dida_proto::reserved::RESERVED_WRITER_HEADER;
use dida_proto::storage::replication_client::ReplicationClient;
use dida_proto::storage::storage_client::StorageClient;
use dida_proto::storage::{
    ConfigAcceptReply, ConfigAcceptRequest, ConfigCommitReply, ConfigCommitRequest,
    ConfigPrepareReply, ConfigPrepareRequest, DigestReply, DigestRequest, FetchKeyReply,
    FetchKeyRequest, HandbackReply, HandbackRequest, ProbeForReply, ProbeForRequest, ProbeReply,
    ProbeRequest, PushReply, PushRequest, ReadReply, ReadRequest, UpdateIfValueIsReply,
    UpdateIfValueIsRequest, WriteReply, WriteRequest,
};
use dida_proto::transport::NodeChannel;
use dida_proto::transport::{lazy_channel, lazy_channel_with_headers, MAX_MESSAGE_BYTES};
use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::Duration;

use dida_core::membership::NodeUrl;
use tonic::Status;

use crate::config::StorageConfig;
use crate::error::ConfigError;
use crate::transport::PeerTransport;

/// The three clients of one peer.
#[derive(Debug, Clone)]
struct PeerClients {
    storage: StorageClient<NodeChannel>,
    replication: ReplicationClient<NodeChannel>,
    /// The probes' own connection (see the module documentation).
    probes: ReplicationClient<NodeChannel>,
}

/// Clients for every member but this node, indexed like the membership; members
/// that join later are added ([`PeerTransport::add_peer`]).
#[derive(Debug)]
pub(crate) struct GrpcPeers {
    peers: RwLock<Vec<Option<PeerClients>>>,
    rpc_deadline: Duration,
    dial_overrides: BTreeMap<String, NodeUrl>,
}

impl GrpcPeers {
    /// Prepares (without connecting) a channel to every member other than `me`, at
    /// the address `config` dials it, with `config.rpc_deadline` on every call.
    pub fn new(config: &StorageConfig, me: usize) -> Result<Self, ConfigError> {
        let peers = Self {
            peers: RwLock::new(Vec::new()),
            rpc_deadline: config.rpc_deadline,
            dial_overrides: config.dial_overrides.clone(),
        };
        for (index, member) in config.membership.members().iter().enumerate() {
            if index == me {
                peers.peers.write().expect("peers lock poisoned").push(None);
                continue;
            }
            peers
                .add_peer(index, &member.id, &member.url)
                .map_err(|reason| ConfigError::PeerAddress {
                    id: member.id.clone(),
                    reason,
                })?;
        }
        Ok(peers)
    }

    /// The clients of a member at `url` (or where `dial_overrides` routes it).
    fn clients(&self, id: &str, url: &NodeUrl) -> anyhow::Result<PeerClients> {
        let url = self.dial_overrides.get(id).unwrap_or(url).to_string();
        let channel = || lazy_channel(&url, self.rpc_deadline);
        let probes = ReplicationClient::new(channel()?);
        // Writes a client sent here are forwarded to the key's primary on this
        // channel, those of the scheduler to dida's own keys included: it says
        // so, and the primary checks this node's certificate or token.
        let channel = lazy_channel_with_headers(
            &url,
            self.rpc_deadline,
            self.rpc_deadline,
            &[(RESERVED_WRITER_HEADER, "storage")],
        )?;
        Ok(PeerClients {
            storage: StorageClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            replication: ReplicationClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            probes,
        })
    }

    fn peer(&self, index: usize) -> Result<PeerClients, Status> {
        self.peers
            .read()
            .expect("peers lock poisoned")
            .get(index)
            .cloned()
            .flatten()
            .ok_or_else(|| Status::internal(format!("no peer {index} to call")))
    }

    fn storage(&self, index: usize) -> Result<StorageClient<NodeChannel>, Status> {
        Ok(self.peer(index)?.storage)
    }

    fn replication(&self, index: usize) -> Result<ReplicationClient<NodeChannel>, Status> {
        Ok(self.peer(index)?.replication)
    }

    fn prober(&self, index: usize) -> Result<ReplicationClient<NodeChannel>, Status> {
        Ok(self.peer(index)?.probes)
    }
}

#[tonic::async_trait]
impl PeerTransport for GrpcPeers {
    fn add_peer(&self, index: usize, id: &str, url: &NodeUrl) -> Result<(), String> {
        let clients = self.clients(id, url).map_err(|e| format!("{e:#}"))?;
        let mut peers = self.peers.write().expect("peers lock poisoned");
        if peers.len() <= index {
            peers.resize(index + 1, None);
        }
        peers[index] = Some(clients);
        Ok(())
    }

    async fn push(&self, to: usize, request: PushRequest) -> Result<PushReply, Status> {
        Ok(self.replication(to)?.push(request).await?.into_inner())
    }

    async fn probe(&self, to: usize, request: ProbeRequest) -> Result<ProbeReply, Status> {
        Ok(self.prober(to)?.probe(request).await?.into_inner())
    }

    async fn probe_for(
        &self,
        to: usize,
        request: ProbeForRequest,
    ) -> Result<ProbeForReply, Status> {
        Ok(self.prober(to)?.probe_for(request).await?.into_inner())
    }

    async fn sync_digests(&self, to: usize, request: DigestRequest) -> Result<DigestReply, Status> {
        Ok(self
            .replication(to)?
            .sync_digests(request)
            .await?
            .into_inner())
    }

    async fn fetch_key(
        &self,
        to: usize,
        request: FetchKeyRequest,
    ) -> Result<FetchKeyReply, Status> {
        Ok(self.replication(to)?.fetch_key(request).await?.into_inner())
    }

    async fn handback(&self, to: usize, request: HandbackRequest) -> Result<HandbackReply, Status> {
        Ok(self.replication(to)?.handback(request).await?.into_inner())
    }

    async fn config_prepare(
        &self,
        to: usize,
        request: ConfigPrepareRequest,
    ) -> Result<ConfigPrepareReply, Status> {
        Ok(self
            .replication(to)?
            .config_prepare(request)
            .await?
            .into_inner())
    }

    async fn config_accept(
        &self,
        to: usize,
        request: ConfigAcceptRequest,
    ) -> Result<ConfigAcceptReply, Status> {
        Ok(self
            .replication(to)?
            .config_accept(request)
            .await?
            .into_inner())
    }

    async fn config_commit(
        &self,
        to: usize,
        request: ConfigCommitRequest,
    ) -> Result<ConfigCommitReply, Status> {
        Ok(self
            .replication(to)?
            .config_commit(request)
            .await?
            .into_inner())
    }

    async fn read(&self, to: usize, request: ReadRequest) -> Result<ReadReply, Status> {
        Ok(self.storage(to)?.read(request).await?.into_inner())
    }

    async fn write(&self, to: usize, request: WriteRequest) -> Result<WriteReply, Status> {
        Ok(self.storage(to)?.write(request).await?.into_inner())
    }

    async fn update_if_value_is(
        &self,
        to: usize,
        request: UpdateIfValueIsRequest,
    ) -> Result<UpdateIfValueIsReply, Status> {
        Ok(self
            .storage(to)?
            .update_if_value_is(request)
            .await?
            .into_inner())
    }
}
