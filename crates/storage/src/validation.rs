//! What a node checks in every message a peer sends it, before the message changes
//! anything: the replication service is reachable by every authenticated peer, and
//! authentication says who may talk, not that what they say makes sense.
//!
//! Each check is a plain function of the message and the membership (no view, no
//! store), so a handler runs all of them first and either refuses the message whole
//! or acts on all of it. A refusal is a [`Refusal`]: its reason names the field and
//! value at fault, and the handler turns it into an `INVALID_ARGUMENT` status that
//! also names the receiving node and the message. The rules, and why each exists,
//! are the invariants of docs/protocols.md ("Validating what peers send").

use std::collections::{BTreeSet, HashMap};

use dida_core::cluster::MAX_MEMBERS;
use dida_core::limits::check_key;
use dida_core::{MemberState, RangeId, Record, Version};
use dida_proto::convert::{liveness_from_wire, record_from_wire, version_from_wire};
use dida_proto::storage as wire;
use tonic::Status;

use crate::roster::Roster;

/// Why a message (or a reply) was refused: a sentence naming the field and value
/// at fault, for the error status or the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal(pub String);

impl Refusal {
    /// The `INVALID_ARGUMENT` status node `node` answers a malformed `what` with:
    /// the message can never be accepted as sent, and nothing was changed.
    pub fn status(&self, node: &str, what: &str, from: &str) -> Status {
        Status::invalid_argument(format!(
            "node {node} refused a {what} from {from:?}: {}; nothing was changed",
            self.0
        ))
    }
}

/// The membership index of a message's sender, `from`. Only members send
/// replication messages, and never to themselves: a message naming an unknown
/// id, or the receiver's own (index `me`), did not come from a peer.
pub(crate) fn sender(membership: &Roster, me: usize, from: &str) -> Result<usize, Refusal> {
    let index = membership.index_of(from).map_err(|e| {
        Refusal(format!(
            "the sender is not a storage node of this cluster ({e})"
        ))
    })?;
    if index == me {
        return Err(Refusal(format!(
            "the sender claims to be {from:?}, the receiving node itself"
        )));
    }
    Ok(index)
}

/// A record from a peer, checked: key and value within the size limits, and a
/// version a write can have created — a number from [`Version::FIRST_NUMBER`] to
/// [`Version::MAX_NUMBER`] (so it can be followed without wrapping) and the
/// replica number of a member (only members create versions).
pub(crate) fn record(membership: &Roster, wire: wire::Record) -> Result<Record, Refusal> {
    let record = record_from_wire(wire).map_err(|e| Refusal(e.to_string()))?;
    version(membership, record.version)
        .map_err(|Refusal(why)| Refusal(format!("record of key {:?}: {why}", record.key)))?;
    Ok(record)
}

/// Checks `records` whole: all valid, or the first refusal.
pub(crate) fn records(
    membership: &Roster,
    records: Vec<wire::Record>,
) -> Result<Vec<Record>, Refusal> {
    records
        .into_iter()
        .map(|wire| record(membership, wire))
        .collect()
}

/// A version a peer names (in a record or a digest reply): see [`record`].
pub(crate) fn version(membership: &Roster, version: Version) -> Result<(), Refusal> {
    version.check_number().map_err(|e| Refusal(e.to_string()))?;
    if !membership.has_replica(version.replica) {
        return Err(Refusal(format!(
            "version {version} names replica {}, which is no member's replica number \
             (1 to {})",
            version.replica,
            membership.len()
        )));
    }
    Ok(())
}

/// A wire version from a peer, checked as [`version`] does.
pub(crate) fn wire_version(membership: &Roster, wire: wire::Version) -> Result<Version, Refusal> {
    let version = version_from_wire(wire);
    self::version(membership, version)?;
    Ok(version)
}

/// A view a peer sends (probes, key pulls, handbacks and their replies), as
/// member states by index, checked whole: at most [`MAX_MEMBERS`] entries, each
/// member named once, with a known liveness and an incarnation of at most
/// [`MemberState::MAX_INCARNATION`]. An entry naming an id this node does not know
/// is skipped when it may be a node the cluster admitted in a configuration this
/// node has not learned yet (it learns it from the configuration epoch every probe
/// carries): only a sender that knows more members than this node can name one,
/// and its view, which names every member it knows, then names every member this
/// node knows too (members are only ever appended). A view naming an unknown id
/// and leaving out a member this node knows comes from a forged or misconfigured
/// sender, and is refused whole (R1): merging the rest of it would let a stranger's
/// entry carry a declaration in. What is skipped changes nothing here.
pub(crate) fn view(
    membership: &Roster,
    view: &[wire::MemberView],
) -> Result<Vec<(usize, MemberState)>, Refusal> {
    if view.len() > MAX_MEMBERS {
        return Err(Refusal(format!(
            "its view has {} entries, more than the {MAX_MEMBERS} members a cluster may have",
            view.len()
        )));
    }
    let indices = member_indices(membership, view);
    if let Some((stranger, _)) = view.iter().zip(&indices).find(|(_, i)| i.is_none()) {
        let named: BTreeSet<&str> = view.iter().map(|e| e.id.as_str()).collect();
        if let Some(missing) = membership.iter().find(|m| !named.contains(m.id.as_str())) {
            return Err(Refusal(format!(
                "its view has an entry for {:?}, which is not a member, and none for member \
                 {:?}: it is no view of a node that knows more members than this one",
                stranger.id, missing.id
            )));
        }
    }
    let mut seen = BTreeSet::new();
    view.iter()
        .zip(indices)
        .filter_map(|(entry, index)| Some((index?, entry)))
        .map(|(index, entry)| {
            if !seen.insert(index) {
                return Err(Refusal(format!(
                    "its view has more than one entry for {:?}",
                    entry.id
                )));
            }
            let liveness = wire::Liveness::try_from(entry.liveness).map_err(|_| {
                Refusal(format!(
                    "its view gives {:?} the unknown liveness {}",
                    entry.id, entry.liveness
                ))
            })?;
            if entry.incarnation > MemberState::MAX_INCARNATION {
                return Err(Refusal(format!(
                    "its view gives {:?} incarnation {}, above the highest allowed ({})",
                    entry.id,
                    entry.incarnation,
                    MemberState::MAX_INCARNATION
                )));
            }
            Ok((
                index,
                MemberState {
                    incarnation: entry.incarnation,
                    liveness: liveness_from_wire(liveness),
                },
            ))
        })
        .collect()
}

/// The member index of each entry of `view` (`None` for a name no member has).
/// Views list the members in member order, so entry `i` is looked up at member `i`
/// first, and by name only when that misses: a scan of the roster per entry would
/// make every probe cost the square of the cluster's size.
fn member_indices(membership: &Roster, view: &[wire::MemberView]) -> Vec<Option<usize>> {
    let mut by_id: Option<HashMap<&str, usize>> = None;
    view.iter()
        .enumerate()
        .map(|(position, entry)| {
            if position < membership.len() && membership.get(position).id == entry.id {
                return Some(position);
            }
            let by_id = by_id.get_or_insert_with(|| {
                membership
                    .iter()
                    .enumerate()
                    .map(|(index, member)| (member.id.as_str(), index))
                    .collect()
            });
            by_id.get(entry.id.as_str()).copied()
        })
        .collect()
}

/// A sender's own incarnation (a push's): at most
/// [`MemberState::MAX_INCARNATION`], like every incarnation in a view.
pub(crate) fn incarnation(incarnation: u64) -> Result<(), Refusal> {
    if incarnation > MemberState::MAX_INCARNATION {
        return Err(Refusal(format!(
            "incarnation {incarnation} is above the highest allowed ({})",
            MemberState::MAX_INCARNATION
        )));
    }
    Ok(())
}

/// Range ids a peer names (digests, handback ranges, complete ranges): each
/// below `range_count` (the ring both sides agreed on has no other) and named
/// once, so the answer is computed for exactly the ranges asked about.
pub(crate) fn ranges(
    range_count: usize,
    ranges: impl IntoIterator<Item = RangeId>,
) -> Result<BTreeSet<RangeId>, Refusal> {
    let mut seen = BTreeSet::new();
    for range in ranges {
        if range as usize >= range_count {
            return Err(Refusal(format!(
                "range {range} does not exist: the ring has {range_count} ranges (0 to {})",
                range_count.saturating_sub(1)
            )));
        }
        if !seen.insert(range) {
            return Err(Refusal(format!("range {range} is named more than once")));
        }
    }
    Ok(seen)
}

/// A key a peer names (a key pull): within the size limits.
pub(crate) fn key(key: &str) -> Result<(), Refusal> {
    check_key(key).map_err(|e| Refusal(format!("key: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dida_core::Liveness;

    fn membership() -> Roster {
        Roster::new(
            &dida_core::Membership::parse(
                "s1=http://127.0.0.1:1,s2=http://127.0.0.1:2,s3=http://127.0.0.1:3",
            )
            .unwrap(),
        )
    }

    fn wire_record(number: u64, replica: u32) -> wire::Record {
        wire::Record {
            key: "k".into(),
            version: Some(wire::Version { number, replica }),
            value: "v".into(),
        }
    }

    fn entry(id: &str, incarnation: u64, liveness: i32) -> wire::MemberView {
        wire::MemberView {
            id: id.into(),
            incarnation,
            liveness,
        }
    }

    #[test]
    fn only_other_members_send() {
        let m = membership();
        assert_eq!(sender(&m, 0, "s2"), Ok(1));
        for forged in ["", "s9", "S2"] {
            let Refusal(why) = sender(&m, 0, forged).unwrap_err();
            assert!(why.contains("not a storage node"), "{forged:?}: {why}");
        }
        let Refusal(why) = sender(&m, 0, "s1").unwrap_err();
        assert!(why.contains("receiving node itself"), "{why}");
    }

    #[test]
    fn records_need_a_followable_number_and_a_member_replica() {
        let m = membership();
        assert!(record(&m, wire_record(1, 3)).is_ok());
        assert!(record(&m, wire_record(Version::MAX_NUMBER, 1)).is_ok());
        for (number, replica, says) in [
            (0, 0, "number 0"),
            (0, 1, "number 0"),
            (u64::MAX, 1, "above the highest"),
            (Version::MAX_NUMBER + 1, 1, "above the highest"),
            (5, 0, "replica 0"),
            (5, 4, "replica 4"),
            (5, u32::MAX, "replica 4294967295"),
        ] {
            let Refusal(why) = record(&m, wire_record(number, replica)).unwrap_err();
            assert!(why.contains(says), "{number}.{replica}: {why}");
            assert!(why.contains("key \"k\""), "{why}");
        }
        let mut unversioned = wire_record(1, 1);
        unversioned.version = None;
        assert!(record(&m, unversioned).is_err());
        let all = records(&m, vec![wire_record(1, 1), wire_record(0, 0)]);
        assert!(all.is_err(), "one bad record refuses them all");
    }

    #[test]
    fn view_entries_are_found_in_member_order_or_by_name() {
        let m = membership();
        let ids = |names: &[&str]| -> Vec<wire::MemberView> {
            names.iter().map(|id| entry(id, 1, 1)).collect()
        };
        assert_eq!(
            member_indices(&m, &ids(&["s1", "s2", "s3"])),
            [Some(0), Some(1), Some(2)]
        );
        assert_eq!(
            member_indices(&m, &ids(&["s3", "s1", "s9", "s2", "s2"])),
            [Some(2), Some(0), None, Some(1), Some(1)]
        );
        assert_eq!(member_indices(&m, &ids(&[])), []);
    }

    #[test]
    fn views_name_each_member_once_with_a_known_liveness_and_a_bounded_incarnation() {
        let m = membership();
        let good = [entry("s1", 7, 1), entry("s3", 2, 2)];
        assert_eq!(
            view(&m, &good).unwrap(),
            vec![
                (
                    0,
                    MemberState {
                        incarnation: 7,
                        liveness: Liveness::Alive
                    }
                ),
                (
                    2,
                    MemberState {
                        incarnation: 2,
                        liveness: Liveness::Failed
                    }
                ),
            ]
        );
        // A member this node has not learned of yet is skipped, not refused, in
        // the view of a node that knows every member this one does, and more.
        let ahead = [
            entry("s1", 1, 2),
            entry("s2", 1, 2),
            entry("s3", 1, 2),
            entry("s9", 1, 2),
        ];
        assert_eq!(view(&m, &ahead).unwrap().len(), 3);
        // Beside a member this node knows, without the others, it is a stranger.
        for bad in [
            vec![entry("s9", 1, 2)],
            vec![entry("s2", 1, 3), entry("s9", 1, 2)],
        ] {
            let Refusal(why) = view(&m, &bad).unwrap_err();
            assert!(why.contains("not a member"), "{bad:?}: {why}");
        }
        let flood: Vec<wire::MemberView> = (0..=MAX_MEMBERS)
            .map(|i| entry(&format!("x{i}"), 1, 2))
            .collect();
        for (bad, says) in [
            (flood, "more than the 1024 members"),
            (vec![entry("s2", 1, 1), entry("s2", 2, 2)], "more than one"),
            (vec![entry("s2", 1, 7)], "unknown liveness"),
            (vec![entry("s2", u64::MAX, 2)], "incarnation"),
        ] {
            let Refusal(why) = view(&m, &bad).unwrap_err();
            assert!(why.contains(says), "{bad:?}: {why}");
        }
    }

    #[test]
    fn ranges_exist_and_are_named_once() {
        assert_eq!(ranges(4, [3, 0]).unwrap(), BTreeSet::from([0, 3]));
        assert!(ranges(4, [4]).unwrap_err().0.contains("does not exist"));
        assert!(ranges(4, [1, 1]).unwrap_err().0.contains("more than once"));
    }
}
