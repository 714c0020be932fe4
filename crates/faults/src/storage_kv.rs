//! The real-process back-end of [`dida_verify::kv::KeyValue`]: calls through
//! `dida_storage_client`, whose errors are mapped to "not applied" or "may have been
//! applied" by their kind.

use dida_core::Version;
use dida_storage_client::{ClientError, StorageClient};
use dida_verify::kv::{KeyValue, KvError};

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

/// Whether a failed call may have taken effect, as the storage client's error
/// says by its type ([`ClientError::may_have_applied`], the one place that
/// decides it for every caller): a refused connection or a refusal before
/// executing is "not applied", a timeout, a broken call or `UNAVAILABLE` "may have
/// been applied".
pub fn kv_error(error: &ClientError) -> KvError {
    let text = error.to_string();
    if error.may_have_applied() {
        KvError::MayHaveApplied(text)
    } else {
        KvError::NotApplied(text)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use dida_storage_client::Transport;
    use tonic::Code;

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
        let refused = ClientError::Unreachable {
            node: "s1".into(),
            url: "http://127.0.0.1:1".into(),
            cause: Transport::Refused,
            message: "connection refused".into(),
        };
        assert!(matches!(kv_error(&refused), KvError::NotApplied(_)));
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
            cause: Transport::Broken,
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
