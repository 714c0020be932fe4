//! The hostile peer: throughout the workload it hands running nodes replication
//! messages no honest peer sends — pushes from a non-member, pushes of a version
//! that would make the next write wrap, of version `0.0`, of a replica number no
//! member has, or from an incarnation past the bound, and probes that declare
//! their receiver failed from a non-member or in a view naming more members than
//! a cluster may have —
//! and checks that each is refused (invariant R1 of docs/protocols.md).
//!
//! Forgeries are handed to the node's handler directly, as a message that reached
//! it, not through the simulated network, and drawn from a generator of their
//! own: the network's, the nemesis's and the clients' draws stay those of a run
//! without a forger. The run is as deterministic as before.
//!
//! Whether they changed nothing is checked twice: each must be answered with
//! `INVALID_ARGUMENT` (or `ABORTED`, from a node fenced meanwhile, which takes
//! nothing in), and at the end no store may hold a forged value; a forged probe
//! that fenced a node would also leave D3 broken.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dida_core::cluster::MAX_MEMBERS;
use dida_core::{MemberState, Version};
use dida_proto::storage::{
    Liveness, MemberView, ProbeRequest, PushRequest, Record, Version as WireVersion,
};
use dida_storage::Node;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;
use tonic::Code;

use crate::cluster::Cluster;
use crate::process::ProcState;
use crate::trace::Trace;

/// Every forged value starts with this, so the end check finds any that was kept.
const FORGED: &str = "forged-";

/// The hostile peer of one run.
#[derive(Debug)]
pub struct Forger {
    /// The nodes it sends to.
    pub cluster: Arc<Cluster>,
    /// The workload's keys, which the forged records overwrite.
    pub keys: Vec<String>,
    /// Its own generator, seeded from the run's seed.
    pub rng: StdRng,
    /// The run's trace.
    pub trace: Arc<Trace>,
    /// Forgeries that were not refused, as findings' details.
    pub accepted: Arc<Mutex<Vec<String>>>,
}

impl Forger {
    /// A forger for the run of `seed`.
    pub fn new(
        seed: u64,
        cluster: Arc<Cluster>,
        keys: Vec<String>,
        trace: Arc<Trace>,
        accepted: Arc<Mutex<Vec<String>>>,
    ) -> Self {
        Self {
            cluster,
            keys,
            rng: StdRng::seed_from_u64(seed ^ 0x0f0e_9e55_f0e5_0001),
            trace,
            accepted,
        }
    }

    /// Sends a forgery every 0.3–1.5 s from `from` until `until`; returns how many
    /// it sent.
    pub async fn run(mut self, from: Instant, until: Instant) -> usize {
        tokio::time::sleep_until(from).await;
        let mut sent = 0;
        while Instant::now() < until {
            let pause = Duration::from_millis(self.rng.random_range(300..1500));
            tokio::time::sleep(pause).await;
            let target = self.rng.random_range(0..self.cluster.len());
            // A stopped or killed process reads nothing from its socket.
            if self.cluster.process(target).state() != ProcState::Up {
                continue;
            }
            self.forge(target, sent).await;
            sent += 1;
        }
        sent
    }

    /// One forgery to `target`, the `n`th.
    async fn forge(&mut self, target: usize, n: usize) {
        let node = self.cluster.node(target);
        let members = self.cluster.len();
        let member = (target + self.rng.random_range(1..members)) % members;
        let member_id = self.cluster.node(member).id().to_string();
        let replica = member as u32 + 1;
        let key = self.keys[self.rng.random_range(0..self.keys.len())].clone();
        let record = |number, replica| Record {
            key: key.clone(),
            version: Some(WireVersion { number, replica }),
            value: format!("{FORGED}{n}"),
        };
        let push = |from: &str, record, incarnation| PushRequest {
            from: from.to_string(),
            records: vec![record],
            incarnation,
            // Every other forgery claims to be a handoff, which must be refused
            // alike (no extra draw: the seeds' other draws stay as they were).
            handoff: n % 2 == 1,
        };
        let (what, forgery) = match self.rng.random_range(0..7u32) {
            0 => (
                "push from a non-member",
                push("intruder", record(1, replica), 1),
            ),
            1 => (
                "push of a version that would wrap",
                push(&member_id, record(u64::MAX, replica), 1),
            ),
            2 => (
                "push of a version past the bound",
                push(&member_id, record(Version::MAX_NUMBER + 1, replica), 1),
            ),
            3 => ("push of version 0.0", push(&member_id, record(0, 0), 1)),
            4 => (
                "push of a replica number no member has",
                push(&member_id, record(5, 99), 1),
            ),
            5 => (
                "push from an incarnation past the bound",
                push(
                    &member_id,
                    record(1, replica),
                    MemberState::MAX_INCARNATION + 1,
                ),
            ),
            _ => {
                let target_failed = MemberView {
                    id: node.id().to_string(),
                    incarnation: node.incarnation(),
                    liveness: Liveness::Failed as i32,
                };
                let (what, from, view) = if self.rng.random_bool(0.5) {
                    (
                        "probe from a non-member declaring its receiver failed",
                        "intruder",
                        vec![target_failed],
                    )
                } else {
                    // A stranger alone is skipped (a member this node has not
                    // learned of yet); a view longer than any cluster is refused.
                    let strangers = (0..MAX_MEMBERS).map(|n| MemberView {
                        id: format!("stranger{n}"),
                        incarnation: 1,
                        liveness: Liveness::Failed as i32,
                    });
                    (
                        "probe declaring its receiver failed in a view longer than any cluster",
                        member_id.as_str(),
                        std::iter::once(target_failed).chain(strangers).collect(),
                    )
                };
                let probe = ProbeRequest {
                    from: from.to_string(),
                    view,
                    config_epoch: 0,
                };
                let answer = node.probe(probe).await.map(|_| ());
                self.judge(&node, what, answer);
                return;
            }
        };
        let answer = node.push(forgery).await.map(|_| ());
        self.judge(&node, what, answer);
    }

    /// Records `answer` to the forgery `what` sent to `node`: a finding unless it
    /// was refused as malformed (or by a node fenced meanwhile).
    fn judge(&self, node: &Node, what: &str, answer: Result<(), tonic::Status>) {
        let outcome = match &answer {
            Ok(()) => "accepted".to_string(),
            Err(status) => format!("{:?}", status.code()),
        };
        self.trace
            .event(format_args!("forger -> {} {what}: {outcome}", node.id()));
        let refused =
            matches!(&answer, Err(s) if matches!(s.code(), Code::InvalidArgument | Code::Aborted));
        if !refused {
            self.accepted
                .lock()
                .expect("accepted lock poisoned")
                .push(format!("{} answered a {what} with {outcome}", node.id()));
        }
    }
}

/// Forged values any store holds, as findings' details: a refused forgery
/// changes nothing, so there must be none.
pub fn forged_values_kept(nodes: &[Arc<Node>]) -> Vec<String> {
    nodes
        .iter()
        .flat_map(|node| {
            node.store()
                .records()
                .into_iter()
                .filter(|r| r.value.starts_with(FORGED))
                .map(move |r| format!("{} holds forged record {r:?}", node.id()))
        })
        .collect()
}
