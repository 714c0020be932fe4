//! Replication counters, reported by `Status` so that the cost of gossip and
//! anti-entropy can be observed on a live cluster, and membership counters (the
//! failure detector's and the rejoin's), reported as metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use dida_proto::storage::ReplicationStats as WireStats;

/// Monotonic counters of replication traffic sent and received by one node.
#[derive(Debug, Default)]
pub(crate) struct ReplicationStats {
    pub push_messages_sent: AtomicU64,
    pub records_pushed: AtomicU64,
    pub push_bytes_sent: AtomicU64,
    pub push_failures: AtomicU64,
    pub anti_entropy_rounds: AtomicU64,
    pub anti_entropy_bytes_sent: AtomicU64,
    pub anti_entropy_bytes_received: AtomicU64,
    pub records_repaired: AtomicU64,
    pub handoff_records_sent: AtomicU64,
    pub handoff_bytes_sent: AtomicU64,
    pub records_dropped: AtomicU64,
    pub bytes_dropped: AtomicU64,
    pub catch_up_records_received: AtomicU64,
    pub catch_up_bytes_received: AtomicU64,
}

/// Adds `n` to one of the counters.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

impl ReplicationStats {
    /// A snapshot in wire form.
    pub fn snapshot(&self) -> WireStats {
        WireStats {
            push_messages_sent: self.push_messages_sent.load(Relaxed),
            records_pushed: self.records_pushed.load(Relaxed),
            push_bytes_sent: self.push_bytes_sent.load(Relaxed),
            push_failures: self.push_failures.load(Relaxed),
            anti_entropy_rounds: self.anti_entropy_rounds.load(Relaxed),
            anti_entropy_bytes_sent: self.anti_entropy_bytes_sent.load(Relaxed),
            anti_entropy_bytes_received: self.anti_entropy_bytes_received.load(Relaxed),
            records_repaired: self.records_repaired.load(Relaxed),
            handoff_records_sent: self.handoff_records_sent.load(Relaxed),
            handoff_bytes_sent: self.handoff_bytes_sent.load(Relaxed),
            records_dropped: self.records_dropped.load(Relaxed),
            bytes_dropped: self.bytes_dropped.load(Relaxed),
            catch_up_records_received: self.catch_up_records_received.load(Relaxed),
            catch_up_bytes_received: self.catch_up_bytes_received.load(Relaxed),
        }
    }
}

/// Monotonic counters of what one node's failure detector and rejoin did.
#[derive(Debug, Default)]
pub(crate) struct MembershipStats {
    /// Peers this node's detector started to suspect.
    pub suspicions: AtomicU64,
    /// Peers this node's detector declared failed.
    pub declarations: AtomicU64,
    /// Times this node learned it had been declared failed and fenced itself.
    pub fences: AtomicU64,
    /// Times this node caught up and turned alive (at start and after each rejoin).
    pub catch_ups: AtomicU64,
}
