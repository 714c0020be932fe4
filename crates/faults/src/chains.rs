//! Chain executions under faults, and checker (3): every execution either completes
//! with consistent reads (SPEC §4) or fails with a clear error — none hangs.
//!
//! Two applications, both of built-in operators, whose outputs show whether the reads
//! were consistent:
//! - `WriteOperator` then `ReadOperator` on the same key: the writer returns
//!   `value@version` of what it wrote, the reader `value@version` of what it read;
//!   SPEC §4 requires the reader to see exactly the version the writer wrote, so the
//!   two outputs must be equal.
//! - `IncrementOperator` twice: each reads the key named by the execution id, adds 1
//!   and writes it back; the second must read the first's write, so the outputs must
//!   be `1` then `2`.
//!
//! An execution is submitted to the scheduler and its outcome awaited up to a
//! deadline; one with no outcome by then has hung, which is a failure of the check.

use std::collections::BTreeMap;
use std::time::Duration;

use dida_core::Version;
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::{OutcomeRequest, SubmitRequest};
use dida_proto::transport::NodeChannel;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::history::{ClientId, OpKind, OpResult, Operation, RunClock};

/// The write-then-read application.
pub const WRITE_READ: [&str; 2] = ["WriteOperator", "ReadOperator"];
/// The increment-twice application.
pub const INCREMENT_TWICE: [&str; 2] = ["IncrementOperator", "IncrementOperator"];

/// How long one `Outcome` call waits on the scheduler before the client looks at its
/// own deadline again.
const OUTCOME_WAIT_MS: u32 = 2_000;

/// What every chain client of a run shares.
#[derive(Debug, Clone)]
pub struct ChainWorkload {
    /// Keys the write-then-read chains use (distinct from the storage workload's).
    pub keys: Vec<String>,
    /// Clients stop submitting once the run clock passes this.
    pub duration: Duration,
    /// An execution without an outcome this long after its submission has hung.
    pub chain_deadline: Duration,
    /// Pause between two executions of one client.
    pub pause: Duration,
}

/// The keys of the write-then-read chains: `chain0`, `chain1`, ….
pub fn chain_keys(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("chain{i}")).collect()
}

/// Runs one chain client until the workload's duration has passed, alternating the
/// two applications, and returns its executions as operations.
pub async fn run_chain_client(
    client_id: ClientId,
    scheduler: SchedulerClient<NodeChannel>,
    workload: ChainWorkload,
    clock: RunClock,
    seed: u64,
) -> Vec<Operation> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut history = Vec::new();
    let mut round: u64 = 0;
    while clock.elapsed() < workload.duration {
        round += 1;
        let (operators, key) = if round % 2 == 1 && !workload.keys.is_empty() {
            let key = workload.keys[rng.random_range(0..workload.keys.len())].clone();
            (WRITE_READ, key)
        } else {
            (INCREMENT_TWICE, format!("inc-{client_id}-{round}"))
        };
        let operators: Vec<String> = operators.iter().map(|s| s.to_string()).collect();
        let invoked_ns = clock.now_ns();
        let result = execute(scheduler.clone(), &operators, &key, workload.chain_deadline).await;
        let completed_ns = clock.now_ns();
        history.push(Operation {
            id: 0,
            client: client_id,
            key,
            kind: OpKind::Chain { operators },
            invoked_ns,
            completed_ns,
            result,
        });
        tokio::time::sleep(workload.pause).await;
    }
    history
}

/// Runs `per_app` executions of each application at once and waits for them, before
/// the measured run: workers compile an operator the first time they run it (seconds
/// in a debug build), and that start-up cost is not what the suite measures. Returns
/// how many warm-up executions completed; their results are not part of the history.
pub async fn warm_up(
    scheduler: SchedulerClient<NodeChannel>,
    per_app: usize,
    deadline: Duration,
) -> usize {
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..per_app {
        for app in [WRITE_READ, INCREMENT_TWICE] {
            let operators: Vec<String> = app.iter().map(|s| s.to_string()).collect();
            let scheduler = scheduler.clone();
            let input = format!("warm-up-{i}");
            runs.spawn(async move { execute(scheduler, &operators, &input, deadline).await });
        }
    }
    let mut completed = 0;
    while let Some(result) = runs.join_next().await {
        match result {
            Ok(OpResult::ChainCompleted { .. }) => completed += 1,
            Ok(other) => tracing::warn!("faults: a warm-up execution did not complete: {other:?}"),
            Err(error) => tracing::warn!("faults: a warm-up execution panicked: {error}"),
        }
    }
    completed
}

/// Submits one execution and waits for its outcome, up to `deadline` in all.
async fn execute(
    mut scheduler: SchedulerClient<NodeChannel>,
    operators: &[String],
    input: &str,
    deadline: Duration,
) -> OpResult {
    let started = tokio::time::Instant::now();
    let submit = SubmitRequest {
        app: format!("faults-{}", operators.join("-")),
        operators: operators.to_vec(),
        input: input.to_string(),
    };
    let execution_id = match tokio::time::timeout(deadline, scheduler.submit(submit)).await {
        Ok(Ok(reply)) => reply.into_inner().execution_id,
        Ok(Err(status)) => {
            return OpResult::Failed {
                error: format!("the scheduler refused the execution: {}", status.message()),
            }
        }
        Err(_) => {
            return OpResult::Unknown {
                error: format!("the scheduler did not accept the execution within {deadline:?}"),
            }
        }
    };
    let mut last_error = None;
    while let Some(left) = deadline.checked_sub(started.elapsed()) {
        let request = OutcomeRequest {
            execution_id: execution_id.clone(),
            wait_ms: OUTCOME_WAIT_MS,
        };
        match tokio::time::timeout(left, scheduler.outcome(request)).await {
            Ok(Ok(reply)) => {
                let reply = reply.into_inner();
                if let (true, Some(outcome)) = (reply.finished, reply.outcome) {
                    return match outcome.error {
                        None => OpResult::ChainCompleted {
                            execution_id,
                            outputs: outcome.outputs,
                        },
                        Some(error) => OpResult::ChainFailed {
                            execution_id,
                            error,
                        },
                    };
                }
            }
            Ok(Err(status)) => {
                last_error = Some(status.message().to_string());
                // Do not spin on a scheduler that answers errors at once.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => break,
        }
    }
    OpResult::Unknown {
        error: format!(
            "execution {execution_id} had no outcome within {deadline:?}{}",
            last_error
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        ),
    }
}

/// How one chain execution ended, as checker (3) sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainVerdict {
    /// Completed, and the outputs show consistent reads.
    Consistent,
    /// Completed, but the outputs show a read that was not the version the execution
    /// wrote: a violation of SPEC §4.
    Inconsistent(String),
    /// Stopped with an error: acceptable under faults, as long as it says why.
    FailedClearly(String),
    /// No outcome before the deadline: a violation.
    Hung(String),
}

/// Judges one chain operation; `None` for operations that are not chains.
pub fn judge(op: &Operation) -> Option<ChainVerdict> {
    let OpKind::Chain { operators } = &op.kind else {
        return None;
    };
    Some(match &op.result {
        OpResult::ChainCompleted {
            execution_id,
            outputs,
        } => match consistency_problem(operators, outputs) {
            None => ChainVerdict::Consistent,
            Some(problem) => {
                ChainVerdict::Inconsistent(format!("execution {execution_id}: {problem}"))
            }
        },
        OpResult::ChainFailed { error, .. } | OpResult::Failed { error } => {
            ChainVerdict::FailedClearly(error.clone())
        }
        OpResult::Unknown { error } => ChainVerdict::Hung(error.clone()),
        other => ChainVerdict::Inconsistent(format!("unexpected result {other:?}")),
    })
}

/// What is wrong with the outputs of a completed execution, if anything.
fn consistency_problem(operators: &[String], outputs: &[String]) -> Option<String> {
    if operators == WRITE_READ {
        match outputs {
            [written, read] if written == read => None,
            [written, read] => Some(format!(
                "ReadOperator read {read:?} but WriteOperator wrote {written:?}"
            )),
            _ => Some(format!("expected 2 outputs, got {outputs:?}")),
        }
    } else if operators == INCREMENT_TWICE {
        match outputs {
            [first, second] if first == "1" && second == "2" => None,
            _ => Some(format!(
                "IncrementOperator twice returned {outputs:?}, not [1, 2]"
            )),
        }
    } else {
        Some(format!("unknown application {operators:?}"))
    }
}

/// The acknowledged write a completed write-then-read execution made: `(key, value,
/// version)` parsed from `WriteOperator`'s `value@N.R` output. The lost-writes checker
/// counts these alongside the storage workload's writes.
pub fn acknowledged_chain_write(op: &Operation) -> Option<(String, String, Version)> {
    let (OpKind::Chain { operators }, OpResult::ChainCompleted { outputs, .. }) =
        (&op.kind, &op.result)
    else {
        return None;
    };
    if operators != &WRITE_READ {
        return None;
    }
    let (value, version) = outputs.first()?.rsplit_once('@')?;
    Some((op.key.clone(), value.to_string(), version.parse().ok()?))
}

/// The chain part of the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainReport {
    /// Executions submitted (or attempted).
    pub submitted: u64,
    /// Completed with consistent reads.
    pub consistent: u64,
    /// Completed with an inconsistent read (violations).
    pub inconsistent: u64,
    /// Stopped with an error.
    pub failed: u64,
    /// Without an outcome before the deadline (violations).
    pub hung: u64,
    /// Failures grouped by the start of their message, with counts.
    pub failure_kinds: BTreeMap<String, u64>,
    /// Up to ten violations, described.
    pub violations: Vec<String>,
}

impl ChainReport {
    /// Judges every chain of `history`.
    pub fn of(history: &[Operation]) -> Self {
        let mut report = Self::default();
        for verdict in history.iter().filter_map(judge) {
            report.submitted += 1;
            match verdict {
                ChainVerdict::Consistent => report.consistent += 1,
                ChainVerdict::Inconsistent(problem) => {
                    report.inconsistent += 1;
                    report.note(format!("inconsistent: {problem}"));
                }
                ChainVerdict::FailedClearly(error) => {
                    report.failed += 1;
                    *report
                        .failure_kinds
                        .entry(failure_kind(&error))
                        .or_default() += 1;
                }
                ChainVerdict::Hung(error) => {
                    report.hung += 1;
                    report.note(format!("hung: {error}"));
                }
            }
        }
        report
    }

    fn note(&mut self, violation: String) {
        if self.violations.len() < 10 {
            self.violations.push(violation);
        }
    }

    /// True when checker (3) holds: no hang and no inconsistent read.
    pub fn holds(&self) -> bool {
        self.inconsistent == 0 && self.hung == 0
    }
}

/// A stable label for an error message: its first 200 characters with digits (ids,
/// versions, ports, positions) masked, so that similar failures group together.
fn failure_kind(error: &str) -> String {
    error
        .chars()
        .take(200)
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(operators: [&str; 2], key: &str, result: OpResult) -> Operation {
        Operation {
            id: 0,
            client: 1,
            key: key.into(),
            kind: OpKind::Chain {
                operators: operators.iter().map(|s| s.to_string()).collect(),
            },
            invoked_ns: 0,
            completed_ns: 1,
            result,
        }
    }

    fn completed(outputs: &[&str]) -> OpResult {
        OpResult::ChainCompleted {
            execution_id: "e1".into(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_reader_seeing_the_writers_version_is_consistent() {
        let op = chain(WRITE_READ, "chain0", completed(&["v@3.1", "v@3.1"]));
        assert_eq!(judge(&op), Some(ChainVerdict::Consistent));
        assert_eq!(
            acknowledged_chain_write(&op),
            Some(("chain0".into(), "v".into(), Version::new(3, 1)))
        );
    }

    #[test]
    fn a_reader_seeing_another_version_is_inconsistent() {
        let op = chain(WRITE_READ, "chain0", completed(&["v@3.1", "w@4.2"]));
        assert!(matches!(judge(&op), Some(ChainVerdict::Inconsistent(_))));
        let op = chain(INCREMENT_TWICE, "x", completed(&["1", "1"]));
        assert!(matches!(judge(&op), Some(ChainVerdict::Inconsistent(_))));
        let op = chain(INCREMENT_TWICE, "x", completed(&["1", "2"]));
        assert_eq!(judge(&op), Some(ChainVerdict::Consistent));
    }

    #[test]
    fn failures_are_clear_and_missing_outcomes_are_hangs() {
        let failed = chain(
            WRITE_READ,
            "chain0",
            OpResult::ChainFailed {
                execution_id: "e7".into(),
                error: "storage node s3 at http://127.0.0.1:4000 is unreachable".into(),
            },
        );
        let hung = chain(
            WRITE_READ,
            "chain0",
            OpResult::Unknown {
                error: "no outcome".into(),
            },
        );
        let report = ChainReport::of(&[failed, hung]);
        assert_eq!((report.submitted, report.failed, report.hung), (2, 1, 1));
        assert!(!report.holds());
        assert_eq!(
            report.failure_kinds.keys().next().unwrap(),
            "storage node s# at http://###.#.#.#:#### is unreachable"
        );
    }
}
