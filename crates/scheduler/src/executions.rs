//! Executions in flight and finished: their assignments, the completions seen, and
//! their outcomes, which clients fetch (waiting if they like) — with when they were
//! submitted and ended, how each operator ran and the operators' log lines, which
//! clients inspect ([`ExecutionTable::recent`], [`ExecutionTable::details`],
//! [`ExecutionTable::logs`]: plain structs that the gRPC service and any other front
//! end turn into their own format).
//!
//! Load accounting lives here too, because it follows executions: a worker's load goes
//! down when it confirms an operator, and when an execution ends every position not
//! confirmed yet is settled — it either ran before the end (its confirmation is late)
//! or never will — so no load is left behind.
//!
//! Memory is bounded by count and by bytes: at most [`KEPT_OUTCOMES`] outcomes, and
//! at most the table's byte budget for the outcomes kept (their runs and logs
//! included) plus the application name and input of every running execution (kept to
//! fail it on its timeout). Beyond the budget the oldest outcomes are forgotten
//! first; a submit that would need more than the running executions leave is refused
//! ([`BudgetExceeded`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use dida_core::limits::{KEPT_EXECUTIONS, MAX_LISTED_EXECUTIONS};
use dida_proto::execution::{self as wire, ExecutionOutcome, LogLevel};
use prost::Message;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{info, info_span, Span};

use crate::load::LoadTable;
use crate::metrics::SchedulerMetrics;

/// How many finished executions are kept for clients to fetch.
pub const KEPT_OUTCOMES: usize = KEPT_EXECUTIONS;

/// How many executions [`ExecutionTable::recent`] lists when asked for 0.
pub const DEFAULT_LISTED_EXECUTIONS: usize = 20;

/// Where an execution stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// Submitted, no outcome yet.
    Running,
    /// Every operator ran and returned an output.
    Succeeded,
    /// An operator failed, or the execution could not go on.
    Failed,
    /// No outcome within the scheduler's `--execution-timeout`.
    TimedOut,
}

impl ExecutionStatus {
    /// Its name on the wire and in JSON: `running`, `succeeded`, `failed`,
    /// `timed_out`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "running",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::TimedOut => "timed_out",
        }
    }
}

/// One execution in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecutionSummary {
    /// The execution id.
    pub id: String,
    /// The application (its file name, as the client gave it).
    pub app: String,
    /// Where it stands.
    pub status: ExecutionStatus,
    /// When the scheduler accepted it, Unix time in milliseconds.
    pub submitted_unix_ms: u64,
    /// When its outcome was recorded (`None` while it runs).
    pub ended_unix_ms: Option<u64>,
}

impl ExecutionSummary {
    /// From submit to outcome, in milliseconds (`None` while it runs).
    pub fn duration_ms(&self) -> Option<u64> {
        self.ended_unix_ms
            .map(|end| end.saturating_sub(self.submitted_unix_ms))
    }
}

/// How one operator of an execution ran, as its worker measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperatorRun {
    /// Its position in the chain.
    pub order: u32,
    /// Its class name.
    pub classname: String,
    /// The worker that ran it.
    pub worker_id: String,
    /// When the worker began loading it, Unix time in milliseconds.
    pub started_unix_ms: u64,
    /// Loading and running it, in microseconds.
    pub duration_us: u64,
    /// Fuel units it used (about one per WebAssembly instruction).
    pub fuel_used: u64,
    /// The linear memory its instance grew to, in bytes.
    pub memory_bytes: u64,
    /// Instantiating it, in microseconds (part of `duration_us`).
    pub instantiate_us: u64,
    /// Why it failed (`None` when it returned an output).
    pub error: Option<String>,
}

/// Everything kept about one execution but its logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecutionDetails {
    /// Id, application, status and times.
    #[serde(flatten)]
    pub summary: ExecutionSummary,
    /// The client's input.
    pub input: String,
    /// Outputs of the operators that completed, in chain order.
    pub outputs: Vec<String>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// The operator to blame for the failure, and its position, when there is one.
    pub failed_operator: Option<String>,
    /// Position of `failed_operator`.
    pub failed_order: Option<u32>,
    /// How each operator that ran went, in chain order (empty while it runs: the runs
    /// arrive with the outcome).
    pub runs: Vec<OperatorRun>,
}

/// One line an operator logged (SDK `log` call) or printed (stdout, stderr).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Position of the operator in the chain.
    pub order: u32,
    /// Its class name.
    pub operator: String,
    /// `trace`, `debug`, `info`, `warn`, `error`, `stdout` or `stderr`.
    pub level: &'static str,
    /// The line, without its newline.
    pub text: String,
}

/// The log lines of one execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecutionLogs {
    /// The execution id.
    pub id: String,
    /// Where it stands: lines arrive with the outcome, so a running execution has
    /// none yet.
    pub status: ExecutionStatus,
    /// The lines, in chain order, each operator's in the order it produced them.
    pub lines: Vec<LogLine>,
}

/// The name of a wire log level: `info`, `stdout`, ….
pub fn level_name(level: i32) -> &'static str {
    match LogLevel::try_from(level) {
        Ok(LogLevel::Trace) => "trace",
        Ok(LogLevel::Debug) => "debug",
        Ok(LogLevel::Info) => "info",
        Ok(LogLevel::Warn) => "warn",
        Ok(LogLevel::Error) => "error",
        Ok(LogLevel::Stdout) => "stdout",
        Ok(LogLevel::Stderr) => "stderr",
        Ok(LogLevel::Unspecified) | Err(_) => "unknown",
    }
}

/// Now, Unix time in milliseconds.
fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Debug)]
struct Execution {
    /// Numbers executions in submit order (the key of `ExecutionTable::by_seq`).
    seq: u64,
    submitted_unix_ms: u64,
    /// When it was submitted, for its end-to-end latency (monotonic, sub-ms).
    submitted_at: Instant,
    /// Ended by the scheduler's timeout rather than a report.
    timed_out: bool,
    /// The operators' log lines, once it has ended (kept apart from the outcome,
    /// which `Outcome` replies carry whole).
    logs: Vec<wire::LogLine>,
    assignments: Vec<usize>,
    /// Per position: confirmed complete, or released because it will never run.
    settled: Vec<bool>,
    /// The application and input, while it runs: what its timeout outcome reports.
    submitted: Option<(String, String)>,
    outcome: Option<ExecutionOutcome>,
    /// Bytes this execution counts against the budget now.
    bytes: usize,
    finished: watch::Sender<bool>,
    /// The `execution` span (id, application) that the scheduler's log lines about
    /// it are written in, while it runs: dropped when it ends, so the subscriber keeps
    /// no data for finished executions.
    span: Option<Span>,
}

/// A submit refused because the running executions already hold the byte budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the scheduler holds {running} bytes of running executions' inputs; a new one of \
     {asked} bytes would pass its budget of {budget} bytes (--max-retained-mb): try again \
     when some have finished"
)]
pub struct BudgetExceeded {
    /// Bytes the running executions hold.
    pub running: usize,
    /// Bytes the refused execution needed.
    pub asked: usize,
    /// The budget.
    pub budget: usize,
}

/// Why an execution could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartRefused {
    /// The running executions hold the whole byte budget.
    #[error(transparent)]
    Budget(#[from] BudgetExceeded),
    /// No worker may take work: none registered, or every one left or is leaving.
    #[error(
        "no worker is alive to run it (none registered, or every worker's lease ended or \
         it is leaving): start a worker with --scheduler pointing here"
    )]
    NoWorker,
}

/// What the scheduler knows about executions.
#[derive(Debug)]
pub struct ExecutionTable {
    executions: HashMap<String, Execution>,
    finished_order: VecDeque<String>,
    /// Every execution kept, running or finished, by submit order.
    by_seq: BTreeMap<u64, String>,
    /// Most finished executions kept.
    max_kept: usize,
    loads: LoadTable,
    boot: String,
    next: u64,
    submitted: u64,
    finished: u64,
    /// Bytes budget of kept outcomes and running inputs together.
    budget: usize,
    /// Bytes of the running executions' application names and inputs.
    running_bytes: usize,
    /// Bytes of the kept outcomes (as encoded).
    outcome_bytes: usize,
    /// Counts and times executions as they start and end.
    metrics: SchedulerMetrics,
}

impl ExecutionTable {
    /// An empty table for `workers` workers, keeping at most `budget` bytes of
    /// outcomes and running inputs. `boot` makes ids unique across scheduler restarts.
    pub fn new(workers: usize, boot: String, budget: usize) -> Self {
        Self {
            executions: HashMap::new(),
            finished_order: VecDeque::new(),
            by_seq: BTreeMap::new(),
            max_kept: KEPT_OUTCOMES,
            loads: LoadTable::new(workers),
            boot,
            next: 0,
            submitted: 0,
            finished: 0,
            budget,
            running_bytes: 0,
            outcome_bytes: 0,
            metrics: SchedulerMetrics::default(),
        }
    }

    /// The table's instruments, to register in the scheduler's metrics registry.
    pub fn metrics(&self) -> &SchedulerMetrics {
        &self.metrics
    }

    /// The same table keeping at most `max_kept` finished executions instead of
    /// [`KEPT_OUTCOMES`].
    pub fn with_max_kept(mut self, max_kept: usize) -> Self {
        self.max_kept = max_kept;
        self
    }

    /// Starts an execution of `operators` operators of application `app` with
    /// `input` on the workers `placeable` marks (by slot): returns its new id, the
    /// worker (slot) assigned to each operator, and a receiver that turns true when
    /// the execution ends. Refused when the running executions hold the whole budget
    /// (outcomes are forgotten, oldest first, to make room) or when no worker is
    /// placeable.
    pub fn start(
        &mut self,
        operators: usize,
        app: &str,
        input: &str,
        placeable: &[bool],
    ) -> Result<(String, Vec<usize>, watch::Receiver<bool>), StartRefused> {
        let bytes = app.len() + input.len();
        if self.running_bytes + bytes > self.budget {
            return Err(StartRefused::Budget(BudgetExceeded {
                running: self.running_bytes,
                asked: bytes,
                budget: self.budget,
            }));
        }
        let assignments = self
            .loads
            .assign(operators, placeable)
            .ok_or(StartRefused::NoWorker)?;
        self.running_bytes += bytes;
        self.evict(0);
        self.next += 1;
        self.submitted += 1;
        self.metrics.submitted(app);
        let id = format!("{}-{}", self.boot, self.next);
        let (finished, ended) = watch::channel(false);
        let span = info_span!("execution", execution = %id, app = %app);
        self.by_seq.insert(self.next, id.clone());
        self.executions.insert(
            id.clone(),
            Execution {
                seq: self.next,
                submitted_unix_ms: now_unix_ms(),
                submitted_at: Instant::now(),
                timed_out: false,
                logs: Vec::new(),
                settled: vec![false; operators],
                assignments: assignments.clone(),
                submitted: Some((app.to_string(), input.to_string())),
                outcome: None,
                bytes,
                finished,
                span: Some(span),
            },
        );
        Ok((id, assignments, ended))
    }

    /// The span of running execution `id`, for the log lines written about it while
    /// it runs (a disabled span once it has ended, or for an unknown id).
    pub fn span(&self, id: &str) -> Span {
        self.executions
            .get(id)
            .and_then(|e| e.span.clone())
            .unwrap_or_else(Span::none)
    }

    /// Fails execution `id` with `error` if it is still running (its timeout): the
    /// outcome names its application and input, and no operator as run. Returns
    /// whether it was running.
    pub fn time_out(&mut self, id: &str, error: String) -> bool {
        let Some(execution) = self.executions.get_mut(id).filter(|e| e.outcome.is_none()) else {
            return false;
        };
        let Some((app, input)) = execution.submitted.take() else {
            return false;
        };
        execution.timed_out = true;
        self.finish(ExecutionOutcome {
            execution_id: id.to_string(),
            app,
            input,
            error: Some(error),
            unrun_from: 0,
            ..ExecutionOutcome::default()
        })
    }

    /// Records that `worker` finished position `order` of execution `id`. Unknown,
    /// duplicate or mismatched confirmations change nothing.
    pub fn complete(&mut self, id: &str, order: usize, worker: usize) -> bool {
        let Some(execution) = self.executions.get_mut(id) else {
            return false;
        };
        if execution.assignments.get(order) != Some(&worker) || execution.settled[order] {
            return false;
        }
        execution.settled[order] = true;
        self.loads.complete(worker);
        true
    }

    /// Records how execution `id` ended, settling every position not confirmed yet:
    /// those before `unrun_from` ran and completed before the execution ended (their
    /// confirmations may still be on their way, and will count for nothing), the
    /// others will never run. Returns false if the execution is unknown or had already
    /// ended.
    pub fn finish(&mut self, mut outcome: ExecutionOutcome) -> bool {
        let Some(execution) = self.executions.get_mut(&outcome.execution_id) else {
            return false;
        };
        if execution.outcome.is_some() {
            return false;
        }
        for order in 0..execution.settled.len() {
            if !execution.settled[order] {
                execution.settled[order] = true;
                self.loads.complete(execution.assignments[order]);
            }
        }
        let id = outcome.execution_id.clone();
        self.metrics.finished(
            &outcome.app,
            outcome.error.is_none(),
            execution.submitted_at.elapsed(),
        );
        outcome.submitted_unix_ms = execution.submitted_unix_ms;
        outcome.ended_unix_ms = now_unix_ms().max(execution.submitted_unix_ms);
        execution.logs = std::mem::take(&mut outcome.logs);
        let bytes = outcome.encoded_len()
            + execution
                .logs
                .iter()
                .map(|line| {
                    line.encoded_len() + 1 + prost::length_delimiter_len(line.encoded_len())
                })
                .sum::<usize>();
        self.running_bytes -= execution.bytes;
        self.outcome_bytes += bytes;
        execution.bytes = bytes;
        execution.submitted = None;
        if let Some(span) = execution.span.take() {
            let duration_ms = outcome.ended_unix_ms - outcome.submitted_unix_ms;
            let status = if execution.timed_out {
                ExecutionStatus::TimedOut
            } else if outcome.error.is_some() {
                ExecutionStatus::Failed
            } else {
                ExecutionStatus::Succeeded
            };
            span.in_scope(|| match &outcome.error {
                None => info!(outcome = status.as_str(), duration_ms, "execution finished"),
                Some(error) => info!(
                    outcome = status.as_str(),
                    duration_ms,
                    %error,
                    "execution finished"
                ),
            });
        }
        execution.outcome = Some(outcome);
        let _ = execution.finished.send(true);
        self.finished += 1;
        self.finished_order.push_back(id);
        // The outcome just recorded is always kept, even alone over the budget: the
        // client waiting for it gets it.
        self.evict(1);
        true
    }

    /// Forgets the oldest outcomes (with their runs and logs) until at most
    /// `max_kept` ([`KEPT_OUTCOMES`]) are kept and the kept ones fit in the budget
    /// beside the running executions — but keeps the newest `keep` whatever their
    /// size.
    fn evict(&mut self, keep: usize) {
        while self.finished_order.len() > keep
            && (self.finished_order.len() > self.max_kept
                || self.running_bytes + self.outcome_bytes > self.budget)
        {
            let Some(old) = self.finished_order.pop_front() else {
                break;
            };
            if let Some(execution) = self.executions.remove(&old) {
                self.outcome_bytes -= execution.bytes;
                self.by_seq.remove(&execution.seq);
            }
        }
    }

    /// The outcome of `id` if it has ended (inner `None` while it runs), or `None` if
    /// the id is unknown. The receiver turns true when the execution ends. The
    /// outcome carries the operators' runs but not their logs (see [`Self::logs`]).
    pub fn outcome(&self, id: &str) -> Option<(Option<ExecutionOutcome>, watch::Receiver<bool>)> {
        let execution = self.executions.get(id)?;
        Some((execution.outcome.clone(), execution.finished.subscribe()))
    }

    /// The most recent executions kept, running ones included, newest first: at
    /// most `limit` of them ([`DEFAULT_LISTED_EXECUTIONS`] if 0, at most
    /// [`MAX_LISTED_EXECUTIONS`]).
    pub fn recent(&self, limit: usize) -> Vec<ExecutionSummary> {
        let limit = match limit {
            0 => DEFAULT_LISTED_EXECUTIONS,
            n => n.min(MAX_LISTED_EXECUTIONS),
        };
        self.by_seq
            .values()
            .rev()
            .filter_map(|id| Some(summary(id, self.executions.get(id)?)))
            .take(limit)
            .collect()
    }

    /// What is kept about execution `id` but its logs, or `None` if the id is unknown
    /// (or forgotten).
    pub fn details(&self, id: &str) -> Option<ExecutionDetails> {
        let execution = self.executions.get(id)?;
        let summary = summary(id, execution);
        Some(match &execution.outcome {
            None => ExecutionDetails {
                summary,
                input: execution
                    .submitted
                    .as_ref()
                    .map(|(_, input)| input.clone())
                    .unwrap_or_default(),
                outputs: Vec::new(),
                error: None,
                failed_operator: None,
                failed_order: None,
                runs: Vec::new(),
            },
            Some(outcome) => ExecutionDetails {
                summary,
                input: outcome.input.clone(),
                outputs: outcome.outputs.clone(),
                error: outcome.error.clone(),
                failed_operator: outcome.failed_operator.clone(),
                failed_order: outcome.failed_order,
                runs: outcome.runs.iter().map(operator_run).collect(),
            },
        })
    }

    /// The log lines of execution `id`, or `None` if the id is unknown (or
    /// forgotten). Each line names its operator.
    pub fn logs(&self, id: &str) -> Option<ExecutionLogs> {
        let execution = self.executions.get(id)?;
        let runs = execution
            .outcome
            .as_ref()
            .map(|o| o.runs.as_slice())
            .unwrap_or_default();
        let operator = |order: u32| {
            runs.iter()
                .find(|run| run.order == order)
                .map(|run| run.classname.clone())
                .unwrap_or_default()
        };
        Some(ExecutionLogs {
            id: id.to_string(),
            status: status(execution),
            lines: execution
                .logs
                .iter()
                .map(|line| LogLine {
                    order: line.order,
                    operator: operator(line.order),
                    level: level_name(line.level),
                    text: line.text.clone(),
                })
                .collect(),
        })
    }

    /// The load table.
    pub fn loads(&self) -> &LoadTable {
        &self.loads
    }

    /// `(submitted, finished)` since start.
    pub fn counts(&self) -> (u64, u64) {
        (self.submitted, self.finished)
    }

    /// `(outcomes kept, bytes held)`: the bytes of the kept outcomes and of the
    /// running executions' inputs, which the budget bounds.
    pub fn retained(&self) -> (usize, usize) {
        (
            self.finished_order.len(),
            self.outcome_bytes + self.running_bytes,
        )
    }
}

fn status(execution: &Execution) -> ExecutionStatus {
    match &execution.outcome {
        None => ExecutionStatus::Running,
        Some(_) if execution.timed_out => ExecutionStatus::TimedOut,
        Some(outcome) if outcome.error.is_none() => ExecutionStatus::Succeeded,
        Some(_) => ExecutionStatus::Failed,
    }
}

fn summary(id: &str, execution: &Execution) -> ExecutionSummary {
    let app = match (&execution.outcome, &execution.submitted) {
        (Some(outcome), _) => outcome.app.clone(),
        (None, Some((app, _))) => app.clone(),
        (None, None) => String::new(),
    };
    ExecutionSummary {
        id: id.to_string(),
        app,
        status: status(execution),
        submitted_unix_ms: execution.submitted_unix_ms,
        ended_unix_ms: execution.outcome.as_ref().map(|o| o.ended_unix_ms),
    }
}

fn operator_run(run: &wire::OperatorRun) -> OperatorRun {
    OperatorRun {
        order: run.order,
        classname: run.classname.clone(),
        worker_id: run.worker_id.clone(),
        started_unix_ms: run.started_unix_ms,
        duration_us: run.duration_us,
        fuel_used: run.fuel_used,
        memory_bytes: run.memory_bytes,
        instantiate_us: run.instantiate_us,
        error: run.error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(id: &str, unrun_from: u32, error: Option<&str>) -> ExecutionOutcome {
        ExecutionOutcome {
            execution_id: id.to_string(),
            error: error.map(String::from),
            unrun_from,
            ..ExecutionOutcome::default()
        }
    }

    const BUDGET: usize = 1 << 20;

    fn start(
        table: &mut ExecutionTable,
        operators: usize,
    ) -> (String, Vec<usize>, watch::Receiver<bool>) {
        let workers = table.loads().loads().len();
        table
            .start(operators, "app", "in", &vec![true; workers])
            .unwrap()
    }

    #[test]
    fn ids_are_unique_and_loads_return_to_zero() {
        let mut table = ExecutionTable::new(3, "b".into(), BUDGET);
        let (a, assigned_a, mut a_ended) = start(&mut table, 3);
        let (b, assigned_b, _) = start(&mut table, 2);
        assert_ne!(a, b);
        assert_eq!(table.loads().loads().iter().sum::<u64>(), 5);
        for (order, worker) in assigned_a.iter().enumerate() {
            assert!(table.complete(&a, order, *worker));
        }
        assert!(
            !table.complete(&a, 0, assigned_a[0]),
            "a duplicate confirmation counts once"
        );
        assert!(!*a_ended.borrow_and_update());
        assert!(table.finish(ended(&a, 3, None)));
        assert!(*a_ended.borrow_and_update(), "the receiver sees the end");
        assert!(!table.finish(ended(&a, 3, None)), "an execution ends once");
        // b fails at position 0: position 1 never runs and is released.
        assert!(table.complete(&b, 0, assigned_b[0]));
        assert!(table.finish(ended(&b, 1, Some("boom"))));
        assert_eq!(table.loads().loads(), &[0, 0, 0]);
        assert_eq!(table.counts(), (2, 2));
    }

    #[test]
    fn the_outcome_settles_every_position_and_late_completions_count_for_nothing() {
        let mut table = ExecutionTable::new(2, "b".into(), BUDGET);
        let (id, assigned, _) = start(&mut table, 2);
        assert!(table.complete(&id, 0, assigned[0]));
        assert!(table.finish(ended(&id, 2, None)));
        assert_eq!(table.loads().loads(), &[0, 0]);
        for (order, worker) in assigned.iter().enumerate() {
            assert!(!table.complete(&id, order, *worker));
        }
        assert_eq!(table.loads().loads(), &[0, 0]);
    }

    #[test]
    fn unknown_ids_and_wrong_workers_change_nothing() {
        let mut table = ExecutionTable::new(2, "b".into(), BUDGET);
        let (id, assigned, _) = start(&mut table, 1);
        let other = 1 - assigned[0];
        assert!(!table.complete(&id, 0, other));
        assert!(!table.complete("nope", 0, 0));
        assert!(!table.complete(&id, 7, assigned[0]));
        assert!(table.outcome("nope").is_none());
        assert!(table.outcome(&id).unwrap().0.is_none(), "still running");
    }

    #[test]
    fn outcomes_are_kept_within_the_byte_budget_oldest_forgotten_first() {
        // Each outcome carries a 100-byte output: a budget of 1000 bytes keeps the
        // newest few, whatever the count allows.
        let mut table = ExecutionTable::new(1, "b".into(), 1000);
        let mut ids = Vec::new();
        for _ in 0..20 {
            let (id, _, _) = start(&mut table, 1);
            let mut outcome = ended(&id, 1, None);
            outcome.outputs = vec!["x".repeat(100)];
            assert!(table.finish(outcome));
            ids.push(id);
        }
        let (kept, bytes) = table.retained();
        assert!(bytes <= 1000, "{bytes} bytes kept");
        assert!((5..20).contains(&kept), "{kept} outcomes kept");
        assert!(table.outcome(&ids[0]).is_none(), "the oldest is forgotten");
        let newest = table.outcome(ids.last().unwrap()).unwrap();
        assert!(newest.0.is_some(), "the newest is kept");
    }

    #[test]
    fn running_inputs_count_and_a_submit_past_the_budget_is_refused() {
        let mut table = ExecutionTable::new(1, "b".into(), 100);
        let (first, _, _) = table.start(1, "app", &"i".repeat(60), &[true; 1]).unwrap();
        let refused = table
            .start(1, "app", &"i".repeat(60), &[true; 1])
            .unwrap_err();
        assert_eq!(
            refused,
            StartRefused::Budget(BudgetExceeded {
                running: 63,
                asked: 63,
                budget: 100
            })
        );
        assert!(refused.to_string().contains("--max-retained-mb"));
        assert_eq!(table.counts(), (1, 0), "a refused submit is not counted");
        // Its end frees the input's bytes (its small outcome is kept instead).
        assert!(table.finish(ended(&first, 1, None)));
        assert!(table.start(1, "app", &"i".repeat(60), &[true; 1]).is_ok());
        assert_eq!(
            table.start(1, "app", "in", &[false]).unwrap_err(),
            StartRefused::NoWorker,
            "no placeable worker"
        );
    }

    #[test]
    fn a_timeout_reports_the_stored_application_and_input_once() {
        let mut table = ExecutionTable::new(1, "b".into(), BUDGET);
        let (id, _, _) = table.start(2, "shop.txt", "23", &[true; 1]).unwrap();
        assert!(table.time_out(&id, "no outcome within 1s".into()));
        let outcome = table.outcome(&id).unwrap().0.unwrap();
        assert_eq!(outcome.app, "shop.txt");
        assert_eq!(outcome.input, "23");
        assert_eq!(outcome.error.as_deref(), Some("no outcome within 1s"));
        assert!(!table.time_out(&id, "again".into()));
        assert!(!table.time_out("nope", "unknown".into()));
        assert_eq!(table.loads().loads(), &[0]);
    }

    fn log_line(order: u32, text: &str) -> wire::LogLine {
        wire::LogLine {
            order,
            level: LogLevel::Stdout as i32,
            text: text.to_string(),
            operator: String::new(),
        }
    }

    fn run(order: u32, classname: &str, error: Option<&str>) -> wire::OperatorRun {
        wire::OperatorRun {
            order,
            classname: classname.to_string(),
            worker_id: format!("w{order}"),
            started_unix_ms: 1_000 + u64::from(order),
            duration_us: 250,
            fuel_used: 4_000,
            error: error.map(String::from),
            memory_bytes: 1 << 20,
            instantiate_us: 40,
        }
    }

    #[test]
    fn recent_lists_newest_first_with_status_times_runs_and_logs() {
        let mut table = ExecutionTable::new(2, "b".into(), BUDGET);
        let (ok, _, _) = table.start(2, "ok.txt", "1", &[true; 2]).unwrap();
        let (failed, _, _) = table.start(1, "fail.txt", "2", &[true; 2]).unwrap();
        let (slow, _, _) = table.start(1, "slow.txt", "3", &[true; 2]).unwrap();
        let (running, _, _) = table.start(1, "running.txt", "4", &[true; 2]).unwrap();
        let mut outcome = ended(&ok, 2, None);
        outcome.app = "ok.txt".into();
        outcome.outputs = vec!["a".into(), "b".into()];
        outcome.runs = vec![run(0, "LogOperator", None), run(1, "EchoOperator", None)];
        outcome.logs = vec![log_line(0, "hello"), log_line(1, "world")];
        assert!(table.finish(outcome));
        let mut outcome = ended(&failed, 1, Some("FailOperator failed"));
        outcome.app = "fail.txt".into();
        outcome.failed_operator = Some("FailOperator".into());
        outcome.failed_order = Some(0);
        outcome.runs = vec![run(0, "FailOperator", Some("on purpose"))];
        assert!(table.finish(outcome));
        assert!(table.time_out(&slow, "no outcome within 1s".into()));

        let listed = table.recent(0);
        let ids: Vec<&str> = listed.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, [&running, &slow, &failed, &ok], "newest first");
        let statuses: Vec<ExecutionStatus> = listed.iter().map(|e| e.status).collect();
        assert_eq!(
            statuses,
            [
                ExecutionStatus::Running,
                ExecutionStatus::TimedOut,
                ExecutionStatus::Failed,
                ExecutionStatus::Succeeded
            ]
        );
        assert_eq!(listed[0].app, "running.txt");
        assert_eq!(listed[0].ended_unix_ms, None);
        assert_eq!(listed[0].duration_ms(), None);
        assert!(listed[3].duration_ms().is_some());
        assert!(listed[3].ended_unix_ms >= Some(listed[3].submitted_unix_ms));
        assert_eq!(table.recent(2).len(), 2);

        let details = table.details(&ok).unwrap();
        assert_eq!(details.outputs, ["a", "b"]);
        assert_eq!(details.runs.len(), 2);
        assert_eq!(details.runs[1].classname, "EchoOperator");
        assert_eq!(details.runs[1].fuel_used, 4_000);
        let details = table.details(&failed).unwrap();
        assert_eq!(details.runs[0].error.as_deref(), Some("on purpose"));
        assert_eq!(details.failed_operator.as_deref(), Some("FailOperator"));
        let details = table.details(&running).unwrap();
        assert_eq!(details.input, "4");
        assert!(details.runs.is_empty());
        assert!(table.details("nope").is_none());

        let logs = table.logs(&ok).unwrap();
        assert_eq!(logs.status, ExecutionStatus::Succeeded);
        let lines: Vec<(u32, &str, &str, &str)> = logs
            .lines
            .iter()
            .map(|l| (l.order, l.operator.as_str(), l.level, l.text.as_str()))
            .collect();
        assert_eq!(
            lines,
            [
                (0, "LogOperator", "stdout", "hello"),
                (1, "EchoOperator", "stdout", "world")
            ]
        );
        assert!(
            table.outcome(&ok).unwrap().0.unwrap().logs.is_empty(),
            "outcome replies leave the logs out"
        );
        let logs = table.logs(&running).unwrap();
        assert_eq!(logs.status, ExecutionStatus::Running);
        assert!(logs.lines.is_empty());
        assert!(table.logs("nope").is_none());
    }

    #[test]
    fn at_most_max_kept_finished_executions_are_kept_oldest_forgotten_first() {
        let mut table = ExecutionTable::new(1, "b".into(), BUDGET).with_max_kept(3);
        let mut ids = Vec::new();
        for _ in 0..5 {
            let (id, _, _) = start(&mut table, 1);
            let mut outcome = ended(&id, 1, None);
            outcome.logs = vec![log_line(0, "line")];
            assert!(table.finish(outcome));
            ids.push(id);
        }
        let (running, _, _) = start(&mut table, 1);
        let listed: Vec<String> = table.recent(100).into_iter().map(|e| e.id).collect();
        let listed: Vec<&String> = listed.iter().collect();
        assert_eq!(
            listed,
            [&running, &ids[4], &ids[3], &ids[2]],
            "the running one and the newest 3 finished"
        );
        assert!(table.details(&ids[0]).is_none() && table.logs(&ids[1]).is_none());
        assert_eq!(table.retained().0, 3);
    }

    #[test]
    fn logs_count_against_the_byte_budget() {
        let mut table = ExecutionTable::new(1, "b".into(), 2_000);
        for _ in 0..10 {
            let (id, _, _) = start(&mut table, 1);
            let mut outcome = ended(&id, 1, None);
            outcome.logs = (0..6).map(|_| log_line(0, &"x".repeat(100))).collect();
            assert!(table.finish(outcome));
        }
        let (kept, bytes) = table.retained();
        assert!(bytes <= 2_000, "{bytes} bytes kept");
        assert!(
            bytes >= kept * 600,
            "the logs are counted: {bytes} for {kept}"
        );
        assert!((1..=3).contains(&kept), "{kept} kept");
        assert_eq!(table.recent(100).len(), kept);
        let newest = &table.recent(1)[0].id;
        assert_eq!(table.logs(newest).unwrap().lines.len(), 6);
    }

    #[test]
    fn listings_are_bounded() {
        let mut table = ExecutionTable::new(1, "b".into(), BUDGET);
        for _ in 0..(MAX_LISTED_EXECUTIONS + 5) {
            start(&mut table, 1);
        }
        assert_eq!(table.recent(0).len(), DEFAULT_LISTED_EXECUTIONS);
        assert_eq!(table.recent(usize::MAX).len(), MAX_LISTED_EXECUTIONS);
    }
}
