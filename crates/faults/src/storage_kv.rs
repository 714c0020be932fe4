//! The real-process back-end of [`dida_verify::kv::KeyValue`]: calls through
//! `dida_storage_client`, whose errors are mapped to "not applied" or "may have been
//! applied" by their kind.

use dida_core::Version;
use dida_storage_client::{ClientError, StorageClient};
use dida_verify::kv::{KeyValue, KvError};
use tonic::Code;

/// A storage client as the workload's key-value store.
#[derive(Debug)]
pub struct StorageKv(pub StorageClient);

impl KeyValue for StorageKv {
    async fn write(&self, key: &str, value: &str) -> Result<Version, KvError> {
        self.0.write(key, value).await.map_err(|e| kv_error(&e))
    }

    async fn cas(&self, key: &str, old: &str, new: &str) -> Result<Option<Version>, KvError> {
        self.0
            .update_if_value_is(key, old, new)
            .await
            .map_err(|e| kv_error(&e))
    }

    async fn read(&self, key: &str) -> Result<Option<(String, Version)>, KvError> {
        let record = self.0.read(key, None).await.map_err(|e| kv_error(&e))?;
        Ok(record.map(|r| (r.value, r.version)))
    }
}

/// Whether a failed call may have taken effect, from the error's kind alone:
///
/// - an invalid request, a node refusing on membership grounds or not settled, or a
///   node's refusal with `INVALID_ARGUMENT`, `FAILED_PRECONDITION`, `NOT_FOUND` or
///   `ABORTED` (not, or not yet, the key's primary): nothing was written;
/// - a timeout, an unreachable node, a reply that could not be read, or any other
///   refusal (`UNAVAILABLE` is also the primary that applied a write too few
///   replicas acknowledged): it may have been applied.
///
/// An unreachable node counts as "may have been applied" even when the connection
/// was refused: `ClientError::Unreachable` carries only the transport's words, and
/// telling a refused connection from a reset by them is what this replaces. It costs
/// the checkers some unknown outcomes, never a false verdict.
pub fn kv_error(error: &ClientError) -> KvError {
    let text = error.to_string();
    let not_applied = match error {
        ClientError::Invalid(_) | ClientError::Membership(_) | ClientError::NotSettled(_) => true,
        ClientError::Rejected { code, .. } => matches!(
            code,
            Code::InvalidArgument | Code::FailedPrecondition | Code::NotFound | Code::Aborted
        ),
        ClientError::Unreachable { .. }
        | ClientError::Timeout { .. }
        | ClientError::BadReply { .. } => false,
    };
    if not_applied {
        KvError::NotApplied(text)
    } else {
        KvError::MayHaveApplied(text)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn refusals_before_writing_are_not_applied() {
        let invalid = ClientError::Invalid("key too long".into());
        assert!(matches!(kv_error(&invalid), KvError::NotApplied(_)));
        let aborted = ClientError::Rejected {
            node: "s1".into(),
            code: Code::Aborted,
            message: "not the primary".into(),
        };
        assert!(matches!(kv_error(&aborted), KvError::NotApplied(_)));
    }

    #[test]
    fn timeouts_resets_and_unacknowledged_writes_may_have_been_applied() {
        let timeout = ClientError::Timeout {
            node: "s1".into(),
            url: "http://127.0.0.1:1".into(),
            deadline: Duration::from_secs(1),
        };
        assert!(matches!(kv_error(&timeout), KvError::MayHaveApplied(_)));
        let reset = ClientError::Unreachable {
            node: "s1".into(),
            url: "http://127.0.0.1:1".into(),
            message: "connection reset by peer".into(),
        };
        assert!(matches!(kv_error(&reset), KvError::MayHaveApplied(_)));
        let unacknowledged = ClientError::Rejected {
            node: "s1".into(),
            code: Code::Unavailable,
            message: "applied by the primary but not acknowledged".into(),
        };
        assert!(matches!(
            kv_error(&unacknowledged),
            KvError::MayHaveApplied(_)
        ));
    }
}
