//! Worker membership: which workers the scheduler may place operators on, and why.
//!
//! Workers come and go (issue 25). A worker named in `--workers` is a **static**
//! member: it is always placeable unless it says it is leaving or deregisters. Any
//! other worker **registers** itself and holds a **lease** that it renews by
//! registering again; a worker that falls silent is dropped when its lease ends. A
//! worker that is **leaving** (it was asked to stop and drains its running
//! executions) stays a member, so its confirmations and outcomes still count, but
//! gets no new placement.
//!
//! Invariants (docs/protocols.md, "Worker membership: leases"):
//! - no placement on a worker whose lease ended or that is leaving;
//! - an id is held by one worker (one URL) at a time: another URL may take it only
//!   once the holder's lease ended or the holder deregistered.
//!
//! Each worker keeps one **slot** (an index) for as long as the scheduler runs, even
//! after it is dropped: executions, loads and the operator catalogue refer to
//! workers by slot, so an index never changes meaning. The number of slots is
//! bounded ([`MAX_WORKERS`]). This module is plain data: the time is passed in,
//! never read from the clock, so its decisions are tested as plain functions.

use std::time::{Duration, Instant};

use dida_core::membership::{check_node_id, Member, NodeUrl};
use serde::Serialize;

/// Most workers (distinct ids) a scheduler ever knows: each keeps a slot in the
/// load table and the catalogue, so a flood of invented ids cannot grow them
/// without bound.
pub const MAX_WORKERS: usize = 1024;

/// Longest worker URL a registration may carry, in bytes (a host name is at most
/// 253 bytes; the rest is `http://` and a port).
pub const MAX_WORKER_URL_BYTES: usize = 300;

/// Where a worker stands, as the scheduler's status and listings show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Placeable: a static member, or a registered worker whose lease runs.
    Alive,
    /// Still a member, draining: no new placement.
    Leaving,
    /// Its lease ended or it deregistered: no placement until it registers again.
    Gone,
}

impl WorkerState {
    /// Its name on the wire and in JSON: `alive`, `leaving`, `gone`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Alive => "alive",
            WorkerState::Leaving => "leaving",
            WorkerState::Gone => "gone",
        }
    }
}

/// How a worker holds its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tenure {
    /// Named in `--workers`: no lease to renew.
    Static,
    /// Registered: a member until `expires`.
    Leased { expires: Instant },
    /// Deregistered, or its lease ended (noted by [`Members::expire`]).
    Ended,
}

/// One worker's slot.
#[derive(Debug, Clone)]
pub struct Slot {
    /// The worker's id.
    pub id: String,
    /// Where it serves (the last URL that held the id).
    pub url: NodeUrl,
    tenure: Tenure,
    leaving: bool,
}

impl Slot {
    fn live(&self, now: Instant) -> bool {
        match self.tenure {
            Tenure::Static => true,
            Tenure::Leased { expires } => now < expires,
            Tenure::Ended => false,
        }
    }

    /// Where the worker stands at `now`.
    pub fn state(&self, now: Instant) -> WorkerState {
        match (self.live(now), self.leaving) {
            (false, _) => WorkerState::Gone,
            (true, true) => WorkerState::Leaving,
            (true, false) => WorkerState::Alive,
        }
    }
}

/// What a registration changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    /// The worker's slot.
    pub slot: usize,
    /// Whether the worker was not a live member before (new, back after its lease
    /// ended, or at another URL than before): its operator list must be learned
    /// afresh and the change is worth a log line.
    pub joined: bool,
}

/// Why a registration or a deregistration was refused. Each says what to do about
/// it, since it ends up in the worker's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The id or the URL is malformed or too long.
    #[error("invalid worker registration: {0}")]
    Invalid(String),
    /// Another live worker holds the id.
    #[error(
        "worker id {id:?} is held by the live worker at {holder}; {url} may take it only \
         once that worker deregisters or its lease ends (pick another --id)"
    )]
    Held {
        /// The id asked for.
        id: String,
        /// The URL of the worker holding it.
        holder: String,
        /// The URL that asked.
        url: String,
    },
    /// Every slot is taken.
    #[error("the scheduler already knows {MAX_WORKERS} workers; no more may register")]
    Full,
    /// A deregistration of an id the scheduler does not know at that URL.
    #[error("no worker {id:?} at {url} is registered")]
    Unknown {
        /// The id named.
        id: String,
        /// The URL named.
        url: String,
    },
}

/// Every worker the scheduler knows, by slot.
#[derive(Debug, Clone)]
pub struct Members {
    slots: Vec<Slot>,
    lease: Duration,
}

impl Members {
    /// The static members `workers` (from `--workers`), and leases of `lease` for
    /// workers that register.
    pub fn new(workers: &[Member], lease: Duration) -> Self {
        let slots = workers
            .iter()
            .map(|m| Slot {
                id: m.id.clone(),
                url: m.url.clone(),
                tenure: Tenure::Static,
                leaving: false,
            })
            .collect();
        Self { slots, lease }
    }

    /// How long a registration holds.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Checks what a registration carries: a valid node id, a URL of at most
    /// [`MAX_WORKER_URL_BYTES`] that parses as `http://HOST:PORT`.
    pub fn validate(id: &str, url: &str) -> Result<NodeUrl, Refusal> {
        check_node_id(id).map_err(|e| Refusal::Invalid(e.to_string()))?;
        if url.len() > MAX_WORKER_URL_BYTES {
            return Err(Refusal::Invalid(format!(
                "the URL is {} bytes long; the limit is {MAX_WORKER_URL_BYTES}",
                url.len()
            )));
        }
        NodeUrl::parse(url).map_err(|e| Refusal::Invalid(e.to_string()))
    }

    /// Registers worker `id` at `url`, or renews its lease, at `now`; `leaving` says
    /// whether it drains (no new placement) or takes work. The same worker (same id,
    /// same URL) may register again at any time, restarts included; another URL may
    /// take a live worker's id never ([`Refusal::Held`]).
    pub fn register(
        &mut self,
        id: &str,
        url: NodeUrl,
        leaving: bool,
        now: Instant,
    ) -> Result<Registered, Refusal> {
        let expires = now + self.lease;
        if let Some(slot) = self.slots.iter().position(|s| s.id == id) {
            let current = &mut self.slots[slot];
            let live = current.live(now);
            if live && current.url != url {
                return Err(Refusal::Held {
                    id: id.to_string(),
                    holder: current.url.to_string(),
                    url: url.to_string(),
                });
            }
            let joined = !live || current.url != url;
            if current.tenure != Tenure::Static {
                current.tenure = Tenure::Leased { expires };
            }
            current.url = url;
            current.leaving = leaving;
            return Ok(Registered { slot, joined });
        }
        if self.slots.len() >= MAX_WORKERS {
            return Err(Refusal::Full);
        }
        self.slots.push(Slot {
            id: id.to_string(),
            url,
            tenure: Tenure::Leased { expires },
            leaving,
        });
        Ok(Registered {
            slot: self.slots.len() - 1,
            joined: true,
        })
    }

    /// Ends the membership of worker `id` at `url` (it drained and leaves): no
    /// placement until it registers again. Only the worker at that URL may do it.
    /// Returns its slot.
    pub fn deregister(&mut self, id: &str, url: &NodeUrl) -> Result<usize, Refusal> {
        let slot = self
            .slots
            .iter()
            .position(|s| s.id == id && &s.url == url)
            .ok_or_else(|| Refusal::Unknown {
                id: id.to_string(),
                url: url.to_string(),
            })?;
        self.slots[slot].tenure = Tenure::Ended;
        self.slots[slot].leaving = false;
        Ok(slot)
    }

    /// Ends every lease that ran out by `now`; returns the slots it ended (each
    /// once), for the log.
    pub fn expire(&mut self, now: Instant) -> Vec<usize> {
        let mut ended = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if matches!(slot.tenure, Tenure::Leased { expires } if expires <= now) {
                slot.tenure = Tenure::Ended;
                slot.leaving = false;
                ended.push(index);
            }
        }
        ended
    }

    /// For each slot, whether an operator may be placed on it at `now`: alive, not
    /// leaving.
    pub fn placeable(&self, now: Instant) -> Vec<bool> {
        self.slots
            .iter()
            .map(|s| s.state(now) == WorkerState::Alive)
            .collect()
    }

    /// Every slot, by index.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The slot of worker `id`, whatever its state (its confirmations count even
    /// after it left).
    pub fn slot_of(&self, id: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.id == id)
    }
}

#[cfg(test)]
mod tests {
    use dida_core::Membership;

    use super::*;

    const LEASE: Duration = Duration::from_secs(3);

    fn url(port: u16) -> NodeUrl {
        NodeUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap()
    }

    fn states(members: &Members, now: Instant) -> Vec<&'static str> {
        members
            .slots()
            .iter()
            .map(|s| s.state(now).as_str())
            .collect()
    }

    #[test]
    fn a_registered_worker_is_placeable_until_its_lease_ends() {
        let t0 = Instant::now();
        let mut members = Members::new(&[], LEASE);
        assert_eq!(
            members.register("w1", url(4001), false, t0),
            Ok(Registered {
                slot: 0,
                joined: true
            })
        );
        assert_eq!(members.placeable(t0), [true]);
        // Renewed at 2 s: holds until 5 s.
        let renewed = members.register("w1", url(4001), false, t0 + Duration::from_secs(2));
        assert_eq!(renewed.map(|r| r.joined), Ok(false));
        assert_eq!(members.placeable(t0 + Duration::from_millis(4999)), [true]);
        assert_eq!(members.placeable(t0 + Duration::from_secs(5)), [false]);
        assert_eq!(states(&members, t0 + Duration::from_secs(5)), ["gone"]);
        assert_eq!(members.expire(t0 + Duration::from_secs(5)), [0]);
        assert!(members.expire(t0 + Duration::from_secs(6)).is_empty());
        // Back after its lease ended: same slot, joined again.
        let back = members.register("w1", url(4001), false, t0 + Duration::from_secs(7));
        assert_eq!(
            back,
            Ok(Registered {
                slot: 0,
                joined: true
            })
        );
    }

    #[test]
    fn a_live_workers_id_is_not_taken_by_another_url() {
        let t0 = Instant::now();
        let mut members = Members::new(&[], LEASE);
        members.register("w1", url(4001), false, t0).unwrap();
        let hijack = members.register("w1", url(4002), false, t0 + Duration::from_secs(1));
        assert!(
            matches!(&hijack, Err(Refusal::Held { holder, .. }) if holder == "http://127.0.0.1:4001"),
            "{hijack:?}"
        );
        assert!(hijack
            .unwrap_err()
            .to_string()
            .contains("pick another --id"));
        // Once the holder's lease ended, the id is free for the new URL.
        let taken = members.register("w1", url(4002), false, t0 + LEASE);
        assert_eq!(
            taken,
            Ok(Registered {
                slot: 0,
                joined: true
            })
        );
        assert_eq!(members.slots()[0].url, url(4002));
        // A deregistered id is free at once.
        members.deregister("w1", &url(4002)).unwrap();
        assert!(members.register("w1", url(4001), false, t0 + LEASE).is_ok());
    }

    #[test]
    fn a_static_member_needs_no_lease_and_keeps_its_url() {
        let t0 = Instant::now();
        let workers = Membership::parse("w1=http://127.0.0.1:4001").unwrap();
        let mut members = Members::new(workers.members(), LEASE);
        let much_later = t0 + Duration::from_secs(3600);
        assert_eq!(members.placeable(much_later), [true]);
        assert!(matches!(
            members.register("w1", url(4009), false, much_later),
            Err(Refusal::Held { .. })
        ));
        // Its own registrations (renewals) change nothing but whether it leaves.
        members.register("w1", url(4001), false, t0).unwrap();
        assert!(members.expire(much_later).is_empty());
        assert_eq!(members.placeable(much_later), [true]);
    }

    #[test]
    fn a_leaving_worker_gets_no_placement_and_a_deregistered_one_is_gone() {
        let t0 = Instant::now();
        let mut members = Members::new(&[], LEASE);
        members.register("w1", url(4001), false, t0).unwrap();
        members.register("w2", url(4002), false, t0).unwrap();
        members.register("w2", url(4002), true, t0).unwrap();
        assert_eq!(members.placeable(t0), [true, false]);
        assert_eq!(states(&members, t0), ["alive", "leaving"]);
        // Only the worker at that URL may deregister it.
        assert!(matches!(
            members.deregister("w2", &url(4001)),
            Err(Refusal::Unknown { .. })
        ));
        assert_eq!(members.deregister("w2", &url(4002)), Ok(1));
        assert_eq!(states(&members, t0), ["alive", "gone"]);
        assert_eq!(members.slot_of("w2"), Some(1), "its slot stays");
    }

    #[test]
    fn malformed_registrations_and_too_many_workers_are_refused() {
        for (id, url) in [
            ("", "http://127.0.0.1:4001"),
            ("w 1", "http://127.0.0.1:4001"),
            (&"w".repeat(65) as &str, "http://127.0.0.1:4001"),
            ("w1", "ftp://127.0.0.1:4001"),
            ("w1", "http://127.0.0.1:0"),
            ("w1", &format!("http://{}:1", "h".repeat(400))),
        ] {
            assert!(
                matches!(Members::validate(id, url), Err(Refusal::Invalid(_))),
                "{id:?} {url:?}"
            );
        }
        let t0 = Instant::now();
        let mut members = Members::new(&[], LEASE);
        for n in 0..MAX_WORKERS {
            members
                .register(&format!("w{n}"), url(1 + n as u16), false, t0)
                .unwrap();
        }
        assert_eq!(
            members.register("one-more", url(9999), false, t0),
            Err(Refusal::Full)
        );
    }
}
