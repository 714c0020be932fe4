//! Replication's write path (SPEC §2.4–2.5): how a key's primary executes a write
//! or conditional update — catching the key up first after a takeover, applying
//! it under the view (H1), then waiting until `--write-acks` replicas hold it —
//! and, on the other side, how a replica answers a new primary's key pull
//! ([`answer_fetch_key`]).
//!
//! The decisions are plain functions: whether a takeover may write despite silent
//! members out of the ring ([`may_proceed`], [`blocking_silence`]), whether a
//! primary counts enough replicas to write at all ([`enough_replicas`]) and how
//! many acknowledgements it waits for ([`acks_awaited`]). The acknowledgements
//! themselves are counted in [`WritePath::replicate`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dida_core::version::VersionError;
use dida_core::Record;
use dida_proto::convert::record_to_wire;
use dida_proto::storage::{FetchKeyReply, FetchKeyRequest};
use futures::future::join_all;
use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Status;
use tracing::{info, warn};

use crate::gossip::Gossip;
use crate::peering::Peering;
use crate::store::{lacks, CasOutcome, MultiVersionStore};
use crate::validation::{self, Refusal};

/// Where a primary's write goes: the key's other live replicas, and the
/// incarnation that applied it (its gossip is dropped if that incarnation ends
/// before it is sent).
#[derive(Debug)]
struct Replicas {
    others: Vec<usize>,
    incarnation: u64,
}

/// A primary's write path: the node's context, store and outboxes, and which keys
/// it has caught up since it took them over.
#[derive(Debug)]
pub(crate) struct WritePath {
    peering: Arc<Peering>,
    store: Arc<MultiVersionStore>,
    gossip: Arc<Gossip>,
    /// The replica number stamped on versions this node creates.
    replica: u32,
    /// Keys this node took over as primary after a change of view and has brought
    /// up to date, with the epoch of the view it caught each up in: the key needs
    /// no new catch-up while the node has led it in every view since.
    taken_over: Mutex<HashMap<String, u64>>,
    /// Serializes takeover syncs, so concurrent writes of a key sync it once.
    takeover_lock: tokio::sync::Mutex<()>,
}

impl WritePath {
    /// The write path of the node `peering` describes, writing to `store` as
    /// `replica` and replicating through `gossip`.
    pub fn new(
        peering: Arc<Peering>,
        store: Arc<MultiVersionStore>,
        gossip: Arc<Gossip>,
        replica: u32,
    ) -> Self {
        Self {
            peering,
            store,
            gossip,
            replica,
            taken_over: Mutex::new(HashMap::new()),
            takeover_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Brings `key` up to date before this node executes its first write or
    /// conditional update of it as primary since it last did not lead it (SPEC
    /// §2.5): after a crash took the key to this node, or after this node lost it
    /// to a rejoining node and got it back. Keys it has led in every view since it
    /// joined need nothing: its rejoin caught them up (`rejoin`).
    ///
    /// Pulls every version the key's other live replicas hold, and those of every
    /// member out of the ring (declared failed or joining: such a node may be
    /// running with its records). It writes once every live replica has answered
    /// and fewer than `--write-acks` members out of the ring are silent
    /// ([`may_proceed`]), so it holds every version any live replica holds and —
    /// with `--write-acks N ≥ 2` — every acknowledged write, even when several of
    /// its holders were declared failed at once; the versions it creates next
    /// follow all of them: the total order of §2.2 holds across the takeover. Each pull carries this node's view, which the replica adopts before
    /// answering: from then on it refuses the old primary's pushes (D2) and, if it
    /// led the key, executes no more writes of it (H1).
    async fn catch_up(&self, key: &str) -> Result<(), Status> {
        let state = &self.peering;
        if self.is_caught_up(key) {
            return Ok(());
        }
        let _one_sync_at_a_time = self.takeover_lock.lock().await;
        if self.is_caught_up(key) {
            return Ok(());
        }
        let deadline = Instant::now() + state.config().ack_timeout;
        loop {
            let view = state.view().current();
            let primary = view.ring.primary(key);
            if primary != Some(state.me()) {
                return Err(self.not_primary(key, primary));
            }
            let others = state.other_replicas(&view.ring, key);
            // Also ask every member out of the ring: a node declared failed may be
            // running (paused, cut off, falsely suspected) and hold an
            // acknowledged write no live replica holds.
            let outside: Vec<usize> = view
                .out
                .iter()
                .copied()
                .filter(|&n| n != state.me())
                .collect();
            // A declared member that runs answers like any peer; one that is
            // paused or cut off must not hold the takeover for a whole call
            // deadline: it gets a probe's time.
            let probe_timeout = state.config().probe_timeout;
            let pulls = others
                .iter()
                .map(|&peer| self.pull_key(peer, key, true).boxed())
                .chain(outside.iter().map(|&peer| {
                    tokio::time::timeout(probe_timeout, self.pull_key(peer, key, false))
                        .map(|pulled| pulled.unwrap_or_default())
                        .boxed()
                }));
            let pulled = join_all(pulls).await;
            let answered: Vec<bool> = pulled.iter().map(|p| p.answered).collect();
            let (from_replicas, from_outside) = answered.split_at(others.len());
            // Versions a member out of the ring created that it alone showed: the
            // others holding them, if any, are silent.
            let held: Vec<dida_core::Version> = self
                .store
                .records_of(key, |_| true)
                .iter()
                .map(|r| r.version)
                .collect();
            let max_versions = self.store.max_versions();
            // Held by no node that answered: this node lacks it after merging
            // every answer (and did not discard it as older than a full store).
            let unconfirmed_own = pulled
                .iter()
                .flat_map(|p| &p.withheld)
                .any(|&v| lacks(&held, max_versions, v));
            let waited_for = blocking_silence(
                &others,
                from_replicas,
                &outside,
                from_outside,
                Outsiders {
                    write_acks: state.config().write_acks,
                    unconfirmed_own,
                },
            );
            let silent: Vec<&str> = waited_for.iter().map(|&peer| state.id_of(peer)).collect();
            if silent.is_empty() {
                info!(node = state.id(), key, "took over key as primary");
                self.taken_over
                    .lock()
                    .expect("takeover lock poisoned")
                    .insert(key.to_string(), view.epoch);
                if self.is_caught_up(key) {
                    return Ok(());
                }
                // The view changed during the pulls and took the key away at some
                // point: pull again in the new view.
                continue;
            }
            if Instant::now() >= deadline {
                return Err(Status::unavailable(format!(
                    "node {} became primary of key {key:?} after a change of view but could \
                     not bring it up to date: replica(s) {} did not answer within {:?}; \
                     nothing was written",
                    state.id(),
                    silent.join(", "),
                    state.config().ack_timeout
                )));
            }
            // A replica that does not answer is being detected; retry with the view
            // the detector will have updated.
            tokio::time::sleep(state.config().probe_interval).await;
        }
    }

    /// Whether this node has led `key` in every view since it joined, or since it
    /// last caught the key up.
    fn is_caught_up(&self, key: &str) -> bool {
        let state = &self.peering;
        let joined = state.lifecycle().joined_epoch();
        if state.view().led_throughout(key, state.me(), joined) {
            return true;
        }
        let caught_up = self
            .taken_over
            .lock()
            .expect("takeover lock poisoned")
            .get(key)
            .copied();
        caught_up.is_some_and(|epoch| state.view().led_throughout(key, state.me(), epoch))
    }

    /// Pulls and merges `peer`'s versions of `key`; unanswered if it did not
    /// answer, or answered with a record that is not a valid version of `key` (then
    /// nothing of its answer is merged). From a member out of the ring (`in_ring`
    /// false) only versions other nodes created are merged: a version of its own
    /// that no other node holds is a write never acknowledged, which its rejoin
    /// sets aside (`divergence`). Its own versions are returned as `withheld`, so
    /// the takeover can tell whether every other node that could hold them
    /// answered.
    async fn pull_key(&self, peer: usize, key: &str, in_ring: bool) -> Pull {
        let state = &self.peering;
        let request = FetchKeyRequest {
            from: state.id().to_string(),
            key: key.to_string(),
            view: if state.config().fence {
                state.view_to_wire()
            } else {
                Vec::new()
            },
        };
        let Ok(reply) = state.transport().fetch_key(peer, request).await else {
            return Pull::default();
        };
        let checked = validation::records(state.roster(), reply.records).and_then(|records| {
            match records.iter().find(|r| r.key != key) {
                Some(other) => Err(Refusal(format!(
                    "it returned a record of key {:?} for key {key:?}",
                    other.key
                ))),
                None => Ok(records),
            }
        });
        match checked {
            Ok(records) => {
                let creator = state.roster().get(peer).replica;
                let (merged, withheld): (Vec<&Record>, Vec<&Record>) = records
                    .iter()
                    .partition(|r| in_ring || r.version.replica != creator);
                self.store.merge_all(merged);
                Pull {
                    answered: true,
                    withheld: withheld.iter().map(|r| r.version).collect(),
                }
            }
            Err(refusal) => {
                warn!(node = state.id(), peer = state.id_of(peer), key, reason = %refusal.0, "refused a peer's answer to a key pull");
                Pull::default()
            }
        }
    }

    /// Applies `apply` to the store as `key`'s primary, holding the view (H1): it
    /// runs only if this node leads the key and has caught it up in the current
    /// view, and a node adopting a view that takes the key away waits for it, so it
    /// sees the write in its store. Returns the key's other live replicas with the
    /// result, provided that with this node they can make up `--write-acks`: a node
    /// whose view has fewer (most of the cluster failed, or it is cut off and its own
    /// view is wrong) refuses the write before applying it, rather than
    /// acknowledging a write too few nodes hold.
    async fn as_primary<T>(
        &self,
        key: &str,
        apply: impl Fn(&MultiVersionStore) -> T,
    ) -> Result<(T, Replicas), Status> {
        let state = &self.peering;
        loop {
            self.catch_up(key).await?;
            let attempt = state.view().with_current(|view| {
                let primary = view.ring.primary(key);
                if primary != Some(state.me()) {
                    return Some(Err(self.not_primary(key, primary)));
                }
                if !self.is_caught_up(key) {
                    return None;
                }
                let others = state.other_replicas(&view.ring, key);
                if !enough_replicas(others.len(), state.config().write_acks) {
                    return Some(Err(Status::unavailable(format!(
                        "node {} counts only {} live replica(s) of key {key:?}, fewer than \
                         --write-acks {}; nothing was written",
                        state.id(),
                        others.len() + 1,
                        state.config().write_acks
                    ))));
                }
                let replicas = Replicas {
                    others,
                    incarnation: state.incarnation(),
                };
                Some(Ok((apply(&self.store), replicas)))
            });
            if let Some(result) = attempt {
                return result;
            }
        }
    }

    /// The error for a write this node was asked to execute but does not lead (in
    /// its current view), or cannot route at all (every node is out of its ring:
    /// the cluster is starting). `ABORTED`: nothing was applied and the caller may
    /// retry once views agree.
    pub fn not_primary(&self, key: &str, primary: Option<usize>) -> Status {
        let state = &self.peering;
        let Some(primary) = primary else {
            return Status::aborted(format!(
                "node {} has no storage node in its ring yet (the cluster is starting, or \
                 every node is rejoining), so key {key:?} has no primary; nothing was applied",
                state.id()
            ));
        };
        Status::aborted(format!(
            "node {} received a request for key {key:?} but is not its primary ({} is): \
             the nodes' views differ (a crash or a rejoin not yet known everywhere — \
             retry), or they were given different --peers; nothing was applied",
            state.id(),
            state.id_of(primary)
        ))
    }

    /// Executes a write as the key's primary, then replicates it (SPEC §2.4).
    pub async fn execute_write(&self, key: &str, value: &str) -> Result<Record, Status> {
        let (record, replicas) = self
            .as_primary(key, |store| store.write(key, value, self.replica))
            .await?;
        let record = record.map_err(|e| self.version_exhausted(key, e))?;
        if !self.replicate(&record, &replicas).await {
            return Err(self.not_acknowledged(&record));
        }
        Ok(record)
    }

    /// Executes a conditional update as the key's primary; `None` when the comparison
    /// failed.
    pub async fn execute_cas(
        &self,
        key: &str,
        old: &str,
        new: &str,
    ) -> Result<Option<Record>, Status> {
        let (outcome, replicas) = self
            .as_primary(key, |store| {
                match store.update_if_value_is(key, old, new, self.replica) {
                    Ok(CasOutcome::Applied(record)) => Ok(Ok(record)),
                    Ok(CasOutcome::Mismatch) => Ok(Err(store.read(key, None))),
                    Err(exhausted) => Err(exhausted),
                }
            })
            .await?;
        let outcome = outcome.map_err(|e| self.version_exhausted(key, e))?;
        match outcome {
            Err(current) => {
                // The answer "it holds another value" reveals that value, which
                // may be a write not yet acknowledged (its replicas unreachable):
                // if that write were then lost in a takeover, the client would have
                // seen a value that never was. So the value compared against must
                // be held by --write-acks replicas before the mismatch is told.
                if let Some(current) = current {
                    if !self.replicate(&current, &replicas).await {
                        return Err(Status::unavailable(format!(
                            "conditional update of key {key:?} found another value (version \
                             {}) on primary {}, but fewer than {} of its replicas confirmed \
                             holding it within {:?}; the outcome is unknown",
                            current.version,
                            self.peering.id(),
                            self.peering.config().write_acks,
                            self.peering.config().ack_timeout,
                        )));
                    }
                }
                Ok(None)
            }
            Ok(record) => {
                if !self.replicate(&record, &replicas).await {
                    return Err(self.not_acknowledged(&record));
                }
                Ok(Some(record))
            }
        }
    }

    /// Hands `record` to the `others` replicas of its key. With `write_acks > 1`,
    /// waits until that many replicas (this one included) hold it; false if they
    /// did not within the acknowledgement timeout. A replica that already holds it
    /// acknowledges it again, so this also confirms a record created earlier.
    async fn replicate(&self, record: &Record, replicas: &Replicas) -> bool {
        let state = &self.peering;
        // `await_acks` off is the deliberate bug of `--break-acks`: no copy awaited.
        let needed = if state.config().await_acks {
            acks_awaited(state.config().write_acks)
        } else {
            0
        };
        let incarnation = replicas.incarnation;
        if needed == 0 {
            for &peer in &replicas.others {
                self.gossip
                    .enqueue(peer, [record.clone()], None, incarnation);
            }
            return true;
        }
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
        for &peer in &replicas.others {
            self.gossip
                .enqueue(peer, [record.clone()], Some(ack_tx.clone()), incarnation);
        }
        drop(ack_tx);
        let wait_for_acks = async {
            let mut acked = 0;
            while acked < needed {
                match ack_rx.recv().await {
                    Some(_) => acked += 1,
                    None => break,
                }
            }
            acked
        };
        let acked = tokio::time::timeout(state.config().ack_timeout, wait_for_acks)
            .await
            .unwrap_or(0);
        acked >= needed
    }

    /// The error for a write or conditional update of a key whose newest version is
    /// at [`dida_core::Version::MAX_NUMBER`]: `FAILED_PRECONDITION`, since no retry
    /// can succeed, and nothing was written.
    fn version_exhausted(&self, key: &str, error: VersionError) -> Status {
        Status::failed_precondition(format!(
            "primary {} cannot write key {key:?}: {error}; nothing was written",
            self.peering.id()
        ))
    }

    /// The error for a record this node applied but too few replicas acknowledged.
    fn not_acknowledged(&self, record: &Record) -> Status {
        let state = &self.peering;
        Status::unavailable(format!(
            "write of key {:?} was applied by primary {} as version {} but fewer than {} of \
             its replicas acknowledged it within {:?}; it is not acknowledged, though \
             replication goes on in the background",
            record.key,
            state.id(),
            record.version,
            state.config().write_acks,
            state.config().ack_timeout,
        ))
    }
}

/// Hands a new primary this node's versions of a key, after adopting the new
/// primary's view (D2, H1): from here on this node refuses the old primary's
/// pushes, and executes no write of the key if it led it, so none can be
/// acknowledged that the new primary missed. The sender, key and view are
/// checked first; a malformed pull is refused and adopts nothing.
pub(crate) fn answer_fetch_key(
    state: &Peering,
    store: &MultiVersionStore,
    request: FetchKeyRequest,
) -> Result<FetchKeyReply, Status> {
    state.check_serving()?;
    let refused = |r: Refusal| r.status(state.id(), "key pull", &request.from);
    let membership = state.roster();
    let from = validation::sender(membership, state.me(), &request.from).map_err(refused)?;
    validation::key(&request.key).map_err(refused)?;
    let updates = validation::view(membership, &request.view).map_err(refused)?;
    if !updates.is_empty() {
        state.learn(Some(from), updates);
    }
    state.check_serving()?;
    let records = store.records_of(&request.key, |_| true);
    Ok(FetchKeyReply {
        records: records.iter().map(record_to_wire).collect(),
    })
}

/// Whether a primary that counts `others` live replicas of a key besides itself
/// may write it with `--write-acks` `write_acks`: with fewer, the write could not
/// be acknowledged, so it is refused before it is applied.
pub(crate) fn enough_replicas(others: usize, write_acks: usize) -> bool {
    others >= acks_awaited(write_acks)
}

/// How many other replicas' acknowledgements a primary waits for: its own copy
/// counts as one of the `write_acks`.
pub(crate) fn acks_awaited(write_acks: usize) -> usize {
    write_acks.saturating_sub(1)
}

/// What a takeover's pull from one peer gave.
#[derive(Debug, Default)]
struct Pull {
    /// Whether the peer answered with valid records of the key.
    answered: bool,
    /// Versions a member out of the ring created and showed, not merged.
    withheld: Vec<dida_core::Version>,
}

/// What decides whether silent members out of the ring hold a takeover back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outsiders {
    /// `--write-acks`: how many nodes hold an acknowledged write.
    pub write_acks: usize,
    /// Whether a member out of the ring showed versions of its own that no other
    /// node that answered holds.
    pub unconfirmed_own: bool,
}

/// The members whose silence keeps a takeover from writing: every live replica
/// that did not answer its pull (`from_replicas`, in the order of `replicas`),
/// and the silent members out of the ring (`from_outside`, in the order of
/// `outside`) unless [`may_proceed`] lets the takeover go on without them.
pub(crate) fn blocking_silence(
    replicas: &[usize],
    from_replicas: &[bool],
    outside: &[usize],
    from_outside: &[bool],
    outsiders: Outsiders,
) -> Vec<usize> {
    let silent = |peers: &[usize], answered: &[bool]| -> Vec<usize> {
        peers
            .iter()
            .zip(answered)
            .filter(|(_, answered)| !**answered)
            .map(|(&peer, _)| peer)
            .collect()
    };
    let mut blocking = silent(replicas, from_replicas);
    let silent_outside = silent(outside, from_outside);
    if !may_proceed(silent_outside.len(), outsiders) {
        blocking.extend(silent_outside);
    }
    blocking
}

/// Whether a takeover whose live replicas all answered may write, with
/// `silent_outside` members out of the ring (declared failed, or joining) not
/// answering. An acknowledged write is on `write_acks` nodes, all of them replicas
/// of the key or out of the ring; with fewer than `write_acks` of those silent,
/// one that answered holds it — even when several holders were declared failed at
/// once (a storm of false suspicions), since declared nodes keep their records and
/// are asked too. With `--write-acks 1` a write lives on its primary alone until
/// gossiped, and waiting for it would stop the takeover at the first crash: the
/// live replicas are enough, as that mode documents.
///
/// A member out of the ring that answers shows its own versions, but they are not
/// merged (a version of its own no one else holds was never acknowledged), so for
/// those it is no holder: when it shows one that no other node that answered
/// holds, the `write_acks − 1` other holders such a version would have if
/// acknowledged must not all be silent. The simulator found this (storm seed 243,
/// write-acks 2: the paused primary and its one acknowledging replica were both
/// declared; the primary answered, its acknowledged 114.2 was not merged, the
/// replica was silent, and the new primary numbered a write 113.3 after it).
pub(crate) fn may_proceed(silent_outside: usize, outsiders: Outsiders) -> bool {
    let Outsiders {
        write_acks,
        unconfirmed_own,
    } = outsiders;
    write_acks <= 1 || silent_outside + usize::from(unconfirmed_own) < write_acks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_takeover_hears_from_a_holder_of_every_acknowledged_write() {
        // write-acks 2: one silent node out of the ring may hold a write, the
        // other holder answered; two silent nodes may be both holders.
        let acks = |write_acks| Outsiders {
            write_acks,
            unconfirmed_own: false,
        };
        assert!(may_proceed(0, acks(2)) && may_proceed(1, acks(2)));
        assert!(!may_proceed(2, acks(2)));
        assert!(may_proceed(2, acks(3)) && !may_proceed(3, acks(3)));
        assert!(may_proceed(4, acks(1)));
    }

    #[test]
    fn an_outsiders_own_version_no_one_else_showed_needs_its_other_holders_heard() {
        let unconfirmed = |write_acks| Outsiders {
            write_acks,
            unconfirmed_own: true,
        };
        // write-acks 2: its one other holder must have answered.
        assert!(may_proceed(0, unconfirmed(2)) && !may_proceed(1, unconfirmed(2)));
        // write-acks 3: one of its two other holders may be silent.
        assert!(may_proceed(1, unconfirmed(3)) && !may_proceed(2, unconfirmed(3)));
        assert!(may_proceed(4, unconfirmed(1)));
    }

    #[test]
    fn a_write_needs_write_acks_replicas_counting_the_primary() {
        assert_eq!(acks_awaited(1), 0);
        assert_eq!(acks_awaited(3), 2);
        assert!(enough_replicas(0, 1));
        assert!(enough_replicas(1, 2) && !enough_replicas(0, 2));
        assert!(enough_replicas(2, 3) && !enough_replicas(1, 3));
    }

    #[test]
    fn every_silent_replica_blocks_a_takeover_silent_outsiders_only_past_the_bound() {
        let acks = |write_acks| Outsiders {
            write_acks,
            unconfirmed_own: false,
        };
        // A live replica that did not answer always holds the takeover.
        assert_eq!(
            blocking_silence(&[1, 2], &[true, false], &[], &[], acks(2)),
            vec![2]
        );
        // One silent member out of the ring with --write-acks 2: another holder
        // answered, so it does not.
        assert!(blocking_silence(&[1], &[true], &[3, 4], &[false, true], acks(2)).is_empty());
        // Two silent outsiders may be both holders of a write: both are waited for.
        assert_eq!(
            blocking_silence(&[1], &[true], &[3, 4], &[false, false], acks(2)),
            vec![3, 4]
        );
        // --write-acks 1 never waits for members out of the ring.
        assert!(blocking_silence(&[1], &[true], &[3, 4], &[false, false], acks(1)).is_empty());
        // The answering outsider showed a version of its own no one else did: its
        // other holder may be the silent one, which is then waited for.
        let unconfirmed = Outsiders {
            write_acks: 2,
            unconfirmed_own: true,
        };
        assert_eq!(
            blocking_silence(&[1], &[true], &[3, 4], &[false, true], unconfirmed),
            vec![3]
        );
    }
}
