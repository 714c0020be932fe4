//! `dida faults` as a user runs it: the fault-injection suite in short form.
//!
//! Every operation is recorded with a result, the crash really killed a node, no
//! acknowledged write is lost with `--write-acks 2` (one crash, and two crashes one
//! after the other), each key's history is linearizable, no chain hangs, and once the
//! next replica has taken over a crashed primary's keys (SPEC §2.5) every write
//! succeeds again. The pause and partition nemeses: each fault is reported with its
//! start and end and what became of its target, and the checks still hold.

use std::path::Path;
use std::process::{Command, Output};

use dida_verify::history::{OpKind, OpResult, Operation};
use dida_verify::plan::{FaultKind, PartitionShape};
use dida_verify::report::CheckStatus;
use dida_verify::timeline::{MarkEvent, TimelineLine};
use dida_verify::Report;

fn dida() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_dida"))
}

/// Runs `dida faults --json --history FILE ARGS…`; returns the process output, the
/// report and the history.
fn faults(args: &[&str]) -> (Output, Report, Vec<Operation>) {
    let (output, report, history, _timeline) = faults_with_timeline(args);
    (output, report, history)
}

/// Runs `dida faults --json --history FILE --timeline FILE ARGS…`; returns the
/// process output, the report, the history and the timeline.
fn faults_with_timeline(args: &[&str]) -> (Output, Report, Vec<Operation>, Vec<TimelineLine>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let history_path = dir.path().join("history.jsonl");
    let timeline_path = dir.path().join("timeline.jsonl");
    let output = Command::new(dida())
        .args(["faults", "--json", "--history"])
        .arg(&history_path)
        .arg("--timeline")
        .arg(&timeline_path)
        .args(args)
        .output()
        .expect("run dida faults");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The report is the first JSON value; a failed run's `--json` error event follows.
    let first = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Report>()
        .next()
        .unwrap_or_else(|| serde_json::from_str::<Report>(""));
    let report: Report = first.unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let history = std::fs::read_to_string(&history_path)
        .expect("history file")
        .lines()
        .map(|line| serde_json::from_str(line).expect("history line"))
        .collect();
    let timeline = std::fs::read_to_string(&timeline_path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("timeline line"))
        .collect();
    (output, report, history, timeline)
}

fn check_status(report: &Report, prefix: &str) -> CheckStatus {
    report
        .checks
        .iter()
        .find(|c| c.name.starts_with(prefix))
        .unwrap_or_else(|| panic!("no check {prefix} in {:#?}", report.checks))
        .status
}

fn is_storage_write(op: &Operation) -> bool {
    matches!(op.kind, OpKind::Write { .. } | OpKind::Cas { .. })
}

#[test]
fn a_short_run_with_one_crash_records_everything_and_its_checkers_hold() {
    let (output, report, history, timeline) = faults_with_timeline(&[
        "--duration",
        "4",
        "--crashes",
        "1",
        "--write-acks",
        "2",
        "--clients",
        "4",
        "--keys",
        "3",
        "--seed",
        "7",
    ]);
    let text = format!(
        "{report:#?}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The crash happened and really killed a storage process.
    assert_eq!(report.faults.len(), 1, "{text}");
    assert!(report.faults[0].confirmed, "{text}");
    assert!(report.lost_writes.live_nodes.len() == 4, "{text}");
    assert!(!report
        .lost_writes
        .live_nodes
        .contains(&report.faults[0].node));

    // Every operation is in the history, with a result and sane times.
    let counts = &report.operations;
    assert!(counts.attempted > 0 && counts.acknowledged > 0, "{text}");
    assert_eq!(counts.without_result, 0, "{text}");
    assert_eq!(
        history.len() as u64,
        counts.attempted + counts.chains,
        "{text}"
    );
    for op in &history {
        assert!(op.completed_ns >= op.invoked_ns, "{op:?}");
    }

    // (1) with --write-acks 2 and one crash, no acknowledged write is lost.
    assert!(report.lost_writes.acknowledged >= counts.acknowledged);
    assert_eq!(report.lost_writes.lost, 0, "{text}");
    assert_eq!(check_status(&report, "(1)"), CheckStatus::Passed, "{text}");

    // (2) every key's history of writes and CAS is linearizable.
    assert_eq!(report.linearizability.keys.len(), 3, "{text}");
    assert_eq!(report.linearizability.summary(), "linearizable", "{text}");

    // (3) chains ran, and none hung or read inconsistently.
    assert!(report.chains.submitted > 0, "{text}");
    assert_eq!(report.chains.hung, 0, "{text}");
    assert_eq!(report.chains.inconsistent, 0, "{text}");

    assert!(report.passed, "{text}");
    assert!(output.status.success(), "{text}");

    // The timeline: what ran, every operation in a bucket, and the crash marked —
    // killed, then detected by a live node (then, usually, re-replicated).
    let Some(TimelineLine::Setup(setup)) = timeline.first() else {
        panic!("the timeline does not start with its setup: {timeline:?}\n{text}");
    };
    assert_eq!(setup.settings.replication_factor, 3);
    assert_eq!(setup.settings.write_acks, 2);
    let buckets: Vec<_> = timeline
        .iter()
        .filter_map(|line| match line {
            TimelineLine::Bucket(bucket) => Some(bucket),
            _ => None,
        })
        .collect();
    assert!(
        buckets.len() >= 40,
        "a 4 s run has 40 buckets: {timeline:?}"
    );
    for (i, bucket) in buckets.iter().enumerate() {
        assert_eq!(bucket.t_ms, i as u64 * setup.bucket_ms);
    }
    let bucketed: u64 = buckets.iter().map(|b| b.ok + b.errors).sum();
    assert_eq!(bucketed, history.len() as u64);
    let marks: Vec<_> = timeline
        .iter()
        .filter_map(|line| match line {
            TimelineLine::Mark(mark) => Some(mark),
            _ => None,
        })
        .collect();
    let victim = &report.faults[0].node;
    let position = |event| {
        marks
            .iter()
            .position(|m| m.what == event && &m.node == victim)
            .unwrap_or_else(|| panic!("no {event:?} mark for {victim}: {marks:?}\n{text}"))
    };
    let (kill, detected) = (position(MarkEvent::Kill), position(MarkEvent::Detected));
    assert!(kill < detected, "{marks:?}");
    assert!(marks[kill].t_ms <= marks[detected].t_ms, "{marks:?}");
    let by = marks[detected].by.as_deref().expect("detected by a node");
    assert!(by != victim && setup.node_ids.iter().any(|n| n == by));
    if let Some(repaired) = marks
        .iter()
        .position(|m| m.what == MarkEvent::ReReplicated && &m.node == victim)
    {
        assert!(detected < repaired, "{marks:?}");
    }
}

#[test]
fn the_course_mode_reports_lost_writes_without_failing_on_them() {
    let (output, report, _history) = faults(&[
        "--duration",
        "3",
        "--crashes",
        "1",
        "--write-acks",
        "1",
        "--chain-clients",
        "0",
        "--seed",
        "11",
    ]);
    let text = format!(
        "{report:#?}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lost = &report.lost_writes;
    assert_eq!(
        lost.held + lost.discarded_by_max_versions + lost.lost,
        lost.acknowledged,
        "{text}"
    );
    // (4) is reported, never a failure; (1) does not apply.
    assert_eq!(
        check_status(&report, "(4)"),
        CheckStatus::Reported,
        "{text}"
    );
    assert!(!report.checks.iter().any(|c| c.name.starts_with("(1)")));
    assert_eq!(report.chains.submitted, 0);
    assert_eq!(report.settings.workers, 0);
    assert!(output.status.success(), "{text}");
}

#[test]
fn more_crashes_than_the_replication_factor_allows_are_refused() {
    let output = Command::new(dida())
        .args(["faults", "--crashes", "3"])
        .output()
        .expect("run dida faults");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("at most R - 1 = 2"), "{stderr}");
}

/// Takeover (SPEC §2.5): once the next replica leads the killed node's keys, writes
/// of every key succeed again.
#[test]
fn writes_succeed_after_the_crash_once_the_next_replica_takes_over() {
    let (output, report, history) = faults(&[
        "--duration",
        "20",
        "--crashes",
        "1",
        "--write-acks",
        "2",
        "--chain-clients",
        "0",
        "--keys",
        "5",
        "--seed",
        "13",
    ]);
    let text = format!(
        "{report:#?}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    // Give the cluster 3 s to detect the crash and hand the keys over.
    let settled = report.faults[0].at_ns + 3_000_000_000;
    let after: Vec<&Operation> = history
        .iter()
        .filter(|op| is_storage_write(op) && op.invoked_ns >= settled)
        .collect();
    assert!(!after.is_empty(), "{text}");
    for op in &after {
        assert!(
            !matches!(
                op.result,
                OpResult::Failed { .. } | OpResult::Unknown { .. }
            ),
            "a write failed well after the crash: {op:?}"
        );
    }
    for key in ["k0", "k1", "k2", "k3", "k4"] {
        assert!(
            after
                .iter()
                .any(|op| op.key == key && op.acknowledged_write().is_some()),
            "no write of {key} acknowledged after the crash\n{text}"
        );
    }
}

/// Re-replication (SPEC §2.5): with two crashes and `--write-acks 2`, a write held
/// by exactly the two killed nodes would be lost unless the replication factor was
/// restored between the crashes.
#[test]
fn no_acknowledged_write_is_lost_with_two_crashes_and_write_acks_2() {
    let (output, report, _history) = faults(&[
        "--duration",
        "20",
        "--crashes",
        "2",
        "--write-acks",
        "2",
        "--seed",
        "17",
    ]);
    let text = format!(
        "{report:#?}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(report.faults.len(), 2, "{text}");
    assert_eq!(report.lost_writes.lost, 0, "{text}");
    assert_eq!(report.chains.hung, 0, "{text}");
    assert!(output.status.success(), "{text}");
}

/// The second deliberate bug (after the simulator's fence): storage nodes that
/// acknowledge a `--write-acks 2` write before the second copy is held lose
/// acknowledged writes when a primary is killed, and the suite says so. The gossip
/// delay keeps each such write on its primary alone for 300 ms.
#[test]
fn writes_acknowledged_before_their_second_copy_are_caught_as_lost() {
    let (output, report, _history) = faults(&[
        "--duration",
        "3",
        "--crashes",
        "1",
        "--write-acks",
        "2",
        "--chain-clients",
        "0",
        "--gossip-delay",
        "300",
        "--break-acks",
        "--seed",
        "11",
    ]);
    let text = format!(
        "{report:#?}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.settings.break_acks, "{text}");
    assert!(report.lost_writes.lost > 0, "{text}");
    assert_eq!(check_status(&report, "(1)"), CheckStatus::Failed, "{text}");
    assert!(!output.status.success(), "{text}");
}

/// The report's account of one pause or partition is complete and consistent: a
/// start and a later end, confirmed, and a fate that agrees with the survivors'
/// statuses (a target declared failed is lost, and fenced once it heard of it; one
/// not declared is not lost).
fn assert_fault_accounted(report: &Report, kind: FaultKind, text: &str) {
    assert_eq!(report.faults.len(), report.settings.crashes, "{text}");
    for fault in &report.faults {
        assert_eq!(fault.kind, kind, "{text}");
        assert!(
            fault.confirmed && fault.error.is_none(),
            "{fault:?}\n{text}"
        );
        let end = fault.end_ns.unwrap_or_else(|| panic!("no end: {fault:?}"));
        assert!(end > fault.at_ns, "{fault:?}");
        // The fault ends before the last fifth of the run.
        assert!(
            end <= report.settings.duration_ms * 800_000 + 500_000_000,
            "{fault:?}"
        );
        assert_eq!(
            fault.lost,
            report.lost_nodes.contains(&fault.node),
            "{text}"
        );
        if fault.lost {
            assert!(!fault.declared_failed_by.is_empty(), "{fault:?}\n{text}");
            assert!(
                !report.lost_writes.live_nodes.contains(&fault.node),
                "{text}"
            );
        } else {
            assert!(
                report.lost_writes.live_nodes.contains(&fault.node),
                "{text}"
            );
        }
    }
    assert!(report.lost_nodes.len() <= 2, "{text}");
}

/// A pause long enough to be declared failed (4.5 s; a silent node is declared
/// 2.3 to 3.5 s after it stops answering) and the run's checks with
/// `--write-acks 2`.
#[test]
fn a_paused_node_is_reported_with_its_pause_and_resume_and_the_checks_hold() {
    let (output, report, _history, timeline) = faults_with_timeline(&[
        "--nemesis",
        "pause",
        "--fault-ms",
        "4500-4500",
        "--duration",
        "9",
        "--crashes",
        "1",
        "--write-acks",
        "2",
        "--clients",
        "4",
        "--keys",
        "3",
        "--seed",
        "21",
    ]);
    let text = format!(
        "{report:#?}\n{}\nstderr: {}",
        report.to_text(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_fault_accounted(&report, FaultKind::Pause, &text);
    let pause = &report.faults[0];
    if pause.lost {
        // It resumed and heard from its peers that it had been declared failed.
        assert_eq!(pause.fenced, Some(true), "{text}");
    }
    let marks: Vec<_> = timeline
        .iter()
        .filter_map(|line| match line {
            TimelineLine::Mark(mark) => Some(mark),
            _ => None,
        })
        .collect();
    for event in [MarkEvent::Pause, MarkEvent::Resume] {
        assert!(
            marks
                .iter()
                .any(|m| m.what == event && m.node == pause.node),
            "no {event:?} mark: {marks:?}"
        );
    }
    assert_eq!(report.lost_writes.lost, 0, "{text}");
    assert_eq!(report.linearizability.summary(), "linearizable", "{text}");
    assert_eq!(report.chains.hung, 0, "{text}");
    assert!(report.passed, "{text}");
    assert!(output.status.success(), "{text}");
}

/// Partitions through the suite's proxies, and the run's checks with
/// `--write-acks 2`. With this seed: a one-way cut, then an isolation, both shorter
/// than the detection time (see the next test for a longer isolation).
#[test]
fn a_partition_is_reported_with_its_cuts_and_heal_and_the_checks_hold() {
    let (output, report, _history) = faults(&[
        "--nemesis",
        "partition",
        "--fault-ms",
        "1000-3000",
        "--duration",
        "8",
        "--crashes",
        "2",
        "--write-acks",
        "2",
        "--chain-clients",
        "0",
        "--clients",
        "4",
        "--keys",
        "3",
        "--seed",
        "24",
    ]);
    let text = format!(
        "{report:#?}\n{}\nstderr: {}",
        report.to_text(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_fault_accounted(&report, FaultKind::Partition, &text);
    for fault in &report.faults {
        let shape = fault.shape.unwrap_or_else(|| panic!("no shape: {fault:?}"));
        assert!(!fault.cuts.is_empty(), "{fault:?}");
        // Every cut involves the target; an isolation cuts it both ways from all.
        for [from, to] in &fault.cuts {
            assert!(from == &fault.node || to == &fault.node, "{fault:?}");
        }
        if shape == PartitionShape::Isolate {
            assert_eq!(
                fault.cuts.len(),
                2 * (report.settings.nodes - 1),
                "{fault:?}"
            );
        }
    }
    assert_eq!(report.lost_writes.lost, 0, "{text}");
    assert_eq!(report.linearizability.summary(), "linearizable", "{text}");
    assert!(report.passed, "{text}");
    assert!(output.status.success(), "{text}");
}

/// A node isolated for longer than the detection time (seed 3: s5 for 5 s). Before
/// the detector's majority rule the isolated node declared its four peers failed,
/// kept serving the clients that still routed to it and acknowledged writes with
/// `--write-acks 2` that the majority never saw (a run lost 487 of 2 708
/// acknowledged writes), and after the heal it was never fenced. Now it declares no
/// one, cannot gather acknowledgements, and is fenced once the partition heals.
#[test]
fn an_isolated_node_declared_failed_loses_no_acknowledged_write() {
    let (output, report, _history) = faults(&[
        "--nemesis",
        "partition",
        "--fault-ms",
        "5000-5000",
        "--duration",
        "12",
        "--crashes",
        "1",
        "--write-acks",
        "2",
        "--chain-clients",
        "0",
        "--clients",
        "4",
        "--keys",
        "3",
        "--seed",
        "3",
    ]);
    let text = format!(
        "{}\nstderr: {}",
        report.to_text(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_fault_accounted(&report, FaultKind::Partition, &text);
    assert_eq!(report.lost_writes.lost, 0, "{text}");
    assert!(report.passed, "{text}");
}

/// The kill and restart marks of every fault of `report` in `timeline`.
fn assert_restart_marks(report: &Report, timeline: &[TimelineLine], text: &str) {
    let marks: Vec<_> = timeline
        .iter()
        .filter_map(|line| match line {
            TimelineLine::Mark(mark) => Some(mark),
            _ => None,
        })
        .collect();
    for fault in &report.faults {
        for event in [MarkEvent::Kill, MarkEvent::Restart] {
            assert!(
                marks
                    .iter()
                    .any(|m| m.what == event && m.node == fault.node),
                "no {event:?} mark for {}: {marks:?}\n{text}",
                fault.node
            );
        }
    }
}

/// The restart nemesis kills a node and starts it again with the same flags after
/// the drawn time (here 300 ms: back before its peers can declare it failed, which
/// works without rejoin). Whether the checks hold with a node that comes back empty
/// is the rejoin protocol's business (the next test); this one checks the fault.
#[test]
fn a_restarted_node_is_reported_with_its_kill_and_restart() {
    let (output, report, _history, timeline) = faults_with_timeline(&[
        "--nemesis",
        "restart",
        "--fault-ms",
        "300-300",
        "--duration",
        "6",
        "--crashes",
        "1",
        "--clients",
        "4",
        "--keys",
        "3",
        "--chain-clients",
        "0",
        "--seed",
        "23",
    ]);
    let text = format!(
        "{report:#?}\n{}\nstderr: {}",
        report.to_text(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(report.faults.len(), 1, "{text}");
    let fault = &report.faults[0];
    assert_eq!(fault.kind, FaultKind::Restart, "{text}");
    assert!(fault.confirmed && fault.error.is_none(), "{text}");
    let end = fault.end_ns.expect("a restart has an end");
    assert!(end >= fault.at_ns + 300_000_000, "down for 300 ms: {text}");
    assert!(
        report.lost_writes.live_nodes.contains(&fault.node) || fault.lost,
        "a restarted node is read unless it was lost: {text}"
    );
    assert_restart_marks(&report, &timeline, &text);
    assert!(report.to_text().contains("restart"), "{text}");
}

/// Restarts whose node stays down past detection (3.5 to 4.5 s), and the run's
/// checks with `--write-acks 2`: the node must rejoin and catch up.
#[test]
fn restarted_nodes_rejoin_and_no_acknowledged_write_is_lost() {
    let (output, report, _history, timeline) = faults_with_timeline(&[
        "--nemesis",
        "restart",
        "--fault-ms",
        "3500-4500",
        "--duration",
        "20",
        "--crashes",
        "2",
        "--write-acks",
        "2",
        "--seed",
        "29",
    ]);
    let text = format!(
        "{report:#?}\n{}\nstderr: {}",
        report.to_text(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(report.faults.len(), 2, "{text}");
    for fault in &report.faults {
        assert_eq!(fault.kind, FaultKind::Restart, "{text}");
        assert!(fault.confirmed && fault.error.is_none(), "{text}");
        assert!(!fault.lost, "the node rejoined: {text}");
        assert_eq!(fault.fenced, Some(false), "{text}");
    }
    assert!(report.lost_nodes.is_empty(), "{text}");
    assert_restart_marks(&report, &timeline, &text);
    assert_eq!(report.lost_writes.lost, 0, "{text}");
    assert_eq!(report.linearizability.summary(), "linearizable", "{text}");
    assert_eq!(report.chains.hung, 0, "{text}");
    assert!(report.passed, "{text}");
    assert!(output.status.success(), "{text}");
}

/// A rolling restart of all five nodes while the clients run: every node restarted
/// once, back and not fenced, no acknowledged write lost, every key linearizable.
#[test]
fn a_rolling_restart_of_every_node_loses_no_acknowledged_write() {
    let (output, report, _history, timeline) = faults_with_timeline(&[
        "--nemesis",
        "rolling-restart",
        "--duration",
        "30",
        "--write-acks",
        "2",
        "--seed",
        "31",
    ]);
    let text = format!(
        "{report:#?}\n{}\nstderr: {}",
        report.to_text(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(report.settings.crashes, 5, "one restart per node: {text}");
    let restarted: Vec<&str> = report.faults.iter().map(|f| f.node.as_str()).collect();
    assert_eq!(restarted, ["s1", "s2", "s3", "s4", "s5"], "{text}");
    for fault in &report.faults {
        assert_eq!(fault.kind, FaultKind::Restart, "{text}");
        assert!(fault.confirmed && fault.error.is_none(), "{text}");
        assert!(!fault.lost, "{text}");
    }
    assert!(report.lost_nodes.is_empty(), "{text}");
    assert_restart_marks(&report, &timeline, &text);
    assert_eq!(report.lost_writes.lost, 0, "{text}");
    assert_eq!(report.linearizability.summary(), "linearizable", "{text}");
    assert_eq!(report.chains.hung, 0, "{text}");
    assert!(report.passed, "{text}");
    assert!(output.status.success(), "{text}");
}

/// The fault suite over mutual TLS: every node, the scheduler, the workers and the
/// suite's own clients present certificates from `dida certs`, and the checks hold
/// through a crash as they do in plaintext.
#[test]
fn the_suite_runs_over_mutual_tls_and_its_checks_hold() {
    let certs = tempfile::tempdir().expect("temporary directory");
    let made = Command::new(dida())
        .args(["certs", "--out"])
        .arg(certs.path())
        .args(["--storage", "s1,s2,s3,s4,s5", "--workers", "w1,w2,w3"])
        .output()
        .expect("run dida certs");
    assert!(made.status.success(), "{made:?}");
    let dir = certs.path().to_string_lossy().into_owned();
    let (output, report, _history) = faults(&[
        "--tls-dir",
        &dir,
        "--duration",
        "6",
        "--crashes",
        "1",
        "--write-acks",
        "2",
        "--seed",
        "11",
    ]);
    let text = format!(
        "{report:#?}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(report.faults[0].confirmed, "{text}");
    assert!(report.operations.acknowledged > 0, "{text}");
    assert!(report.operations.chains > 0, "{text}");
    assert_eq!(check_status(&report, "(1)"), CheckStatus::Passed, "{text}");
}

/// The same checks with clients that speak the Redis protocol (issue 28): each
/// client talks to one node's RESP port through the `redis` client library and
/// moves to the next node when a call fails. Under a SIGKILL and under a pause, no
/// acknowledged write is lost with `--write-acks 2` and every key's history of
/// `DIDA.SET`, `DIDA.CAS` and `DIDA.GET` is linearizable.
#[test]
fn resp_clients_lose_nothing_and_stay_linearizable_under_kill_and_pause() {
    for (nemesis, seed) in [("kill", "31"), ("pause", "32")] {
        let (output, report, history) = faults(&[
            "--client",
            "resp",
            "--nemesis",
            nemesis,
            "--fault-ms",
            "3000-3000",
            "--duration",
            "8",
            "--crashes",
            "1",
            "--write-acks",
            "2",
            "--chain-clients",
            "0",
            "--keys",
            "3",
            "--seed",
            seed,
        ]);
        let text = format!(
            "{}\nstderr: {}",
            report.to_text(),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{nemesis}: {text}");
        assert!(report.passed, "{nemesis}: {text}");
        assert_eq!(report.settings.client_protocol, "resp", "{text}");
        assert!(text.contains("resp clients"), "{text}");
        assert_eq!(report.faults.len(), 1, "{nemesis}: {text}");
        assert!(
            history.iter().filter(|op| is_storage_write(op)).count() > 100,
            "{nemesis}: too few writes went through RESP: {text}"
        );
        for check in ["(1)", "(2)"] {
            assert_eq!(
                check_status(&report, check),
                CheckStatus::Passed,
                "{nemesis}: {text}"
            );
        }
    }
}
