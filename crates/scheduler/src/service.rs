//! The scheduler's gRPC service.

use std::sync::Arc;
use std::time::Duration;

use dida_core::app::check_operator_name;
use dida_core::limits::{check_input, MAX_CHAIN_OPERATORS, MAX_INPUT_BYTES};
use dida_proto::acked;
use dida_proto::execution::scheduler_server::Scheduler;
use dida_proto::execution::{
    Assignment, ChainRequest, DeregisterWorkerReply, DeregisterWorkerRequest, ExecutionLogsReply,
    ExecutionLogsRequest, ExecutionOutcome, ExecutionSummary, HandOffRequest, ListExecutionsReply,
    ListExecutionsRequest, LogLevel, LogLine, Metadata, OperatorsCompletedReply,
    OperatorsCompletedRequest, OutcomeReply, OutcomeReport, OutcomeRequest, RegisterWorkerReply,
    RegisterWorkerRequest, ReportOutcomesReply, ReportOutcomesRequest, RunRequest,
    SchedulerStatusReply, SchedulerStatusRequest, SubmitReply, SubmitRequest, WorkerLoad,
};
use dida_proto::storage::{PingReply, PingRequest};
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn, Instrument};

use crate::catalogue::Gap;
use crate::executions::{self, ExecutionStatus, StartRefused};
use crate::members::Refusal;
use crate::node::SchedulerState;
use crate::roster::{Snapshot, RENEWALS_PER_LEASE};

/// Longest a client may wait for an outcome in one `Outcome` call.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Longest application name a submit may carry (a file path: `PATH_MAX` on Linux).
/// It is echoed in every outcome, so it is bounded like the input.
pub const MAX_APP_NAME_BYTES: usize = 4096;

/// Checks what a submit carries before anything is allocated for it: an operator
/// list of 1 to [`MAX_CHAIN_OPERATORS`] valid class names, an input of at most
/// [`MAX_INPUT_BYTES`] and an application name of at most [`MAX_APP_NAME_BYTES`].
/// Every refusal is `INVALID_ARGUMENT` with a message saying which limit, and by how
/// much.
pub(crate) fn validate_submit(request: &SubmitRequest) -> Result<(), Status> {
    check_chain_length(&request.operators)?;
    check_input(&request.input).map_err(|e| {
        Status::invalid_argument(format!(
            "{e} (an execution's input is at most {MAX_INPUT_BYTES} bytes)"
        ))
    })?;
    if request.app.len() > MAX_APP_NAME_BYTES {
        return Err(Status::invalid_argument(format!(
            "the application name is {} bytes long; the limit is {MAX_APP_NAME_BYTES}",
            request.app.len()
        )));
    }
    check_operator_names(&request.operators)
}

/// Checks an application's operator list: 1 to [`MAX_CHAIN_OPERATORS`] valid class
/// names (for a registration; a submit checks the same, its input in between).
pub(crate) fn check_chain(operators: &[String]) -> Result<(), Status> {
    check_chain_length(operators)?;
    check_operator_names(operators)
}

/// Checks that a chain has 1 to [`MAX_CHAIN_OPERATORS`] operators.
fn check_chain_length(operators: &[String]) -> Result<(), Status> {
    if operators.is_empty() {
        return Err(Status::invalid_argument("the application has no operator"));
    }
    if operators.len() > MAX_CHAIN_OPERATORS {
        return Err(Status::invalid_argument(format!(
            "the application has {} operators; the limit is {MAX_CHAIN_OPERATORS}",
            operators.len()
        )));
    }
    Ok(())
}

/// Checks that every operator of a chain has a valid class name.
fn check_operator_names(operators: &[String]) -> Result<(), Status> {
    for name in operators {
        check_operator_name(name).map_err(Status::invalid_argument)?;
    }
    Ok(())
}

/// Implements [`Scheduler`] over the scheduler's state.
#[derive(Debug, Clone)]
pub(crate) struct SchedulerService {
    pub state: Arc<SchedulerState>,
}

impl SchedulerService {
    /// Checks, before anything runs, that every worker that may take work (by
    /// `workers`) can run every operator: by the catalogue alone when it can tell,
    /// otherwise after asking the workers again.
    async fn check_operators(
        &self,
        operators: &[String],
        workers: &Snapshot,
    ) -> Result<(), Status> {
        let catalogue = &self.state.operators;
        let slots = workers.placeable_slots();
        if slots.is_empty() && !operators.is_empty() {
            // No one to say whether they run them: not vacuously true.
            return Err(Status::unavailable(StartRefused::NoWorker.to_string()));
        }
        if catalogue.check(operators, &slots).is_ok() {
            return Ok(());
        }
        let refreshed = catalogue
            .refresh_all(&self.state.workers.placeable_clients())
            .await;
        match catalogue.check(operators, &slots) {
            Ok(()) => Ok(()),
            Err(Gap::UnknownWorkers(unknown)) => {
                let index = unknown[0];
                let worker = &workers.workers[index];
                let why = refreshed
                    .iter()
                    .find(|(slot, _)| *slot == index)
                    .and_then(|(_, result)| result.as_ref().err())
                    .map_or("no answer yet", |status| status.message());
                Err(Status::unavailable(format!(
                    "worker {} at {} did not say which operators it runs: {why}",
                    worker.id, worker.url
                )))
            }
            Err(Gap::Missing {
                operator,
                everywhere: true,
                ..
            }) => Err(Status::not_found(format!(
                "unknown operator {operator}: no worker can run it (not deployed, no \
                 built-in and no {operator}.wasm in any worker's operators directory)"
            ))),
            Err(Gap::Missing {
                operator,
                workers: missing,
                ..
            }) => {
                let ids: Vec<&str> = missing
                    .iter()
                    .map(|&i| workers.workers[i].id.as_str())
                    .collect();
                Err(Status::failed_precondition(format!(
                    "operator {operator} is missing on worker(s) {}; every worker must be able to run it",
                    ids.join(", ")
                )))
            }
        }
    }

    /// Checks that the cluster can run every one of `operators` now; returns, for
    /// each, the digest of the deployed component it runs, or an empty string when it
    /// is not deployed and every worker runs it from its own files or built-ins —
    /// with the workers as they stood for the check, which a placement must use.
    pub(crate) async fn runnable(
        &self,
        operators: &[String],
    ) -> Result<(Vec<String>, Snapshot), Status> {
        let digests = self.state.registry.resolve(operators).await?;
        let local: Vec<String> = operators
            .iter()
            .zip(&digests)
            .filter(|(_, digest)| digest.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        let workers = self.state.workers.snapshot();
        self.check_operators(&local, &workers).await?;
        Ok((digests, workers))
    }

    /// Starts an execution of `request`: checks it, assigns its operators, hands it to
    /// the first worker and arms its timeout. Returns its id and a receiver that turns
    /// true when it ends.
    pub(crate) async fn start(
        &self,
        request: SubmitRequest,
    ) -> Result<(String, watch::Receiver<bool>), Status> {
        validate_submit(&request)?;
        let (digests, workers) = self.runnable(&request.operators).await?;
        let (id, assignments, finished) = self
            .state
            .executions
            .lock()
            .expect("executions lock poisoned")
            .start(
                request.operators.len(),
                &request.app,
                &request.input,
                &workers.placeable,
            )
            .map_err(|e| match e {
                StartRefused::Budget(_) => Status::resource_exhausted(e.to_string()),
                StartRefused::NoWorker => Status::unavailable(e.to_string()),
            })?;
        let members = &workers.workers;
        let chain: Vec<Assignment> = request
            .operators
            .iter()
            .zip(&assignments)
            .zip(digests)
            .enumerate()
            .map(|(order, ((classname, &worker), digest))| Assignment {
                classname: classname.clone(),
                order: order as u32,
                worker_id: members[worker].id.clone(),
                worker_url: members[worker].url.to_string(),
                output: None,
                digest,
                ..Assignment::default()
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
        let span = self
            .state
            .executions
            .lock()
            .expect("executions lock poisoned")
            .span(&id);
        span.in_scope(|| {
            info!(
                operators = request.operators.len(),
                first_worker = %members[assignments[0]].id,
                "execution submitted"
            )
        });
        let first = &members[assignments[0]].url.to_string();
        let handed = self
            .state
            .hand_offs
            .send(first, |seq| HandOffRequest {
                seq,
                request: Some(chain_request),
            })
            .instrument(span.clone())
            .await
            .map_err(Status::from);
        match handed {
            Ok(ack) => {
                if let Some(batch) = &ack.completions {
                    if let Err(status) = self.confirm(batch) {
                        warn!(error = %status.message(), "a worker's answer carried bad completions");
                    }
                }
            }
            Err(status) => {
                let message = format!(
                    "could not start the execution on worker {}: {}",
                    members[assignments[0]].id,
                    status.message()
                );
                self.fail(&id, &request, message.clone());
                return Err(Status::unavailable(message));
            }
        }
        let timeout = self.state.config.execution_timeout;
        let state = self.state.clone();
        let watched = id.clone();
        // The timer holds only the id: the table keeps the application and input
        // the timeout outcome reports, counted against its budget.
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let mut executions = state.executions.lock().expect("executions lock poisoned");
            let span = executions.span(&watched);
            if executions.time_out(&watched, format!("no outcome within {timeout:?}")) {
                span.in_scope(|| warn!("no outcome within {timeout:?}; failing the execution"));
            }
        });
        Ok((id, finished))
    }

    /// The outcome of `id` if it has ended, and a receiver that turns true when it
    /// does; `NOT_FOUND` for an unknown (or long forgotten) id.
    pub(crate) fn lookup(
        &self,
        id: &str,
    ) -> Result<(Option<ExecutionOutcome>, watch::Receiver<bool>), Status> {
        self.state
            .executions
            .lock()
            .expect("executions lock poisoned")
            .outcome(id)
            .ok_or_else(|| unknown_execution(id))
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

    /// Records how an execution ended, as the worker that ended it reported, with
    /// the completions the report carries.
    fn record(&self, report: OutcomeReport) -> Result<(), Status> {
        let OutcomeReport {
            outcome,
            completions,
        } = report;
        if let Some(batch) = &completions {
            self.confirm(batch)?;
        }
        let outcome = outcome
            .ok_or_else(|| Status::invalid_argument("an outcome report without an outcome"))?;
        self.state
            .executions
            .lock()
            .expect("executions lock poisoned")
            .finish(outcome);
        Ok(())
    }

    /// Applies a worker's completion confirmations to the load table.
    fn confirm(&self, batch: &OperatorsCompletedRequest) -> Result<(), Status> {
        let worker = self
            .state
            .workers
            .slot_of(&batch.worker_id)
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "completions of unknown worker {:?}",
                    batch.worker_id
                ))
            })?;
        let mut executions = self
            .state
            .executions
            .lock()
            .expect("executions lock poisoned");
        for completion in &batch.completions {
            executions.complete(&completion.execution_id, completion.order as usize, worker);
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Scheduler for SchedulerService {
    async fn submit(
        &self,
        request: Request<SubmitRequest>,
    ) -> Result<Response<SubmitReply>, Status> {
        let (execution_id, _) = self.start(request.into_inner()).await?;
        Ok(Response::new(SubmitReply { execution_id }))
    }

    async fn run(&self, request: Request<RunRequest>) -> Result<Response<OutcomeReply>, Status> {
        let RunRequest { submit, wait_ms } = request.into_inner();
        let submit =
            submit.ok_or_else(|| Status::invalid_argument("a run request without a submit"))?;
        let (id, mut finished) = self.start(submit).await?;
        // Every execution ends, by its outcome report or by its timeout, so waiting
        // without a limit is bounded too. The wait ends early only if the outcome was
        // forgotten meanwhile (the lookup then says so).
        let ended = finished.wait_for(|done| *done);
        if wait_ms == 0 {
            let _ = ended.await;
        } else {
            let _ = tokio::time::timeout(Duration::from_millis(wait_ms.into()), ended).await;
        }
        let (outcome, _) = self.lookup(&id)?;
        Ok(Response::new(OutcomeReply {
            finished: outcome.is_some(),
            outcome: Some(outcome.unwrap_or_else(|| ExecutionOutcome {
                execution_id: id,
                ..ExecutionOutcome::default()
            })),
        }))
    }

    async fn outcome(
        &self,
        request: Request<OutcomeRequest>,
    ) -> Result<Response<OutcomeReply>, Status> {
        let request = request.into_inner();
        let (outcome, mut finished) = self.lookup(&request.execution_id)?;
        if outcome.is_some() || request.wait_ms == 0 {
            return Ok(Response::new(OutcomeReply {
                finished: outcome.is_some(),
                outcome,
            }));
        }
        let wait = Duration::from_millis(request.wait_ms.into()).min(MAX_WAIT);
        let _ = tokio::time::timeout(wait, finished.wait_for(|done| *done)).await;
        let (outcome, _) = self.lookup(&request.execution_id)?;
        Ok(Response::new(OutcomeReply {
            finished: outcome.is_some(),
            outcome,
        }))
    }

    async fn operators_completed(
        &self,
        request: Request<OperatorsCompletedRequest>,
    ) -> Result<Response<OperatorsCompletedReply>, Status> {
        self.confirm(&request.into_inner())?;
        Ok(Response::new(OperatorsCompletedReply {}))
    }

    type ReportOutcomesStream = ReceiverStream<Result<ReportOutcomesReply, Status>>;

    /// Serves a worker's stream of outcome reports: each is recorded and
    /// acknowledged in turn.
    async fn report_outcomes(
        &self,
        request: Request<Streaming<ReportOutcomesRequest>>,
    ) -> Result<Response<Self::ReportOutcomesStream>, Status> {
        let service = self.clone();
        let acks = acked::serve(
            request.into_inner(),
            self.state.stop.clone(),
            move |ReportOutcomesRequest { seq, report }| {
                let recorded = report
                    .ok_or_else(|| Status::invalid_argument("a report without its outcome"))
                    .and_then(|report| service.record(report));
                match recorded {
                    Ok(()) => ReportOutcomesReply {
                        seq,
                        error: None,
                        code: tonic::Code::Ok as i32,
                    },
                    Err(status) => ReportOutcomesReply {
                        seq,
                        error: Some(status.message().to_string()),
                        code: status.code() as i32,
                    },
                }
            },
        );
        Ok(Response::new(acks))
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
        drop(executions);
        let workers = self
            .state
            .worker_listing()
            .into_iter()
            .map(|w| WorkerLoad {
                worker_id: w.id,
                url: w.url,
                load: w.load,
                assigned: w.assigned,
                state: w.state.as_str().to_string(),
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

    async fn list_executions(
        &self,
        request: Request<ListExecutionsRequest>,
    ) -> Result<Response<ListExecutionsReply>, Status> {
        let limit = request.into_inner().limit as usize;
        let executions = self
            .state
            .recent_executions(limit)
            .into_iter()
            .map(|e| ExecutionSummary {
                execution_id: e.id,
                app: e.app,
                status: e.status.as_str().to_string(),
                submitted_unix_ms: e.submitted_unix_ms,
                ended_unix_ms: e.ended_unix_ms,
            })
            .collect();
        Ok(Response::new(ListExecutionsReply { executions }))
    }

    async fn execution_logs(
        &self,
        request: Request<ExecutionLogsRequest>,
    ) -> Result<Response<ExecutionLogsReply>, Status> {
        let id = request.into_inner().execution_id;
        let logs = self
            .state
            .execution_logs(&id)
            .ok_or_else(|| unknown_execution(&id))?;
        let lines = logs
            .lines
            .into_iter()
            .map(|line| LogLine {
                order: line.order,
                level: wire_level(line.level) as i32,
                text: line.text,
                operator: line.operator,
            })
            .collect();
        Ok(Response::new(ExecutionLogsReply {
            finished: logs.status != ExecutionStatus::Running,
            lines,
        }))
    }

    async fn register_worker(
        &self,
        request: Request<RegisterWorkerRequest>,
    ) -> Result<Response<RegisterWorkerReply>, Status> {
        dida_proto::authorize::check_speaks_for(&request, &request.get_ref().worker_id)?;
        let RegisterWorkerRequest {
            worker_id,
            url,
            leaving,
        } = request.into_inner();
        let registered = self
            .state
            .workers
            .register(&worker_id, &url, leaving)
            .map_err(refusal)?;
        if registered.joined {
            // Perhaps another process than the last one on this slot: what it
            // runs is asked before a submit relies on it.
            self.state.operators.forget(registered.slot);
        }
        let load = self
            .state
            .executions
            .lock()
            .expect("executions lock poisoned")
            .loads()
            .loads()
            .get(registered.slot)
            .copied()
            .unwrap_or(0);
        let lease = self.state.workers.lease();
        Ok(Response::new(RegisterWorkerReply {
            lease_ms: lease.as_millis() as u64,
            renew_ms: (lease / RENEWALS_PER_LEASE).as_millis() as u64,
            load,
        }))
    }

    async fn deregister_worker(
        &self,
        request: Request<DeregisterWorkerRequest>,
    ) -> Result<Response<DeregisterWorkerReply>, Status> {
        dida_proto::authorize::check_speaks_for(&request, &request.get_ref().worker_id)?;
        let DeregisterWorkerRequest { worker_id, url } = request.into_inner();
        self.state
            .workers
            .deregister(&worker_id, &url)
            .map_err(refusal)?;
        Ok(Response::new(DeregisterWorkerReply {}))
    }
}

/// The status of a refused (de)registration: its code tells the worker whether
/// trying again may help.
fn refusal(refusal: Refusal) -> Status {
    let message = refusal.to_string();
    match refusal {
        Refusal::Invalid(_) => Status::invalid_argument(message),
        Refusal::Held { .. } => Status::already_exists(message),
        Refusal::Full => Status::resource_exhausted(message),
        Refusal::Unknown { .. } => Status::not_found(message),
    }
}

/// The refusal of an id the scheduler does not know (never given, or forgotten).
fn unknown_execution(id: &str) -> Status {
    Status::not_found(format!(
        "unknown execution id {id:?} (the scheduler keeps the last {} executions, within \
         --max-retained-mb)",
        executions::KEPT_OUTCOMES
    ))
}

/// The wire level of a level name of [`executions::level_name`].
fn wire_level(name: &str) -> LogLevel {
    [
        LogLevel::Trace,
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
        LogLevel::Stdout,
        LogLevel::Stderr,
    ]
    .into_iter()
    .find(|level| executions::level_name(*level as i32) == name)
    .unwrap_or(LogLevel::Unspecified)
}
