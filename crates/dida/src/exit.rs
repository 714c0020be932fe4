//! The exit statuses of `dida`: one per outcome a script can act on, defined once
//! ([`Exit`]) and chosen from the *type* of the error a command failed with, never
//! from its text. The table is documented in the README's CLI reference.
//!
//! | status | outcome |
//! |---|---|
//! | 0 | success |
//! | 1 | any other failure (bad input found after parsing, an internal error) |
//! | 2 | usage error: the command line does not parse (clap's own status), or settings contradict one another or the settings file |
//! | 3 | `dida kv cas`: the value was not the expected one, nothing was swapped |
//! | 4 | `dida kv read`: the key (or that version of it) is missing |
//! | 5 | the cluster (a storage node, the scheduler) could not be reached or did not answer in time |
//! | 6 | the application's execution failed |
//! | 7 | `dida run`, `dida status --wait`: the execution had not finished when `--timeout` ran out (it may still finish) |
//!
//! A command reports such an outcome by returning one of the typed errors of this
//! module (or a [`ClientError`] that says it could not reach the cluster) anywhere
//! in its error's chain; `main` maps it with [`Exit::of`].

use std::process::ExitCode;

use dida_core::Version;
use dida_proto::transport::describe;
use dida_settings::SettingsError;
use dida_storage_client::ClientError;

/// What a `dida` command's exit status tells a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The command did what it was asked.
    Success,
    /// Any failure no other status names.
    Failure,
    /// The command line does not parse (clap exits with this status itself).
    Usage,
    /// `dida kv cas` found another value: nothing was swapped.
    CasNotSwapped,
    /// `dida kv read` found no value for the key (or no such version).
    KeyMissing,
    /// A node the command needed could not be reached or did not answer in time.
    Unreachable,
    /// The execution the command ran or fetched failed.
    ApplicationFailed,
    /// The execution had not finished when the command's `--timeout` ran out: it
    /// may still finish, which a script tells by asking again (`dida status`).
    NotFinished,
}

impl Exit {
    /// The process's exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::CasNotSwapped => 3,
            Exit::KeyMissing => 4,
            Exit::Unreachable => 5,
            Exit::ApplicationFailed => 6,
            Exit::NotFinished => 7,
        }
    }

    /// The status of a command that failed with `error`: the first error in its
    /// chain whose type names an outcome decides.
    pub fn of(error: &anyhow::Error) -> Self {
        error
            .chain()
            .find_map(|cause| {
                if cause.is::<CasNotSwapped>() {
                    Some(Exit::CasNotSwapped)
                } else if cause.is::<KeyMissing>() {
                    Some(Exit::KeyMissing)
                } else if cause.is::<ExecutionFailed>() {
                    Some(Exit::ApplicationFailed)
                } else if cause.is::<NotFinished>() {
                    Some(Exit::NotFinished)
                } else if cause.is::<SettingsError>() || cause.is::<UsageError>() {
                    Some(Exit::Usage)
                } else if let Some(call) = cause.downcast_ref::<CallFailed>() {
                    call.unreachable().then_some(Exit::Unreachable)
                } else if let Some(client) = cause.downcast_ref::<ClientError>() {
                    client.is_unreachable().then_some(Exit::Unreachable)
                } else {
                    None
                }
            })
            .unwrap_or(Exit::Failure)
    }

    /// Whether `main` should report the error on stderr (and as an `error` event):
    /// a CAS that did not swap already printed its result, and is no error.
    pub fn reports_error(self) -> bool {
        self != Exit::CasNotSwapped
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// Settings given outside the command line (a `--config` file) that cannot be
/// used: the same outcome as a command line that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// `dida kv cas` ran, and the key's value was not the expected one.
#[derive(Debug, thiserror::Error)]
#[error("{key}: not updated (its value is not {expected:?})")]
pub struct CasNotSwapped {
    /// The key.
    pub key: String,
    /// The value the caller expected.
    pub expected: String,
}

/// `dida kv read` found no value for the key at the node that answered.
#[derive(Debug, thiserror::Error)]
#[error("{server} holds no {} key {key:?}", match version {
    Some(v) => format!("version {v} of"),
    None => "value for".to_string(),
})]
pub struct KeyMissing {
    /// The node that answered.
    pub server: String,
    /// The key.
    pub key: String,
    /// The version asked for, if one was.
    pub version: Option<Version>,
}

/// The execution ran to its end and failed.
#[derive(Debug, thiserror::Error)]
#[error("execution {id} failed: {error}")]
pub struct ExecutionFailed {
    /// Execution id.
    pub id: String,
    /// Why it failed, as the scheduler reported it.
    pub error: String,
}

/// The execution had not finished when the command stopped waiting for it.
#[derive(Debug, thiserror::Error)]
#[error("execution {id} did not finish within {limit:?}; `dida status {id}` fetches it later")]
pub struct NotFinished {
    /// Execution id.
    pub id: String,
    /// How long the command waited (`--timeout`).
    pub limit: std::time::Duration,
}

/// A gRPC call to a node (the scheduler) failed: `what` the command was doing, and
/// the status it got, kept typed so that [`Exit::of`] tells a node that could not
/// be reached from one that answered with a refusal.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {}", describe(status))]
pub struct CallFailed {
    /// What the command was doing (`cannot list the executions of …`).
    pub what: String,
    /// What the call failed with.
    pub status: tonic::Status,
}

impl CallFailed {
    /// Wraps `status` as the failure of `what`.
    pub fn new(what: impl Into<String>, status: tonic::Status) -> Self {
        Self {
            what: what.into(),
            status,
        }
    }

    /// Whether the node could not be reached or did not answer in time: a status
    /// this process's transport made (it carries the transport's error as its
    /// source), or a passed deadline. A status the node sent back is its answer.
    fn unreachable(&self) -> bool {
        std::error::Error::source(&self.status).is_some()
            || self.status.code() == tonic::Code::DeadlineExceeded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every status (a new variant must be added here, and to the README's table).
    const ALL: [Exit; 8] = [
        Exit::Success,
        Exit::Failure,
        Exit::Usage,
        Exit::CasNotSwapped,
        Exit::KeyMissing,
        Exit::Unreachable,
        Exit::ApplicationFailed,
        Exit::NotFinished,
    ];

    #[test]
    fn each_outcome_has_its_own_status() {
        let mut codes: Vec<u8> = ALL.iter().map(|e| e.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ALL.len());
        assert_eq!(Exit::Usage.code(), 2, "clap's own status");
        assert_eq!(Exit::CasNotSwapped.code(), 3, "kept from before the table");
    }

    #[test]
    fn the_readme_table_lists_every_status() {
        let readme = include_str!("../../../README.md");
        for exit in ALL {
            let row = format!("  | {} | ", exit.code());
            assert!(readme.contains(&row), "README lacks the row of {exit:?}");
        }
    }

    #[test]
    fn errors_map_by_type_wherever_they_sit_in_the_chain() {
        let missing = anyhow::Error::new(KeyMissing {
            server: "s1".into(),
            key: "k".into(),
            version: None,
        });
        assert_eq!(Exit::of(&missing), Exit::KeyMissing);
        let failed = anyhow::Error::new(ExecutionFailed {
            id: "e-1".into(),
            error: "trap".into(),
        })
        .context("while running app.txt");
        assert_eq!(Exit::of(&failed), Exit::ApplicationFailed);
        let waiting = anyhow::Error::new(NotFinished {
            id: "e-2".into(),
            limit: std::time::Duration::from_secs(1),
        });
        assert_eq!(Exit::of(&waiting), Exit::NotFinished);
        let timeout = anyhow::Error::new(ClientError::Timeout {
            node: "s1".into(),
            url: "http://127.0.0.1:1".into(),
            deadline: std::time::Duration::from_secs(1),
        });
        assert_eq!(Exit::of(&timeout), Exit::Unreachable);
        let refused = anyhow::Error::new(ClientError::Rejected {
            node: "s1".into(),
            code: tonic::Code::InvalidArgument,
            message: "bad key".into(),
        });
        assert_eq!(Exit::of(&refused), Exit::Failure);
        // A node's own answer is not unreachability, whatever its words say.
        let answered = anyhow::Error::new(CallFailed::new(
            "cannot list",
            tonic::Status::unavailable("unreachable"),
        ));
        assert_eq!(Exit::of(&answered), Exit::Failure);
        let late = anyhow::Error::new(CallFailed::new(
            "cannot list",
            tonic::Status::deadline_exceeded("late"),
        ));
        assert_eq!(Exit::of(&late), Exit::Unreachable);
        assert_eq!(Exit::of(&anyhow::anyhow!("other")), Exit::Failure);
    }

    #[test]
    fn a_missing_key_says_which_version() {
        let missing = KeyMissing {
            server: "s2".into(),
            key: "k".into(),
            version: Some(Version::new(3, 1)),
        };
        assert_eq!(missing.to_string(), "s2 holds no version 3.1 of key \"k\"");
        let missing = KeyMissing {
            version: None,
            ..missing
        };
        assert_eq!(missing.to_string(), "s2 holds no value for key \"k\"");
    }
}
