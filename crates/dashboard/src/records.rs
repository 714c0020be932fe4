//! The records browser: one key's versions on every storage node that holds it,
//! read from each node directly (`ListRecords`, paged), so a replica that has not
//! received the newest version yet (a gossip delay, a partition) shows as stale.
//!
//! Listing a node reads its whole store, page by page, keeping only the key asked
//! for: a diagnostic for a person at a page, not a query path. Every page arrives
//! within the client's deadline, so a dead node costs one deadline.

use std::collections::HashSet;

use dida_core::limits::check_key;
use dida_core::{Membership, Ring, Version};
use dida_storage_client::{ClientConfig, StorageClient};
use futures::future::join_all;
use serde::Serialize;

use crate::snapshot::Snapshot;
use crate::topology::Topology;
use crate::RPC_DEADLINE;

/// A key on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyView {
    /// The key.
    pub key: String,
    /// Its preference list in the ring the nodes route by: the primary first.
    pub replicas: Vec<String>,
    /// The newest version any node holds (`N.R`), if any does.
    pub newest: Option<String>,
    /// Every storage node, in membership order.
    pub nodes: Vec<HolderView>,
}

/// One node's copy of the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HolderView {
    /// The node.
    pub node: String,
    /// Whether it is one of the key's replicas now.
    pub replica: bool,
    /// Its versions, newest first.
    pub versions: Vec<VersionView>,
    /// It is a replica and lacks the newest version another node holds.
    pub stale: bool,
    /// Why it could not be listed.
    pub error: Option<String>,
}

/// One version of the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionView {
    /// `N.R`.
    pub version: String,
    /// Its value.
    pub value: String,
}

/// Reads `key` from every storage node of `topology`; the ring is the one of the
/// latest snapshot.
pub async fn lookup(
    topology: &Topology,
    snapshot: &Snapshot,
    key: &str,
) -> Result<KeyView, String> {
    check_key(key).map_err(|e| e.to_string())?;
    if topology.storage.is_empty() {
        return Err("this dashboard watches no storage nodes".into());
    }
    let ring = snapshot
        .ring
        .as_ref()
        .ok_or("no storage node answers: the ring is unknown")?;
    let membership =
        Membership::new(topology.storage.iter().cloned()).map_err(|e| e.to_string())?;
    let client = StorageClient::new(
        membership,
        ClientConfig {
            replication_factor: ring.replication_factor as usize,
            vnodes: ring.vnodes,
            deadline: RPC_DEADLINE * 2,
            failover_deadline: RPC_DEADLINE,
        },
    )
    .map_err(|e| e.to_string())?;
    let ids: Vec<String> = topology.storage.iter().map(|(id, _)| id.clone()).collect();
    let excluded: HashSet<&String> = ring.excluded.iter().collect();
    let replicas: Vec<String> =
        Ring::without(&ids, ring.vnodes, ring.replication_factor as usize, |n| {
            excluded.contains(&ids[n])
        })
        .replicas(key)
        .iter()
        .map(|&n| ids[n].clone())
        .collect();
    let listed = join_all(ids.iter().map(|id| {
        let client = &client;
        async move {
            let mut versions: Vec<(Version, String)> = Vec::new();
            let result = client
                .list_pages(id, |page| {
                    versions.extend(
                        page.into_iter()
                            .filter(|r| r.key == key)
                            .map(|r| (r.version, r.value)),
                    )
                })
                .await;
            versions.sort_by_key(|v| std::cmp::Reverse(v.0));
            (versions, result.err().map(|e| e.to_string()))
        }
    }))
    .await;
    let newest = listed
        .iter()
        .filter_map(|(v, _)| v.first().map(|x| x.0))
        .max();
    let nodes = ids
        .iter()
        .zip(listed)
        .map(|(id, (versions, error))| HolderView {
            node: id.clone(),
            replica: replicas.contains(id),
            stale: replicas.contains(id)
                && error.is_none()
                && versions.first().map(|v| v.0) < newest,
            versions: versions
                .into_iter()
                .map(|(version, value)| VersionView {
                    version: version.to_string(),
                    value,
                })
                .collect(),
            error,
        })
        .collect();
    Ok(KeyView {
        key: key.to_string(),
        replicas,
        newest: newest.map(|v| v.to_string()),
        nodes,
    })
}
