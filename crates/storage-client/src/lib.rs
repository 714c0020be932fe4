//! Client library for the dida storage service.
//!
//! A [`StorageClient`] knows the cluster's membership and derives the same ring as the
//! storage nodes, so it sends every call straight to the right node: writes and
//! conditional updates to the key's primary, reads to one of the key's replicas
//! (rotating between them to spread load, and falling back to the next replica when
//! one fails). Every call has a deadline; a node that does not answer yields a
//! [`ClientError`] naming it, never a hang.
//!
//! **Crashes and rejoins (SPEC §2.5).** The client keeps a view of every storage
//! node's incarnation and liveness, merged by the same rules as the nodes'
//! (`dida_core::liveness`), and routes by the ring of the alive ones, as the nodes
//! do. When a call fails it asks a node for its view ([`StorageClient::refresh_view`]): reads go on
//! to the next replica at once; a write or conditional update that certainly had no
//! effect (its primary refused the connection, or a node answered `ABORTED` because
//! the crash is not yet detected everywhere) is retried, with backoff, at the key's
//! new primary until `failover_deadline`. A write whose outcome is unknown (a timeout
//! or a reset mid-call) is never retried: it could apply twice.
//!
//! Workers use this library for their operators' storage calls, and `dida kv` is a
//! thin command-line shell around it.

pub mod cluster;
mod members;
pub mod registry;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use dida_core::limits::{check_key, check_value};
use dida_core::membership::{Member, NodeUrl};
use dida_core::{
    ClusterConfig, Liveness, MemberState, MemberStates, Membership, MembershipError, Record, Ring,
    Standing, Version,
};
use dida_proto::acked::{self, AckedLinks};
use dida_proto::convert::{
    config_from_wire, liveness_from_wire, record_from_wire, version_from_wire, version_to_wire,
};
use dida_proto::reserved::RESERVED_WRITER_HEADER;
use dida_proto::storage::storage_call_reply::Answer;
use dida_proto::storage::storage_call_request::Call;
use dida_proto::storage::storage_client::StorageClient as GrpcClient;
use dida_proto::storage::{
    ListRecordsRequest, Liveness as WireLiveness, MemberView, PingRequest, ReadReply, ReadRequest,
    StatusReply, StatusRequest, StorageCallReply, StorageCallRequest, UpdateIfValueIsRequest,
    ViewRequest, WriteRequest,
};
use dida_proto::transport::NodeChannel;
use dida_proto::transport::{
    describe, is_connect_failure, lazy_channel_with_headers, MAX_MESSAGE_BYTES,
};
use tokio::sync::watch;

use crate::members::KnownMembers;
use tonic::Code;

/// How a client routes and how long it waits.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Must match the storage nodes' `--replication-factor`.
    pub replication_factor: usize,
    /// Must match the storage nodes' `--vnodes`.
    pub vnodes: u32,
    /// Deadline of every call (connecting included).
    pub deadline: Duration,
    /// How long a write or conditional update whose primary crashed is retried at
    /// the next primary, waiting for the crash to be detected.
    pub failover_deadline: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            replication_factor: 3,
            vnodes: 128,
            deadline: Duration::from_secs(5),
            failover_deadline: Duration::from_secs(10),
        }
    }
}

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The caller named a node that is not a member, or the membership is invalid.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// The key or value breaks a size limit; nothing was sent.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The node could not be reached, or its connection broke mid-call; `cause`
    /// says which, and so whether the call may have been applied.
    #[error("storage node {node} at {url} is unreachable ({cause}): {message}")]
    Unreachable {
        /// Node id.
        node: String,
        /// Node address.
        url: String,
        /// What went wrong on the way, as far as the transport tells.
        cause: Transport,
        /// What the transport said, with the chain of its causes.
        message: String,
    },
    /// The node did not answer within the deadline.
    #[error("storage node {node} at {url} did not answer within {deadline:?}")]
    Timeout {
        /// Node id.
        node: String,
        /// Node address.
        url: String,
        /// The deadline that passed.
        deadline: Duration,
    },
    /// The cluster did not settle (every node alive in every view) in time.
    #[error("the storage cluster did not settle: {0}")]
    NotSettled(String),
    /// The node answered with an error.
    #[error("storage node {node} refused the request ({code:?}): {message}")]
    Rejected {
        /// Node id.
        node: String,
        /// gRPC status code.
        code: Code,
        /// The node's explanation.
        message: String,
    },
    /// The node answered with a malformed reply.
    #[error("storage node {node} sent a malformed reply: {message}")]
    BadReply {
        /// Node id.
        node: String,
        /// What was wrong.
        message: String,
    },
}

impl ClientError {
    /// Whether the call may have taken effect on the cluster despite the error, so
    /// that sending it again could apply it twice. False only when the error proves
    /// it did not: nothing was sent ([`ClientError::Invalid`], a membership error, a
    /// connection never made), or a node refused it before executing it (`ABORTED`
    /// while the primary moves, a bad argument, a failed precondition, an
    /// authentication or authorisation refusal, a node too busy to take it). A
    /// timeout, a connection broken mid-call, `UNAVAILABLE` (the primary may have
    /// applied a write too few replicas acknowledged) or a malformed reply leave the
    /// outcome unknown: true. Callers (workers, the fault suite, `dida kv`) decide
    /// by this, never by the message's text.
    pub fn may_have_applied(&self) -> bool {
        match self {
            ClientError::Membership(_) | ClientError::Invalid(_) | ClientError::NotSettled(_) => {
                false
            }
            ClientError::Unreachable { cause, .. } => cause.may_have_sent(),
            ClientError::Rejected { code, .. } => !matches!(
                code,
                Code::Aborted
                    | Code::InvalidArgument
                    | Code::FailedPrecondition
                    | Code::NotFound
                    | Code::PermissionDenied
                    | Code::Unauthenticated
                    | Code::ResourceExhausted
            ),
            ClientError::Timeout { .. } | ClientError::BadReply { .. } => true,
        }
    }

    /// Whether the cluster (or the named node) could not be reached at all or did
    /// not answer in time, as opposed to answering with a refusal: what `dida`
    /// reports with its "cluster unreachable" exit status.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. }
                | ClientError::Timeout { .. }
                | ClientError::NotSettled(_)
        )
    }

    /// Whether a write or conditional update is worth sending again at the key's
    /// new primary during a failover: it certainly had no effect, and the failure
    /// is one a crash explains (the primary's connection could not be made, or a
    /// node answered `ABORTED`: a forward that could not reach the primary, views
    /// that differ during a failover, or a node its peers declared failed). A
    /// failed TLS handshake is a configuration error no failover mends.
    fn worth_retrying_elsewhere(&self) -> bool {
        match self {
            ClientError::Unreachable { cause, .. } => matches!(
                cause,
                Transport::Refused | Transport::NoRoute | Transport::NotConnected
            ),
            ClientError::Rejected { code, .. } => *code == Code::Aborted,
            _ => false,
        }
    }
}

/// Why a node could not be reached: the typed cause of [`ClientError::Unreachable`].
/// Every variant but [`Transport::Broken`] means the call never left this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The node's host refused the connection: nothing listens at the address
    /// (a crashed or stopped node).
    Refused,
    /// No route to the node's host or network, or the local address is unusable.
    NoRoute,
    /// The TLS handshake failed (a certificate, name or protocol mismatch).
    Tls,
    /// The connection could not be made for another reason (a connect timeout, a
    /// stream that closed before this call was registered on it).
    NotConnected,
    /// The connection was reset or closed after the call may have left: the node
    /// may or may not have executed it.
    Broken,
}

impl Transport {
    /// Whether the call may have reached the node.
    pub fn may_have_sent(self) -> bool {
        self == Transport::Broken
    }

    /// The cause of a failure the transport reports as `status`: `sent` says
    /// whether the call may have left (the acknowledged stream knows; for a unary
    /// call, whatever is not a connect failure may have). A call that never left is
    /// classified by the I/O error in the status's chain of sources.
    fn of(status: &tonic::Status, sent: bool) -> Self {
        if sent {
            return Transport::Broken;
        }
        let mut source = std::error::Error::source(status);
        while let Some(error) = source {
            if let Some(io) = error.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind::*;
                match io.kind() {
                    ConnectionRefused => return Transport::Refused,
                    HostUnreachable | NetworkUnreachable | AddrNotAvailable => {
                        return Transport::NoRoute
                    }
                    // rustls reports a failed handshake as invalid data.
                    InvalidData => return Transport::Tls,
                    _ => {}
                }
            }
            source = error.source();
        }
        Transport::NotConnected
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Refused => "connection refused",
            Transport::NoRoute => "no route to the node",
            Transport::Tls => "TLS handshake failed",
            Transport::NotConnected => "not connected",
            Transport::Broken => "connection broken mid-call",
        })
    }
}

/// What one replica answered to a read of an exact version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRead {
    /// The node that answered.
    pub server: String,
    /// The record, if the replica holds that version.
    pub record: Option<Record>,
    /// True when the replica holds `max_versions` newer versions of the key: the
    /// version was garbage-collected there and will never be held again.
    pub discarded: bool,
}

/// A routing client for the storage service. Cheap to share behind an `Arc`; all
/// methods take `&self`.
#[derive(Debug)]
pub struct StorageClient {
    /// Every node this client knows, with its channel, by index.
    members: KnownMembers,
    /// Headers every call carries, for the channels of members learned later.
    headers: Vec<(&'static str, &'static str)>,
    config: ClientConfig,
    /// Every node's incarnation and liveness as last heard, the ring of those
    /// alive, and the members the cluster's configuration took out of every ring
    /// for good (leaving or removed, `dida cluster remove`).
    view: RwLock<(MemberStates, Arc<Ring>, BTreeSet<usize>)>,
    /// Reads, writes and conditional updates: one `Calls` stream per node.
    calls: AckedLinks<StorageCallRequest, StorageCallReply>,
    /// Dropped with the client, which ends its streams.
    _stop: watch::Sender<()>,
    next_read: AtomicUsize,
}

/// How often nodes that follow the storage view ([`StorageClient::follow_view`]:
/// workers, the scheduler) ask for it: a crash reaches them within this period of
/// being declared.
pub const VIEW_REFRESH: Duration = Duration::from_secs(1);

/// First pause between two attempts of a write during a failover.
const FAILOVER_FIRST_PAUSE: Duration = Duration::from_millis(50);
/// Longest pause between two attempts of a write during a failover.
const FAILOVER_MAX_PAUSE: Duration = Duration::from_millis(500);

impl StorageClient {
    /// A client for the cluster `membership`. No connection is made until a call needs
    /// one.
    pub fn new(membership: Membership, config: ClientConfig) -> Result<Self, ClientError> {
        Self::with_headers(membership, config, &[])
    }

    /// A client for the cluster `membership` that may change dida's own keys
    /// (`_dida/…`, see [`registry`]): every call says so with
    /// [`RESERVED_WRITER_HEADER`]. Only the scheduler, which keeps the registry,
    /// makes one; storage nodes refuse such writes from a caller they cannot
    /// authenticate as the scheduler when TLS or a cluster token is on.
    pub fn for_registry(membership: Membership, config: ClientConfig) -> Result<Self, ClientError> {
        Self::with_headers(membership, config, &[(RESERVED_WRITER_HEADER, "scheduler")])
    }

    /// A client whose every call carries `headers`.
    fn with_headers(
        membership: Membership,
        config: ClientConfig,
        headers: &[(&'static str, &'static str)],
    ) -> Result<Self, ClientError> {
        let ids: Vec<&str> = membership.ids().collect();
        let ring = Ring::new(&ids, config.vnodes, config.replication_factor);
        let (stop_signal, stop) = watch::channel(());
        let client = Self {
            members: KnownMembers::new(),
            headers: headers.to_vec(),
            calls: acked::storage_calls(config.deadline, stop).with_headers(headers),
            _stop: stop_signal,
            config,
            view: RwLock::new((
                MemberStates::assumed(membership.len()),
                Arc::new(ring),
                BTreeSet::new(),
            )),
            next_read: AtomicUsize::new(0),
        };
        for member in membership.members() {
            client
                .members
                .append(member.clone(), |m| client.connect(m))?;
        }
        Ok(client)
    }

    /// A channel to `member`, carrying this client's headers and deadline.
    fn connect(&self, member: &Member) -> Result<GrpcClient<NodeChannel>, ClientError> {
        lazy_channel_with_headers(
            &member.url.to_string(),
            self.config.deadline,
            self.config.deadline,
            &self.headers,
        )
        .map(|channel| {
            GrpcClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES)
        })
        .map_err(|e| ClientError::Invalid(format!("bad URL for {}: {e}", member.id)))
    }

    /// Adds the members `config` lists that this client does not know (nodes
    /// that joined), joining at incarnation 0 — out of its ring until a view says
    /// they are alive. Removed members are left out. Returns whether any was added.
    fn admit(&self, config: &ClusterConfig) -> bool {
        let mut added = false;
        for (index, member) in config.members.iter().enumerate() {
            if member.standing == Standing::Removed || self.members.index_of(&member.id).is_ok() {
                continue;
            }
            let Ok(url) = NodeUrl::parse(&member.url) else {
                continue;
            };
            let member = Member {
                id: member.id.clone(),
                url,
                replica: index as u32 + 1,
            };
            added |= self
                .members
                .append(member, |m| self.connect(m))
                .unwrap_or(false);
        }
        if added {
            let mut view = self.view.write().expect("view lock poisoned");
            view.0.grow(self.members.len(), MemberState::ADMITTED);
        }
        added
    }

    /// The ring of the nodes this client believes alive.
    fn ring(&self) -> Arc<Ring> {
        self.view.read().expect("view lock poisoned").1.clone()
    }

    /// Ids of the storage nodes outside this client's ring: declared failed, or
    /// restarted and still catching up.
    pub fn failed(&self) -> Vec<String> {
        let view = self.view.read().expect("view lock poisoned");
        view.0
            .out_of_ring()
            .map(|n| self.members.get(n).member.id.clone())
            .collect()
    }

    /// Ids of the members the cluster's configuration took out of every ring for
    /// good (leaving or removed), as the views this client merged said: a tool
    /// that cannot ask for the configuration itself (`Members`) still tells a
    /// decommissioned node from a failed one.
    pub fn departed(&self) -> Vec<String> {
        let view = self.view.read().expect("view lock poisoned");
        view.2
            .iter()
            .map(|&n| self.members.get(n).member.id.clone())
            .collect()
    }

    /// Asks the nodes in this client's ring, in turn (then the others: a node out
    /// of it may have restarted), for their view, and merges the first answer
    /// member by member, by incarnation (`dida_core::liveness`). Returns true if
    /// the view changed. Workers call it periodically; every client calls it when a
    /// call fails.
    pub async fn refresh_view(&self) -> bool {
        let candidates: Vec<usize> = {
            let view = self.view.read().expect("view lock poisoned");
            let (in_ring, out): (Vec<usize>, Vec<usize>) =
                (0..self.members.len()).partition(|&n| !view.0.excluded(n));
            in_ring.into_iter().chain(out).collect()
        };
        for node in candidates {
            let Ok(reply) = self
                .members
                .get(node)
                .node
                .clone()
                .view(ViewRequest {})
                .await
            else {
                continue;
            };
            let reply = reply.into_inner();
            let admitted = reply
                .config
                .clone()
                .and_then(|config| config_from_wire(config).ok())
                .is_some_and(|config| self.admit(&config));
            let states = self.states_from_wire(&reply.members);
            let departed = reply
                .departed
                .iter()
                .filter_map(|id| self.members.index_of(id).ok())
                .collect();
            return self.learn(states, departed) | admitted;
        }
        false
    }

    /// Keeps this client's view current by asking for it every `period`, forever.
    /// Nodes that route through the client (workers) or report the cluster's state
    /// (the scheduler) run it as a background task, so every node learns of a crash
    /// (SPEC §2.5) even if it makes no storage call at that moment.
    pub async fn follow_view(self: Arc<Self>, period: Duration) {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if self.refresh_view().await {
                tracing::info!(failed = ?self.failed(), "storage view changed");
            }
        }
    }

    /// Merges `states` and the `departed` members into the view; true if it
    /// changed. A departed member never comes back: its id is not reused.
    fn learn(&self, states: Vec<(usize, MemberState)>, departed: BTreeSet<usize>) -> bool {
        let mut view = self.view.write().expect("view lock poisoned");
        let mut changed = false;
        for (node, state) in states {
            changed |= view.0.merge(node, state);
        }
        for node in departed {
            changed |= view.2.insert(node);
        }
        if !changed {
            return false;
        }
        let ids = self.members.ids();
        let departed = view.2.clone();
        let mut members = view.0.clone();
        // A departed member counts as failed here: out of the ring whatever its
        // liveness, and never the one to fall back to.
        for &node in &departed {
            let known = members.get(node);
            members.merge(
                node,
                MemberState {
                    incarnation: known.incarnation,
                    liveness: Liveness::Failed,
                },
            );
        }
        // Never an empty ring: with every node out of it (all joining at a cold
        // start), route to those not failed, or else to all — a joining node
        // forwards, and any node answers with a clear error.
        let all = 0..ids.len();
        let exclude: Box<dyn Fn(usize) -> bool> = if !all.clone().all(|n| members.excluded(n)) {
            Box::new(|n| members.excluded(n))
        } else if members.failed().count() < ids.len() {
            Box::new(|n| members.get(n).liveness == Liveness::Failed)
        } else {
            Box::new(|_| false)
        };
        view.1 = Arc::new(Ring::without(
            &ids,
            self.config.vnodes,
            self.config.replication_factor,
            exclude,
        ));
        true
    }

    /// The primary of `key` in this client's ring (which is never empty, see
    /// [`StorageClient::learn`]).
    fn primary_index(&self, key: &str) -> usize {
        self.ring()
            .primary(key)
            .expect("a client's ring always has a node")
    }

    /// Runs `attempt` against the current primary of `key`, retrying at the new
    /// primary while a crash is being detected (see the crate documentation).
    async fn at_primary<T, F, Fut>(&self, key: &str, mut attempt: F) -> Result<T, ClientError>
    where
        F: FnMut(usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let deadline = tokio::time::Instant::now() + self.config.failover_deadline;
        let mut pause = FAILOVER_FIRST_PAUSE;
        loop {
            let primary = self.primary_index(key);
            match attempt(primary).await {
                Err(error) if error.worth_retrying_elsewhere() => {
                    if tokio::time::Instant::now() + pause > deadline {
                        return Err(error);
                    }
                    self.refresh_view().await;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(FAILOVER_MAX_PAUSE);
                }
                result => return result,
            }
        }
    }

    /// The storage nodes this client knows: those it was given, and those it
    /// learned joined since.
    pub fn membership(&self) -> Membership {
        self.members.membership()
    }

    /// `view` by this client's member indices; entries for nodes it does not know
    /// are left out.
    fn states_from_wire(&self, view: &[MemberView]) -> Vec<(usize, MemberState)> {
        view.iter()
            .filter_map(|entry| {
                let index = self.members.index_of(&entry.id).ok()?;
                let liveness = WireLiveness::try_from(entry.liveness).ok()?;
                Some((
                    index,
                    MemberState {
                        incarnation: entry.incarnation,
                        liveness: liveness_from_wire(liveness),
                    },
                ))
            })
            .collect()
    }

    /// Ids of the replicas of `key` among the nodes believed alive, primary first.
    pub fn replicas(&self, key: &str) -> Vec<&str> {
        self.ring()
            .replicas(key)
            .iter()
            .map(|&n| self.members.get(n).member.id.as_str())
            .collect()
    }

    /// Id of the primary of `key` among the nodes believed alive.
    pub fn primary(&self, key: &str) -> &str {
        &self.members.get(self.primary_index(key)).member.id
    }

    /// Reads the newest version of `key` (or exactly `version`) from one of its
    /// replicas, trying the others in turn if it fails. Replicas are rotated between
    /// calls to spread the load; a replica that has not yet received a recent write
    /// answers with what it has (SPEC §2.2).
    pub async fn read(
        &self,
        key: &str,
        version: Option<Version>,
    ) -> Result<Option<Record>, ClientError> {
        Ok(self.read_with_server(key, version).await?.1)
    }

    /// Like [`Self::read`], also returning the id of the node that answered.
    pub async fn read_with_server(
        &self,
        key: &str,
        version: Option<Version>,
    ) -> Result<(String, Option<Record>), ClientError> {
        check_key(key).map_err(|e| ClientError::Invalid(e.to_string()))?;
        let mut last_error = None;
        // A second pass, after refreshing the view, reaches the replicas that took
        // over from crashed ones.
        for _pass in 0..2 {
            let ring = self.ring();
            let replicas = ring.replicas(key);
            let start = self.next_read.fetch_add(1, Ordering::Relaxed);
            for offset in 0..replicas.len() {
                let node = replicas[(start + offset) % replicas.len()];
                match self.read_at(node, key, version).await {
                    Ok(record) => return Ok(record),
                    Err(error) => last_error = Some(error),
                }
            }
            if !self.refresh_view().await {
                break;
            }
        }
        Err(last_error.expect("every key has a replica"))
    }

    /// Reads `key` from the named node (which forwards if it is not a replica).
    pub async fn read_from(
        &self,
        node: &str,
        key: &str,
        version: Option<Version>,
    ) -> Result<Option<Record>, ClientError> {
        check_key(key).map_err(|e| ClientError::Invalid(e.to_string()))?;
        Ok(self
            .read_at(self.members.index_of(node)?, key, version)
            .await?
            .1)
    }

    /// Reads exactly `version` of `key` from the named replica, telling apart a
    /// version that has not arrived yet from one the replica discarded for good. This
    /// is what keeps reads consistent within an execution (SPEC §4).
    pub async fn read_exact(
        &self,
        node: &str,
        key: &str,
        version: Version,
    ) -> Result<ReplicaRead, ClientError> {
        check_key(key).map_err(|e| ClientError::Invalid(e.to_string()))?;
        let index = self.members.index_of(node)?;
        let reply = self.read_reply(index, key, Some(version)).await?;
        let discarded = reply.record.is_none()
            && reply.max_versions > 0
            && reply.newer_versions_held >= reply.max_versions;
        let record = reply
            .record
            .map(record_from_wire)
            .transpose()
            .map_err(|e| self.bad_reply(index, e))?;
        Ok(ReplicaRead {
            server: reply.served_by,
            record,
            discarded,
        })
    }

    /// Reads from node `node`; returns who answered (the node, or the replica it
    /// forwarded to) and the record.
    async fn read_at(
        &self,
        node: usize,
        key: &str,
        version: Option<Version>,
    ) -> Result<(String, Option<Record>), ClientError> {
        let reply = self.read_reply(node, key, version).await?;
        let record = reply
            .record
            .map(record_from_wire)
            .transpose()
            .map_err(|e| self.bad_reply(node, e))?;
        Ok((reply.served_by, record))
    }

    async fn read_reply(
        &self,
        node: usize,
        key: &str,
        version: Option<Version>,
    ) -> Result<ReadReply, ClientError> {
        let request = ReadRequest {
            key: key.to_string(),
            version: version.map(version_to_wire),
            forwarded: false,
        };
        match self.call(node, Call::Read(request)).await? {
            Answer::Read(reply) => Ok(reply),
            _ => Err(self.bad_reply(node, "a read answered with another reply")),
        }
    }

    /// Sends one request on the node's `Calls` stream and returns its answer.
    async fn call(&self, node: usize, call: Call) -> Result<Answer, ClientError> {
        let answer = self
            .calls
            .send(&self.members.get(node).url, |seq| StorageCallRequest {
                seq,
                call: Some(call),
            })
            .await
            .map_err(|failure| self.send_failed(node, failure))?;
        answer
            .answer
            .ok_or_else(|| self.bad_reply(node, "an answer without a reply"))
    }

    /// Writes `value` to `key` through its primary; returns the new version. If the
    /// primary crashed, the write goes to the next primary once the crash is detected.
    pub async fn write(&self, key: &str, value: &str) -> Result<Version, ClientError> {
        self.at_primary(key, |primary| self.write_at(primary, key, value))
            .await
    }

    /// Sends a write to the named node, which forwards it to the primary if needed.
    pub async fn write_via(
        &self,
        node: &str,
        key: &str,
        value: &str,
    ) -> Result<Version, ClientError> {
        self.write_at(self.members.index_of(node)?, key, value)
            .await
    }

    async fn write_at(&self, node: usize, key: &str, value: &str) -> Result<Version, ClientError> {
        check_key(key)
            .and_then(|()| check_value(value))
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let request = WriteRequest {
            key: key.to_string(),
            value: value.to_string(),
            forwarded: false,
        };
        let Answer::Write(reply) = self.call(node, Call::Write(request)).await? else {
            return Err(self.bad_reply(node, "a write answered with another reply"));
        };
        reply
            .version
            .map(version_from_wire)
            .ok_or_else(|| self.bad_reply(node, "write reply without a version"))
    }

    /// Compare-and-swap through the key's primary: writes `new` if the newest value of
    /// `key` is `old`. Returns the new version, or `None` if the comparison failed.
    pub async fn update_if_value_is(
        &self,
        key: &str,
        old: &str,
        new: &str,
    ) -> Result<Option<Version>, ClientError> {
        check_key(key)
            .and_then(|()| check_value(old))
            .and_then(|()| check_value(new))
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        self.at_primary(key, |node| async move {
            let request = UpdateIfValueIsRequest {
                key: key.to_string(),
                old_value: old.to_string(),
                new_value: new.to_string(),
                forwarded: false,
            };
            let Answer::UpdateIfValueIs(reply) =
                self.call(node, Call::UpdateIfValueIs(request)).await?
            else {
                return Err(
                    self.bad_reply(node, "a conditional update answered with another reply")
                );
            };
            Ok(reply.version.map(version_from_wire))
        })
        .await
    }

    /// Every record the named node holds, sorted by key then version. Collects
    /// [`StorageClient::list_pages`]; callers that print a large node's records as
    /// they come use that instead.
    pub async fn list(&self, node: &str) -> Result<Vec<Record>, ClientError> {
        let mut records = Vec::new();
        self.list_pages(node, |page| records.extend(page)).await?;
        Ok(records)
    }

    /// Streams every record the named node holds to `each`, a page at a time, in
    /// key then version order, and returns how many there were. The node sends pages
    /// of bounded size (a node of any size can be listed); each page must come
    /// within the client's deadline.
    pub async fn list_pages(
        &self,
        node: &str,
        mut each: impl FnMut(Vec<Record>),
    ) -> Result<usize, ClientError> {
        let index = self.members.index_of(node)?;
        let mut pages = self
            .members
            .get(index)
            .node
            .clone()
            .list_records(ListRecordsRequest {})
            .await
            .map_err(|s| self.call_failed(index, s))?
            .into_inner();
        let mut listed = 0;
        loop {
            let page = tokio::time::timeout(self.config.deadline, pages.message())
                .await
                .map_err(|_| self.timed_out(index))?
                .map_err(|s| self.call_failed(index, s))?;
            let Some(page) = page else {
                return Ok(listed);
            };
            let records = page
                .records
                .into_iter()
                .map(|r| record_from_wire(r).map_err(|e| self.bad_reply(index, e)))
                .collect::<Result<Vec<_>, _>>()?;
            listed += records.len();
            each(records);
        }
    }

    /// The named node's status report.
    pub async fn status(&self, node: &str) -> Result<StatusReply, ClientError> {
        let index = self.members.index_of(node)?;
        Ok(self
            .members
            .get(index)
            .node
            .clone()
            .status(StatusRequest {})
            .await
            .map_err(|s| self.call_failed(index, s))?
            .into_inner())
    }

    /// Waits until every node answers and counts every member alive — a cluster
    /// that just started (every node joins first) or had a node rejoin has then
    /// settled — then adopts that view. Fails after `limit`, naming what was
    /// still missing. Test harnesses and `dida` start-up helpers call it before
    /// their first request.
    pub async fn wait_until_all_alive(&self, limit: Duration) -> Result<(), ClientError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut missing = None;
            let mut views = Vec::new();
            for id in self.members.ids() {
                match self.status(id).await {
                    Ok(status) => {
                        let states = self.states_from_wire(&status.view);
                        let out: Vec<&str> = states
                            .iter()
                            .filter(|(_, state)| !state.in_ring())
                            .map(|&(n, _)| self.members.get(n).member.id.as_str())
                            .collect();
                        if status.fenced || !out.is_empty() || states.len() != self.members.len() {
                            missing = Some(format!("{id} counts {out:?} out of the ring"));
                        }
                        views.push(states);
                    }
                    Err(error) => missing = Some(error.to_string()),
                }
            }
            let Some(missing) = missing else {
                for states in views {
                    self.learn(states, BTreeSet::new());
                }
                return Ok(());
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::NotSettled(format!(
                    "the storage nodes did not all count each other alive within {limit:?}: \
                     {missing}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A no-op call to the named node: the transport baseline and a liveness probe.
    pub async fn ping(&self, node: &str) -> Result<(), ClientError> {
        let index = self.members.index_of(node)?;
        self.members
            .get(index)
            .node
            .clone()
            .ping(PingRequest {})
            .await
            .map_err(|s| self.call_failed(index, s))?;
        Ok(())
    }

    fn call_failed(&self, index: usize, status: tonic::Status) -> ClientError {
        let member = &self.members.get(index).member;
        let (node, url) = (member.id.clone(), member.url.to_string());
        // Statuses made by this process's transport carry the underlying error as
        // their source; statuses a node sent back do not.
        let from_transport = std::error::Error::source(&status).is_some();
        match status.code() {
            Code::DeadlineExceeded | Code::Cancelled => self.timed_out(index),
            _ if from_transport => ClientError::Unreachable {
                node,
                url,
                cause: Transport::of(&status, !is_connect_failure(&status)),
                message: describe(&status),
            },
            code => ClientError::Rejected {
                node,
                code,
                message: status.message().to_string(),
            },
        }
    }

    /// What a failed send on a `Calls` stream means for the caller: a refusal is the
    /// node's answer, as from a call; a request that never left (no connection) is
    /// `Unreachable` with the transport's words, as a refused call was; a request
    /// lost after it may have left is a timeout or an unreachable node whose words do
    /// not claim it was never sent.
    fn send_failed(&self, node: usize, failure: acked::Failure) -> ClientError {
        let member = &self.members.get(node).member;
        let (id, url) = (member.id.clone(), member.url.to_string());
        match failure {
            acked::Failure::Refused(status) => self.call_failed(node, status),
            acked::Failure::Lost(status)
                if matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled) =>
            {
                self.timed_out(node)
            }
            acked::Failure::NotSent(status) => ClientError::Unreachable {
                node: id,
                url,
                cause: Transport::of(&status, false),
                message: describe(&status),
            },
            acked::Failure::Lost(status) => ClientError::Unreachable {
                node: id,
                url,
                cause: Transport::Broken,
                message: describe(&status),
            },
        }
    }

    /// The node did not answer within the client's deadline.
    fn timed_out(&self, index: usize) -> ClientError {
        let member = &self.members.get(index).member;
        ClientError::Timeout {
            node: member.id.clone(),
            url: member.url.to_string(),
            deadline: self.config.deadline,
        }
    }

    fn bad_reply(&self, node: usize, error: impl std::fmt::Display) -> ClientError {
        ClientError::BadReply {
            node: self.members.get(node).member.id.clone(),
            message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client of one node at `url` whose calls wait at most 300 ms.
    fn client_of(url: &str) -> StorageClient {
        let membership = Membership::parse(&format!("s1={url}")).unwrap();
        let config = ClientConfig {
            replication_factor: 1,
            vnodes: 8,
            deadline: Duration::from_millis(300),
            failover_deadline: Duration::from_millis(100),
        };
        StorageClient::new(membership, config).unwrap()
    }

    #[tokio::test]
    async fn departed_members_are_listed_by_id_and_never_come_back() {
        let membership =
            Membership::parse("s1=http://127.0.0.1:1,s2=http://127.0.0.1:2,s3=http://127.0.0.1:3")
                .unwrap();
        let client = StorageClient::new(membership, ClientConfig::default()).unwrap();
        assert!(client.departed().is_empty());
        assert!(client.learn(Vec::new(), BTreeSet::from([2])));
        assert_eq!(client.departed(), ["s3"]);
        assert!(
            !client.learn(Vec::new(), BTreeSet::new()),
            "no view forgets it"
        );
        assert_eq!(client.departed(), ["s3"]);
        assert!(
            !client.replicas("any key").contains(&"s3"),
            "out of the ring"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_typed_and_certainly_not_applied() {
        // A port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = client_of(&format!("http://127.0.0.1:{port}"));
        let error = client.write("k", "v").await.unwrap_err();
        assert!(
            matches!(
                error,
                ClientError::Unreachable {
                    cause: Transport::Refused,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(!error.may_have_applied());
        assert!(error.is_unreachable());
        let error = client.ping("s1").await.unwrap_err();
        assert!(
            matches!(
                error,
                ClientError::Unreachable {
                    cause: Transport::Refused,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_node_that_never_answers_may_have_applied_the_call() {
        // Accepts connections and never speaks.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let _held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let error = client_of(&url).write("k", "v").await.unwrap_err();
        assert!(error.may_have_applied(), "{error:?}");
        assert!(error.is_unreachable(), "{error:?}");
    }

    #[test]
    fn may_have_applied_is_answered_by_the_variant() {
        let unreachable = |cause| ClientError::Unreachable {
            node: "s1".into(),
            url: "http://127.0.0.1:1".into(),
            cause,
            message: String::new(),
        };
        for cause in [
            Transport::Refused,
            Transport::NoRoute,
            Transport::Tls,
            Transport::NotConnected,
        ] {
            assert!(!unreachable(cause).may_have_applied(), "{cause}");
            let retried = cause != Transport::Tls;
            assert_eq!(
                unreachable(cause).worth_retrying_elsewhere(),
                retried,
                "{cause}"
            );
        }
        assert!(unreachable(Transport::Broken).may_have_applied());
        assert!(!unreachable(Transport::Broken).worth_retrying_elsewhere());
        let rejected = |code| ClientError::Rejected {
            node: "s1".into(),
            code,
            message: String::new(),
        };
        assert!(!rejected(Code::Aborted).may_have_applied());
        assert!(rejected(Code::Aborted).worth_retrying_elsewhere());
        assert!(!rejected(Code::InvalidArgument).may_have_applied());
        assert!(!rejected(Code::InvalidArgument).worth_retrying_elsewhere());
        // The primary may have applied a write too few replicas acknowledged.
        assert!(rejected(Code::Unavailable).may_have_applied());
        let timeout = ClientError::Timeout {
            node: "s1".into(),
            url: "http://127.0.0.1:1".into(),
            deadline: Duration::from_secs(1),
        };
        assert!(timeout.may_have_applied());
        assert!(!ClientError::Invalid("too long".into()).may_have_applied());
    }
}
