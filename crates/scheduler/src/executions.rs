//! Executions in flight and finished: their assignments, the completions seen, and
//! their outcomes, which clients fetch (waiting if they like).
//!
//! Load accounting lives here too, because it follows executions: a worker's load goes
//! down when it confirms an operator, and when an execution ends every position not
//! confirmed yet is settled — it either ran before the end (its confirmation is late)
//! or never will — so no load is left behind.
//!
//! Memory is bounded by count and by bytes: at most [`KEPT_OUTCOMES`] outcomes, and
//! at most the table's byte budget for the outcomes kept plus the application name
//! and input of every running execution (kept to fail it on its timeout). Beyond the
//! budget the oldest outcomes are forgotten first; a submit that would need more than
//! the running executions leave is refused ([`BudgetExceeded`]).

use std::collections::{HashMap, VecDeque};

use dida_proto::execution::ExecutionOutcome;
use prost::Message;
use tokio::sync::watch;

use crate::load::LoadTable;

/// How many finished executions are kept for clients to fetch.
pub const KEPT_OUTCOMES: usize = 100_000;

#[derive(Debug)]
struct Execution {
    assignments: Vec<usize>,
    /// Per position: confirmed complete, or released because it will never run.
    settled: Vec<bool>,
    /// The application and input, while it runs: what its timeout outcome reports.
    submitted: Option<(String, String)>,
    outcome: Option<ExecutionOutcome>,
    /// Bytes this execution counts against the budget now.
    bytes: usize,
    finished: watch::Sender<bool>,
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

/// What the scheduler knows about executions.
#[derive(Debug)]
pub struct ExecutionTable {
    executions: HashMap<String, Execution>,
    finished_order: VecDeque<String>,
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
}

impl ExecutionTable {
    /// An empty table for `workers` workers, keeping at most `budget` bytes of
    /// outcomes and running inputs. `boot` makes ids unique across scheduler restarts.
    pub fn new(workers: usize, boot: String, budget: usize) -> Self {
        Self {
            executions: HashMap::new(),
            finished_order: VecDeque::new(),
            loads: LoadTable::new(workers),
            boot,
            next: 0,
            submitted: 0,
            finished: 0,
            budget,
            running_bytes: 0,
            outcome_bytes: 0,
        }
    }

    /// Starts an execution of `operators` operators of application `app` with
    /// `input`: returns its new id, the worker (index) assigned to each operator, and
    /// a receiver that turns true when the execution ends. Refused when the running
    /// executions hold the whole budget; outcomes are forgotten, oldest first, to
    /// make room.
    pub fn start(
        &mut self,
        operators: usize,
        app: &str,
        input: &str,
    ) -> Result<(String, Vec<usize>, watch::Receiver<bool>), BudgetExceeded> {
        let bytes = app.len() + input.len();
        if self.running_bytes + bytes > self.budget {
            return Err(BudgetExceeded {
                running: self.running_bytes,
                asked: bytes,
                budget: self.budget,
            });
        }
        self.running_bytes += bytes;
        self.evict(0);
        self.next += 1;
        self.submitted += 1;
        let id = format!("{}-{}", self.boot, self.next);
        let assignments = self.loads.assign(operators);
        let (finished, ended) = watch::channel(false);
        self.executions.insert(
            id.clone(),
            Execution {
                settled: vec![false; operators],
                assignments: assignments.clone(),
                submitted: Some((app.to_string(), input.to_string())),
                outcome: None,
                bytes,
                finished,
            },
        );
        Ok((id, assignments, ended))
    }

    /// Fails execution `id` with `error` if it is still running (its timeout): the
    /// outcome names its application and input, and no operator as run. Returns
    /// whether it was running.
    pub fn time_out(&mut self, id: &str, error: String) -> bool {
        let Some((app, input)) = self
            .executions
            .get_mut(id)
            .filter(|e| e.outcome.is_none())
            .and_then(|e| e.submitted.take())
        else {
            return false;
        };
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
    pub fn finish(&mut self, outcome: ExecutionOutcome) -> bool {
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
        let bytes = outcome.encoded_len();
        self.running_bytes -= execution.bytes;
        self.outcome_bytes += bytes;
        execution.bytes = bytes;
        execution.submitted = None;
        execution.outcome = Some(outcome);
        let _ = execution.finished.send(true);
        self.finished += 1;
        self.finished_order.push_back(id);
        // The outcome just recorded is always kept, even alone over the budget: the
        // client waiting for it gets it.
        self.evict(1);
        true
    }

    /// Forgets the oldest outcomes until at most [`KEPT_OUTCOMES`] are kept and the
    /// kept ones fit in the budget beside the running executions — but keeps the
    /// newest `keep` whatever their size.
    fn evict(&mut self, keep: usize) {
        while self.finished_order.len() > keep
            && (self.finished_order.len() > KEPT_OUTCOMES
                || self.running_bytes + self.outcome_bytes > self.budget)
        {
            let Some(old) = self.finished_order.pop_front() else {
                break;
            };
            if let Some(execution) = self.executions.remove(&old) {
                self.outcome_bytes -= execution.bytes;
            }
        }
    }

    /// The outcome of `id` if it has ended (inner `None` while it runs), or `None` if
    /// the id is unknown. The receiver turns true when the execution ends.
    pub fn outcome(&self, id: &str) -> Option<(Option<ExecutionOutcome>, watch::Receiver<bool>)> {
        let execution = self.executions.get(id)?;
        Some((execution.outcome.clone(), execution.finished.subscribe()))
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
        table.start(operators, "app", "in").unwrap()
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
        let (first, _, _) = table.start(1, "app", &"i".repeat(60)).unwrap();
        let refused = table.start(1, "app", &"i".repeat(60)).unwrap_err();
        assert_eq!(
            refused,
            BudgetExceeded {
                running: 63,
                asked: 63,
                budget: 100
            }
        );
        assert!(refused.to_string().contains("--max-retained-mb"));
        assert_eq!(table.counts(), (1, 0), "a refused submit is not counted");
        // Its end frees the input's bytes (its small outcome is kept instead).
        assert!(table.finish(ended(&first, 1, None)));
        assert!(table.start(1, "app", &"i".repeat(60)).is_ok());
    }

    #[test]
    fn a_timeout_reports_the_stored_application_and_input_once() {
        let mut table = ExecutionTable::new(1, "b".into(), BUDGET);
        let (id, _, _) = table.start(2, "shop.txt", "23").unwrap();
        assert!(table.time_out(&id, "no outcome within 1s".into()));
        let outcome = table.outcome(&id).unwrap().0.unwrap();
        assert_eq!(outcome.app, "shop.txt");
        assert_eq!(outcome.input, "23");
        assert_eq!(outcome.error.as_deref(), Some("no outcome within 1s"));
        assert!(!table.time_out(&id, "again".into()));
        assert!(!table.time_out("nope", "unknown".into()));
        assert_eq!(table.loads().loads(), &[0]);
    }
}
