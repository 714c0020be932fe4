//! Asking a storage cluster about its configuration, asking it to remove a
//! member, and asking it to admit a new one, through the `Membership` service
//! (issue 25: elastic clusters).
//!
//! Shared by every tool that changes or shows the cluster's membership — `dida
//! cluster members|remove` and the PuppetMaster's `removeStorage` and `status` — so
//! that they pick the same answer (the highest epoch any seed knows), ask in the
//! same order and report a refusal in the cluster's own words. The change itself
//! is decided by the storage nodes; this module only asks.

use std::time::Duration;

use dida_core::{ClusterConfig, Membership, Standing};
use dida_proto::convert::{config_from_wire, liveness_from_wire};
use dida_proto::storage::membership_client::MembershipClient;
use dida_proto::storage::{
    JoinRequest, Liveness as WireLiveness, MembersReply, MembersRequest, RemoveMemberReply,
    RemoveMemberRequest,
};
use dida_proto::transport::{is_connect_failure, lazy_channel, NodeChannel};

/// How long one `Members` call may take: a node that takes longer is skipped.
pub const MEMBERS_DEADLINE: Duration = Duration::from_secs(5);

/// How long a `RemoveMember` call may take: the nodes' own proposal deadline (10 s)
/// and some, so that a slow decision is not mistaken for a failure.
pub const REMOVE_DEADLINE: Duration = Duration::from_secs(15);

/// Why a call to the `Membership` service of a cluster gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterCallError {
    /// A seed's URL is not one a channel can be made to.
    #[error("bad storage node URL {url}: {message}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        message: String,
    },
    /// No seed was asked: the list was empty (after leaving out the node asked
    /// about).
    #[error("there is no storage node to ask")]
    NoSeed,
    /// No seed answered `Members`.
    #[error("no storage node answered: {0}")]
    NoAnswer(String),
    /// No seed could be reached for `RemoveMember`.
    #[error("no storage node is reachable: {0}")]
    Unreachable(String),
    /// A node answered and refused the change; nothing was changed. `reason` is
    /// the cluster's own words (below the replication factor, another change in
    /// progress, not a member, another cluster).
    #[error("{node} refused: {reason}")]
    Refused {
        /// The node that answered.
        node: String,
        /// Why, as it said.
        reason: String,
    },
    /// A node sent a configuration that does not check.
    #[error("{node} sent a malformed configuration: {why}")]
    Malformed {
        /// The node that sent it.
        node: String,
        /// What is wrong with it.
        why: String,
    },
}

/// One member as a tool shows it: where it stands in the configuration and, for
/// an active member, how its peers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    /// Node id.
    pub id: String,
    /// Where it serves.
    pub url: String,
    /// `leaving` or `removed` for a member on its way out, else its liveness
    /// (`alive`, `joining`, `failed`, … or `unknown`): the one word to show.
    pub state: &'static str,
    /// Where it stands in the configuration.
    pub standing: Standing,
    /// Its liveness as the answering node sees it (`unknown` if not listed).
    pub liveness: &'static str,
    /// Its incarnation as the answering node knows it (0 if not listed).
    pub incarnation: u64,
}

/// The configuration as one node described it, checked and flattened into rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembersView {
    /// The node that answered.
    pub answered_by: String,
    /// The configuration, checked.
    pub config: ClusterConfig,
    /// One row per member, in the configuration's order.
    pub rows: Vec<MemberRow>,
}

impl MembersView {
    /// Checks `reply` and flattens it; the error names the node that sent it.
    pub fn of(reply: &MembersReply) -> Result<Self, ClusterCallError> {
        let malformed = |why: String| ClusterCallError::Malformed {
            node: reply.id.clone(),
            why,
        };
        let config = config_from_wire(
            reply
                .config
                .clone()
                .ok_or_else(|| malformed("it sent no configuration".into()))?,
        )
        .map_err(malformed)?;
        let rows = config
            .members
            .iter()
            .map(|member| {
                let seen = reply.view.iter().find(|v| v.id == member.id);
                let liveness = seen
                    .and_then(|v| WireLiveness::try_from(v.liveness).ok())
                    .map_or("unknown", |l| liveness_from_wire(l).name());
                let state = match member.standing {
                    Standing::Active => liveness,
                    other => other.name(),
                };
                MemberRow {
                    id: member.id.clone(),
                    url: member.url.clone(),
                    state,
                    standing: member.standing,
                    liveness,
                    incarnation: seen.map_or(0, |v| v.incarnation),
                }
            })
            .collect();
        Ok(Self {
            answered_by: reply.id.clone(),
            config,
            rows,
        })
    }

    /// Where member `id` stands, if the configuration lists it.
    pub fn standing(&self, id: &str) -> Option<Standing> {
        self.rows.iter().find(|r| r.id == id).map(|r| r.standing)
    }
}

fn client(
    url: &str,
    deadline: Duration,
) -> Result<MembershipClient<NodeChannel>, ClusterCallError> {
    lazy_channel(url, deadline)
        .map(MembershipClient::new)
        .map_err(|e| ClusterCallError::BadUrl {
            url: url.to_string(),
            message: e.to_string(),
        })
}

/// The configuration as `seeds` know it: of the seeds that answer within
/// `deadline` (skipping `except`), the answer with the highest epoch, so that a
/// node that is behind does not hide a change.
pub async fn members(
    seeds: &Membership,
    except: Option<&str>,
    deadline: Duration,
) -> Result<MembersReply, ClusterCallError> {
    let mut best: Option<MembersReply> = None;
    let mut errors = Vec::new();
    for seed in seeds
        .members()
        .iter()
        .filter(|m| Some(m.id.as_str()) != except)
    {
        let mut client = client(&seed.url.to_string(), deadline)?;
        let answer = tokio::time::timeout(deadline, client.members(MembersRequest {})).await;
        match answer {
            Ok(Ok(reply)) => {
                let reply = reply.into_inner();
                let epoch = |r: &MembersReply| r.config.as_ref().map_or(0, |c| c.epoch);
                if best.as_ref().is_none_or(|b| epoch(&reply) > epoch(b)) {
                    best = Some(reply);
                }
            }
            Ok(Err(status)) => {
                errors.push(format!("{} ({}): {}", seed.id, seed.url, status.message()))
            }
            Err(_) => errors.push(format!(
                "{} ({}): no answer within {deadline:?}",
                seed.id, seed.url
            )),
        }
    }
    match best {
        Some(best) => Ok(best),
        None if errors.is_empty() => Err(ClusterCallError::NoSeed),
        None => Err(ClusterCallError::NoAnswer(errors.join("; "))),
    }
}

/// Asks the cluster to remove member `id` (of cluster `cluster_id`, or any when
/// empty) and returns the decided configuration with it leaving. Seeds other than
/// `id` are asked first — their answer does not depend on the leaving node staying
/// up — and the next seed only when one cannot be reached: a node that answers
/// and refuses speaks for the cluster, and its reason is returned as
/// [`ClusterCallError::Refused`].
pub async fn remove_member(
    seeds: &Membership,
    id: &str,
    cluster_id: &str,
) -> Result<RemoveMemberReply, ClusterCallError> {
    let mut order: Vec<_> = seeds.members().iter().filter(|m| m.id != id).collect();
    order.extend(seeds.members().iter().filter(|m| m.id == id));
    let request = RemoveMemberRequest {
        id: id.to_string(),
        cluster_id: cluster_id.to_string(),
    };
    let mut unreachable = Vec::new();
    for seed in order {
        let mut client = client(&seed.url.to_string(), REMOVE_DEADLINE)?;
        match client.remove_member(request.clone()).await {
            Ok(reply) => return Ok(reply.into_inner()),
            Err(status) if is_connect_failure(&status) => {
                unreachable.push(format!("{} ({})", seed.id, seed.url));
            }
            Err(status) => {
                return Err(ClusterCallError::Refused {
                    node: seed.id.clone(),
                    reason: status.message().to_string(),
                })
            }
        }
    }
    if unreachable.is_empty() {
        Err(ClusterCallError::NoSeed)
    } else {
        Err(ClusterCallError::Unreachable(unreachable.join(", ")))
    }
}

/// How long a `Join` call may take: like a removal, a decision of the nodes.
pub const JOIN_DEADLINE: Duration = REMOVE_DEADLINE;

/// Asks the storage nodes at `seeds`, in turn, to admit the node `request`
/// names, and returns the decided configuration that lists it. The next seed is
/// asked only when one cannot be reached: a node that answers and refuses speaks
/// for the cluster ([`ClusterCallError::Refused`]).
pub async fn join(
    seeds: &[String],
    request: JoinRequest,
) -> Result<ClusterConfig, ClusterCallError> {
    let mut unreachable = Vec::new();
    for seed in seeds {
        let mut client = client(seed, JOIN_DEADLINE)?;
        match client.join(request.clone()).await {
            Ok(reply) => {
                let malformed = |why: String| ClusterCallError::Malformed {
                    node: seed.clone(),
                    why,
                };
                let config = reply
                    .into_inner()
                    .config
                    .ok_or_else(|| malformed("it sent no configuration".into()))?;
                let config = config_from_wire(config).map_err(malformed)?;
                if !config.lists(&request.id, &request.url) {
                    return Err(malformed(format!(
                        "its configuration does not list {} at {}",
                        request.id, request.url
                    )));
                }
                return Ok(config);
            }
            Err(status) if is_connect_failure(&status) => unreachable.push(seed.clone()),
            Err(status) => {
                return Err(ClusterCallError::Refused {
                    node: seed.clone(),
                    reason: status.message().to_string(),
                })
            }
        }
    }
    if unreachable.is_empty() {
        Err(ClusterCallError::NoSeed)
    } else {
        Err(ClusterCallError::Unreachable(unreachable.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use dida_core::cluster::derived_cluster_id;
    use dida_proto::convert::config_to_wire;
    use dida_proto::storage::MemberView;

    use super::*;

    #[test]
    fn a_member_on_its_way_out_shows_its_standing_and_the_others_their_liveness() {
        let membership = Membership::parse(
            "s1=http://127.0.0.1:1,s2=http://127.0.0.1:2,s3=http://127.0.0.1:3,s4=http://127.0.0.1:4",
        )
        .unwrap();
        let config = ClusterConfig::initial(derived_cluster_id(&membership), &membership)
            .begin_leave("s4", 3)
            .unwrap();
        let reply = MembersReply {
            id: "s1".into(),
            config: Some(config_to_wire(&config)),
            view: vec![MemberView {
                id: "s2".into(),
                incarnation: 3,
                liveness: WireLiveness::Alive as i32,
            }],
        };
        let view = MembersView::of(&reply).unwrap();
        assert_eq!(view.config.epoch, 1);
        let states: Vec<_> = view.rows.iter().map(|r| (r.id.as_str(), r.state)).collect();
        assert_eq!(
            states,
            [
                ("s1", "unknown"),
                ("s2", "alive"),
                ("s3", "unknown"),
                ("s4", "leaving")
            ]
        );
        assert_eq!(view.rows[1].incarnation, 3);
        assert_eq!(view.standing("s4"), Some(Standing::Leaving));
        assert_eq!(view.standing("s9"), None);
        let empty = MembersView::of(&MembersReply {
            id: "s1".into(),
            config: None,
            view: vec![],
        })
        .unwrap_err();
        assert!(
            empty.to_string().starts_with("s1 sent a malformed"),
            "{empty}"
        );
    }

    #[tokio::test]
    async fn no_seed_at_all_is_said_so() {
        let one = Membership::parse("s1=http://127.0.0.1:1").unwrap();
        let none = members(&one, Some("s1"), MEMBERS_DEADLINE)
            .await
            .unwrap_err();
        assert_eq!(none, ClusterCallError::NoSeed);
    }
}
