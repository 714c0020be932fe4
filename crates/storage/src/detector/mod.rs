//! Crash detection (SPEC §2.5): probes, indirect probes, suspicion, and the spread of
//! every failure with the probes themselves.
//!
//! The rules — who is asked to probe indirectly, when a silent peer is suspected and
//! when it is declared failed — are plain functions in `suspicion`; this module does
//! the probing and applies them.
//!
//! Every `probe_interval` a node probes each peer it believes alive, all at once
//! (`Probe`, bounded by `probe_timeout`). A peer that does not answer is probed
//! indirectly: up to [`INDIRECT_PROBES`](suspicion::INDIRECT_PROBES) other live peers are asked to probe it
//! (`ProbeFor`), which tells a crashed node from a slow link between two nodes. If
//! none reaches it, the peer is **suspected**; a suspected peer that still answers
//! nobody once `suspicion_timeout` has passed is declared **failed**. Any answer
//! clears a suspicion.
//!
//! Each probe and each answer carries its sender's whole view (every member's
//! incarnation and liveness, `dida_core::liveness`), and the receiver merges it, so
//! a failure — or a restarted node's new incarnation — reaches every live node
//! within one probe interval, without a separate broadcast. A failure is declared of
//! the incarnation the prober knew, so it never hides a restart announced meanwhile.
//!
//! **Detection bound.** A crash is declared at most `probe_interval + probe_timeout
//! (direct) + probe_timeout (indirect) + suspicion_timeout` after it happens, plus
//! one `probe_interval` to reach every node: with the defaults (250 ms, 500 ms,
//! 1500 ms) about 3 s, and typically 2–2.5 s.
//!
//! **Start-up.** Nodes of a cluster start one after another: a peer that has never
//! answered is not suspected during the first `STARTUP_GRACE` (30 s) after this node
//! started, so a slow start is not taken for a crash. A peer that has probed this
//! node has started, though, and is no longer spared: a node killed moments after
//! the cluster came up, before this node's own probes reached it, is declared
//! within the usual bound, not after the grace.
//!
//! **Only a majority declares** (`suspicion::has_quorum`): a node that reaches no
//! strict majority of the live nodes suspects but declares no one, so a node cut
//! off from the rest never takes their keys over.
//!
//! **False suspicion.** A node that is alive but was declared failed (it could not
//! answer anyone for `suspicion_timeout`) learns it from the next probe it exchanges
//! and **fences** itself: it stops serving, exactly as if it had crashed, so two
//! nodes never both act as a key's primary once the view has spread; then it
//! rejoins as a new incarnation, keeping its records (`rejoin`). Generous timeouts
//! keep this rare; the window before the fenced node hears of it is the price of a
//! detector without leases (see docs/protocols.md).
//!
//! **Declared peers are still probed** (directly, and not counted towards any
//! suspicion): the probe tells a declared node that is in fact running that it was
//! declared — so it rejoins — and its answer tells this node of its new incarnation.
//! Without it, two running nodes that each counted the other failed (after forged
//! declarations, or every node declared by every other) would never speak again:
//! a split brain, each the only primary in its own ring.
//!
//! Both sides live here: the prober ([`run`]) and the answers to a peer's `Probe`
//! and `ProbeFor` ([`answer_probe`], [`answer_probe_for`]); the suspicion rules sit
//! in `suspicion`, the checks of who may ask to probe whom in [`probe_for_target`].

mod suspicion;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dida_core::Membership;
use dida_proto::storage::{ProbeForReply, ProbeForRequest, ProbeReply, ProbeRequest};
use futures::future::join_all;
use tokio::time::Instant;
use tonic::Status;
use tracing::{info, warn};

use crate::peering::Peering;
use crate::stats;
use crate::validation::{self, Refusal};
use suspicion::{indirect_helpers, Suspicions};

/// How long after start a node waits before suspecting a peer that has never
/// answered it (a peer that has answered once is suspected as soon as it stops).
const STARTUP_GRACE: Duration = Duration::from_secs(30);

/// Longest a peer's `ProbeFor` may ask this node to wait for the target: the
/// asker's timeout, within reason, so a probe never holds a task for long.
const MOST_ASKED_TIMEOUT_MS: u32 = 10_000;

/// What the detector shares with the answers to peers' probes: whom it suspects
/// (for `Status`) and who has probed this node.
#[derive(Debug, Default)]
pub(crate) struct Detection {
    /// Peers the detector currently suspects.
    suspected: Mutex<BTreeSet<usize>>,
    /// Peers that have probed this node: they have started, so the detector's
    /// start-up grace no longer spares them even if none of its own probes reached
    /// them yet.
    heard_from: Mutex<BTreeSet<usize>>,
}

impl Detection {
    /// The peers the detector suspects after its latest round.
    pub fn suspected(&self) -> BTreeSet<usize> {
        self.suspected
            .lock()
            .expect("suspects lock poisoned")
            .clone()
    }

    fn heard_from(&self) -> Vec<usize> {
        let heard = self.heard_from.lock().expect("heard-from lock poisoned");
        heard.iter().copied().collect()
    }
}

/// The detector of a node: a probe round every `probe_interval`, for as long as the
/// process runs (a fenced node skips rounds until it has started over).
pub(crate) async fn run(state: Arc<Peering>, detection: Arc<Detection>) {
    let mut ticker = tokio::time::interval(state.config().probe_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut suspicions = Suspicions::new(
        Instant::now(),
        STARTUP_GRACE,
        state.config().suspicion_timeout,
    );
    loop {
        ticker.tick().await;
        if state.is_fenced() {
            continue;
        }
        probe_round(&state, &detection, &mut suspicions).await;
        *detection.suspected.lock().expect("suspects lock poisoned") = suspicions.suspected();
    }
}

/// Probes every live peer once, directly and, for those that miss, indirectly; lets
/// `suspicions` decide what the answers mean, logs it and declares the failures.
async fn probe_round(state: &Arc<Peering>, detection: &Detection, suspicions: &mut Suspicions) {
    let view = state.view().current();
    let peers = state.live_peers(&view);
    // Without the fence (the simulator's control experiment only) a declared node
    // is not told by its peers either: it learns from its own probes, as before
    // the fence existed.
    let declared: Vec<usize> = if state.config().fence {
        view.members.failed().collect()
    } else {
        Vec::new()
    };
    let (reached, _) = tokio::join!(
        join_all(peers.iter().map(|&peer| reachable(state, peer, &peers))),
        join_all(
            declared
                .iter()
                .map(|&peer| probe(state, peer, state.config().probe_timeout))
        ),
    );
    let answers: Vec<(usize, bool)> = peers.iter().copied().zip(reached).collect();
    suspicions.started(detection.heard_from());
    let failed: std::collections::BTreeSet<usize> = view.members.failed().collect();
    let verdict = suspicions.observe(Instant::now(), &answers, &failed);
    for &peer in &verdict.cleared {
        info!(
            node = state.id(),
            peer = state.id_of(peer),
            "suspected peer answered again"
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
    if verdict.without_quorum {
        warn!(
            node = state.id(),
            "this node reaches no majority of the live nodes: it declares no one failed"
        );
    }
    if !verdict.failed.is_empty() {
        let names: Vec<&str> = verdict.failed.iter().map(|&n| state.id_of(n)).collect();
        warn!(node = state.id(), failed = ?names, "declaring crashed peers failed");
        stats::add(
            &state.membership_stats().declarations,
            verdict.failed.len() as u64,
        );
        state.declare_failed(&view, &verdict.failed);
    }
}

/// Whether `peer` answers a direct probe, or else an indirect one through the
/// [`indirect_helpers`] among the other live `peers`.
async fn reachable(state: &Arc<Peering>, peer: usize, peers: &[usize]) -> bool {
    if probe(state, peer, state.config().probe_timeout).await {
        return true;
    }
    let timeout = state.config().probe_timeout;
    let asks = indirect_helpers(state.me(), peer, peers)
        .into_iter()
        .map(|helper| {
            let request = ProbeForRequest {
                from: state.id().to_string(),
                target: state.id_of(peer).to_string(),
                timeout_ms: timeout.as_millis() as u32,
            };
            async move {
                matches!(
                    tokio::time::timeout(timeout * 2, state.transport().probe_for(helper, request)).await,
                    Ok(Ok(reply)) if reply.reachable
                )
            }
        });
    join_all(asks).await.into_iter().any(|reached| reached)
}

/// One probe of `peer` within `timeout`, exchanging failed sets: made by the
/// detector and, for `ProbeFor`, on behalf of another node. True if it answered in
/// time.
pub(crate) async fn probe(state: &Peering, peer: usize, timeout: Duration) -> bool {
    let request = ProbeRequest {
        from: state.id().to_string(),
        view: state.view_to_wire(),
    };
    match tokio::time::timeout(timeout, state.transport().probe(peer, request)).await {
        Ok(Ok(reply)) => {
            if let Err(refusal) = state.learn_wire(peer, &reply.view) {
                // It answered, so it runs; what it says is not believed.
                warn!(node = state.id(), peer = state.id_of(peer), reason = %refusal.0, "ignored the malformed view a probed peer answered with");
            }
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
    let membership = &state.config().membership;
    let from = validation::sender(membership, state.me(), &request.from).map_err(refused)?;
    let updates = validation::view(membership, &request.view).map_err(refused)?;
    detection
        .heard_from
        .lock()
        .expect("heard-from lock poisoned")
        .insert(from);
    if !updates.is_empty() {
        state.learn(Some(from), updates);
    }
    Ok(ProbeReply {
        view: state.view_to_wire(),
    })
}

/// Probes another node on a peer's behalf (`ProbeFor`), once
/// [`probe_for_target`] has accepted the request.
pub(crate) async fn answer_probe_for(
    state: &Peering,
    request: ProbeForRequest,
) -> Result<ProbeForReply, Status> {
    state.check_serving()?;
    let refused = |r: Refusal| r.status(state.id(), "probe request", &request.from);
    let target = probe_for_target(
        &state.config().membership,
        state.me(),
        &request.from,
        &request.target,
    )
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
    membership: &Membership,
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

    fn membership() -> Membership {
        Membership::parse(
            "s1=http://127.0.0.1:7001,s2=http://127.0.0.1:7002,s3=http://127.0.0.1:7003",
        )
        .expect("a valid membership")
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
