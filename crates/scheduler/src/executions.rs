//! Executions in flight and finished: their assignments, the completions seen, and
//! their outcomes, which clients fetch (waiting if they like).
//!
//! Load accounting lives here too, because it follows executions: a worker's load goes
//! down when it confirms an operator, and when an execution ends every position not
//! confirmed yet is settled — it either ran before the end (its confirmation is late)
//! or never will — so no load is left behind.

use std::collections::{HashMap, VecDeque};

use dida_proto::execution::ExecutionOutcome;
use tokio::sync::watch;

use crate::load::LoadTable;

/// How many finished executions are kept for clients to fetch.
pub const KEPT_OUTCOMES: usize = 100_000;

#[derive(Debug)]
struct Execution {
    assignments: Vec<usize>,
    /// Per position: confirmed complete, or released because it will never run.
    settled: Vec<bool>,
    outcome: Option<ExecutionOutcome>,
    finished: watch::Sender<bool>,
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
}

impl ExecutionTable {
    /// An empty table for `workers` workers. `boot` makes ids unique across
    /// scheduler restarts.
    pub fn new(workers: usize, boot: String) -> Self {
        Self {
            executions: HashMap::new(),
            finished_order: VecDeque::new(),
            loads: LoadTable::new(workers),
            boot,
            next: 0,
            submitted: 0,
            finished: 0,
        }
    }

    /// Starts an execution of `operators` operators: returns its new id, the worker
    /// (index) assigned to each operator, and a receiver that turns true when the
    /// execution ends.
    pub fn start(&mut self, operators: usize) -> (String, Vec<usize>, watch::Receiver<bool>) {
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
                outcome: None,
                finished,
            },
        );
        (id, assignments, ended)
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
        execution.outcome = Some(outcome);
        let _ = execution.finished.send(true);
        self.finished += 1;
        self.finished_order.push_back(id);
        while self.finished_order.len() > KEPT_OUTCOMES {
            if let Some(old) = self.finished_order.pop_front() {
                self.executions.remove(&old);
            }
        }
        true
    }

    /// The outcome of `id` if it has ended (inner `None` while it runs), or `None` if
    /// the id is unknown. The receiver turns true when the execution ends.
    pub fn outcome(&self, id: &str) -> Option<(Option<ExecutionOutcome>, watch::Receiver<bool>)> {
        let execution = self.executions.get(id)?;
        Some((execution.outcome.clone(), execution.finished.subscribe()))
    }

    /// Whether `id` is known and still running.
    pub fn is_running(&self, id: &str) -> bool {
        self.executions.get(id).is_some_and(|e| e.outcome.is_none())
    }

    /// The load table.
    pub fn loads(&self) -> &LoadTable {
        &self.loads
    }

    /// `(submitted, finished)` since start.
    pub fn counts(&self) -> (u64, u64) {
        (self.submitted, self.finished)
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

    #[test]
    fn ids_are_unique_and_loads_return_to_zero() {
        let mut table = ExecutionTable::new(3, "b".into());
        let (a, assigned_a, mut a_ended) = table.start(3);
        let (b, assigned_b, _) = table.start(2);
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
        let mut table = ExecutionTable::new(2, "b".into());
        let (id, assigned, _) = table.start(2);
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
        let mut table = ExecutionTable::new(2, "b".into());
        let (id, assigned, _) = table.start(1);
        let other = 1 - assigned[0];
        assert!(!table.complete(&id, 0, other));
        assert!(!table.complete("nope", 0, 0));
        assert!(!table.complete(&id, 7, assigned[0]));
        assert!(table.outcome("nope").is_none());
        assert!(table.is_running(&id));
    }
}
