//! One simulated run, from a seed to a report.
//!
//! The run happens on a single-threaded tokio runtime with its clock paused: time
//! advances only when every task waits for a timer, straight to the next one. With
//! one thread, no real I/O and every random choice drawn from the seeded generator,
//! a seed replays the same run event for event (the trace's fingerprint shows it).
//!
//! Timeline (simulated): the clients run from 0 to 26 s; one to three faults of the
//! seed's plan (`dida_verify::plan`) start between 2.6 s and 20.8 s, each undone
//! (but kills) before the next and before 20.8 s; from 26 s the cluster has until
//! 40 s to detect, repair and converge; then the checks run.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use dida_core::{MemberState, Membership};
use dida_storage::StorageConfig;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use tokio::time::Instant;

use dida_verify::history::{Operation, RunClock};
use dida_verify::nemesis::{self, Setup};
use dida_verify::plan::{self, Fault, NemesisKind, Schedule};
use dida_verify::workload::{run_storage_client, storage_keys, StorageWorkload};

use crate::checks::{Finding, Outcome};
use crate::cluster::{lost_nodes, Cluster, FIRST_PORT};
use crate::forger::{forged_values_kept, Forger};
use crate::nemesis::beyond_budget;
use crate::network::{LinkFaults, Network};
use crate::process::ProcState;
use crate::sim_kv::SimKv;
use crate::trace::Trace;

const NODES: usize = 5;
const REPLICATION_FACTOR: usize = 3;
const VNODES: u32 = 16;
const CLIENTS: usize = 4;
const KEYS: usize = 4;
const WORKLOAD_UNTIL: Duration = Duration::from_secs(26);
const CHECK_AT: Duration = Duration::from_secs(40);
/// The forger starts once every node has joined.
const FORGERIES_FROM: Duration = Duration::from_secs(1);

/// What to simulate, beyond the seed.
#[derive(Debug, Clone, Default)]
pub struct SimConfig {
    /// `--write-acks` of every node; by default 2 or 3, drawn by the seed.
    pub write_acks: Option<usize>,
    /// The nemesis; by default the seed's ([`NemesisKind::of_seed`]).
    pub nemesis: Option<NemesisKind>,
    /// `--probe-fanout` of every node; by default the platform's (3). The
    /// simulated cluster has 5 nodes, so only a fan-out of 1 to 3 probes a subset
    /// of the peers each period.
    pub probe_fanout: Option<usize>,
    /// Keep the text of every event.
    pub trace: bool,
    /// Turns the fence of invariant D2 off, to show the checks catch its absence.
    pub break_fence: bool,
    /// Acknowledges writes before the other `--write-acks` replicas hold them (a
    /// deliberate bug, [`dida_storage::StorageConfig::await_acks`] off), to show
    /// the checks catch the writes that loses.
    pub break_acks: bool,
}

/// What one seed's run did and what the checks found. As JSON it is one `seed`
/// event (`"event":"seed"`), the one shape of every command's `--json`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename = "seed")]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// The nemesis it ran.
    pub nemesis: NemesisKind,
    /// `--write-acks` of the nodes.
    pub write_acks: usize,
    /// `--max-versions` of the nodes.
    pub max_versions: usize,
    /// The faults injected (or skipped, the budget spent), in order.
    pub faults: Vec<Fault>,
    /// Nodes lost by the end (crashed or declared failed).
    pub lost_nodes: Vec<String>,
    /// The most nodes lost at one time during the faults (crashed, declared
    /// failed, or rejoining).
    pub peak_lost: usize,
    /// More nodes were lost than `--write-acks` tolerates: loss checks skipped.
    pub beyond_tolerance: bool,
    /// Writes, CAS and reads recorded.
    pub operations: usize,
    /// Of those, acknowledged with a version.
    pub acknowledged: usize,
    /// Of those, with an unknown outcome.
    pub unknown: usize,
    /// Acknowledged writes no serving node holds, under the one rule of
    /// [`dida_verify::lost_writes`] (a finding only when they had to survive).
    pub lost_acknowledged: usize,
    /// Forged replication messages sent to the nodes (all must be refused).
    pub forgeries: usize,
    /// Broken invariants; empty for a passing run.
    pub findings: Vec<Finding>,
    /// Events in the trace, and their fingerprint (equal for equal runs).
    pub events: u64,
    /// See `events`.
    pub fingerprint: u64,
    /// The trace's text, when asked for.
    #[serde(skip)]
    pub trace: Vec<String>,
}

impl SeedReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Simulates `seed`.
pub fn run_seed(seed: u64, config: &SimConfig) -> anyhow::Result<SeedReport> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .context("could not build the simulation's runtime")?;
    runtime.block_on(simulate(seed, config))
}

async fn simulate(seed: u64, config: &SimConfig) -> anyhow::Result<SeedReport> {
    let start = Instant::now();
    let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(seed)));
    let nemesis_kind = config.nemesis.unwrap_or_else(|| NemesisKind::of_seed(seed));
    let write_acks = config.write_acks.unwrap_or(2 + ((seed / 4) % 2) as usize);
    let (max_versions, gossip_delay, faults) = {
        let mut rng = rng.lock().expect("rng lock poisoned");
        let max_versions = if rng.random_range(0..2u64) == 0 {
            3
        } else {
            1000
        };
        let gossip_delay = Duration::from_millis(rng.random_range(0..30u64));
        let faults = LinkFaults {
            delay_ms: (1, rng.random_range(2..20u64)),
            loss: rng.random_range(0..30u64) as f64 / 1000.0,
            duplicate: rng.random_range(0..30u64) as f64 / 1000.0,
        };
        (max_versions, gossip_delay, faults)
    };
    let trace = Arc::new(Trace::new(config.trace));
    trace.event(format_args!(
        "seed {seed}: nemesis {nemesis_kind}, --write-acks {write_acks}, --max-versions {max_versions}, \
         gossip delay {gossip_delay:?}, {faults:?}, probe fan-out {}, fence {}, acks awaited {}",
        config
            .probe_fanout
            .map_or_else(|| "default".to_string(), |f| f.to_string()),
        if config.break_fence { "OFF" } else { "on" },
        if config.break_acks { "NO" } else { "yes" }
    ));

    let ids: Vec<String> = (1..=NODES).map(|i| format!("s{i}")).collect();
    let membership = Membership::new(
        ids.iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), format!("http://127.0.0.1:{}", FIRST_PORT + i))),
    )?;
    let rpc_deadline = Duration::from_secs(1);
    let network = Network::new(
        ids.clone(),
        rng.clone(),
        faults,
        rpc_deadline,
        trace.clone(),
    );
    let configs = ids
        .iter()
        .map(|id| {
            let mut node_config = StorageConfig::new(id.clone(), membership.clone());
            node_config.replication_factor = REPLICATION_FACTOR;
            node_config.max_versions = max_versions;
            node_config.write_acks = write_acks;
            node_config.vnodes = VNODES;
            node_config.gossip_delay = gossip_delay;
            node_config.anti_entropy_interval = Duration::from_millis(250);
            node_config.rpc_deadline = rpc_deadline;
            node_config.ack_timeout = Duration::from_secs(2);
            node_config.fence = !config.break_fence;
            node_config.await_acks = !config.break_acks;
            if let Some(fanout) = config.probe_fanout {
                node_config.probe_fanout = fanout;
            }
            node_config
        })
        .collect();
    let cluster = Cluster::new(network.clone(), configs);
    for index in 0..NODES {
        cluster.start(index, false)?;
    }

    let regressions = Arc::new(Mutex::new(Vec::new()));
    let lost_samples = Arc::new(Mutex::new(LostSamples::default()));
    let monitor = tokio::spawn(watch_views(
        cluster.clone(),
        trace.clone(),
        regressions.clone(),
    ));
    let counter = tokio::spawn(count_lost(cluster.clone(), start, lost_samples.clone()));
    let keys = storage_keys(KEYS);
    let workload = StorageWorkload {
        keys: Arc::new(keys.clone()),
        duration: WORKLOAD_UNTIL,
        op_deadline: Duration::from_secs(10),
        max_think: Duration::from_millis(30),
        error_backoff: Duration::from_millis(20),
    };
    let clock = RunClock::start();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let kv = SimKv {
                network: network.clone(),
                me: c,
                deadline: Duration::from_secs(10),
                rng: rng.clone(),
                trace: trace.clone(),
            };
            let client_seed = rng
                .lock()
                .expect("rng lock poisoned")
                .random_range(0..u64::MAX);
            let id = u32::try_from(c + 1).unwrap_or(u32::MAX);
            tokio::spawn(run_storage_client(
                id,
                kv,
                workload.clone(),
                clock,
                client_seed,
            ))
        })
        .collect();
    let forgeries_accepted = Arc::new(Mutex::new(Vec::new()));
    let forger = tokio::spawn(
        Forger::new(
            seed,
            cluster.clone(),
            keys.clone(),
            trace.clone(),
            forgeries_accepted.clone(),
        )
        .run(start + FORGERIES_FROM, start + WORKLOAD_UNTIL),
    );
    let budget = if write_acks >= 2 {
        write_acks - 1
    } else {
        REPLICATION_FACTOR - 1
    };
    let episodes = rng.lock().expect("rng lock poisoned").random_range(1..=3);
    let schedule = Schedule {
        duration: WORKLOAD_UNTIL,
        faults: episodes,
        nodes: NODES,
        lengths: (Duration::from_millis(500), Duration::from_millis(5000)),
    };
    let faults = if nemesis_kind.keeps_every_process() {
        let mut draws = StdRng::seed_from_u64(seed);
        let times = plan::fault_times(WORKLOAD_UNTIL, episodes, &mut draws);
        beyond_budget(&cluster, nemesis_kind, &times, seed, clock).await
    } else {
        let setup = Setup {
            keys,
            vnodes: VNODES,
            replication_factor: REPLICATION_FACTOR,
            budget,
            keeps_data: true,
            settle_between: nemesis_kind == NemesisKind::RollingRestart,
        };
        let plan = plan::plan(seed, nemesis_kind, &schedule);
        nemesis::run(&*cluster, &plan, &setup, clock).await
    };
    let mut history: Vec<Operation> = Vec::new();
    for client in clients {
        history.extend(client.await.context("a simulated client panicked")?);
    }
    history.sort_by_key(|op| (op.invoked_ns, op.client));
    for (id, op) in history.iter_mut().enumerate() {
        op.id = id as u64;
        trace.event(format_args!(
            "op {id} by client {} on {:?}: {:?} -> {:?} (invoked at {:.3}s)",
            op.client,
            op.key,
            op.kind,
            op.result,
            op.invoked_ns as f64 / 1e9
        ));
    }
    let forgeries = forger.await.context("the simulated forger panicked")?;
    tokio::time::sleep_until(start + CHECK_AT).await;
    monitor.abort();
    counter.abort();
    trace.event(format_args!("checks"));

    let lost: BTreeSet<usize> = lost_nodes(&cluster);
    // Nodes lost count against the budget from the first fault on: every node is
    // out of the ring while the cluster forms, which may take seconds when the
    // network drops messages.
    let first_fault = Duration::from_nanos(faults.first().map_or(u64::MAX, |f| f.at_ns));
    let (most_lost, ever_lost) = {
        let samples = lost_samples.lock().expect("lost samples lock poisoned");
        (samples.most_since(first_fault), samples.ever.clone())
    };
    let beyond_tolerance = lost.len().max(most_lost) > budget;
    let nodes = cluster.nodes();
    let processes = cluster.processes();
    let retired = cluster.retired();
    let removed = cluster.removed();
    let joined = cluster.joined();
    // Each node's replica number, as the configuration it was started with gives
    // it (joined nodes' included).
    let replicas = nodes
        .iter()
        .map(|node| {
            let membership = node.cluster_config().membership()?;
            Ok(membership.get(node.id())?.replica)
        })
        .collect::<anyhow::Result<Vec<u32>>>()?;
    let ids: Vec<String> = nodes.iter().map(|node| node.id().to_string()).collect();
    let outcome = Outcome {
        nodes: &nodes,
        processes: &processes,
        retired: &retired,
        ever_lost: &ever_lost,
        removed: &removed,
        joined: &joined,
        replicas: &replicas,
        vnodes: VNODES,
        replication_factor: REPLICATION_FACTOR,
        max_versions,
        history: &history,
        acknowledged_must_survive: write_acks >= 2
            && (!beyond_tolerance || nemesis_kind.keeps_every_process()),
    };
    let (mut findings, lost_acknowledged) = outcome.check();
    findings.extend(
        regressions
            .lock()
            .expect("regressions lock poisoned")
            .drain(..)
            .map(|detail| Finding {
                invariant: "D1",
                detail,
            }),
    );
    let stores: Vec<Arc<dida_storage::Node>> = nodes.iter().chain(&retired).cloned().collect();
    let forgeries_accepted = forgeries_accepted
        .lock()
        .expect("forgeries lock poisoned")
        .drain(..)
        .chain(forged_values_kept(&stores))
        .collect::<Vec<_>>();
    findings.extend(forgeries_accepted.into_iter().map(|detail| Finding {
        invariant: "R1",
        detail,
    }));
    for finding in &findings {
        trace.event(format_args!(
            "FAILED {}: {}",
            finding.invariant, finding.detail
        ));
    }
    let (events, fingerprint) = trace.fingerprint();
    Ok(SeedReport {
        seed,
        nemesis: nemesis_kind,
        write_acks,
        max_versions,
        faults,
        lost_nodes: lost.iter().map(|&n| ids[n].clone()).collect(),
        peak_lost: most_lost,
        beyond_tolerance,
        operations: history.len(),
        acknowledged: history
            .iter()
            .filter(|op| op.acknowledged_write().is_some())
            .count(),
        unknown: history.iter().filter(|op| op.is_unknown()).count(),
        lost_acknowledged,
        forgeries,
        findings,
        events,
        fingerprint,
        trace: trace.take_lines(),
    })
}

/// How many nodes were lost at each moment sampled, and every node lost at some
/// point: with rejoins, nodes lost during the run may all be back by its end, but
/// acknowledged writes survive only while no more than the budget are lost at any
/// one time.
#[derive(Debug, Default)]
struct LostSamples {
    /// (time since the start, nodes lost then), every 50 ms.
    counts: Vec<(Duration, usize)>,
    /// Every node lost at some point (the cluster's formation included: that
    /// counts for who may have led a key).
    ever: BTreeSet<usize>,
}

impl LostSamples {
    /// The most nodes lost at one time from `from` on.
    fn most_since(&self, from: Duration) -> usize {
        let since = self.counts.iter().filter(|(at, _)| *at >= from);
        since.map(|&(_, lost)| lost).max().unwrap_or(0)
    }
}

/// Samples the nodes lost every 50 ms from `start` on into `samples`.
async fn count_lost(cluster: Arc<Cluster>, start: Instant, samples: Arc<Mutex<LostSamples>>) {
    loop {
        let lost = lost_nodes(&cluster);
        {
            let mut samples = samples.lock().expect("lost samples lock poisoned");
            samples.counts.push((Instant::now() - start, lost.len()));
            samples.ever.extend(lost);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// D1 while the run goes on: samples every running node's view every 50 ms and
/// reports any member state that moved backwards (a state replaced by one it
/// supersedes); traces every change. A restarted node's view starts afresh.
async fn watch_views(
    cluster: Arc<Cluster>,
    trace: Arc<Trace>,
    regressions: Arc<Mutex<Vec<String>>>,
) {
    // Per node: which start of it was sampled, and its view then.
    type Sample = (u64, Vec<(String, MemberState)>);
    let mut last: Vec<Option<Sample>> = vec![None; cluster.len()];
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let nodes = cluster.nodes();
        // Nodes that joined meanwhile have had no sample yet.
        last.resize(nodes.len(), None);
        for (n, node) in nodes.iter().enumerate() {
            if cluster.process(n).state() == ProcState::Crashed {
                continue;
            }
            let now = node.member_states();
            let process_start = node.incarnation() / crate::cluster::INCARNATION_STEP;
            if let Some((start, before)) = &last[n] {
                if *start == process_start {
                    if *before == now {
                        continue;
                    }
                    for ((id, old), (_, new)) in before.iter().zip(&now) {
                        if old.supersedes(new) {
                            regressions
                                .lock()
                                .expect("regressions lock poisoned")
                                .push(format!(
                                    "{}'s view of {id} went back from {}@{} to {}@{}",
                                    node.id(),
                                    old.liveness,
                                    old.incarnation,
                                    new.liveness,
                                    new.incarnation
                                ));
                        }
                    }
                }
            }
            let shown: Vec<String> = now
                .iter()
                .filter(|(_, state)| !state.in_ring())
                .map(|(id, state)| format!("{id}={}@{}", state.liveness, state.incarnation))
                .collect();
            trace.event(format_args!(
                "view of {}@{}: out {shown:?}{}",
                node.id(),
                node.incarnation(),
                if node.is_fenced() { " (fenced)" } else { "" }
            ));
            last[n] = Some((process_start, now));
        }
    }
}
