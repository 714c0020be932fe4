//! What a rejoining node does with records it kept from an earlier life (a data
//! directory, or a fence) when another node wrote some of its keys while it was out.
//!
//! A node never throws its data away because of what peers say: a fenced node
//! rejoins with its records, as a node restarted on its data directory does. But
//! its old incarnation may have executed a write, or a compare-and-swap, that was
//! never acknowledged — applied here, replicated nowhere — before it learned it was
//! declared failed. If the primary that took its keys over wrote one of them
//! meanwhile, that version must not come back among the interim primary's: a CAS
//! that compared against a value since replaced would appear to have succeeded
//! after the replacement (linearizability, W1), or a version numbered above
//! acknowledged writes would hide them (T1).
//!
//! Such a version is exactly one of this node's own that no peer holds: a write
//! acknowledged with `--write-acks` ≥ 2 is on another replica, and the interim
//! primary caught it up before writing (takeover, T1), so it is ordered correctly
//! wherever it is. So, for each key a peer shows was written elsewhere
//! ([`written_elsewhere`]), the node asks every peer for the key and sets aside its
//! own versions none of them holds ([`unheld_own_versions`]), before it turns alive
//! and serves the key again. Nothing else it kept is touched.
//!
//! Set aside is not thrown away: each version is logged at `warn`, and on a data
//! directory appended first to [`SET_ASIDE_FILE`] (readable by the node's user
//! only), so an operator can still recover a value. With `--write-acks 1`, whose
//! acknowledged writes live on their primary alone until gossiped, this is where
//! such a write ends when another node took its key over — the loss that mode
//! documents, but recoverable by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use dida_core::{Record, Ring, Version};
use dida_proto::storage::FetchKeyRequest;
use futures::future::join_all;
use tracing::{error, warn};

use crate::data_dir::private_file;
use crate::peering::Peering;
use crate::store::{lacks, MultiVersionStore};
use crate::validation;

/// The file of a data directory where set-aside versions are kept, one JSON object
/// per line (`key`, `version`, `value`).
pub const SET_ASIDE_FILE: &str = "set-aside.jsonl";

/// The keys this node (`me`, stamping its versions with `replica`) leads in
/// `target` of which a peer's records (`theirs`) hold a version another node
/// created that this node lacks — and would keep: a version older than the
/// `max_versions` newest this node holds of the key was discarded here, not
/// written behind its back. `held` gives this node's records of a key.
pub(crate) fn written_elsewhere(
    me: usize,
    replica: u32,
    max_versions: usize,
    target: &Ring,
    theirs: &[Record],
    held: impl Fn(&str) -> Vec<Record>,
) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut mine: BTreeMap<&str, Vec<Version>> = BTreeMap::new();
    for record in theirs {
        if record.version.replica == replica
            || keys.contains(&record.key)
            || target.primary(&record.key) != Some(me)
        {
            continue;
        }
        let versions = mine
            .entry(record.key.as_str())
            .or_insert_with(|| held(&record.key).iter().map(|r| r.version).collect());
        if lacks(versions, max_versions, record.version) {
            keys.insert(record.key.clone());
        }
    }
    keys
}

/// Of this node's records of a key (`mine`), the versions it created (`replica`)
/// that no peer's answer holds. A peer holding `max_versions` versions or more
/// may have discarded older ones: a version of this node's below that peer's
/// oldest counts as held by it (it was written before what the peer kept).
pub(crate) fn unheld_own_versions(
    replica: u32,
    max_versions: usize,
    mine: &[Record],
    answers: &[Vec<Record>],
) -> Vec<Version> {
    let answers: Vec<Vec<Version>> = answers
        .iter()
        .map(|answer| answer.iter().map(|r| r.version).collect())
        .collect();
    mine.iter()
        .map(|r| r.version)
        .filter(|&v| v.replica == replica)
        .filter(|&v| answers.iter().all(|answer| lacks(answer, max_versions, v)))
        .collect()
}

/// Asks every other member for each key of `keys` and sets aside this node's own
/// versions (stamped `replica`) that none of those that answered holds. A peer that does not answer
/// in time is counted as not holding them: what is set aside is kept (see the
/// module documentation), and if a silent peer does hold a version, anti-entropy
/// brings it back once it answers again.
pub(crate) async fn resolve(
    state: &Peering,
    store: &MultiVersionStore,
    replica: u32,
    keys: &BTreeSet<String>,
) {
    let peers: Vec<usize> = (0..state.roster().len())
        .filter(|&p| p != state.me())
        .collect();
    let mut taken = 0;
    for key in keys {
        let answers = join_all(peers.iter().map(|&peer| fetch(state, peer, key))).await;
        let answers: Vec<Vec<Record>> = answers.into_iter().flatten().collect();
        let mine = store.records_of(key, |_| true);
        let unheld = unheld_own_versions(replica, store.max_versions(), &mine, &answers);
        if unheld.is_empty() {
            continue;
        }
        if let Some(dir) = &state.config().data_dir {
            let records: Vec<&Record> = mine
                .iter()
                .filter(|r| unheld.contains(&r.version))
                .collect();
            if let Err(e) = keep_aside(dir, &records) {
                error!(node = state.id(), key, error = %e, "cannot keep versions aside in the data directory: they stay in the store");
                continue;
            }
        }
        for record in store.set_aside(key, &unheld) {
            taken += 1;
            warn!(
                node = state.id(),
                key = %record.key,
                version = %record.version,
                "set aside a version this node created in an earlier life that no peer holds, \
                 of a key another node wrote meanwhile (a write never acknowledged, or \
                 acknowledged with --write-acks 1 only); kept in {SET_ASIDE_FILE} on a data \
                 directory"
            );
        }
    }
    if taken > 0 {
        if let Err(e) = store.compact() {
            error!(node = state.id(), error = %e, "cannot rewrite the data directory after setting versions aside");
        }
    }
}

/// `peer`'s versions of `key`, if it answers in time with valid records of it.
async fn fetch(state: &Peering, peer: usize, key: &str) -> Option<Vec<Record>> {
    let request = FetchKeyRequest {
        from: state.id().to_string(),
        key: key.to_string(),
        view: state.view_to_wire(),
    };
    let deadline = state.config().probe_timeout * 4;
    let reply = tokio::time::timeout(deadline, state.transport().fetch_key(peer, request))
        .await
        .ok()?
        .ok()?;
    let records = validation::records(state.roster(), reply.records).ok()?;
    records.iter().all(|r| r.key == key).then_some(records)
}

/// Appends `records` to the data directory's [`SET_ASIDE_FILE`] and syncs it.
fn keep_aside(dir: &Path, records: &[&Record]) -> std::io::Result<()> {
    let mut file = private_file()
        .create(true)
        .append(true)
        .open(dir.join(SET_ASIDE_FILE))?;
    for record in records {
        let line = serde_json::json!({
            "key": record.key,
            "version": record.version.to_string(),
            "value": record.value,
        });
        writeln!(file, "{line}")?;
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, number: u64, replica: u32) -> Record {
        Record {
            key: key.to_string(),
            version: Version::new(number, replica),
            value: format!("{number}.{replica}"),
        }
    }

    fn ring() -> Ring {
        Ring::new(&["s1", "s2", "s3"], 8, 3)
    }

    #[test]
    fn a_key_is_written_elsewhere_when_a_peer_holds_a_version_of_another_node_kept_here() {
        let ring = ring();
        let key = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| ring.primary(k) == Some(0))
            .unwrap();
        let mine = vec![record(&key, 3, 1), record(&key, 4, 1), record(&key, 5, 1)];
        let held = |_: &str| mine.clone();
        // A newer version by node 2 that this node lacks: written elsewhere.
        let theirs = vec![record(&key, 3, 1), record(&key, 4, 2)];
        assert!(written_elsewhere(0, 1, 1000, &ring, &theirs, held).contains(&key));
        // Its own versions only, or versions it holds: not.
        let theirs = vec![record(&key, 3, 1), record(&key, 6, 1)];
        assert!(written_elsewhere(0, 1, 1000, &ring, &theirs, held).is_empty());
        // An older version than the 3 it keeps: discarded here, not diverged.
        let theirs = vec![record(&key, 2, 2)];
        assert!(written_elsewhere(0, 1, 3, &ring, &theirs, held).is_empty());
        assert!(written_elsewhere(0, 1, 1000, &ring, &theirs, held).contains(&key));
    }

    #[test]
    fn a_key_this_node_does_not_lead_is_not_its_business() {
        let ring = ring();
        let key = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| ring.primary(k) == Some(1))
            .unwrap();
        let theirs = vec![record(&key, 4, 2)];
        assert!(written_elsewhere(0, 1, 1000, &ring, &theirs, |_| Vec::new()).is_empty());
    }

    #[test]
    fn only_own_versions_no_peer_holds_are_set_aside() {
        let mine = vec![
            record("k", 3, 2),
            record("k", 4, 1),
            record("k", 5, 1),
            record("k", 6, 1),
        ];
        let answers = vec![
            vec![record("k", 3, 2), record("k", 4, 1), record("k", 5, 3)],
            vec![record("k", 5, 1), record("k", 5, 3)],
        ];
        // 4.1 and 5.1 are held by a peer; 3.2 is another node's; 6.1 by nobody.
        assert_eq!(
            unheld_own_versions(1, 1000, &mine, &answers),
            vec![Version::new(6, 1)]
        );
        // No answer at all: every own version is unheld.
        assert_eq!(unheld_own_versions(1, 1000, &mine, &[]).len(), 3);
    }

    #[test]
    fn a_version_below_what_a_full_peer_kept_counts_as_held() {
        let mine = vec![record("k", 2, 1), record("k", 9, 1)];
        let answers = vec![vec![
            record("k", 5, 3),
            record("k", 6, 3),
            record("k", 7, 3),
        ]];
        assert_eq!(
            unheld_own_versions(1, 3, &mine, &answers),
            vec![Version::new(9, 1)]
        );
        assert_eq!(unheld_own_versions(1, 1000, &mine, &answers).len(), 2);
    }
}
