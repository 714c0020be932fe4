//! Background propagation of new versions to the other replicas (SPEC §2.4).
//!
//! Each peer has an outbox. A record put in it becomes *due* `gossip_delay` after it
//! was queued; a sender task per peer waits until the oldest record is due, sends every
//! due record in one `Push` message and, for `--write-acks`, tells the waiting writer
//! once the peer has answered. So every gossip message leaves at least `gossip_delay`
//! after each record it carries was created, and records queued close together share
//! a message.
//!
//! A push that fails (peer down, deadline passed) is retried with exponential backoff,
//! keeping the records' order; an outbox that overflows drops its oldest records, which
//! anti-entropy repairs later.
//!
//! The receiving side is here too: [`receive_push`] checks a push whole (sender,
//! records, the fence, [`unreplicated`]) and stores all of it or none.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use dida_core::{Liveness, Record, Ring};
use dida_proto::convert::record_to_wire;
use dida_proto::storage::{PushReply, PushRequest};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use prost::Message;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tonic::Status;
use tracing::{debug, warn};

use crate::peering::Peering;
use crate::stats;
use crate::store::MultiVersionStore;
use crate::validation::{self, Refusal};

/// Tells a waiting writer that one more replica holds its record.
pub(crate) type AckSender = mpsc::UnboundedSender<()>;

/// Most records an outbox holds before it drops its oldest.
const MAX_QUEUED_RECORDS: usize = 200_000;
/// Most payload bytes sent in one push message.
const MAX_PUSH_BYTES: usize = 4 * 1024 * 1024;
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct Pending {
    due: Instant,
    record: Record,
    ack: Option<AckSender>,
}

#[derive(Debug)]
struct Outbox {
    queue: Mutex<VecDeque<Pending>>,
    ready: Notify,
    /// The node's incarnation whose records the queue holds; changed (by
    /// [`Gossip::clear`]) and read only under the queue's lock.
    incarnation: AtomicU64,
}

impl Outbox {
    fn new(incarnation: u64) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::default(),
            ready: Notify::new(),
            incarnation: AtomicU64::new(incarnation),
        })
    }

    /// Waits until the outbox holds a record, and returns when the oldest is due.
    async fn next_due(&self) -> Instant {
        loop {
            if let Some(front) = self.queue.lock().expect("outbox lock poisoned").front() {
                return front.due;
            }
            self.ready.notified().await;
        }
    }

    /// Takes the due records, oldest first, up to the size of one message.
    fn take_due(&self, now: Instant) -> Vec<Pending> {
        let mut queue = self.queue.lock().expect("outbox lock poisoned");
        // Sized for the whole queue at once: growing it one record at a time showed
        // in the write path's profile.
        let mut batch = Vec::with_capacity(queue.len());
        let mut bytes = 0;
        while let Some(front) = queue.front() {
            let size = front.record.key.len() + front.record.value.len() + 32;
            if front.due > now || (!batch.is_empty() && bytes + size > MAX_PUSH_BYTES) {
                break;
            }
            bytes += size;
            batch.push(queue.pop_front().expect("front exists"));
        }
        batch
    }

    /// Puts a batch that could not be sent back in front, in its original order. If
    /// the outbox then holds too many records, the oldest go, as in
    /// [`Gossip::enqueue`]: anti-entropy repairs them.
    ///
    /// A batch of an incarnation that is over (the node started over while it was
    /// in flight) is dropped instead.
    fn requeue(&self, batch: Vec<Pending>, incarnation: u64) {
        let mut queue = self.queue.lock().expect("outbox lock poisoned");
        if self.incarnation.load(Ordering::Relaxed) != incarnation {
            return;
        }
        for pending in batch.into_iter().rev() {
            queue.push_front(pending);
        }
        let excess = queue.len().saturating_sub(MAX_QUEUED_RECORDS);
        queue.drain(..excess);
    }
}

/// The outboxes of one node, one per peer.
#[derive(Debug)]
pub(crate) struct Gossip {
    /// By member index; `None` for this node. Members the cluster admits later
    /// get theirs at the first record queued for them.
    outboxes: RwLock<Vec<Option<Arc<Outbox>>>>,
    /// How many members the node started with: later ones are sent to by
    /// [`run_admitted_senders`].
    initial: usize,
    /// This node's index: it has no outbox.
    me: usize,
    /// Told when an outbox is added for an admitted member.
    added: Notify,
    /// The incarnation whose records the outboxes take (see [`Gossip::clear`]),
    /// for outboxes added later.
    incarnation: AtomicU64,
    delay: Duration,
}

impl Gossip {
    /// Records waiting in all outboxes, and how long the oldest has waited (its
    /// due time less the delay it was queued with): the backlog `/metrics` shows.
    pub fn backlog(&self) -> (usize, Duration) {
        let now = Instant::now();
        let mut depth = 0;
        let mut oldest = Duration::ZERO;
        for outbox in self.outboxes().into_iter().flatten() {
            let queue = outbox.queue.lock().expect("outbox lock poisoned");
            depth += queue.len();
            if let Some(front) = queue.front() {
                let queued_at = front.due.checked_sub(self.delay).unwrap_or(front.due);
                oldest = oldest.max(now.saturating_duration_since(queued_at));
            }
        }
        (depth, oldest)
    }

    /// Outboxes for every member but `me`, each message waiting `delay`, for the
    /// node's incarnation `incarnation`.
    pub fn new(members: usize, me: usize, delay: Duration, incarnation: u64) -> Self {
        Self {
            outboxes: RwLock::new(
                (0..members)
                    .map(|i| (i != me).then(|| Outbox::new(incarnation)))
                    .collect(),
            ),
            initial: members,
            me,
            added: Notify::new(),
            incarnation: AtomicU64::new(incarnation),
            delay,
        }
    }

    fn outboxes(&self) -> Vec<Option<Arc<Outbox>>> {
        self.outboxes
            .read()
            .expect("outboxes lock poisoned")
            .clone()
    }

    /// The outbox of `peer`, added if the peer was admitted after this node
    /// started; `None` for this node itself.
    fn outbox(&self, peer: usize) -> Option<Arc<Outbox>> {
        if peer == self.me {
            return None;
        }
        if let Some(Some(outbox)) = self
            .outboxes
            .read()
            .expect("outboxes lock poisoned")
            .get(peer)
        {
            return Some(outbox.clone());
        }
        let mut outboxes = self.outboxes.write().expect("outboxes lock poisoned");
        if outboxes.len() <= peer {
            outboxes.resize(peer + 1, None);
        }
        let outbox = outboxes[peer]
            .get_or_insert_with(|| Outbox::new(self.incarnation.load(Ordering::Relaxed)))
            .clone();
        drop(outboxes);
        self.added.notify_one();
        Some(outbox)
    }

    /// Queues records for `peer`; they leave no earlier than the gossip delay from now.
    /// `ack` is told when the peer has stored each of them. `incarnation` is the
    /// node's incarnation that read or wrote them: if it is over, they are dropped
    /// (with `ack`), never sent as a later incarnation's.
    pub fn enqueue(
        &self,
        peer: usize,
        records: impl IntoIterator<Item = Record>,
        ack: Option<AckSender>,
        incarnation: u64,
    ) {
        let outbox = self.outbox(peer).expect("no outbox to self");
        let due = Instant::now() + self.delay;
        let mut queue = outbox.queue.lock().expect("outbox lock poisoned");
        if outbox.incarnation.load(Ordering::Relaxed) != incarnation {
            // Queued late by an incarnation that is over (a write task that
            // outlived its fence): dropped, never sent as a later one's.
            return;
        }
        for record in records {
            if queue.len() >= MAX_QUEUED_RECORDS {
                let dropped = queue.pop_front();
                debug!(peer, key = ?dropped.map(|p| p.record.key), "outbox full: dropped oldest record (anti-entropy will repair)");
            }
            queue.push_back(Pending {
                due,
                record,
                ack: ack.clone(),
            });
        }
        drop(queue);
        outbox.ready.notify_one();
    }

    /// Empties every outbox, dropping the acknowledgement senders with the records,
    /// and from now on takes only records of `incarnation`: a node starting over
    /// as a new incarnation sends nothing its old one queued, or queues late.
    pub fn clear(&self, incarnation: u64) {
        let outboxes = self.outboxes.read().expect("outboxes lock poisoned");
        self.incarnation.store(incarnation, Ordering::Relaxed);
        for outbox in outboxes.iter().flatten() {
            let mut queue = outbox.queue.lock().expect("outbox lock poisoned");
            outbox.incarnation.store(incarnation, Ordering::Relaxed);
            queue.clear();
        }
    }

    /// One sender per peer, and one task running the senders of the peers
    /// admitted later, to be spawned by whoever runs the node.
    pub fn senders(self: &Arc<Self>, peering: &Arc<Peering>) -> Vec<BoxFuture<'static, ()>> {
        let mut senders: Vec<BoxFuture<'static, ()>> = self
            .outboxes()
            .into_iter()
            .enumerate()
            .filter_map(|(peer, outbox)| {
                let outbox = outbox?;
                Some(run_sender(peering.clone(), peer, outbox).boxed())
            })
            .collect();
        senders.push(run_admitted_senders(peering.clone(), self.clone()).boxed());
        senders
    }
}

/// Runs a sender for each peer admitted after the node started, as its outbox
/// appears: one task for all of them, since joins are rare and the simulator must
/// be able to stop every task of a node it crashes.
async fn run_admitted_senders(state: Arc<Peering>, gossip: Arc<Gossip>) {
    let mut running = FuturesUnordered::new();
    let mut started = gossip.initial;
    loop {
        let added = gossip.added.notified();
        let outboxes = gossip.outboxes();
        for (peer, outbox) in outboxes.iter().enumerate().skip(started) {
            if let Some(outbox) = outbox {
                running.push(run_sender(state.clone(), peer, outbox.clone()));
            }
        }
        started = started.max(outboxes.len());
        tokio::select! {
            () = added => {}
            Some(()) = running.next(), if !running.is_empty() => {}
        }
    }
}

/// Sends `peer`'s due records forever, one message at a time.
async fn run_sender(state: Arc<Peering>, peer: usize, outbox: Arc<Outbox>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let due = outbox.next_due().await;
        // A deadline already reached still waits for the timer's next 1 ms tick, which
        // with `--gossip-delay 0` was most of a `--write-acks 2` write's latency: sleep
        // only for a deadline still ahead.
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        // Read before the batch is taken: if the node starts over meanwhile, the
        // batch (queued by the old incarnation) is dropped below, never sent as the
        // new one's.
        let incarnation = state.incarnation();
        let batch = outbox.take_due(Instant::now());
        if batch.is_empty() {
            continue;
        }
        if state.is_fenced() || state.incarnation() != incarnation {
            // Declared failed: this incarnation behaves as if crashed.
            continue;
        }
        let view = state.view().current();
        if view.out.contains(&peer) {
            // The peer is out of the ring (failed, or restarted and catching up):
            // what it would have held goes to the next live replica, or reaches it
            // when it catches up. Dropping the batch also drops its acknowledgement
            // senders, so no writer waits for this peer.
            debug!(
                peer = state.id_of(peer),
                records = batch.len(),
                "dropped gossip for a peer out of the ring"
            );
            continue;
        }
        // The peer refuses records of keys that it and this node do not both
        // replicate in its view (invariant R2). Those that do not in this node's
        // current view are dropped (with their acknowledgement senders): their key
        // moved, and anti-entropy brings its new replicas what they lack. Without
        // this a batch refused for good would block the outbox.
        let (batch, moved): (Vec<Pending>, Vec<Pending>) = batch.into_iter().partition(|p| {
            let replicas = view.ring.replicas(&p.record.key);
            replicas.contains(&state.me()) && replicas.contains(&peer)
        });
        if !moved.is_empty() {
            debug!(
                peer = state.id_of(peer),
                records = moved.len(),
                "dropped gossip of keys this node and the peer no longer both replicate"
            );
        }
        if batch.is_empty() {
            continue;
        }
        let request = PushRequest {
            from: state.id().to_string(),
            records: batch.iter().map(|p| record_to_wire(&p.record)).collect(),
            incarnation,
            handoff: false,
        };
        let bytes = request.encoded_len() as u64;
        match state.transport().push(peer, request).await {
            Ok(_) => {
                let stats = &state.stats();
                stats::add(&stats.push_messages_sent, 1);
                stats::add(&stats.records_pushed, batch.len() as u64);
                stats::add(&stats.push_bytes_sent, bytes);
                for pending in batch {
                    if let Some(ack) = pending.ack {
                        let _ = ack.send(());
                    }
                }
                backoff = MIN_BACKOFF;
            }
            Err(status) => {
                stats::add(&state.stats().push_failures, 1);
                warn!(
                    peer = state.id_of(peer),
                    records = batch.len(),
                    error = %status.message(),
                    "gossip push failed; retrying in {backoff:?}"
                );
                outbox.requeue(batch, incarnation);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Stores gossiped records, all of them or none, after checking the push
/// (invariant R1 of docs/protocols.md):
///
/// - `from` is another member, its incarnation and every record well formed
///   (`validation`), else `INVALID_ARGUMENT`;
/// - the sender's incarnation is not over — declared failed, or superseded by
///   a restart (invariant D2: a primary declared failed while paused or cut
///   off can no longer gather acknowledgements here) — else
///   `FAILED_PRECONDITION`;
/// - in this node's view, both this node and the sender replicate every
///   record's key (while joining: in the ring it joins, [`unreplicated`]), else
///   `FAILED_PRECONDITION`. Senders only push keys both replicate in their own
///   view, so a legitimate push is refused only while the two views differ;
///   the sender keeps it and retries, and a refused push acknowledges nothing,
///   so no write counts a replica that does not hold it.
pub(crate) fn receive_push(
    state: &Peering,
    store: &MultiVersionStore,
    request: PushRequest,
) -> Result<PushReply, Status> {
    state.check_serving()?;
    let config = state.config();
    let membership = state.roster();
    let PushRequest {
        from,
        records,
        incarnation,
        handoff,
    } = request;
    let refused = |r: Refusal| r.status(state.id(), "push", &from);
    let sender = validation::sender(membership, state.me(), &from).map_err(refused)?;
    validation::incarnation(incarnation).map_err(refused)?;
    let records = validation::records(membership, records).map_err(refused)?;
    // Runs under the view's read lock (see `ViewCell::with_current`): it uses
    // the view it is given and never reads the cell again.
    state.view().with_current(|view| {
        if config.fence && !view.accepts(sender, incarnation) {
            return Err(Status::failed_precondition(format!(
                "node {} counts incarnation {incarnation} of node {from} over (declared \
                 failed or restarted since) and refuses its pushes; nothing was stored",
                state.id(),
            )));
        }
        let joining = view.members.get(state.me()).liveness == Liveness::Joining;
        let ring = if joining {
            state.view().ring_with_alive(view, state.me())
        } else {
            view.ring.clone()
        };
        if handoff && !view.may_hand_off(sender) {
            // A handoff comes from a node alive in the ring, or leaving it, that
            // holds ranges it no longer replicates (`View::may_hand_off`).
            return Err(Status::failed_precondition(format!(
                "node {} refused a handoff from {from}: {from} is not alive in its view \
                 (epoch {}); nothing was stored",
                state.id(),
                view.epoch,
            )));
        }
        // A handoff's sender no longer replicates the keys by definition: only this
        // node's half of R2 applies to it.
        let sender_must_replicate = config.fence && !handoff;
        let keys = records.iter().map(|r| r.key.as_str());
        if let Some((key, who)) =
            unreplicated(&ring, state.me(), sender, sender_must_replicate, keys)
        {
            let who = match who {
                Unreplicated::Here => "this node".to_string(),
                Unreplicated::BySender => format!("the sender {from}"),
            };
            // Views differ (a crash or a rejoin not known to both yet), or the
            // push is forged: store nothing where no reader looks.
            return Err(Status::failed_precondition(format!(
                "node {} refused a push from {from}: in its view (epoch {}) {who} does \
                 not replicate key {key:?}; nothing was stored (the sender retries once \
                 views agree)",
                state.id(),
                view.epoch,
            )));
        }
        // One call, so that with --fsync always one sync covers the push.
        let applied = store.merge_all(&records) as u32;
        Ok(PushReply { applied })
    })
}

/// Which side of a push does not replicate a key it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unreplicated {
    /// The receiving node.
    Here,
    /// The sender.
    BySender,
}

/// The first of `keys` that node `me` or the `sender` does not replicate on `ring`,
/// and which of them: a push carrying it is refused. A sender this node counts
/// failed is out of its ring, so the sender's half is a fence too (D2): without
/// the `fence`, as `--break-fence` asks, only this node's half is checked.
pub(crate) fn unreplicated<'k>(
    ring: &Ring,
    me: usize,
    sender: usize,
    fence: bool,
    keys: impl IntoIterator<Item = &'k str>,
) -> Option<(&'k str, Unreplicated)> {
    keys.into_iter().find_map(|key| {
        let replicas = ring.replicas(key);
        if !replicas.contains(&me) {
            Some((key, Unreplicated::Here))
        } else if fence && !replicas.contains(&sender) {
            Some((key, Unreplicated::BySender))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use dida_core::Version;

    use super::*;

    fn record(key: &str, size: usize) -> Record {
        Record {
            key: key.to_string(),
            version: Version {
                number: 1,
                replica: 1,
            },
            value: "x".repeat(size),
        }
    }

    fn keys(batch: &[Pending]) -> Vec<&str> {
        batch.iter().map(|p| p.record.key.as_str()).collect()
    }

    fn outbox(gossip: &Gossip, peer: usize) -> Arc<Outbox> {
        gossip.outbox(peer).expect("an outbox")
    }

    #[test]
    fn records_leave_only_once_the_gossip_delay_has_passed_oldest_first() {
        let delay = Duration::from_millis(100);
        let gossip = Gossip::new(3, 0, delay, 0);
        let queued_at = Instant::now();
        gossip.enqueue(1, [record("a", 1), record("b", 1)], None, 0);
        let first = outbox(&gossip, 1);
        assert!(first.take_due(queued_at).is_empty(), "not due yet");
        let due = queued_at + delay + Duration::from_millis(5);
        assert_eq!(keys(&first.take_due(due)), ["a", "b"]);
        assert!(first.take_due(due).is_empty());
        assert!(gossip.outbox(0).is_none(), "no outbox to itself");
        // A member admitted later gets an outbox at its first record.
        gossip.enqueue(4, [record("c", 1)], None, 0);
        assert_eq!(keys(&outbox(&gossip, 4).take_due(due)), ["c"]);
        assert!(gossip.outbox(3).is_some());
    }

    #[test]
    fn one_message_carries_at_most_its_size_limit_but_always_one_record() {
        let gossip = Gossip::new(2, 0, Duration::ZERO, 0);
        let big = MAX_PUSH_BYTES / 2;
        gossip.enqueue(1, (0..3).map(|i| record(&format!("k{i}"), big)), None, 0);
        let outbox = outbox(&gossip, 1);
        let later = Instant::now() + Duration::from_secs(1);
        assert_eq!(
            keys(&outbox.take_due(later)),
            ["k0"],
            "two halves and their keys exceed the limit"
        );
        // A record larger than a message still leaves, alone.
        gossip.enqueue(1, [record("huge", MAX_PUSH_BYTES * 2)], None, 0);
        assert_eq!(keys(&outbox.take_due(later)), ["k1"]);
        assert_eq!(keys(&outbox.take_due(later)), ["k2"]);
        assert_eq!(keys(&outbox.take_due(later)), ["huge"]);
    }

    #[test]
    fn records_of_an_incarnation_that_is_over_are_never_queued_again() {
        let gossip = Gossip::new(2, 0, Duration::ZERO, 7);
        gossip.enqueue(1, [record("old", 1)], None, 7);
        let outbox = outbox(&gossip, 1);
        let later = Instant::now() + Duration::from_secs(1);
        let in_flight = outbox.take_due(later);
        gossip.clear(8);
        gossip.enqueue(1, [record("late", 1)], None, 7);
        outbox.requeue(in_flight, 7);
        assert!(outbox.take_due(later).is_empty());
        gossip.enqueue(1, [record("new", 1)], None, 8);
        assert_eq!(keys(&outbox.take_due(later)), ["new"]);
    }

    #[test]
    fn a_failed_batch_goes_back_in_front_in_its_order() {
        let gossip = Gossip::new(2, 0, Duration::ZERO, 0);
        gossip.enqueue(1, [record("a", 1), record("b", 1)], None, 0);
        let outbox = outbox(&gossip, 1);
        let later = Instant::now() + Duration::from_secs(1);
        let batch = outbox.take_due(later);
        gossip.enqueue(1, [record("c", 1)], None, 0);
        outbox.requeue(batch, 0);
        assert_eq!(keys(&outbox.take_due(later)), ["a", "b", "c"]);
    }

    #[test]
    fn a_full_outbox_drops_its_oldest_records_on_enqueue_and_on_requeue() {
        let gossip = Gossip::new(2, 0, Duration::ZERO, 0);
        let outbox = outbox(&gossip, 1);
        let later = Instant::now() + Duration::from_secs(1);
        gossip.enqueue(
            1,
            (0..MAX_QUEUED_RECORDS).map(|i| record(&format!("k{i}"), 0)),
            None,
            0,
        );
        gossip.enqueue(1, [record("newest", 0)], None, 0);
        let queue = outbox.queue.lock().unwrap();
        assert_eq!(queue.len(), MAX_QUEUED_RECORDS);
        assert_eq!(queue.front().unwrap().record.key, "k1", "k0 was dropped");
        assert_eq!(queue.back().unwrap().record.key, "newest");
        drop(queue);
        // A failed batch put back into a full outbox: the oldest (the batch's
        // first records) go, the newest stay.
        let batch: Vec<Pending> = (0..3)
            .map(|i| Pending {
                due: Instant::now(),
                record: record(&format!("old{i}"), 0),
                ack: None,
            })
            .collect();
        outbox.requeue(batch, 0);
        let queue = outbox.queue.lock().unwrap();
        assert_eq!(queue.len(), MAX_QUEUED_RECORDS);
        assert_eq!(queue.front().unwrap().record.key, "k1");
        assert_eq!(queue.back().unwrap().record.key, "newest");
        drop(queue);
        assert!(!outbox.take_due(later).is_empty());
    }

    #[test]
    fn a_push_is_refused_at_its_first_key_either_side_does_not_replicate() {
        let ring = Ring::new(&["s1", "s2", "s3", "s4"], 16, 2);
        let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
        let both = keys
            .iter()
            .find(|k| ring.replicas(k).contains(&0) && ring.replicas(k).contains(&1))
            .expect("a key of s1 and s2");
        let not_here = keys
            .iter()
            .find(|k| !ring.replicas(k).contains(&0))
            .expect("a key s1 does not replicate");
        let not_sender = keys
            .iter()
            .find(|k| ring.replicas(k).contains(&0) && !ring.replicas(k).contains(&1))
            .expect("a key of s1 without s2");
        assert_eq!(unreplicated(&ring, 0, 1, true, [both.as_str()]), None);
        assert_eq!(
            unreplicated(&ring, 0, 1, true, [both.as_str(), not_here.as_str()]),
            Some((not_here.as_str(), Unreplicated::Here))
        );
        assert_eq!(
            unreplicated(&ring, 0, 1, true, [not_sender.as_str()]),
            Some((not_sender.as_str(), Unreplicated::BySender))
        );
        // Without the fence the sender's half is not checked; this node's is.
        assert_eq!(
            unreplicated(&ring, 0, 1, false, [not_sender.as_str()]),
            None
        );
        assert_eq!(
            unreplicated(&ring, 0, 1, false, [not_here.as_str()]),
            Some((not_here.as_str(), Unreplicated::Here))
        );
    }
}
