//! The scheduler's gRPC service.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dida_core::app::check_operator_name;
use dida_proto::execution::scheduler_server::Scheduler;
use dida_proto::execution::{
    Assignment, ChainRequest, CompletionAck, CompletionRequest, ExecutionOutcome,
    ListOperatorsRequest, Metadata, OutcomeReply, OutcomeRequest, SchedulerStatusReply,
    SchedulerStatusRequest, SubmitReply, SubmitRequest, WorkerLoad,
};
use dida_proto::storage::{PingReply, PingRequest};
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::node::SchedulerState;

/// Longest a client may wait for an outcome in one call.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// One worker's operator list and when it was fetched.
type CachedList = Option<(Instant, BTreeSet<String>)>;

/// The operators each worker can run, as last asked.
#[derive(Debug)]
pub(crate) struct OperatorCache {
    lists: Mutex<Vec<CachedList>>,
}

impl OperatorCache {
    pub fn new(workers: usize) -> Self {
        Self {
            lists: Mutex::new(vec![None; workers]),
        }
    }
}

/// Implements [`Scheduler`] over the scheduler's state.
#[derive(Debug, Clone)]
pub(crate) struct SchedulerService {
    pub state: Arc<SchedulerState>,
}

impl SchedulerService {
    fn worker_id(&self, index: usize) -> &str {
        &self.state.config.workers.members()[index].id
    }

    /// The operators worker `index` can run (cached for the configured time).
    async fn operators_of(&self, index: usize) -> Result<BTreeSet<String>, Status> {
        let ttl = self.state.config.operator_cache_ttl;
        if let Some((at, list)) = &self
            .state
            .operators
            .lists
            .lock()
            .expect("cache lock poisoned")[index]
        {
            if at.elapsed() < ttl {
                return Ok(list.clone());
            }
        }
        let member = &self.state.config.workers.members()[index];
        let reply = self.state.workers[index]
            .clone()
            .list_operators(ListOperatorsRequest {})
            .await
            .map_err(|status| {
                Status::unavailable(format!(
                    "worker {} at {} did not say which operators it runs: {}",
                    member.id,
                    member.url,
                    status.message()
                ))
            })?;
        let list: BTreeSet<String> = reply.into_inner().operators.into_iter().collect();
        self.state
            .operators
            .lists
            .lock()
            .expect("cache lock poisoned")[index] = Some((Instant::now(), list.clone()));
        Ok(list)
    }

    /// Checks, before anything runs, that every worker can run every operator.
    async fn check_operators(&self, operators: &[String]) -> Result<(), Status> {
        for name in operators {
            check_operator_name(name).map_err(Status::invalid_argument)?;
        }
        let lists =
            futures::future::join_all((0..self.state.workers.len()).map(|i| self.operators_of(i)))
                .await;
        let mut lists_ok = Vec::new();
        for list in lists {
            lists_ok.push(list?);
        }
        for name in operators {
            let missing: Vec<&str> = lists_ok
                .iter()
                .enumerate()
                .filter(|(_, list)| !list.contains(name))
                .map(|(i, _)| self.worker_id(i))
                .collect();
            if missing.len() == lists_ok.len() {
                return Err(Status::invalid_argument(format!(
                    "unknown operator {name}: no worker can run it (no built-in and no {name}.wasm in any \
                     worker's operators directory)"
                )));
            }
            if !missing.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "operator {name} is missing on worker(s) {}; every worker must be able to run it",
                    missing.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn fail(&self, id: &str, request: &SubmitRequest, message: String) {
        let outcome = ExecutionOutcome {
            execution_id: id.to_string(),
            app: request.app.clone(),
            input: request.input.clone(),
            error: Some(message),
            unrun_from: 0,
            ..ExecutionOutcome::default()
        };
        self.state
            .executions
            .lock()
            .expect("executions lock poisoned")
            .finish(outcome);
    }
}

#[tonic::async_trait]
impl Scheduler for SchedulerService {
    async fn submit(
        &self,
        request: Request<SubmitRequest>,
    ) -> Result<Response<SubmitReply>, Status> {
        let request = request.into_inner();
        if request.operators.is_empty() {
            return Err(Status::invalid_argument("the application has no operator"));
        }
        self.check_operators(&request.operators).await?;
        let (id, assignments) = self
            .state
            .executions
            .lock()
            .expect("executions lock poisoned")
            .start(request.operators.len());
        let members = self.state.config.workers.members();
        let chain: Vec<Assignment> = request
            .operators
            .iter()
            .zip(&assignments)
            .enumerate()
            .map(|(order, (classname, &worker))| Assignment {
                classname: classname.clone(),
                order: order as u32,
                worker_id: members[worker].id.clone(),
                worker_url: members[worker].url.to_string(),
                output: None,
            })
            .collect();
        let chain_request = ChainRequest {
            meta: Some(Metadata {
                id: id.clone(),
                ..Metadata::default()
            }),
            input: request.input.clone(),
            next: 0,
            chain,
            app: request.app.clone(),
        };
        if let Err(status) = self.state.workers[assignments[0]]
            .clone()
            .execute(chain_request)
            .await
        {
            let message = format!(
                "could not start the execution on worker {}: {}",
                self.worker_id(assignments[0]),
                status.message()
            );
            self.fail(&id, &request, message.clone());
            return Err(Status::unavailable(message));
        }
        info!(execution = %id, app = %request.app, operators = request.operators.len(), "execution started");
        let timeout = self.state.config.execution_timeout;
        let state = self.state.clone();
        let watched = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let mut executions = state.executions.lock().expect("executions lock poisoned");
            if executions.is_running(&watched) {
                warn!(execution = %watched, "no outcome within {timeout:?}; failing the execution");
                executions.finish(ExecutionOutcome {
                    execution_id: watched.clone(),
                    app: request.app,
                    input: request.input,
                    error: Some(format!("no outcome within {timeout:?}")),
                    unrun_from: 0,
                    ..ExecutionOutcome::default()
                });
            }
        });
        Ok(Response::new(SubmitReply { execution_id: id }))
    }

    async fn outcome(
        &self,
        request: Request<OutcomeRequest>,
    ) -> Result<Response<OutcomeReply>, Status> {
        let request = request.into_inner();
        let lookup = || {
            self.state
                .executions
                .lock()
                .expect("executions lock poisoned")
                .outcome(&request.execution_id)
                .ok_or_else(|| {
                    Status::not_found(format!("unknown execution id {:?}", request.execution_id))
                })
        };
        let (outcome, mut finished) = lookup()?;
        if outcome.is_some() || request.wait_ms == 0 {
            return Ok(Response::new(OutcomeReply {
                finished: outcome.is_some(),
                outcome,
            }));
        }
        let wait = Duration::from_millis(request.wait_ms.into()).min(MAX_WAIT);
        let _ = tokio::time::timeout(wait, finished.wait_for(|done| *done)).await;
        let (outcome, _) = lookup()?;
        Ok(Response::new(OutcomeReply {
            finished: outcome.is_some(),
            outcome,
        }))
    }

    async fn operator_completed(
        &self,
        request: Request<CompletionRequest>,
    ) -> Result<Response<CompletionAck>, Status> {
        let request = request.into_inner();
        let worker = self
            .state
            .config
            .workers
            .index_of(&request.worker_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.state
            .executions
            .lock()
            .expect("executions lock poisoned")
            .complete(&request.execution_id, request.order as usize, worker);
        Ok(Response::new(CompletionAck {}))
    }

    async fn report_outcome(
        &self,
        request: Request<ExecutionOutcome>,
    ) -> Result<Response<CompletionAck>, Status> {
        let outcome = request.into_inner();
        match &outcome.error {
            None => info!(execution = %outcome.execution_id, "execution finished"),
            Some(error) => info!(execution = %outcome.execution_id, %error, "execution failed"),
        }
        self.state
            .executions
            .lock()
            .expect("executions lock poisoned")
            .finish(outcome);
        Ok(Response::new(CompletionAck {}))
    }

    async fn status(
        &self,
        _request: Request<SchedulerStatusRequest>,
    ) -> Result<Response<SchedulerStatusReply>, Status> {
        let executions = self
            .state
            .executions
            .lock()
            .expect("executions lock poisoned");
        let (submitted, finished) = executions.counts();
        let loads = executions.loads();
        let workers = self
            .state
            .config
            .workers
            .members()
            .iter()
            .enumerate()
            .map(|(i, m)| WorkerLoad {
                worker_id: m.id.clone(),
                url: m.url.to_string(),
                load: loads.loads()[i],
                assigned: loads.assigned()[i],
            })
            .collect();
        Ok(Response::new(SchedulerStatusReply {
            id: self.state.config.id.clone(),
            workers,
            executions_submitted: submitted,
            executions_finished: finished,
            executions_running: submitted - finished,
            failed_storage: self
                .state
                .storage
                .as_ref()
                .map(|storage| storage.failed())
                .unwrap_or_default(),
        }))
    }

    async fn ping(&self, _request: Request<PingRequest>) -> Result<Response<PingReply>, Status> {
        Ok(Response::new(PingReply {}))
    }
}
