//! The simulator's own nemeses, beyond every fault budget by design: forged
//! declarations of every node (`declare-all`) and storms of false suspicions
//! (`storm`). Nothing crashes in either, so every acknowledged write must survive.
//! The budgeted kinds (kill, pause, partition, restart, mixed, leave, join, rolling
//! restart) run through the nemesis both back-ends share, `dida_verify::nemesis`.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;

use dida_proto::storage::{Liveness, MemberView, ProbeRequest};
use dida_verify::history::RunClock;
use dida_verify::plan::{Fault, FaultKind, Injector, NemesisKind};

use crate::cluster::Cluster;
use crate::process::ProcState;

/// Runs one episode of `kind` (declare-all or storm) at each of `times`, with the
/// choices drawn from `seed`, and returns what was done.
pub async fn beyond_budget(
    cluster: &Cluster,
    kind: NemesisKind,
    times: &[Duration],
    seed: u64,
    clock: RunClock,
) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut faults = Vec::new();
    for &at in times {
        if let Some(wait) = at.checked_sub(clock.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        if kind == NemesisKind::DeclareAll {
            faults.extend(declare_all(cluster, &mut rng, clock).await);
        } else {
            faults.extend(storm(cluster, &mut rng, clock).await);
        }
    }
    faults
}

/// Hands every running node a probe from another member declaring every node
/// failed, at the incarnation the receiver knows it by (so that it is believed).
async fn declare_all(cluster: &Cluster, rng: &mut StdRng, clock: RunClock) -> Vec<Fault> {
    let nodes = cluster.nodes();
    let mut faults = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        if cluster.process(n).state() != ProcState::Up {
            continue;
        }
        let from = (n + rng.random_range(1..nodes.len())) % nodes.len();
        let view = node
            .member_states()
            .into_iter()
            .map(|(id, state)| MemberView {
                id,
                incarnation: state.incarnation,
                liveness: Liveness::Failed as i32,
            })
            .collect();
        let probe = ProbeRequest {
            from: nodes[from].id().to_string(),
            view,
            config_epoch: 0,
        };
        let mut fault = Fault::new(
            FaultKind::Declare,
            node.id().to_string(),
            clock.now_ns(),
            vec![],
        );
        let refused = node.probe(probe).await.err();
        fault.error = refused.map(|status| format!("refused: {:?}", status.code()));
        fault.confirmed = fault.error.is_none();
        fault.end_ns = Some(clock.now_ns());
        cluster.note(format_args!(
            "nemesis: forged declarations to {}: {:?}",
            node.id(),
            fault.error
        ));
        faults.push(fault);
    }
    faults
}

/// Pauses two to all nodes at staggered moments (0–1.2 s apart), each for 2.5–5 s,
/// about once to twice the time it takes to declare a silent node, then resumes
/// them all.
async fn storm(cluster: &Cluster, rng: &mut StdRng, clock: RunClock) -> Vec<Fault> {
    let nodes = cluster.len();
    let count = rng.random_range(2..=nodes);
    let first = rng.random_range(0..nodes);
    let mut paused: Vec<(Instant, Fault)> = Vec::new();
    for i in 0..count {
        let victim = (first + i) % nodes;
        let gap = Duration::from_millis(rng.random_range(0..1200));
        let length = Duration::from_millis(rng.random_range(2500..5000));
        tokio::time::sleep(gap).await;
        if cluster.process(victim).state() != ProcState::Up {
            continue;
        }
        let id = cluster.node(victim).id().to_string();
        let mut fault = Fault::new(FaultKind::Pause, id.clone(), clock.now_ns(), vec![]);
        cluster.note(format_args!("nemesis: storm pauses {id} for {length:?}"));
        fault.error = cluster.pause(&id).await.err().map(|e| e.to_string());
        paused.push((Instant::now() + length, fault));
    }
    paused.sort_by_key(|(at, _)| *at);
    let mut faults = Vec::new();
    for (at, mut fault) in paused {
        tokio::time::sleep_until(at).await;
        if let Err(error) = cluster.resume(&fault.node).await {
            fault.error.get_or_insert(error.to_string());
        }
        fault.confirmed = fault.error.is_none();
        fault.end_ns = Some(clock.now_ns());
        faults.push(fault);
    }
    faults
}
