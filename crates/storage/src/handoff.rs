//! Handoff: a node drops the records of ranges it no longer replicates, once every
//! replica of each such range has confirmed holding them.
//!
//! A node comes to hold a range it does not replicate whenever another node
//! re-enters the ring: the interim replica of a crashed (or paused, or cut off)
//! node's ranges keeps its copy when the node rejoins, and nodes started together
//! take each other's ranges while they join one by one. Without this, every
//! restart left extra copies behind, and a whole-cluster restart ended with every
//! key on every node.
//!
//! Every `--anti-entropy-interval`, a node alive in its own view takes the ranges of
//! its current ring it holds records in but does not replicate, a few at a time:
//!
//! 1. it lists the keys and versions it holds there (names only, no values);
//! 2. for each replica of those ranges it compares digests (`SyncDigests` marked
//!    `handoff`: the receiver answers for ranges it replicates and the sender, in
//!    its ring, does not), and pushes (`Push` marked `handoff`) what the replica
//!    lacks, in messages of bounded size, paced to a byte rate, after its gossip
//!    delay (G1); then it compares again;
//! 3. once every replica of a range reported lacking nothing listed, it drops the
//!    listed versions of that range — under its view's read lock, and only if the
//!    view is still the one it listed them in.
//!
//! So a record is dropped only when every node that replicates it in the dropping
//! node's view holds it or a newer `max_versions` (invariant H2 of
//! docs/protocols.md); data never drops below its replicas, whatever else fails.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use dida_core::{Liveness, RangeId, Record, Version};
use dida_proto::convert::record_to_wire;
use dida_proto::storage::{DigestRequest, PushRequest};
use prost::Message;
use tonic::Status;
use tracing::{debug, info, warn};

use crate::anti_entropy::{check_reply, digests_on_wire, versions_by_key};
use crate::config::MOVE_BYTES_PER_SECOND;
use crate::peering::Peering;
use crate::stats;
use crate::store::{lacks, MultiVersionStore};
use crate::view::View;

/// Ranges handed off together: what is listed at once (key names and versions of
/// this many ranges) stays small whatever the store holds.
const RANGES_PER_BATCH: usize = 16;
/// Most value bytes in one handoff push.
const MAX_PUSH_BYTES: usize = 1024 * 1024;
/// Comparisons with one replica per batch: the first finds what it lacks, the
/// second confirms the pushes arrived (a third covers a push refused while views
/// were still settling); what is still unconfirmed waits for the next pass.
const MAX_COMPARISONS: usize = 3;

/// What handoff works with: the node's context and its store.
#[derive(Debug, Clone)]
pub(crate) struct Handoff {
    pub peering: Arc<Peering>,
    pub store: Arc<MultiVersionStore>,
}

/// The periodic passes: one per anti-entropy interval while the node is alive in
/// its own view (not while fenced or joining: a joining node is out of every ring,
/// and what it holds is what it will replicate once alive).
pub(crate) async fn run(node: Handoff) {
    let state = &node.peering;
    let mut ticker = tokio::time::interval(state.config().anti_entropy_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if state.is_fenced() || state.liveness() != Liveness::Alive {
            continue;
        }
        let dropped = pass(&node).await;
        // Only a data directory has anything to compact, and a blocking task
        // there would let the simulator's paused clock run ahead while the
        // thread works, so that a seed no longer replayed exactly.
        if dropped > 0 && node.store.is_durable() {
            let store = node.store.clone();
            // The log holds no removals: a snapshot makes the drop durable, so a
            // restart does not bring the records back.
            match tokio::task::spawn_blocking(move || store.compact()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    warn!(node = state.id(), error = %e, "compaction after a handoff failed; the dropped records may come back at a restart (and be handed off again)")
                }
                Err(e) => {
                    warn!(node = state.id(), error = %e, "compaction after a handoff did not run")
                }
            }
        }
    }
}

/// One pass over the ranges of the current ring this node holds but does not
/// replicate; returns how many records it dropped.
async fn pass(node: &Handoff) -> usize {
    let state = &node.peering;
    let view = state.view().current();
    let unreplicated = unreplicated_ranges(&view, state.me());
    let held: Vec<RangeId> = node
        .store
        .ranges_holding(&view.ring, &unreplicated)
        .into_iter()
        .collect();
    let mut dropped = 0;
    for batch in held.chunks(RANGES_PER_BATCH) {
        match hand_off(node, &view, batch).await {
            Ok(n) => dropped += n,
            Err(status) => {
                debug!(node = state.id(), error = %status.message(), "handoff incomplete; retried next pass");
                break;
            }
        }
    }
    if dropped > 0 {
        info!(
            node = state.id(),
            records = dropped,
            "dropped records of ranges this node no longer replicates, held by their replicas"
        );
    }
    dropped
}

/// The ranges of `view`'s ring that node `me` does not replicate.
fn unreplicated_ranges(view: &View, me: usize) -> HashSet<RangeId> {
    (0..view.ring.range_count() as RangeId)
        .filter(|&range| !view.ring.range_replicas(range).contains(&me))
        .collect()
}

/// Hands off `ranges` of `view`'s ring to their replicas and drops what all of them
/// confirmed; returns how many records were dropped.
async fn hand_off(node: &Handoff, view: &View, ranges: &[RangeId]) -> Result<usize, Status> {
    let state = &node.peering;
    let ring = &view.ring;
    let wanted: HashSet<RangeId> = ranges.iter().copied().collect();
    let listed: BTreeMap<String, Vec<Version>> =
        node.store.versions_in(ring, &wanted).into_iter().collect();
    // G1: every listed record is at least a gossip delay old when sent.
    tokio::time::sleep(state.config().gossip_delay).await;
    let mut by_replica: BTreeMap<usize, Vec<RangeId>> = BTreeMap::new();
    for &range in ranges {
        for &replica in ring.range_replicas(range) {
            by_replica.entry(replica).or_default().push(range);
        }
    }
    let mut unconfirmed: BTreeSet<RangeId> = BTreeSet::new();
    for (&replica, its_ranges) in &by_replica {
        let confirmed = confirm(node, view, replica, its_ranges, &listed).await;
        if let Err(status) = confirmed {
            debug!(node = state.id(), replica = state.id_of(replica), error = %status.message(), "a replica did not confirm a handoff");
            unconfirmed.extend(its_ranges);
        }
    }
    let confirmed: HashSet<RangeId> = wanted
        .difference(&unconfirmed.into_iter().collect())
        .copied()
        .collect();
    if confirmed.is_empty() {
        return Err(Status::unavailable(
            "no range of the batch was confirmed by all its replicas",
        ));
    }
    Ok(drop_confirmed(node, view.epoch, &confirmed, &listed))
}

/// Compares `ranges` with `replica` and pushes what it lacks of `listed`, until it
/// lacks nothing (Ok) or [`MAX_COMPARISONS`] are spent.
async fn confirm(
    node: &Handoff,
    view: &View,
    replica: usize,
    ranges: &[RangeId],
    listed: &BTreeMap<String, Vec<Version>>,
) -> Result<(), Status> {
    let state = &node.peering;
    let ring = &view.ring;
    let max_versions = node.store.max_versions();
    for _ in 0..MAX_COMPARISONS {
        let request = DigestRequest {
            from: state.id().to_string(),
            ring_fingerprint: ring.fingerprint(),
            ranges: digests_on_wire(&node.store, ring, ranges),
            handoff: true,
        };
        let reply = state.transport().sync_digests(replica, request).await?;
        check_reply(state.roster(), ring, ranges, &reply).map_err(|refusal| {
            Status::invalid_argument(format!(
                "node {} refused node {}'s handoff digest reply: {}; nothing was dropped",
                state.id(),
                state.id_of(replica),
                refusal.0
            ))
        })?;
        let mismatched: HashSet<RangeId> = reply.mismatched_ranges.iter().copied().collect();
        let theirs = versions_by_key(reply.keys);
        let lacking: Vec<(&str, Vec<Version>)> = listed
            .iter()
            .filter(|(key, _)| mismatched.contains(&ring.range_of(key)))
            .filter_map(|(key, versions)| {
                let held = theirs.get(key).map(Vec::as_slice).unwrap_or(&[]);
                let lacked: Vec<Version> = versions
                    .iter()
                    .copied()
                    .filter(|&v| lacks(held, max_versions, v))
                    .collect();
                (!lacked.is_empty()).then_some((key.as_str(), lacked))
            })
            .collect();
        if lacking.is_empty() {
            return Ok(());
        }
        push_lacking(node, replica, &lacking).await?;
    }
    Err(Status::unavailable(format!(
        "node {} still lacked records after {MAX_COMPARISONS} comparisons",
        state.id_of(replica)
    )))
}

/// Pushes the records of `lacking` to `replica` as handoff pushes of at most
/// [`MAX_PUSH_BYTES`], paced to [`MOVE_BYTES_PER_SECOND`]. Versions dropped meanwhile
/// (none are, the range being unreplicated here) are skipped.
async fn push_lacking(
    node: &Handoff,
    replica: usize,
    lacking: &[(&str, Vec<Version>)],
) -> Result<(), Status> {
    let mut batch: Vec<Record> = Vec::new();
    let mut bytes = 0;
    for (key, versions) in lacking {
        for record in node.store.records_of(key, |v| versions.contains(&v)) {
            bytes += record.key.len() + record.value.len();
            batch.push(record);
            if bytes >= MAX_PUSH_BYTES {
                send(node, replica, std::mem::take(&mut batch)).await?;
                bytes = 0;
            }
        }
    }
    if !batch.is_empty() {
        send(node, replica, batch).await?;
    }
    Ok(())
}

/// One handoff push, then the pause that keeps the rate.
async fn send(node: &Handoff, replica: usize, records: Vec<Record>) -> Result<(), Status> {
    let state = &node.peering;
    let count = records.len() as u64;
    let request = PushRequest {
        from: state.id().to_string(),
        records: records.iter().map(record_to_wire).collect(),
        incarnation: state.incarnation(),
        handoff: true,
    };
    let bytes = request.encoded_len() as u64;
    state.transport().push(replica, request).await?;
    let stats = state.stats();
    stats::add(&stats.handoff_records_sent, count);
    stats::add(&stats.handoff_bytes_sent, bytes);
    tokio::time::sleep(Duration::from_secs_f64(
        bytes as f64 / MOVE_BYTES_PER_SECOND as f64,
    ))
    .await;
    Ok(())
}

/// Drops the `listed` versions of keys in `ranges`, if the view is still the one of
/// `epoch` (range numbers belong to its ring): under the view's read lock, so no
/// change of view makes this node a replica of them meanwhile.
fn drop_confirmed(
    node: &Handoff,
    epoch: u64,
    ranges: &HashSet<RangeId>,
    listed: &BTreeMap<String, Vec<Version>>,
) -> usize {
    let state = &node.peering;
    state.view().with_current(|view| {
        if view.epoch != epoch {
            return 0;
        }
        let mut dropped = 0;
        let mut bytes = 0;
        for (key, versions) in listed {
            if ranges.contains(&view.ring.range_of(key)) {
                for record in node.store.drop_versions(key, versions) {
                    dropped += 1;
                    bytes += (record.key.len() + record.value.len()) as u64;
                }
            }
        }
        let stats = state.stats();
        stats::add(&stats.records_dropped, dropped as u64);
        stats::add(&stats.bytes_dropped, bytes);
        dropped
    })
}
