//! The storage proxy of one execution: every storage call an operator makes goes
//! through it, and it keeps the guarantees of SPEC §4.
//!
//! The proxy carries the execution's **pins**: the version of every key the execution
//! has read or written. A read of a pinned key (without an explicit version) returns
//! exactly the pinned version: the proxy asks each replica for it and, while gossip is
//! still on its way, retries with backoff until a deadline. When every replica that
//! answers has discarded that version (it holds `max_versions` newer ones), the
//! version can never be read again and the execution stops with an error saying so.
//!
//! The one exception is [`ExecutionStorage::read_latest`], the `read-latest` escape
//! hatch for read-modify-write loops: it asks the key's primary for its newest
//! version, ignoring the pin, and re-pins the key to what it read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dida_core::{Record, Version};
use dida_storage_client::{ClientError, StorageClient};
use tokio::time::Instant;

/// How long and how often the proxy retries a pinned read.
#[derive(Debug, Clone, Copy)]
pub struct ConsistencySettings {
    /// How long a read of a pinned version waits for it to reach a replica.
    pub pinned_read_deadline: Duration,
    /// First pause between two rounds over the replicas (doubles up to 200 ms).
    pub initial_backoff: Duration,
}

impl Default for ConsistencySettings {
    fn default() -> Self {
        Self {
            pinned_read_deadline: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(5),
        }
    }
}

const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// Why a storage call of an operator failed. Operators see the message (the WIT
/// interface carries text); the worker keeps the type, so that whether a write may
/// have been applied survives up to the message the operator and the execution's
/// outcome show.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage client failed; whether the call may have been applied is the
    /// client's word ([`ClientError::may_have_applied`]).
    #[error("{source}{}", if source.may_have_applied() && *writes {
        " (the write may have been applied)"
    } else {
        ""
    })]
    Client {
        /// What the client said.
        #[source]
        source: ClientError,
        /// Whether the call was a write or conditional update.
        writes: bool,
    },
    /// A version this execution read or wrote was garbage-collected on every live
    /// replica: it can never be read consistently again.
    #[error(
        "version {version} of key {key:?}, which this execution read or wrote earlier, was \
         garbage-collected on every live replica (each holds max_versions newer versions); \
         the execution cannot read it consistently"
    )]
    Discarded {
        /// The key.
        key: String,
        /// The pinned version.
        version: Version,
    },
    /// A version this execution read or wrote reached no replica in time.
    #[error(
        "version {version} of key {key:?}, which this execution read or wrote earlier, \
         reached no replica within {deadline:?}{}",
        last_error.as_ref().map_or_else(String::new, |e| format!(" (last error: {e})"))
    )]
    NotArrived {
        /// The key.
        key: String,
        /// The pinned version.
        version: Version,
        /// How long the proxy waited.
        deadline: Duration,
        /// The last error a replica answered with, if any.
        last_error: Option<ClientError>,
    },
}

impl StorageError {
    /// A failed read.
    fn read(source: ClientError) -> Self {
        StorageError::Client {
            source,
            writes: false,
        }
    }

    /// A failed write or conditional update.
    fn write(source: ClientError) -> Self {
        StorageError::Client {
            source,
            writes: true,
        }
    }

    /// Whether the call may have taken effect: only a write or conditional update
    /// the storage client could not settle.
    pub fn may_have_applied(&self) -> bool {
        match self {
            StorageError::Client { source, writes } => *writes && source.may_have_applied(),
            StorageError::Discarded { .. } | StorageError::NotArrived { .. } => false,
        }
    }

    /// Whether the error must fail the execution whatever the operator does with
    /// it: a pinned version that cannot be read consistently.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, StorageError::Client { .. })
    }
}

/// Storage access of one operator invocation, consistent with the whole execution.
#[derive(Debug)]
pub struct ExecutionStorage {
    client: Arc<StorageClient>,
    pins: BTreeMap<String, Version>,
    settings: ConsistencySettings,
    fatal: Option<String>,
    /// Every record this invocation wrote (writes and applied conditional updates),
    /// for the debug sink.
    written: Vec<Record>,
}

impl ExecutionStorage {
    /// A proxy starting from the pins the execution carried so far.
    pub fn new(
        client: Arc<StorageClient>,
        pins: BTreeMap<String, Version>,
        settings: ConsistencySettings,
    ) -> Self {
        Self {
            client,
            pins,
            settings,
            fatal: None,
            written: Vec::new(),
        }
    }

    /// The pins after this invocation, to carry on to the next operator.
    pub fn into_pins(self) -> BTreeMap<String, Version> {
        self.pins
    }

    /// The pins as they stand.
    pub fn pins(&self) -> &BTreeMap<String, Version> {
        &self.pins
    }

    /// The records this invocation wrote, in order.
    pub fn written(&self) -> &[Record] {
        &self.written
    }

    /// An error that must fail the execution whatever the operator does with it.
    pub fn fatal(&self) -> Option<&str> {
        self.fatal.as_deref()
    }

    /// `read(key, version?)` as an operator sees it.
    ///
    /// - explicit `version`: exactly that version from any replica, or none;
    /// - pinned key: exactly the pinned version (see the module docs);
    /// - otherwise: the newest version a replica holds, which is then pinned.
    pub async fn read(
        &mut self,
        key: &str,
        version: Option<Version>,
    ) -> Result<Option<Record>, StorageError> {
        if let Some(version) = version {
            return self.read_exact_once(key, version).await;
        }
        if let Some(&pinned) = self.pins.get(key) {
            return self.read_pinned(key, pinned).await.map(Some);
        }
        let record = self
            .client
            .read(key, None)
            .await
            .map_err(StorageError::read)?;
        if let Some(record) = &record {
            self.pins.insert(key.to_string(), record.version);
        }
        Ok(record)
    }

    /// `read_latest(key)` as an operator sees it: the newest version of `key`, read
    /// at the key's primary (which executes every write of the key, so it holds the
    /// value a compare-and-swap is compared with), whatever the execution pinned.
    /// The key is then re-pinned to the version read, or unpinned when it has none,
    /// so that later reads of the key in this execution return the same thing.
    ///
    /// If the primary cannot be reached, the client's view of crashed nodes is
    /// refreshed and the key's primary in the new view is asked; failing that, the
    /// newest version one replica holds ([`StorageClient::read`]), which may lag
    /// behind the primary: a compare-and-swap made with it may fail again, and the
    /// operator's loop retries.
    pub async fn read_latest(&mut self, key: &str) -> Result<Option<Record>, StorageError> {
        let record = self.read_at_primary(key).await?;
        match &record {
            Some(record) => {
                self.pins.insert(key.to_string(), record.version);
            }
            None => {
                self.pins.remove(key);
            }
        }
        Ok(record)
    }

    /// The newest version of `key` at its primary, else at any replica (see
    /// [`Self::read_latest`]).
    async fn read_at_primary(&self, key: &str) -> Result<Option<Record>, StorageError> {
        let primary = self.client.primary(key).to_string();
        let error = match self.client.read_from(&primary, key, None).await {
            Ok(record) => return Ok(record),
            Err(error @ ClientError::Invalid(_)) => return Err(StorageError::read(error)),
            Err(error) => error,
        };
        tracing::debug!(key, %primary, %error, "read-latest: primary unreachable");
        if self.client.refresh_view().await {
            let new_primary = self.client.primary(key);
            if new_primary != primary {
                if let Ok(record) = self.client.read_from(new_primary, key, None).await {
                    return Ok(record);
                }
            }
        }
        self.client
            .read(key, None)
            .await
            .map_err(StorageError::read)
    }

    /// `write(key, value)`: the new version is pinned.
    pub async fn write(&mut self, key: &str, value: &str) -> Result<Version, StorageError> {
        let version = self
            .client
            .write(key, value)
            .await
            .map_err(StorageError::write)?;
        self.pins.insert(key.to_string(), version);
        self.written.push(Record {
            key: key.to_string(),
            version,
            value: value.to_string(),
        });
        Ok(version)
    }

    /// `update_if_value_is(key, old, new)`: when it applies, the new version is pinned.
    pub async fn update_if_value_is(
        &mut self,
        key: &str,
        old: &str,
        new: &str,
    ) -> Result<Option<Version>, StorageError> {
        let version = self
            .client
            .update_if_value_is(key, old, new)
            .await
            .map_err(StorageError::write)?;
        if let Some(version) = version {
            self.pins.insert(key.to_string(), version);
            self.written.push(Record {
                key: key.to_string(),
                version,
                value: new.to_string(),
            });
        }
        Ok(version)
    }

    async fn read_exact_once(
        &self,
        key: &str,
        version: Version,
    ) -> Result<Option<Record>, StorageError> {
        let mut last_error = None;
        for replica in self.client.replicas(key) {
            match self.client.read_exact(replica, key, version).await {
                Ok(read) if read.record.is_some() => return Ok(read.record),
                Ok(_) => {}
                Err(error) => last_error = Some(error),
            }
        }
        match last_error {
            Some(error) if self.client.replicas(key).len() == 1 => Err(StorageError::read(error)),
            _ => Ok(None),
        }
    }

    /// Reads exactly `version` of a pinned key, waiting for gossip if needed.
    async fn read_pinned(&mut self, key: &str, version: Version) -> Result<Record, StorageError> {
        let deadline = Instant::now() + self.settings.pinned_read_deadline;
        let mut backoff = self.settings.initial_backoff;
        loop {
            let mut answered = 0;
            let mut discarded = 0;
            let mut last_error = None;
            for replica in self.client.replicas(key) {
                match self.client.read_exact(replica, key, version).await {
                    Ok(read) => {
                        if let Some(record) = read.record {
                            return Ok(record);
                        }
                        answered += 1;
                        discarded += usize::from(read.discarded);
                    }
                    Err(error) => last_error = Some(error),
                }
            }
            if answered > 0 && discarded == answered {
                return Err(self.fail(StorageError::Discarded {
                    key: key.to_string(),
                    version,
                }));
            }
            if Instant::now() + backoff > deadline {
                return Err(self.fail(StorageError::NotArrived {
                    key: key.to_string(),
                    version,
                    deadline: self.settings.pinned_read_deadline,
                    last_error,
                }));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Records `error` as the execution's fatal error (see [`Self::fatal`]).
    fn fail(&mut self, error: StorageError) -> StorageError {
        debug_assert!(error.is_fatal());
        self.fatal = Some(error.to_string());
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout() -> ClientError {
        ClientError::Timeout {
            node: "s1".into(),
            url: "http://127.0.0.1:1".into(),
            deadline: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_write_that_timed_out_may_have_been_applied_and_says_so() {
        let error = StorageError::write(timeout());
        assert!(error.may_have_applied());
        assert!(!error.is_fatal());
        assert!(error
            .to_string()
            .ends_with("(the write may have been applied)"));
        // A read applies nothing, whatever the client says.
        assert!(!StorageError::read(timeout()).may_have_applied());
        // A write refused before it was sent was certainly not applied.
        let invalid = StorageError::write(ClientError::Invalid("key too long".into()));
        assert!(!invalid.may_have_applied());
        assert!(!invalid.to_string().contains("may have been applied"));
    }

    #[test]
    fn an_unreadable_pin_is_fatal_and_keeps_its_cause() {
        let late = StorageError::NotArrived {
            key: "k".into(),
            version: Version::new(2, 1),
            deadline: Duration::from_secs(10),
            last_error: Some(timeout()),
        };
        assert!(late.is_fatal());
        assert!(!late.may_have_applied());
        let discarded = StorageError::Discarded {
            key: "k".into(),
            version: Version::new(2, 1),
        };
        assert!(discarded.is_fatal());
    }
}
