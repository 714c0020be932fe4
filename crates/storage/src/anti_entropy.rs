//! Anti-entropy: replicas periodically compare digests of the ranges they share and
//! repair what gossip missed (SPEC §2.4).
//!
//! One round, node A with peer B:
//! 1. A takes, for every ring range that both A and B replicate, the digest of what it
//!    holds there: the wrapping sum of a hash of each record (`crate::digest`).
//! 2. After its gossip delay, A sends the digests (`SyncDigests`). B takes its own
//!    digests of the same ranges and answers with the keys and versions it holds in the
//!    ranges that differ ([`compare_digests`]).
//! 3. A pushes, through B's gossip outbox (so again after the delay), the versions B
//!    lacks.
//!
//! Repair is push-only: what A lacks is pushed by B in B's own rounds, so data only ever
//! travels in messages its holder sent after its own gossip delay.
//!
//! The store keeps every digest current as records change, bucketed so that it holds
//! in every view (`crate::arcs`): taking the digests costs one look per shard of the
//! shared ranges, and keys are read only in ranges whose digests differ. On a
//! converged store a round is therefore one digest per shared range and an empty
//! reply, in CPU as in bytes: its cost grows with the difference between replicas,
//! not with the data.
//!
//! Both sides are here: A's rounds ([`run`]) and B's answer ([`answer_digests`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use dida_core::{RangeId, Ring, Version};
use dida_proto::convert::{version_from_wire, version_to_wire};
use dida_proto::storage::{DigestReply, DigestRequest, KeyVersions, RangeDigest};
use prost::Message;
use tonic::Status;
use tracing::debug;

use crate::gossip::Gossip;
use crate::peering::Peering;
use crate::roster::Roster;
use crate::stats;
use crate::store::{lacks, MultiVersionStore};
use crate::validation::{self, Refusal};

/// The ranges that nodes `a` and `b` both replicate.
pub(crate) fn shared_ranges(ring: &Ring, a: usize, b: usize) -> Vec<RangeId> {
    (0..ring.range_count() as RangeId)
        .filter(|&range| {
            let replicas = ring.range_replicas(range);
            replicas.contains(&a) && replicas.contains(&b)
        })
        .collect()
}

/// The digests of `ranges` of `ring` in `store`, as sent to a peer: an anti-entropy
/// round's, and a rejoining node's `Handback`.
pub(crate) fn digests_on_wire(
    store: &MultiVersionStore,
    ring: &Ring,
    ranges: &[RangeId],
) -> Vec<RangeDigest> {
    let digests = store.range_digests(ring, ranges);
    ranges
        .iter()
        .map(|&range| RangeDigest {
            range,
            digest: digests[&range],
        })
        .collect()
}

/// B's side of a round: compares the digests A sent (`theirs`) with this node's
/// digests of the same ranges, keeping only those in `shared` (the ranges both
/// replicate, by this node's ring), and lists this node's keys and versions in the
/// ranges that differ. Keys are read only when some range differs.
pub(crate) fn compare_digests(
    store: &MultiVersionStore,
    ring: &Ring,
    shared: &HashSet<RangeId>,
    theirs: &[RangeDigest],
) -> DigestReply {
    let ranges: Vec<RangeId> = theirs
        .iter()
        .map(|r| r.range)
        .filter(|r| shared.contains(r))
        .collect();
    let ours = store.range_digests(ring, &ranges);
    let mismatched: BTreeSet<RangeId> = theirs
        .iter()
        .filter(|r| ours.get(&r.range).is_some_and(|&d| d != r.digest))
        .map(|r| r.range)
        .collect();
    let keys = if mismatched.is_empty() {
        Vec::new()
    } else {
        store
            .versions_in(ring, &mismatched.iter().copied().collect())
            .into_iter()
            .map(|(key, versions)| KeyVersions {
                key,
                versions: versions.into_iter().map(version_to_wire).collect(),
            })
            .collect()
    };
    DigestReply {
        mismatched_ranges: mismatched.into_iter().collect(),
        keys,
    }
}

/// B's side of a round. The sender must be another member whose ring is this
/// node's (same fingerprint), and every range it sends must be one both replicate
/// there, named once (the sender computes the same shared ranges from the same
/// ring); otherwise nothing is compared. A handoff's comparison
/// (`handoff`) names ranges this node replicates and the sender, in the
/// ring, no longer does.
pub(crate) fn answer_digests(
    state: &Peering,
    store: &MultiVersionStore,
    request: DigestRequest,
) -> Result<DigestReply, Status> {
    state.check_serving()?;
    let refused = |r: Refusal| r.status(state.id(), "digest exchange", &request.from);
    let sender = validation::sender(state.roster(), state.me(), &request.from).map_err(refused)?;
    let view = state.view().current();
    let ring = view.ring.clone();
    if request.handoff && !view.may_hand_off(sender) {
        return Err(Status::failed_precondition(format!(
            "node {} counts node {} out of its ring, so it has nothing to hand off; \
             comparison refused",
            state.id(),
            request.from
        )));
    }
    if request.ring_fingerprint != ring.fingerprint() {
        return Err(Status::failed_precondition(format!(
            "node {} and node {} disagree on the ring (different --peers, --vnodes or \
             --replication-factor, or views not yet equal after a crash); anti-entropy \
             refused",
            state.id(),
            request.from
        )));
    }
    let named = validation::ranges(ring.range_count(), request.ranges.iter().map(|r| r.range))
        .map_err(refused)?;
    let comparable: HashSet<RangeId> = if request.handoff {
        handoff_ranges(&ring, state.me(), sender)
    } else {
        shared_ranges(&ring, state.me(), sender)
    }
    .into_iter()
    .collect();
    if let Some(range) = named.iter().find(|r| !comparable.contains(r)) {
        let rule = if request.handoff {
            "one this node replicates and the sender does not"
        } else {
            "one both nodes replicate"
        };
        return Err(refused(Refusal(format!(
            "range {range} is not {rule} in the ring they agree on"
        ))));
    }
    Ok(compare_digests(store, &ring, &comparable, &request.ranges))
}

/// The ranges that node `to` replicates and node `from` does not: those `from`
/// may hand off to `to` (`handoff`).
pub(crate) fn handoff_ranges(ring: &Ring, to: usize, from: usize) -> Vec<RangeId> {
    (0..ring.range_count() as RangeId)
        .filter(|&range| {
            let replicas = ring.range_replicas(range);
            replicas.contains(&to) && !replicas.contains(&from)
        })
        .collect()
}

/// What anti-entropy works with: the node's context, its store and its outboxes.
#[derive(Debug, Clone)]
pub(crate) struct Repairer {
    pub peering: Arc<Peering>,
    pub store: Arc<MultiVersionStore>,
    pub gossip: Arc<Gossip>,
}

/// The periodic rounds, visiting the peers that share ranges in turn (none while
/// the node is fenced, or joining and so out of its own ring). The partners and their shared ranges follow the current view: after a
/// crash the ring changes, and a change of view starts a round with every partner at
/// once, which is how a node that just became a replica of a range receives its data
/// (the replication factor is restored, SPEC §2.5).
pub(crate) async fn run(node: Repairer) {
    let state = &node.peering;
    let mut ticker = tokio::time::interval(state.config().anti_entropy_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut turn = state.me();
    let mut cache = PartnerCache::default();
    loop {
        // Biased: the simulator replays a run exactly, so no random choice here.
        let everyone = tokio::select! {
            biased;
            () = state.view_change() => true,
            _ = ticker.tick() => false,
        };
        if state.is_fenced() {
            continue;
        }
        let view = state.view().current();
        let ring = &view.ring;
        let partners = cache.partners(ring, state.me(), state.live_peers(&view));
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
            .map(|(peer, ranges)| round(&node, ring, *peer, ranges));
        let results = futures::future::join_all(rounds).await;
        for ((peer, _), result) in chosen.iter().zip(results) {
            if let Err(status) = result {
                debug!(node = state.id(), peer = state.id_of(*peer), error = %status.message(), "anti-entropy round failed");
            }
        }
    }
}

/// The live peers this node shares ranges with, and those ranges, kept while the
/// ring and the live peers stay the same: recomputing them is a pass over every
/// range for every peer, which every round of an idle cluster would otherwise pay,
/// and which grows with the square of the cluster's size.
#[derive(Default)]
struct PartnerCache {
    /// The ring's fingerprint and the live peers the partners were computed for.
    key: Option<(u64, Vec<usize>)>,
    partners: Vec<(usize, Vec<RangeId>)>,
}

impl PartnerCache {
    /// The partners of node `me` on `ring` among `live` peers, recomputed only when
    /// either changed.
    fn partners(&mut self, ring: &Ring, me: usize, live: Vec<usize>) -> &[(usize, Vec<RangeId>)] {
        let key = (ring.fingerprint(), live);
        if self.key.as_ref() != Some(&key) {
            self.partners = key
                .1
                .iter()
                .map(|&peer| (peer, shared_ranges(ring, me, peer)))
                .filter(|(_, ranges)| !ranges.is_empty())
                .collect();
            self.key = Some(key);
        }
        &self.partners
    }
}

/// One round with `peer` over the `ranges` both replicate.
async fn round(
    node: &Repairer,
    ring: &Ring,
    peer: usize,
    ranges: &[RangeId],
) -> Result<(), tonic::Status> {
    let state = &node.peering;
    let incarnation = state.incarnation();
    let request = DigestRequest {
        from: state.id().to_string(),
        ring_fingerprint: ring.fingerprint(),
        ranges: digests_on_wire(&node.store, ring, ranges),
        handoff: false,
    };
    let sent = request.encoded_len() as u64;
    tokio::time::sleep(state.config().gossip_delay).await;
    let reply = state.transport().sync_digests(peer, request).await?;
    let stats = &state.stats();
    stats::add(&stats.anti_entropy_rounds, 1);
    stats::add(&stats.anti_entropy_bytes_sent, sent);
    stats::add(
        &stats.anti_entropy_bytes_received,
        reply.encoded_len() as u64,
    );
    check_reply(state.roster(), ring, ranges, &reply).map_err(|refusal| {
        tonic::Status::invalid_argument(format!(
            "node {} refused node {}'s digest reply: {}; nothing was repaired",
            state.id(),
            state.id_of(peer),
            refusal.0
        ))
    })?;
    let visited_before = node.store.keys_visited();
    let missing = missing_records(&node.store, ring, reply);
    let repaired = missing.len();
    if repaired > 0 {
        node.gossip.enqueue(peer, missing, None, incarnation);
    }
    stats::add(&stats.records_repaired, repaired as u64);
    if repaired > 0 {
        debug!(
            node = state.id(),
            peer = state.id_of(peer),
            repaired,
            keys_visited = node.store.keys_visited().saturating_sub(visited_before),
            "anti-entropy queued repairs"
        );
    }
    Ok(())
}

/// Checks B's reply to digests of `sent` ranges of `ring` before A acts on it:
/// mismatched ranges among those sent, named once; keys of those ranges, each
/// once; versions a write can have created (`validation::version`). A reply
/// listing versions B does not hold would make A skip repairs B needs, and one
/// listing ranges A did not send would make it push data B should not hold.
pub(crate) fn check_reply(
    membership: &Roster,
    ring: &Ring,
    sent: &[RangeId],
    reply: &DigestReply,
) -> Result<(), Refusal> {
    let mismatched =
        validation::ranges(ring.range_count(), reply.mismatched_ranges.iter().copied())?;
    if let Some(range) = mismatched.iter().find(|r| !sent.contains(r)) {
        return Err(Refusal(format!(
            "it reports range {range} mismatched, which was not sent"
        )));
    }
    let mut keys = HashSet::new();
    for listed in &reply.keys {
        validation::key(&listed.key)?;
        if !keys.insert(listed.key.as_str()) {
            return Err(Refusal(format!("it lists key {:?} twice", listed.key)));
        }
        let range = ring.range_of(&listed.key);
        if !mismatched.contains(&range) {
            return Err(Refusal(format!(
                "it lists key {:?}, of range {range}, which it does not report mismatched",
                listed.key
            )));
        }
        for &version in &listed.versions {
            validation::wire_version(membership, version)
                .map_err(|Refusal(why)| Refusal(format!("key {:?}: {why}", listed.key)))?;
        }
    }
    Ok(())
}

/// A's side of a round, without I/O: from B's reply, every version this store holds
/// in the ranges whose digests differed that B does not (and would keep), key by key
/// in key order.
pub(crate) fn missing_records(
    store: &MultiVersionStore,
    ring: &Ring,
    reply: DigestReply,
) -> Vec<dida_core::Record> {
    if reply.mismatched_ranges.is_empty() {
        return Vec::new();
    }
    let mismatched: HashSet<RangeId> = reply.mismatched_ranges.into_iter().collect();
    let theirs = versions_by_key(reply.keys);
    let max_versions = store.max_versions();
    let mut missing = Vec::new();
    for (key, _) in store.versions_in(ring, &mismatched) {
        let held = theirs.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        missing.extend(store.records_of(&key, |v| lacks(held, max_versions, v)));
    }
    missing
}

/// A digest reply's keys and versions, by key: what the peer holds in the ranges
/// that differed.
pub(crate) fn versions_by_key(keys: Vec<KeyVersions>) -> HashMap<String, Vec<Version>> {
    keys.into_iter()
        .map(|k| {
            let versions = k.versions.into_iter().map(version_from_wire).collect();
            (k.key, versions)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dida_core::Record;

    const FIVE: [&str; 5] = ["s1", "s2", "s3", "s4", "s5"];

    /// Two replicas of every key in the ranges nodes 0 and 1 share, as gossip would
    /// leave them: the same records, delivered in opposite orders.
    fn converged_pair(first: &Ring, ring: &Ring) -> (MultiVersionStore, MultiVersionStore) {
        let (a, b) = (
            MultiVersionStore::new(5, first),
            MultiVersionStore::new(5, first),
        );
        let records: Vec<Record> = (0..20_000)
            .map(|i| format!("key-{i}"))
            .filter(|key| {
                let replicas = ring.replicas(key);
                replicas.contains(&0) && replicas.contains(&1)
            })
            .map(|key| a.write(&key, "sixteen byte val", 1).unwrap())
            .collect();
        for record in records.iter().rev() {
            b.merge(record);
        }
        (a, b)
    }

    #[test]
    fn partners_are_recomputed_when_the_ring_or_the_live_peers_change() {
        let ring = Ring::new(&FIVE, 32, 3);
        let mut cache = PartnerCache::default();
        let expected = |ring: &Ring, live: &[usize]| -> Vec<(usize, Vec<RangeId>)> {
            live.iter()
                .map(|&peer| (peer, shared_ranges(ring, 0, peer)))
                .filter(|(_, ranges)| !ranges.is_empty())
                .collect()
        };
        assert_eq!(
            cache.partners(&ring, 0, vec![1, 2, 3, 4]),
            expected(&ring, &[1, 2, 3, 4])
        );
        assert_eq!(
            cache.partners(&ring, 0, vec![1, 3]),
            expected(&ring, &[1, 3])
        );
        let smaller = Ring::without(&FIVE, 32, 3, |node| node == 4);
        assert_eq!(
            cache.partners(&smaller, 0, vec![1, 3]),
            expected(&smaller, &[1, 3])
        );
        assert_ne!(expected(&ring, &[1, 3]), expected(&smaller, &[1, 3]));
    }

    #[test]
    fn a_converged_round_reads_no_key_on_either_side() {
        let first = Ring::new(&FIVE, 32, 3);
        for ring in [first.clone(), Ring::without(&FIVE, 32, 3, |n| n == 3)] {
            let (a, b) = converged_pair(&first, &ring);
            let shared = shared_ranges(&ring, 0, 1);
            let (a_before, b_before) = (a.keys_visited(), b.keys_visited());
            let sent = digests_on_wire(&a, &ring, &shared);
            let reply = compare_digests(&b, &ring, &shared.iter().copied().collect(), &sent);
            assert!(reply.mismatched_ranges.is_empty());
            assert!(reply.keys.is_empty());
            assert_eq!(a.keys_visited(), a_before, "A walked keys");
            assert_eq!(b.keys_visited(), b_before, "B walked keys");
            assert!(a.counts().0 > 1000, "the replicas hold data");
        }
    }

    #[test]
    fn a_differing_range_is_the_only_one_whose_keys_are_read() {
        let first = Ring::new(&FIVE, 32, 3);
        let ring = Ring::without(&FIVE, 32, 3, |n| n == 3);
        let (a, b) = converged_pair(&first, &ring);
        let shared = shared_ranges(&ring, 0, 1);
        let held = a.records().swap_remove(0).key;
        let newer = b.write(&held, "only on b", 1).unwrap();
        let differing = ring.range_of(&newer.key);
        assert!(shared.contains(&differing));

        let before = b.keys_visited();
        let sent = digests_on_wire(&a, &ring, &shared);
        let reply = compare_digests(&b, &ring, &shared.iter().copied().collect(), &sent);
        assert_eq!(reply.mismatched_ranges, vec![differing]);
        assert!(reply.keys.iter().any(|k| k.key == newer.key));
        assert!(reply
            .keys
            .iter()
            .all(|k| ring.range_of(&k.key) == differing));
        assert_eq!(b.keys_visited() - before, reply.keys.len() as u64);
        assert!(reply.keys.len() < b.counts().0 as usize / 10);
    }

    #[test]
    fn digests_of_ranges_not_shared_are_ignored() {
        let first = Ring::new(&FIVE, 32, 3);
        let (a, b) = converged_pair(&first, &first);
        b.write("key-7", "only on b", 1).unwrap();
        let everything: Vec<RangeId> = (0..first.range_count() as RangeId).collect();
        let sent = digests_on_wire(&a, &first, &everything);
        let reply = compare_digests(&b, &first, &HashSet::new(), &sent);
        assert!(reply.mismatched_ranges.is_empty() && reply.keys.is_empty());
    }

    #[test]
    fn a_digest_reply_is_used_only_if_it_answers_what_was_sent() {
        let membership = Roster::new(
            &dida_core::Membership::new(
                FIVE.iter()
                    .enumerate()
                    .map(|(i, id)| (id.to_string(), format!("http://127.0.0.1:{}", 7001 + i))),
            )
            .unwrap(),
        );
        let ring = Ring::new(&FIVE, 32, 3);
        let shared = shared_ranges(&ring, 0, 1);
        let key = (0..)
            .map(|i| format!("key-{i}"))
            .find(|k| ring.range_of(k) == shared[0])
            .expect("a key of the first shared range");
        let other = (0..)
            .map(|i| format!("key-{i}"))
            .find(|k| ring.range_of(k) != shared[0])
            .expect("a key of another range");
        let reply = |mismatched: Vec<RangeId>, key: &str, number, replica| DigestReply {
            mismatched_ranges: mismatched,
            keys: vec![KeyVersions {
                key: key.to_string(),
                versions: vec![version_to_wire(Version::new(number, replica))],
            }],
        };
        let sent = &shared[..1];
        let check = |reply: &DigestReply| check_reply(&membership, &ring, sent, reply);
        assert!(check(&reply(vec![shared[0]], &key, 3, 2)).is_ok());
        for (bad, says) in [
            (reply(vec![shared[1]], &key, 3, 2), "was not sent"),
            (
                reply(vec![shared[0]], &other, 3, 2),
                "does not report mismatched",
            ),
            (
                reply(vec![shared[0]], &key, u64::MAX, 2),
                "above the highest",
            ),
            (reply(vec![shared[0]], &key, 3, 9), "replica 9"),
            (
                reply(vec![shared[0], shared[0]], &key, 3, 2),
                "more than once",
            ),
        ] {
            let Refusal(why) = check(&bad).unwrap_err();
            assert!(why.contains(says), "{why}");
        }
        let mut twice = reply(vec![shared[0]], &key, 3, 2);
        twice.keys.push(twice.keys[0].clone());
        assert!(check(&twice).unwrap_err().0.contains("twice"));
    }

    #[test]
    fn a_round_pushes_exactly_what_the_peer_lacks_and_would_keep() {
        let first = Ring::new(&FIVE, 32, 3);
        let (a, b) = converged_pair(&first, &first);
        let shared = shared_ranges(&first, 0, 1);
        let key = a.records().swap_remove(0).key;
        let newer = a.write(&key, "only on a", 1).unwrap();
        let sent = digests_on_wire(&a, &first, &shared);
        let reply = compare_digests(&b, &first, &shared.iter().copied().collect(), &sent);
        assert_eq!(missing_records(&a, &first, reply), vec![newer]);

        // A version older than every one a full replica holds would be dropped on
        // arrival: it is not sent.
        let (a, b) = (
            MultiVersionStore::new(5, &first),
            MultiVersionStore::new(5, &first),
        );
        let key = (0..)
            .map(|i| format!("key-{i}"))
            .find(|k| shared.contains(&first.range_of(k)))
            .expect("a shared key");
        a.write(&key, "old", 2).unwrap();
        for i in 0..6 {
            b.write(&key, &format!("v{i}"), 1).unwrap();
        }
        let sent = digests_on_wire(&a, &first, &shared);
        let reply = compare_digests(&b, &first, &shared.iter().copied().collect(), &sent);
        assert!(!reply.mismatched_ranges.is_empty());
        assert!(missing_records(&a, &first, reply).is_empty());
    }
}
