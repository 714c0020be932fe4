//! Checker (3): every chain execution either completes with consistent reads
//! (SPEC §4) or fails with a clear error — none hangs.
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

use std::collections::BTreeMap;

use dida_core::Version;
use serde::{Deserialize, Serialize};

use crate::history::{OpKind, OpResult, Operation};

/// The write-then-read application.
pub const WRITE_READ: [&str; 2] = ["WriteOperator", "ReadOperator"];
/// The increment-twice application.
pub const INCREMENT_TWICE: [&str; 2] = ["IncrementOperator", "IncrementOperator"];

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

/// The acknowledged write a completed write-then-read execution made to its key (the
/// operation's): `(value, version)` parsed from `WriteOperator`'s `value@N.R` output.
/// The lost-writes checker counts these alongside the storage workload's writes.
pub fn acknowledged_chain_write(op: &Operation) -> Option<(&str, Version)> {
    let (OpKind::Chain { operators }, OpResult::ChainCompleted { outputs, .. }) =
        (&op.kind, &op.result)
    else {
        return None;
    };
    if operators != &WRITE_READ {
        return None;
    }
    let (value, version) = outputs.first()?.rsplit_once('@')?;
    Some((value, version.parse().ok()?))
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
    /// Failures grouped by their message (its first 200 characters, as it was),
    /// with counts.
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
                    let kind = failure_kind(&error);
                    *report.failure_kinds.entry(kind).or_default() += 1;
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

    /// The counts in one line, for the report's text and its check (3).
    pub fn summary(&self) -> String {
        format!(
            "{} submitted: {} consistent, {} failed clearly, {} inconsistent, {} hung",
            self.submitted, self.consistent, self.failed, self.inconsistent, self.hung
        )
    }

    /// True when checker (3) holds: no hang and no inconsistent read.
    pub fn holds(&self) -> bool {
        self.inconsistent == 0 && self.hung == 0
    }
}

/// The key an error is grouped under in [`ChainReport::failure_kinds`]: its text as
/// it was, cut to 200 characters. Nothing is masked — a report shows the node, port
/// and version that failed, so that it can be followed up (masking digits turned
/// `worker w2` into `worker w#`).
fn failure_kind(error: &str) -> String {
    error.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::fixtures::{self, chain_completed as completed, chain_failed};

    fn chain(operators: [&str; 2], key: &str, result: OpResult) -> Operation {
        let key = key.into();
        Operation {
            key,
            ..fixtures::op(0, fixtures::chain(&operators), result)
        }
    }

    #[test]
    fn a_reader_seeing_the_writers_version_is_consistent() {
        let op = chain(WRITE_READ, "chain0", completed(&["v@3.1", "v@3.1"]));
        assert_eq!(judge(&op), Some(ChainVerdict::Consistent));
        assert_eq!(
            acknowledged_chain_write(&op),
            Some(("v", Version::new(3, 1)))
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
        let error = "storage node s3 at http://127.0.0.1:4000 is unreachable";
        let failed = chain(WRITE_READ, "chain0", chain_failed(error));
        let hung = chain(
            WRITE_READ,
            "chain0",
            OpResult::Unknown { error: "x".into() },
        );
        let report = ChainReport::of(&[failed, hung]);
        assert_eq!((report.submitted, report.failed, report.hung), (2, 1, 1));
        assert!(!report.holds());
        assert_eq!(report.failure_kinds.keys().next().unwrap(), error);
    }
}
