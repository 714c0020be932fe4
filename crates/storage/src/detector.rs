//! Crash detection (SPEC §2.5): probes, indirect probes, suspicion, and the spread of
//! every failure with the probes themselves.
//!
//! The rules — who is asked to probe indirectly, when a silent peer is suspected and
//! when it is declared failed — are plain functions in `suspicion`; this module does
//! the probing and applies them.
//!
//! Every `probe_interval` a node probes each peer it believes alive, all at once
//! (`Probe`, bounded by `probe_timeout`). A peer that does not answer is probed
//! indirectly: up to [`INDIRECT_PROBES`](crate::suspicion::INDIRECT_PROBES) other live peers are asked to probe it
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

use std::sync::Arc;
use std::time::Duration;

use dida_proto::storage::{ProbeForRequest, ProbeRequest};
use futures::future::join_all;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::peering::Peering;
use crate::stats;
use crate::suspicion::{indirect_helpers, Suspicions};

/// How long after start a node waits before suspecting a peer that has never
/// answered it (a peer that has answered once is suspected as soon as it stops).
const STARTUP_GRACE: Duration = Duration::from_secs(30);

/// The detector of a node: a probe round every `probe_interval`, for as long as the
/// process runs (a fenced node skips rounds until it has started over).
pub(crate) async fn run(state: Arc<Peering>) {
    let mut ticker = tokio::time::interval(state.config.probe_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut suspicions = Suspicions::new(
        Instant::now(),
        STARTUP_GRACE,
        state.config.suspicion_timeout,
    );
    loop {
        ticker.tick().await;
        if state.is_fenced() {
            continue;
        }
        probe_round(&state, &mut suspicions).await;
        *state.suspected.lock().expect("suspects lock poisoned") = suspicions.suspected();
    }
}

/// Probes every live peer once, directly and, for those that miss, indirectly; lets
/// `suspicions` decide what the answers mean, logs it and declares the failures.
async fn probe_round(state: &Arc<Peering>, suspicions: &mut Suspicions) {
    let view = state.view.current();
    let peers = state.live_peers(&view);
    // Without the fence (the simulator's control experiment only) a declared node
    // is not told by its peers either: it learns from its own probes, as before
    // the fence existed.
    let declared: Vec<usize> = if state.config.fence {
        view.members.failed().collect()
    } else {
        Vec::new()
    };
    let (reached, _) = tokio::join!(
        join_all(peers.iter().map(|&peer| reachable(state, peer, &peers))),
        join_all(
            declared
                .iter()
                .map(|&peer| probe(state, peer, state.config.probe_timeout))
        ),
    );
    let answers: Vec<(usize, bool)> = peers.iter().copied().zip(reached).collect();
    suspicions.started(
        state
            .heard_from
            .lock()
            .expect("heard-from lock poisoned")
            .iter()
            .copied(),
    );
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
        &state.membership_stats.suspicions,
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
            &state.membership_stats.declarations,
            verdict.failed.len() as u64,
        );
        state.declare_failed(&view, &verdict.failed);
    }
}

/// Whether `peer` answers a direct probe, or else an indirect one through the
/// [`indirect_helpers`] among the other live `peers`.
async fn reachable(state: &Arc<Peering>, peer: usize, peers: &[usize]) -> bool {
    if probe(state, peer, state.config.probe_timeout).await {
        return true;
    }
    let timeout = state.config.probe_timeout;
    let asks = indirect_helpers(state.me, peer, peers)
        .into_iter()
        .map(|helper| {
            let request = ProbeForRequest {
                from: state.id().to_string(),
                target: state.id_of(peer).to_string(),
                timeout_ms: timeout.as_millis() as u32,
            };
            async move {
                matches!(
                    tokio::time::timeout(timeout * 2, state.transport.probe_for(helper, request)).await,
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
    match tokio::time::timeout(timeout, state.transport.probe(peer, request)).await {
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
