//! The gRPC [`PeerTransport`]: lazily connected channels to every other storage
//! node, at the address the configuration dials it.
//!
//! Each peer gets two connections: one for the failure detector's probes and one for
//! everything else. A probe must be answered within the detector's deadline even
//! while the data connection is busy — a handback or a burst of pushes fills its
//! HTTP/2 flow-control window, and a probe queued behind them would make a slow link
//! look like a crash. Load alone must never get a live node declared failed.
//!
//! Client requests a node forwards (a write or conditional update to the key's
//! primary, a read to a replica) travel on one long-lived `Calls` stream per peer
//! (`dida_proto::acked`), as clients' own requests do: a unary call costs request
//! headers, a new HTTP/2 stream and trailers on both ends, several times the
//! message itself, and a profile of `SET` through a node that leads a third of the
//! keys showed that cost dominating the write path.

use dida_proto::acked::{self, AckedLinks, Failure};
use dida_proto::reserved::RESERVED_WRITER_HEADER;
use dida_proto::storage::replication_client::ReplicationClient;
use dida_proto::storage::storage_call_reply::Answer;
use dida_proto::storage::storage_call_request::Call;
use dida_proto::storage::{
    ConfigAcceptReply, ConfigAcceptRequest, ConfigCommitReply, ConfigCommitRequest,
    ConfigPrepareReply, ConfigPrepareRequest, DigestReply, DigestRequest, FetchKeyReply,
    FetchKeyRequest, HandbackReply, HandbackRequest, ProbeForReply, ProbeForRequest, ProbeReply,
    ProbeRequest, PushReply, PushRequest, ReadReply, ReadRequest, StorageCallReply,
    StorageCallRequest, UpdateIfValueIsReply, UpdateIfValueIsRequest, WriteReply, WriteRequest,
};
use dida_proto::transport::NodeChannel;
use dida_proto::transport::{lazy_channel, MAX_MESSAGE_BYTES};
use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::Duration;

use dida_core::membership::NodeUrl;
use tokio::sync::watch;
use tonic::Status;

use crate::config::StorageConfig;
use crate::error::ConfigError;
use crate::transport::PeerTransport;

/// The clients of one peer.
#[derive(Debug, Clone)]
struct PeerClients {
    /// Where the peer is dialled: its forwarded requests' `Calls` stream.
    url: String,
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
    /// Forwarded client requests: one `Calls` stream per peer. They say they may
    /// change dida's own keys (a scheduler's write forwarded to its key's
    /// primary), and the primary checks this node's certificate or token.
    calls: AckedLinks<StorageCallRequest, StorageCallReply>,
    /// Ends the `Calls` streams when the transport is dropped with its node.
    _stop: watch::Sender<()>,
}

impl GrpcPeers {
    /// Prepares (without connecting) a channel to every member other than `me`, at
    /// the address `config` dials it, with `config.rpc_deadline` on every call.
    pub fn new(config: &StorageConfig, me: usize) -> Result<Self, ConfigError> {
        let (stop_signal, stop) = watch::channel(());
        let peers = Self {
            peers: RwLock::new(Vec::new()),
            rpc_deadline: config.rpc_deadline,
            dial_overrides: config.dial_overrides.clone(),
            calls: acked::storage_calls(config.rpc_deadline, stop)
                .with_headers(&[(RESERVED_WRITER_HEADER, "storage")]),
            _stop: stop_signal,
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
        Ok(PeerClients {
            replication: ReplicationClient::new(channel()?)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            probes,
            url,
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

    /// Sends a forwarded client request to peer `index` on its `Calls` stream and
    /// returns the answer, or the status the unary call would have failed with. A
    /// request that never left (no connection) is `ABORTED`: it certainly had no
    /// effect, so the client may retry it.
    async fn forward(&self, index: usize, call: Call) -> Result<Answer, Status> {
        let url = self.peer(index)?.url;
        let reply = self
            .calls
            .send(&url, |seq| StorageCallRequest {
                seq,
                call: Some(call),
            })
            .await
            .map_err(|failure| match failure {
                Failure::NotSent(status) => Status::aborted(format!(
                    "could not reach the peer, nothing was sent: {}",
                    dida_proto::transport::describe(&status)
                )),
                Failure::Refused(status) | Failure::Lost(status) => status,
            })?;
        reply
            .answer
            .ok_or_else(|| Status::internal("a peer answered a forwarded request with nothing"))
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
        match self.forward(to, Call::Read(request)).await? {
            Answer::Read(reply) => Ok(reply),
            _ => Err(mismatched("read")),
        }
    }

    async fn write(&self, to: usize, request: WriteRequest) -> Result<WriteReply, Status> {
        match self.forward(to, Call::Write(request)).await? {
            Answer::Write(reply) => Ok(reply),
            _ => Err(mismatched("write")),
        }
    }

    async fn update_if_value_is(
        &self,
        to: usize,
        request: UpdateIfValueIsRequest,
    ) -> Result<UpdateIfValueIsReply, Status> {
        match self.forward(to, Call::UpdateIfValueIs(request)).await? {
            Answer::UpdateIfValueIs(reply) => Ok(reply),
            _ => Err(mismatched("conditional update")),
        }
    }
}

/// A peer answered a forwarded request with the reply of another kind.
fn mismatched(what: &str) -> Status {
    Status::internal(format!(
        "a peer answered a forwarded {what} with another kind of reply"
    ))
}
