//! The summary of a run: what was done, what the checkers found, and the verdict —
//! as text for people and as one JSON object (`--json`) for scripts and tests.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::at_rest::PlacementReport;
use crate::chains::ChainReport;
use crate::history::HistoryCounts;
use crate::linearizability::Verdict;
use crate::lost_writes::LostWritesReport;
use crate::plan::{Fault, FaultKind, NemesisKind};

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
    /// The protocol they spoke (`grpc`, `resp`), when the back-end has a choice.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_protocol: String,
    /// Chain clients.
    pub chain_clients: usize,
    /// Contended keys of the storage workload.
    pub keys: usize,
    /// Length of the workload, in milliseconds.
    pub duration_ms: u64,
    /// Faults asked for (`--crashes`, named before there were other faults than
    /// crashes).
    pub crashes: usize,
    /// Which faults (`--nemesis`).
    #[serde(default)]
    pub nemesis: NemesisKind,
    /// Shortest and longest pause or partition asked for (`--fault-ms`), in
    /// milliseconds.
    #[serde(default)]
    pub fault_ms: (u64, u64),
    /// `--gossip-delay` of the storage nodes, in milliseconds.
    pub gossip_delay_ms: u64,
    /// Seed of every random choice (workload and nemesis).
    pub seed: u64,
    /// Whether the storage nodes ran with the deliberate bug of `--break-acks`
    /// (writes acknowledged before the other replicas held them).
    #[serde(default)]
    pub break_acks: bool,
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
        let verdicts = || self.keys.iter().map(KeyLinearizability::effective);
        if verdicts().any(Verdict::is_violation) {
            "not linearizable"
        } else if verdicts().any(|v| matches!(v, Verdict::Inconclusive { .. })) {
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

impl CheckStatus {
    /// The status of a check that must hold: passed if it did, failed otherwise.
    fn must(holds: bool) -> Self {
        if holds {
            Self::Passed
        } else {
            Self::Failed
        }
    }
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

impl Check {
    fn new(name: impl Into<String>, status: CheckStatus, detail: String) -> Self {
        Self {
            name: name.into(),
            status,
            detail,
        }
    }
}

/// Everything a run reports. As JSON it is one `report` event (`"event":"report"`),
/// the one shape of every command's `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename = "report")]
pub struct Report {
    /// What the run was.
    pub settings: RunSettings,
    /// Operations by kind and result.
    pub operations: HistoryCounts,
    /// Faults injected, in order. Named `crashes` in the JSON, as in the reports of
    /// earlier versions (whose entries' `node` and `at_ns` the evaluation reads).
    #[serde(rename = "crashes")]
    pub faults: Vec<Fault>,
    /// Storage nodes lost at the end of the run (killed, or declared failed after a
    /// pause or partition): at most R − 1 may be.
    #[serde(default)]
    pub lost_nodes: Vec<String>,
    /// Checkers (1) and (4).
    pub lost_writes: LostWritesReport,
    /// Checker (2).
    pub linearizability: LinearizabilityReport,
    /// Checker (3).
    pub chains: ChainReport,
    /// Checker (5): keys left on nodes that are not their replicas.
    #[serde(default)]
    pub placement: PlacementReport,
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
        let l = &self.lost_writes;
        let mut lost_detail = format!(
            "{} of {} acknowledged writes lost (held {}, discarded by max_versions {}, \
             conflicting versions {})",
            l.lost, l.acknowledged, l.held, l.discarded_by_max_versions, l.conflicting
        );
        if !l.converged {
            lost_detail.push_str("; the cluster had not converged when checked");
        }
        if !l.unreadable_nodes.is_empty() {
            let unreadable = &l.unreadable_nodes;
            let _ = write!(lost_detail, "; unreadable live nodes: {unreadable:?}");
        }
        let acks = self.settings.write_acks;
        let mut checks = vec![if acks >= 2 {
            let name = format!("(1) no acknowledged write lost (--write-acks {acks})");
            Check::new(name, CheckStatus::must(l.lost == 0), lost_detail)
        } else {
            let name = "(4) acknowledged writes lost with --write-acks 1 (expected sometimes)";
            Check::new(name, CheckStatus::Reported, lost_detail)
        }];
        let keys = &self.linearizability.keys;
        let checked: usize = keys.iter().map(|k| k.operations).sum();
        let unknown: usize = keys.iter().map(|k| k.unknown).sum();
        let adjusted = keys
            .iter()
            .filter(|k| k.verdict_allowing_lost_writes.is_some())
            .count();
        let summary = self.linearizability.summary();
        let mut detail = format!(
            "{summary}: {} keys, {checked} writes/CAS ({unknown} of unknown outcome)",
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
            let name = &key.key;
            let _ = match key.effective() {
                Verdict::Linearizable => Ok(()),
                Verdict::NotLinearizable {
                    blocked_op,
                    longest_prefix,
                } => write!(
                    detail,
                    "; key {name}: operation #{blocked_op} cannot be placed (after \
                     {longest_prefix} linearized)"
                ),
                Verdict::Inconclusive { reason } => write!(detail, "; key {name}: {reason}"),
            };
        }
        let status = match summary {
            "linearizable" => CheckStatus::Passed,
            "inconclusive" => CheckStatus::Inconclusive,
            _ => CheckStatus::Failed,
        };
        let name = "(2) per-key linearizability of writes and CAS";
        checks.push(Check::new(name, status, detail));
        let chains = &self.chains;
        let detail = std::iter::once(chains.summary())
            .chain(chains.violations.iter().cloned())
            .collect::<Vec<_>>()
            .join("; ");
        let name = "(3) chains complete with consistent reads or fail clearly; none hangs";
        checks.push(Check::new(name, CheckStatus::must(chains.holds()), detail));
        let placement = &self.placement;
        let mut detail = format!(
            "{} of {} keys held by a node that is not one of their replicas",
            placement.misplaced, placement.keys
        );
        for example in &placement.examples {
            let _ = write!(detail, "; {example}");
        }
        checks.push(Check::new(
            "(5) at rest every key is held by its replicas only",
            CheckStatus::must(placement.misplaced == 0),
            detail,
        ));
        let confirmed = self
            .faults
            .iter()
            .filter(|f| f.confirmed && f.error.is_none())
            .count();
        let planned = self.settings.crashes;
        let mut detail = format!(
            "{confirmed} of {planned} planned faults ({}) injected and confirmed",
            self.settings.nemesis
        );
        for fault in &self.faults {
            if let Some(error) = &fault.error {
                let kind = serde_name(&fault.kind);
                let _ = write!(detail, "; {kind} {}: {error}", fault.node);
            }
        }
        let injected = confirmed == self.faults.len() && confirmed == planned;
        checks.push(Check::new(
            "faults injected as planned",
            CheckStatus::must(injected),
            detail,
        ));
        let budget = self.settings.replication_factor.saturating_sub(1);
        let lost_nodes = &self.lost_nodes;
        checks.push(Check::new(
            format!("at most R - 1 = {budget} storage nodes lost"),
            CheckStatus::must(lost_nodes.len() <= budget),
            format!(
                "{} lost (killed, or declared failed by the others){}{}",
                lost_nodes.len(),
                if lost_nodes.is_empty() { "" } else { ": " },
                lost_nodes.join(", ")
            ),
        ));
        self.passed = checks.iter().all(|c| c.status != CheckStatus::Failed);
        self.checks = checks;
    }

    /// The report as text, for a terminal.
    pub fn to_text(&self) -> String {
        let (s, o) = (&self.settings, &self.operations);
        let (l, c) = (&self.lost_writes, &self.chains);
        let mut out = String::new();
        let duration = s.duration_ms as f64 / 1000.0;
        let _ = writeln!(
            out,
            "dida faults: {} storage nodes (R={}, --write-acks {}, --max-versions {}, \
             --gossip-delay {}), {} workers; {} {}clients on {} keys, {} chain clients; \
             {duration:.1} s; seed {}",
            s.nodes,
            s.replication_factor,
            s.write_acks,
            s.max_versions,
            s.gossip_delay_ms,
            s.workers,
            s.clients,
            match s.client_protocol.as_str() {
                "" => String::new(),
                protocol => format!("{protocol} "),
            },
            s.keys,
            s.chain_clients,
            s.seed
        );
        if s.break_acks {
            out.push_str(
                "             --break-acks: the storage nodes acknowledged writes before the \
                 other replicas held them (a deliberate bug)\n",
            );
        }
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
        let injected = self.faults.len();
        let _ = write!(
            out,
            "faults       {injected} injected (--nemesis {})",
            s.nemesis
        );
        if !self.lost_nodes.is_empty() {
            let _ = write!(out, "; nodes lost: {}", self.lost_nodes.join(", "));
        }
        out.push('\n');
        for fault in &self.faults {
            let _ = writeln!(out, "             {}", describe(fault));
        }
        let live = l.live_nodes.join(",");
        let converged = if l.converged {
            "converged"
        } else {
            "NOT converged"
        };
        let convergence = l.convergence_ms as f64 / 1000.0;
        let _ = writeln!(
            out,
            "lost writes  {} of {} acknowledged (held {}, discarded by max_versions {}); \
             live nodes {live}; {converged} in {convergence:.1} s",
            l.lost, l.acknowledged, l.held, l.discarded_by_max_versions
        );
        for example in l.examples.iter().take(5) {
            let acked = example.acked_ns as f64 / 1e9;
            let _ = writeln!(
                out,
                "             lost: op #{} {}={} @{} acknowledged at {acked:.2} s",
                example.op, example.key, example.value, example.version
            );
        }
        let keys = &self.linearizability.keys;
        let slowest = keys.iter().map(|k| k.check_ms).max().unwrap_or(0);
        let (summary, count) = (self.linearizability.summary(), keys.len());
        let _ = writeln!(
            out,
            "histories    {summary} ({count} keys; slowest check {slowest} ms)"
        );
        let _ = writeln!(out, "chains       {}", c.summary());
        for (kind, count) in &c.failure_kinds {
            let _ = writeln!(out, "             {count}× {kind}");
        }
        out.push_str("checks\n");
        for check in &self.checks {
            let status = match check.status {
                CheckStatus::Passed => "pass",
                CheckStatus::Failed => "FAIL",
                CheckStatus::Inconclusive => "????",
                CheckStatus::Reported => "info",
            };
            let _ = writeln!(
                out,
                "  [{status}] {}\n         {}",
                check.name, check.detail
            );
        }
        let result = if self.passed { "PASS" } else { "FAIL" };
        let elapsed = self.elapsed_ms as f64 / 1000.0;
        let _ = writeln!(out, "result: {result} ({elapsed:.1} s in all)");
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

/// The name serde gives a unit variant (`kill`, `re-replicated`, …), so that text
/// output spells a kind as the JSON does without a second list of names to keep.
pub fn serde_name(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

/// One line about one fault: what, whom, when, and what became of the target.
fn describe(fault: &Fault) -> String {
    let mut line = serde_name(&fault.kind);
    let at = fault.at_ns as f64 / 1e9;
    if fault.node.is_empty() {
        // Skipped before a target was drawn (the fault budget was spent).
        let error = fault.error.as_deref().unwrap_or("no target");
        return format!("{line} at {at:.1} s not injected: {error}");
    }
    if let Some(shape) = fault.shape {
        // `one_way` in the JSON, `one-way` for people.
        let _ = write!(line, " ({})", serde_name(&shape).replace('_', "-"));
    }
    let _ = write!(line, " {}", fault.node);
    if !fault.cuts.is_empty() {
        let _ = write!(line, " [{}]", fault.cut_links().join(" "));
    }
    let _ = write!(line, " at {at:.1} s");
    if let Some(end) = fault.end_ns {
        let length = end.saturating_sub(fault.at_ns) as f64 / 1e9;
        let _ = write!(line, " until {:.1} s ({length:.1} s)", end as f64 / 1e9);
    }
    let _ = write!(
        line,
        ", primary of {}",
        or(&fault.led_keys, " ", "none of the keys")
    );
    if !fault.confirmed {
        line.push_str(", NOT confirmed");
    }
    if fault.kind != FaultKind::Kill {
        if fault.lost {
            let by = or(&fault.declared_failed_by, ",", "-");
            let _ = write!(line, "; declared failed by {by}");
        } else if !fault.declared_during.is_empty() {
            let by = fault.declared_during.join(",");
            let _ = write!(line, "; declared failed by {by} while down, rejoined");
        } else {
            line.push_str("; survived (not declared failed)");
        }
        match fault.fenced {
            Some(true) => line.push_str(", fenced"),
            Some(false) if fault.lost => line.push_str(", NOT fenced (still serving)"),
            Some(false) => {}
            None => line.push_str(", status unknown"),
        }
    }
    if let Some(error) = &fault.error {
        let _ = write!(line, "; error: {error}");
    }
    line
}

/// `items` joined by `separator`, or `none` when there are none.
fn or(items: &[String], separator: &str, none: &str) -> String {
    if items.is_empty() {
        none.to_string()
    } else {
        items.join(separator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PartitionShape;

    fn report(write_acks: usize) -> Report {
        let kill = Fault::new(
            FaultKind::Kill,
            "s2".into(),
            1_000_000_000,
            vec!["k0".into()],
        );
        Report {
            settings: RunSettings {
                write_acks,
                crashes: 1,
                replication_factor: 3,
                ..RunSettings::default()
            },
            operations: HistoryCounts::default(),
            faults: vec![Fault {
                confirmed: true,
                declared_failed_by: vec!["s1".into()],
                lost: true,
                ..kill
            }],
            lost_nodes: vec!["s2".into()],
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
            placement: PlacementReport::default(),
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
        run.faults[0].confirmed = false;
        run.judge();
        assert!(!run.passed);
    }

    #[test]
    fn more_lost_nodes_than_the_budget_fail_the_run() {
        let mut run = report(2);
        run.lost_writes.lost = 0;
        run.judge();
        assert!(run.passed, "{}", run.to_text());
        run.lost_nodes = vec!["s1".into(), "s2".into(), "s3".into()];
        run.judge();
        assert!(!run.passed);
    }

    #[test]
    fn a_pause_and_a_partition_are_described_with_start_end_and_fate() {
        let mut run = report(2);
        run.faults = vec![
            Fault {
                kind: FaultKind::Pause,
                end_ns: Some(3_500_000_000),
                fenced: Some(true),
                ..run.faults[0].clone()
            },
            Fault {
                kind: FaultKind::Partition,
                node: "s3".into(),
                shape: Some(PartitionShape::OneWay),
                cuts: vec![["s3".into(), "s4".into()]],
                end_ns: Some(2_000_000_000),
                lost: false,
                declared_failed_by: Vec::new(),
                fenced: Some(false),
                ..run.faults[0].clone()
            },
        ];
        run.judge();
        let text = run.to_text();
        assert!(
            text.contains("pause s2 at 1.0 s until 3.5 s (2.5 s)") && text.contains("fenced"),
            "{text}"
        );
        assert!(
            text.contains("partition (one-way) s3 [s3->s4] at 1.0 s until 2.0 s")
                && text.contains("survived"),
            "{text}"
        );
    }

    #[test]
    fn the_json_report_parses_back() {
        let mut run = report(2);
        run.judge();
        let parsed: Report = serde_json::from_str(&run.to_json()).unwrap();
        assert_eq!(parsed, run);
    }
}
