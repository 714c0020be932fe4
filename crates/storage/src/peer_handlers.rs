//! What a node does with each message a peer sends it: gossip pushes, anti-entropy
//! digests, failure-detector probes, and the key pulls of a node taking over as
//! primary. The gRPC service (`replication`) and the simulator's network deliver
//! messages here alike.

use std::collections::HashSet;
use std::time::Duration;

use dida_core::RangeId;
use dida_proto::convert::{record_from_wire, record_to_wire};
use dida_proto::storage::{
    DigestReply, DigestRequest, FetchKeyReply, FetchKeyRequest, ProbeForReply, ProbeForRequest,
    ProbeReply, ProbeRequest, PushReply, PushRequest,
};
use tonic::Status;
use tracing::warn;

use crate::anti_entropy::{compare_digests, shared_ranges};
use crate::detector;
use crate::state::Node;
use crate::view::View;

impl Node {
    /// Stores gossiped records this node replicates. A push from a peer this node
    /// counts failed is refused whole (invariant D2): a primary declared failed
    /// while paused or cut off can no longer gather acknowledgements here.
    pub async fn push(&self, request: PushRequest) -> Result<PushReply, Status> {
        let state = &self.peering;
        state.check_serving()?;
        let sender = state.config.membership.index_of(&request.from).ok();
        // Runs under the view's read lock (see `ViewCell::unless_failed`): it uses
        // the view it is given and never reads the cell again.
        let store = |view: &View| {
            let mut accepted = Vec::with_capacity(request.records.len());
            for wire in request.records {
                let record =
                    record_from_wire(wire).map_err(|e| Status::invalid_argument(e.to_string()))?;
                if !view.ring.replicas(&record.key).contains(&state.me) {
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
        };
        match sender {
            Some(sender) if state.config.fence => {
                state.view.unless_failed(sender, store).unwrap_or_else(|| {
                    Err(Status::failed_precondition(format!(
                        "node {} counts node {} failed and refuses its pushes",
                        state.id(),
                        state.id_of(sender)
                    )))
                })
            }
            _ => store(&state.view.current()),
        }
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
        state.learn_failed_ids(&request.failed);
        Ok(ProbeReply {
            failed: state.failed_ids(),
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

    /// Hands a new primary this node's versions of a key, after adopting the failed
    /// nodes the new primary knows (D2): from here on this node refuses the old
    /// primary's pushes, so none can be acknowledged that the new primary missed.
    pub async fn fetch_key(&self, request: FetchKeyRequest) -> Result<FetchKeyReply, Status> {
        let state = &self.peering;
        state.check_serving()?;
        state.learn_failed_ids(&request.failed);
        state.check_serving()?;
        let records = self.store.records_of(&request.key, |_| true);
        Ok(FetchKeyReply {
            records: records.iter().map(record_to_wire).collect(),
        })
    }
}
