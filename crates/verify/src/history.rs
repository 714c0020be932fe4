//! The recorded history: every operation the workload invoked, with its arguments,
//! when it was invoked, when it completed and what it returned.
//!
//! The checkers only ever look at this record, never at the cluster's internals, so
//! the history must be honest: an operation whose outcome the client could not learn
//! (a timeout, a connection reset mid-call, a write the primary applied but could not
//! get acknowledged) is recorded as [`OpResult::Unknown`] — it may or may not have
//! taken effect — and only errors that prove the request never executed are recorded
//! as [`OpResult::Failed`].

use std::time::Duration;

use dida_core::Version;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Who invoked an operation: a storage client task or a chain client task.
pub type ClientId = u32;

/// What an operation asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OpKind {
    /// `write(key, value)`.
    Write {
        /// The value written; unique in the whole run.
        value: String,
    },
    /// `update_if_value_is(key, old, new)`.
    Cas {
        /// The value the key must hold for the swap to happen.
        old: String,
        /// The value written if it does; unique in the whole run.
        new: String,
    },
    /// `read(key)` from any replica.
    Read,
    /// One chain execution through the scheduler, whose input is the key.
    Chain {
        /// The operators of the chain, in order.
        operators: Vec<String>,
    },
}

/// How an operation ended, as far as its client could tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OpResult {
    /// A write or a successful CAS: the version the primary created.
    Written {
        /// The new version.
        version: Version,
    },
    /// A CAS whose comparison failed: nothing was written.
    CasFailed,
    /// A read: the record the replica returned (`None`: the key had no value there).
    ReadValue {
        /// The value read.
        value: Option<String>,
        /// Its version.
        version: Option<Version>,
    },
    /// A chain that ran to its end: every operator's output.
    ChainCompleted {
        /// The id the scheduler gave the execution.
        execution_id: String,
        /// Outputs in chain order.
        outputs: Vec<String>,
    },
    /// A chain the platform stopped with an error (a clear failure, not a hang).
    ChainFailed {
        /// The id the scheduler gave the execution.
        execution_id: String,
        /// The error the outcome carried.
        error: String,
    },
    /// The request certainly did not execute (e.g. the connection was refused, or the
    /// request was rejected before anything was written).
    Failed {
        /// Why.
        error: String,
    },
    /// The client cannot tell whether the request took effect (timeout, connection
    /// lost mid-call, write applied but not acknowledged by enough replicas). For a
    /// chain: no outcome arrived before the deadline, i.e. the chain hung.
    Unknown {
        /// What the client saw.
        error: String,
    },
}

/// One operation of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Position in the history (unique); checkers name operations by it.
    pub id: u64,
    /// The client task that invoked it.
    pub client: ClientId,
    /// The key it is about (for a chain: its input).
    pub key: String,
    /// What was asked.
    pub kind: OpKind,
    /// When it was invoked, in nanoseconds since the start of the run.
    pub invoked_ns: u64,
    /// When the client got its result (or gave up), in nanoseconds since the start of
    /// the run. For an [`OpResult::Unknown`] operation the checkers treat the return
    /// time as +∞, since the request may still take effect later.
    pub completed_ns: u64,
    /// What came back.
    pub result: OpResult,
}

impl Operation {
    /// The value and version of a write or CAS the storage service acknowledged: it
    /// must never be lost (with `--write-acks` ≥ 2). `None` for any other operation.
    pub fn acknowledged_write(&self) -> Option<(&str, Version)> {
        match (&self.kind, &self.result) {
            (OpKind::Write { value }, OpResult::Written { version }) => Some((value, *version)),
            (OpKind::Cas { new, .. }, OpResult::Written { version }) => Some((new, *version)),
            _ => None,
        }
    }

    /// True when the outcome is unknown.
    pub fn is_unknown(&self) -> bool {
        matches!(self.result, OpResult::Unknown { .. })
    }
}

/// The clock every operation of a run is timed with: one monotonic origin, so the
/// invocation and completion times of all clients can be compared. It reads tokio's
/// clock, so that under the simulator's paused clock it gives simulated time.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    origin: Instant,
}

impl RunClock {
    /// A clock whose zero is now.
    pub fn start() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    /// Nanoseconds since the start of the run.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Time elapsed since the start of the run.
    pub fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// Counts of a history, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryCounts {
    /// Storage operations invoked (writes, CAS, reads).
    pub attempted: u64,
    /// Writes invoked.
    pub writes: u64,
    /// CAS invoked.
    pub cas: u64,
    /// Reads invoked.
    pub reads: u64,
    /// Writes and successful CAS the service acknowledged with a version.
    pub acknowledged: u64,
    /// CAS whose comparison failed.
    pub cas_failed: u64,
    /// Reads that returned.
    pub reads_ok: u64,
    /// Storage operations that certainly did not execute.
    pub failed: u64,
    /// Storage operations with an unknown outcome.
    pub unknown: u64,
    /// Chain executions submitted.
    pub chains: u64,
    /// Operations recorded without a result. Always 0: every operation gets one (the
    /// field exists so the summary can show it).
    pub without_result: u64,
}

impl HistoryCounts {
    /// Counts `history`.
    pub fn of(history: &[Operation]) -> Self {
        let mut counts = Self::default();
        for op in history {
            match op.kind {
                OpKind::Chain { .. } => {
                    counts.chains += 1;
                    continue;
                }
                OpKind::Write { .. } => counts.writes += 1,
                OpKind::Cas { .. } => counts.cas += 1,
                OpKind::Read => counts.reads += 1,
            }
            counts.attempted += 1;
            match op.result {
                OpResult::Written { .. } => counts.acknowledged += 1,
                OpResult::CasFailed => counts.cas_failed += 1,
                OpResult::ReadValue { .. } => counts.reads_ok += 1,
                OpResult::Failed { .. } => counts.failed += 1,
                OpResult::Unknown { .. } => counts.unknown += 1,
                OpResult::ChainCompleted { .. } | OpResult::ChainFailed { .. } => {
                    counts.without_result += 1
                }
            }
        }
        counts
    }
}

/// Operations for the checkers' tests, built the same way in every module.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// Operation `id` of client 1 on `k0`, invoked at `10 × id` ns, completed 5 ns later.
    pub fn op(id: u64, kind: OpKind, result: OpResult) -> Operation {
        Operation {
            id,
            client: 1,
            key: "k0".into(),
            kind,
            invoked_ns: id * 10,
            completed_ns: id * 10 + 5,
            result,
        }
    }

    pub fn write(value: &str) -> OpKind {
        let value = value.into();
        OpKind::Write { value }
    }

    pub fn cas(old: &str, new: &str) -> OpKind {
        let (old, new) = (old.into(), new.into());
        OpKind::Cas { old, new }
    }

    pub fn chain(operators: &[&str]) -> OpKind {
        let operators = operators.iter().map(|s| s.to_string()).collect();
        OpKind::Chain { operators }
    }

    /// Acknowledged with version `counter`.1.
    pub fn written(counter: u64) -> OpResult {
        let version = Version::new(counter, 1);
        OpResult::Written { version }
    }

    /// Execution `e1` completed with `outputs`.
    pub fn chain_completed(outputs: &[&str]) -> OpResult {
        let outputs = outputs.iter().map(|s| s.to_string()).collect();
        let execution_id = "e1".into();
        OpResult::ChainCompleted {
            execution_id,
            outputs,
        }
    }

    /// Execution `e1` failed with `error`.
    pub fn chain_failed(error: &str) -> OpResult {
        let (execution_id, error) = ("e1".into(), error.into());
        OpResult::ChainFailed {
            execution_id,
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn counts_tell_acknowledged_writes_from_the_rest() {
        let history = vec![
            op(0, write("a"), written(1)),
            op(1, cas("a", "b"), OpResult::CasFailed),
            op(2, write("c"), OpResult::Unknown { error: "x".into() }),
            op(3, chain(&["EchoOperator"]), chain_failed("y")),
        ];
        let counts = HistoryCounts::of(&history);
        assert_eq!(counts.attempted, 3);
        assert_eq!(counts.acknowledged, 1);
        assert_eq!(counts.cas_failed, 1);
        assert_eq!(counts.unknown, 1);
        assert_eq!(counts.chains, 1);
        assert_eq!(counts.without_result, 0);
        let version = Version::new(1, 1);
        assert_eq!(history[0].acknowledged_write(), Some(("a", version)));
        assert_eq!(history[1].acknowledged_write(), None);
    }

    #[test]
    fn operations_round_trip_through_json() {
        let original = op(0, cas("a", "b"), written(3));
        let json = serde_json::to_string(&original).unwrap();
        assert!(json.contains("\"type\":\"cas\""), "{json}");
        assert_eq!(serde_json::from_str::<Operation>(&json).unwrap(), original);
    }
}
