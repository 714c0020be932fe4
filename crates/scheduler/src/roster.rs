//! The workers of a running scheduler: their membership ([`Members`], plain data)
//! with a client of each slot, behind one lock, and what the service asks of them
//! — who may take work now, registering, deregistering, ending leases.
//!
//! The lock is held briefly and never across an `.await`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use dida_core::membership::Member;
use dida_proto::execution::worker_client::WorkerClient;
use dida_proto::transport::{lazy_channel, NodeChannel};
use tracing::{info, warn};

use crate::members::{Members, Refusal, Registered, WorkerState};

/// How many renewals a lease spans: a worker renews every lease / this, so one or
/// two lost renewals do not end its lease.
pub const RENEWALS_PER_LEASE: u32 = 3;

/// A worker as one placement (or one status line) sees it.
#[derive(Debug, Clone)]
pub(crate) struct WorkerView {
    pub id: String,
    pub url: String,
    pub state: WorkerState,
}

/// What a placement works with: every slot as it stood at one instant, and which
/// of them may take work.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub workers: Vec<WorkerView>,
    pub placeable: Vec<bool>,
}

impl Snapshot {
    /// The slots that may take work.
    pub fn placeable_slots(&self) -> Vec<usize> {
        (0..self.placeable.len())
            .filter(|&i| self.placeable[i])
            .collect()
    }
}

#[derive(Debug)]
struct Inner {
    members: Members,
    clients: Vec<WorkerClient<NodeChannel>>,
}

/// The workers the scheduler knows, with a client of each.
#[derive(Debug)]
pub(crate) struct Roster {
    inner: Mutex<Inner>,
    rpc_deadline: Duration,
}

impl Roster {
    /// The static workers `workers` (from `--workers`); registered ones hold leases
    /// of `lease`. Calls to workers are bounded by `rpc_deadline`.
    pub fn new(
        workers: &[Member],
        lease: Duration,
        rpc_deadline: Duration,
    ) -> anyhow::Result<Self> {
        let clients = workers
            .iter()
            .map(|m| client(&m.url.to_string(), rpc_deadline))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            inner: Mutex::new(Inner {
                members: Members::new(workers, lease),
                clients,
            }),
            rpc_deadline,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("roster lock poisoned")
    }

    /// How long a registration holds.
    pub fn lease(&self) -> Duration {
        self.lock().members.lease()
    }

    /// Every slot now, and which may take work.
    pub fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let inner = self.lock();
        Snapshot {
            workers: inner
                .members
                .slots()
                .iter()
                .map(|slot| WorkerView {
                    id: slot.id.clone(),
                    url: slot.url.to_string(),
                    state: slot.state(now),
                })
                .collect(),
            placeable: inner.members.placeable(now),
        }
    }

    /// The client of every worker that may take work now, by slot.
    pub fn placeable_clients(&self) -> Vec<(usize, WorkerClient<NodeChannel>)> {
        let now = Instant::now();
        let inner = self.lock();
        inner
            .members
            .placeable(now)
            .into_iter()
            .enumerate()
            .filter(|(_, placeable)| *placeable)
            .map(|(slot, _)| (slot, inner.clients[slot].clone()))
            .collect()
    }

    /// The slot of worker `id`, whatever its state.
    pub fn slot_of(&self, id: &str) -> Option<usize> {
        self.lock().members.slot_of(id)
    }

    /// Registers worker `id` at `url` or renews its lease (see
    /// [`Members::register`]); a worker that joins gets a client (a new one if its
    /// URL changed).
    pub fn register(&self, id: &str, url: &str, leaving: bool) -> Result<Registered, Refusal> {
        let url = Members::validate(id, url)?;
        let text = url.to_string();
        let now = Instant::now();
        let mut inner = self.lock();
        // A renewal keeps its client; a worker that joins gets one, made before
        // anything changes so the clients never disagree with the slots (a lazy
        // channel connects on its first call: making it under the lock costs no I/O).
        let joins = match inner.members.slot_of(id) {
            None => true,
            Some(slot) => {
                let current = &inner.members.slots()[slot];
                current.url != url || current.state(now) == WorkerState::Gone
            }
        };
        let fresh = if joins {
            Some(client(&text, self.rpc_deadline).map_err(|e| Refusal::Invalid(e.to_string()))?)
        } else {
            None
        };
        let registered = inner.members.register(id, url, leaving, now)?;
        if let Some(fresh) = fresh {
            if registered.slot == inner.clients.len() {
                inner.clients.push(fresh);
            } else {
                inner.clients[registered.slot] = fresh;
            }
        }
        drop(inner);
        if registered.joined {
            info!(worker = %id, url = %text, leaving, "worker joined");
        }
        Ok(registered)
    }

    /// Ends worker `id`'s membership (it drained); only the worker at `url` may.
    pub fn deregister(&self, id: &str, url: &str) -> Result<usize, Refusal> {
        let url = Members::validate(id, url)?;
        let slot = self.lock().members.deregister(id, &url)?;
        info!(worker = %id, %url, "worker left");
        Ok(slot)
    }

    /// Ends the leases that ran out, with a log line for each: those workers get
    /// no placement from now on (they had none since their lease ended).
    pub fn expire(&self) {
        let mut inner = self.lock();
        let ended = inner.members.expire(Instant::now());
        for slot in ended {
            let slot = &inner.members.slots()[slot];
            warn!(worker = %slot.id, url = %slot.url, "worker's lease ended: no more placements on it");
        }
    }
}

/// A client of the worker at `url`, every call bounded by `deadline`.
fn client(url: &str, deadline: Duration) -> anyhow::Result<WorkerClient<NodeChannel>> {
    lazy_channel(url, deadline)
        .map(WorkerClient::new)
        .map_err(|e| anyhow::anyhow!("bad worker address {url}: {e}"))
}
