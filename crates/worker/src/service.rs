//! The worker's gRPC service.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use dida_proto::execution::worker_server::Worker;
use dida_proto::execution::{
    ChainRequest, CompletionBatch, ExecuteAck, HandOff, HandOffAck, ListOperatorsReply,
    ListOperatorsRequest, WorkerStatusReply, WorkerStatusRequest,
};
use dida_proto::storage::{PingReply, PingRequest};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::chain::run_hop;
use crate::handoff;
use crate::node::WorkerState;

/// Implements [`Worker`] over the worker's state.
#[derive(Debug, Clone)]
pub(crate) struct WorkerService {
    pub state: Arc<WorkerState>,
}

#[tonic::async_trait]
impl Worker for WorkerService {
    /// Checks the request, starts running it in the background and answers at once:
    /// no caller waits for an operator to run. The answer to the scheduler (the
    /// request of a new execution) carries this worker's queued completions.
    async fn execute(
        &self,
        request: Request<ChainRequest>,
    ) -> Result<Response<ExecuteAck>, Status> {
        let request = request.into_inner();
        check(&self.state, &request)?;
        let completions = (request.next == 0).then(|| CompletionBatch {
            worker_id: self.state.config.id.clone(),
            completions: self.state.completions.take(),
        });
        tokio::spawn(run_hop(self.state.clone(), request));
        Ok(Response::new(ExecuteAck { completions }))
    }

    type HandOffStream = ReceiverStream<Result<HandOffAck, Status>>;

    /// Serves a peer worker's stream of hand-offs: each request gets the checks of
    /// `execute`, starts in the background and is acknowledged at once.
    async fn hand_off(
        &self,
        request: Request<Streaming<HandOff>>,
    ) -> Result<Response<Self::HandOffStream>, Status> {
        let state = self.state.clone();
        let acks = handoff::serve(request.into_inner(), state.stop.clone(), move |request| {
            check(&state, &request)?;
            tokio::spawn(run_hop(state.clone(), request));
            Ok(())
        });
        Ok(Response::new(acks))
    }

    async fn list_operators(
        &self,
        _request: Request<ListOperatorsRequest>,
    ) -> Result<Response<ListOperatorsReply>, Status> {
        Ok(Response::new(ListOperatorsReply {
            operators: self.state.registry.names(),
        }))
    }

    async fn status(
        &self,
        _request: Request<WorkerStatusRequest>,
    ) -> Result<Response<WorkerStatusReply>, Status> {
        let state = &self.state;
        Ok(Response::new(WorkerStatusReply {
            id: state.config.id.clone(),
            url: state.config.url.to_string(),
            running: state.stats.running.load(Relaxed),
            completed: state.stats.completed.load(Relaxed),
            failed: state.stats.failed.load(Relaxed),
            gossip_delay_ms: state.config.gossip_delay.as_millis() as u64,
            failed_storage: state.storage.failed(),
        }))
    }

    async fn ping(&self, _request: Request<PingRequest>) -> Result<Response<PingReply>, Status> {
        Ok(Response::new(PingReply {}))
    }
}

/// Whether this worker can take `request`: it names an operator to run next, that
/// operator is assigned to this worker, and the execution has an id.
fn check(state: &WorkerState, request: &ChainRequest) -> Result<(), Status> {
    let next = request.next as usize;
    let Some(assignment) = request.chain.get(next) else {
        return Err(Status::invalid_argument(format!(
            "request has no operator at position {next} (chain of {})",
            request.chain.len()
        )));
    };
    if assignment.worker_id != state.config.id {
        return Err(Status::failed_precondition(format!(
            "operator {next} of the chain is assigned to {}, not to this worker ({})",
            assignment.worker_id, state.config.id
        )));
    }
    if request.meta.as_ref().is_none_or(|m| m.id.is_empty()) {
        return Err(Status::invalid_argument("request without an execution id"));
    }
    Ok(())
}
