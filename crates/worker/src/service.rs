//! The worker's gRPC service.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use dida_proto::acked;
use dida_proto::execution::worker_server::Worker;
use dida_proto::execution::{
    ChainRequest, HandOffReply, HandOffRequest, ListOperatorsReply, ListOperatorsRequest,
    OperatorsCompletedRequest, WorkerStatusReply, WorkerStatusRequest,
};
use dida_proto::storage::{PingReply, PingRequest};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::chain::run_hop;
use crate::node::WorkerState;

/// Implements [`Worker`] over the worker's state.
#[derive(Debug, Clone)]
pub(crate) struct WorkerService {
    pub state: Arc<WorkerState>,
}

#[tonic::async_trait]
impl Worker for WorkerService {
    type HandOffStream = ReceiverStream<Result<HandOffReply, Status>>;

    /// Serves a stream of hand-offs (from the scheduler or another worker): each
    /// request is checked, starts in the background and is acknowledged at once. The
    /// acknowledgement of a new execution (position 0, from the scheduler) carries
    /// this worker's queued completions.
    async fn hand_off(
        &self,
        request: Request<Streaming<HandOffRequest>>,
    ) -> Result<Response<Self::HandOffStream>, Status> {
        let state = self.state.clone();
        let acks = acked::serve(request.into_inner(), state.stop.clone(), move |hand_off| {
            accept(&state, hand_off)
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

/// Takes the hand-off if [`check`] allows, starting its operator in the background,
/// and says so in the acknowledgement.
fn accept(state: &Arc<WorkerState>, hand_off: HandOffRequest) -> HandOffReply {
    let HandOffRequest { seq, request } = hand_off;
    let checked = request
        .ok_or_else(|| Status::invalid_argument("hand-off without a request"))
        .and_then(|request| check(state, &request).map(|()| request));
    match checked {
        Ok(request) => {
            let completions = (request.next == 0).then(|| OperatorsCompletedRequest {
                worker_id: state.config.id.clone(),
                completions: state.completions.take(),
            });
            tokio::spawn(run_hop(state.clone(), request));
            HandOffReply {
                seq,
                error: None,
                code: tonic::Code::Ok as i32,
                completions,
            }
        }
        Err(status) => HandOffReply {
            seq,
            error: Some(status.message().to_string()),
            code: status.code() as i32,
            completions: None,
        },
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
