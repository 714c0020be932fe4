//! Conversions between wire messages and the core types, in one place so that every
//! role validates incoming records the same way.

use dida_core::cluster::{check_cluster_id, ClusterMember};
use dida_core::limits::{check_key, check_value};
use dida_core::membership::{check_node_id, NodeUrl};
use dida_core::{
    ClusterConfig, Liveness, MemberState, MemberStates, Membership, Record, Standing, Version,
};

use crate::storage as wire;

/// Wire form of a version.
pub fn version_to_wire(version: Version) -> wire::Version {
    wire::Version {
        number: version.number,
        replica: version.replica,
    }
}

/// Core form of a wire version.
pub fn version_from_wire(version: wire::Version) -> Version {
    Version::new(version.number, version.replica)
}

/// Wire form of a record.
pub fn record_to_wire(record: &Record) -> wire::Record {
    wire::Record {
        key: record.key.clone(),
        version: Some(version_to_wire(record.version)),
        value: record.value.clone(),
    }
}

/// Why a wire record was refused.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A record must carry its version.
    #[error("record of key {key:?} has no version")]
    MissingVersion {
        /// The record's key.
        key: String,
    },
    /// The key or value breaks a size limit.
    #[error("record of key {key:?}: {source}")]
    Limit {
        /// The record's key (truncated to 64 bytes for display).
        key: String,
        /// The broken limit.
        source: dida_core::limits::LimitError,
    },
}

/// Core form of a wire record, checked against the size limits.
pub fn record_from_wire(record: wire::Record) -> Result<Record, RecordError> {
    let shown_key = || record.key.chars().take(64).collect::<String>();
    check_key(&record.key)
        .and_then(|()| check_value(&record.value))
        .map_err(|source| RecordError::Limit {
            key: shown_key(),
            source,
        })?;
    let version = record
        .version
        .ok_or_else(|| RecordError::MissingVersion { key: shown_key() })?;
    Ok(Record {
        key: record.key,
        version: version_from_wire(version),
        value: record.value,
    })
}

/// A liveness on the wire.
pub fn liveness_to_wire(liveness: Liveness) -> wire::Liveness {
    match liveness {
        Liveness::Joining => wire::Liveness::Joining,
        Liveness::Alive => wire::Liveness::Alive,
        Liveness::Failed => wire::Liveness::Failed,
    }
}

/// A liveness from the wire.
pub fn liveness_from_wire(liveness: wire::Liveness) -> Liveness {
    match liveness {
        wire::Liveness::Joining => Liveness::Joining,
        wire::Liveness::Alive => Liveness::Alive,
        wire::Liveness::Failed => Liveness::Failed,
    }
}

/// A standing on the wire.
pub fn standing_to_wire(standing: Standing) -> wire::Standing {
    match standing {
        Standing::Joining => wire::Standing::Admitted,
        Standing::Active => wire::Standing::Active,
        Standing::Leaving => wire::Standing::Leaving,
        Standing::Removed => wire::Standing::Removed,
    }
}

/// A cluster configuration on the wire.
pub fn config_to_wire(config: &ClusterConfig) -> wire::ClusterConfig {
    wire::ClusterConfig {
        cluster_id: config.cluster_id.clone(),
        epoch: config.epoch,
        members: config
            .members
            .iter()
            .map(|m| wire::ClusterMember {
                id: m.id.clone(),
                url: m.url.clone(),
                standing: standing_to_wire(m.standing) as i32,
            })
            .collect(),
    }
}

/// Most members a configuration on the wire may list: far above any real cluster,
/// low enough that a forged one cannot make a node build a huge ring.
pub const MAX_CONFIG_MEMBERS: usize = dida_core::cluster::MAX_MEMBERS;

/// A cluster configuration from the wire, checked whole: a valid cluster id, 1 to
/// [`MAX_CONFIG_MEMBERS`] members with valid, distinct ids and URLs and known
/// standings. Why it was refused otherwise.
pub fn config_from_wire(config: wire::ClusterConfig) -> Result<ClusterConfig, String> {
    check_cluster_id(&config.cluster_id).map_err(|e| format!("cluster id: {e}"))?;
    if config.members.is_empty() || config.members.len() > MAX_CONFIG_MEMBERS {
        return Err(format!(
            "a configuration lists 1 to {MAX_CONFIG_MEMBERS} members, not {}",
            config.members.len()
        ));
    }
    let mut members: Vec<ClusterMember> = Vec::with_capacity(config.members.len());
    for member in config.members {
        check_node_id(&member.id).map_err(|e| e.to_string())?;
        let url = NodeUrl::parse(&member.url).map_err(|e| e.to_string())?;
        let standing = match wire::Standing::try_from(member.standing) {
            Ok(wire::Standing::Admitted) => Standing::Joining,
            Ok(wire::Standing::Active) => Standing::Active,
            Ok(wire::Standing::Leaving) => Standing::Leaving,
            Ok(wire::Standing::Removed) => Standing::Removed,
            Err(_) => {
                return Err(format!(
                    "unknown standing {} of {}",
                    member.standing, member.id
                ))
            }
        };
        if members.iter().any(|m| m.id == member.id) {
            return Err(format!("member {:?} is listed twice", member.id));
        }
        members.push(ClusterMember {
            id: member.id,
            url: url.to_string(),
            standing,
        });
    }
    Ok(ClusterConfig {
        cluster_id: config.cluster_id,
        epoch: config.epoch,
        members,
    })
}

/// Every member's state on the wire, named by id.
pub fn view_to_wire<'a>(
    ids: impl IntoIterator<Item = &'a str>,
    states: &MemberStates,
) -> Vec<wire::MemberView> {
    ids.into_iter()
        .zip(states.iter())
        .map(|(id, state)| wire::MemberView {
            id: id.to_string(),
            incarnation: state.incarnation,
            liveness: liveness_to_wire(state.liveness) as i32,
        })
        .collect()
}

/// The member states named in `view`, by membership index. Entries for ids outside
/// `membership` or with an unknown liveness are skipped: a view is advice merged
/// into the receiver's, never trusted wholesale.
pub fn view_from_wire(
    membership: &Membership,
    view: &[wire::MemberView],
) -> Vec<(usize, MemberState)> {
    view.iter()
        .filter_map(|member| {
            let index = membership.index_of(&member.id).ok()?;
            let liveness = wire::Liveness::try_from(member.liveness).ok()?;
            Some((
                index,
                MemberState {
                    incarnation: member.incarnation,
                    liveness: liveness_from_wire(liveness),
                },
            ))
        })
        .collect()
}

/// How a storage node's `Status` reads to a person: `fenced` (declared failed, it
/// serves nothing while it starts over), `joining` (catching up after a start, it
/// forwards) or `alive`. `dida kv status` and the PuppetMaster's `status` both show
/// it.
pub fn storage_state(status: &wire::StatusReply) -> &'static str {
    if status.fenced {
        return "fenced";
    }
    match wire::Liveness::try_from(status.liveness) {
        Ok(liveness) => liveness_from_wire(liveness).name(),
        Err(_) => "alive",
    }
}

/// A storage node's view as `id=liveness@incarnation` for every member, for status
/// displays.
pub fn view_summary(view: &[wire::MemberView]) -> Vec<String> {
    view.iter()
        .map(|member| {
            let liveness = wire::Liveness::try_from(member.liveness)
                .map(|l| liveness_from_wire(l).name())
                .unwrap_or("unknown");
            format!("{}={liveness}@{}", member.id, member.incarnation)
        })
        .collect()
}
