//! Who may change dida's own keys through the storage API (issue 23).
//!
//! Keys starting with [`RESERVED_KEY_PREFIX`] (`_dida/`) hold the deployed
//! operators and the registered applications (`dida_storage_client::registry`). A
//! client that overwrote `_dida/operators` made every later deploy fail with
//! `DATA_LOSS`, so a write or conditional update of such a key is refused with
//! `PERMISSION_DENIED` unless the call
//!
//! 1. says it means to change dida's keys: it carries [`RESERVED_WRITER_HEADER`],
//!    which only the scheduler's registry client and storage nodes forwarding a
//!    write to a key's primary send (`dida kv`, operators and every other client
//!    never do, even holding the cluster token), and
//! 2. comes from a node that may: with mutual TLS, a certificate of role
//!    `scheduler` or `storage` (the forwarding node); without TLS, the cluster
//!    token — the explicit one or this user's token file, which every process of
//!    the cluster's user holds by default (the header alone is not proof).
//!
//! With `--insecure` nothing is authenticated: the header then only keeps clients
//! from changing the keys by mistake. Reading the keys stays open to every caller, like any data.
//!
//! This sits apart from [`crate::authorize`], which decides by RPC and not by key.

use tonic::Status;

use crate::authorize::Caller;
use crate::security::{self, tokens_match, Role, CLUSTER_TOKEN_HEADER};
pub use dida_core::record::RESERVED_KEY_PREFIX;

/// The gRPC metadata entry by which a call says it means to change dida's own keys;
/// its value names the writer (`scheduler`, `storage`), for the logs.
pub const RESERVED_WRITER_HEADER: &str = "x-dida-reserved-writer";

/// The roles whose certificates may change reserved keys: the scheduler writes them,
/// storage nodes forward its writes to each key's primary.
const WRITERS: [Role; 2] = [Role::Scheduler, Role::Storage];

/// Whether one call (a unary write, or a whole `Calls` stream) may change reserved
/// keys, decided once from its metadata and extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedKeys {
    /// Why the call may not, if it may not.
    refusal: Option<String>,
}

impl ReservedKeys {
    /// What the call `request` may do with reserved keys (see the module
    /// documentation).
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        Self {
            refusal: refusal(request),
        }
    }

    /// Refuses a write or conditional update of `key` when it is reserved and this
    /// call may not change reserved keys.
    pub fn check_write(&self, key: &str) -> Result<(), Status> {
        match &self.refusal {
            Some(reason) if key.starts_with(RESERVED_KEY_PREFIX) => {
                Err(Status::permission_denied(format!(
                    "key {key:?} is reserved: keys starting with {RESERVED_KEY_PREFIX:?} hold \
                     the deployed operators and registered applications, and only the \
                     scheduler changes them (use `dida operator deploy`/`remove`); {reason}"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// Why `request` may not change reserved keys, or `None` when it may.
fn refusal<T>(request: &tonic::Request<T>) -> Option<String> {
    if request.metadata().get(RESERVED_WRITER_HEADER).is_none() {
        return Some("this call is not the scheduler's".to_string());
    }
    let security = security::installed();
    if security.tls.is_some() {
        return match request.extensions().get::<Caller>() {
            Some(Caller { role, .. }) if WRITERS.contains(role) => None,
            Some(Caller { role, name }) => Some(format!(
                "the certificate of {name} is of role {role}, not scheduler"
            )),
            None => Some("the call has no certificate naming a dida role".to_string()),
        };
    }
    if let Some(expected) = security.node_token() {
        let given = request.metadata().get(CLUSTER_TOKEN_HEADER);
        return match given {
            Some(given) if tokens_match(given.as_bytes(), expected.as_bytes()) => None,
            _ => Some("the call does not carry the cluster token".to_string()),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_marked_calls_change_reserved_keys_and_every_call_changes_others() {
        // This test process installs no security: the header alone decides.
        let plain = ReservedKeys::of(&tonic::Request::new(()));
        let error = plain.check_write("_dida/operators").unwrap_err();
        assert_eq!(error.code(), tonic::Code::PermissionDenied);
        assert!(
            error.message().contains("is reserved"),
            "{}",
            error.message()
        );
        assert!(plain.check_write("user/_dida/x").is_ok());
        assert!(plain.check_write("_dida").is_ok());

        let mut marked = tonic::Request::new(());
        marked
            .metadata_mut()
            .insert(RESERVED_WRITER_HEADER, "scheduler".parse().unwrap());
        assert!(ReservedKeys::of(&marked)
            .check_write("_dida/operators")
            .is_ok());
    }
}
