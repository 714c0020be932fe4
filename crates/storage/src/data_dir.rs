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

use anyhow::{bail, Context};
use nix::fcntl::{Flock, FlockArg};

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
    pub(crate) fn open(path: &Path, identity: &Identity) -> anyhow::Result<Self> {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(path)
            .with_context(|| format!("cannot create data directory {}", path.display()))?;
        let lock_path = path.join(LOCK);
        let lock_file = private_file()
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            anyhow::anyhow!(
                "data directory {} is in use by another process (it holds {}): {e}",
                path.display(),
                lock_path.display()
            )
        })?;
        let dir = Self {
            path: path.to_path_buf(),
            _lock: lock,
        };
        dir.check_identity(identity)?;
        Ok(dir)
    }

    fn check_identity(&self, expected: &Identity) -> anyhow::Result<()> {
        let path = self.path.join(IDENTITY);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let found = parse_identity(&text)
                    .with_context(|| format!("{} is corrupt", path.display()))?;
                if found.node != expected.node {
                    bail!(
                        "data directory {} belongs to node {}, not {}; nothing was changed",
                        self.path.display(),
                        found.node,
                        expected.node
                    );
                }
                if found.cluster != expected.cluster {
                    bail!(
                        "data directory {} was created for another cluster ({}), not this \
                         one ({}): its records would sit on the wrong replicas; nothing was \
                         changed",
                        self.path.display(),
                        found.cluster,
                        expected.cluster
                    );
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.has_data()? {
                    bail!(
                        "data directory {} holds a log or snapshot but no {IDENTITY} file: \
                         refusing to guess whose data it is; nothing was changed",
                        self.path.display()
                    );
                }
                let text = format!(
                    "{IDENTITY_TITLE}\nnode {}\ncluster {}\n",
                    expected.node, expected.cluster
                );
                self.write_atomically(IDENTITY, text.as_bytes())
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    fn has_data(&self) -> anyhow::Result<bool> {
        Ok(self.path.join(SNAPSHOT).exists() || !self.segments()?.is_empty())
    }

    /// Writes `name` so that a crash leaves either the old file or the new one:
    /// a temporary file, synced, renamed over it, then the directory synced.
    pub(crate) fn write_atomically(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let tmp = self.path.join(format!("{name}.tmp"));
        let mut file =
            create_private(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        self.install(&tmp, name)
    }

    /// Renames `tmp` over `name` and syncs the directory, so the rename survives a
    /// crash of the machine.
    pub(crate) fn install(&self, tmp: &Path, name: &str) -> anyhow::Result<()> {
        let target = self.path.join(name);
        fs::rename(tmp, &target)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), target.display()))?;
        self.sync()
    }

    /// Syncs the directory itself: file creations, renames and removals in it.
    pub(crate) fn sync(&self) -> anyhow::Result<()> {
        File::open(&self.path)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("cannot sync directory {}", self.path.display()))
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
    pub(crate) fn segments(&self) -> anyhow::Result<Vec<u64>> {
        let mut numbers = Vec::new();
        let entries = fs::read_dir(&self.path)
            .with_context(|| format!("cannot list data directory {}", self.path.display()))?;
        for entry in entries {
            let entry = entry
                .with_context(|| format!("cannot list data directory {}", self.path.display()))?;
            let name = entry.file_name();
            let Some(number) = name
                .to_str()
                .and_then(|n| n.strip_prefix("wal-"))
                .and_then(|n| n.strip_suffix(".log"))
            else {
                continue;
            };
            let number = number.parse().with_context(|| {
                format!(
                    "data directory {} holds {name:?}, not a log segment name this node writes",
                    self.path.display()
                )
            })?;
            numbers.push(number);
        }
        numbers.sort_unstable();
        Ok(numbers)
    }
}

fn parse_identity(text: &str) -> anyhow::Result<Identity> {
    let mut lines = text.lines();
    if lines.next() != Some(IDENTITY_TITLE) {
        bail!("it does not start with {IDENTITY_TITLE:?}");
    }
    let mut field = |name: &str| {
        lines
            .next()
            .and_then(|line| line.strip_prefix(name))
            .and_then(|rest| rest.strip_prefix(' '))
            .map(str::to_string)
            .with_context(|| format!("its {name} line is missing"))
    };
    Ok(Identity {
        node: field("node")?,
        cluster: field("cluster")?,
    })
}
