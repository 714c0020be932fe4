//! Which nodes a dashboard watches. A standalone dashboard is given the storage
//! nodes and the scheduler once (`dida dashboard --storage … --scheduler …`) and
//! learns the workers from the scheduler; a PuppetMaster publishes its session's
//! nodes after every line, with what it did to their processes (a node it crashed
//! is known to be down even before its peers declare it).

use serde::Serialize;

/// The nodes to watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    /// Every storage node of the cluster, `(id, url)`, in membership order (the
    /// order the ring is built in).
    pub storage: Vec<(String, String)>,
    /// The scheduler's URL, if there is one.
    pub scheduler: Option<String>,
    /// What a PuppetMaster knows of every node it declared; empty for a standalone
    /// dashboard.
    pub known: Vec<KnownNode>,
}

/// One node as the PuppetMaster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnownNode {
    /// Its id.
    pub id: String,
    /// `storage`, `worker` or `scheduler`.
    pub role: String,
    /// Where it serves.
    pub url: String,
    /// Its process as the PuppetMaster last left it: `declared`, `running`,
    /// `crashed`, `stopped`, `failed to start` or `leaving` (a worker asked to
    /// leave) — or `exited: <how>` when its PCS says it ended without the
    /// PuppetMaster's doing, `left: <how>` when a leaving worker's process ended.
    pub process: String,
    /// Where it serves its metrics, if it does.
    pub metrics: Option<String>,
}

impl Topology {
    /// A fixed topology from `--storage ID=URL,…` and `--scheduler URL`.
    pub fn fixed(storage: Vec<(String, String)>, scheduler: Option<String>) -> Self {
        Self {
            storage,
            scheduler,
            known: Vec::new(),
        }
    }

    /// What the PuppetMaster knows of node `id`.
    pub fn known(&self, id: &str) -> Option<&KnownNode> {
        self.known.iter().find(|n| n.id == id)
    }
}
