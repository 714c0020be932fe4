//! Crash detection (SPEC §2.5): probes, indirect probes, suspicion, and the spread of
//! every failure with the probes themselves — SWIM (Das et al., 2002) with
//! Lifeguard's local health (Dadgar et al., 2018).
//!
//! The rules — whom to probe each period, who is asked to probe indirectly, when a
//! silent peer is suspected and when it is declared failed, how slow this node
//! itself is — are plain functions in `schedule`, `suspicion` and `health`; this
//! module does the probing and applies them.
//!
//! Every `probe_interval` a node probes `probe_fanout` peers (default 3), taken in
//! turn from a shuffled list of every other member (`schedule`), plus every peer it
//! suspects, all at once (`Probe`, bounded by `probe_timeout`). A node's probing
//! thus costs the same whatever the size of the cluster, and each peer is probed by
//! each node at least once every `2 × ⌈(members − 1) / fanout⌉` periods — and by
//! some node, in a cluster of N, about `fanout` times a period. A peer that does
//! not answer is probed indirectly: up to
//! [`INDIRECT_PROBES`](suspicion::INDIRECT_PROBES) other live peers are asked to
//! probe it (`ProbeFor`), which tells a crashed node from a slow link between two
//! nodes. If none reaches it, the peer is **suspected**; a suspected peer (probed
//! every period from then on) that still answers nobody once `suspicion_timeout`
//! has passed is declared **failed**. Any message from it clears a suspicion.
//!
//! Each probe and each answer carries its sender's whole view (every member's
//! incarnation and liveness, `dida_core::liveness`), and the receiver merges it, so
//! a failure — or a restarted node's new incarnation — spreads like an epidemic:
//! each period every node exchanges views with the `fanout` peers it probes and
//! the about as many that probe it, so news reaches all N nodes in O(log N)
//! periods, without a separate broadcast. A failure is declared of the incarnation
//! the prober knew, so it never hides a restart announced meanwhile.
//!
//! **Detection bound.** A crash is suspected by the first node to probe the
//! crashed peer after it (with N nodes probing `fanout` peers a period, within a
//! period or two) and declared `probe_timeout` (direct) + `probe_timeout`
//! (indirect) + `suspicion_timeout` later, then spread in a few periods: with the
//! defaults (250 ms, 500 ms, 1500 ms) about 3 s for a node that stops answering. A
//! SIGKILLed process refuses connections at once, so it is declared one
//! suspicion timeout after the first probe that missed it, to the period:
//! suspicions are timed by the periods' scheduled ticks, not by when the task woke.
//! A node that declares tells `fanout` live peers at once (it probes them early,
//! and the probe carries its view), so the news does not wait for the next period.
//!
//! **Start-up.** Nodes of a cluster start one after another: a peer that has never
//! answered is not suspected during the first `STARTUP_GRACE` (30 s) after this node
//! started, so a slow start is not taken for a crash. A peer that has probed this
//! node has started, though, and is no longer spared: a node killed moments after
//! the cluster came up, before this node's own probes reached it, is declared
//! within the usual bound, not after the grace.
//!
//! **Only a majority declares** ([`Heard::majority`](suspicion::Heard::majority)):
//! a node declares only if it has heard from a strict majority of the nodes its
//! view counts alive, itself included, within the last suspicion timeout. When a
//! declaration is due and the peers it happened to probe lately are too few, it
//! probes the others it has not heard from, once, before deciding. A node cut off
//! from the rest hears from no one after the cut, so it suspects but declares no
//! one, and never takes their keys over.
//!
//! **Local health** (`health`): a node that sees signs of its own slowness — its
//! direct probes time out while the same peers answer indirect ones, its ticks run
//! late, the others declared it failed — stretches its probe and suspicion timeouts
//! by `1 + score` (score 0 to 8, lowered by each clean period), so that CPU
//! starvation does not make it suspect healthy peers.
//!
//! **False suspicion.** A node that is alive but was declared failed (it could not
//! answer anyone for `suspicion_timeout`) learns it from the next probe it exchanges
//! and **fences** itself: it stops serving, exactly as if it had crashed, so two
//! nodes never both act as a key's primary once the view has spread; then it
//! rejoins as a new incarnation, keeping its records (`rejoin`). Generous timeouts
//! keep this rare; the window before the fenced node hears of it is the price of a
//! detector without leases (see docs/protocols.md).
//!
//! **Declared peers are still probed** (directly, within the same fan-out, and not
//! counted towards any suspicion): the probe tells a declared node that is in fact
//! running that it was declared — so it rejoins — and its answer tells this node of
//! its new incarnation. Without it, two running nodes that each counted the other
//! failed (after forged declarations, or every node declared by every other) would
//! never speak again: a split brain, each the only primary in its own ring.
//!
//! **Determinism.** Nothing here draws from a thread-local generator: the probe
//! order is shuffled from a hash of the node, its incarnation and the list's number,
//! so the simulator replays a run exactly.
//!
//! Both sides live here: the prober ([`run`]) and the answers to a peer's `Probe`
//! and `ProbeFor` ([`answer_probe`], [`answer_probe_for`]); the checks of who may
//! ask to probe whom in [`probe_for_target`].

mod health;
mod schedule;
mod suspicion;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dida_proto::storage::{ProbeForReply, ProbeForRequest, ProbeReply, ProbeRequest};
use futures::future::join_all;
use tokio::time::Instant;
use tonic::Status;
use tracing::{info, warn};

use crate::peering::Peering;
use crate::reconfig;
use crate::roster::Roster;
use crate::stats;
use crate::validation::{self, Refusal};
use crate::view::View;
use health::{LocalHealth, Signs};
use schedule::ProbeSchedule;
use suspicion::{indirect_helpers, Heard, Suspicions};

/// How long after start a node waits before suspecting a peer that has never
/// answered it (a peer that has answered once is suspected as soon as it stops).
const STARTUP_GRACE: Duration = Duration::from_secs(30);

/// Longest a peer's `ProbeFor` may ask this node to wait for the target: the
/// asker's timeout, within reason, so a probe never holds a task for long.
const MOST_ASKED_TIMEOUT_MS: u32 = 10_000;

/// What the detector shares with the answers to peers' probes: whom it suspects
/// (for `Status` and the metrics) and when it last heard from each peer (a probe a
/// peer sends proves it alive as much as an answer does).
#[derive(Debug, Default)]
pub(crate) struct Detection {
    /// Peers the detector currently suspects.
    suspected: Mutex<BTreeSet<usize>>,
    /// When each peer was last heard from: its answers to this node's probes,
    /// indirect probes of it that succeeded, and the probes it sent. A peer heard
    /// from has started, so the start-up grace no longer spares it; and a node
    /// declares only while it has heard from a majority lately.
    heard: Mutex<Heard>,
}

impl Detection {
    /// The peers the detector suspects after its latest period.
    pub fn suspected(&self) -> BTreeSet<usize> {
        self.suspected
            .lock()
            .expect("suspects lock poisoned")
            .clone()
    }

    /// Records a message from `peer`, received now.
    fn heard(&self, peer: usize) {
        self.with_heard(|heard| heard.heard(peer, Instant::now()));
    }

    fn with_heard<R>(&self, f: impl FnOnce(&mut Heard) -> R) -> R {
        f(&mut self.heard.lock().expect("heard lock poisoned"))
    }
}

/// The detector of a node: a probe period every `probe_interval`, for as long as
/// the process runs (a fenced node skips periods until it has started over).
///
/// The next period's deadline is set when a period ends (at least one interval
/// after the previous deadline), so a tick that wakes later than half an interval
/// past it shows this process was not scheduled in time — a sign of local ill
/// health — and a period that overran (slow probes) does not.
pub(crate) async fn run(state: Arc<Peering>, detection: Arc<Detection>) {
    let interval = state.config().probe_interval;
    let mut detector = Detector::new(state, detection);
    let mut deadline = Instant::now();
    loop {
        tokio::time::sleep_until(deadline).await;
        let late = health::tick_late(deadline, Instant::now(), interval);
        detector.period(deadline, late).await;
        deadline = (deadline + interval).max(Instant::now());
    }
}

/// A peer's answer to one period's probing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// It answered this node's probe.
    Direct,
    /// It missed this node's probe but answered a helper's.
    Indirect,
    /// Nobody reached it.
    Silent,
}

/// The prober's memory between periods.
struct Detector {
    state: Arc<Peering>,
    detection: Arc<Detection>,
    schedule: ProbeSchedule,
    suspicions: Suspicions,
    health: LocalHealth,
    /// The incarnation of the latest period: when it changes, this node was
    /// declared failed and started over (a sign of ill health).
    incarnation: u64,
}

impl Detector {
    fn new(state: Arc<Peering>, detection: Arc<Detection>) -> Self {
        Self {
            schedule: ProbeSchedule::new(state.me(), state.roster().len()),
            suspicions: Suspicions::new(Instant::now(), STARTUP_GRACE),
            health: LocalHealth::default(),
            incarnation: state.incarnation(),
            state,
            detection,
        }
    }

    /// One period, scheduled for `tick`: probes unless fenced, then updates the
    /// local health.
    async fn period(&mut self, tick: Instant, late_tick: bool) {
        let incarnation = self.state.incarnation();
        let declared = incarnation != self.incarnation;
        self.incarnation = incarnation;
        let signs = if self.state.is_fenced() {
            Signs::default()
        } else {
            self.probe_period(tick).await
        };
        let before = self.health.score();
        self.health.observe(&Signs {
            late_tick,
            declared,
            ..signs
        });
        if self.health.score() != before {
            info!(
                node = self.state.id(),
                score = self.health.score(),
                late_tick,
                declared,
                slow_direct_probes = signs.missed_but_alive,
                "local health changed: probe and suspicion timeouts are stretched by 1 + score"
            );
        }
        *self
            .detection
            .suspected
            .lock()
            .expect("suspects lock poisoned") = self.suspicions.suspected();
    }

    /// Probes this period's peers (the schedule's and every suspect), directly and,
    /// for those that miss, indirectly; lets `suspicions` decide what the answers
    /// mean, logs it and declares the failures due if a majority was heard from.
    /// Returns what the probes showed of this node's own health.
    ///
    /// Suspicions are timed by `tick`, the instant the period was scheduled for,
    /// not by when this task woke or the slowest answer came back: every period
    /// then ages a suspicion by exactly one interval, and a suspicion timeout that
    /// is a multiple of the interval falls due on its period — measured from the
    /// wake-up, it fell a period late whenever the first period woke later than the
    /// last (half the time, 250 ms of the crash detection time).
    async fn probe_period(&mut self, tick: Instant) -> Signs {
        let state = self.state.clone();
        let config = state.config();
        let view = state.view().current();
        let live = state.live_peers(&view);
        let failed: BTreeSet<usize> = view.members.failed().collect();
        let probe_timeout = self.health.scale(config.probe_timeout);
        let suspicion_timeout = self.health.scale(config.suspicion_timeout);
        // Without the fence (the simulator's control experiment only) a declared
        // node is not told by its peers either: it learns from its own probes, as
        // before the fence existed.
        self.schedule.grow(view.members.len());
        let chosen = self
            .schedule
            .next(config.probe_fanout, state.incarnation(), |peer| {
                view.is_member(peer) && (config.fence || !failed.contains(&peer))
            });
        let targets = schedule::targets(&chosen, &self.suspicions.suspected(), &failed);
        let detection = &self.detection;
        let (reached, _) = tokio::join!(
            join_all(targets.live.iter().map(|&peer| reach(
                &state,
                detection,
                peer,
                &live,
                probe_timeout
            ))),
            join_all(targets.declared.iter().map(|&peer| probe_heard(
                &state,
                detection,
                peer,
                probe_timeout
            ))),
        );
        let answers: Vec<(usize, bool)> = targets
            .live
            .iter()
            .zip(&reached)
            .map(|(&peer, &reach)| (peer, reach != Reach::Silent))
            .collect();
        let verdict = self.detection.with_heard(|heard| {
            self.suspicions.started(heard.ever());
            if !heard.majority(Instant::now(), suspicion_timeout, &live) {
                self.suspicions.restart_clocks(tick);
            }
            self.suspicions
                .observe(tick, &answers, heard, suspicion_timeout, &failed)
        });
        self.report(&verdict);
        if !verdict.due.is_empty() {
            self.declare(&view, &live, verdict.due, suspicion_timeout, probe_timeout)
                .await;
        }
        Signs {
            answered: count(&reached, Reach::Direct),
            missed: reached.len() - count(&reached, Reach::Direct),
            missed_but_alive: count(&reached, Reach::Indirect),
            ..Signs::default()
        }
    }

    /// Logs and counts the suspicions a period began and cleared.
    fn report(&self, verdict: &suspicion::Verdict) {
        let state = &self.state;
        for &peer in &verdict.cleared {
            info!(
                node = state.id(),
                peer = state.id_of(peer),
                "suspected peer heard from again"
            );
        }
        stats::add(
            &state.membership_stats().suspicions,
            verdict.suspected.len() as u64,
        );
        for &peer in &verdict.suspected {
            warn!(
                node = state.id(),
                peer = state.id_of(peer),
                "peer missed direct and indirect probes: suspected"
            );
        }
    }

    /// Declares the `due` suspects failed, if this node heard from a majority of
    /// the `live` nodes within the (stretched) suspicion timeout. If the peers it
    /// probed lately are too few, it first probes, once and directly, every live
    /// peer it has not heard from in that window: the majority is then measured as
    /// the old rule measured it, by reaching the others now. The due suspects are
    /// probed once more too, and one heard from meanwhile is spared.
    async fn declare(
        &mut self,
        view: &View,
        live: &[usize],
        mut due: Vec<usize>,
        window: Duration,
        probe_timeout: Duration,
    ) {
        let state = self.state.clone();
        let detection = &self.detection;
        let asked = Instant::now();
        let stale = detection.with_heard(|heard| {
            (!heard.majority(asked, window, live)).then(|| heard.stale(asked, window, live))
        });
        // The due suspects are probed once more, directly, before they are
        // declared: their silence may be as old as a period this node spent cut
        // off (a period's probes wait out timeouts its local health stretches), and
        // a partition that healed meanwhile lets them answer now. The simulator
        // found both: partition seeds 196 and 58, an isolated node healed and
        // declared peers its probes had not reached again. A crashed peer refuses
        // the connection at once, so this costs a real crash no time.
        let again: BTreeSet<usize> = due
            .iter()
            .copied()
            .chain(stale.into_iter().flatten())
            .collect();
        join_all(
            again
                .into_iter()
                .map(|peer| probe_heard(&state, detection, peer, probe_timeout)),
        )
        .await;
        let now = Instant::now();
        let majority = detection.with_heard(|heard| {
            due.retain(|&peer| !heard.recently(peer, now, now.duration_since(asked)));
            heard.majority(now, window, live)
        });
        if !majority {
            warn!(
                node = state.id(),
                "this node heard from no majority of the live nodes lately: it declares no one failed"
            );
            return;
        }
        if due.is_empty() {
            return;
        }
        self.suspicions.declared(&due);
        let names: Vec<&str> = due.iter().map(|&n| state.id_of(n)).collect();
        warn!(node = state.id(), failed = ?names, "declaring crashed peers failed");
        stats::add(&state.membership_stats().declarations, due.len() as u64);
        state.declare_failed(view, &due);
        self.announce(live, &due, probe_timeout).await;
    }

    /// Tells `fanout` live peers of a declaration at once, by probing them early
    /// (the probe carries the view), instead of leaving the news for the next
    /// period: a survivor whose own probes had not yet reached the crashed peer
    /// would otherwise learn of it a period or two later. The peers are the next
    /// ones in this node's schedule, so this costs `fanout` probes per
    /// declaration, whatever the size of the cluster, and keeps the turn order.
    async fn announce(&mut self, live: &[usize], declared: &[usize], timeout: Duration) {
        let state = self.state.clone();
        let told = self
            .schedule
            .next(state.config().probe_fanout, state.incarnation(), |peer| {
                live.contains(&peer) && !declared.contains(&peer)
            });
        let detection = &self.detection;
        join_all(
            told.into_iter()
                .map(|peer| probe_heard(&state, detection, peer, timeout)),
        )
        .await;
    }
}

fn count(reached: &[Reach], which: Reach) -> usize {
    reached.iter().filter(|&&r| r == which).count()
}

/// Whether `peer` answers a direct probe, or else an indirect one through the
/// [`indirect_helpers`] among the other live `peers`. Every answer is recorded as
/// heard: the peer's, and each helper's (answering proves it alive too).
async fn reach(
    state: &Arc<Peering>,
    detection: &Detection,
    peer: usize,
    peers: &[usize],
    timeout: Duration,
) -> Reach {
    if probe_heard(state, detection, peer, timeout).await {
        return Reach::Direct;
    }
    let asks = indirect_helpers(state.me(), peer, peers)
        .into_iter()
        .map(|helper| {
            let request = ProbeForRequest {
                from: state.id().to_string(),
                target: state.id_of(peer).to_string(),
                timeout_ms: timeout.as_millis().try_into().unwrap_or(u32::MAX),
            };
            async move {
                let reply =
                    tokio::time::timeout(timeout * 2, state.transport().probe_for(helper, request))
                        .await;
                match reply {
                    Ok(Ok(reply)) => {
                        detection.heard(helper);
                        reply.reachable
                    }
                    _ => false,
                }
            }
        });
    if join_all(asks).await.into_iter().any(|reached| reached) {
        detection.heard(peer);
        Reach::Indirect
    } else {
        Reach::Silent
    }
}

/// [`probe`], recording an answer as heard from `peer`.
async fn probe_heard(
    state: &Peering,
    detection: &Detection,
    peer: usize,
    timeout: Duration,
) -> bool {
    let answered = probe(state, peer, timeout).await;
    if answered {
        detection.heard(peer);
    }
    answered
}

/// One probe of `peer` within `timeout`, exchanging failed sets: made by the
/// detector and, for `ProbeFor`, on behalf of another node. True if it answered in
/// time.
pub(crate) async fn probe(state: &Peering, peer: usize, timeout: Duration) -> bool {
    let request = ProbeRequest {
        from: state.id().to_string(),
        view: state.view_to_wire(),
        config_epoch: state.cluster().decided_epoch(),
    };
    match tokio::time::timeout(timeout, state.transport().probe(peer, request)).await {
        Ok(Ok(reply)) => {
            if let Err(refusal) = state.learn_wire(peer, &reply.view) {
                // It answered, so it runs; what it says is not believed.
                warn!(node = state.id(), peer = state.id_of(peer), reason = %refusal.0, "ignored the malformed view a probed peer answered with");
            }
            // Within the probe's bound: a configuration to send it waits for the
            // next probe rather than hold up the detector.
            let _ = tokio::time::timeout(timeout, reconfig::learn_from_probe(state, peer, &reply))
                .await;
            true
        }
        _ => false,
    }
}

/// Answers a peer's probe, exchanging views. The view is believed only from another
/// member and only if every entry names a member, once, with a known liveness and a
/// bounded incarnation (`validation::view`); otherwise the probe is refused and
/// changes nothing — not even who has been heard from.
pub(crate) fn answer_probe(
    state: &Peering,
    detection: &Detection,
    request: ProbeRequest,
) -> Result<ProbeReply, Status> {
    state.check_serving()?;
    let refused = |r: Refusal| r.status(state.id(), "probe", &request.from);
    let membership = state.roster();
    let from = validation::sender(membership, state.me(), &request.from).map_err(refused)?;
    let updates = validation::view(membership, &request.view).map_err(refused)?;
    detection.heard(from);
    if !updates.is_empty() {
        state.learn(Some(from), updates);
    }
    let mut reply = ProbeReply {
        view: state.view_to_wire(),
        ..Default::default()
    };
    reconfig::offer(state, request.config_epoch, &mut reply);
    Ok(reply)
}

/// Probes another node on a peer's behalf (`ProbeFor`), once
/// [`probe_for_target`] has accepted the request.
pub(crate) async fn answer_probe_for(
    state: &Peering,
    request: ProbeForRequest,
) -> Result<ProbeForReply, Status> {
    state.check_serving()?;
    let refused = |r: Refusal| r.status(state.id(), "probe request", &request.from);
    let target = probe_for_target(state.roster(), state.me(), &request.from, &request.target)
        .map_err(refused)?;
    let Some(target) = target else {
        return Ok(ProbeForReply { reachable: true });
    };
    let reachable = probe(state, target, asked_timeout(request.timeout_ms)).await;
    Ok(ProbeForReply { reachable })
}

/// Whom a `ProbeFor` from `from` asks node `me` to probe: `Some(target)`, or `None`
/// when the target is `me` (which answers for itself). The asker must be another
/// member and the target a member other than the asker.
pub(crate) fn probe_for_target(
    membership: &Roster,
    me: usize,
    from: &str,
    target: &str,
) -> Result<Option<usize>, Refusal> {
    let from = validation::sender(membership, me, from)?;
    let target = membership.index_of(target).map_err(|e| {
        Refusal(format!(
            "the target is not a storage node of this cluster ({e})"
        ))
    })?;
    if target == from {
        return Err(Refusal(
            "the target is the sender itself, which needs no one to probe it".to_string(),
        ));
    }
    Ok((target != me).then_some(target))
}

/// How long a `ProbeFor` waits for its target: the asker's timeout, between 1 ms
/// and [`MOST_ASKED_TIMEOUT_MS`].
pub(crate) fn asked_timeout(timeout_ms: u32) -> Duration {
    Duration::from_millis(timeout_ms.clamp(1, MOST_ASKED_TIMEOUT_MS).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn membership() -> Roster {
        Roster::new(
            &dida_core::Membership::parse(
                "s1=http://127.0.0.1:7001,s2=http://127.0.0.1:7002,s3=http://127.0.0.1:7003",
            )
            .expect("a valid membership"),
        )
    }

    #[test]
    fn a_probe_for_names_another_member_than_its_asker() {
        let members = membership();
        assert_eq!(probe_for_target(&members, 0, "s2", "s3"), Ok(Some(2)));
        assert_eq!(probe_for_target(&members, 0, "s2", "s1"), Ok(None), "me");
        assert!(probe_for_target(&members, 0, "s2", "s2").is_err(), "itself");
        assert!(
            probe_for_target(&members, 0, "s2", "s9").is_err(),
            "no member"
        );
        assert!(
            probe_for_target(&members, 0, "s9", "s3").is_err(),
            "no sender"
        );
        assert!(
            probe_for_target(&members, 0, "s1", "s3").is_err(),
            "from me"
        );
    }

    #[test]
    fn an_asked_timeout_is_kept_within_reason() {
        assert_eq!(asked_timeout(0), Duration::from_millis(1));
        assert_eq!(asked_timeout(500), Duration::from_millis(500));
        assert_eq!(asked_timeout(u32::MAX), Duration::from_secs(10));
    }
}
