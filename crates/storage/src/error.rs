//! The errors the storage crate returns at its boundary: why a node could not be
//! configured, could not use its data directory, or could not start serving.
//!
//! Callers (the `dida` binary, the simulator, tests) match the variants instead of
//! message text; each variant carries what an operator needs to act — the setting,
//! the file, what was found — and its message is whole (an operating system's
//! error included), so a log line of it says everything; only [`StorageError::
//! Serve`] chains a source, the network or TLS layer's error. Requests a running node answers
//! are refused with gRPC statuses instead (their codes tell a client whether
//! anything was applied), not with these.

use std::io;
use std::path::PathBuf;

use dida_core::MembershipError;

/// Why a storage node could not start, or its store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The settings are invalid, alone or together.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory cannot be used: busy, another node's, damaged, or an
    /// I/O call on it failed.
    #[error(transparent)]
    Durability(#[from] DurabilityError),
    /// The node's servers could not be set up, bound or stopped (`what` says which
    /// step; the cause is the network or TLS layer's error).
    #[error("storage node cannot {what}")]
    Serve {
        /// The step that failed, e.g. "bind its URL".
        what: &'static str,
        /// The underlying error.
        #[source]
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StorageError {
    /// A failed step of setting up, binding or stopping the node's servers.
    pub(crate) fn serve(
        what: &'static str,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Serve {
            what,
            cause: cause.into(),
        }
    }
}

/// An invalid storage setting, named by its flag.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The node's id, or an id a setting names, is not in the membership.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// A count that must be at least 1 is 0.
    #[error("{flag} must be at least 1")]
    Zero {
        /// The flag, e.g. `--vnodes`.
        flag: &'static str,
    },
    /// A duration that must be positive is zero.
    #[error("{what} must be positive")]
    NotPositive {
        /// The setting(s), e.g. "the anti-entropy interval".
        what: &'static str,
    },
    /// `--write-acks` is 0 or above the replication factor.
    #[error("{}", dida_core::limits::write_acks_refusal(*write_acks, *replication_factor))]
    WriteAcks {
        /// The value given.
        write_acks: usize,
        /// The replication factor it may not exceed.
        replication_factor: usize,
    },
    /// A member's URL cannot be dialled.
    #[error("bad address for peer {id}: {reason}")]
    PeerAddress {
        /// The member.
        id: String,
        /// What the transport said of its URL.
        reason: String,
    },
    /// `--fsync` names no policy.
    #[error("unknown fsync policy {0:?}: expected always, batch or never")]
    FsyncPolicy(String),
}

/// Why a data directory cannot be used. Every variant but [`DurabilityError::Io`]
/// during a write means nothing in the directory was changed.
#[derive(Debug, thiserror::Error)]
pub enum DurabilityError {
    /// An I/O call on a file of the directory failed.
    #[error("cannot {action} {}: {cause}", path.display())]
    Io {
        /// What was being done, e.g. "read", "sync directory".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        cause: io::Error,
    },
    /// Another process holds the directory's lock.
    #[error(
        "data directory {} is in use by another process (it holds {}): {reason}",
        dir.display(),
        lock.display()
    )]
    InUse {
        /// The directory.
        dir: PathBuf,
        /// Its lock file.
        lock: PathBuf,
        /// What locking said.
        reason: String,
    },
    /// The directory was created for another node.
    #[error(
        "data directory {} belongs to node {found}, not {expected}; nothing was changed",
        dir.display()
    )]
    OtherNode {
        /// The directory.
        dir: PathBuf,
        /// The node its identity names.
        found: String,
        /// The node opening it.
        expected: String,
    },
    /// The directory was created for another cluster (other members, vnodes or
    /// replication factor): its records would sit on the wrong replicas.
    #[error(
        "data directory {} was created for another cluster ({found}), not this one \
         ({expected}): its records would sit on the wrong replicas; nothing was changed",
        dir.display()
    )]
    OtherCluster {
        /// The directory.
        dir: PathBuf,
        /// The cluster its identity names.
        found: String,
        /// The cluster opening it.
        expected: String,
    },
    /// The directory holds data but no identity file: whose data it is is unknown.
    #[error(
        "data directory {} holds a log or snapshot but no IDENTITY file: refusing to guess \
         whose data it is; nothing was changed",
        dir.display()
    )]
    NoIdentity {
        /// The directory.
        dir: PathBuf,
    },
    /// The directory holds a file named like a log segment that this node does
    /// not write.
    #[error(
        "data directory {} holds {name:?}, not a log segment name this node writes",
        dir.display()
    )]
    UnknownFile {
        /// The directory.
        dir: PathBuf,
        /// The file's name.
        name: String,
    },
    /// A file of the directory is not what this node writes, or is damaged (not
    /// merely cut short by a crash).
    #[error("{what} {} is corrupt: {reason}", path.display())]
    Corrupt {
        /// Which file: "log segment", "snapshot", "synced mark", "identity file".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong, where.
        reason: String,
    },
    /// A log segment the synced mark says was on disk is gone.
    #[error("log segment {} is missing, but its first {synced} bytes were synced", path.display())]
    MissingSegment {
        /// The segment's path.
        path: PathBuf,
        /// How many of its bytes were synced.
        synced: u64,
    },
    /// Recovery refused the directory, for `cause`; nothing in it was changed.
    #[error(
        "cannot recover data directory {dir}; nothing was changed. To replace what it \
         held, move the directory aside (keep it to inspect) and start the node again \
         on an empty --data-dir: it rejoins and its replicas refill it \
         (docs/durability.md, \"A damaged data directory\"). The damage: {cause}",
        dir = dir.display()
    )]
    Unrecoverable {
        /// The directory.
        dir: PathBuf,
        /// What recovery found.
        cause: Box<DurabilityError>,
    },
    /// The log's background thread (group commit, compaction) could not start.
    #[error("cannot start the log's background thread: {0}")]
    Thread(io::Error),
}

impl DurabilityError {
    /// A failed I/O call, `action` on `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |cause| Self::Io {
            action,
            path,
            cause,
        }
    }
}
