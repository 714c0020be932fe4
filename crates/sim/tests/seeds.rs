//! The simulator in the test suite: a seed replays event for event, a range of
//! seeds passes every check with each nemesis of the rotation in its share of
//! them (a leave or joins among the others), and the
//! protocol with its fence (invariant D2) turned off is caught.
//!
//! `DIDA_SIM_SEEDS` sets how many seeds the passing test runs (default 200, about
//! a minute in a debug build on two cores); `dida sim --seeds 500` runs the full
//! set in a release build in about 20 s.

use dida_sim::many::{run_seeds, summarize};
use dida_sim::{run_seed, SimConfig};
use dida_verify::plan::{FaultKind, NemesisKind};

fn seeds_wanted() -> u64 {
    std::env::var("DIDA_SIM_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200)
}

#[test]
fn a_seed_replays_event_for_event() {
    let config = SimConfig::default();
    for seed in [3, 6] {
        let first = run_seed(seed, &config).unwrap();
        let again = run_seed(seed, &config).unwrap();
        assert!(first.events > 1000, "{} events", first.events);
        assert!(!first.faults.is_empty());
        assert_eq!(
            (first.events, first.fingerprint),
            (again.events, again.fingerprint),
            "seed {seed} ran differently twice"
        );
    }
}

#[test]
fn every_seed_passes_every_check_under_every_nemesis() {
    let count = seeds_wanted();
    let reports = run_seeds(0, count, &SimConfig::default(), &|_| {}).unwrap();
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| format!("seed {}: {:?}", r.seed, r.findings))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    let summary = summarize(&reports);
    let kinds = NemesisKind::ROTATION.len() as u64;
    assert_eq!(
        summary.len() as u64,
        kinds,
        "every nemesis ran: {summary:?}"
    );
    for (kind, sum) in &summary {
        assert!(
            (count / kinds..=count.div_ceil(kinds)).contains(&sum.seeds),
            "{kind} ran in its share of the seeds: {sum:?}"
        );
        assert!(sum.faults >= sum.seeds, "{kind}: at least one fault a seed");
        assert!(sum.peak_lost > 0, "{kind} lost some node");
        assert!(
            sum.beyond_tolerance * 10 < sum.seeds,
            "{kind}: most seeds stay within the fault budget: {sum:?}"
        );
    }
    let acknowledged: usize = reports.iter().map(|r| r.acknowledged).sum();
    assert!(
        acknowledged > 100 * count as usize,
        "{acknowledged} acknowledged writes"
    );
}

/// The detector probes a subset of the peers each period (SWIM). With 5 nodes and
/// the default fan-out of 3 that subset is nearly everyone, so a quarter as many
/// seeds run with a fan-out of 1: the round-robin, the majority of nodes *heard
/// from* and the spread of news by the probes alone must still pass every check.
#[test]
fn every_seed_passes_every_check_with_a_probe_fanout_of_one() {
    let count = seeds_wanted() / 4;
    let config = SimConfig {
        probe_fanout: Some(1),
        ..SimConfig::default()
    };
    let reports = run_seeds(0, count, &config, &|_| {}).unwrap();
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| format!("seed {}: {:?}", r.seed, r.findings))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    for (kind, sum) in summarize(&reports) {
        assert!(sum.peak_lost > 0, "{kind} lost some node: {sum:?}");
    }
}

/// Runs `count` seeds with a deliberate bug (`broken`), asserts that some fail, and
/// that each of those passes once the bug is fixed (`fixed`): the bug, not the seed,
/// made the difference.
fn caught_and_only_with_the_bug(broken: SimConfig, fixed: SimConfig, count: u64) {
    let reports = run_seeds(0, count, &broken, &|_| {}).unwrap();
    let caught: Vec<u64> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.seed)
        .collect();
    assert!(
        !caught.is_empty(),
        "{count} seeds of {broken:?} and no check failed"
    );
    for seed in caught {
        let report = run_seed(seed, &fixed).unwrap();
        assert!(
            report.passed(),
            "seed {seed} fails without the bug too: {:?}",
            report.findings
        );
    }
}

#[test]
fn without_the_fence_partitions_lose_acknowledged_writes_or_linearizability() {
    let fixed = SimConfig {
        nemesis: Some(NemesisKind::Partition),
        ..SimConfig::default()
    };
    let broken = SimConfig {
        break_fence: true,
        ..fixed.clone()
    };
    caught_and_only_with_the_bug(broken, fixed, 150);
}

/// The second deliberate bug: writes acknowledged before the second of
/// `--write-acks 2` copies is held. Killing primaries must expose it in some of 30
/// seeds (as a lost write, or a version number used twice: T1, W1), and those seeds
/// must pass with the bug fixed.
#[test]
fn writes_acknowledged_before_their_second_copy_are_caught() {
    let fixed = SimConfig {
        nemesis: Some(NemesisKind::Kill),
        write_acks: Some(2),
        ..SimConfig::default()
    };
    let broken = SimConfig {
        break_acks: true,
        ..fixed.clone()
    };
    caught_and_only_with_the_bug(broken, fixed, 30);
}

/// Seeds of each kind beyond the fault budget in the suite (`dida sim --seeds 500
/// --nemesis declare-all|storm` runs the full set).
const BEYOND_BUDGET_SEEDS: u64 = 30;

#[test]
fn declarations_of_every_node_and_storms_of_false_suspicions_lose_nothing() {
    for kind in NemesisKind::BEYOND_BUDGET {
        let config = SimConfig {
            nemesis: Some(kind),
            ..SimConfig::default()
        };
        let reports = run_seeds(0, BEYOND_BUDGET_SEEDS, &config, &|_| {}).unwrap();
        let failed: Vec<String> = reports
            .iter()
            .filter(|r| !r.passed())
            .map(|r| format!("seed {}: {:?}", r.seed, r.findings))
            .collect();
        assert!(failed.is_empty(), "{kind}: {failed:#?}");
        // The faults did what they are for: nodes were declared failed — every
        // node in every declare-all seed; in storms, a third of the seeds' worth.
        // Since issue 25 the detector resists storms (local health stretches a
        // starved node's timeouts, suspicions age only while a majority answers,
        // a due suspect is probed once more), so a storm declares fewer nodes than
        // it did (17 over seeds 0-29, from more than 30), which is the point; and
        // every acknowledged write was checked.
        let peak: usize = reports.iter().map(|r| r.peak_lost).sum();
        assert!(
            peak >= BEYOND_BUDGET_SEEDS as usize / 3,
            "{kind}: peak lost {peak}"
        );
        assert!(reports.iter().all(|r| r.lost_acknowledged == 0));
        let acknowledged: usize = reports.iter().map(|r| r.acknowledged).sum();
        assert!(acknowledged > 100 * BEYOND_BUDGET_SEEDS as usize, "{kind}");
    }
}

/// A rolling restart runs in the simulator through the nemesis both back-ends
/// share: every node restarted once, in membership order, and nothing lost.
#[test]
fn a_rolling_restart_restarts_every_node_in_turn_and_loses_nothing() {
    let config = SimConfig {
        nemesis: Some(NemesisKind::RollingRestart),
        ..SimConfig::default()
    };
    for report in run_seeds(0, 10, &config, &|_| {}).unwrap() {
        assert!(
            report.passed(),
            "seed {}: {:?}",
            report.seed,
            report.findings
        );
        let restarted: Vec<&str> = report.faults.iter().map(|f| f.node.as_str()).collect();
        assert_eq!(
            restarted,
            ["s1", "s2", "s3", "s4", "s5"],
            "seed {}",
            report.seed
        );
        assert!(report
            .faults
            .iter()
            .all(|f| f.confirmed && f.end_ns.is_some()));
        assert_eq!(report.lost_acknowledged, 0, "seed {}", report.seed);
    }
}

/// Joins run in the simulator through the nemesis both back-ends share: each
/// planned join admits a new node under an id never used (`s6`, then `s7`), which
/// catches up and turns active within the join's deadline; every check then
/// covers it (D3: every serving node knows it and lists it active; H2, G2, A1
/// over its store too), and a join seed replays event for event.
#[test]
fn joined_nodes_become_active_members_that_every_check_covers() {
    let config = SimConfig {
        nemesis: Some(NemesisKind::Join),
        ..SimConfig::default()
    };
    let reports = run_seeds(0, 30, &config, &|_| {}).unwrap();
    let mut grew_twice = false;
    for report in &reports {
        assert!(
            report.passed(),
            "seed {}: {:?}",
            report.seed,
            report.findings
        );
        let joined: Vec<&str> = report
            .faults
            .iter()
            .filter(|f| f.kind == FaultKind::Join)
            .map(|f| f.node.as_str())
            .collect();
        assert!(!joined.is_empty(), "seed {}: a join a run", report.seed);
        assert_eq!(joined, ["s6", "s7"][..joined.len()], "seed {}", report.seed);
        grew_twice |= joined.len() == 2;
        assert!(report
            .faults
            .iter()
            .filter(|f| f.kind == FaultKind::Join)
            .all(|f| f.confirmed && f.end_ns.is_some()));
        assert_eq!(report.lost_acknowledged, 0, "seed {}", report.seed);
    }
    assert!(grew_twice, "some seed's cluster grows twice");
    let seed = reports
        .iter()
        .find(|r| {
            r.faults
                .iter()
                .filter(|f| f.kind == FaultKind::Join)
                .count()
                == 2
        })
        .map(|r| r.seed)
        .unwrap();
    let (first, again) = (
        run_seed(seed, &config).unwrap(),
        run_seed(seed, &config).unwrap(),
    );
    assert_eq!(
        (first.events, first.fingerprint),
        (again.events, again.fingerprint),
        "join seed {seed} ran differently twice"
    );
}
