//! The checks run after every simulated run, once faults are healed and the
//! cluster has had time to converge. Each finding names the invariant of
//! docs/protocols.md it breaks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use dida_core::{ClusterConfig, Liveness, Ring, Standing, Version};
use dida_storage::Node;
use dida_verify::at_rest::{divergence, extra_holders, Holdings};
use dida_verify::history::Operation;
use dida_verify::linearizability::{check_key, SearchLimits, Verdict};
use dida_verify::lost_writes::{acknowledged_writes, count_lost, node_contents, Snapshot};
use serde::Serialize;

use crate::process::{ProcState, Process};

/// One broken invariant.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The invariant, as docs/protocols.md names it (or `lost-write`,
    /// `linearizability`).
    pub invariant: &'static str,
    /// What was seen.
    pub detail: String,
}

/// Everything the checks look at.
#[derive(Debug)]
pub struct Outcome<'a> {
    /// The nodes, by index.
    pub nodes: &'a [Arc<Node>],
    /// Their processes.
    pub processes: &'a [Arc<Process>],
    /// Nodes replaced by a restart (their stores still count for V1 and W2).
    pub retired: &'a [Arc<Node>],
    /// Every node that was out of some running node's ring at some point.
    pub ever_lost: &'a BTreeSet<usize>,
    /// The nodes removed from the cluster (a leave): stopped, no longer members,
    /// having handed everything off.
    pub removed: &'a BTreeSet<usize>,
    /// The nodes that joined the cluster during the run: out of every ring before
    /// they did, so counted like lost ones among the possible primaries of W2.
    pub joined: &'a BTreeSet<usize>,
    /// The replica number of each node (creators of versions).
    pub replicas: &'a [u32],
    /// Ring parameters shared by every node.
    pub vnodes: u32,
    /// Replication factor.
    pub replication_factor: usize,
    /// Versions kept per key.
    pub max_versions: usize,
    /// Every operation the clients recorded.
    pub history: &'a [Operation],
    /// Whether acknowledged writes must all survive (write-acks ≥ 2 and the loss
    /// within the fault budget).
    pub acknowledged_must_survive: bool,
}

impl Outcome<'_> {
    fn serving(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&n| {
                self.processes[n].state() != ProcState::Crashed && !self.nodes[n].is_fenced()
            })
            .collect()
    }

    /// Runs every check; returns the findings and how many acknowledged writes no
    /// serving replica holds (reported even when they may be lost).
    pub fn check(&self) -> (Vec<Finding>, usize) {
        let mut findings = Vec::new();
        let serving = self.serving();
        self.views(&serving, &mut findings);
        self.versions(&mut findings);
        self.convergence(&serving, &mut findings);
        self.placement(&serving, &mut findings);
        let lost = self.lost_writes(&serving, &mut findings);
        if self.acknowledged_must_survive {
            self.order(&mut findings);
            self.linearizability(&mut findings);
        }
        (findings, lost)
    }

    /// D3 at the end: the running nodes' views converged — every running node is
    /// alive at its own incarnation (none still fenced or joining), every crashed
    /// one is failed (removed members aside: no one watches them any more) — and
    /// so did their configurations ([`Outcome::configurations`]).
    fn views(&self, serving: &[usize], findings: &mut Vec<Finding>) {
        self.configurations(serving, findings);
        for (n, node) in self.nodes.iter().enumerate() {
            let crashed = self.processes[n].state() == ProcState::Crashed;
            if !crashed && !serving.contains(&n) {
                findings.push(Finding {
                    invariant: "D3",
                    detail: format!("{} still runs but is fenced at the end", node.id()),
                });
            }
        }
        for &observer in serving {
            for (member, (id, state)) in
                self.nodes[observer].member_states().into_iter().enumerate()
            {
                // Removed members no one watches; a member admitted that the
                // simulator never started (a join that failed) has no process.
                if self.removed.contains(&member) || member >= self.nodes.len() {
                    continue;
                }
                let crashed = self.processes[member].state() == ProcState::Crashed;
                let expected = if crashed {
                    state.liveness == Liveness::Failed
                } else {
                    state.liveness == Liveness::Alive
                        && state.incarnation == self.nodes[member].incarnation()
                };
                if !expected {
                    findings.push(Finding {
                        invariant: "D3",
                        detail: format!(
                            "{} sees {id} {}@{}, but it {}",
                            self.nodes[observer].id(),
                            state.liveness,
                            state.incarnation,
                            if crashed {
                                "crashed".to_string()
                            } else {
                                format!("runs at incarnation {}", self.nodes[member].incarnation())
                            }
                        ),
                    });
                }
            }
        }
    }

    /// D3 for membership: every serving node knows every member (a node that
    /// joined included), holds the same decided configuration, and no change is
    /// left half done in it (a member still joining or leaving would block every
    /// later change).
    fn configurations(&self, serving: &[usize], findings: &mut Vec<Finding>) {
        let mut first: Option<(&str, ClusterConfig)> = None;
        for &n in serving {
            let node = &self.nodes[n];
            let known = node.member_states().len();
            if known != self.nodes.len() {
                findings.push(Finding {
                    invariant: "D3",
                    detail: format!(
                        "{} knows {known} members, but the cluster has {}",
                        node.id(),
                        self.nodes.len()
                    ),
                });
            }
            let config = node.cluster_config();
            for member in &config.members {
                if matches!(member.standing, Standing::Joining | Standing::Leaving) {
                    findings.push(Finding {
                        invariant: "D3",
                        detail: format!(
                            "{} lists {} as {:?} at the end (epoch {})",
                            node.id(),
                            member.id,
                            member.standing,
                            config.epoch
                        ),
                    });
                }
            }
            match &first {
                None => first = Some((node.id(), config)),
                Some((other, theirs)) if *theirs != config => findings.push(Finding {
                    invariant: "D3",
                    detail: format!(
                        "{} holds configuration epoch {} and {other} epoch {}",
                        node.id(),
                        config.epoch,
                        theirs.epoch
                    ),
                }),
                Some(_) => {}
            }
        }
    }

    /// V1 (a version names one value everywhere), V2 (at most `max_versions` per
    /// key per replica) and W2 (only a node that was the key's primary in some
    /// view creates its versions), over every node's store, crashed ones included.
    /// The store of a node replaced by a restart counts for W2 only: what it held
    /// died with its process (or lives on in its successor's store, on a data
    /// directory), so a version number it used for a write nobody else received
    /// may be used again.
    fn versions(&self, findings: &mut Vec<Finding>) {
        let ids: Vec<&str> = self.nodes.iter().map(|n| n.id()).collect();
        let lost: Vec<usize> = self
            .ever_lost
            .iter()
            .chain(self.removed)
            .chain(self.joined)
            .copied()
            .collect::<BTreeSet<usize>>()
            .into_iter()
            .collect();
        let mut values: BTreeMap<(String, Version), (String, &str)> = BTreeMap::new();
        let mut primaries: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
        let retired = self.retired.iter().map(|node| (node, true));
        for (node, replaced) in self.nodes.iter().map(|node| (node, false)).chain(retired) {
            let records = node.store().records();
            let mut per_key: BTreeMap<&str, usize> = BTreeMap::new();
            for record in &records {
                *per_key.entry(&record.key).or_default() += 1;
                let slot = (record.key.clone(), record.version);
                match values.get(&slot) {
                    _ if replaced => {}
                    Some((value, holder)) if *value != record.value => findings.push(Finding {
                        invariant: "V1",
                        detail: format!(
                            "version {} of {:?} is {:?} on {holder} but {:?} on {}",
                            record.version,
                            record.key,
                            value,
                            record.value,
                            node.id()
                        ),
                    }),
                    Some(_) => {}
                    None => {
                        values.insert(slot, (record.value.clone(), node.id()));
                    }
                }
                let possible = primaries
                    .entry(record.key.clone())
                    .or_insert_with(|| self.possible_primaries(&ids, &lost, &record.key));
                let creator = self
                    .replicas
                    .iter()
                    .position(|&r| r == record.version.replica);
                if !creator.is_some_and(|c| possible.contains(&c)) {
                    findings.push(Finding {
                        invariant: "W2",
                        detail: format!(
                            "version {} of {:?} was created by replica {}, never the key's primary",
                            record.version, record.key, record.version.replica
                        ),
                    });
                }
            }
            for (key, count) in per_key {
                if count > self.max_versions {
                    findings.push(Finding {
                        invariant: "V2",
                        detail: format!("{} holds {count} versions of {key:?}", node.id()),
                    });
                }
            }
        }
    }

    /// The primaries `key` had in any view: the ring without any subset of the
    /// nodes lost in the run.
    fn possible_primaries(&self, ids: &[&str], lost: &[usize], key: &str) -> BTreeSet<usize> {
        (0..1usize << lost.len())
            .filter_map(|mask| {
                let without: BTreeSet<usize> = lost
                    .iter()
                    .enumerate()
                    .filter(|(bit, _)| mask & (1 << bit) != 0)
                    .map(|(_, &n)| n)
                    .collect();
                Ring::without(ids, self.vnodes, self.replication_factor, |n| {
                    without.contains(&n)
                })
                .primary(key)
            })
            .collect()
    }

    /// G2: after healing, every serving replica of a key holds the same versions
    /// ([`dida_verify::at_rest`]).
    fn convergence(&self, serving: &[usize], findings: &mut Vec<Finding>) {
        let Some(&observer) = serving.first() else {
            return;
        };
        let ring = self.nodes[observer].ring();
        let keys: BTreeSet<String> = serving
            .iter()
            .flat_map(|&n| self.nodes[n].store().records())
            .map(|r| r.key)
            .collect();
        for key in keys {
            let held: Holdings = ring
                .replicas(&key)
                .iter()
                .filter(|n| serving.contains(n))
                .map(|&n| {
                    let versions = self.nodes[n].store().records_of(&key, |_| true);
                    let versions = versions.iter().map(|r| r.version).collect();
                    (self.nodes[n].id().to_string(), versions)
                })
                .collect();
            if let Some(detail) = divergence(&key, &held) {
                findings.push(Finding {
                    invariant: "G2",
                    detail,
                });
            }
        }
    }

    /// H2: at rest, a key is held by its replicas and no other serving node: every
    /// copy a node took as an interim replica (or while the cluster formed) was
    /// handed off and dropped ([`dida_verify::at_rest::extra_holders`]).
    fn placement(&self, serving: &[usize], findings: &mut Vec<Finding>) {
        let Some(&observer) = serving.first() else {
            return;
        };
        let ring = self.nodes[observer].ring();
        let mut holders: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
        for &n in serving {
            for record in self.nodes[n].store().records() {
                holders.entry(record.key).or_default().insert(n);
            }
        }
        for (key, held_by) in holders {
            let replicas: BTreeSet<usize> = ring.replicas(&key).iter().copied().collect();
            let ids = |nodes: &BTreeSet<usize>| -> Vec<String> {
                nodes
                    .iter()
                    .map(|&n| self.nodes[n].id().to_string())
                    .collect()
            };
            if let Some(detail) = extra_holders(&key, &ids(&held_by), &ids(&replicas)) {
                findings.push(Finding {
                    invariant: "H2",
                    detail,
                });
            }
        }
    }

    /// A1: no acknowledged write is lost, under the one rule of
    /// [`dida_verify::lost_writes`]: some serving node holds it, unless
    /// `max_versions` newer versions replaced it. Returns how many are lost; a
    /// finding only when they had to survive.
    fn lost_writes(&self, serving: &[usize], findings: &mut Vec<Finding>) -> usize {
        let snapshot = Snapshot {
            nodes: serving
                .iter()
                .map(|&n| {
                    let node = &self.nodes[n];
                    (node.id().to_string(), node_contents(node.store().records()))
                })
                .collect(),
            unreadable: BTreeMap::new(),
        };
        let report = count_lost(
            &acknowledged_writes(self.history),
            &snapshot,
            self.max_versions,
        );
        if self.acknowledged_must_survive {
            for write in &report.examples {
                findings.push(Finding {
                    invariant: "A1",
                    detail: format!(
                        "acknowledged write {} of {:?} (op {}) is held by no serving node",
                        write.version, write.key, write.op
                    ),
                });
            }
        }
        usize::try_from(report.lost).unwrap_or(usize::MAX)
    }

    /// T1 (and V1's "versions increase"): an acknowledged write that returned
    /// before another was invoked has the smaller version, across takeovers too.
    fn order(&self, findings: &mut Vec<Finding>) {
        let mut by_key: BTreeMap<&str, Vec<(&Operation, Version)>> = BTreeMap::new();
        for op in self.history {
            if let Some((_, version)) = op.acknowledged_write() {
                by_key.entry(&op.key).or_default().push((op, version));
            }
        }
        for (key, acked) in by_key {
            for (a, a_version) in &acked {
                for (b, b_version) in &acked {
                    if a.completed_ns < b.invoked_ns && a_version >= b_version {
                        findings.push(Finding {
                            invariant: "T1",
                            detail: format!(
                                "on {key:?}, op {} (version {a_version}) returned before op {} \
                                 (version {b_version}) was invoked",
                                a.id, b.id
                            ),
                        });
                        return;
                    }
                }
            }
        }
    }

    /// W1: each key's writes and CAS are linearizable.
    fn linearizability(&self, findings: &mut Vec<Finding>) {
        let keys: BTreeSet<&str> = self.history.iter().map(|op| op.key.as_str()).collect();
        // Bounded by steps, not time, so that a seed's verdict does not depend on
        // the machine; sized so that every kind's first 500 seeds decide (k3 of
        // declare-all seed 260, 128 operations, needs more than 20 million).
        let limits = SearchLimits {
            max_steps: 50_000_000,
            max_time: std::time::Duration::from_secs(120),
        };
        for key in keys {
            match check_key(self.history, key, &Default::default(), limits).verdict {
                Verdict::Linearizable => {}
                Verdict::NotLinearizable { blocked_op, .. } => findings.push(Finding {
                    invariant: "W1",
                    detail: format!(
                        "the history of {key:?} is not linearizable (blocked at op {blocked_op})"
                    ),
                }),
                Verdict::Inconclusive { reason } => findings.push(Finding {
                    invariant: "W1",
                    detail: format!("the linearizability search of {key:?} gave up: {reason}"),
                }),
            }
        }
    }
}
