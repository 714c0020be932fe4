//! The nemesis: carries out a [`plan`](crate::plan::plan) on either back-end
//! through its [`Injector`], one fault at a time.
//!
//! **Budget.** With replication factor R (or `--write-acks` A ≥ 2, whose copies
//! are what survives), at most `budget` lost nodes still leave every acknowledged
//! write a copy. Before each fault the nemesis asks the back-end which nodes are
//! lost now ([`Injector::lost`]: killed, silent, declared failed, fenced or
//! rejoining) and skips the fault, recording why, when the budget is spent — a
//! cascade the faults did not call for. A single fault can still cost more (a
//! partial partition can get a healthy peer declared failed); the run's checks
//! then say so.
//!
//! **Whom.** A planned target is resolved among the nodes in service when the fault
//! starts: a drawn leader of one of the workload's keys (on the ring of the nodes in
//! service, the ring the cluster uses once it has detected the losses), any node, or,
//! for a rolling restart, each node in turn.
//!
//! **What.** A kill is confirmed by the back-end; a leave lasts until the node
//! has handed its records off and stopped, after which it is no longer a member
//! and no later fault targets or counts it; a join starts a new node under an id
//! the cluster never used ([`fresh_id`]) and lasts until the cluster lists it
//! active, after which later faults may target it like any member (a join has no
//! target to resolve and is never skipped for the budget: it loses no node); a
//! pause, partition or restart
//! lasts its planned length, then is undone (SIGCONT, heal, start again), and the
//! nodes that declared the target failed meanwhile are recorded. A rolling restart
//! waits after each restart until the cluster settled (every node in service in two
//! looks in a row) before the next.

use std::collections::BTreeSet;
use std::time::Duration;

use dida_core::Ring;
use tokio::time::Instant;

use crate::history::RunClock;
use crate::plan::{Fault, FaultKind, InjectError, Injector, PlannedFault, Target};

/// What the nemesis needs to know of the cluster beyond its [`Injector`].
#[derive(Debug, Clone)]
pub struct Setup {
    /// The workload's keys: targets are drawn among their primaries.
    pub keys: Vec<String>,
    /// `--vnodes` of the nodes, to place the keys as they do.
    pub vnodes: u32,
    /// Replication factor of the nodes.
    pub replication_factor: usize,
    /// How many nodes may be lost before no more faults start.
    pub budget: usize,
    /// Whether the nodes keep their records on disk, so that a restart can be on
    /// its data (else every restart is empty).
    pub keeps_data: bool,
    /// Whether each fault waits, once undone, until the cluster settled: a rolling
    /// restart's pace.
    pub settle_between: bool,
}

/// How often, and at most how long, the cluster is looked at while it settles after
/// a rolling restart's node; the least time between two restarts.
const SETTLE_POLL: Duration = Duration::from_millis(200);
const SETTLE_AT_MOST: Duration = Duration::from_secs(10);
const SETTLE_AT_LEAST: Duration = Duration::from_millis(500);

/// Injects every fault of `plan` at its moment (from `clock`'s zero) and returns
/// what each did, in order. Every fault it starts, it ends (but kills).
pub async fn run<I: Injector>(
    injector: &I,
    plan: &[PlannedFault],
    setup: &Setup,
    clock: RunClock,
) -> Vec<Fault> {
    let mut ids = injector.ids();
    // Every id the cluster ever had, removed members' included: a joining node
    // takes one never used, so that every version's replica number and every
    // view entry keeps naming one node.
    let mut used: BTreeSet<String> = ids.iter().cloned().collect();
    // Nodes the nemesis left down: killed, or killed and not started again.
    let mut down: BTreeSet<String> = BTreeSet::new();
    let mut faults = Vec::new();
    for planned in plan {
        if let Some(wait) = planned.at.checked_sub(clock.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        if planned.kind == FaultKind::Join {
            let node = fresh_id(&used);
            used.insert(node.clone());
            let fault = join(injector, node, clock).await;
            if fault.confirmed {
                // A member like the others from now on: later faults may hit it.
                ids.push(fault.node.clone());
            }
            faults.push(fault);
            if setup.settle_between {
                settle(injector, &down).await;
            }
            continue;
        }
        let lost = injector.lost().await;
        let live: Vec<String> = ids.iter().filter(|n| !lost.contains(*n)).cloned().collect();
        let target = resolve(planned.target, &ids, &live, setup);
        let Some((node, led_keys)) = target.filter(|_| lost.len() < setup.budget) else {
            let lost: Vec<&str> = lost.iter().map(String::as_str).collect();
            injector.note(format_args!("nemesis: fault skipped ({lost:?} lost)"));
            let node = match planned.target {
                Target::Node(index) => ids.get(index).cloned().unwrap_or_default(),
                _ => String::new(),
            };
            let at_ns = clock.now_ns();
            let mut skipped = Fault::skipped(planned.kind, node, at_ns, &lost, setup.budget);
            if lost.len() < setup.budget {
                // Within the budget: the planned target itself is lost (or none is
                // in service).
                skipped.error = Some(format!("skipped: its target is lost ({lost:?} lost)"));
            }
            faults.push(skipped);
            continue;
        };
        let mut fault = Fault::new(planned.kind, node, clock.now_ns(), led_keys);
        let done = inject(injector, &mut fault, planned, &ids, &live, setup, clock).await;
        if let Err(error) = done {
            injector.note(format_args!("nemesis: {error}"));
            fault.error = Some(error.to_string());
        }
        fault.confirmed = fault.error.is_none();
        if fault.kind == FaultKind::Leave && fault.confirmed {
            // Gone for good: no later fault targets it, nor counts it.
            ids.retain(|id| *id != fault.node);
        }
        // A confirmed kill, or a restart's kill whose start failed, leaves it down.
        let restart_failed = fault.kind == FaultKind::Restart && fault.end_ns.is_some();
        if (fault.kind == FaultKind::Kill && fault.confirmed)
            || (restart_failed && !fault.confirmed)
        {
            down.insert(fault.node.clone());
        }
        faults.push(fault);
        if setup.settle_between {
            settle(injector, &down).await;
        }
    }
    faults
}

/// The first of `s1`, `s2`, … not in `used`: the id of a node that joins, never
/// one a member had (the cluster refuses an id ever used, removed members'
/// included). Both back-ends name their nodes so.
pub fn fresh_id(used: &BTreeSet<String>) -> String {
    (1..)
        .map(|n| format!("s{n}"))
        .find(|id| !used.contains(id))
        .expect("some id is free")
}

/// Has `node` join the cluster through `injector` and returns the fault: confirmed
/// once the cluster lists it active, ended then (or when the back-end gave up).
async fn join<I: Injector>(injector: &I, node: String, clock: RunClock) -> Fault {
    let mut fault = Fault::new(FaultKind::Join, node, clock.now_ns(), Vec::new());
    injector.note(format_args!("nemesis: {} joins the cluster", fault.node));
    let joined = injector.join(&fault.node).await;
    fault.end_ns = Some(clock.now_ns());
    injector.note(format_args!("nemesis: {} joined ({joined:?})", fault.node));
    if let Err(error) = joined {
        fault.error = Some(error.to_string());
    }
    fault.confirmed = fault.error.is_none();
    fault
}

/// The target's id and the workload keys it leads, or `None` when no node is in
/// service (or a rolling restart's node is lost).
fn resolve(
    target: Target,
    ids: &[String],
    live: &[String],
    setup: &Setup,
) -> Option<(String, Vec<String>)> {
    if live.is_empty() {
        return None;
    }
    let ring = Ring::new(live, setup.vnodes, setup.replication_factor);
    let led = |node: &str| -> Vec<String> {
        let index = live.iter().position(|n| n == node);
        let keys = setup.keys.iter();
        keys.filter(|key| index.is_some() && ring.primary(key) == index)
            .cloned()
            .collect()
    };
    let node = match target {
        Target::Node(index) => ids.get(index).filter(|id| live.contains(id))?.clone(),
        Target::Any(draw) => live[(draw % live.len() as u64) as usize].clone(),
        Target::Leader(draw) => {
            let leaders: Vec<&String> = live.iter().filter(|n| !led(n).is_empty()).collect();
            let pool: Vec<&String> = if leaders.is_empty() {
                live.iter().collect()
            } else {
                leaders
            };
            pool[(draw % pool.len() as u64) as usize].clone()
        }
    };
    let keys = led(&node);
    Some((node, keys))
}

/// Does `fault` as planned: starts it, waits its length, and undoes it.
async fn inject<I: Injector>(
    injector: &I,
    fault: &mut Fault,
    planned: &PlannedFault,
    ids: &[String],
    live: &[String],
    setup: &Setup,
    clock: RunClock,
) -> Result<(), InjectError> {
    let node = fault.node.clone();
    let started = Instant::now();
    let keep_data = planned.keep_data && setup.keeps_data;
    let mut cut_failed = None;
    match fault.kind {
        FaultKind::Kill => {
            injector.note(format_args!("nemesis: kill {node}"));
            return injector.kill(&node).await;
        }
        FaultKind::Pause => {
            injector.note(format_args!(
                "nemesis: pause {node} for {:?}",
                planned.length
            ));
            injector.pause(&node).await?;
        }
        FaultKind::Restart => {
            let data = if keep_data { "on its data" } else { "empty" };
            let length = planned.length;
            injector.note(format_args!(
                "nemesis: kill {node}, restart {data} after {length:?}"
            ));
            injector.kill(&node).await?;
        }
        FaultKind::Partition => {
            let others = |nodes: &[String]| -> Vec<String> {
                nodes.iter().filter(|n| **n != node).cloned().collect()
            };
            let (shape, cuts) = crate::plan::partition_cuts(
                &node,
                &others(ids),
                &others(live),
                planned.shape,
                planned.cut_draw,
            );
            fault.shape = Some(shape);
            fault.cuts = cuts;
            let links = fault.cut_links();
            let length = planned.length;
            injector.note(format_args!(
                "nemesis: partition {shape:?} {links:?} for {length:?}"
            ));
            for [from, to] in &fault.cuts {
                if let Err(error) = injector.cut(from, to).await {
                    cut_failed.get_or_insert(error);
                }
            }
        }
        FaultKind::Leave => {
            injector.note(format_args!("nemesis: remove {node} from the cluster"));
            let left = injector.leave(&node).await;
            fault.end_ns = Some(clock.now_ns());
            injector.note(format_args!("nemesis: {node} left ({left:?})"));
            return left;
        }
        FaultKind::Declare | FaultKind::Join => {
            // Neither hits a node in service: `run` starts joins itself, and
            // forged declarations are the simulator's own nemesis.
            return Err(InjectError {
                action: "plan",
                node,
                reason: format!("{:?} is not a fault of a member", fault.kind),
            });
        }
    }
    tokio::time::sleep_until(started + planned.length).await;
    fault.declared_during = injector.declared_by(&node).await;
    let undone = match fault.kind {
        FaultKind::Pause => injector.resume(&node).await,
        FaultKind::Restart => injector.restart(&node, keep_data).await,
        _ => {
            injector.heal().await;
            cut_failed.map_or(Ok(()), Err)
        }
    };
    fault.end_ns = Some(clock.now_ns());
    injector.note(format_args!(
        "nemesis: {node} back ({:?} undone)",
        fault.kind
    ));
    undone
}

/// Waits until no node but those the nemesis left `down` is lost, in two looks in a
/// row and at least [`SETTLE_AT_LEAST`] from now, or [`SETTLE_AT_MOST`] passed.
async fn settle<I: Injector>(injector: &I, down: &BTreeSet<String>) {
    let started = Instant::now();
    let mut calm_in_a_row = 0;
    while started.elapsed() < SETTLE_AT_MOST {
        let calm = injector.lost().await.is_subset(down);
        calm_in_a_row = if calm { calm_in_a_row + 1 } else { 0 };
        if calm_in_a_row >= 2 && started.elapsed() >= SETTLE_AT_LEAST {
            return;
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
    injector.note(format_args!(
        "nemesis: the cluster did not settle in {SETTLE_AT_MOST:?}"
    ));
}

#[cfg(test)]
mod tests {
    use std::fmt;
    use std::sync::Mutex;

    use super::*;
    use crate::plan::{plan, NemesisKind, Schedule};

    /// A back-end that does nothing but write down what it was asked, and loses
    /// the nodes it killed.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<String>>,
        killed: Mutex<BTreeSet<String>>,
    }

    impl Recorder {
        fn call(&self, what: String) -> Result<(), InjectError> {
            self.calls.lock().unwrap().push(what);
            Ok(())
        }
    }

    impl Injector for Recorder {
        fn ids(&self) -> Vec<String> {
            (1..=5).map(|i| format!("s{i}")).collect()
        }
        async fn kill(&self, node: &str) -> Result<(), InjectError> {
            self.killed.lock().unwrap().insert(node.to_string());
            self.call(format!("kill {node}"))
        }
        async fn pause(&self, node: &str) -> Result<(), InjectError> {
            self.call(format!("pause {node}"))
        }
        async fn resume(&self, node: &str) -> Result<(), InjectError> {
            self.call(format!("resume {node}"))
        }
        async fn cut(&self, from: &str, to: &str) -> Result<(), InjectError> {
            self.call(format!("cut {from}->{to}"))
        }
        async fn heal(&self) {
            let _ = self.call("heal".to_string());
        }
        async fn leave(&self, node: &str) -> Result<(), InjectError> {
            self.call(format!("leave {node}"))
        }
        async fn join(&self, node: &str) -> Result<(), InjectError> {
            self.call(format!("join {node}"))
        }
        async fn restart(&self, node: &str, _keep_data: bool) -> Result<(), InjectError> {
            self.killed.lock().unwrap().remove(node);
            self.call(format!("restart {node}"))
        }
        async fn lost(&self) -> BTreeSet<String> {
            self.killed.lock().unwrap().clone()
        }
        async fn declared_by(&self, _node: &str) -> Vec<String> {
            Vec::new()
        }
        fn note(&self, _what: fmt::Arguments<'_>) {}
    }

    fn setup(budget: usize) -> Setup {
        Setup {
            keys: (0..5).map(|k| format!("k{k}")).collect(),
            vnodes: 16,
            replication_factor: 3,
            budget,
            keeps_data: false,
            settle_between: false,
        }
    }

    async fn run_plan(
        kind: NemesisKind,
        faults: usize,
        budget: usize,
    ) -> (Vec<Fault>, Vec<String>) {
        let schedule = Schedule {
            duration: Duration::from_secs(20),
            faults,
            nodes: 5,
            lengths: (Duration::from_secs(1), Duration::from_secs(2)),
        };
        let recorder = Recorder::default();
        let done = run(
            &recorder,
            &plan(3, kind, &schedule),
            &setup(budget),
            RunClock::start(),
        )
        .await;
        (done, recorder.calls.into_inner().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn kills_stop_at_the_budget_and_the_rest_are_recorded_as_skipped() {
        let (faults, calls) = run_plan(NemesisKind::Kill, 3, 2).await;
        assert_eq!(
            calls.iter().filter(|c| c.starts_with("kill")).count(),
            2,
            "{calls:?}"
        );
        assert!(faults[..2]
            .iter()
            .all(|f| f.confirmed && f.end_ns.is_none()));
        assert!(faults[2].error.as_deref().unwrap().starts_with("skipped"));
    }

    #[tokio::test(start_paused = true)]
    async fn every_fault_started_is_undone_after_its_length() {
        let (faults, calls) = run_plan(NemesisKind::Mixed, 3, 3).await;
        for fault in faults.iter().filter(|f| f.kind != FaultKind::Kill) {
            let length = fault.end_ns.unwrap() - fault.at_ns;
            assert!(length >= 1_000_000_000, "{fault:?}");
        }
        let count = |kind: FaultKind| faults.iter().filter(|f| f.kind == kind).count();
        let calls_of = |verb: &str| calls.iter().filter(|c| c.starts_with(verb)).count();
        assert_eq!(calls_of("resume"), count(FaultKind::Pause), "{calls:?}");
        assert_eq!(calls_of("heal"), count(FaultKind::Partition), "{calls:?}");
        assert_eq!(calls_of("restart"), count(FaultKind::Restart), "{calls:?}");
        assert!(faults.iter().all(|f| f.confirmed), "{faults:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rolling_restart_takes_every_node_once_in_order() {
        let (faults, calls) = run_plan(NemesisKind::RollingRestart, 0, 2).await;
        let nodes: Vec<&str> = faults.iter().map(|f| f.node.as_str()).collect();
        assert_eq!(nodes, ["s1", "s2", "s3", "s4", "s5"]);
        assert_eq!(calls.len(), 10, "a kill and a restart each: {calls:?}");
        assert!(faults.iter().all(|f| f.confirmed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_that_left_is_never_a_target_again() {
        for seed in 0..40 {
            let schedule = Schedule {
                duration: Duration::from_secs(20),
                faults: 3,
                nodes: 5,
                lengths: (Duration::from_secs(1), Duration::from_secs(2)),
            };
            let planned = plan(seed, NemesisKind::Leave, &schedule);
            assert_eq!(
                planned
                    .iter()
                    .filter(|f| f.kind == FaultKind::Leave)
                    .count(),
                1,
                "seed {seed}: one leave per run"
            );
            let recorder = Recorder::default();
            let faults = run(&recorder, &planned, &setup(2), RunClock::start()).await;
            let left = faults.iter().find(|f| f.kind == FaultKind::Leave).unwrap();
            assert!(left.confirmed && left.end_ns.is_some(), "{left:?}");
            let after = faults
                .iter()
                .skip_while(|f| f.kind != FaultKind::Leave)
                .skip(1);
            for fault in after {
                assert_ne!(fault.node, left.node, "seed {seed}: {faults:?}");
                assert!(!fault.cuts.iter().flatten().any(|n| *n == left.node));
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn joins_take_ids_never_used_and_the_joined_nodes_become_targets() {
        let mut targeted_a_joined_node = false;
        for seed in 0..60 {
            let faults = 1 + (seed as usize % 4);
            let schedule = Schedule {
                duration: Duration::from_secs(20),
                faults,
                nodes: 5,
                lengths: (Duration::from_secs(1), Duration::from_secs(2)),
            };
            let planned = plan(seed, NemesisKind::Join, &schedule);
            let recorder = Recorder::default();
            // A budget of one, spent by the first kill: joins go on regardless.
            let done = run(&recorder, &planned, &setup(1), RunClock::start()).await;
            let joined: Vec<&Fault> = done.iter().filter(|f| f.kind == FaultKind::Join).collect();
            assert_eq!(joined.len(), crate::plan::joins_of(faults), "seed {seed}");
            let mut ids: BTreeSet<String> = (1..=5).map(|i| format!("s{i}")).collect();
            for fault in &joined {
                assert!(fault.confirmed && fault.end_ns.is_some(), "{fault:?}");
                assert!(ids.insert(fault.node.clone()), "seed {seed}: {done:?}");
            }
            let kills = done
                .iter()
                .filter(|f| f.kind == FaultKind::Kill && f.confirmed);
            assert!(kills.count() <= 1, "the budget holds: {done:?}");
            let calls = recorder.calls.into_inner().unwrap();
            for fault in &joined {
                assert!(calls.contains(&format!("join {}", fault.node)), "{calls:?}");
            }
            // A later fault may hit a joined node, as it may any member.
            targeted_a_joined_node |= done
                .iter()
                .skip_while(|f| f.kind != FaultKind::Join)
                .any(|f| f.kind != FaultKind::Join && joined.iter().any(|j| j.node == f.node));
        }
        assert!(
            targeted_a_joined_node,
            "some seed faults a node that joined"
        );
    }

    #[test]
    fn a_fresh_id_is_never_one_in_use_or_removed() {
        let used: BTreeSet<String> = ["s1", "s2", "s4", "s5"].map(String::from).into();
        assert_eq!(fresh_id(&used), "s3");
        let used: BTreeSet<String> = (1..=6).map(|i| format!("s{i}")).collect();
        assert_eq!(fresh_id(&used), "s7");
    }
}
