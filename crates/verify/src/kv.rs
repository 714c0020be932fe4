//! The key-value interface the workload drives, implemented once per back-end: the
//! simulator sends through its in-memory network, the real-process suite through
//! `dida_storage_client`.
//!
//! Its error says, typed, whether the call may have taken effect. The history must
//! be honest about that — an operation that may have been applied has to stay in it
//! with an unknown outcome, one that certainly was not must leave it — so each
//! back-end decides it where it knows why the call failed, from the error's kind,
//! never from its text.

use std::future::Future;

use dida_core::Version;

/// Why a key-value call failed, and whether it may have taken effect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The call certainly had no effect: refused before anything was written, the
    /// connection never made, the request invalid.
    #[error("not applied: {0}")]
    NotApplied(String),
    /// The call may have taken effect, now or later: a timeout, a connection lost
    /// mid-call, a write the primary applied but too few replicas acknowledged.
    #[error("may have been applied: {0}")]
    MayHaveApplied(String),
}

/// The three calls the workload makes, as one client of the storage service.
pub trait KeyValue: Send + Sync {
    /// `write(key, value)`: the version created.
    fn write(
        &self,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<Version, KvError>> + Send;

    /// `update_if_value_is(key, old, new)`: the version created, or `None` when the
    /// key did not hold `old` (nothing was written).
    fn cas(
        &self,
        key: &str,
        old: &str,
        new: &str,
    ) -> impl Future<Output = Result<Option<Version>, KvError>> + Send;

    /// `read(key)` from any replica: the value and its version, `None` when the key
    /// has no value there.
    fn read(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<(String, Version)>, KvError>> + Send;
}
