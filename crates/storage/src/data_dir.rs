//! A durable node's data directory: its lock, its identity and its files.
//!
//! The directory holds `LOCK` (held with an exclusive `flock` while a node uses
//! it, so two processes never interleave their logs), `IDENTITY` (the node id and
//! the ring parameters it was created for, so a directory is never served by
//! another node or in another cluster, where its records would sit on the wrong
//! replicas), `snapshot`, the log segments `wal-<number>.log` and `SYNCED` (how
//! far the newest segment is known to be on disk, see the `synced` module).
//!
//! The records are the users' data, so the directory is private to the node's
//! user: dida creates it with mode 0700 and every file in it with mode 0600.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::DurabilityError;

const LOCK: &str = "LOCK";
const IDENTITY: &str = "IDENTITY";
const IDENTITY_TITLE: &str = "dida storage data directory, format 1";
const SNAPSHOT: &str = "snapshot";
const SNAPSHOT_TMP: &str = "snapshot.tmp";
const SYNCED: &str = "SYNCED";
/// The mode of the data directory when dida creates it: its owner's only.
const DIR_MODE: u32 = 0o700;
/// The mode of every file dida creates in the data directory: its owner's only.
const FILE_MODE: u32 = 0o600;

/// Options that create a file readable and writable by the node's user only (the
/// mode applies when the file is created; the caller adds how it is opened).
pub(crate) fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).mode(FILE_MODE);
    options
}

/// Creates (or truncates) the file at `path` for writing, readable by the node's
/// user only, also when it existed with a wider mode (a temporary file left by an
/// older dida): its contents are about to become one of the directory's files.
pub(crate) fn create_private(path: &Path) -> std::io::Result<File> {
    let file = private_file().create(true).truncate(true).open(path)?;
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Who a data directory belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The node id.
    pub node: String,
    /// The members with their replica numbers, the virtual nodes and the
    /// replication factor: what decides which keys the node holds.
    pub cluster: String,
}

/// An open, locked data directory.
#[derive(Debug)]
pub(crate) struct DataDir {
    path: PathBuf,
    /// Held for as long as the directory is open; closing the file releases it.
    _lock: Flock<File>,
}

impl DataDir {
    /// Opens `path` (creating it if missing) for `identity`: fails when another
    /// process holds it, when it was created for another node or cluster, or when
    /// it holds data but no identity. Nothing is written unless the directory is new.
    pub(crate) fn open(path: &Path, identity: &Identity) -> Result<Self, DurabilityError> {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(path)
            .map_err(DurabilityError::io("create data directory", path))?;
        let lock_path = path.join(LOCK);
        let lock_file = private_file()
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(DurabilityError::io("open", &lock_path))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            DurabilityError::InUse {
                dir: path.to_path_buf(),
                lock: lock_path.clone(),
                reason: e.to_string(),
            }
        })?;
        let dir = Self {
            path: path.to_path_buf(),
            _lock: lock,
        };
        dir.check_identity(identity)?;
        Ok(dir)
    }

    fn check_identity(&self, expected: &Identity) -> Result<(), DurabilityError> {
        let path = self.path.join(IDENTITY);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let found = parse_identity(&text).map_err(|reason| DurabilityError::Corrupt {
                    what: "identity file",
                    path: path.clone(),
                    reason,
                })?;
                if found.node != expected.node {
                    return Err(DurabilityError::OtherNode {
                        dir: self.path.clone(),
                        found: found.node,
                        expected: expected.node.clone(),
                    });
                }
                if found.cluster != expected.cluster {
                    return Err(DurabilityError::OtherCluster {
                        dir: self.path.clone(),
                        found: found.cluster,
                        expected: expected.cluster.clone(),
                    });
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.has_data()? {
                    return Err(DurabilityError::NoIdentity {
                        dir: self.path.clone(),
                    });
                }
                let text = format!(
                    "{IDENTITY_TITLE}\nnode {}\ncluster {}\n",
                    expected.node, expected.cluster
                );
                self.write_atomically(IDENTITY, text.as_bytes())
            }
            Err(e) => Err(DurabilityError::io("read", &path)(e)),
        }
    }

    fn has_data(&self) -> Result<bool, DurabilityError> {
        Ok(self.path.join(SNAPSHOT).exists() || !self.segments()?.is_empty())
    }

    /// Writes `name` so that a crash leaves either the old file or the new one:
    /// a temporary file, synced, renamed over it, then the directory synced.
    pub(crate) fn write_atomically(&self, name: &str, bytes: &[u8]) -> Result<(), DurabilityError> {
        let tmp = self.path.join(format!("{name}.tmp"));
        let mut file = create_private(&tmp).map_err(DurabilityError::io("create", &tmp))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(DurabilityError::io("write", &tmp))?;
        self.install(&tmp, name)
    }

    /// Renames `tmp` over `name` and syncs the directory, so the rename survives a
    /// crash of the machine.
    pub(crate) fn install(&self, tmp: &Path, name: &str) -> Result<(), DurabilityError> {
        let target = self.path.join(name);
        fs::rename(tmp, &target).map_err(DurabilityError::io("rename into place", tmp))?;
        self.sync()
    }

    /// Syncs the directory itself: file creations, renames and removals in it.
    pub(crate) fn sync(&self) -> Result<(), DurabilityError> {
        File::open(&self.path)
            .and_then(|dir| dir.sync_all())
            .map_err(DurabilityError::io("sync directory", &self.path))
    }

    /// The directory's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The snapshot's path.
    pub(crate) fn snapshot(&self) -> PathBuf {
        self.path.join(SNAPSHOT)
    }

    /// Where a snapshot is written before [`DataDir::install`] puts it in place,
    /// and the name to install it under.
    pub(crate) fn snapshot_tmp(&self) -> (PathBuf, &'static str) {
        (self.path.join(SNAPSHOT_TMP), SNAPSHOT)
    }

    /// The name of the synced mark's file, for [`DataDir::write_atomically`], and
    /// its path.
    pub(crate) fn synced_mark(&self) -> (&'static str, PathBuf) {
        (SYNCED, self.path.join(SYNCED))
    }

    /// The path of log segment `number`.
    pub(crate) fn segment(&self, number: u64) -> PathBuf {
        self.path.join(format!("wal-{number:020}.log"))
    }

    /// The numbers of the log segments present, in increasing order.
    pub(crate) fn segments(&self) -> Result<Vec<u64>, DurabilityError> {
        let mut numbers = Vec::new();
        let entries = fs::read_dir(&self.path)
            .map_err(DurabilityError::io("list data directory", &self.path))?;
        for entry in entries {
            let entry = entry.map_err(DurabilityError::io("list data directory", &self.path))?;
            let name = entry.file_name();
            let Some(number) = name
                .to_str()
                .and_then(|n| n.strip_prefix("wal-"))
                .and_then(|n| n.strip_suffix(".log"))
            else {
                continue;
            };
            let number = number.parse().map_err(|_| DurabilityError::UnknownFile {
                dir: self.path.clone(),
                name: name.to_string_lossy().into_owned(),
            })?;
            numbers.push(number);
        }
        numbers.sort_unstable();
        Ok(numbers)
    }
}

/// The identity an `IDENTITY` file holds, or what is wrong with it.
fn parse_identity(text: &str) -> Result<Identity, String> {
    let mut lines = text.lines();
    if lines.next() != Some(IDENTITY_TITLE) {
        return Err(format!("it does not start with {IDENTITY_TITLE:?}"));
    }
    let mut field = |name: &str| {
        lines
            .next()
            .and_then(|line| line.strip_prefix(name))
            .and_then(|rest| rest.strip_prefix(' '))
            .map(str::to_string)
            .ok_or_else(|| format!("its {name} line is missing"))
    };
    Ok(Identity {
        node: field("node")?,
        cluster: field("cluster")?,
    })
}
