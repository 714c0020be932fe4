//! The simulated nemesis: kills, restarts, pauses and partitions, drawn from the
//! run's seed.
//!
//! A run has one to three fault episodes, one after another in the middle of the
//! workload, each followed by time to detect and repair. Which kinds a seed draws
//! is fixed by the seed ([`NemesisKind::of_seed`]), so every kind is exercised in a
//! known share of the seeds. The victim is, half of the time, the primary of one of
//! the workload's keys (a paused or isolated primary is the case the fence exists
//! for), otherwise any node still in service.
//!
//! Faults are budgeted: with `--write-acks A ≥ 2` the cluster promises to keep
//! acknowledged writes while at most A − 1 nodes are lost (crashed, or declared
//! failed after a pause or a partition), so no episode starts once that many are
//! lost. A single episode can still lose more (a partial partition can make a node
//! declare a healthy peer failed); the run then reports itself beyond tolerance
//! and its loss checks are skipped.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::RngExt;
use serde::Serialize;
use tokio::time::Instant;

use dida_proto::storage::{Liveness, MemberView, ProbeRequest};
use dida_verify::plan::{InjectError, Injector, NemesisKind};

use crate::cluster::Cluster;
use crate::process::ProcState;
use crate::trace::Trace;

/// One fault as injected.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    /// What was done, e.g. `pause s3` or `isolate s1 (outgoing only)`.
    pub what: String,
    /// Simulated seconds since the start of the run.
    pub start_s: f64,
    /// When it was undone (`None` for a kill; a restart's is when the node was
    /// started again).
    pub end_s: Option<f64>,
}

/// What the nemesis works on.
#[derive(Debug, Clone)]
pub struct Nemesis {
    /// The run's nodes, their processes and the network between them.
    pub cluster: Arc<Cluster>,
    /// The workload's keys (victims are often their primaries).
    pub keys: Vec<String>,
    /// How many nodes may be lost before no more faults start.
    pub budget: usize,
    /// The run's seeded generator.
    pub rng: Arc<Mutex<StdRng>>,
    /// The run's trace.
    pub trace: Arc<Trace>,
}

/// The nodes lost now: crashed, or out of the ring (declared failed, or restarted
/// and still catching up, so holding less than its share) in the view of some node
/// still running.
pub fn lost_nodes(cluster: &Cluster) -> BTreeSet<usize> {
    let nodes = cluster.nodes();
    let processes = cluster.processes();
    let mut lost: BTreeSet<usize> = (0..nodes.len())
        .filter(|&n| processes[n].state() == ProcState::Crashed)
        .collect();
    for (n, node) in nodes.iter().enumerate() {
        if processes[n].state() == ProcState::Crashed {
            continue;
        }
        for (index, (_, state)) in node.member_states().into_iter().enumerate() {
            if !state.in_ring() {
                lost.insert(index);
            }
        }
    }
    lost
}

impl Nemesis {
    fn draw<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        f(&mut self.rng.lock().expect("rng lock poisoned"))
    }

    /// A node still in service to hit: half of the time the primary of a workload
    /// key as a serving node sees it, otherwise any node not yet lost.
    fn victim(&self) -> Option<usize> {
        let lost = lost_nodes(&self.cluster);
        let candidates: Vec<usize> = (0..self.cluster.len())
            .filter(|n| !lost.contains(n))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let (primary_wanted, key, pick) = self.draw(|rng| {
            (
                rng.random_bool(0.5),
                rng.random_range(0..self.keys.len()),
                rng.random_range(0..candidates.len()),
            )
        });
        if primary_wanted {
            let observer = self.cluster.node(candidates[0]);
            let primary = observer.ring().primary(&self.keys[key]);
            if let Some(primary) = primary.filter(|p| candidates.contains(p)) {
                return Some(primary);
            }
        }
        Some(candidates[pick])
    }

    /// Runs the episodes of `kind` between `from` and `to` (offsets from `start`),
    /// and returns what was injected. Every fault it starts, it ends (but kills).
    pub async fn run(
        self,
        kind: NemesisKind,
        start: Instant,
        from: Duration,
        to: Duration,
    ) -> Vec<FaultRecord> {
        let episodes = self.draw(|rng| rng.random_range(1..=3u32));
        let slot = (to - from) / episodes;
        let mut records = Vec::new();
        for episode in 0..episodes {
            let slot_start = start + from + slot * episode;
            let (offset, length, kind_roll, shape) = self.draw(|rng| {
                (
                    Duration::from_millis(rng.random_range(0..1000)),
                    Duration::from_millis(rng.random_range(500..5000)),
                    rng.random_range(0..4u32),
                    rng.random_range(0..3u32),
                )
            });
            // Drawn apart, after the others, so that seeds drawn before restarts
            // could keep their data still run as they did.
            let keep_data = self.draw(|rng| rng.random_bool(0.5));
            tokio::time::sleep_until(slot_start + offset).await;
            let length = length.min(slot.saturating_sub(offset + Duration::from_secs(3)));
            if kind.keeps_every_process() {
                records.push(self.beyond_budget(kind, start).await);
                continue;
            }
            if lost_nodes(&self.cluster).len() >= self.budget {
                self.trace
                    .event(format_args!("nemesis: fault budget spent, no more faults"));
                break;
            }
            let Some(victim) = self.victim() else { break };
            let this = match kind {
                NemesisKind::Mixed => NemesisKind::MIXED[kind_roll as usize],
                other => other,
            };
            let id = self.cluster.node(victim).id().to_string();
            let started = Instant::now().duration_since(start).as_secs_f64();
            let what = match this {
                NemesisKind::Kill => {
                    self.inject(self.cluster.kill(&id).await);
                    format!("kill {id}")
                }
                NemesisKind::Restart => {
                    self.inject(self.cluster.kill(&id).await);
                    let data = if keep_data { "on its data" } else { "empty" };
                    format!("kill {id}, restart {data} after {length:?}")
                }
                NemesisKind::Pause => {
                    self.inject(self.cluster.pause(&id).await);
                    format!("pause {id} for {length:?}")
                }
                _ => self.partition(victim, shape, length).await,
            };
            self.trace.event(format_args!("nemesis: {what}"));
            if this == NemesisKind::Kill {
                records.push(FaultRecord {
                    what,
                    start_s: started,
                    end_s: None,
                });
                continue;
            }
            tokio::time::sleep(length).await;
            if this == NemesisKind::Restart {
                self.inject(self.cluster.restart(&id, keep_data).await);
            } else {
                self.inject(self.cluster.resume(&id).await);
            }
            self.cluster.heal().await;
            self.trace.event(format_args!("nemesis: healed ({what})"));
            records.push(FaultRecord {
                what,
                start_s: started,
                end_s: Some(Instant::now().duration_since(start).as_secs_f64()),
            });
        }
        records
    }

    /// One episode of a kind that ignores the budget ([`NemesisKind::keeps_every_process`]).
    async fn beyond_budget(&self, kind: NemesisKind, start: Instant) -> FaultRecord {
        let started = Instant::now().duration_since(start).as_secs_f64();
        let what = match kind {
            NemesisKind::DeclareAll => self.declare_all().await,
            _ => self.storm().await,
        };
        self.trace.event(format_args!("nemesis: {what}"));
        FaultRecord {
            what,
            start_s: started,
            end_s: Some(Instant::now().duration_since(start).as_secs_f64()),
        }
    }

    /// Hands every running node a probe from another member declaring every node
    /// failed, at the incarnation the receiver knows it by (so that it is believed).
    async fn declare_all(&self) -> String {
        let nodes = self.cluster.nodes();
        let mut answered = Vec::new();
        for (n, node) in nodes.iter().enumerate() {
            if self.cluster.process(n).state() != ProcState::Up {
                continue;
            }
            let from = self.draw(|rng| (n + rng.random_range(1..nodes.len())) % nodes.len());
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
            };
            let outcome = match node.probe(probe).await {
                Ok(_) => "believed".to_string(),
                Err(status) => format!("{:?}", status.code()),
            };
            answered.push(format!("{}: {outcome}", node.id()));
        }
        format!(
            "forged probes declaring every node failed ({})",
            answered.join(", ")
        )
    }

    /// Pauses two to all nodes at staggered moments (0–1.2 s apart), each for
    /// 2.5–5 s, then resumes them all.
    async fn storm(&self) -> String {
        let nodes = self.cluster.len();
        let count = self.draw(|rng| rng.random_range(2..=nodes));
        let first = self.draw(|rng| rng.random_range(0..nodes));
        let mut paused = Vec::new();
        let mut resume_at = Vec::new();
        for i in 0..count {
            let victim = (first + i) % nodes;
            let (gap, length) = self.draw(|rng| {
                (
                    Duration::from_millis(rng.random_range(0..1200)),
                    Duration::from_millis(rng.random_range(2500..5000)),
                )
            });
            tokio::time::sleep(gap).await;
            if self.cluster.process(victim).state() != ProcState::Up {
                continue;
            }
            let id = self.cluster.node(victim).id().to_string();
            self.inject(self.cluster.pause(&id).await);
            paused.push(format!("{id} for {length:?}"));
            resume_at.push((Instant::now() + length, id));
        }
        resume_at.sort();
        for (at, id) in resume_at {
            tokio::time::sleep_until(at).await;
            self.inject(self.cluster.resume(&id).await);
        }
        format!("storm of pauses: {}", paused.join(", "))
    }

    /// Traces a fault that could not be injected (none can fail in the simulator
    /// but for a bug in it, which the trace then shows).
    fn inject(&self, done: Result<(), InjectError>) {
        if let Err(error) = done {
            self.trace.event(format_args!("nemesis: {error}"));
        }
    }

    /// Cuts the links `from` → each of `to` (and back, if `both_ways`).
    async fn cut(&self, from: &str, to: &[&str], both_ways: bool) {
        for &peer in to {
            self.inject(self.cluster.cut(from, peer).await);
            if both_ways {
                self.inject(self.cluster.cut(peer, from).await);
            }
        }
    }

    /// Cuts `victim` off in one of three shapes, and says how.
    async fn partition(&self, victim: usize, shape: u32, length: Duration) -> String {
        let nodes = self.cluster.nodes();
        let id = nodes[victim].id();
        let others: Vec<&str> = (0..nodes.len())
            .filter(|&n| n != victim)
            .map(|n| nodes[n].id())
            .collect();
        match shape {
            0 => {
                self.cut(id, &others, true).await;
                format!("isolate {id} for {length:?}")
            }
            1 => {
                self.cut(id, &others, false).await;
                format!("cut {id}'s outgoing links (asymmetric) for {length:?}")
            }
            _ => {
                let count = self.draw(|rng| rng.random_range(1..others.len()));
                let first = self.draw(|rng| rng.random_range(0..others.len()));
                let cut: Vec<&str> = (0..count)
                    .map(|i| others[(first + i) % others.len()])
                    .collect();
                self.cut(id, &cut, true).await;
                format!("cut {id} from {} for {length:?}", cut.join(","))
            }
        }
    }
}
