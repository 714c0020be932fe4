//! Handing a request to the next worker: one long-lived `Worker.HandOff` stream per
//! peer instead of one `Execute` call per hop.
//!
//! A unary call pays, on both ends, for request headers, routing, response headers
//! and trailers — several times what the request itself costs to encode and decode.
//! On a stream a hand-off is one message each way: the request, and its
//! acknowledgement. The semantics are those of the call it replaces:
//!
//! - a hand-off succeeds only once the next worker has **accepted** the request (it
//!   answers with the same checks `Execute` makes), so a caller that got `Ok` knows
//!   the next worker owns the execution;
//! - every hand-off has the call deadline: no acknowledgement within it fails the
//!   hand-off and closes the stream (a stalled peer is not waited on again);
//! - a broken stream fails every hand-off still waiting on it, and the next hand-off
//!   to that worker opens a new stream. As with a unary call whose answer was lost, a
//!   request the peer accepted just before the break may be sent again by the
//!   caller's retry.
//!
//! Both ends stop their streams when the worker stops (its stop signal), so a
//! graceful shutdown is not kept waiting by a peer's open stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dida_proto::execution::worker_client::WorkerClient;
use dida_proto::execution::{ChainRequest, HandOff, HandOffAck};
use dida_proto::transport::{lazy_channel, MAX_MESSAGE_BYTES};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};
use tracing::debug;

/// Requests that may wait in a stream's outbound queue (and acknowledgements in its
/// reply queue) before senders wait: enough for every hop in flight on a busy worker.
const QUEUE_DEPTH: usize = 1024;

/// A hand-off waiting for its acknowledgement.
type Waiter = oneshot::Sender<Result<(), Status>>;

/// The streams this worker hands requests on, one per peer worker URL.
#[derive(Debug)]
pub(crate) struct HandOffLinks {
    deadline: Duration,
    stop: watch::Receiver<()>,
    links: Arc<Mutex<HashMap<String, Arc<Link>>>>,
}

/// One open stream to a peer.
#[derive(Debug)]
struct Link {
    outbound: mpsc::Sender<HandOff>,
    /// Hand-offs sent and not yet acknowledged; `None` once the stream has closed,
    /// so a late hand-off fails at once instead of waiting for an answer that cannot
    /// come.
    waiting: Mutex<Option<HashMap<u64, Waiter>>>,
    next_seq: AtomicU64,
}

impl Link {
    /// Registers a hand-off about to be sent; fails if the stream has closed.
    fn register(&self, waiter: Waiter) -> Result<u64, Status> {
        let mut waiting = self.waiting.lock().expect("hand-off lock poisoned");
        let waiting = waiting
            .as_mut()
            .ok_or_else(|| Status::unavailable("the hand-off stream has closed"))?;
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        waiting.insert(seq, waiter);
        Ok(seq)
    }

    /// Delivers an acknowledgement to the hand-off it answers.
    fn settle(&self, ack: HandOffAck) {
        let waiter = self
            .waiting
            .lock()
            .expect("hand-off lock poisoned")
            .as_mut()
            .and_then(|waiting| waiting.remove(&ack.seq));
        if let Some(waiter) = waiter {
            let _ = waiter.send(ack_result(ack));
        }
    }

    /// Closes the link: every hand-off still waiting fails with `why`.
    fn close(&self, why: &Status) {
        let waiting = self.waiting.lock().expect("hand-off lock poisoned").take();
        for (_, waiter) in waiting.into_iter().flatten() {
            let _ = waiter.send(Err(Status::new(why.code(), why.message())));
        }
    }
}

/// What an acknowledgement says, as the `Execute` call it replaces would have.
fn ack_result(ack: HandOffAck) -> Result<(), Status> {
    match ack.error {
        None => Ok(()),
        Some(message) => Err(Status::new(Code::from_i32(ack.code), message)),
    }
}

impl HandOffLinks {
    /// No streams yet; each opens on the first hand-off to its peer. Every hand-off
    /// is bounded by `deadline`; every stream ends when `stop` fires.
    pub(crate) fn new(deadline: Duration, stop: watch::Receiver<()>) -> Self {
        Self {
            deadline,
            stop,
            links: Arc::default(),
        }
    }

    /// Hands `request` to the worker at `url`: `Ok` once it accepted the request, the
    /// refusal or the failure otherwise, always within the deadline.
    pub(crate) async fn hand_off(&self, url: &str, request: ChainRequest) -> Result<(), Status> {
        let link = self.link(url)?;
        let (waiter, answer) = oneshot::channel();
        let seq = link.register(waiter)?;
        let exchange = async {
            let message = HandOff {
                seq,
                request: Some(request),
            };
            if link.outbound.send(message).await.is_err() {
                return Err(Status::unavailable("the hand-off stream has closed"));
            }
            answer
                .await
                .unwrap_or_else(|_| Err(Status::unavailable("the hand-off stream has closed")))
        };
        match tokio::time::timeout(self.deadline, exchange).await {
            Ok(result) => result,
            Err(_) => {
                let why = Status::deadline_exceeded(format!(
                    "no acknowledgement within {:?}",
                    self.deadline
                ));
                self.forget(url, &link);
                link.close(&why);
                Err(why)
            }
        }
    }

    /// The open link to `url`, opening one if there is none.
    fn link(&self, url: &str) -> Result<Arc<Link>, Status> {
        let mut links = self.links.lock().expect("hand-off lock poisoned");
        if let Some(link) = links.get(url) {
            return Ok(link.clone());
        }
        let channel = lazy_channel(url, self.deadline)
            .map_err(|e| Status::invalid_argument(format!("bad worker address {url}: {e}")))?;
        let (outbound, requests) = mpsc::channel(QUEUE_DEPTH);
        let link = Arc::new(Link {
            outbound,
            waiting: Mutex::new(Some(HashMap::new())),
            next_seq: AtomicU64::new(0),
        });
        links.insert(url.to_string(), link.clone());
        let client = WorkerClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        tokio::spawn(drive(
            client,
            requests,
            link.clone(),
            self.stop.clone(),
            Unlink {
                links: self.links.clone(),
                url: url.to_string(),
            },
        ));
        Ok(link)
    }

    /// Removes `link` from the open links (if it is still the one for `url`).
    fn forget(&self, url: &str, link: &Arc<Link>) {
        Unlink {
            links: self.links.clone(),
            url: url.to_string(),
        }
        .run(link);
    }
}

/// How a stream's task removes its link once the stream has ended.
struct Unlink {
    links: Arc<Mutex<HashMap<String, Arc<Link>>>>,
    url: String,
}

impl Unlink {
    fn run(self, link: &Arc<Link>) {
        let mut links = self.links.lock().expect("hand-off lock poisoned");
        if links.get(&self.url).is_some_and(|l| Arc::ptr_eq(l, link)) {
            links.remove(&self.url);
        }
    }
}

/// Runs one stream: sends what `requests` yields, settles acknowledgements as they
/// come, and closes the link when the stream ends, fails or the worker stops.
async fn drive(
    mut client: WorkerClient<tonic::transport::Channel>,
    requests: mpsc::Receiver<HandOff>,
    link: Arc<Link>,
    mut stop: watch::Receiver<()>,
    unlink: Unlink,
) {
    let run = async {
        let mut acks = client
            .hand_off(ReceiverStream::new(requests))
            .await?
            .into_inner();
        while let Some(ack) = acks.message().await? {
            link.settle(ack);
        }
        Err::<(), _>(Status::unavailable("the worker closed the hand-off stream"))
    };
    let why = tokio::select! {
        ended = run => ended.err().unwrap_or_else(|| Status::unavailable("stream ended")),
        _ = stop.changed() => Status::unavailable("this worker is stopping"),
    };
    debug!(peer = %unlink.url, error = %why.message(), "hand-off stream closed");
    unlink.run(&link);
    link.close(&why);
}

/// Serves one peer's `HandOff` stream: passes every request to `accept` (the checks
/// and start of an `Execute`) and answers each with its result, until the peer closes
/// the stream or `stop` fires.
pub(crate) fn serve<F>(
    mut inbound: Streaming<HandOff>,
    mut stop: watch::Receiver<()>,
    accept: F,
) -> ReceiverStream<Result<HandOffAck, Status>>
where
    F: Fn(ChainRequest) -> Result<(), Status> + Send + 'static,
{
    let (acks, replies) = mpsc::channel(QUEUE_DEPTH);
    tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                message = inbound.message() => message,
                _ = stop.changed() => break,
            };
            let HandOff { seq, request } = match message {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(status) => {
                    debug!(error = %status.message(), "hand-off stream from a peer failed");
                    break;
                }
            };
            let accepted = request
                .ok_or_else(|| Status::invalid_argument("hand-off without a request"))
                .and_then(&accept);
            let ack = match accepted {
                Ok(()) => HandOffAck {
                    seq,
                    error: None,
                    code: Code::Ok as i32,
                },
                Err(status) => HandOffAck {
                    seq,
                    error: Some(status.message().to_string()),
                    code: status.code() as i32,
                },
            };
            if acks.send(Ok(ack)).await.is_err() {
                break;
            }
        }
    });
    ReceiverStream::new(replies)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use dida_core::membership::NodeUrl;
    use dida_core::Membership;
    use dida_proto::execution::{Assignment, Metadata};
    use tokio::net::TcpListener;

    use super::*;
    use crate::chain::retry;
    use crate::node::{start, WorkerConfig};

    /// A loopback address nothing listens on.
    async fn closed_port() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    }

    /// A one-operator request for worker `worker_id`.
    fn request(worker_id: &str, url: &str) -> ChainRequest {
        ChainRequest {
            meta: Some(Metadata {
                id: "x-1".into(),
                ..Metadata::default()
            }),
            input: "in".into(),
            next: 0,
            chain: vec![Assignment {
                classname: "NoSuchOperator".into(),
                order: 0,
                worker_id: worker_id.into(),
                worker_url: url.into(),
                output: None,
            }],
            app: "test".into(),
        }
    }

    /// Starts worker `w2` on `listener`, with a storage node and a scheduler that
    /// are not there (a hand-off only needs the worker to accept).
    async fn start_worker(listener: TcpListener) -> crate::NodeHandle {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let storage = Membership::parse(&format!("s1={}", closed_port().await)).unwrap();
        let scheduler = NodeUrl::parse(&closed_port().await).unwrap();
        let mut config = WorkerConfig::new("w2", NodeUrl::parse(&url).unwrap(), storage, scheduler);
        config.replication_factor = 1;
        start(config, listener).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hand_offs_share_one_stream_keep_refusals_and_reconnect_after_the_peer_restarts() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let worker = start_worker(listener).await;

        let deadline = Duration::from_secs(2);
        let (_stop_signal, stop) = watch::channel(());
        let links = HandOffLinks::new(deadline, stop);

        // Accepted: the worker owns the request (its operator fails later, unseen here).
        links.hand_off(&url, request("w2", &url)).await.unwrap();
        // Refused, with the code and reason `Execute` would have answered.
        let refused = links.hand_off(&url, request("w9", &url)).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert!(refused.message().contains("assigned to w9"), "{refused:?}");
        // Both went over the one stream.
        assert_eq!(links.links.lock().unwrap().len(), 1);

        // The open stream does not hold the worker's graceful shutdown.
        tokio::time::timeout(Duration::from_secs(10), worker.shutdown())
            .await
            .expect("shutdown waited on an open hand-off stream")
            .unwrap();

        // With the peer gone, a hand-off fails; it never waits past its deadline.
        let started = Instant::now();
        let gone = links.hand_off(&url, request("w2", &url)).await.unwrap_err();
        assert!(
            matches!(gone.code(), Code::Unavailable | Code::DeadlineExceeded),
            "{gone:?}"
        );
        assert!(started.elapsed() <= deadline + Duration::from_secs(1));

        // A worker started again at that address gets hand-offs on a new stream.
        let listener = TcpListener::bind(url.trim_start_matches("http://"))
            .await
            .unwrap();
        let _again = start_worker(listener).await;
        retry(|| links.hand_off(&url, request("w2", &url)))
            .await
            .unwrap();
    }
}
