//! The summary of a run: what was done, what the checkers found, and the verdict —
//! as text for people and as one JSON object (`--json`) for scripts and tests.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::chains::ChainReport;
use crate::history::HistoryCounts;
use crate::linearizability::Verdict;
use crate::lost_writes::LostWritesReport;
use crate::nemesis::Crash;

/// The settings a run used, repeated in its report so that every result says what
/// produced it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSettings {
    /// Storage nodes.
    pub nodes: usize,
    /// Replication factor.
    pub replication_factor: usize,
    /// `--write-acks` of the storage nodes.
    pub write_acks: usize,
    /// `--max-versions` of the storage nodes.
    pub max_versions: usize,
    /// Workers (0 when no chains ran).
    pub workers: usize,
    /// Storage clients.
    pub clients: usize,
    /// Chain clients.
    pub chain_clients: usize,
    /// Contended keys of the storage workload.
    pub keys: usize,
    /// Length of the workload, in milliseconds.
    pub duration_ms: u64,
    /// Crashes asked for.
    pub crashes: usize,
    /// `--gossip-delay` of the storage nodes, in milliseconds.
    pub gossip_delay_ms: u64,
    /// Seed of every random choice (workload and nemesis).
    pub seed: u64,
}

/// Checker (2) for one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLinearizability {
    /// The key.
    pub key: String,
    /// Writes and CAS checked (definite failures excluded).
    pub operations: usize,
    /// Among them, operations with an unknown outcome.
    pub unknown: usize,
    /// The verdict on the history as recorded.
    pub verdict: Verdict,
    /// With `--write-acks 1` only, when the verdict is a violation: the verdict once
    /// the writes found lost are treated as of unknown outcome. A lost write is one
    /// the system took back, so later operations may contradict it; the history must
    /// still be linearizable apart from that.
    pub verdict_allowing_lost_writes: Option<Verdict>,
    /// Time the check took, in milliseconds.
    pub check_ms: u64,
}

impl KeyLinearizability {
    /// The verdict that counts for the run: the adjusted one when there is one.
    pub fn effective(&self) -> &Verdict {
        self.verdict_allowing_lost_writes
            .as_ref()
            .unwrap_or(&self.verdict)
    }
}

/// Checker (2) over all keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinearizabilityReport {
    /// One entry per key.
    pub keys: Vec<KeyLinearizability>,
}

impl LinearizabilityReport {
    /// `linearizable`, `not linearizable` or `inconclusive` (a violation anywhere
    /// wins over an inconclusive key).
    pub fn summary(&self) -> &'static str {
        if self.keys.iter().any(|k| k.effective().is_violation()) {
            "not linearizable"
        } else if self
            .keys
            .iter()
            .any(|k| matches!(k.effective(), Verdict::Inconclusive { .. }))
        {
            "inconclusive"
        } else {
            "linearizable"
        }
    }
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Must hold, and did.
    Passed,
    /// Must hold, and did not: the run fails.
    Failed,
    /// Could not be decided (e.g. the linearizability search hit its bounds).
    Inconclusive,
    /// Reported only; not a failure either way.
    Reported,
}

/// One line of the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What is checked.
    pub name: String,
    /// How it came out.
    pub status: CheckStatus,
    /// The numbers behind it.
    pub detail: String,
}

/// Everything a run reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// What the run was.
    pub settings: RunSettings,
    /// Operations by kind and result.
    pub operations: HistoryCounts,
    /// Crashes injected.
    pub crashes: Vec<Crash>,
    /// Checkers (1) and (4).
    pub lost_writes: LostWritesReport,
    /// Checker (2).
    pub linearizability: LinearizabilityReport,
    /// Checker (3).
    pub chains: ChainReport,
    /// The verdict, check by check.
    pub checks: Vec<Check>,
    /// True when no check failed.
    pub passed: bool,
    /// Wall-clock time of the whole run (start-up and checks included), in
    /// milliseconds.
    pub elapsed_ms: u64,
}

impl Report {
    /// Builds the checks from the checkers' results and decides whether the run
    /// passed.
    pub fn judge(&mut self) {
        let mut checks = Vec::new();
        let lost = &self.lost_writes;
        let lost_detail = format!(
            "{} of {} acknowledged writes lost (held {}, discarded by max_versions {}, \
             conflicting versions {}){}{}",
            lost.lost,
            lost.acknowledged,
            lost.held,
            lost.discarded_by_max_versions,
            lost.conflicting,
            if lost.converged {
                String::new()
            } else {
                "; the cluster had not converged when checked".to_string()
            },
            if lost.unreadable_nodes.is_empty() {
                String::new()
            } else {
                format!("; unreadable live nodes: {:?}", lost.unreadable_nodes)
            },
        );
        if self.settings.write_acks >= 2 {
            checks.push(Check {
                name: format!(
                    "(1) no acknowledged write lost (--write-acks {})",
                    self.settings.write_acks
                ),
                status: if lost.lost == 0 {
                    CheckStatus::Passed
                } else {
                    CheckStatus::Failed
                },
                detail: lost_detail,
            });
        } else {
            checks.push(Check {
                name: "(4) acknowledged writes lost with --write-acks 1 (expected sometimes)"
                    .to_string(),
                status: CheckStatus::Reported,
                detail: lost_detail,
            });
        }
        let keys = &self.linearizability.keys;
        let checked: usize = keys.iter().map(|k| k.operations).sum();
        let unknown: usize = keys.iter().map(|k| k.unknown).sum();
        let adjusted = keys
            .iter()
            .filter(|k| k.verdict_allowing_lost_writes.is_some())
            .count();
        let mut detail = format!(
            "{}: {} keys, {checked} writes/CAS ({unknown} of unknown outcome)",
            self.linearizability.summary(),
            keys.len()
        );
        if adjusted > 0 {
            let _ = write!(
                detail,
                "; {adjusted} keys linearizable only once their lost writes are \
                 treated as unknown"
            );
        }
        for key in keys {
            match key.effective() {
                Verdict::Linearizable => {}
                Verdict::NotLinearizable {
                    blocked_op,
                    longest_prefix,
                } => {
                    let _ = write!(
                        detail,
                        "; key {}: operation #{blocked_op} cannot be placed (after {} \
                         linearized)",
                        key.key, longest_prefix
                    );
                }
                Verdict::Inconclusive { reason } => {
                    let _ = write!(detail, "; key {}: {reason}", key.key);
                }
            }
        }
        checks.push(Check {
            name: "(2) per-key linearizability of writes and CAS".to_string(),
            status: match self.linearizability.summary() {
                "linearizable" => CheckStatus::Passed,
                "inconclusive" => CheckStatus::Inconclusive,
                _ => CheckStatus::Failed,
            },
            detail,
        });
        let chains = &self.chains;
        let mut detail = format!(
            "{} submitted: {} consistent, {} failed clearly, {} inconsistent, {} hung",
            chains.submitted, chains.consistent, chains.failed, chains.inconsistent, chains.hung
        );
        for violation in &chains.violations {
            let _ = write!(detail, "; {violation}");
        }
        checks.push(Check {
            name: "(3) chains complete with consistent reads or fail clearly; none hangs"
                .to_string(),
            status: if chains.holds() {
                CheckStatus::Passed
            } else {
                CheckStatus::Failed
            },
            detail,
        });
        let confirmed = self.crashes.iter().filter(|c| c.confirmed_dead).count();
        checks.push(Check {
            name: "crashes injected as planned".to_string(),
            status: if confirmed == self.crashes.len() && confirmed == self.settings.crashes {
                CheckStatus::Passed
            } else {
                CheckStatus::Failed
            },
            detail: format!(
                "{} of {} planned crashes injected and confirmed dead",
                confirmed, self.settings.crashes
            ),
        });
        self.passed = checks.iter().all(|c| c.status != CheckStatus::Failed);
        self.checks = checks;
    }

    /// The report as text, for a terminal.
    pub fn to_text(&self) -> String {
        let s = &self.settings;
        let o = &self.operations;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "dida faults: {} storage nodes (R={}, --write-acks {}, --max-versions {}, \
             --gossip-delay {}), {} workers; {} clients on {} keys, {} chain clients; \
             {:.1} s; seed {}",
            s.nodes,
            s.replication_factor,
            s.write_acks,
            s.max_versions,
            s.gossip_delay_ms,
            s.workers,
            s.clients,
            s.keys,
            s.chain_clients,
            s.duration_ms as f64 / 1000.0,
            s.seed
        );
        let _ = writeln!(
            out,
            "operations   attempted {} (writes {}, CAS {}, reads {}): acknowledged {}, \
             CAS failed {}, reads ok {}, failed {}, unknown {}",
            o.attempted,
            o.writes,
            o.cas,
            o.reads,
            o.acknowledged,
            o.cas_failed,
            o.reads_ok,
            o.failed,
            o.unknown
        );
        let crashes: Vec<String> = self
            .crashes
            .iter()
            .map(|c| {
                format!(
                    "{} at {:.1} s (primary of {}){}",
                    c.node,
                    c.at_ns as f64 / 1e9,
                    if c.led_keys.is_empty() {
                        "none of the keys".to_string()
                    } else {
                        c.led_keys.join(" ")
                    },
                    if c.confirmed_dead {
                        ""
                    } else {
                        " (NOT confirmed dead)"
                    }
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "crashes      {} injected{}{}",
            self.crashes.len(),
            if crashes.is_empty() { "" } else { ": " },
            crashes.join(", ")
        );
        let l = &self.lost_writes;
        let _ = writeln!(
            out,
            "lost writes  {} of {} acknowledged (held {}, discarded by max_versions {}); \
             live nodes {}; {} in {:.1} s",
            l.lost,
            l.acknowledged,
            l.held,
            l.discarded_by_max_versions,
            l.live_nodes.join(","),
            if l.converged {
                "converged"
            } else {
                "NOT converged"
            },
            l.convergence_ms as f64 / 1000.0
        );
        for example in l.examples.iter().take(5) {
            let _ = writeln!(
                out,
                "             lost: op #{} {}={} @{} acknowledged at {:.2} s",
                example.op,
                example.key,
                example.value,
                example.version,
                example.acked_ns as f64 / 1e9
            );
        }
        let slowest = self
            .linearizability
            .keys
            .iter()
            .map(|k| k.check_ms)
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "histories    {} ({} keys; slowest check {} ms)",
            self.linearizability.summary(),
            self.linearizability.keys.len(),
            slowest
        );
        let c = &self.chains;
        let _ = writeln!(
            out,
            "chains       {} submitted: {} consistent, {} failed clearly, {} inconsistent, \
             {} hung",
            c.submitted, c.consistent, c.failed, c.inconsistent, c.hung
        );
        for (kind, count) in &c.failure_kinds {
            let _ = writeln!(out, "             {count}× {kind}");
        }
        let _ = writeln!(out, "checks");
        for check in &self.checks {
            let status = match check.status {
                CheckStatus::Passed => "pass",
                CheckStatus::Failed => "FAIL",
                CheckStatus::Inconclusive => "????",
                CheckStatus::Reported => "info",
            };
            let _ = writeln!(out, "  [{status}] {}", check.name);
            let _ = writeln!(out, "         {}", check.detail);
        }
        let _ = writeln!(
            out,
            "result: {} ({:.1} s in all)",
            if self.passed { "PASS" } else { "FAIL" },
            self.elapsed_ms as f64 / 1000.0
        );
        out
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        // A report is plain data (strings, numbers, maps with string keys): it always
        // serializes.
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"error\":\"cannot serialize the report: {e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(write_acks: usize) -> Report {
        Report {
            settings: RunSettings {
                write_acks,
                crashes: 1,
                ..RunSettings::default()
            },
            operations: HistoryCounts::default(),
            crashes: vec![Crash {
                node: "s2".into(),
                at_ns: 1_000_000_000,
                led_keys: vec!["k0".into()],
                confirmed_dead: true,
                error: None,
            }],
            lost_writes: LostWritesReport {
                acknowledged: 10,
                held: 9,
                lost: 1,
                converged: true,
                ..LostWritesReport::default()
            },
            linearizability: LinearizabilityReport {
                keys: vec![KeyLinearizability {
                    key: "k0".into(),
                    operations: 10,
                    unknown: 0,
                    verdict: Verdict::Linearizable,
                    verdict_allowing_lost_writes: None,
                    check_ms: 1,
                }],
            },
            chains: ChainReport::default(),
            checks: Vec::new(),
            passed: false,
            elapsed_ms: 0,
        }
    }

    #[test]
    fn a_lost_write_fails_the_run_only_with_write_acks_of_two_or_more() {
        let mut strict = report(2);
        strict.judge();
        assert!(!strict.passed);
        let mut course = report(1);
        course.judge();
        assert!(course.passed, "{}", course.to_text());
        assert!(course.to_text().contains("(4)"));
    }

    #[test]
    fn a_linearizability_violation_fails_the_run_and_inconclusive_does_not() {
        let mut run = report(1);
        run.linearizability.keys[0].verdict = Verdict::Inconclusive {
            reason: "bounds".into(),
        };
        run.judge();
        assert!(run.passed);
        assert_eq!(run.linearizability.summary(), "inconclusive");
        run.linearizability.keys[0].verdict = Verdict::NotLinearizable {
            blocked_op: 3,
            longest_prefix: 2,
        };
        run.judge();
        assert!(!run.passed);
        // With --write-acks 1 the verdict allowing lost writes is the one that counts.
        run.linearizability.keys[0].verdict_allowing_lost_writes = Some(Verdict::Linearizable);
        run.judge();
        assert!(run.passed);
    }

    #[test]
    fn a_hung_chain_or_a_missing_crash_fails_the_run() {
        let mut run = report(1);
        run.chains.hung = 1;
        run.judge();
        assert!(!run.passed);
        let mut run = report(1);
        run.crashes[0].confirmed_dead = false;
        run.judge();
        assert!(!run.passed);
    }

    #[test]
    fn the_json_report_parses_back() {
        let mut run = report(2);
        run.judge();
        let parsed: Report = serde_json::from_str(&run.to_json()).unwrap();
        assert_eq!(parsed, run);
    }
}
