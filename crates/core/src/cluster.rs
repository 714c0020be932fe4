//! The cluster's configuration: which storage nodes are members, where each stands
//! (active, leaving, removed), and the epoch that numbers every change.
//!
//! Liveness ([`crate::liveness`]) says which members are *up*; the configuration
//! says which are *members at all*. Liveness changes on its own (a crash, a
//! restart) and views merge it by incarnation; the configuration changes only on
//! request (`dida storage --join`, `dida cluster remove`), one epoch at a time, each epoch decided by the
//! storage nodes by consensus (the storage crate's `reconfig`). The rules of a
//! change are here, as plain functions, so that every node, the simulator and the
//! command line refuse the same changes with the same words.
//!
//! A member's index never changes: members are listed in the order of the
//! membership the cluster started with, and a removed member stays listed as
//! [`Standing::Removed`], so its id is never reused and every version it stamped
//! keeps naming it.

use std::fmt;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::membership::{check_node_id, Membership, MembershipError, NodeUrl};

/// Where a member stands in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Standing {
    /// Admitted by a join: in the ring once it has caught up and turned alive,
    /// then active once it says so. Until then no other change starts, so that no
    /// two moves of data overlap.
    Joining,
    /// A member: in the ring whenever it is alive.
    Active,
    /// Asked to leave: out of every ring, it hands its records to their replicas
    /// and is then removed.
    Leaving,
    /// Gone for good: its id is never used again.
    Removed,
}

impl Standing {
    /// The lowercase name `dida cluster members` shows.
    pub fn name(self) -> &'static str {
        match self {
            Standing::Joining => "joining",
            Standing::Active => "active",
            Standing::Leaving => "leaving",
            Standing::Removed => "removed",
        }
    }
}

impl fmt::Display for Standing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One member of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMember {
    /// Node id, as in `--peers`.
    pub id: String,
    /// Where the node serves gRPC.
    pub url: String,
    /// Where it stands.
    pub standing: Standing,
}

/// One epoch of the cluster's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// Names the cluster, so that a node or a request of another cluster is told
    /// apart (`--cluster-id`, else derived from the first membership).
    pub cluster_id: String,
    /// Numbers the changes: 0 is the membership the cluster started with, and each
    /// decided change adds one.
    pub epoch: u64,
    /// Every member ever, in the first membership's order, removed ones included.
    pub members: Vec<ClusterMember>,
}

/// Why a configuration change was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// The node named is not a member.
    #[error("{id:?} is not a member of cluster {cluster_id}; members: {known}")]
    UnknownMember {
        /// The id asked for.
        id: String,
        /// The cluster asked.
        cluster_id: String,
        /// The active and leaving members, comma-separated.
        known: String,
    },
    /// The member is already leaving or removed.
    #[error("storage node {id:?} is already {standing}")]
    NotActive {
        /// The member.
        id: String,
        /// Where it stands.
        standing: Standing,
    },
    /// The change would leave fewer active members than the replication factor.
    #[error(
        "removing {id:?} would leave {left} active storage node(s), fewer than the \
         replication factor {replication_factor}: every key needs {replication_factor} \
         distinct nodes"
    )]
    BelowReplicationFactor {
        /// The member asked to leave.
        id: String,
        /// Active members after the change.
        left: usize,
        /// The cluster's replication factor.
        replication_factor: usize,
    },
    /// Another change has not finished: one change at a time, so that no two
    /// moves of data overlap.
    #[error(
        "another membership change is in progress ({id:?} is {standing}, epoch {epoch}): \
         one change at a time; try again once it has finished (`dida cluster members`)"
    )]
    InProgress {
        /// The member whose change is in motion.
        id: String,
        /// Where it stands.
        standing: Standing,
        /// The epoch that started it.
        epoch: u64,
    },
    /// A join named an id a member has, or had: ids are never reused, since
    /// versions a member stamped keep naming it.
    #[error(
        "node id {id:?} is already used in cluster {cluster_id} (its member is {standing}): \
         a joining node needs an id never used in this cluster"
    )]
    IdInUse {
        /// The id asked for.
        id: String,
        /// The cluster asked.
        cluster_id: String,
        /// Where the member with that id stands.
        standing: Standing,
    },
    /// A join named the address of a current member.
    #[error("{url} is the address of member {id:?}: a joining node needs an address of its own")]
    UrlInUse {
        /// The address asked for.
        url: String,
        /// The member serving there.
        id: String,
    },
    /// A join named a malformed id or address.
    #[error("cannot admit the node: {0}")]
    BadMember(#[from] MembershipError),
    /// The configuration already lists the most members it may.
    #[error(
        "the cluster already lists {MAX_MEMBERS} members, removed ones included: no more may join"
    )]
    Full,
    /// The request names another cluster.
    #[error("this is cluster {ours:?}, not {theirs:?}: the request was meant for another cluster")]
    OtherCluster {
        /// This cluster's id.
        ours: String,
        /// The id the request named.
        theirs: String,
    },
}

/// Most members a configuration may list, removed ones included: far above any
/// real cluster, low enough that a forged configuration cannot make a node build
/// a huge ring.
pub const MAX_MEMBERS: usize = 1024;

/// The cluster id a cluster started without `--cluster-id` takes: a digest of its
/// first membership (ids and URLs), so every node of it derives the same id and a
/// cluster started from another list has another.
pub fn derived_cluster_id(membership: &Membership) -> String {
    let listed: Vec<String> = membership
        .members()
        .iter()
        .map(|m| format!("{}={}", m.id, m.url))
        .collect();
    format!("dida-{:016x}", xxh3_64(listed.join(",").as_bytes()))
}

/// Checks a cluster id: the rules of node ids (1 to 64 letters, digits, `-`, `_`,
/// `.`), as it ends up in file names and logs.
pub fn check_cluster_id(id: &str) -> Result<(), MembershipError> {
    check_node_id(id)
}

impl ClusterConfig {
    /// Epoch 0: every member of `membership` active.
    pub fn initial(cluster_id: impl Into<String>, membership: &Membership) -> Self {
        Self {
            cluster_id: cluster_id.into(),
            epoch: 0,
            members: membership
                .members()
                .iter()
                .map(|m| ClusterMember {
                    id: m.id.clone(),
                    url: m.url.to_string(),
                    standing: Standing::Active,
                })
                .collect(),
        }
    }

    /// The standing of member `index` (active for an index past the list, which no
    /// caller should ask).
    pub fn standing(&self, index: usize) -> Standing {
        self.members
            .get(index)
            .map_or(Standing::Active, |m| m.standing)
    }

    /// The membership this configuration lists, in its order (removed members
    /// included, so every index and replica number stays that of the configuration).
    pub fn membership(&self) -> Result<Membership, MembershipError> {
        Membership::in_order(self.members.iter().map(|m| (m.id.clone(), m.url.clone())))
    }

    /// Indices of the members out of every ring by the configuration's say:
    /// leaving or removed.
    pub fn departed(&self) -> impl Iterator<Item = usize> + '_ {
        self.members
            .iter()
            .enumerate()
            .filter(|(_, m)| matches!(m.standing, Standing::Leaving | Standing::Removed))
            .map(|(index, _)| index)
    }

    /// Indices of the members that vote on the next change: the active and the
    /// leaving ones (a leaving member still holds records and answers).
    pub fn voters(&self) -> Vec<usize> {
        self.members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.standing != Standing::Removed)
            .map(|(index, _)| index)
            .collect()
    }

    /// How many voters decide a change: a majority of [`Self::voters`], so that
    /// any two decisions of one epoch share a voter.
    pub fn quorum(&self) -> usize {
        self.voters().len() / 2 + 1
    }

    /// Checks that a request naming cluster `theirs` (empty: unnamed) is meant
    /// for this one.
    pub fn check_cluster(&self, theirs: &str) -> Result<(), ChangeError> {
        if theirs.is_empty() || theirs == self.cluster_id {
            Ok(())
        } else {
            Err(ChangeError::OtherCluster {
                ours: self.cluster_id.clone(),
                theirs: theirs.to_string(),
            })
        }
    }

    /// The next epoch with member `id` leaving, if the rules allow it: `id` is
    /// active, or joining (a join that cannot finish, its node gone, is undone by
    /// removing it), no other change is in motion, and at least
    /// `replication_factor` active members remain.
    pub fn begin_leave(&self, id: &str, replication_factor: usize) -> Result<Self, ChangeError> {
        let index = self.index_of(id)?;
        let standing = self.members[index].standing;
        if !matches!(standing, Standing::Active | Standing::Joining) {
            return Err(ChangeError::NotActive {
                id: id.to_string(),
                standing,
            });
        }
        self.check_no_change_but(Some(index))?;
        let left = self
            .members
            .iter()
            .enumerate()
            .filter(|&(n, m)| n != index && m.standing == Standing::Active)
            .count();
        if left < replication_factor {
            return Err(ChangeError::BelowReplicationFactor {
                id: id.to_string(),
                left,
                replication_factor,
            });
        }
        Ok(self.next_with(index, Standing::Leaving))
    }

    /// The next epoch with node `id` at `url` joining, if the rules allow it: the
    /// id was never used in this cluster, no current member serves at `url`, no
    /// other change is in motion, and the configuration has room. The node is
    /// listed last, so every earlier member keeps its index and replica number.
    pub fn begin_join(&self, id: &str, url: &str) -> Result<Self, ChangeError> {
        check_node_id(id)?;
        let url = NodeUrl::parse(url)?.to_string();
        if let Some(member) = self.members.iter().find(|m| m.id == id) {
            return Err(ChangeError::IdInUse {
                id: id.to_string(),
                cluster_id: self.cluster_id.clone(),
                standing: member.standing,
            });
        }
        if let Some(member) = self
            .members
            .iter()
            .find(|m| m.standing != Standing::Removed && m.url == url)
        {
            return Err(ChangeError::UrlInUse {
                url,
                id: member.id.clone(),
            });
        }
        self.check_no_change_but(None)?;
        if self.members.len() >= MAX_MEMBERS {
            return Err(ChangeError::Full);
        }
        let mut next = self.clone();
        next.epoch += 1;
        next.members.push(ClusterMember {
            id: id.to_string(),
            url,
            standing: Standing::Joining,
        });
        Ok(next)
    }

    /// The next epoch with joining member `id` active (it has caught up and is
    /// in the ring); `None` if it is not joining.
    pub fn finish_join(&self, id: &str) -> Option<Self> {
        let index = self.members.iter().position(|m| m.id == id)?;
        (self.members[index].standing == Standing::Joining)
            .then(|| self.next_with(index, Standing::Active))
    }

    /// Whether member `id` is listed at `url` and not removed: a node asking to
    /// join again as itself (restarted before it learned it was admitted) is told
    /// the configuration rather than refused.
    pub fn lists(&self, id: &str, url: &str) -> bool {
        let Ok(url) = NodeUrl::parse(url) else {
            return false;
        };
        self.members
            .iter()
            .any(|m| m.id == id && m.url == url.to_string() && m.standing != Standing::Removed)
    }

    /// Refuses a change while a member other than `except` is joining or leaving:
    /// one change at a time.
    fn check_no_change_but(&self, except: Option<usize>) -> Result<(), ChangeError> {
        match self.members.iter().enumerate().find(|&(n, m)| {
            Some(n) != except && matches!(m.standing, Standing::Joining | Standing::Leaving)
        }) {
            Some((_, moving)) => Err(ChangeError::InProgress {
                id: moving.id.clone(),
                standing: moving.standing,
                epoch: self.epoch,
            }),
            None => Ok(()),
        }
    }

    /// The next epoch with leaving member `id` removed (it has handed its records
    /// off); `None` if it is not leaving.
    pub fn finish_leave(&self, id: &str) -> Option<Self> {
        let index = self.members.iter().position(|m| m.id == id)?;
        (self.members[index].standing == Standing::Leaving)
            .then(|| self.next_with(index, Standing::Removed))
    }

    fn next_with(&self, index: usize, standing: Standing) -> Self {
        let mut next = self.clone();
        next.epoch += 1;
        next.members[index].standing = standing;
        next
    }

    fn index_of(&self, id: &str) -> Result<usize, ChangeError> {
        self.members
            .iter()
            .position(|m| m.id == id && m.standing != Standing::Removed)
            .ok_or_else(|| ChangeError::UnknownMember {
                id: id.to_string(),
                cluster_id: self.cluster_id.clone(),
                known: self
                    .members
                    .iter()
                    .filter(|m| m.standing != Standing::Removed)
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn five() -> ClusterConfig {
        let membership = Membership::parse(
            "s1=http://127.0.0.1:1,s2=http://127.0.0.1:2,s3=http://127.0.0.1:3,\
             s4=http://127.0.0.1:4,s5=http://127.0.0.1:5",
        )
        .unwrap();
        ClusterConfig::initial(derived_cluster_id(&membership), &membership)
    }

    #[test]
    fn a_leave_takes_two_epochs_and_the_id_is_never_reused() {
        let first = five();
        let leaving = first.begin_leave("s2", 3).expect("allowed");
        assert_eq!(leaving.epoch, 1);
        assert_eq!(leaving.standing(1), Standing::Leaving);
        assert_eq!(leaving.departed().collect::<Vec<_>>(), [1]);
        assert_eq!(leaving.voters().len(), 5, "a leaving member still votes");
        let removed = leaving.finish_leave("s2").expect("it was leaving");
        assert_eq!(removed.epoch, 2);
        assert_eq!(removed.voters().len(), 4);
        assert_eq!(removed.quorum(), 3);
        assert!(removed.finish_leave("s2").is_none());
        let err = removed.begin_leave("s2", 3).unwrap_err().to_string();
        assert!(err.contains("not a member"), "{err}");
    }

    #[test]
    fn bad_changes_are_refused_with_their_reason() {
        let first = five();
        let leaving = first.begin_leave("s1", 3).unwrap();
        let cases = [
            (first.begin_leave("s9", 3), "not a member"),
            (leaving.begin_leave("s1", 3), "already leaving"),
            (leaving.begin_leave("s2", 3), "in progress"),
            (
                first.begin_leave("s1", 5),
                "fewer than the replication factor 5",
            ),
        ];
        for (outcome, expected) in cases {
            let err = outcome.unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
        assert!(first.check_cluster("").is_ok());
        assert!(first.check_cluster(&first.cluster_id).is_ok());
        let err = first.check_cluster("other").unwrap_err().to_string();
        assert!(err.contains("another cluster"), "{err}");
    }

    #[test]
    fn a_join_appends_the_node_and_takes_two_epochs() {
        let first = five();
        let joining = first
            .begin_join("s6", "http://127.0.0.1:6")
            .expect("allowed");
        assert_eq!(joining.epoch, 1);
        assert_eq!(joining.standing(5), Standing::Joining);
        assert_eq!(
            joining.departed().count(),
            0,
            "a joining node enters the ring"
        );
        assert_eq!(joining.voters().len(), 6);
        let membership = joining.membership().expect("valid");
        assert_eq!(membership.get("s6").unwrap().replica, 6);
        assert_eq!(membership.get("s1").unwrap().replica, 1);
        assert!(joining.lists("s6", "http://127.0.0.1:6/"));
        assert!(!joining.lists("s6", "http://127.0.0.1:7"));
        let active = joining.finish_join("s6").expect("it was joining");
        assert_eq!((active.epoch, active.standing(5)), (2, Standing::Active));
        assert!(active.finish_join("s6").is_none());
        // A stuck join is undone by removing the node.
        assert!(joining.begin_leave("s6", 3).is_ok());
    }

    #[test]
    fn bad_joins_are_refused_with_their_reason() {
        let first = five();
        let leaving = first.begin_leave("s1", 3).unwrap();
        let removed = leaving.finish_leave("s1").unwrap();
        let joining = first.begin_join("s6", "http://127.0.0.1:6").unwrap();
        let cases = [
            (first.begin_join("s2", "http://127.0.0.1:9"), "already used"),
            (
                removed.begin_join("s1", "http://127.0.0.1:9"),
                "already used",
            ),
            (
                first.begin_join("s6", "http://127.0.0.1:2"),
                "address of member \"s2\"",
            ),
            (
                leaving.begin_join("s6", "http://127.0.0.1:6"),
                "in progress",
            ),
            (
                joining.begin_join("s7", "http://127.0.0.1:7"),
                "in progress",
            ),
            (joining.begin_leave("s2", 3), "in progress"),
            (first.begin_join("s 6", "http://127.0.0.1:6"), "node id"),
            (first.begin_join("s6", "127.0.0.1:6"), "http://"),
        ];
        for (outcome, expected) in cases {
            let err = outcome.unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
        // The address of a removed member may be taken by a new node.
        let reused = removed
            .begin_join("s6", "http://127.0.0.1:1")
            .expect("allowed");
        assert!(reused.membership().is_ok());
    }

    #[test]
    fn the_derived_id_names_the_first_membership() {
        let a = Membership::parse("s1=http://127.0.0.1:1,s2=http://127.0.0.1:2").unwrap();
        let b = Membership::parse("s2=http://127.0.0.1:2,s1=http://127.0.0.1:1").unwrap();
        let c = Membership::parse("s1=http://127.0.0.1:1,s2=http://127.0.0.1:3").unwrap();
        assert_eq!(derived_cluster_id(&a), derived_cluster_id(&b));
        assert_ne!(derived_cluster_id(&a), derived_cluster_id(&c));
        assert!(check_cluster_id(&derived_cluster_id(&a)).is_ok());
    }
}
