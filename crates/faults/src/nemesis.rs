//! The nemesis: injects faults into storage nodes at random moments of the run, one
//! at a time — SIGKILL (`kill`, the default), SIGSTOP then SIGCONT (`pause`), cut
//! network links then heal them (`partition`), a random mix of the four (`mixed`),
//! or SIGKILL then a start with the same command line (`restart`) — or restarts
//! every node in turn (`rolling-restart`, see [`crate::rolling`]).
//!
//! **Budget.** SPEC §2.5: with replication factor R, up to R − 1 lost nodes still
//! leave every key a replica, so that is the most the suite may lose. A killed node is
//! lost; a paused or partitioned one is lost if the others declare it failed (it then
//! fences itself and rejoins, see [`crate::survey`]), and a restarted one until it
//! has rejoined. Each fault targets one node and
//! costs at most that one, and `--crashes` (the number of faults) is at most R − 1;
//! before each fault the nemesis also surveys the cluster, and skips the fault (the
//! run then fails its "faults injected as planned" check) if R − 1 nodes are lost
//! already — a cascade the faults did not call for.
//!
//! **When.** Faults are spread over the run with time between them (so the cluster
//! can detect each one and repair before the next), and the last fifth of the run is
//! left without faults so that recovery shows in the history ([`crash_times`]). A
//! pause or partition (or the time a restarted node stays down) lasts a random time
//! in `--fault-ms` (by default 0.5 s to 3.5 s:
//! the shorter ones end before the crash detector's suspicion timeout of 1.5 s runs
//! out and are survived, the longer ones get the node declared failed), cut short so
//! that it ends before the next fault and before the last fifth.
//!
//! **Whom.** The target is a random node among those not lost that are, at that
//! moment, the primary of at least one of the workload's keys (any such node if none
//! is): a fault of a node that leads nothing the clients use would test little, and
//! with a few keys on five nodes that would be a frequent draw.
//!
//! **Partitions** take one of three shapes, drawn evenly: the target *isolated* from
//! every peer; the target *cut* from one or two peers, both ways; or a *one-way* cut
//! between the target and one or two peers (only the connections one side makes to
//! the other are silenced). See `dida_local_cluster::proxy` for how a cut is made.
//!
//! **Restarts** kill the target (SIGKILL, as `kill`), leave it down for the drawn
//! time, then start it again with its original command line
//! (`LocalCluster::restart`, through [`crate::processes`]): the same id, address, membership and proxy links. It
//! takes one node down at a time and is held to the same budget as `kill` (R − 1
//! nodes lost, counting the one it takes down); a restarted node that the others
//! declared failed and that did not rejoin (it is fenced) counts as lost, as after a
//! pause. `mixed` draws among all four (kill, pause, partition, restart), as the
//! simulator's does: one meaning per kind (see [`dida_verify::plan::NemesisKind`]).
//!
//! Each fault is confirmed: a killed node must stop answering, a paused one must not
//! answer while paused, every link of a partition must have been cut, a restarted
//! node must have stopped answering after the kill and answered its status again
//! after the start.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use dida_core::Ring;
use dida_storage_client::StorageClient;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::mpsc::UnboundedSender;

use dida_verify::history::RunClock;
use dida_verify::plan::{Fault, FaultKind, Injector, NemesisKind, PartitionShape};

use crate::processes::Processes;
use crate::survey::{self, Survey};

/// When the crashes happen, as offsets from the start of the run.
///
/// The window from 10 % to 80 % of the run is cut into one slot per crash, and each
/// crash falls at a random moment in the middle 60 % of its slot: crashes are random,
/// never simultaneous, and at least 40 % of a slot apart.
pub fn crash_times(duration: Duration, crashes: usize, rng: &mut StdRng) -> Vec<Duration> {
    if crashes == 0 {
        return Vec::new();
    }
    let window_start = duration.mul_f64(0.1);
    let slot = duration.mul_f64(0.7) / u32::try_from(crashes).unwrap_or(u32::MAX);
    (0..crashes)
        .map(|i| {
            let slot_start = window_start + slot * u32::try_from(i).unwrap_or(u32::MAX);
            slot_start + slot.mul_f64(rng.random_range(0.2..0.8))
        })
        .collect()
}

/// Whom and when to fault.
#[derive(Debug, Clone)]
pub struct NemesisPlan {
    /// Which faults.
    pub kind: NemesisKind,
    /// Moments of the faults (see [`crash_times`]).
    pub times: Vec<Duration>,
    /// Length of the run: pauses and partitions end before its last fifth.
    pub duration: Duration,
    /// Shortest and longest pause or partition (before it is cut short to end in
    /// time).
    pub fault_lengths: (Duration, Duration),
    /// The keys the workload uses: victims are drawn among their primaries.
    pub keys: Vec<String>,
    /// `--vnodes` of the cluster, to place the keys as the nodes do.
    pub vnodes: u32,
    /// Replication factor of the cluster.
    pub replication_factor: usize,
}

/// The keys of `keys` that each live node leads, by node id, on the ring of the live
/// nodes not lost (the ring the cluster uses once it has detected the losses).
pub(crate) fn primaries<'a>(
    live: &[String],
    keys: &'a [String],
    vnodes: u32,
    replication_factor: usize,
) -> Vec<(String, Vec<&'a str>)> {
    let ring = Ring::new(live, vnodes, replication_factor);
    let mut led: Vec<(String, Vec<&str>)> = live.iter().map(|n| (n.clone(), Vec::new())).collect();
    for key in keys {
        if let Some(entry) = ring.primary(key).and_then(|p| led.get_mut(p)) {
            entry.1.push(key);
        }
    }
    led
}

/// What the nemesis did, and the state it left the cluster in.
#[derive(Debug, Clone, Default)]
pub struct NemesisOutcome {
    /// The faults, in order.
    pub faults: Vec<Fault>,
    /// The nodes killed.
    pub killed: BTreeSet<String>,
    /// The last survey, taken once the cluster settled after the last fault.
    pub survey: Survey,
}

/// How long each pause or partition lasts: a random length in `lengths`, cut short to
/// end a second before the next fault starts (or halfway to it, if sooner) and
/// before the last fifth of the run.
pub fn fault_lengths(
    times: &[Duration],
    duration: Duration,
    lengths: (Duration, Duration),
    rng: &mut StdRng,
) -> Vec<Duration> {
    let quiet = duration.mul_f64(0.8);
    let (shortest, longest) = (lengths.0.min(lengths.1), lengths.0.max(lengths.1));
    times
        .iter()
        .enumerate()
        .map(|(i, &start)| {
            let drawn = if shortest == longest {
                shortest
            } else {
                rng.random_range(shortest..=longest)
            };
            // Before the next fault, leaving the cluster up to a second (half the
            // time between the two faults at most) to declare and spread what this
            // one cost; and before the quiet last fifth.
            let end = match times.get(i + 1) {
                Some(&next) => {
                    let gap = next.saturating_sub(start) / 2;
                    next.saturating_sub(gap.min(Duration::from_secs(1)))
                }
                None => quiet,
            };
            drawn.min(end.min(quiet).saturating_sub(start))
        })
        .collect()
}

/// The live-node survey's settings: each status call's deadline, and how long the
/// cluster gets after the last fault to declare (and spread) what it will.
pub(crate) const SURVEY_DEADLINE: Duration = Duration::from_secs(1);
const SETTLE_POLL: Duration = Duration::from_millis(250);
const SETTLE_AT_LEAST: Duration = Duration::from_secs(1);
/// Long enough for a node declared failed at the last moment to fence itself,
/// start over and rejoin.
const SETTLE_AT_MOST: Duration = Duration::from_secs(15);

/// Injects one fault at each moment of `plan` and returns what it did.
///
/// `probe` is a client of the same cluster with a short deadline, used to confirm
/// each fault and to survey the nodes. Each node lost is also sent on `losses`, if
/// given: a killed node as soon as the kill is confirmed, a node declared failed as
/// soon as a survey finds it (the timeline's watcher follows it from there).
pub async fn run_nemesis(
    cluster: Arc<Processes>,
    probe: StorageClient,
    plan: NemesisPlan,
    clock: RunClock,
    seed: u64,
    losses: Option<UnboundedSender<String>>,
) -> NemesisOutcome {
    // Victims are drawn from the seed as before pauses and partitions existed, so a
    // `kill` run repeats the choices of earlier versions; everything else comes from
    // a second stream.
    let nodes: Vec<String> = cluster.ids().await;
    if plan.kind == NemesisKind::RollingRestart {
        let outcome = crate::rolling::rolling_restart(&cluster, &probe, &plan, &nodes, clock).await;
        let none = BTreeSet::new();
        return finish(outcome, &probe, &nodes, true, losses.as_ref(), &none).await;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut faults_rng = StdRng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7321);
    let lengths = fault_lengths(
        &plan.times,
        plan.duration,
        plan.fault_lengths,
        &mut faults_rng,
    );
    let budget = plan.replication_factor.saturating_sub(1);
    let mut outcome = NemesisOutcome::default();
    let mut reported: BTreeSet<String> = BTreeSet::new();
    let mut report_losses = |lost: &BTreeSet<String>| {
        for node in lost.difference(&reported.clone()) {
            if let Some(losses) = &losses {
                // The watcher may be gone (a stopped run): nothing to tell then.
                let _ = losses.send(node.clone());
            }
            reported.insert(node.clone());
        }
    };
    // Kills need no survey: the nemesis knows whom it killed. After a pause or a
    // partition only the cluster knows whether the target was declared failed.
    let mut survey_needed = false;
    for (at, length) in plan.times.iter().zip(lengths) {
        if let Some(wait) = at.checked_sub(clock.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let lost = if survey_needed {
            survey::survey(&probe, &nodes, &outcome.killed, SURVEY_DEADLINE)
                .await
                .lost
        } else {
            outcome.killed.clone()
        };
        report_losses(&lost);
        let kind = match plan.kind {
            NemesisKind::Kill => FaultKind::Kill,
            NemesisKind::Pause => FaultKind::Pause,
            NemesisKind::Partition => FaultKind::Partition,
            NemesisKind::Mixed => [
                FaultKind::Kill,
                FaultKind::Pause,
                FaultKind::Partition,
                FaultKind::Restart,
            ][faults_rng.random_range(0..4)],
            NemesisKind::Restart => FaultKind::Restart,
            NemesisKind::RollingRestart => unreachable!("handled by rolling::rolling_restart"),
            NemesisKind::DeclareAll | NemesisKind::Storm => {
                unreachable!("refused by SuiteConfig::validate: simulator-only kinds")
            }
        };
        let live: Vec<String> = nodes
            .iter()
            .filter(|n| !lost.contains(*n))
            .cloned()
            .collect();
        if lost.len() >= budget || live.is_empty() {
            let lost_list: Vec<&str> = lost.iter().map(String::as_str).collect();
            tracing::warn!(lost = ?lost_list, "nemesis: fault budget spent; fault skipped");
            let fault = Fault::skipped(kind, String::new(), clock.now_ns(), &lost_list, budget);
            outcome.faults.push(fault);
            continue;
        }
        let led = primaries(&live, &plan.keys, plan.vnodes, plan.replication_factor);
        let leaders: Vec<usize> = (0..led.len()).filter(|&i| !led[i].1.is_empty()).collect();
        let index = if leaders.is_empty() {
            rng.random_range(0..live.len())
        } else {
            leaders[rng.random_range(0..leaders.len())]
        };
        let led_keys: Vec<String> = led[index].1.iter().map(|k| k.to_string()).collect();
        let node = live[index].clone();
        let fault = Fault::new(kind, node, clock.now_ns(), led_keys);
        let fault = match kind {
            FaultKind::Kill => {
                let fault = kill(&cluster, &probe, fault).await;
                if fault.confirmed {
                    outcome.killed.insert(fault.node.clone());
                    report_losses(&outcome.killed);
                }
                fault
            }
            FaultKind::Pause => pause(&cluster, &probe, fault, length, clock).await,
            FaultKind::Partition => {
                let peers: Vec<String> = nodes
                    .iter()
                    .filter(|n| **n != fault.node)
                    .cloned()
                    .collect();
                let live_peers: Vec<String> =
                    live.iter().filter(|n| **n != fault.node).cloned().collect();
                let (shape, cuts) =
                    partition_shape(&fault.node, &peers, &live_peers, &mut faults_rng);
                partition(&cluster, fault, shape, cuts, length, clock).await
            }
            FaultKind::Restart => {
                let fault = restart(&cluster, &probe, fault, length, clock).await;
                if !cluster.is_running(&fault.node).await.unwrap_or(false) {
                    // Killed but not started again: as lost as a killed node.
                    outcome.killed.insert(fault.node.clone());
                    report_losses(&outcome.killed);
                }
                fault
            }
        };
        survey_needed |= kind != FaultKind::Kill;
        outcome.faults.push(fault);
    }
    finish(
        outcome,
        &probe,
        &nodes,
        survey_needed,
        losses.as_ref(),
        &reported,
    )
    .await
}

/// Takes the last survey once the cluster settled (none is needed when every fault
/// was a kill: the nemesis knows whom it killed), reports the nodes it finds lost,
/// (those not in `reported` already), and records on each fault what became of its
/// target.
async fn finish(
    mut outcome: NemesisOutcome,
    probe: &StorageClient,
    nodes: &[String],
    survey_needed: bool,
    losses: Option<&UnboundedSender<String>>,
    reported: &BTreeSet<String>,
) -> NemesisOutcome {
    outcome.survey = if survey_needed {
        settle(probe, nodes, &outcome.killed).await
    } else {
        Survey {
            lost: outcome.killed.clone(),
            ..Survey::default()
        }
    };
    for node in outcome.survey.lost.difference(reported) {
        if let Some(losses) = losses {
            // The watcher may be gone (a stopped run): nothing to tell then.
            let _ = losses.send(node.clone());
        }
    }
    for fault in &mut outcome.faults {
        if fault.node.is_empty() {
            continue;
        }
        fault.declared_failed_by = outcome.survey.declared_by(&fault.node);
        fault.lost = outcome.survey.lost.contains(&fault.node);
        fault.fenced = (fault.kind != FaultKind::Kill
            && !outcome.survey.silent.contains(&fault.node))
        .then(|| outcome.survey.fenced.contains(&fault.node));
    }
    outcome
}

/// Surveys the cluster until two surveys in a row agree with every node answering
/// and none fenced or joining (and at least [`SETTLE_AT_LEAST`] has passed), or
/// [`SETTLE_AT_MOST`]: a declaration made just as the last fault ended takes a
/// probe round or two to spread, and a node declared failed then rejoins.
async fn settle(probe: &StorageClient, nodes: &[String], killed: &BTreeSet<String>) -> Survey {
    let started = tokio::time::Instant::now();
    let mut previous = survey::survey(probe, nodes, killed, SURVEY_DEADLINE).await;
    loop {
        tokio::time::sleep(SETTLE_POLL).await;
        let current = survey::survey(probe, nodes, killed, SURVEY_DEADLINE).await;
        let settled = current == previous && current.silent.is_empty() && current.fenced.is_empty();
        if (settled && started.elapsed() >= SETTLE_AT_LEAST) || started.elapsed() >= SETTLE_AT_MOST
        {
            return current;
        }
        previous = current;
    }
}

/// SIGKILLs the target, confirms it stopped answering, leaves it down for
/// `down_for`, then starts it again with its original command line and waits until it
/// answers its status (see [`crate::processes`]).
pub(crate) async fn restart(
    cluster: &Processes,
    probe: &StorageClient,
    fault: Fault,
    down_for: Duration,
    clock: RunClock,
) -> Fault {
    let started = tokio::time::Instant::now();
    let mut fault = kill(cluster, probe, fault).await;
    if fault.error.is_some() {
        return fault;
    }
    let node = fault.node.clone();
    tokio::time::sleep_until(started + down_for).await;
    fault.declared_during = declared_by(probe, &node).await;
    tracing::info!(%node, at_s = clock.now_ns() as f64 / 1e9, "nemesis: restart");
    let restarted = cluster.restart(&node, false).await;
    fault.end_ns = Some(clock.now_ns());
    match restarted {
        Ok(()) => {
            tracing::info!(%node, at_s = clock.now_ns() as f64 / 1e9, "nemesis: restarted node answers")
        }
        Err(error) => {
            tracing::warn!(%node, "nemesis: restart failed: {error:#}");
            fault.confirmed = false;
            fault.error = Some(format!("{error:#}"));
        }
    }
    fault
}

/// The other nodes whose status lists `node` as failed now (each asked with
/// [`SURVEY_DEADLINE`]; one that does not answer lists nothing).
async fn declared_by(probe: &StorageClient, node: &str) -> Vec<String> {
    let others: Vec<String> = probe
        .membership()
        .ids()
        .filter(|id| *id != node)
        .map(str::to_string)
        .collect();
    let mut declaring = Vec::new();
    for other in others {
        if let Ok(Ok(status)) = tokio::time::timeout(SURVEY_DEADLINE, probe.status(&other)).await {
            if status.failed.iter().any(|f| f == node) {
                declaring.push(other);
            }
        }
    }
    declaring
}

/// SIGKILLs the target and confirms it stopped answering.
async fn kill(cluster: &Processes, probe: &StorageClient, mut fault: Fault) -> Fault {
    let node = fault.node.clone();
    tracing::info!(%node, at_s = fault.at_ns as f64 / 1e9, led = ?fault.led_keys, "nemesis: SIGKILL");
    match cluster.kill(&node).await {
        Ok(()) => {
            fault.confirmed = probe.ping(&node).await.is_err();
            if !fault.confirmed {
                tracing::warn!(%node, "nemesis: the node still answers after SIGKILL");
            }
        }
        Err(error) => {
            tracing::warn!(%node, "nemesis: kill failed: {error:#}");
            fault.error = Some(format!("{error:#}"));
        }
    }
    fault
}

/// SIGSTOPs the target for `length`, confirms it does not answer meanwhile, then
/// SIGCONTs it.
async fn pause(
    cluster: &Processes,
    probe: &StorageClient,
    mut fault: Fault,
    length: Duration,
    clock: RunClock,
) -> Fault {
    let node = fault.node.clone();
    tracing::info!(%node, at_s = fault.at_ns as f64 / 1e9, length = ?length, "nemesis: SIGSTOP");
    if let Err(error) = cluster.pause(&node).await {
        tracing::warn!(%node, "nemesis: pause failed: {error:#}");
        fault.error = Some(format!("{error:#}"));
        return fault;
    }
    let started = tokio::time::Instant::now();
    // SIGSTOP takes effect as each thread of the node is next scheduled: wait until
    // the process is stopped, then make sure it answers nothing.
    let limit = (length / 2).min(Duration::from_secs(1));
    let stopped = loop {
        match cluster.is_stopped(&node).await {
            Ok(true) => break true,
            Ok(false) if started.elapsed() < limit => {}
            Ok(false) => break false,
            Err(error) => {
                tracing::warn!(%node, "nemesis: cannot tell whether the node stopped: {error:#}");
                break false;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let answered = matches!(
        tokio::time::timeout(limit.saturating_sub(started.elapsed()), probe.ping(&node)).await,
        Ok(Ok(()))
    );
    fault.confirmed = stopped && !answered;
    if !fault.confirmed {
        tracing::warn!(%node, stopped, answered, "nemesis: the pause did not take");
    }
    tokio::time::sleep_until(started + length).await;
    fault.declared_during = declared_by(probe, &node).await;
    let resumed = cluster.resume(&node).await;
    fault.end_ns = Some(clock.now_ns());
    tracing::info!(%node, at_s = clock.now_ns() as f64 / 1e9, "nemesis: SIGCONT");
    if let Err(error) = resumed {
        tracing::warn!(%node, "nemesis: resume failed: {error:#}");
        fault.error = Some(format!("{error:#}"));
    }
    fault
}

/// Draws a partition of `target` (see the module documentation): its shape and the
/// links to cut, as (from, to). `peers` are all the other nodes, `live_peers` those not
/// lost (a cut from a lost node would test nothing).
fn partition_shape(
    target: &str,
    peers: &[String],
    live_peers: &[String],
    rng: &mut StdRng,
) -> (PartitionShape, Vec<[String; 2]>) {
    let pair = |from: &str, to: &str| [from.to_string(), to.to_string()];
    let shape = if live_peers.is_empty() {
        PartitionShape::Isolate
    } else {
        [
            PartitionShape::Isolate,
            PartitionShape::Cut,
            PartitionShape::OneWay,
        ][rng.random_range(0..3)]
    };
    if shape == PartitionShape::Isolate {
        let cuts = peers
            .iter()
            .flat_map(|peer| [pair(target, peer), pair(peer, target)])
            .collect();
        return (shape, cuts);
    }
    // One or two peers, never all of them (that would be an isolation).
    let most = 2.min(live_peers.len().saturating_sub(1)).max(1);
    let count = rng.random_range(1..=most);
    let mut chosen: Vec<&String> = Vec::new();
    while chosen.len() < count {
        let peer = &live_peers[rng.random_range(0..live_peers.len())];
        if !chosen.contains(&peer) {
            chosen.push(peer);
        }
    }
    let outward = rng.random_bool(0.5);
    let cuts = chosen
        .into_iter()
        .flat_map(|peer| match shape {
            PartitionShape::OneWay if outward => vec![pair(target, peer)],
            PartitionShape::OneWay => vec![pair(peer, target)],
            _ => vec![pair(target, peer), pair(peer, target)],
        })
        .collect();
    (shape, cuts)
}

/// Cuts `cuts` for `length`, then heals them.
async fn partition(
    cluster: &Processes,
    mut fault: Fault,
    shape: PartitionShape,
    cuts: Vec<[String; 2]>,
    length: Duration,
    clock: RunClock,
) -> Fault {
    let described: Vec<String> = cuts
        .iter()
        .map(|[from, to]| format!("{from}->{to}"))
        .collect();
    tracing::info!(node = %fault.node, at_s = fault.at_ns as f64 / 1e9, ?shape, cuts = ?described,
        length = ?length, "nemesis: partition");
    let started = tokio::time::Instant::now();
    let mut errors: Vec<String> = Vec::new();
    for [from, to] in &cuts {
        if let Err(error) = cluster.cut(from, to).await {
            errors.push(error.to_string());
        }
    }
    fault.confirmed = errors.is_empty();
    fault.shape = Some(shape);
    fault.cuts = cuts;
    tokio::time::sleep_until(started + length).await;
    cluster.heal().await;
    fault.end_ns = Some(clock.now_ns());
    tracing::info!(node = %fault.node, at_s = clock.now_ns() as f64 / 1e9, "nemesis: healed");
    if !errors.is_empty() {
        tracing::warn!(node = %fault.node, "nemesis: partition failed: {}", errors.join("; "));
        fault.error = Some(errors.join("; "));
    }
    fault
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crashes_are_spread_over_the_run_with_pauses_between_them() {
        let mut rng = StdRng::seed_from_u64(1);
        for crashes in 1..=4 {
            let duration = Duration::from_secs(20);
            let times = crash_times(duration, crashes, &mut rng);
            assert_eq!(times.len(), crashes);
            let slot = duration.mul_f64(0.7) / crashes as u32;
            for pair in times.windows(2) {
                assert!(pair[1] > pair[0] + slot.mul_f64(0.39), "{times:?}");
            }
            assert!(times[0] >= duration.mul_f64(0.1));
            assert!(*times.last().unwrap() <= duration.mul_f64(0.8));
        }
        assert!(crash_times(Duration::from_secs(5), 0, &mut rng).is_empty());
    }

    #[test]
    fn every_key_has_exactly_one_primary_among_the_live_nodes() {
        let live: Vec<String> = ["s1", "s2", "s4"].iter().map(|s| s.to_string()).collect();
        let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
        let led = primaries(&live, &keys, 128, 3);
        assert_eq!(led.len(), 3);
        assert_eq!(led.iter().map(|(_, keys)| keys.len()).sum::<usize>(), 20);
        // The same placement as the ring the cluster itself derives.
        let ring = Ring::new(&live, 128, 3);
        for (node, keys) in &led {
            for key in keys {
                assert_eq!(&live[ring.primary(key).unwrap()], node);
            }
        }
    }

    #[test]
    fn pauses_and_partitions_end_before_the_next_fault_and_the_quiet_fifth() {
        let mut rng = StdRng::seed_from_u64(3);
        let duration = Duration::from_secs(10);
        let times = [Duration::from_secs(2), Duration::from_secs(5)];
        let lengths = fault_lengths(
            &times,
            duration,
            (Duration::from_secs(1), Duration::from_secs(9)),
            &mut rng,
        );
        assert_eq!(lengths.len(), 2);
        // A second before the next fault, and before 80 % of the run.
        assert!(
            times[0] + lengths[0] <= Duration::from_secs(4),
            "{lengths:?}"
        );
        assert!(
            times[1] + lengths[1] <= Duration::from_secs(8),
            "{lengths:?}"
        );
        // Close faults leave half the time between them.
        let close = [Duration::from_secs(2), Duration::from_millis(2600)];
        let fixed = (Duration::from_secs(5), Duration::from_secs(5));
        let lengths = fault_lengths(&close, duration, fixed, &mut rng);
        assert_eq!(lengths[0], Duration::from_millis(300));
        // Within the range when nothing cuts them short.
        let lengths = fault_lengths(
            &[Duration::from_secs(1)],
            Duration::from_secs(60),
            (Duration::from_secs(1), Duration::from_secs(2)),
            &mut rng,
        );
        assert!((Duration::from_secs(1)..=Duration::from_secs(2)).contains(&lengths[0]));
    }

    #[test]
    fn partitions_cut_the_target_from_some_or_all_peers() {
        let peers: Vec<String> = ["s1", "s2", "s4", "s5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut rng = StdRng::seed_from_u64(5);
        let mut shapes = BTreeSet::new();
        for _ in 0..200 {
            let (shape, cuts) = partition_shape("s3", &peers, &peers, &mut rng);
            shapes.insert(format!("{shape:?}"));
            assert!(cuts
                .iter()
                .all(|[from, to]| from != to && (from == "s3" || to == "s3")));
            let others: BTreeSet<&String> = cuts
                .iter()
                .map(|[from, to]| if from == "s3" { to } else { from })
                .collect();
            match shape {
                PartitionShape::Isolate => assert_eq!(cuts.len(), 8),
                PartitionShape::Cut => {
                    assert!((1..=2).contains(&others.len()));
                    assert_eq!(cuts.len(), 2 * others.len());
                }
                PartitionShape::OneWay => {
                    assert!((1..=2).contains(&others.len()));
                    assert_eq!(cuts.len(), others.len());
                    // All in the same direction.
                    let outward = cuts.iter().filter(|[from, _]| from == "s3").count();
                    assert!(outward == 0 || outward == cuts.len(), "{cuts:?}");
                }
            }
        }
        assert_eq!(shapes.len(), 3, "every shape is drawn: {shapes:?}");
        // With no live peer left, only an isolation makes sense.
        let (shape, _) = partition_shape("s3", &peers, &[], &mut rng);
        assert_eq!(shape, PartitionShape::Isolate);
    }

    #[test]
    fn nemesis_names_parse_and_print_back() {
        for name in [
            "kill",
            "pause",
            "partition",
            "mixed",
            "restart",
            "rolling-restart",
        ] {
            let kind: NemesisKind = name.parse().unwrap();
            assert_eq!(kind.to_string(), name);
            // The report's settings name it as the command line does.
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
        }
        assert!("crash".parse::<NemesisKind>().is_err());
    }
}
