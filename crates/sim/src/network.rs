//! The in-memory network: every message a node sends another goes through
//! [`Network::call`], which decides — from the seeded generator, in the order the
//! single-threaded runtime makes the calls — its delay, whether it is lost or
//! duplicated, and whether a partition or a dead or paused receiver stops it. The
//! receiver's handler is the real one (`dida_storage::Node`), run as part of the
//! receiver's process.
//!
//! Delays are drawn per message, so messages between two nodes overtake each other
//! (reordering). A lost request, a lost reply, a cut link and a handler that dies
//! with its node all look the same to the caller: no answer before the call's
//! deadline, as over TCP. A call to a crashed node fails at once as "connection
//! refused" (nothing listens), which the storage code knows had no effect.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dida_core::membership::NodeUrl;
use dida_proto::storage::{
    ConfigAcceptReply, ConfigAcceptRequest, ConfigCommitReply, ConfigCommitRequest,
    ConfigPrepareReply, ConfigPrepareRequest, DigestReply, DigestRequest, FetchKeyReply,
    FetchKeyRequest, HandbackReply, HandbackRequest, ProbeForReply, ProbeForRequest, ProbeReply,
    ProbeRequest, PushReply, PushRequest, ReadReply, ReadRequest, UpdateIfValueIsReply,
    UpdateIfValueIsRequest, WriteReply, WriteRequest,
};
use dida_storage::{Node, PeerTransport};
use rand::rngs::StdRng;
use rand::RngExt;
use tokio::sync::oneshot;
use tonic::Status;

use crate::process::{Gated, ProcState, Process};
use crate::trace::Trace;

/// How unreliable the network is in a run.
#[derive(Debug, Clone, Copy)]
pub struct LinkFaults {
    /// Fewest and most milliseconds a message takes, uniformly drawn.
    pub delay_ms: (u64, u64),
    /// Chance that a request or a reply is lost.
    pub loss: f64,
    /// Chance that a request is delivered twice.
    pub duplicate: f64,
}

/// What a call is, for the trace and the network's choices.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    /// Its name in the trace.
    pub what: &'static str,
    /// How long the caller waits for the reply.
    pub deadline: Duration,
    /// Whether the network may deliver it twice. Only messages that are idempotent
    /// by contract are (pushes, probes, digests, key pulls): gRPC never duplicates
    /// a call, and the one retry in the protocols that could repeat one — gossip
    /// resending a push whose reply was lost — is of that kind. A forwarded client
    /// write is at most once by design, its lost reply an unknown outcome.
    pub idempotent: bool,
}

/// Who sends a message: a node (subject to partitions and loss), or a client of
/// the cluster (outside it: only delay applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// Storage node by index.
    Node(usize),
    /// A workload client, by number.
    Client(usize),
}

/// A node and the process it runs as.
type Slot = (Arc<Node>, Arc<Process>);

/// The simulated network between the nodes of one run.
#[derive(Debug)]
pub struct Network {
    /// Each node's id, by index; a node that joins is appended ([`Network::add`]).
    ids: Mutex<Vec<String>>,
    /// The node and process now at each index; a restart installs new ones, and
    /// a node that joins has none until it runs (nothing listens at its address
    /// while the cluster decides to admit it).
    slots: Mutex<Vec<Option<Slot>>>,
    /// Directed links that deliver nothing: `(from, to)`.
    cuts: Mutex<BTreeSet<(usize, usize)>>,
    rng: Arc<Mutex<StdRng>>,
    faults: LinkFaults,
    rpc_deadline: Duration,
    trace: Arc<Trace>,
}

impl Network {
    /// A network between the nodes `ids`, none running yet ([`Network::install`]).
    pub fn new(
        ids: Vec<String>,
        rng: Arc<Mutex<StdRng>>,
        faults: LinkFaults,
        rpc_deadline: Duration,
        trace: Arc<Trace>,
    ) -> Arc<Self> {
        Arc::new(Self {
            slots: Mutex::new(vec![None; ids.len()]),
            ids: Mutex::new(ids),
            cuts: Mutex::new(BTreeSet::new()),
            rng,
            faults,
            rpc_deadline,
            trace,
        })
    }

    /// The run's trace, which the nemesis writes to as well.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Makes `node`, running as `process`, the node at `index` (created after the
    /// network, since each holds a transport into it; again at every restart).
    pub fn install(&self, index: usize, node: Arc<Node>, process: Arc<Process>) {
        self.slots.lock().expect("slots lock poisoned")[index] = Some((node, process));
    }

    /// Gives the node `id`, admitted to the cluster, the next index, with nothing
    /// running there yet: messages to it are refused, as at an address nobody
    /// listens on, until it is [`Network::install`]ed (as they are before, while
    /// the cluster admits it). Returns its index, which the cluster's
    /// configuration gives it too: members are only ever appended.
    pub fn add(&self, id: String) -> usize {
        let mut ids = self.ids.lock().expect("ids lock poisoned");
        let mut slots = self.slots.lock().expect("slots lock poisoned");
        ids.push(id);
        slots.push(None);
        ids.len() - 1
    }

    /// How many nodes have an index, running or not.
    pub fn len(&self) -> usize {
        self.ids.lock().expect("ids lock poisoned").len()
    }

    /// Whether no node has an index.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The node and process at `index` now; the node must be installed.
    pub fn slot(&self, index: usize) -> (Arc<Node>, Arc<Process>) {
        self.installed(index)
            .expect("a node is installed before anyone looks at it")
    }

    /// The node and process at `index` now, if one is installed there.
    fn installed(&self, index: usize) -> Option<(Arc<Node>, Arc<Process>)> {
        self.slots
            .lock()
            .expect("slots lock poisoned")
            .get(index)
            .cloned()
            .flatten()
    }

    /// The id of node `index`; `#index` for an index the cluster admitted a node
    /// at before the simulator [`Network::add`]ed it (messages to it are refused).
    fn id(&self, index: usize) -> String {
        let ids = self.ids.lock().expect("ids lock poisoned");
        ids.get(index)
            .cloned()
            .unwrap_or_else(|| format!("#{index}"))
    }

    /// The transport node `me` sends through.
    pub fn transport(self: &Arc<Self>, me: usize) -> Arc<dyn PeerTransport> {
        Arc::new(SimTransport {
            me,
            network: self.clone(),
        })
    }

    /// Stops delivering messages from `from` to `to`.
    pub fn cut(&self, from: usize, to: usize) {
        self.cuts
            .lock()
            .expect("cuts lock poisoned")
            .insert((from, to));
    }

    /// Delivers every message again.
    pub fn heal_all(&self) {
        self.cuts.lock().expect("cuts lock poisoned").clear();
    }

    fn is_cut(&self, from: Sender, to: usize) -> bool {
        match from {
            Sender::Node(from) => self
                .cuts
                .lock()
                .expect("cuts lock poisoned")
                .contains(&(from, to)),
            Sender::Client(_) => false,
        }
    }

    fn name(&self, sender: Sender) -> String {
        match sender {
            Sender::Node(n) => self.id(n),
            Sender::Client(c) => format!("client{c}"),
        }
    }

    /// Draws whether a message is lost and how long it takes.
    fn draw(&self, lossy: bool) -> (bool, Duration, bool) {
        let mut rng = self.rng.lock().expect("rng lock poisoned");
        let (low, high) = self.faults.delay_ms;
        let delay = Duration::from_millis(rng.random_range(low..=high));
        let lost = lossy && rng.random_bool(self.faults.loss);
        let duplicated = lossy && rng.random_bool(self.faults.duplicate);
        (lost, delay, duplicated)
    }

    /// Sends `request` from `from` to node `to` and waits for the reply, at most
    /// `deadline`. `handle` is the receiver's handler.
    ///
    /// The message travels in a task of its own and is handled in a task of the
    /// receiver's process: a caller that gives up does not take back what it sent,
    /// and a paused receiver handles the request when it resumes, as a stopped
    /// process finds it in its socket buffer.
    pub async fn call<Req, Rep, H, Fut>(
        self: &Arc<Self>,
        from: Sender,
        to: usize,
        call: Call,
        request: Req,
        handle: H,
    ) -> Result<Rep, Status>
    where
        Req: Clone + Send + 'static,
        Rep: Send + 'static,
        H: Fn(Arc<Node>, Req) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = Result<Rep, Status>> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel();
        let network = self.clone();
        tokio::spawn(async move {
            if let Some(answer) = network.deliver(from, to, call, request, handle).await {
                let _ = reply_tx.send(answer);
            }
        });
        let answer = async {
            match reply_rx.await {
                Ok(answer) => answer,
                Err(_) => futures::future::pending().await,
            }
        };
        match tokio::time::timeout(call.deadline, answer).await {
            Ok(answer) => answer,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "{} from {} to {}: no answer within {:?}",
                call.what,
                self.name(from),
                self.id(to),
                call.deadline
            ))),
        }
    }

    /// Carries one request and its reply; `None` when either is lost or the
    /// receiver dies before answering.
    async fn deliver<Req, Rep, H, Fut>(
        self: &Arc<Self>,
        from: Sender,
        to: usize,
        call: Call,
        request: Req,
        handle: H,
    ) -> Option<Result<Rep, Status>>
    where
        Req: Clone + Send + 'static,
        Rep: Send + 'static,
        H: Fn(Arc<Node>, Req) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = Result<Rep, Status>> + Send + 'static,
    {
        let (sender, receiver, what) = (self.name(from), self.id(to), call.what);
        let listening = self.installed(to);
        if listening
            .as_ref()
            .is_none_or(|(_, process)| process.state() == ProcState::Crashed)
        {
            let why = if listening.is_some() {
                "crashed"
            } else {
                "not started"
            };
            self.trace.event(format_args!(
                "{sender} -> {receiver} {what}: refused ({why})"
            ));
            return Some(Err(connection_refused(&receiver)));
        }
        let lossy = matches!(from, Sender::Node(_));
        let (lost, delay, duplicated) = self.draw(lossy);
        let duplicated = duplicated && call.idempotent;
        if lost || self.is_cut(from, to) {
            let why = if lost { "lost" } else { "cut" };
            self.trace
                .event(format_args!("{sender} -> {receiver} {what}: request {why}"));
            return None;
        }
        tokio::time::sleep(delay).await;
        // Whoever runs at `to` when the message arrives handles it: a node restarted
        // meanwhile gets what was sent to its predecessor, as a new process finds
        // connections to its port.
        let (node, process) = self.slot(to);
        if process.state() == ProcState::Crashed {
            self.trace.event(format_args!(
                "{sender} -> {receiver} {what}: receiver crashed"
            ));
            return None;
        }
        if duplicated {
            self.trace
                .event(format_args!("{sender} -> {receiver} {what}: duplicated"));
            let (node, request, handle) = (node.clone(), request.clone(), handle.clone());
            tokio::spawn(Gated::new(process.clone(), async move {
                let _ = handle(node, request).await;
            }));
        }
        let (handled_tx, handled_rx) = oneshot::channel();
        tokio::spawn(Gated::new(process, async move {
            let _ = handled_tx.send(handle(node, request).await);
        }));
        let Ok(answer) = handled_rx.await else {
            self.trace.event(format_args!(
                "{sender} -> {receiver} {what}: receiver crashed"
            ));
            return None;
        };
        let (lost, delay, _) = self.draw(lossy);
        let back = match from {
            Sender::Node(from) => self.is_cut(Sender::Node(to), from),
            Sender::Client(_) => false,
        };
        let outcome = match &answer {
            Ok(_) => "ok".to_string(),
            Err(status) => format!("{:?}", status.code()),
        };
        if lost || back {
            let why = if lost { "lost" } else { "cut" };
            self.trace.event(format_args!(
                "{sender} -> {receiver} {what}: {outcome}, reply {why}"
            ));
            return None;
        }
        tokio::time::sleep(delay).await;
        self.trace
            .event(format_args!("{sender} -> {receiver} {what}: {outcome}"));
        Some(answer)
    }
}

/// The status of a call nothing listened for, as a real connection refusal reads.
fn connection_refused(to: &str) -> Status {
    let mut status = Status::unavailable(format!("{to}: connection refused (simulated)"));
    status.set_source(Arc::new(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "connect error: connection refused",
    )));
    status
}

/// The [`PeerTransport`] of one node.
#[derive(Debug)]
struct SimTransport {
    me: usize,
    network: Arc<Network>,
}

macro_rules! relay {
    ($self:ident, $to:ident, $what:literal, $idempotent:literal, $request:ident, $handler:ident) => {
        $self
            .network
            .call(
                Sender::Node($self.me),
                $to,
                Call {
                    what: $what,
                    deadline: $self.network.rpc_deadline,
                    idempotent: $idempotent,
                },
                $request,
                |node: Arc<Node>, request| async move { node.$handler(request).await },
            )
            .await
    };
}

#[tonic::async_trait]
impl PeerTransport for SimTransport {
    /// Nothing to prepare: the simulated network finds a node by its index at
    /// every call, and the simulator gives a joining node its index before it asks
    /// to be admitted ([`Network::add`]) and installs it there once admitted.
    fn add_peer(&self, _: usize, _: &str, _: &NodeUrl) -> Result<(), String> {
        Ok(())
    }

    async fn push(&self, to: usize, request: PushRequest) -> Result<PushReply, Status> {
        relay!(self, to, "push", true, request, push)
    }

    async fn probe(&self, to: usize, request: ProbeRequest) -> Result<ProbeReply, Status> {
        relay!(self, to, "probe", true, request, probe)
    }

    async fn probe_for(
        &self,
        to: usize,
        request: ProbeForRequest,
    ) -> Result<ProbeForReply, Status> {
        relay!(self, to, "probe-for", true, request, probe_for)
    }

    async fn sync_digests(&self, to: usize, request: DigestRequest) -> Result<DigestReply, Status> {
        relay!(self, to, "sync-digests", true, request, sync_digests)
    }

    async fn fetch_key(
        &self,
        to: usize,
        request: FetchKeyRequest,
    ) -> Result<FetchKeyReply, Status> {
        relay!(self, to, "fetch-key", true, request, fetch_key)
    }

    async fn handback(&self, to: usize, request: HandbackRequest) -> Result<HandbackReply, Status> {
        relay!(self, to, "handback", true, request, handback)
    }

    async fn config_prepare(
        &self,
        to: usize,
        request: ConfigPrepareRequest,
    ) -> Result<ConfigPrepareReply, Status> {
        relay!(self, to, "config-prepare", false, request, config_prepare)
    }

    async fn config_accept(
        &self,
        to: usize,
        request: ConfigAcceptRequest,
    ) -> Result<ConfigAcceptReply, Status> {
        relay!(self, to, "config-accept", false, request, config_accept)
    }

    async fn config_commit(
        &self,
        to: usize,
        request: ConfigCommitRequest,
    ) -> Result<ConfigCommitReply, Status> {
        relay!(self, to, "config-commit", true, request, config_commit)
    }

    async fn read(&self, to: usize, request: ReadRequest) -> Result<ReadReply, Status> {
        relay!(self, to, "read", false, request, read)
    }

    async fn write(&self, to: usize, request: WriteRequest) -> Result<WriteReply, Status> {
        relay!(self, to, "write", false, request, write)
    }

    async fn update_if_value_is(
        &self,
        to: usize,
        request: UpdateIfValueIsRequest,
    ) -> Result<UpdateIfValueIsReply, Status> {
        relay!(self, to, "cas", false, request, update_if_value_is)
    }
}
