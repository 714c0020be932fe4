//! What a node does with each message a peer sends it: gossip pushes, anti-entropy
//! digests, failure-detector probes, and the key pulls of a node taking over as
//! primary. The gRPC service (`replication`) and the simulator's network deliver
//! messages here alike.

use std::collections::HashSet;
use std::time::Duration;

use dida_core::{Liveness, RangeId, Record, Ring};
use dida_proto::convert::{record_from_wire, record_to_wire};
use dida_proto::storage::{
    DigestReply, DigestRequest, FetchKeyReply, FetchKeyRequest, HandbackReply, HandbackRequest,
    ProbeForReply, ProbeForRequest, ProbeReply, ProbeRequest, PushReply, PushRequest, RangeDigest,
};
use tonic::Status;
use tracing::warn;

use crate::anti_entropy::{compare_digests, shared_ranges};
use crate::detector;
use crate::state::Node;
use crate::store::MultiVersionStore;

impl Node {
    /// Stores gossiped records this node replicates (any record while it is
    /// joining: it will replicate them once alive, and they spare it a repair). A
    /// push from an incarnation this node knows to be over — declared failed, or
    /// superseded by a restart — is refused whole (invariant D2): a primary declared
    /// failed while paused or cut off can no longer gather acknowledgements here.
    pub async fn push(&self, request: PushRequest) -> Result<PushReply, Status> {
        let state = &self.peering;
        state.check_serving()?;
        let sender = state.config.membership.index_of(&request.from).ok();
        // Runs under the view's read lock (see `ViewCell::with_current`): it uses
        // the view it is given and never reads the cell again.
        state.view.with_current(|view| {
            if let Some(sender) = sender.filter(|_| state.config.fence) {
                if !view.accepts(sender, request.incarnation) {
                    return Err(Status::failed_precondition(format!(
                        "node {} counts incarnation {} of node {} over (declared failed or \
                         restarted since) and refuses its pushes",
                        state.id(),
                        request.incarnation,
                        state.id_of(sender)
                    )));
                }
            }
            let joining = view.members.get(state.me).liveness == Liveness::Joining;
            let mut accepted = Vec::with_capacity(request.records.len());
            for wire in request.records {
                let record =
                    record_from_wire(wire).map_err(|e| Status::invalid_argument(e.to_string()))?;
                if !joining && !view.ring.replicas(&record.key).contains(&state.me) {
                    // Only possible if the sender's ring differs from ours: refuse to
                    // store data where no reader would look for it.
                    warn!(node = state.id(), from = %request.from, key = %record.key, "refused a pushed record this node does not replicate");
                    continue;
                }
                accepted.push(record);
            }
            // One call, so that with --fsync always one sync covers the push.
            let applied = self.store.merge_all(&accepted) as u32;
            Ok(PushReply { applied })
        })
    }

    /// B's side of an anti-entropy round.
    pub async fn sync_digests(&self, request: DigestRequest) -> Result<DigestReply, Status> {
        let state = &self.peering;
        state.check_serving()?;
        let ring = state.ring();
        if request.ring_fingerprint != ring.fingerprint() {
            return Err(Status::failed_precondition(format!(
                "node {} and node {} disagree on the ring (different --peers, --vnodes or \
                 --replication-factor, or views not yet equal after a crash); anti-entropy \
                 refused",
                state.id(),
                request.from
            )));
        }
        let sender = state
            .config
            .membership
            .index_of(&request.from)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let shared: HashSet<RangeId> = shared_ranges(&ring, state.me, sender).into_iter().collect();
        Ok(compare_digests(
            &self.store,
            &ring,
            &shared,
            &request.ranges,
        ))
    }

    /// Answers a probe, exchanging failed sets.
    pub async fn probe(&self, request: ProbeRequest) -> Result<ProbeReply, Status> {
        let state = &self.peering;
        state.check_serving()?;
        if let Ok(from) = state.config.membership.index_of(&request.from) {
            state
                .heard_from
                .lock()
                .expect("heard-from lock poisoned")
                .insert(from);
        }
        state.learn_wire(&request.view);
        Ok(ProbeReply {
            view: state.view_to_wire(),
        })
    }

    /// Probes another node on the caller's behalf.
    pub async fn probe_for(&self, request: ProbeForRequest) -> Result<ProbeForReply, Status> {
        let state = &self.peering;
        state.check_serving()?;
        let target = state
            .config
            .membership
            .index_of(&request.target)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if target == state.me {
            return Ok(ProbeForReply { reachable: true });
        }
        // The asker's timeout, within reason: a probe never holds a task for long.
        let timeout = Duration::from_millis(request.timeout_ms.clamp(1, 10_000).into());
        let reachable = detector::probe(state, target, timeout).await;
        Ok(ProbeForReply { reachable })
    }

    /// Hands a new primary this node's versions of a key, after adopting the new
    /// primary's view (D2, H1): from here on this node refuses the old primary's
    /// pushes, and executes no write of the key if it led it, so none can be
    /// acknowledged that the new primary missed.
    pub async fn fetch_key(&self, request: FetchKeyRequest) -> Result<FetchKeyReply, Status> {
        let state = &self.peering;
        state.check_serving()?;
        state.learn_wire(&request.view);
        state.check_serving()?;
        let records = self.store.records_of(&request.key, |_| true);
        Ok(FetchKeyReply {
            records: records.iter().map(record_to_wire).collect(),
        })
    }
}

impl Node {
    /// A rejoining node's catch-up (`rejoin`): adopts its view first — its
    /// "joining", or its "alive" that takes its keys back, after which this node
    /// executes no more writes of them (H1) — then returns this node's records in
    /// the ranges whose digests differ from the sender's, whole ranges up to
    /// [`HANDBACK_REPLY_BYTES`].
    pub async fn handback(&self, request: HandbackRequest) -> Result<HandbackReply, Status> {
        let state = &self.peering;
        state.check_serving()?;
        state.learn_wire(&request.view);
        state.check_serving()?;
        let initial = state.view.initial_ring();
        if request.ring_fingerprint != initial.fingerprint() {
            return Err(Status::failed_precondition(format!(
                "node {} and node {} were started with different rings (different --peers, \
                 --vnodes or --replication-factor); handback refused",
                state.id(),
                request.from
            )));
        }
        let (records, complete_ranges) =
            differing_records(&self.store, initial, &request.ranges, HANDBACK_REPLY_BYTES);
        Ok(HandbackReply {
            records: records.iter().map(record_to_wire).collect(),
            complete_ranges,
            view: state.view_to_wire(),
        })
    }
}

/// Largest payload a handback reply carries; the rejoining node asks again for the
/// ranges left out.
pub(crate) const HANDBACK_REPLY_BYTES: usize = 4 * 1024 * 1024;

/// The records `store` holds in the ranges of `ring` whose digests differ from
/// `theirs`, whole ranges at a time while they fit in `budget` bytes (at least one
/// range), with the ranges fully answered: those that matched and those sent.
pub(crate) fn differing_records(
    store: &MultiVersionStore,
    ring: &Ring,
    theirs: &[RangeDigest],
    budget: usize,
) -> (Vec<Record>, Vec<RangeId>) {
    let wanted: Vec<RangeId> = theirs
        .iter()
        .map(|r| r.range)
        .filter(|&r| (r as usize) < ring.range_count())
        .collect();
    let ours = store.range_digests(ring, &wanted);
    let mut records = Vec::new();
    let mut complete = Vec::new();
    let mut bytes = 0;
    for digest in theirs {
        let Some(&mine) = ours.get(&digest.range) else {
            continue;
        };
        if mine == digest.digest {
            complete.push(digest.range);
            continue;
        }
        let mut range_records = Vec::new();
        for (key, _) in store.versions_in(ring, &HashSet::from([digest.range])) {
            range_records.extend(store.records_of(&key, |_| true));
        }
        let size: usize = range_records
            .iter()
            .map(|r| r.key.len() + r.value.len() + 32)
            .sum();
        if !records.is_empty() && bytes + size > budget {
            continue;
        }
        bytes += size;
        records.extend(range_records);
        complete.push(digest.range);
    }
    (records, complete)
}
