//! What a storage node sends its peers, as a trait: the protocols (gossip, the
//! detector, anti-entropy, takeover, forwarding) are written against it, so they run
//! the same over gRPC (`grpc_peers`) and over the simulator's
//! in-memory network (`dida-sim`), where delay, loss, duplication, pauses and
//! partitions are decided by a seed.
//!
//! Peers are named by their index in the membership. An implementation applies the
//! node's call deadline (`--rpc-deadline`) to every call, so no call waits forever;
//! callers that need a shorter bound (probes) add their own timeout. A call to a peer
//! that is not listening fails with a status for which
//! [`dida_proto::transport::is_connect_failure`] holds: it certainly had no effect.

use dida_core::membership::NodeUrl;
use dida_proto::storage::{
    ConfigAcceptReply, ConfigAcceptRequest, ConfigCommitReply, ConfigCommitRequest,
    ConfigPrepareReply, ConfigPrepareRequest, DigestReply, DigestRequest, FetchKeyReply,
    FetchKeyRequest, HandbackReply, HandbackRequest, ProbeForReply, ProbeForRequest, ProbeReply,
    ProbeRequest, PushReply, PushRequest, ReadReply, ReadRequest, UpdateIfValueIsReply,
    UpdateIfValueIsRequest, WriteReply, WriteRequest,
};
use tonic::Status;

/// The calls one storage node makes to another.
#[tonic::async_trait]
pub trait PeerTransport: Send + Sync + std::fmt::Debug + 'static {
    /// Prepares to reach member `index`, `id` at `url`, admitted to the cluster
    /// after this node started (a join); why it cannot otherwise.
    fn add_peer(&self, index: usize, id: &str, url: &NodeUrl) -> Result<(), String>;
    /// Hands gossiped records to a replica (`Replication.Push`).
    async fn push(&self, to: usize, request: PushRequest) -> Result<PushReply, Status>;
    /// A direct failure-detector probe, exchanging failed sets.
    async fn probe(&self, to: usize, request: ProbeRequest) -> Result<ProbeReply, Status>;
    /// Asks `to` to probe another node on the caller's behalf.
    async fn probe_for(&self, to: usize, request: ProbeForRequest)
        -> Result<ProbeForReply, Status>;
    /// One anti-entropy comparison of range digests.
    async fn sync_digests(&self, to: usize, request: DigestRequest) -> Result<DigestReply, Status>;
    /// Pulls a replica's versions of one key (a new primary catching up).
    async fn fetch_key(&self, to: usize, request: FetchKeyRequest)
        -> Result<FetchKeyReply, Status>;
    /// A rejoining node's catch-up: the peer adopts its view and returns its
    /// records of the ranges whose digests differ.
    async fn handback(&self, to: usize, request: HandbackRequest) -> Result<HandbackReply, Status>;
    /// Reconfiguration's phase 1 (`reconfig`).
    async fn config_prepare(
        &self,
        to: usize,
        request: ConfigPrepareRequest,
    ) -> Result<ConfigPrepareReply, Status>;
    /// Reconfiguration's phase 2.
    async fn config_accept(
        &self,
        to: usize,
        request: ConfigAcceptRequest,
    ) -> Result<ConfigAcceptReply, Status>;
    /// A decided configuration, for a member that may not know it.
    async fn config_commit(
        &self,
        to: usize,
        request: ConfigCommitRequest,
    ) -> Result<ConfigCommitReply, Status>;
    /// A client read forwarded to a replica of its key.
    async fn read(&self, to: usize, request: ReadRequest) -> Result<ReadReply, Status>;
    /// A client write forwarded to its key's primary.
    async fn write(&self, to: usize, request: WriteRequest) -> Result<WriteReply, Status>;
    /// A client conditional update forwarded to its key's primary.
    async fn update_if_value_is(
        &self,
        to: usize,
        request: UpdateIfValueIsRequest,
    ) -> Result<UpdateIfValueIsReply, Status>;
}
