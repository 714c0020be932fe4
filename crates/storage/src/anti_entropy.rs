//! Anti-entropy: replicas periodically compare digests of the ranges they share and
//! repair what gossip missed (SPEC §2.4).
//!
//! One round, node A with peer B:
//! 1. A computes, for every ring range that both A and B replicate, a digest of what it
//!    holds there: the wrapping sum of a hash of each key's versions and values.
//! 2. After its gossip delay, A sends the digests (`SyncDigests`). B computes its own
//!    digests of the same ranges and answers with the keys and versions it holds in the
//!    ranges that differ.
//! 3. A pushes, through B's gossip outbox (so again after the delay), the versions B
//!    lacks.
//!
//! Repair is push-only: what A lacks is pushed by B in B's own rounds, so data only ever
//! travels in messages its holder sent after its own gossip delay. On a converged
//! store a round costs one digest per shared range and an empty reply: its cost grows
//! with the difference between replicas, not with the data.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use dida_core::{RangeId, Ring, Version};
use dida_proto::convert::version_from_wire;
use dida_proto::storage::{DigestReply, DigestRequest, RangeDigest};
use prost::Message;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::state::NodeState;
use crate::stats::ReplicationStats;
use crate::store::MultiVersionStore;

/// The ranges that nodes `a` and `b` both replicate.
pub(crate) fn shared_ranges(ring: &Ring, a: usize, b: usize) -> Vec<RangeId> {
    (0..ring.range_count() as RangeId)
        .filter(|&range| {
            let replicas = ring.range_replicas(range);
            replicas.contains(&a) && replicas.contains(&b)
        })
        .collect()
}

/// Digest of each of `ranges` over what `store` holds (0 for an empty range).
pub(crate) fn range_digests(
    store: &MultiVersionStore,
    ring: &Ring,
    ranges: &[RangeId],
) -> HashMap<RangeId, u64> {
    let mut digests: HashMap<RangeId, u64> = ranges.iter().map(|&r| (r, 0)).collect();
    store.for_each_key_digest(|key, digest| {
        if let Some(sum) = digests.get_mut(&ring.range_of(key)) {
            *sum = sum.wrapping_add(digest);
        }
    });
    digests
}

/// Starts the periodic rounds, visiting the peers that share ranges in turn. The
/// partners and their shared ranges follow the current view: after a crash the ring
/// changes, and a change of view starts a round with every partner at once, which is
/// how a node that just became a replica of a range receives its data (the
/// replication factor is restored, SPEC §2.5).
pub(crate) fn spawn(state: Arc<NodeState>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(state.config.anti_entropy_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut turn = state.me;
        loop {
            let everyone = tokio::select! {
                _ = ticker.tick() => false,
                () = state.view_changed.notified() => true,
            };
            if state.is_fenced() {
                return;
            }
            let ring = state.ring();
            let view = state.view.current();
            let partners: Vec<(usize, Vec<RangeId>)> = (0..ring.node_count())
                .filter(|&peer| peer != state.me && !view.failed.contains(&peer))
                .map(|peer| (peer, shared_ranges(&ring, state.me, peer)))
                .filter(|(_, ranges)| !ranges.is_empty())
                .collect();
            if partners.is_empty() {
                continue;
            }
            let chosen: Vec<&(usize, Vec<RangeId>)> = if everyone {
                partners.iter().collect()
            } else {
                turn = turn.wrapping_add(1);
                vec![&partners[turn % partners.len()]]
            };
            let rounds = chosen
                .iter()
                .map(|(peer, ranges)| round(&state, &ring, *peer, ranges));
            let results = futures::future::join_all(rounds).await;
            for ((peer, _), result) in chosen.iter().zip(results) {
                if let Err(status) = result {
                    debug!(peer = state.id_of(*peer), error = %status.message(), "anti-entropy round failed");
                }
            }
        }
    })
}

/// One round with `peer` over the `ranges` both replicate.
async fn round(
    state: &NodeState,
    ring: &Ring,
    peer: usize,
    ranges: &[RangeId],
) -> Result<(), tonic::Status> {
    let digests = range_digests(&state.store, ring, ranges);
    let request = DigestRequest {
        from: state.id().to_string(),
        ring_fingerprint: ring.fingerprint(),
        ranges: ranges
            .iter()
            .map(|&range| RangeDigest {
                range,
                digest: digests[&range],
            })
            .collect(),
    };
    let sent = request.encoded_len() as u64;
    tokio::time::sleep(state.config.gossip_delay).await;
    let reply = state
        .peers
        .replication(peer)
        .sync_digests(request)
        .await?
        .into_inner();
    let stats = &state.stats;
    ReplicationStats::add(&stats.anti_entropy_rounds, 1);
    ReplicationStats::add(&stats.anti_entropy_bytes_sent, sent);
    ReplicationStats::add(
        &stats.anti_entropy_bytes_received,
        reply.encoded_len() as u64,
    );
    let repaired = repair(state, ring, peer, reply);
    ReplicationStats::add(&stats.records_repaired, repaired as u64);
    if repaired > 0 {
        debug!(
            peer = state.id_of(peer),
            repaired, "anti-entropy queued repairs"
        );
    }
    Ok(())
}

/// Queues for `peer` every version this node holds, in the ranges whose digests
/// differed, that the peer does not. Returns how many records were queued.
fn repair(state: &NodeState, ring: &Ring, peer: usize, reply: DigestReply) -> usize {
    if reply.mismatched_ranges.is_empty() {
        return 0;
    }
    let mismatched: HashSet<RangeId> = reply.mismatched_ranges.into_iter().collect();
    let theirs: HashMap<String, Vec<Version>> = reply
        .keys
        .into_iter()
        .map(|k| {
            (
                k.key,
                k.versions.into_iter().map(version_from_wire).collect(),
            )
        })
        .collect();
    let max_versions = state.store.max_versions();
    let mut queued = 0;
    for (key, _) in state
        .store
        .versions_where(|key| mismatched.contains(&ring.range_of(key)))
    {
        let held = theirs.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        // A full replica would drop at once anything older than its oldest version.
        let floor = (held.len() >= max_versions)
            .then(|| held.iter().min().copied())
            .flatten();
        let missing = state.store.records_of(&key, |v| {
            !held.contains(&v) && floor.is_none_or(|oldest| v > oldest)
        });
        queued += missing.len();
        if !missing.is_empty() {
            state.gossip.enqueue(peer, missing, None);
        }
    }
    queued
}
