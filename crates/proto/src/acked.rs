//! Acknowledged messages on long-lived streams: what dida sends on the execution
//! path, one message per hop, instead of one unary call each.
//!
//! A unary gRPC call pays, on both ends, for request headers, routing, response
//! headers and trailers — several times what a small message costs to encode and
//! decode. On a stream that stays open a message costs one frame each way: the
//! message and its acknowledgement. [`AckedLinks`] is the sending end (one stream
//! per peer, opened on first use), [`serve`] the receiving end. The semantics are
//! those of the calls they replace:
//!
//! - a send succeeds only on an acknowledgement that carries no refusal; a refusal
//!   comes back as the [`Status`] the call would have returned;
//! - every send is bounded by the deadline: without an acknowledgement by then it
//!   fails, and the stream is closed (a stalled peer is not waited on again);
//! - a broken stream fails every send waiting on it at once, and the next send to
//!   that peer opens a new stream. As with a call whose answer was lost, a message
//!   the peer took just before the break may be sent again by the caller's retry;
//! - both ends stop their streams when their node stops (its stop signal), so a
//!   graceful shutdown is never kept waiting by a peer's open stream.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::transport::NodeChannel;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};
use tracing::debug;

use crate::transport::{
    describe, is_connect_failure, lazy_channel_with_headers, MAX_MESSAGE_BYTES,
};

/// Messages that may wait in a stream's outbound queue (and acknowledgements in
/// its reply queue) before senders wait: enough for every hop in flight on a busy
/// node.
const QUEUE_DEPTH: usize = 1024;

/// Why a send failed, and so whether its message could have been taken.
#[derive(Debug)]
pub enum Failure {
    /// The receiver answered with a refusal: it did not take the message.
    Refused(Status),
    /// The message never left this process: the connection to the peer could not
    /// be made. It certainly had no effect, so it may be sent elsewhere.
    NotSent(Status),
    /// The stream broke, or the deadline passed, after the message may have left:
    /// the receiver may or may not have taken it.
    Lost(Status),
}

/// The kind of the first I/O error in `status`'s chain of sources.
fn io_error_kind(status: &Status) -> Option<std::io::ErrorKind> {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = error.source();
    }
    None
}

impl Failure {
    /// The status a unary call would have failed with.
    pub fn status(&self) -> &Status {
        match self {
            Failure::Refused(status) | Failure::NotSent(status) | Failure::Lost(status) => status,
        }
    }

    /// The same failure for another waiter (a `Status` cannot be cloned with its
    /// source; the message keeps the source's text, and the I/O error kind of the
    /// chain, if any, stays a typed source so callers can classify the cause).
    fn duplicate(&self) -> Self {
        let copy = |status: &Status| {
            let mut copy = Status::new(status.code(), describe(status));
            if let Some(kind) = io_error_kind(status) {
                copy.set_source(Arc::new(std::io::Error::new(kind, describe(status))));
            }
            copy
        };
        match self {
            Failure::Refused(status) => Failure::Refused(copy(status)),
            Failure::NotSent(status) => Failure::NotSent(copy(status)),
            Failure::Lost(status) => Failure::Lost(copy(status)),
        }
    }
}

impl From<Failure> for Status {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Refused(status) | Failure::NotSent(status) | Failure::Lost(status) => status,
        }
    }
}

/// An acknowledgement: which message it answers, and whether it was refused.
pub trait Ack: Send + 'static {
    /// The sequence number of the message it answers.
    fn seq(&self) -> u64;
    /// The refusal it carries, as the status a unary call would have returned.
    fn refusal(&self) -> Option<Status>;
}

/// Opens the stream on a channel: the generated client's streaming method.
pub type Opener<M, A> = Arc<
    dyn Fn(
            NodeChannel,
            ReceiverStream<M>,
        ) -> Pin<Box<dyn Future<Output = Result<Streaming<A>, Status>> + Send>>
        + Send
        + Sync,
>;

/// A send waiting for its acknowledgement.
type Waiter<A> = oneshot::Sender<Result<A, Failure>>;

/// The open links of one kind, by peer URL.
type LinkTable<M, A> = Arc<Mutex<HashMap<String, Arc<Link<M, A>>>>>;

/// The open streams of one kind, one per peer URL.
pub struct AckedLinks<M, A> {
    deadline: Duration,
    /// Whether a send that times out closes its stream (see [`AckedLinks::new`]).
    close_on_timeout: bool,
    stop: watch::Receiver<()>,
    open: Opener<M, A>,
    links: LinkTable<M, A>,
    /// Added to the call that opens each stream (see [`AckedLinks::with_headers`]).
    headers: Vec<(&'static str, &'static str)>,
}

impl<M, A> std::fmt::Debug for AckedLinks<M, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let peers: Vec<String> = self
            .links
            .lock()
            .map(|links| links.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("AckedLinks")
            .field("deadline", &self.deadline)
            .field("open_to", &peers)
            .finish()
    }
}

/// One open stream to a peer.
struct Link<M, A> {
    outbound: mpsc::Sender<M>,
    /// Messages sent and not yet acknowledged; `None` once the stream has closed,
    /// so a late send fails at once instead of waiting for an answer that cannot
    /// come.
    waiting: Mutex<Option<HashMap<u64, Waiter<A>>>>,
    next_seq: AtomicU64,
}

impl<M, A: Ack> Link<M, A> {
    /// Registers a message about to be sent; gives the waiter back if the stream
    /// has closed.
    fn register(&self, waiter: Waiter<A>) -> Result<u64, Waiter<A>> {
        let mut waiting = self.waiting.lock().expect("stream lock poisoned");
        let Some(waiting) = waiting.as_mut() else {
            return Err(waiter);
        };
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        waiting.insert(seq, waiter);
        Ok(seq)
    }

    /// Forgets the send `seq` (its deadline passed; the stream stays open).
    fn abandon(&self, seq: u64) {
        if let Some(waiting) = self.waiting.lock().expect("stream lock poisoned").as_mut() {
            waiting.remove(&seq);
        }
    }

    /// Delivers an acknowledgement to the send it answers.
    fn settle(&self, ack: A) {
        let waiter = self
            .waiting
            .lock()
            .expect("stream lock poisoned")
            .as_mut()
            .and_then(|waiting| waiting.remove(&ack.seq()));
        if let Some(waiter) = waiter {
            let _ = waiter.send(match ack.refusal() {
                None => Ok(ack),
                Some(refusal) => Err(Failure::Refused(refusal)),
            });
        }
    }

    /// Closes the link: every send still waiting fails with `why`.
    fn close(&self, why: &Failure) {
        let waiting = self.waiting.lock().expect("stream lock poisoned").take();
        for (_, waiter) in waiting.into_iter().flatten() {
            let _ = waiter.send(Err(why.duplicate()));
        }
    }
}

fn closed() -> Status {
    Status::unavailable("the stream to the peer has closed")
}

impl<M: Send + 'static, A: Ack> AckedLinks<M, A> {
    /// No streams yet; each opens with `open` on the first send to its peer. Every
    /// send is bounded by `deadline`; every stream ends when `stop` fires. With
    /// `close_on_timeout`, a send that times out also closes its stream: right when
    /// the receiver answers at once (a silent peer is a stalled one), wrong when an
    /// answer may take long on purpose (a write waiting for its replicas).
    pub fn new(
        deadline: Duration,
        close_on_timeout: bool,
        stop: watch::Receiver<()>,
        open: Opener<M, A>,
    ) -> Self {
        Self {
            deadline,
            close_on_timeout,
            stop,
            open,
            links: Arc::default(),
            headers: Vec::new(),
        }
    }

    /// Adds `headers` (name, printable ASCII value) to the call opening each stream:
    /// the scheduler's storage streams say they may change dida's own keys
    /// ([`crate::reserved`]).
    pub fn with_headers(mut self, headers: &[(&'static str, &'static str)]) -> Self {
        self.headers = headers.to_vec();
        self
    }

    /// Sends the message `message(seq)` to the peer at `url` and returns its
    /// acknowledgement — or why not, always within the deadline.
    pub async fn send(&self, url: &str, message: impl FnOnce(u64) -> M) -> Result<A, Failure> {
        let (mut waiter, answer) = oneshot::channel();
        // A link found closing is replaced by a fresh one (once): nothing was sent on it.
        let mut attempt = 0;
        let (link, seq) = loop {
            let link = self.link(url).map_err(Failure::NotSent)?;
            match link.register(waiter) {
                Ok(seq) => break (link, seq),
                Err(back) if attempt == 0 => {
                    forget(&self.links, url, &link);
                    waiter = back;
                    attempt += 1;
                }
                Err(_) => return Err(Failure::NotSent(closed())),
            }
        };
        let exchange = async {
            // A queue that refuses the message belongs to a stream that ended after
            // this send registered: the stream's end delivers its reason to every
            // registered send (a refused connection is `NotSent`), so wait for it
            // rather than guess.
            let _ = link.outbound.send(message(seq)).await;
            answer
                .await
                .unwrap_or_else(|_| Err(Failure::Lost(closed())))
        };
        match tokio::time::timeout(self.deadline, exchange).await {
            Ok(result) => result,
            Err(_) => {
                let why = Failure::Lost(Status::deadline_exceeded(format!(
                    "no acknowledgement within {:?}",
                    self.deadline
                )));
                if self.close_on_timeout {
                    forget(&self.links, url, &link);
                    link.close(&why);
                } else {
                    link.abandon(seq);
                }
                Err(why)
            }
        }
    }

    /// Peers a stream is open to (for tests and status).
    pub fn open_peers(&self) -> usize {
        self.links.lock().expect("stream lock poisoned").len()
    }

    /// The open link to `url`, opening one if there is none.
    fn link(&self, url: &str) -> Result<Arc<Link<M, A>>, Status> {
        let mut links = self.links.lock().expect("stream lock poisoned");
        if let Some(link) = links.get(url) {
            return Ok(link.clone());
        }
        let channel = lazy_channel_with_headers(url, self.deadline, self.deadline, &self.headers)
            .map_err(|e| Status::invalid_argument(format!("bad address {url}: {e}")))?;
        let (outbound, messages) = mpsc::channel(QUEUE_DEPTH);
        let link = Arc::new(Link {
            outbound,
            waiting: Mutex::new(Some(HashMap::new())),
            next_seq: AtomicU64::new(0),
        });
        links.insert(url.to_string(), link.clone());
        let stream = (self.open)(channel, ReceiverStream::new(messages));
        tokio::spawn(drive(
            stream,
            link.clone(),
            self.stop.clone(),
            self.links.clone(),
            url.to_string(),
        ));
        Ok(link)
    }
}

/// Removes `link` from `links` if it is still the one for `url`.
fn forget<M, A>(
    links: &Mutex<HashMap<String, Arc<Link<M, A>>>>,
    url: &str,
    link: &Arc<Link<M, A>>,
) {
    let mut links = links.lock().expect("stream lock poisoned");
    if links.get(url).is_some_and(|l| Arc::ptr_eq(l, link)) {
        links.remove(url);
    }
}

/// Runs one stream: settles acknowledgements as they come, and closes the link when
/// the stream ends, fails or the node stops.
async fn drive<M, A: Ack>(
    stream: impl Future<Output = Result<Streaming<A>, Status>>,
    link: Arc<Link<M, A>>,
    mut stop: watch::Receiver<()>,
    links: LinkTable<M, A>,
    url: String,
) {
    let run = async {
        let mut acks = stream.await.map_err(|status| {
            if is_connect_failure(&status) {
                Failure::NotSent(status)
            } else {
                Failure::Lost(status)
            }
        })?;
        while let Some(ack) = acks.message().await.map_err(Failure::Lost)? {
            link.settle(ack);
        }
        Err::<(), _>(Failure::Lost(Status::unavailable(
            "the peer closed the stream",
        )))
    };
    let why = tokio::select! {
        ended = run => ended.err().unwrap_or_else(|| Failure::Lost(closed())),
        _ = stop.changed() => Failure::Lost(Status::unavailable("this node is stopping")),
    };
    debug!(peer = %url, error = %why.status().message(), "stream closed");
    forget(&links, &url, &link);
    link.close(&why);
}

/// Serves one peer's stream: answers every message with `handle(message)`, in
/// order, until the peer closes the stream or `stop` fires.
pub fn serve<M, A, F>(
    inbound: Streaming<M>,
    stop: watch::Receiver<()>,
    handle: F,
) -> ReceiverStream<Result<A, Status>>
where
    M: Send + 'static,
    A: Send + 'static,
    F: Fn(M) -> A + Send + 'static,
{
    serve_each(inbound, stop, move |message, acks| {
        let answer = handle(message);
        async move { acks.send(Ok(answer)).await.is_ok() }
    })
}

/// Serves one peer's stream of requests whose answers may take a while (a write
/// waiting for its replicas): each message is handled in a task of its own and
/// answered when done, in whatever order the answers come; until the peer closes the
/// stream or `stop` fires.
pub fn serve_concurrently<M, A, F, Fut>(
    inbound: Streaming<M>,
    stop: watch::Receiver<()>,
    handle: F,
) -> ReceiverStream<Result<A, Status>>
where
    M: Send + 'static,
    A: Send + 'static,
    F: Fn(M) -> Fut + Send + 'static,
    Fut: Future<Output = A> + Send + 'static,
{
    serve_each(inbound, stop, move |message, acks| {
        let answer = handle(message);
        tokio::spawn(async move {
            let _ = acks.send(Ok(answer.await)).await;
        });
        std::future::ready(true)
    })
}

/// The loop of both servers: passes every message, with the reply queue, to
/// `each` (which answers it, now or later, and says whether to go on) until the
/// peer closes the stream, it fails, or `stop` fires.
fn serve_each<M, A, F, Fut>(
    mut inbound: Streaming<M>,
    mut stop: watch::Receiver<()>,
    mut each: F,
) -> ReceiverStream<Result<A, Status>>
where
    M: Send + 'static,
    A: Send + 'static,
    F: FnMut(M, mpsc::Sender<Result<A, Status>>) -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let (acks, replies) = mpsc::channel(QUEUE_DEPTH);
    tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                message = inbound.message() => message,
                _ = stop.changed() => break,
            };
            match message {
                Ok(Some(message)) => {
                    if !each(message, acks.clone()).await {
                        break;
                    }
                }
                Ok(None) => break,
                Err(status) => {
                    debug!(error = %status.message(), "a peer's stream failed");
                    break;
                }
            }
        }
    });
    ReceiverStream::new(replies)
}

/// The refusal an acknowledgement of the execution protocol carries, if any.
fn refusal(error: &Option<String>, code: i32) -> Option<Status> {
    error
        .as_ref()
        .map(|message| Status::new(tonic::Code::from_i32(code), message.clone()))
}

/// Every acknowledgement of the execution and storage protocols carries the same
/// three fields: `seq`, and `error` with its `code` when refused.
macro_rules! impl_ack {
    ($($ack:path),+) => {$(
        impl Ack for $ack {
            fn seq(&self) -> u64 {
                self.seq
            }

            fn refusal(&self) -> Option<Status> {
                refusal(&self.error, self.code)
            }
        }
    )+};
}

impl_ack!(
    crate::execution::HandOffReply,
    crate::execution::ReportOutcomesReply,
    crate::storage::StorageCallReply
);

/// The [`Opener`] of a generated client's streaming method: the client on the
/// channel, with dida's message-size limits, calling `$method`.
macro_rules! opener {
    ($client:ident, $method:ident) => {
        Arc::new(|channel, messages| {
            Box::pin(async move {
                $client::new(channel)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES)
                    .$method(messages)
                    .await
                    .map(tonic::Response::into_inner)
            })
        })
    };
}

/// The scheduler's and every worker's hand-off streams to workers
/// (`Worker.HandOff`), each send bounded by `deadline`.
pub fn hand_offs(
    deadline: Duration,
    stop: watch::Receiver<()>,
) -> AckedLinks<crate::execution::HandOffRequest, crate::execution::HandOffReply> {
    use crate::execution::worker_client::WorkerClient;
    AckedLinks::new(deadline, true, stop, opener!(WorkerClient, hand_off))
}

/// A worker's outcome-report stream to the scheduler (`Scheduler.ReportOutcomes`),
/// each send bounded by `deadline`.
pub fn outcome_reports(
    deadline: Duration,
    stop: watch::Receiver<()>,
) -> AckedLinks<crate::execution::ReportOutcomesRequest, crate::execution::ReportOutcomesReply> {
    use crate::execution::scheduler_client::SchedulerClient;
    AckedLinks::new(
        deadline,
        true,
        stop,
        opener!(SchedulerClient, report_outcomes),
    )
}

/// A storage client's streams to the storage nodes (`Storage.Calls`), each send
/// bounded by `deadline`. A send that times out leaves the stream open: a write may
/// wait for its replicas on purpose, and the other requests on the stream are not
/// to blame.
pub fn storage_calls(
    deadline: Duration,
    stop: watch::Receiver<()>,
) -> AckedLinks<crate::storage::StorageCallRequest, crate::storage::StorageCallReply> {
    use crate::storage::storage_client::StorageClient;
    AckedLinks::new(deadline, false, stop, opener!(StorageClient, calls))
}
