//! A node's reconfiguration state — its decided configuration and its acceptor —
//! kept in memory and, with `--data-dir`, in the directory's `cluster.json`, written
//! whole (temporary file, sync, rename) before any answer that depends on it leaves
//! the node, as Paxos requires of an acceptor's promises.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use dida_core::ClusterConfig;
use serde::{Deserialize, Serialize};

use super::paxos::{self, Acceptor, Ballot};
use crate::data_dir::create_private;
use crate::error::DurabilityError;

/// The file in a data directory that holds the reconfiguration state.
const FILE_NAME: &str = "cluster.json";

/// The reconfiguration state as written to disk.
#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    decided: ClusterConfig,
    promised: (u64, u32),
    accepted: Option<((u64, u32), ClusterConfig)>,
}

/// One node's decided configuration and acceptor, persisted when it has a data
/// directory.
#[derive(Debug)]
pub(crate) struct ClusterState {
    acceptor: Mutex<Acceptor>,
    file: Option<PathBuf>,
}

impl ClusterState {
    /// The state of a node whose first configuration is `initial`: recovered from
    /// `data_dir` if it holds one of the same cluster and members (the later
    /// epoch of the two then wins), else `initial` with nothing promised.
    pub fn open(initial: ClusterConfig, data_dir: Option<&Path>) -> Result<Self, DurabilityError> {
        let file = data_dir.map(|dir| dir.join(FILE_NAME));
        let mut acceptor = Acceptor::new(initial.clone());
        if let Some(path) = &file {
            if let Some(disk) = read(path)? {
                // A node that joined is given the cluster's configuration again
                // when it restarts (`--join`), which may be later than the one
                // it recorded.
                let admitted_later =
                    disk.decided.epoch < initial.epoch && paxos::extends(&disk.decided, &initial);
                if !admitted_later && !paxos::extends(&initial, &disk.decided) {
                    return Err(DurabilityError::OtherCluster {
                        dir: data_dir.expect("a file has a directory").to_path_buf(),
                        found: format!(
                            "cluster {} with members {}",
                            disk.decided.cluster_id,
                            ids(&disk.decided)
                        ),
                        expected: format!(
                            "cluster {} with members {}",
                            initial.cluster_id,
                            ids(&initial)
                        ),
                    });
                }
                if !admitted_later {
                    acceptor.decided = disk.decided;
                }
                acceptor.promised = ballot(disk.promised);
                acceptor.accepted = disk.accepted.map(|(b, config)| (ballot(b), config));
            }
        }
        Ok(Self {
            acceptor: Mutex::new(acceptor),
            file,
        })
    }

    /// The latest configuration this node knows decided.
    pub fn decided(&self) -> ClusterConfig {
        self.acceptor
            .lock()
            .expect("acceptor lock poisoned")
            .decided
            .clone()
    }

    /// The epoch of [`decided`](Self::decided), without copying the configuration:
    /// every probe and its answer carry it, and a copy costs two strings per member.
    pub fn decided_epoch(&self) -> u64 {
        self.acceptor
            .lock()
            .expect("acceptor lock poisoned")
            .decided
            .epoch
    }

    /// Runs `step` on the acceptor and persists the state if `step` changed it,
    /// before returning `step`'s answer. A failure to persist is an error: the
    /// answer must not leave the node then.
    pub fn step<R>(&self, step: impl FnOnce(&mut Acceptor) -> R) -> Result<R, DurabilityError> {
        let mut acceptor = self.acceptor.lock().expect("acceptor lock poisoned");
        let before = (
            acceptor.decided.epoch,
            acceptor.promised,
            acceptor.accepted.as_ref().map(|(b, _)| *b),
        );
        let answer = step(&mut acceptor);
        let after = (
            acceptor.decided.epoch,
            acceptor.promised,
            acceptor.accepted.as_ref().map(|(b, _)| *b),
        );
        if before != after {
            if let Some(path) = &self.file {
                write(path, &acceptor)?;
            }
        }
        Ok(answer)
    }
}

fn ballot((round, proposer): (u64, u32)) -> Ballot {
    Ballot { round, proposer }
}

fn ids(config: &ClusterConfig) -> String {
    config
        .members
        .iter()
        .map(|m| m.id.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn read(path: &Path) -> Result<Option<OnDisk>, DurabilityError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(cause) => {
            return Err(DurabilityError::Io {
                action: "read",
                path: path.to_path_buf(),
                cause,
            })
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| DurabilityError::Io {
            action: "parse",
            path: path.to_path_buf(),
            cause: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
}

fn write(path: &Path, acceptor: &Acceptor) -> Result<(), DurabilityError> {
    use std::io::Write;
    let disk = OnDisk {
        decided: acceptor.decided.clone(),
        promised: (acceptor.promised.round, acceptor.promised.proposer),
        accepted: acceptor
            .accepted
            .as_ref()
            .map(|(b, config)| ((b.round, b.proposer), config.clone())),
    };
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |cause| DurabilityError::Io {
            action,
            path,
            cause,
        }
    };
    let dir = path.parent().expect("the file is in the data directory");
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let temporary = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(&disk).expect("a configuration serializes");
    let mut file = create_private(&temporary).map_err(io("create", &temporary))?;
    file.write_all(text.as_bytes())
        .map_err(io("write", &temporary))?;
    file.sync_all().map_err(io("sync", &temporary))?;
    std::fs::rename(&temporary, path).map_err(io("rename", path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dida_core::cluster::derived_cluster_id;
    use dida_core::Membership;

    fn first(spec: &str) -> ClusterConfig {
        let membership = Membership::parse(spec).unwrap();
        ClusterConfig::initial(derived_cluster_id(&membership), &membership)
    }

    #[test]
    fn promises_and_decisions_survive_a_restart_and_another_cluster_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let initial = first("s1=http://h:1,s2=http://h:2,s3=http://h:3,s4=http://h:4");
        let next = initial.begin_leave("s4", 3).unwrap();
        let promise = Ballot {
            round: 7,
            proposer: 2,
        };
        {
            let state = ClusterState::open(initial.clone(), Some(dir.path())).unwrap();
            state.step(|a| a.prepare(&initial, promise)).unwrap();
            state.step(|a| a.accept(&initial, promise, &next)).unwrap();
        }
        let state = ClusterState::open(initial.clone(), Some(dir.path())).unwrap();
        let acceptor = state.acceptor.lock().unwrap().clone();
        assert_eq!(acceptor.promised, promise);
        assert_eq!(acceptor.accepted, Some((promise, next.clone())));
        state.step(|a| a.learn(&next)).unwrap();
        drop(state);
        let state = ClusterState::open(initial, Some(dir.path())).unwrap();
        assert_eq!(state.decided(), next);

        let other = first("s1=http://h:1,s2=http://h:9");
        let err = ClusterState::open(other, Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cluster"), "{err}");
    }
}
