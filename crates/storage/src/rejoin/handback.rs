//! The other side of a rejoin: what a peer answers a rejoining node's `Handback`
//! (see the parent module for the phases it serves).

use std::collections::HashSet;

use dida_core::{RangeId, Record, Ring};
use dida_proto::convert::record_to_wire;
use dida_proto::storage::{HandbackReply, HandbackRequest, RangeDigest};
use tonic::Status;

use crate::peering::Peering;
use crate::store::MultiVersionStore;
use crate::validation::{self, Refusal};

/// Largest payload a handback reply carries; the rejoining node asks again for the
/// ranges left out.
pub(crate) const HANDBACK_REPLY_BYTES: usize = 4 * 1024 * 1024;

/// A rejoining node's catch-up: adopts its view first — its "joining", or its
/// "alive" that takes its keys back, after which this node executes no more writes
/// of them (H1) — then returns this node's records in the ranges whose digests
/// differ from the sender's, whole ranges up to [`HANDBACK_REPLY_BYTES`].
/// Everything is checked before the view is adopted — another member as sender, a
/// well-formed view, the same first ring, ranges of that ring named once — so a
/// refused handback changes nothing.
pub(crate) fn answer_handback(
    state: &Peering,
    store: &MultiVersionStore,
    request: HandbackRequest,
) -> Result<HandbackReply, Status> {
    state.check_serving()?;
    let refused = |r: Refusal| r.status(state.id(), "handback", &request.from);
    let membership = state.roster();
    let from = validation::sender(membership, state.me(), &request.from).map_err(refused)?;
    let updates = validation::view(membership, &request.view).map_err(refused)?;
    let initial = state.view().initial_ring();
    let initial = &*initial;
    if request.ring_fingerprint != initial.fingerprint() {
        return Err(Status::failed_precondition(format!(
            "node {} and node {} have different rings (different --vnodes or \
             --replication-factor, or one has not learned of a node that joined yet); \
             handback refused",
            state.id(),
            request.from
        )));
    }
    validation::ranges(
        initial.range_count(),
        request.ranges.iter().map(|r| r.range),
    )
    .map_err(refused)?;
    if !updates.is_empty() {
        state.learn(Some(from), updates);
    }
    state.check_serving()?;
    let (records, complete_ranges) =
        differing_records(store, initial, &request.ranges, HANDBACK_REPLY_BYTES);
    Ok(HandbackReply {
        records: records.iter().map(record_to_wire).collect(),
        complete_ranges,
        view: state.view_to_wire(),
        config: Some(dida_proto::convert::config_to_wire(
            &state.cluster().decided(),
        )),
    })
}

/// The records `store` holds in the ranges of `ring` whose digests differ from
/// `theirs` (ranges of `ring`, as the handback checked), whole ranges at a time
/// while they fit in `budget` bytes (at least one range), with the ranges fully
/// answered: those that matched and those sent.
pub(crate) fn differing_records(
    store: &MultiVersionStore,
    ring: &Ring,
    theirs: &[RangeDigest],
    budget: usize,
) -> (Vec<Record>, Vec<RangeId>) {
    let wanted: Vec<RangeId> = theirs.iter().map(|r| r.range).collect();
    let ours = store.range_digests(ring, &wanted);
    let mut records = Vec::new();
    let mut complete = Vec::new();
    let mut bytes = 0;
    for digest in theirs {
        let Some(&mine) = ours.get(&digest.range) else {
            continue;
        };
        if mine == digest.digest {
            complete.push(digest.range);
            continue;
        }
        let mut range_records = Vec::new();
        for (key, _) in store.versions_in(ring, &HashSet::from([digest.range])) {
            range_records.extend(store.records_of(&key, |_| true));
        }
        let size: usize = range_records
            .iter()
            .map(|r| r.key.len() + r.value.len() + 32)
            .sum();
        if !records.is_empty() && bytes + size > budget {
            continue;
        }
        bytes += size;
        records.extend(range_records);
        complete.push(digest.range);
    }
    (records, complete)
}

#[cfg(test)]
mod tests {
    use dida_core::Version;

    use super::*;
    use crate::anti_entropy::digests_on_wire;

    fn record(key: &str, number: u64, size: usize) -> Record {
        Record {
            key: key.to_string(),
            version: Version { number, replica: 1 },
            value: "x".repeat(size),
        }
    }

    #[test]
    fn only_differing_ranges_are_sent_whole_within_the_budget() {
        let ring = Ring::new(&["s1", "s2", "s3"], 8, 3);
        let ranges: Vec<RangeId> = (0..ring.range_count() as RangeId).collect();
        let ours = MultiVersionStore::new(5, &ring);
        let theirs = MultiVersionStore::new(5, &ring);
        for i in 0..40 {
            let r = record(&format!("key-{i}"), 1, 10);
            ours.merge(&r);
            theirs.merge(&r);
        }
        // Equal stores: every range complete, nothing sent.
        let digests = digests_on_wire(&theirs, &ring, &ranges);
        let (records, complete) = differing_records(&ours, &ring, &digests, usize::MAX);
        assert!(records.is_empty());
        assert_eq!(complete.len(), ranges.len());

        // Two new keys in different ranges: each range goes whole.
        let (a, b) = (
            "new-a",
            (0..)
                .map(|i| format!("new-b{i}"))
                .find(|k| ring.range_of(k) != ring.range_of("new-a"))
                .expect("a key of another range"),
        );
        ours.merge(&record(a, 1, 1000));
        ours.merge(&record(&b, 1, 1000));
        let (records, complete) = differing_records(&ours, &ring, &digests, usize::MAX);
        let sent: HashSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
        assert!(sent.contains(a) && sent.contains(b.as_str()));
        assert!(records
            .iter()
            .all(|r| [ring.range_of(a), ring.range_of(&b)].contains(&ring.range_of(&r.key))));
        assert_eq!(complete.len(), ranges.len());

        // A budget below both ranges sends the first whole and leaves the other out.
        let (records, complete) = differing_records(&ours, &ring, &digests, 1);
        let ranges_sent: HashSet<RangeId> = records.iter().map(|r| ring.range_of(&r.key)).collect();
        assert_eq!(ranges_sent.len(), 1);
        assert_eq!(complete.len(), ranges.len() - 1);
    }
}
