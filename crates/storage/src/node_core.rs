//! One storage node's protocol core: the parts each protocol works with, the
//! background tasks that run them, and the entry point of every message a client
//! or a peer sends the node.
//!
//! A [`Node`] does no I/O of its own: it reaches its peers through the
//! [`PeerTransport`] it is given and runs on tokio's clock. The gRPC services
//! (`api`, `peer_service`) and the simulator (`dida-sim`) both drive the same
//! `Node` — the first from sockets, the second from an in-memory network under a
//! seed. Each entry point hands its message to the protocol it belongs to:
//! `routing` (client requests), `write_path` (a primary's writes and the key
//! pulls of a takeover), `gossip` (pushes), `anti_entropy` (digests), `detector`
//! (probes) and `rejoin` (handbacks).

use std::sync::Arc;

use dida_core::{MemberState, Ring};
use dida_proto::storage::{
    ConfigAcceptReply, ConfigAcceptRequest, ConfigCommitReply, ConfigCommitRequest,
    ConfigPrepareReply, ConfigPrepareRequest, DigestReply, DigestRequest, FetchKeyReply,
    FetchKeyRequest, HandbackReply, HandbackRequest, JoinReply, JoinRequest, MembersReply,
    ProbeForReply, ProbeForRequest, ProbeReply, ProbeRequest, PushReply, PushRequest, ReadReply,
    ReadRequest, RemoveMemberReply, RemoveMemberRequest, UpdateIfValueIsReply,
    UpdateIfValueIsRequest, WriteReply, WriteRequest,
};
use futures::future::BoxFuture;
use futures::FutureExt;
use tonic::Status;

use crate::anti_entropy::{self, Repairer};
use crate::config::StorageConfig;
use crate::detector::{self, Detection};
use crate::durable::Persistence;
use crate::error::StorageError;
use crate::gossip::{self, Gossip};
use crate::handoff::{self, Handoff};
use crate::peering::Peering;
use crate::reconfig;
use crate::rejoin::{self, Joiner};
use crate::routing;
use crate::store::MultiVersionStore;
use crate::transport::PeerTransport;
use crate::write_path::{self, WritePath};

/// A storage node's state and protocols, independent of how messages travel.
#[derive(Debug)]
pub struct Node {
    pub(crate) peering: Arc<Peering>,
    pub(crate) store: Arc<MultiVersionStore>,
    pub(crate) gossip: Arc<Gossip>,
    /// What the crash detector shares with the answers to probes.
    pub(crate) detection: Arc<Detection>,
    /// How this node executes writes as a key's primary.
    write_path: WritePath,
    /// The replica number stamped on versions this node creates.
    pub(crate) replica: u32,
}

impl Node {
    /// The node `config.id` of `config.membership`, reaching its peers through
    /// `transport`. Nothing runs until [`Node::background_tasks`] are spawned.
    /// Fails if the settings are invalid or the data directory cannot be used.
    pub fn new(
        config: StorageConfig,
        transport: Arc<dyn PeerTransport>,
    ) -> Result<Self, StorageError> {
        let peering = Arc::new(Peering::new(config, transport)?);
        // A configuration recovered from the data directory takes effect at once.
        reconfig::apply_decided(&peering);
        let config = peering.config();
        let replica = peering.roster().get(peering.me()).replica;
        let store = Arc::new(MultiVersionStore::open(
            config.max_versions,
            &peering.view().initial_ring(),
            Persistence::of(config).as_ref(),
        )?);
        peering.attach_store(store.clone());
        let gossip = Arc::new(Gossip::new(
            peering.roster().len(),
            peering.me(),
            config.gossip_delay,
            config.incarnation,
        ));
        Ok(Self {
            write_path: WritePath::new(peering.clone(), store.clone(), gossip.clone(), replica),
            detection: Arc::new(Detection::default()),
            replica,
            store,
            gossip,
            peering,
        })
    }

    /// The node's protocols that run on their own — a gossip sender per peer,
    /// anti-entropy, handoff, the crash detector and joining — for the caller to spawn (the simulator
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
        tasks.push(
            handoff::run(Handoff {
                peering: self.peering.clone(),
                store: self.store.clone(),
            })
            .boxed(),
        );
        tasks.push(detector::run(self.peering.clone(), self.detection.clone()).boxed());
        tasks.push(reconfig::run(self.peering.clone(), self.store.clone()).boxed());
        tasks.push(
            rejoin::run(Joiner {
                peering: self.peering.clone(),
                store: self.store.clone(),
                gossip: self.gossip.clone(),
                replica: self.replica,
            })
            .boxed(),
        );
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

    /// This process's current incarnation.
    pub fn incarnation(&self) -> u64 {
        self.peering.incarnation()
    }

    /// This node's view: every member's id, incarnation and liveness.
    pub fn member_states(&self) -> Vec<(String, MemberState)> {
        let view = self.peering.view().current();
        (0..self.peering.roster().len())
            .map(|n| (self.peering.id_of(n).to_string(), view.members.get(n)))
            .collect()
    }

    /// Whether the other nodes declared this node failed (it no longer serves).
    pub fn is_fenced(&self) -> bool {
        self.peering.is_fenced()
    }

    /// A client's read: served here if this node replicates the key, else by its
    /// replicas (`routing`).
    pub async fn read(&self, request: ReadRequest) -> Result<ReadReply, Status> {
        routing::read(&self.peering, &self.store, request).await
    }

    /// A client's write: executed here if this node is the key's primary, else
    /// forwarded once to it (`routing`, `write_path`).
    pub async fn write(&self, request: WriteRequest) -> Result<WriteReply, Status> {
        routing::write(&self.peering, &self.write_path, request).await
    }

    /// A client's compare-and-swap, executed by the key's primary like a write.
    pub async fn update_if_value_is(
        &self,
        request: UpdateIfValueIsRequest,
    ) -> Result<UpdateIfValueIsReply, Status> {
        routing::update_if_value_is(&self.peering, &self.write_path, request).await
    }

    /// A peer's gossip push: stored whole or refused whole (`gossip`).
    pub async fn push(&self, request: PushRequest) -> Result<PushReply, Status> {
        gossip::receive_push(&self.peering, &self.store, request)
    }

    /// A peer's side of an anti-entropy round (`anti_entropy`).
    pub async fn sync_digests(&self, request: DigestRequest) -> Result<DigestReply, Status> {
        anti_entropy::answer_digests(&self.peering, &self.store, request)
    }

    /// A peer's probe, exchanging views (`detector`).
    pub async fn probe(&self, request: ProbeRequest) -> Result<ProbeReply, Status> {
        detector::answer_probe(&self.peering, &self.detection, request)
    }

    /// A peer asking this node to probe another on its behalf (`detector`).
    pub async fn probe_for(&self, request: ProbeForRequest) -> Result<ProbeForReply, Status> {
        detector::answer_probe_for(&self.peering, request).await
    }

    /// A rejoining peer's catch-up (`rejoin`).
    pub async fn handback(&self, request: HandbackRequest) -> Result<HandbackReply, Status> {
        rejoin::answer_handback(&self.peering, &self.store, request)
    }

    /// Reconfiguration's phase 1 from a proposing member (`reconfig`).
    pub async fn config_prepare(
        &self,
        request: ConfigPrepareRequest,
    ) -> Result<ConfigPrepareReply, Status> {
        reconfig::answer_prepare(&self.peering, request)
    }

    /// Reconfiguration's phase 2 from a proposing member (`reconfig`).
    pub async fn config_accept(
        &self,
        request: ConfigAcceptRequest,
    ) -> Result<ConfigAcceptReply, Status> {
        reconfig::answer_accept(&self.peering, request)
    }

    /// A decided configuration from a member (`reconfig`).
    pub async fn config_commit(
        &self,
        request: ConfigCommitRequest,
    ) -> Result<ConfigCommitReply, Status> {
        reconfig::answer_commit(&self.peering, request)
    }

    /// The cluster's configuration as this node knows it, and its view
    /// (`dida cluster members`).
    pub fn members(&self) -> MembersReply {
        reconfig::members(&self.peering)
    }

    /// An operator asking that member `id` leave: decided with the other members
    /// (`reconfig`), or refused with the reason.
    pub async fn remove_member(
        &self,
        request: RemoveMemberRequest,
    ) -> Result<RemoveMemberReply, Status> {
        let config = reconfig::remove_member(&self.peering, &request.id, &request.cluster_id)
            .await
            .map_err(|e| e.status())?;
        Ok(RemoveMemberReply {
            config: Some(dida_proto::convert::config_to_wire(&config)),
        })
    }

    /// A node's request to join (`dida storage --join`): decided here, or
    /// refused with the rule it breaks.
    pub async fn admit(&self, request: JoinRequest) -> Result<JoinReply, Status> {
        let ours = self.peering.config();
        if request.vnodes != ours.vnodes
            || request.replication_factor as usize != ours.replication_factor
        {
            return Err(Status::failed_precondition(format!(
                "this cluster places keys with --vnodes {} and --replication-factor {}, the \
                 joining node {:?} with --vnodes {} and --replication-factor {}: start it with \
                 the cluster's; nothing was changed",
                ours.vnodes,
                ours.replication_factor,
                request.id,
                request.vnodes,
                request.replication_factor
            )));
        }
        let config = reconfig::admit(
            &self.peering,
            &request.id,
            &request.url,
            &request.cluster_id,
        )
        .await
        .map_err(|e| e.status())?;
        Ok(JoinReply {
            config: Some(dida_proto::convert::config_to_wire(&config)),
        })
    }

    /// The cluster's decided configuration.
    pub fn cluster_config(&self) -> dida_core::ClusterConfig {
        self.peering.cluster().decided()
    }

    /// Becomes true once the cluster removed this node: it has handed its records
    /// off and should stop.
    pub fn departed(&self) -> tokio::sync::watch::Receiver<bool> {
        self.peering.departed()
    }

    /// A new primary's pull of a key it takes over (`write_path`).
    pub async fn fetch_key(&self, request: FetchKeyRequest) -> Result<FetchKeyReply, Status> {
        write_path::answer_fetch_key(&self.peering, &self.store, request)
    }
}
