//! Reconfiguration: storage nodes join and leave a running cluster through an
//! agreed, numbered configuration (`dida storage --join`, `dida cluster remove`).
//!
//! The configuration ([`dida_core::cluster`]) lists every member with its standing
//! — active, leaving, removed — and an epoch. Each epoch is decided by one
//! single-decree Paxos instance among the voters of the epoch before
//! ([`crate::consensus`]), whose acceptor state a node keeps in its data directory. A node that
//! decides or learns an epoch takes its leaving and removed members out of every
//! ring ([`crate::view::ViewCell::set_departed`]); decided configurations spread to
//! the members that missed them with the probes ([`offer`], [`learn_from_probe`])
//! and with handbacks.
//!
//! A join takes two epochs too. The first appends the node, joining ([`admit`],
//! asked by the node itself through any member): every node that learns it
//! re-buckets its store, connects to the newcomer and lists it joining at
//! incarnation 0, out of every ring ([`Peering::grow`]). The newcomer catches up
//! the ranges it will replicate from every member like a restarted node (`rejoin`),
//! enters the rings once it has them all, and then proposes the second epoch, which
//! makes it active; the nodes that no longer replicate its ranges hand them off
//! (`handoff`). Until then no other change starts.
//!
//! A leave takes two epochs. The first marks the member leaving: it is out of every
//! ring from then on, its keys are led by their next replicas (the takeover of a
//! crash, with the leaving node still answering key pulls), and `handoff` pushes
//! each of its records to the new replicas and drops it once they confirmed it.
//! Once it holds nothing, the leaving node proposes the second epoch, which removes
//! it, and stops ([`run`]). The proposer of the first epoch tells the leaving node
//! first, so that it stops leading its keys before the others start.

use std::collections::BTreeSet;
use std::time::Duration;

use dida_core::cluster::ChangeError;
use dida_core::{ClusterConfig, Standing};
use dida_proto::convert::{config_from_wire, config_to_wire};
use dida_proto::storage::{
    self as wire, ConfigAcceptReply, ConfigAcceptRequest, ConfigCommitReply, ConfigCommitRequest,
    ConfigPrepareReply, ConfigPrepareRequest, MembersReply, ProbeReply,
};
use futures::future::join_all;
use tonic::Status;
use tracing::{info, warn};

use crate::consensus::{value_to_propose, Accepted, Ballot, Prepared};
use crate::error::DurabilityError;
use crate::peering::Peering;
use crate::store::MultiVersionStore;
use crate::validation::{self, Refusal};

/// How long a proposer keeps trying to get a change decided before it gives up.
const PROPOSAL_DEADLINE: Duration = Duration::from_secs(10);

/// Why a configuration change was not made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReconfigError {
    /// The change breaks a rule; nothing was changed.
    #[error(transparent)]
    Refused(#[from] ChangeError),
    /// Not enough voters answered in time; the change may still be decided by a
    /// later proposer that meets one of those that accepted it.
    #[error(
        "only {reached} of the {quorum} storage nodes needed to decide a membership change \
         answered within {PROPOSAL_DEADLINE:?}; check `dida cluster members` and retry"
    )]
    NoQuorum {
        /// Voters that promised or accepted in the last attempt.
        reached: usize,
        /// Voters needed.
        quorum: usize,
    },
    /// This node could not persist its acceptor state.
    #[error("cannot record the membership change on disk: {0}")]
    Disk(#[from] DurabilityError),
}

impl ReconfigError {
    /// The gRPC status an operator's request ends with.
    pub fn status(&self) -> Status {
        match self {
            ReconfigError::Refused(_) => Status::failed_precondition(self.to_string()),
            ReconfigError::NoQuorum { .. } => Status::unavailable(self.to_string()),
            ReconfigError::Disk(_) => Status::internal(self.to_string()),
        }
    }
}

/// The departed and removed member indices of `config`, as the view wants them.
fn departures(config: &ClusterConfig) -> (BTreeSet<usize>, BTreeSet<usize>) {
    let departed = config.departed().collect();
    let removed = config
        .members
        .iter()
        .enumerate()
        .filter(|(_, m)| m.standing == Standing::Removed)
        .map(|(index, _)| index)
        .collect();
    (departed, removed)
}

/// Makes the view follow `state`'s decided configuration (after a step that may
/// have learned one).
pub(crate) fn apply_decided(peering: &Peering) {
    let config = peering.cluster().decided();
    if let Err(e) = peering.grow(&config) {
        warn!(node = peering.id(), error = %e, "cannot reach a member the cluster admitted");
    }
    let (departed, removed) = departures(&config);
    if let Some(view) = peering.view().set_departed(departed, removed) {
        let leaving: Vec<&str> = config
            .members
            .iter()
            .filter(|m| m.standing == Standing::Leaving)
            .map(|m| m.id.as_str())
            .collect();
        info!(
            node = peering.id(),
            config_epoch = config.epoch,
            view_epoch = view.epoch,
            ?leaving,
            "adopted a new cluster configuration"
        );
        peering.announce_view_change();
    }
}

/// Adopts `config` if it is a later decided configuration of this cluster.
pub(crate) fn learn(peering: &Peering, config: &ClusterConfig) {
    match peering.cluster().step(|acceptor| acceptor.learn(config)) {
        Ok(true) => apply_decided(peering),
        Ok(false) => {}
        Err(e) => warn!(node = peering.id(), error = %e, "cannot record a decided configuration"),
    }
}

fn checked_config(
    config: Option<wire::ClusterConfig>,
    field: &str,
) -> Result<ClusterConfig, Refusal> {
    let config = config.ok_or_else(|| Refusal(format!("{field} is missing")))?;
    config_from_wire(config).map_err(|why| Refusal(format!("{field}: {why}")))
}

fn ballot_from_wire(ballot: Option<wire::Ballot>) -> Ballot {
    ballot.map_or_else(Ballot::default, |b| Ballot {
        round: b.round,
        proposer: b.proposer,
    })
}

fn ballot_to_wire(ballot: Ballot) -> wire::Ballot {
    wire::Ballot {
        round: ballot.round,
        proposer: ballot.proposer,
    }
}

/// An acceptor's answer to phase 1 from a member.
pub(crate) fn answer_prepare(
    peering: &Peering,
    request: ConfigPrepareRequest,
) -> Result<ConfigPrepareReply, Status> {
    let refused = |r: Refusal| r.status(peering.id(), "configuration prepare", &request.from);
    validation::sender(peering.roster(), peering.me(), &request.from).map_err(refused)?;
    let base = checked_config(request.base, "base").map_err(refused)?;
    prepare_here(peering, &base, ballot_from_wire(request.ballot))
        .map_err(|e| Status::internal(e.to_string()))
}

/// An acceptor's answer to phase 2 from a member.
pub(crate) fn answer_accept(
    peering: &Peering,
    request: ConfigAcceptRequest,
) -> Result<ConfigAcceptReply, Status> {
    let refused = |r: Refusal| r.status(peering.id(), "configuration accept", &request.from);
    validation::sender(peering.roster(), peering.me(), &request.from).map_err(refused)?;
    let base = checked_config(request.base, "base").map_err(refused)?;
    let value = checked_config(request.value, "value").map_err(refused)?;
    accept_here(peering, &base, ballot_from_wire(request.ballot), &value)
        .map_err(|e| Status::internal(e.to_string()))
}

/// This node's acceptor's phase 1 for the epoch after `base`, as the reply a
/// peer would send: what a member's request and this node's own proposal both
/// get.
fn prepare_here(
    peering: &Peering,
    base: &ClusterConfig,
    ballot: Ballot,
) -> Result<ConfigPrepareReply, DurabilityError> {
    let prepared = peering
        .cluster()
        .step(|acceptor| acceptor.prepare(base, ballot))?;
    apply_decided(peering);
    Ok(match prepared {
        Prepared::Promise(accepted) => ConfigPrepareReply {
            promised: true,
            promised_ballot: Some(ballot_to_wire(ballot)),
            accepted_ballot: accepted.as_ref().map(|(at, _)| ballot_to_wire(*at)),
            accepted: accepted.map(|(_, value)| config_to_wire(&value)),
            ..Default::default()
        },
        Prepared::Refused(promised) => ConfigPrepareReply {
            promised_ballot: Some(ballot_to_wire(promised)),
            ..Default::default()
        },
        Prepared::Decided(later) => ConfigPrepareReply {
            decided: Some(config_to_wire(&later)),
            ..Default::default()
        },
    })
}

/// This node's acceptor's phase 2 for the epoch after `base`, as the reply a peer
/// would send.
fn accept_here(
    peering: &Peering,
    base: &ClusterConfig,
    ballot: Ballot,
    value: &ClusterConfig,
) -> Result<ConfigAcceptReply, DurabilityError> {
    let accepted = peering
        .cluster()
        .step(|acceptor| acceptor.accept(base, ballot, value))?;
    apply_decided(peering);
    Ok(match accepted {
        Accepted::Yes => ConfigAcceptReply {
            accepted: true,
            ..Default::default()
        },
        Accepted::Refused(promised) => ConfigAcceptReply {
            promised_ballot: Some(ballot_to_wire(promised)),
            ..Default::default()
        },
        Accepted::Decided(later) => ConfigAcceptReply {
            decided: Some(config_to_wire(&later)),
            ..Default::default()
        },
    })
}

/// A member telling this node of a decided configuration.
pub(crate) fn answer_commit(
    peering: &Peering,
    request: ConfigCommitRequest,
) -> Result<ConfigCommitReply, Status> {
    let refused = |r: Refusal| r.status(peering.id(), "configuration commit", &request.from);
    validation::sender(peering.roster(), peering.me(), &request.from).map_err(refused)?;
    let decided = checked_config(request.decided, "decided").map_err(refused)?;
    learn(peering, &decided);
    Ok(ConfigCommitReply {})
}

/// The configuration and view `dida cluster members` shows.
pub(crate) fn members(peering: &Peering) -> MembersReply {
    let config = peering.cluster().decided();
    MembersReply {
        id: peering.id().to_string(),
        config: Some(config_to_wire(&config)),
        view: peering.states_to_wire(&peering.view().current().members),
    }
}

/// What a probe's answer carries of this node's configuration: its epoch, and the
/// whole configuration when the prober's (`theirs`) is older.
pub(crate) fn offer(peering: &Peering, theirs: u64, reply: &mut ProbeReply) {
    reply.config_epoch = peering.cluster().decided_epoch();
    if reply.config_epoch > theirs {
        let config = peering.cluster().decided();
        reply.config_epoch = config.epoch;
        reply.config = Some(config_to_wire(&config));
    }
}

/// Learns from a probe's answer from `peer`: a newer configuration it sent is
/// adopted, and a peer that is behind is sent this node's.
pub(crate) async fn learn_from_probe(peering: &Peering, peer: usize, reply: &ProbeReply) {
    if let Some(config) = reply.config.clone() {
        match config_from_wire(config) {
            Ok(config) => learn(peering, &config),
            Err(why) => {
                warn!(node = peering.id(), peer = peering.id_of(peer), %why, "ignored a malformed configuration")
            }
        }
    } else if reply.config_epoch < peering.cluster().decided_epoch() {
        let mine = peering.cluster().decided();
        let commit = ConfigCommitRequest {
            from: peering.id().to_string(),
            decided: Some(config_to_wire(&mine)),
        };
        // Best effort: the next probe offers it again.
        let _ = peering.transport().config_commit(peer, commit).await;
    }
}

/// Decides the change `change` makes to the decided configuration, retrying with
/// higher ballots (and on newer bases, re-checking the change against each) until
/// it is decided, refused, or [`PROPOSAL_DEADLINE`] passes. Returns the decided
/// configuration that holds the change.
pub(crate) async fn propose(
    peering: &Peering,
    change: impl Fn(&ClusterConfig) -> Result<ClusterConfig, ChangeError>,
) -> Result<ClusterConfig, ReconfigError> {
    let deadline = tokio::time::Instant::now() + PROPOSAL_DEADLINE;
    let mut round = 0;
    let mut backoff = Duration::from_millis(20);
    loop {
        let base = peering.cluster().decided();
        let own = change(&base)?;
        round += 1;
        let ballot = Ballot {
            round,
            proposer: peering.me() as u32 + 1,
        };
        match attempt(peering, &base, ballot, &own).await? {
            Attempt::Decided(value) if value == own => return Ok(value),
            Attempt::Decided(_) | Attempt::Behind => continue,
            Attempt::Outbid(higher) => round = round.max(higher.round),
            Attempt::Short { reached } => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(ReconfigError::NoQuorum {
                        reached,
                        quorum: base.quorum(),
                    });
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ReconfigError::NoQuorum {
                reached: 0,
                quorum: base.quorum(),
            });
        }
        // Two proposers outbidding each other back off by different amounts.
        tokio::time::sleep(backoff * (peering.me() as u32 + 1)).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

/// How one ballot went.
enum Attempt {
    /// A value was decided (this proposer's or one it had to finish).
    Decided(ClusterConfig),
    /// A voter had decided a later epoch: this node learned it.
    Behind,
    /// A voter promised a higher ballot.
    Outbid(Ballot),
    /// Fewer than a quorum answered.
    Short { reached: usize },
}

/// One ballot's two phases for the epoch after `base`.
async fn attempt(
    peering: &Peering,
    base: &ClusterConfig,
    ballot: Ballot,
    own: &ClusterConfig,
) -> Result<Attempt, ReconfigError> {
    let voters = base.voters();
    let quorum = base.quorum();
    let wire_base = config_to_wire(base);
    let wire_ballot = ballot_to_wire(ballot);

    let prepares = voters.iter().map(|&voter| {
        let request = ConfigPrepareRequest {
            from: peering.id().to_string(),
            base: Some(wire_base.clone()),
            ballot: Some(wire_ballot),
        };
        async move {
            if voter == peering.me() {
                prepare_here(peering, base, ballot).ok()
            } else {
                peering
                    .transport()
                    .config_prepare(voter, request)
                    .await
                    .ok()
            }
        }
    });
    let mut promises = Vec::new();
    let mut outbid = None;
    for reply in join_all(prepares).await.into_iter().flatten() {
        if let Some(later) = reply.decided {
            if let Ok(later) = config_from_wire(later) {
                learn(peering, &later);
                return Ok(Attempt::Behind);
            }
        } else if reply.promised {
            let accepted = match (reply.accepted, reply.accepted_ballot) {
                (Some(value), at) => config_from_wire(value)
                    .ok()
                    .map(|value| (ballot_from_wire(at), value)),
                (None, _) => None,
            };
            promises.push(accepted);
        } else {
            outbid = outbid.max(Some(ballot_from_wire(reply.promised_ballot)));
        }
    }
    if promises.len() < quorum {
        return Ok(match outbid {
            Some(higher) => Attempt::Outbid(higher),
            None => Attempt::Short {
                reached: promises.len(),
            },
        });
    }
    let value = value_to_propose(&promises, own);

    let wire_value = config_to_wire(&value);
    let value = &value;
    let accepts = voters.iter().map(|&voter| {
        let request = ConfigAcceptRequest {
            from: peering.id().to_string(),
            base: Some(wire_base.clone()),
            ballot: Some(wire_ballot),
            value: Some(wire_value.clone()),
        };
        async move {
            if voter == peering.me() {
                accept_here(peering, base, ballot, value).ok()
            } else {
                peering.transport().config_accept(voter, request).await.ok()
            }
        }
    });
    let mut yes = 0;
    for reply in join_all(accepts).await.into_iter().flatten() {
        if reply.accepted {
            yes += 1;
        } else if let Some(later) = reply.decided.and_then(|c| config_from_wire(c).ok()) {
            learn(peering, &later);
            return Ok(Attempt::Behind);
        } else {
            outbid = outbid.max(Some(ballot_from_wire(reply.promised_ballot)));
        }
    }
    if yes < quorum {
        return Ok(match outbid {
            Some(higher) => Attempt::Outbid(higher),
            None => Attempt::Short { reached: yes },
        });
    }
    commit(peering, base, value).await;
    Ok(Attempt::Decided(value.clone()))
}

/// Tells every member of `decided` of it: first the members whose standing it
/// changed (a leaving node stops leading its keys before anyone takes them
/// over), then this node, then the others, best effort (probes spread it to
/// those that miss it).
async fn commit(peering: &Peering, base: &ClusterConfig, decided: &ClusterConfig) {
    let request = ConfigCommitRequest {
        from: peering.id().to_string(),
        decided: Some(config_to_wire(decided)),
    };
    let (changed, others): (Vec<usize>, Vec<usize>) = base
        .voters()
        .into_iter()
        .filter(|&n| n != peering.me())
        .partition(|&n| base.standing(n) != decided.standing(n));
    for &member in &changed {
        let _ = peering
            .transport()
            .config_commit(member, request.clone())
            .await;
    }
    learn(peering, decided);
    join_all(
        others
            .iter()
            .map(|&member| peering.transport().config_commit(member, request.clone())),
    )
    .await;
}

/// An operator's request that member `id` leave cluster `cluster_id` (empty:
/// this one): decided here, or refused. A member already leaving that this node
/// counts failed is removed instead, so a leave whose node crashed can finish
/// (its records live on at their other replicas).
pub(crate) async fn remove_member(
    peering: &Peering,
    id: &str,
    cluster_id: &str,
) -> Result<ClusterConfig, ReconfigError> {
    peering.cluster().decided().check_cluster(cluster_id)?;
    let replication_factor = peering.config().replication_factor;
    let failed = peering.failed_ids();
    propose(peering, |base| match base.finish_leave(id) {
        Some(removed) if failed.iter().any(|f| f == id) => Ok(removed),
        _ => base.begin_leave(id, replication_factor),
    })
    .await
}

/// A node's request to join cluster `cluster_id` (empty: this one) as `id` at
/// `url`: decided here, or refused. A node already listed at that address (it
/// asked again, say after a restart) is given the configuration as it is.
pub(crate) async fn admit(
    peering: &Peering,
    id: &str,
    url: &str,
    cluster_id: &str,
) -> Result<ClusterConfig, ReconfigError> {
    let decided = peering.cluster().decided();
    decided.check_cluster(cluster_id)?;
    if decided.lists(id, url) {
        return Ok(decided);
    }
    match propose(peering, |base| base.begin_join(id, url)).await {
        // Decided meanwhile by an earlier attempt of this same request.
        Err(ReconfigError::Refused(ChangeError::IdInUse { .. }))
            if peering.cluster().decided().lists(id, url) =>
        {
            Ok(peering.cluster().decided())
        }
        outcome => {
            if let Ok(config) = &outcome {
                info!(node = peering.id(), joining = id, %url, config_epoch = config.epoch, "admitted a new storage node");
            }
            outcome
        }
    }
}

/// The leaving side: every anti-entropy interval, a node that is leaving and
/// holds no records any more (`handoff` moved them all) proposes its removal;
/// once removed, it tells [`Peering::departed`] waiters and stops taking part.
pub(crate) async fn run(
    peering: std::sync::Arc<Peering>,
    store: std::sync::Arc<MultiVersionStore>,
) {
    let mut ticker = tokio::time::interval(peering.config().anti_entropy_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let config = peering.cluster().decided();
        match config.standing(peering.me()) {
            Standing::Active => continue,
            Standing::Joining => {
                finish_joining(&peering).await;
                continue;
            }
            Standing::Removed => {
                peering.depart();
                return;
            }
            Standing::Leaving => {}
        }
        let (_, records) = store.counts();
        if records > 0 || peering.is_fenced() {
            continue;
        }
        finish_own_change(
            &peering,
            ClusterConfig::finish_leave,
            "handed every record off and left the cluster",
            "could not finish leaving; retrying",
        )
        .await;
    }
}

/// Proposes `finish`, the second epoch of this node's own change (its leave or
/// its join), and logs the outcome: `done` once decided, `retrying` otherwise
/// (the caller asks again at its next tick).
async fn finish_own_change(
    peering: &Peering,
    finish: fn(&ClusterConfig, &str) -> Option<ClusterConfig>,
    done: &str,
    retrying: &str,
) {
    let me = peering.id().to_string();
    match propose(peering, |base| {
        finish(base, &me).ok_or_else(|| ChangeError::NotActive {
            id: me.clone(),
            standing: base.standing(peering.me()),
        })
    })
    .await
    {
        Ok(config) => info!(node = peering.id(), config_epoch = config.epoch, "{done}"),
        Err(e) => warn!(node = peering.id(), error = %e, "{retrying}"),
    }
}

/// The joining side: once this node has caught up and is alive in its own ring
/// (`rejoin`), it proposes that it is active, which ends the change so the next
/// may start.
async fn finish_joining(peering: &Peering) {
    if peering.liveness() != dida_core::Liveness::Alive || peering.is_fenced() {
        return;
    }
    finish_own_change(
        peering,
        ClusterConfig::finish_join,
        "caught up: joined the cluster as an active member",
        "could not finish joining; retrying",
    )
    .await;
}
