//! The simulated clients: each loops over writes, compare-and-swaps and reads of a
//! few shared keys, each sent to a node drawn at random (as behind a load
//! balancer: a node that just resumed from a pause gets its share at once), and
//! records every write and CAS with its invocation and
//! completion times for the checks.
//!
//! An error that certainly had no effect (the node refused before acting, the
//! forward could not connect, too few replicas to even try) drops the operation
//! from the history; any other error or a missing answer leaves its outcome unknown:
//! it may take effect at any time after its invocation, or never.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dida_core::Version;
use dida_faults::linearizability::{CasOutcome, RegisterEvent, RegisterOp};
use dida_proto::convert::version_from_wire;
use dida_proto::storage::{ReadRequest, UpdateIfValueIsRequest, WriteRequest};
use dida_proto::transport::is_connect_failure;
use dida_storage::Node;
use rand::rngs::StdRng;
use rand::RngExt;
use tokio::time::Instant;
use tonic::{Code, Status};

use crate::network::{Call, Network, Sender};
use crate::trace::Trace;

/// One write or CAS as its client saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The key written.
    pub key: String,
    /// The operation, for the linearizability checker.
    pub event: RegisterEvent,
    /// The version the primary reported, for an acknowledged write or swap.
    pub version: Option<Version>,
}

/// What every client shares.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The network the clients send through.
    pub network: Arc<Network>,
    /// How many storage nodes there are.
    pub nodes: usize,
    /// The keys the clients share.
    pub keys: Vec<String>,
    /// When the clients stop starting operations.
    pub until: Instant,
    /// The run's start, the zero of recorded times.
    pub start: Instant,
    /// How long a client waits for an answer.
    pub deadline: Duration,
    /// The run's seeded generator.
    pub rng: Arc<Mutex<StdRng>>,
    /// Every write and CAS recorded.
    pub history: Arc<Mutex<Vec<Recorded>>>,
    /// The run's trace.
    pub trace: Arc<Trace>,
}

enum Choice {
    Write(String),
    Cas(String, String),
    Read,
}

impl Workload {
    fn nanos(&self) -> u64 {
        Instant::now().duration_since(self.start).as_nanos() as u64
    }

    fn record(
        &self,
        key: &str,
        invoked: u64,
        returned: Option<u64>,
        op: RegisterOp,
        version: Option<Version>,
    ) {
        let mut history = self.history.lock().expect("history lock poisoned");
        let id = history.len() as u64;
        let shown = version.map_or_else(|| "-".to_string(), |v| v.to_string());
        let outcome = if returned.is_some() {
            "done"
        } else {
            "unknown"
        };
        self.trace.event(format_args!(
            "op {id} on {key:?}: {op:?} {outcome}, version {shown} (invoked at {:.3}s)",
            invoked as f64 / 1e9
        ));
        history.push(Recorded {
            key: key.to_string(),
            event: RegisterEvent {
                id,
                invoked,
                returned,
                op,
            },
            version,
        });
    }

    /// Client `me`'s loop, until the workload ends.
    pub async fn client(self, me: usize) {
        let mut last_seen: HashMap<String, String> = HashMap::new();
        let mut sequence = 0u64;
        while Instant::now() < self.until {
            let (key, roll, think, target) = {
                let mut rng = self.rng.lock().expect("rng lock poisoned");
                (
                    self.keys[rng.random_range(0..self.keys.len())].clone(),
                    rng.random_range(0..100u32),
                    Duration::from_millis(rng.random_range(2..30)),
                    rng.random_range(0..self.nodes),
                )
            };
            sequence += 1;
            let fresh = format!("c{me}.{sequence}");
            let choice = match (roll, last_seen.get(&key)) {
                (0..40, _) => Choice::Write(fresh),
                (40..70, Some(old)) => Choice::Cas(old.clone(), fresh),
                (40..70, None) if roll % 2 == 0 => Choice::Write(fresh),
                _ => Choice::Read,
            };
            let invoked = self.nanos();
            let outcome = match choice {
                Choice::Write(value) => {
                    let request = WriteRequest {
                        key: key.clone(),
                        value: value.clone(),
                        forwarded: false,
                    };
                    let answer = self
                        .send(
                            me,
                            target,
                            "client-write",
                            request,
                            |node: Arc<Node>, r| async move { node.write(r).await },
                        )
                        .await;
                    let op = RegisterOp::Write {
                        value: value.clone(),
                    };
                    match answer {
                        Ok(reply) => {
                            last_seen.insert(key.clone(), value);
                            let version = reply.version.map(version_from_wire);
                            self.record(&key, invoked, Some(self.nanos()), op, version);
                            Ok(())
                        }
                        Err(status) => {
                            if !certainly_not_applied(&status) {
                                self.record(&key, invoked, None, op, None);
                            }
                            Err(status)
                        }
                    }
                }
                Choice::Cas(old, new) => {
                    let request = UpdateIfValueIsRequest {
                        key: key.clone(),
                        old_value: old.clone(),
                        new_value: new.clone(),
                        forwarded: false,
                    };
                    let answer = self
                        .send(
                            me,
                            target,
                            "client-cas",
                            request,
                            |node: Arc<Node>, r| async move { node.update_if_value_is(r).await },
                        )
                        .await;
                    let op = |outcome| RegisterOp::Cas {
                        old: old.clone(),
                        new: new.clone(),
                        outcome,
                    };
                    match answer {
                        Ok(reply) => {
                            let version = reply.version.map(version_from_wire);
                            let outcome = if version.is_some() {
                                last_seen.insert(key.clone(), new.clone());
                                CasOutcome::Swapped
                            } else {
                                last_seen.remove(&key);
                                CasOutcome::NotSwapped
                            };
                            self.record(&key, invoked, Some(self.nanos()), op(outcome), version);
                            Ok(())
                        }
                        Err(status) => {
                            if !certainly_not_applied(&status) {
                                self.record(&key, invoked, None, op(CasOutcome::Unknown), None);
                            }
                            Err(status)
                        }
                    }
                }
                Choice::Read => {
                    let request = ReadRequest {
                        key: key.clone(),
                        version: None,
                        forwarded: false,
                    };
                    let answer = self
                        .send(
                            me,
                            target,
                            "client-read",
                            request,
                            |node: Arc<Node>, r| async move { node.read(r).await },
                        )
                        .await;
                    answer.map(|reply| {
                        if let Some(record) = reply.record {
                            last_seen.insert(key.clone(), record.value);
                        }
                    })
                }
            };
            if outcome.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(think).await;
        }
    }

    async fn send<Req, Rep, H, Fut>(
        &self,
        me: usize,
        target: usize,
        what: &'static str,
        request: Req,
        handle: H,
    ) -> Result<Rep, Status>
    where
        Req: Clone + Send + 'static,
        Rep: Send + 'static,
        H: Fn(Arc<Node>, Req) -> Fut + Send + Sync + Clone + 'static,
        Fut: std::future::Future<Output = Result<Rep, Status>> + Send + 'static,
    {
        let answer = self
            .network
            .call(
                Sender::Client(me),
                target,
                Call {
                    what,
                    deadline: self.deadline,
                    idempotent: false,
                },
                request,
                handle,
            )
            .await;
        if let Err(status) = &answer {
            self.trace.event(format_args!(
                "client{me} {what}: {:?} {}",
                status.code(),
                status.message()
            ));
        }
        answer
    }
}

/// Whether an error says the operation certainly had no effect.
fn certainly_not_applied(status: &Status) -> bool {
    let message = status.message();
    is_connect_failure(status)
        || matches!(status.code(), Code::Aborted | Code::InvalidArgument)
        || message.contains("has stopped serving")
        || message.contains("nothing was written")
}
