//! What a node does with each message a peer sends it: gossip pushes, anti-entropy
//! digests, failure-detector probes, and the key pulls of a node taking over as
//! primary. The gRPC service (`replication`) and the simulator's network deliver
//! messages here alike.
//!
//! Every handler checks its message before it changes anything (`validation`, and
//! the view-dependent rules below): a message refused changes neither the store
//! nor the view, and its status names what was wrong (invariant R1).

use std::collections::HashSet;
use std::time::Duration;

use dida_core::{Liveness, RangeId, Record, Ring};
use dida_proto::convert::record_to_wire;
use dida_proto::storage::{
    DigestReply, DigestRequest, FetchKeyReply, FetchKeyRequest, HandbackReply, HandbackRequest,
    ProbeForReply, ProbeForRequest, ProbeReply, ProbeRequest, PushReply, PushRequest, RangeDigest,
};
use tonic::Status;

use crate::anti_entropy::{compare_digests, shared_ranges};
use crate::detector;
use crate::state::Node;
use crate::store::MultiVersionStore;
use crate::validation::{self, Refusal};

impl Node {
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
    ///   record's key (while joining: in the ring it joins), else
    ///   `FAILED_PRECONDITION`. Senders only push keys both replicate in their own
    ///   view, so a legitimate push is refused only while the two views differ;
    ///   the sender keeps it and retries, and a refused push acknowledges nothing,
    ///   so no write counts a replica that does not hold it.
    pub async fn push(&self, request: PushRequest) -> Result<PushReply, Status> {
        let state = &self.peering;
        state.check_serving()?;
        let membership = &state.config.membership;
        let PushRequest {
            from,
            records,
            incarnation,
        } = request;
        let refused = |r: Refusal| r.status(state.id(), "push", &from);
        let sender = validation::sender(membership, state.me, &from).map_err(refused)?;
        validation::incarnation(incarnation).map_err(refused)?;
        let records = validation::records(membership, records).map_err(refused)?;
        // Runs under the view's read lock (see `ViewCell::with_current`): it uses
        // the view it is given and never reads the cell again.
        state.view.with_current(|view| {
            if state.config.fence && !view.accepts(sender, incarnation) {
                return Err(Status::failed_precondition(format!(
                    "node {} counts incarnation {incarnation} of node {from} over (declared \
                     failed or restarted since) and refuses its pushes; nothing was stored",
                    state.id(),
                )));
            }
            let joining = view.members.get(state.me).liveness == Liveness::Joining;
            let ring = if joining {
                state.view.ring_with_alive(view, state.me)
            } else {
                view.ring.clone()
            };
            for record in &records {
                let replicas = ring.replicas(&record.key);
                // A sender this node counts failed is out of its ring, so this check
                // is a fence too (D2): `--break-fence` turns it off with the other.
                let sender_replicates = replicas.contains(&sender) || !state.config.fence;
                let who = match (replicas.contains(&state.me), sender_replicates) {
                    (true, true) => continue,
                    (false, _) => "this node".to_string(),
                    (true, false) => format!("the sender {from}"),
                };
                // Views differ (a crash or a rejoin not known to both yet), or the
                // push is forged: store nothing where no reader looks.
                return Err(Status::failed_precondition(format!(
                    "node {} refused a push from {from}: in its view (epoch {}) {who} does \
                     not replicate key {:?}; nothing was stored (the sender retries once \
                     views agree)",
                    state.id(),
                    view.epoch,
                    record.key
                )));
            }
            // One call, so that with --fsync always one sync covers the push.
            let applied = self.store.merge_all(&records) as u32;
            Ok(PushReply { applied })
        })
    }

    /// B's side of an anti-entropy round. The sender must be another member whose
    /// ring is this node's (same fingerprint), and every range it sends must be
    /// one both replicate there, named once (the sender computes the same shared
    /// ranges from the same ring); otherwise nothing is compared.
    pub async fn sync_digests(&self, request: DigestRequest) -> Result<DigestReply, Status> {
        let state = &self.peering;
        state.check_serving()?;
        let refused = |r: Refusal| r.status(state.id(), "digest exchange", &request.from);
        let sender = validation::sender(&state.config.membership, state.me, &request.from)
            .map_err(refused)?;
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
        let named = validation::ranges(ring.range_count(), request.ranges.iter().map(|r| r.range))
            .map_err(refused)?;
        let shared: HashSet<RangeId> = shared_ranges(&ring, state.me, sender).into_iter().collect();
        if let Some(range) = named.iter().find(|r| !shared.contains(r)) {
            return Err(refused(Refusal(format!(
                "range {range} is not one both nodes replicate in the ring they agree on"
            ))));
        }
        Ok(compare_digests(
            &self.store,
            &ring,
            &shared,
            &request.ranges,
        ))
    }

    /// Answers a probe, exchanging views. The view is believed only from another
    /// member and only if every entry names a member, once, with a known liveness
    /// and a bounded incarnation (`validation::view`); otherwise the probe is
    /// refused and changes nothing — not even who has been heard from.
    pub async fn probe(&self, request: ProbeRequest) -> Result<ProbeReply, Status> {
        let state = &self.peering;
        state.check_serving()?;
        let refused = |r: Refusal| r.status(state.id(), "probe", &request.from);
        let membership = &state.config.membership;
        let from = validation::sender(membership, state.me, &request.from).map_err(refused)?;
        let updates = validation::view(membership, &request.view).map_err(refused)?;
        state
            .heard_from
            .lock()
            .expect("heard-from lock poisoned")
            .insert(from);
        if !updates.is_empty() {
            state.learn(Some(from), updates);
        }
        Ok(ProbeReply {
            view: state.view_to_wire(),
        })
    }

    /// Probes another node on the caller's behalf: the caller must be another
    /// member and the target a member other than the caller.
    pub async fn probe_for(&self, request: ProbeForRequest) -> Result<ProbeForReply, Status> {
        let state = &self.peering;
        state.check_serving()?;
        let refused = |r: Refusal| r.status(state.id(), "probe request", &request.from);
        let membership = &state.config.membership;
        let from = validation::sender(membership, state.me, &request.from).map_err(refused)?;
        let target = membership.index_of(&request.target).map_err(|e| {
            refused(Refusal(format!(
                "the target is not a storage node of this cluster ({e})"
            )))
        })?;
        if target == from {
            return Err(refused(Refusal(
                "the target is the sender itself, which needs no one to probe it".to_string(),
            )));
        }
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
    /// acknowledged that the new primary missed. The sender, key and view are
    /// checked first; a malformed pull is refused and adopts nothing.
    pub async fn fetch_key(&self, request: FetchKeyRequest) -> Result<FetchKeyReply, Status> {
        let state = &self.peering;
        state.check_serving()?;
        let refused = |r: Refusal| r.status(state.id(), "key pull", &request.from);
        let membership = &state.config.membership;
        let from = validation::sender(membership, state.me, &request.from).map_err(refused)?;
        validation::key(&request.key).map_err(refused)?;
        let updates = validation::view(membership, &request.view).map_err(refused)?;
        if !updates.is_empty() {
            state.learn(Some(from), updates);
        }
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
    /// [`HANDBACK_REPLY_BYTES`]. Everything is checked before the view is adopted
    /// — another member as sender, a well-formed view, the same first ring, ranges
    /// of that ring named once — so a refused handback changes nothing.
    pub async fn handback(&self, request: HandbackRequest) -> Result<HandbackReply, Status> {
        let state = &self.peering;
        state.check_serving()?;
        let refused = |r: Refusal| r.status(state.id(), "handback", &request.from);
        let membership = &state.config.membership;
        let from = validation::sender(membership, state.me, &request.from).map_err(refused)?;
        let updates = validation::view(membership, &request.view).map_err(refused)?;
        let initial = state.view.initial_ring();
        if request.ring_fingerprint != initial.fingerprint() {
            return Err(Status::failed_precondition(format!(
                "node {} and node {} were started with different rings (different --peers, \
                 --vnodes or --replication-factor); handback refused",
                state.id(),
                request.from
            )));
        }
        validation::ranges(
            initial.range_count(),
            request.ranges.iter().map(|r| r.range),
        )
        .map_err(refused)?;
        if !updates.is_empty() {
            state.learn(Some(from), updates);
        }
        state.check_serving()?;
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
/// `theirs` (ranges of `ring`, as the handback checked), whole ranges at a time
/// while they fit in `budget` bytes (at least one range), with the ranges fully
/// answered: those that matched and those sent.
pub(crate) fn differing_records(
    store: &MultiVersionStore,
    ring: &Ring,
    theirs: &[RangeDigest],
    budget: usize,
) -> (Vec<Record>, Vec<RangeId>) {
    let wanted: Vec<RangeId> = theirs.iter().map(|r| r.range).collect();
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
