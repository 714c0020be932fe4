//! Why a PuppetMaster command failed: one typed error for every command of a
//! script or console line (SPEC §6), so that tests match what went wrong, not its
//! words, and a storage call keeps the client's word on whether it may have been
//! applied. The session prints the message on the line's `error` event.

use std::net::SocketAddr;
use std::time::Duration;

use dida_core::app::AppFileError;
use dida_core::datafile::DataFileError;
use dida_core::membership::NodeUrl;
use dida_core::script::Role;
use dida_proto::transport::describe;
use dida_storage_client::cluster::ClusterCallError;
use dida_storage_client::ClientError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A node line after the setup block ended.
    #[error(
        "the cluster is already running: {role} lines belong to the setup block at the top \
         of the script, before any other command"
    )]
    SetupOver {
        /// The role the line declared.
        role: Role,
    },
    /// A node id declared twice.
    #[error("node id {id:?} is already used by the {role} declared on line {line}")]
    IdTaken {
        /// The id.
        id: String,
        /// The role of the node that has it.
        role: Role,
        /// The line that declared it.
        line: usize,
    },
    /// An address declared twice.
    #[error("{url} is already the address of {id} (line {line})")]
    UrlTaken {
        /// The address.
        url: NodeUrl,
        /// The node that has it.
        id: String,
        /// The line that declared it.
        line: usize,
    },
    /// A second scheduler.
    #[error("there is already a scheduler, {id} (line {line}); a cluster has one")]
    SecondScheduler {
        /// The scheduler declared first.
        id: String,
        /// Its line.
        line: usize,
    },
    /// No PCS can run the node (see `placement`).
    #[error("{0}")]
    Placement(String),
    /// The command needs a node of a role the setup block does not declare.
    #[error("the setup block declares no {0}")]
    Undeclared(&'static str),
    /// No node has that id.
    #[error("unknown node {id:?} (nodes: {known})")]
    UnknownNode {
        /// The id asked for.
        id: String,
        /// The ids there are, comma-separated.
        known: String,
    },
    /// The command applies to storage nodes only.
    #[error(
        "{id} is a {role}; only storage nodes {verb} (SPEC: the scheduler and workers are \
         assumed never to fail)"
    )]
    NotStorage {
        /// The node.
        id: String,
        /// Its role.
        role: Role,
        /// What only storage nodes do (`crash`, `restart`).
        verb: &'static str,
    },
    /// `removeWorker` of a node that is not a worker.
    #[error("{id} is a {role}; removeWorker removes workers")]
    NotWorker {
        /// The node.
        id: String,
        /// Its role.
        role: Role,
    },
    /// `removeStorage` of a node that is not a storage node.
    #[error(
        "{id} is a {role}; removeStorage removes storage nodes (removeWorker removes workers)"
    )]
    NotStorageNode {
        /// The node.
        id: String,
        /// Its role.
        role: Role,
    },
    /// `addStorage` or `removeStorage` with no other storage node of the session
    /// running to ask: the cluster decides every membership change, so there is
    /// no one to decide it (the cluster is not running, or all its nodes crashed).
    #[error(
        "no other storage node of the session is running to ask the cluster to {change} {id} \
         (the cluster decides every membership change; a node that is not running cannot \
         take part)"
    )]
    NoStorageToAsk {
        /// The node to add or remove.
        id: String,
        /// What was to be asked: `admit` or `remove`.
        change: &'static str,
    },
    /// The storage cluster refused `removeStorage`, or could not be asked; nothing
    /// was changed. A refusal carries the cluster's own reason (below the
    /// replication factor, another change in progress, …).
    #[error("cannot remove storage node {id}: {source}")]
    RemoveStorage {
        /// The node to remove.
        id: String,
        /// What the cluster said, or why it could not be asked.
        source: ClusterCallError,
    },
    /// A storage node `addStorage` could not start: the cluster refused to admit
    /// it (the process's last lines carry the cluster's own words: an id ever
    /// used, an address of a member, another change in progress), or its settings
    /// or its PCS refused it. No process of it runs, and the session does not keep
    /// it, so the line may be retried.
    #[error("cannot add storage node {id}: {source:#}")]
    AddStorage {
        /// The node to add.
        id: String,
        /// Why it did not start.
        source: anyhow::Error,
    },
    /// A storage node `addStorage` started (the cluster admitted it) that the
    /// cluster did not list as active in time, or whose process ended first.
    #[error(
        "{id} was admitted but the cluster did not list it as active within {limit:?} \
         ({last}); a node still running is left so: `status` shows its standing"
    )]
    NotActive {
        /// The node.
        id: String,
        /// How long it had.
        limit: Duration,
        /// What the cluster (or its PCS) last said.
        last: String,
    },
    /// A worker started by `addWorker` that the scheduler did not list as alive in
    /// time.
    #[error(
        "{id} was started but the scheduler did not list it as alive within {limit:?} \
         ({last}); it is left running"
    )]
    NotJoined {
        /// The worker.
        id: String,
        /// How long it had.
        limit: Duration,
        /// What the scheduler last said.
        last: String,
    },
    /// `listServer` of a node that holds no records.
    #[error("{id} is a {role}, not a storage node")]
    NotListable {
        /// The node.
        id: String,
        /// Its role.
        role: Role,
    },
    /// The node is not in a state the command applies to.
    #[error("{id} {state}")]
    WrongState {
        /// The node.
        id: String,
        /// Where it stands: `has already crashed`, `is not started yet`, …
        state: &'static str,
    },
    /// The PCS running the node could not do what was asked.
    #[error("{0:#}")]
    Pcs(anyhow::Error),
    /// A restarted node did not answer as alive in time.
    #[error(
        "{id} was restarted but did not answer its status as alive (rejoined) within \
         {limit:?} ({last})"
    )]
    NotRejoined {
        /// The node.
        id: String,
        /// How long it had.
        limit: Duration,
        /// What its last answer (or failure) said.
        last: String,
    },
    /// A storage call failed.
    #[error(transparent)]
    Storage(#[from] ClientError),
    /// `populate` stopped at a write that failed; the records before it are written.
    #[error(
        "record {number} of {total} (key {key:?}) could not be written: {source}; the records \
         before it were written{}",
        if source.may_have_applied() { ", and this one may have been" } else { "" }
    )]
    PopulateStopped {
        /// Its position in the file, from 1.
        number: usize,
        /// How many records the file holds.
        total: usize,
        /// Its key.
        key: String,
        /// Why the write failed.
        source: ClientError,
    },
    /// The data file of `populate` cannot be used.
    #[error(transparent)]
    DataFile(#[from] DataFileError),
    /// The application file of `client` cannot be used.
    #[error(transparent)]
    AppFile(#[from] AppFileError),
    /// A call to the scheduler failed.
    #[error("{what}: {}", describe(status))]
    Scheduler {
        /// What was being done.
        what: String,
        /// What the call failed with.
        status: tonic::Status,
    },
    /// The scheduler's address cannot be used.
    #[error("bad scheduler URL {url}: {message}")]
    SchedulerUrl {
        /// The address.
        url: NodeUrl,
        /// Why.
        message: String,
    },
    /// An execution that did not end in time.
    #[error("execution {id} did not finish within {limit:?}")]
    NotFinished {
        /// Execution id.
        id: String,
        /// How long the client waited.
        limit: Duration,
    },
    /// `debug` after the setup block.
    #[error(
        "debug must come before the setup block ends (workers learn where to report when \
         they start)"
    )]
    DebugTooLate,
    /// The debug sink cannot listen.
    #[error("cannot listen on {addr} for debug reports (is the port already in use?): {source}")]
    DebugListen {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// The debug sink listens where workers cannot reach it.
    #[error(
        "the debug sink listens on {0}: give --debug-url with an address the workers can \
         reach"
    )]
    DebugUnreachable(SocketAddr),
    /// The debug sink could not start.
    #[error("cannot start the debug sink: {0:#}")]
    DebugSink(anyhow::Error),
}

impl CommandError {
    /// Whether the command may have changed the cluster's data although it failed:
    /// a storage write the client could not settle.
    pub fn may_have_applied(&self) -> bool {
        match self {
            CommandError::Storage(error) | CommandError::PopulateStopped { source: error, .. } => {
                error.may_have_applied()
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_populate_cut_short_by_a_timeout_says_the_record_may_be_written() {
        let stopped = CommandError::PopulateStopped {
            number: 3,
            total: 4,
            key: "k".into(),
            source: ClientError::Timeout {
                node: "s1".into(),
                url: "http://127.0.0.1:1".into(),
                deadline: Duration::from_secs(1),
            },
        };
        assert!(stopped.may_have_applied());
        assert!(stopped.to_string().ends_with("and this one may have been"));
        let refused = CommandError::PopulateStopped {
            number: 3,
            total: 4,
            key: "k".into(),
            source: ClientError::Invalid("value too long".into()),
        };
        assert!(!refused.may_have_applied());
        assert!(refused
            .to_string()
            .ends_with("the records before it were written"));
    }
}
