//! The rolling restart (`dida faults --nemesis rolling-restart`): every storage node
//! restarted in turn, one at a time, while the clients run — the way an operator
//! upgrades a cluster.
//!
//! Each node in membership order is SIGKILLed at its moment of the plan (the suite
//! spreads them evenly from 10 % to 80 % of the run, [`rolling_times`], so the
//! cluster runs a while between restarts), started again at once with its original
//! command line, waited for until it answers its status, then given a settle period
//! before the next restart may start: the cluster must have every
//! node answering and none lost (the restarted one not fenced, nobody declared
//! failed by a majority) in two surveys in a row, at least [`SETTLE_AT_LEAST`] after
//! the restart. A node that does not settle within [`SETTLE_AT_MOST`] does not stop
//! the rolling restart; the fault budget does: a node is restarted only while fewer
//! than R − 1 nodes are lost, as for every other nemesis, so the cluster never has
//! more than R − 1 nodes down at once.
//!
//! A restart is one [`Fault`] of kind [`FaultKind::Restart`] and each node is
//! restarted once, so a rolling restart plans as many faults as there are nodes.

use std::time::Duration;

use dida_storage_client::StorageClient;

use dida_verify::history::RunClock;
use dida_verify::plan::{Fault, FaultKind};

use crate::nemesis::{primaries, restart, NemesisOutcome, NemesisPlan, SURVEY_DEADLINE};
use crate::processes::Processes;
use crate::survey;

/// How often the cluster is surveyed while a restarted node settles.
const SETTLE_POLL: Duration = Duration::from_millis(200);
/// The least time between a node answering again and the next restart.
pub const SETTLE_AT_LEAST: Duration = Duration::from_millis(500);
/// The most time a restarted node gets to settle before the next restart.
pub const SETTLE_AT_MOST: Duration = Duration::from_secs(10);

/// The moments of the restarts of `nodes` nodes in a run of `duration`: the window
/// from 10 % to 80 % of the run cut into one slot per node, each restart at the
/// start of its slot.
pub fn rolling_times(duration: Duration, nodes: usize) -> Vec<Duration> {
    let slot = duration.mul_f64(0.7) / u32::try_from(nodes.max(1)).unwrap_or(u32::MAX);
    (0..nodes)
        .map(|i| duration / 10 + slot * u32::try_from(i).unwrap_or(u32::MAX))
        .collect()
}

/// Restarts every node of `nodes` in turn; see the module documentation. Node `i`
/// is restarted at `plan.times[i]` or once the previous one settled, whichever is
/// later (at once if the plan has no moment for it).
pub(crate) async fn rolling_restart(
    cluster: &Processes,
    probe: &StorageClient,
    plan: &NemesisPlan,
    nodes: &[String],
    clock: RunClock,
) -> NemesisOutcome {
    let budget = plan.replication_factor.saturating_sub(1);
    let mut outcome = NemesisOutcome::default();
    for (index, node) in nodes.iter().enumerate() {
        if let Some(wait) = plan
            .times
            .get(index)
            .and_then(|at| at.checked_sub(clock.elapsed()))
        {
            tokio::time::sleep(wait).await;
        }
        let lost = survey::survey(probe, nodes, &outcome.killed, SURVEY_DEADLINE)
            .await
            .lost;
        if lost.len() >= budget {
            let lost_list: Vec<&str> = lost.iter().map(String::as_str).collect();
            tracing::warn!(%node, lost = ?lost_list, "rolling restart: fault budget spent; restart skipped");
            let fault = Fault::skipped(
                FaultKind::Restart,
                node.clone(),
                clock.now_ns(),
                &lost_list,
                budget,
            );
            outcome.faults.push(fault);
            continue;
        }
        let live: Vec<String> = nodes
            .iter()
            .filter(|n| !lost.contains(*n))
            .cloned()
            .collect();
        let led_keys: Vec<String> =
            primaries(&live, &plan.keys, plan.vnodes, plan.replication_factor)
                .into_iter()
                .find(|(id, _)| id == node)
                .map(|(_, keys)| keys.iter().map(|k| k.to_string()).collect())
                .unwrap_or_default();
        let fault = Fault::new(FaultKind::Restart, node.clone(), clock.now_ns(), led_keys);
        let fault = restart(cluster, probe, fault, Duration::ZERO, clock).await;
        if !cluster.is_running(node).await.unwrap_or(false) {
            outcome.killed.insert(node.clone());
        }
        let settled = settle(probe, nodes, &outcome).await;
        tracing::info!(%node, settled, at_s = clock.now_ns() as f64 / 1e9, "rolling restart: next node");
        outcome.faults.push(fault);
    }
    outcome
}

/// Surveys until every node not killed answers and none is lost, twice in a row and
/// at least [`SETTLE_AT_LEAST`] after the call, or [`SETTLE_AT_MOST`] passes; returns
/// whether the cluster settled.
async fn settle(probe: &StorageClient, nodes: &[String], outcome: &NemesisOutcome) -> bool {
    let started = tokio::time::Instant::now();
    let mut calm_in_a_row = 0;
    loop {
        let now = survey::survey(probe, nodes, &outcome.killed, SURVEY_DEADLINE).await;
        let calm = now.silent.is_empty() && now.lost.is_subset(&outcome.killed);
        calm_in_a_row = if calm { calm_in_a_row + 1 } else { 0 };
        if calm_in_a_row >= 2 && started.elapsed() >= SETTLE_AT_LEAST {
            return true;
        }
        if started.elapsed() >= SETTLE_AT_MOST {
            return false;
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_are_spread_evenly_over_the_middle_of_the_run() {
        let times = rolling_times(Duration::from_secs(20), 5);
        let seconds: Vec<f64> = times.iter().map(Duration::as_secs_f64).collect();
        assert_eq!(seconds, [2.0, 4.8, 7.6, 10.4, 13.2]);
        assert!(rolling_times(Duration::from_secs(20), 0).is_empty());
    }
}
