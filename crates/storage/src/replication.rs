//! The peer-facing gRPC service: receives gossip pushes, answers anti-entropy
//! digests, failure-detector probes, and the key pulls of a node taking over as
//! primary.

use std::collections::HashSet;
use std::sync::Arc;

use dida_core::RangeId;
use std::time::Duration;

use dida_proto::convert::{record_from_wire, record_to_wire};
use dida_proto::storage::replication_server::Replication;
use dida_proto::storage::{
    DigestReply, DigestRequest, FetchKeyReply, FetchKeyRequest, ProbeForReply, ProbeForRequest,
    ProbeReply, ProbeRequest, PushReply, PushRequest,
};
use tonic::{Request, Response, Status};
use tracing::warn;

use crate::anti_entropy::{compare_digests, shared_ranges};
use crate::detector;
use crate::state::NodeState;

/// Implements [`Replication`] over a node's state.
#[derive(Debug, Clone)]
pub(crate) struct ReplicationService {
    pub state: Arc<NodeState>,
}

#[tonic::async_trait]
impl Replication for ReplicationService {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushReply>, Status> {
        self.state.check_serving()?;
        let request = request.into_inner();
        let mut applied = 0;
        for wire in request.records {
            let record =
                record_from_wire(wire).map_err(|e| Status::invalid_argument(e.to_string()))?;
            if !self.state.replicates(&record.key) {
                // Only possible if the sender's ring differs from ours: refuse to store
                // data where no reader would look for it.
                warn!(from = %request.from, key = %record.key, "refused a pushed record this node does not replicate");
                continue;
            }
            if self.state.store.merge(&record) {
                applied += 1;
            }
        }
        Ok(Response::new(PushReply { applied }))
    }

    async fn sync_digests(
        &self,
        request: Request<DigestRequest>,
    ) -> Result<Response<DigestReply>, Status> {
        self.state.check_serving()?;
        let request = request.into_inner();
        let state = &self.state;
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
        Ok(Response::new(compare_digests(
            &state.store,
            &ring,
            &shared,
            &request.ranges,
        )))
    }

    async fn probe(&self, request: Request<ProbeRequest>) -> Result<Response<ProbeReply>, Status> {
        self.state.check_serving()?;
        let request = request.into_inner();
        if let Ok(from) = self.state.config.membership.index_of(&request.from) {
            self.state
                .heard_from
                .lock()
                .expect("heard-from lock poisoned")
                .insert(from);
        }
        self.state.learn_failed_ids(&request.failed);
        Ok(Response::new(ProbeReply {
            failed: self.state.failed_ids(),
        }))
    }

    async fn probe_for(
        &self,
        request: Request<ProbeForRequest>,
    ) -> Result<Response<ProbeForReply>, Status> {
        self.state.check_serving()?;
        let request = request.into_inner();
        let state = &self.state;
        let target = state
            .config
            .membership
            .index_of(&request.target)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if target == state.me {
            return Ok(Response::new(ProbeForReply { reachable: true }));
        }
        // The asker's timeout, within reason: a probe never holds a task for long.
        let timeout = Duration::from_millis(request.timeout_ms.clamp(1, 10_000).into());
        let reachable = detector::probe_for(state, target, timeout).await;
        Ok(Response::new(ProbeForReply { reachable }))
    }

    async fn fetch_key(
        &self,
        request: Request<FetchKeyRequest>,
    ) -> Result<Response<FetchKeyReply>, Status> {
        self.state.check_serving()?;
        let request = request.into_inner();
        let records = self.state.store.records_of(&request.key, |_| true);
        Ok(Response::new(FetchKeyReply {
            records: records.iter().map(record_to_wire).collect(),
        }))
    }
}
