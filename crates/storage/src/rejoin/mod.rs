//! Joining the ring: at every start, and again whenever the other nodes declare
//! this node failed (SPEC §2.5, extended: nodes come back).
//!
//! A node starts as **joining** at an incarnation higher than any of its earlier
//! processes' (`StorageConfig::incarnation`), out of its own ring and of everyone
//! else's: it forwards what it is sent, and nobody's writes wait for it. Its probes
//! carry its new incarnation, which supersedes a failure declared of an older one,
//! so peers start probing it again. Then it catches up in two phases, each a
//! `Handback` to every peer not counted failed:
//!
//! 1. **Joining.** The peer adopts "joining" (nothing changes for it) and returns
//!    its records of the ranges this node will replicate whose digests differ. The
//!    bulk of the data moves here, while the interim primaries keep serving: one
//!    peer at a time (a range several peers hold comes once), in replies of
//!    bounded size, paced to `MOVE_BYTES_PER_SECOND` so the peers keep serving
//!    their clients.
//! 2. **Alive.** The same call announcing "alive": the peer adopts it under its
//!    view's write lock, so from then on it executes no write of this node's keys
//!    (they are this node's again in its ring), and it has applied every write it
//!    executed before (invariant H1). Its reply carries what changed since phase 1.
//!
//! Once every such peer has answered phase 2 (or refused the connection, so it is
//! not running and executes nothing — a node with a data directory waits for it
//! instead, since it may come back with writes — or been declared failed), this
//! node holds
//! every write any of them executed of its keys, and none executes more: it turns
//! alive in its own view and takes its keys back with no write executed by two
//! primaries and versions still increasing. A peer that neither answers nor is
//! declared failed (paused, cut off) keeps this node joining — a node that cannot
//! hear from a possible interim primary cannot know it has every write.
//!
//! A node declared failed while alive (paused, cut off) fences itself (`Peering::
//! learn`) and starts over here as a new incarnation: it drops its gossip outboxes
//! but **keeps its records** — what peers say never costs a node its data — and
//! joins like a node restarted on its data directory. A write of its old
//! incarnation that was never acknowledged must not resurface after the writes of
//! the primary that took over: before it turns alive, it sets aside, key by key,
//! its own versions that no peer holds of a key another node wrote meanwhile
//! (`divergence`), and nothing else.
//!
//! Each phase also asks the peers this node counts failed: one that answers is
//! running (declared falsely, or rejoining itself at a new incarnation) and is
//! waited for like any other, so that after a storm of declarations — every node
//! declared by every other — no node turns alive alone, the only primary of every
//! key in its own ring. One that does not answer is not waited for: declared
//! failed, it gets no write acknowledged (D2).
//!
//! The rejoining side is here; what a peer answers its `Handback` is in
//! `handback`, and how kept versions of keys written elsewhere are resolved (the
//! keys a rejoin must resolve, the versions it sets aside) in `divergence`. The
//! life-cycle transitions it makes (start over, caught up) are `Lifecycle`'s.

mod divergence;
mod handback;

pub(crate) use handback::answer_handback;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use dida_core::{Liveness, MemberState, RangeId, Record, Ring};
use dida_proto::storage::{HandbackReply, HandbackRequest};
use dida_proto::transport::is_connect_failure;
use futures::future::join_all;
use tracing::{debug, error, info, warn};

use crate::anti_entropy::digests_on_wire;
use crate::config::MOVE_BYTES_PER_SECOND;
use crate::gossip::Gossip;
use crate::peering::Peering;
use crate::roster::Roster;
use crate::stats;
use crate::store::MultiVersionStore;
use crate::validation::{self, Refusal};

/// What joining works with: the node's context, its store and its outboxes.
#[derive(Debug, Clone)]
pub(crate) struct Joiner {
    pub peering: Arc<Peering>,
    pub store: Arc<MultiVersionStore>,
    pub gossip: Arc<Gossip>,
    /// The replica number this node stamps on the versions it creates.
    pub replica: u32,
}

/// Joins at start, and starts over and joins again whenever this incarnation is
/// declared failed, for as long as the process runs.
pub(crate) async fn run(joiner: Joiner) {
    let state = &joiner.peering;
    loop {
        if state.is_fenced() {
            start_over(&joiner);
        }
        if state.liveness() == Liveness::Joining {
            join(&joiner).await;
            continue;
        }
        // Woken by a change of view; the tick covers one that came just before.
        tokio::select! {
            biased;
            () = state.view_change() => {}
            () = tokio::time::sleep(state.config().probe_interval) => {}
        }
    }
}

/// Drops what the fenced incarnation queued (its records stay), and becomes a new,
/// joining incarnation above every one its peers know of.
fn start_over(joiner: &Joiner) {
    let state = &joiner.peering;
    let known = state.view().current().members.get(state.me()).incarnation;
    let Some(incarnation) = state.lifecycle().next_incarnation(known) else {
        // Views refuse incarnations past the bound, so only an announcement of this
        // node at the highest incarnation itself, which no honest process makes,
        // brings a node here.
        error!(
            node = state.id(),
            known,
            "cannot start over: no incarnation above {known} is allowed (the highest is {}); \
             the node stays fenced",
            MemberState::MAX_INCARNATION
        );
        return;
    };
    joiner.gossip.clear(incarnation);
    state.lifecycle().start_over(incarnation);
    state.view().merge([(
        state.me(),
        MemberState {
            incarnation,
            liveness: Liveness::Joining,
        },
    )]);
    state.lifecycle().lift_fence();
    warn!(
        node = state.id(),
        incarnation, "rejoining as a new incarnation, with the records it holds"
    );
    state.announce_view_change();
}

/// Both phases, then alive. Returns early if the node is fenced meanwhile.
///
/// A node that kept records from an earlier life (a data directory, or a fence)
/// may hold a write of its own that was never acknowledged; where another node
/// wrote the key while it was out, that write must not resurface after the interim
/// primary's (a CAS it executed compared against a value since replaced). The
/// phases note such keys as peers answer; once every peer has answered phase 2 —
/// so none executes writes of its keys any more (H1), and it executes none yet —
/// it sets aside its own versions of them that no peer holds
/// (`divergence::resolve`). Everything else it kept stays.
async fn join(joiner: &Joiner) {
    let state = &joiner.peering;
    let incarnation = state.incarnation();
    let mut caught_up = BTreeSet::new();
    let mut diverged = BTreeSet::new();
    let kept = joiner.store.counts().1 > 0;
    for liveness in [Liveness::Joining, Liveness::Alive] {
        match catch_up(joiner, incarnation, liveness, kept, &mut diverged).await {
            Phase::Done(ranges) => caught_up = ranges,
            Phase::Interrupted => return,
        }
    }
    if !diverged.is_empty() {
        divergence::resolve(state, &joiner.store, joiner.replica, &diverged).await;
        if state.is_fenced() || state.incarnation() != incarnation {
            return;
        }
    }
    let alive = MemberState {
        incarnation,
        liveness: Liveness::Alive,
    };
    if let Some(view) = state.view().merge([(state.me(), alive)]) {
        // Normally the ring it turned alive in is the one it caught up for. If a
        // change of view slipped in between and gave it more ranges, its keys are
        // caught up one by one on first write instead (`WritePath::catch_up`).
        let covered = ranges_replicated(&view.first, &view.ring, state.me()).is_subset(&caught_up);
        if covered {
            state.lifecycle().caught_up(view.epoch);
        }
        stats::add(&state.membership_stats().catch_ups, 1);
        info!(
            node = state.id(),
            incarnation,
            epoch = view.epoch,
            "caught up: alive in the ring"
        );
        state.announce_view_change();
    }
}

/// How a phase ended.
enum Phase {
    /// Every peer answered: these ranges are caught up.
    Done(BTreeSet<RangeId>),
    /// The node was fenced (or started over) meanwhile.
    Interrupted,
}

/// One phase: a handback announcing `liveness` to every peer, repeated until each
/// has answered for every range this node will replicate, or is not running, or is
/// counted failed and does not answer. `kept`: whether the node's records come from
/// an earlier life, so that keys written elsewhere meanwhile are noted in
/// `diverged`.
async fn catch_up(
    joiner: &Joiner,
    incarnation: u64,
    liveness: Liveness,
    kept: bool,
    diverged: &mut BTreeSet<String>,
) -> Phase {
    let state = &joiner.peering;
    // The ranges the phase is for, and what each peer still owes of them.
    let mut pending: Option<(BTreeSet<RangeId>, Owed)> = None;
    // In the joining phase, the waiting peer asked next (see below).
    let mut turn = 0;
    loop {
        if state.is_fenced() || state.incarnation() != incarnation {
            return Phase::Interrupted;
        }
        let view = state.view().current();
        let target = state.view().ring_with_alive(&view, state.me());
        let needed = ranges_replicated(&view.first, &target, state.me());
        if pending
            .as_ref()
            .is_some_and(|(wanted, _)| *wanted != needed)
        {
            // A change of view moved ranges: start the phase over, asking every
            // peer again (ranges already equal cost one digest each).
            pending = None;
        }
        let (_, waiting) = pending.get_or_insert_with(|| {
            let waiting = (0..state.roster().len())
                .filter(|&p| p != state.me() && view.is_member(p))
                .map(|p| (p, needed.clone()))
                .collect();
            (needed.clone(), waiting)
        });
        if waiting.is_empty() {
            return Phase::Done(needed);
        }
        let mut announced = view.members.clone();
        announced.merge(
            state.me(),
            MemberState {
                incarnation,
                liveness,
            },
        );
        let wire_view = state.states_to_wire(&announced);
        // The joining phase moves the bulk of the data: one peer at a time, so
        // that a range several peers replicate comes once (the next peer's digest
        // then matches) and the move takes one peer's CPU, not every peer's, from
        // their clients. The alive phase carries only what changed since, and asks
        // every peer at once, since the node waits for all of them.
        let peers: Vec<usize> = match liveness {
            Liveness::Joining => {
                let keys: Vec<usize> = waiting.keys().copied().collect();
                vec![keys[turn % keys.len()]]
            }
            _ => waiting.keys().copied().collect(),
        };
        let started = tokio::time::Instant::now();
        let divergence = kept.then_some(&*target);
        let durable = state.config().data_dir.is_some();
        let calls = peers.iter().map(|&peer| {
            let ranges: Vec<RangeId> = waiting[&peer].iter().copied().collect();
            handback_from(
                joiner,
                peer,
                wire_view.clone(),
                &view.first,
                ranges,
                divergence,
            )
        });
        let answers = join_all(calls).await;
        let mut moved = None;
        for (peer, answer) in peers.into_iter().zip(answers) {
            match answer {
                Answer::Complete(ranges, keys, bytes) => {
                    moved = Some(moved.unwrap_or(0) + bytes);
                    diverged.extend(keys);
                    let left = waiting.get_mut(&peer).expect("waiting peer");
                    for range in ranges {
                        left.remove(&range);
                    }
                    if left.is_empty() {
                        waiting.remove(&peer);
                    }
                }
                // A node without a data directory that is not running holds
                // nothing when it comes back; a durable one may hold writes this
                // node lacks, so it is waited for (until declared failed).
                // A peer counted failed executes nothing that could be acknowledged
                // (D2): asked once, it is waited for only if it answers.
                Answer::NotRunning | Answer::Silent if view.is_failed(peer) => {
                    waiting.remove(&peer);
                }
                Answer::NotRunning if !durable => {
                    waiting.remove(&peer);
                }
                Answer::NotRunning | Answer::Silent => turn += 1,
            }
        }
        match moved {
            _ if waiting.is_empty() => {}
            // Progress: the next page comes at once, paced to the rate that
            // leaves the nodes to their clients.
            Some(bytes) => {
                let paced = Duration::from_secs_f64(bytes as f64 / MOVE_BYTES_PER_SECOND as f64);
                tokio::time::sleep_until(started + paced).await;
            }
            None => {
                let silent: Vec<&str> = waiting.keys().map(|&p| state.id_of(p)).collect();
                debug!(node = state.id(), phase = %liveness, ?silent, "rejoin waits for peers");
                tokio::time::sleep(state.config().probe_interval).await;
            }
        }
    }
}

/// For each peer still to answer a phase, the ranges it has not answered for.
type Owed = BTreeMap<usize, BTreeSet<RangeId>>;

/// What one handback call came to.
enum Answer {
    /// The peer answered; these ranges are done, these keys were written
    /// elsewhere while this node was out (only looked for when asked), and this
    /// many bytes of records came.
    Complete(Vec<RangeId>, BTreeSet<String>, u64),
    /// The peer refused the connection: it is not running.
    NotRunning,
    /// No answer (timeout, pause, partition) or a refusal: ask again.
    Silent,
}

/// One `Handback` to `peer` for `ranges` (of `initial`, the first ring), merging what it
/// returns. With `divergence` (the ring this node joins, when its records come from
/// an earlier life), the answer also names the keys this node leads there that the
/// peer shows were written elsewhere meanwhile.
async fn handback_from(
    joiner: &Joiner,
    peer: usize,
    view: Vec<dida_proto::storage::MemberView>,
    initial: &Ring,
    ranges: Vec<RangeId>,
    divergence: Option<&Ring>,
) -> Answer {
    let state = &joiner.peering;
    let request = HandbackRequest {
        from: state.id().to_string(),
        view,
        ring_fingerprint: initial.fingerprint(),
        ranges: digests_on_wire(&joiner.store, initial, &ranges),
    };
    match state.transport().handback(peer, request).await {
        Ok(reply) => {
            // A restarted node learns the membership changes it missed before it
            // counts on its ring.
            if let Some(config) = reply
                .config
                .clone()
                .and_then(|c| dida_proto::convert::config_from_wire(c).ok())
            {
                crate::reconfig::learn(state, &config);
            }
            let (records, complete_ranges, view) = match check_reply(
                state.roster(),
                initial,
                &ranges,
                reply,
            ) {
                Ok(checked) => checked,
                Err(refusal) => {
                    warn!(node = state.id(), peer = state.id_of(peer), reason = %refusal.0, "refused a peer's handback reply; asking again");
                    return Answer::Silent;
                }
            };
            let written_elsewhere = match divergence {
                Some(target) => divergence::written_elsewhere(
                    state.me(),
                    joiner.replica,
                    joiner.store.max_versions(),
                    target,
                    &records,
                    |key| joiner.store.records_of(key, |_| true),
                ),
                None => BTreeSet::new(),
            };
            let mut merged = 0;
            let mut bytes = 0;
            for record in &records {
                merged += usize::from(joiner.store.merge(record));
                bytes += (record.key.len() + record.value.len()) as u64;
            }
            stats::add(
                &state.stats().catch_up_records_received,
                records.len() as u64,
            );
            stats::add(&state.stats().catch_up_bytes_received, bytes);
            if merged > 0 {
                debug!(
                    node = state.id(),
                    peer = state.id_of(peer),
                    merged,
                    "rejoin caught up records"
                );
            }
            if !view.is_empty() {
                state.learn(Some(peer), view);
            }
            Answer::Complete(complete_ranges, written_elsewhere, bytes)
        }
        Err(status) if is_connect_failure(&status) => Answer::NotRunning,
        Err(status) => {
            debug!(node = state.id(), peer = state.id_of(peer), error = %status.message(), "handback failed");
            Answer::Silent
        }
    }
}

/// A handback reply's records, complete ranges and view, checked.
type CheckedReply = (Vec<Record>, Vec<RangeId>, Vec<(usize, MemberState)>);

/// Checks a handback reply whole before any of it is used: its view well formed,
/// its records valid (`validation::record`) and of the `asked` ranges of the
/// first ring (`initial`), and its complete ranges among those asked.
fn check_reply(
    membership: &Roster,
    initial: &Ring,
    asked: &[RangeId],
    reply: HandbackReply,
) -> Result<CheckedReply, Refusal> {
    let updates = validation::view(membership, &reply.view)?;
    let records = validation::records(membership, reply.records)?;
    if let Some(stray) = records
        .iter()
        .find(|r| !asked.contains(&initial.range_of(&r.key)))
    {
        return Err(Refusal(format!(
            "it returned key {:?}, of range {}, which was not asked for",
            stray.key,
            initial.range_of(&stray.key)
        )));
    }
    let complete =
        validation::ranges(initial.range_count(), reply.complete_ranges.iter().copied())?;
    if let Some(range) = complete.iter().find(|r| !asked.contains(r)) {
        return Err(Refusal(format!(
            "it reported range {range} complete, which was not asked for"
        )));
    }
    Ok((records, reply.complete_ranges, updates))
}

/// The ranges of `initial` (the finest) that `node` replicates in `target`.
fn ranges_replicated(initial: &Ring, target: &Ring, node: usize) -> BTreeSet<RangeId> {
    initial
        .range_ends()
        .enumerate()
        .filter(|&(_, end)| target.range_replicas(target.range_at(end)).contains(&node))
        .map(|(range, _)| range as RangeId)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dida_core::ring::key_hash;
    use dida_core::Version;
    use dida_proto::convert::record_to_wire;

    #[test]
    fn a_handback_reply_is_used_only_if_it_answers_the_ranges_asked() {
        let ids = ["s1", "s2", "s3"];
        let membership = Roster::new(
            &dida_core::Membership::new(
                ids.iter()
                    .enumerate()
                    .map(|(i, id)| (id.to_string(), format!("http://127.0.0.1:{}", 7001 + i))),
            )
            .expect("a valid membership"),
        );
        let initial = Ring::new(&ids, 8, 3);
        let key = "some-key";
        let range = initial.range_of(key);
        let other = (0..initial.range_count() as RangeId)
            .find(|&r| r != range)
            .expect("another range");
        let record = Record {
            key: key.to_string(),
            version: Version::new(1, membership.get(1).replica),
            value: "v".to_string(),
        };
        let reply = |ranges: Vec<RangeId>| HandbackReply {
            records: vec![record_to_wire(&record)],
            complete_ranges: ranges,
            view: Vec::new(),
            config: None,
        };
        let (records, complete, view) =
            check_reply(&membership, &initial, &[range], reply(vec![range])).expect("valid");
        assert_eq!((records, complete), (vec![record.clone()], vec![range]));
        assert!(view.is_empty());
        // A record of a range not asked for, or a range reported complete that was
        // not asked for, refuses the reply whole.
        assert!(check_reply(&membership, &initial, &[other], reply(vec![other])).is_err());
        assert!(check_reply(&membership, &initial, &[range], reply(vec![range, other])).is_err());
    }

    #[test]
    fn the_ranges_to_catch_up_are_those_replicated_in_the_target_ring() {
        let ids = ["s1", "s2", "s3", "s4", "s5"];
        let initial = Ring::new(&ids, 16, 3);
        let target = Ring::without(&ids, 16, 3, |n| n == 4);
        let ranges = ranges_replicated(&initial, &target, 0);
        for i in 0..3000 {
            let key = format!("key-{i}");
            let range = initial.range_at(key_hash(&key));
            assert_eq!(
                ranges.contains(&range),
                target.replicas(&key).contains(&0),
                "{key}"
            );
        }
    }
}
