//! The cluster's registry of deployed operators and applications, kept in the
//! storage cluster itself.
//!
//! Why in storage: a worker that starts after a deploy, or restarts, must find every
//! deployed operator without anyone copying files to it, and the registry must
//! survive the scheduler. The storage cluster is already replicated, gossiped and
//! crash-tolerant, so the registry is a handful of reserved keys (prefix
//! [`RESERVED_PREFIX`]) written through the same [`StorageClient`] as any data:
//!
//! - **Blobs, content-addressed.** An operator's component is stored under its
//!   SHA-256 digest: a manifest `_dida/blob/<digest>` (`{"bytes":N,"chunks":C}`)
//!   and `C` chunks `_dida/blob/<digest>/<i>` of at most [`BLOB_CHUNK_BYTES`] bytes,
//!   base64-encoded (storage values are strings of at most 1 MiB). A blob never
//!   changes once written, so any replica's copy is as good as the primary's, and a
//!   reader checks the digest of what it assembled.
//! - **Indexes, versioned.** `_dida/operators` maps each deployed class name to the
//!   digest it runs now, and `_dida/apps` each application name to its operators;
//!   both are JSON objects changed only by compare-and-swap, so two deploys never
//!   lose each other's entry, and the key's versions are the deploy history.
//!
//! Removing a name drops it from the index; its blob stays (another name, or an
//! execution submitted before the removal, may still use it).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use dida_core::limits::MAX_VALUE_BYTES;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::{ClientError, StorageClient};

/// Keys dida keeps for itself. Users should not write keys with this prefix.
pub use dida_core::record::RESERVED_KEY_PREFIX as RESERVED_PREFIX;

/// The key of the deployed-operator index.
pub const OPERATOR_INDEX_KEY: &str = "_dida/operators";

/// The key of the application index.
pub const APP_INDEX_KEY: &str = "_dida/apps";

/// Raw bytes per blob chunk: base64 makes them 4/3 larger, which keeps a chunk's
/// value well under the storage limit of 1 MiB.
pub const BLOB_CHUNK_BYTES: usize = 512 * 1024;

/// Most names an index holds: an index is one value of at most 1 MiB.
pub const MAX_INDEX_ENTRIES: usize = 1000;

/// Attempts of a compare-and-swap on an index before giving up (each failure means
/// someone else changed it meanwhile).
const INDEX_CAS_ATTEMPTS: usize = 16;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The storage cluster failed the call.
    #[error(transparent)]
    Storage(#[from] ClientError),
    /// What storage holds is not what the registry wrote (a user overwrote a
    /// reserved key, or a blob is incomplete).
    #[error("{0}")]
    Corrupt(String),
    /// The blob is not (yet) in the storage cluster.
    #[error("no blob with digest {0} in the storage cluster")]
    MissingBlob(String),
    /// The change would break a bound, or the index changed too often meanwhile.
    #[error("{0}")]
    Refused(String),
}

/// One deployed operator: what its name runs now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// SHA-256 of the component, lowercase hexadecimal.
    pub digest: String,
    /// Size of the component in bytes.
    pub bytes: u64,
    /// When it was deployed, milliseconds since the Unix epoch.
    pub deployed_unix_ms: u64,
}

/// One application registered through the HTTP gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppEntry {
    /// Operator class names, in chain order.
    pub operators: Vec<String>,
    /// When it was registered, milliseconds since the Unix epoch.
    pub registered_unix_ms: u64,
}

/// An index: name → entry, as stored (a JSON object).
pub type Index<T> = BTreeMap<String, T>;

/// The manifest of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Manifest {
    bytes: u64,
    chunks: u32,
}

/// The SHA-256 digest of `bytes`, lowercase hexadecimal: a blob's name.
pub fn digest_of(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn manifest_key(digest: &str) -> String {
    format!("{RESERVED_PREFIX}blob/{digest}")
}

fn chunk_key(digest: &str, chunk: u32) -> String {
    format!("{RESERVED_PREFIX}blob/{digest}/{chunk}")
}

/// Whether `digest` looks like one [`digest_of`] makes, so that a forged digest
/// never becomes a key.
pub fn check_digest(digest: &str) -> Result<(), String> {
    if digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "invalid operator digest {digest:?}: expected 64 lowercase hexadecimal digits"
        ))
    }
}

/// The registry, over a storage client.
#[derive(Debug, Clone, Copy)]
pub struct Registry<'a> {
    storage: &'a StorageClient,
}

impl<'a> Registry<'a> {
    /// The registry kept in `storage`'s cluster.
    pub fn new(storage: &'a StorageClient) -> Self {
        Self { storage }
    }

    /// Stores `bytes` as a blob (unless it is there already); returns its digest.
    pub async fn put_blob(&self, bytes: &[u8]) -> Result<String, RegistryError> {
        let digest = digest_of(bytes);
        if let Some(manifest) = self.manifest(&digest, Instant::now()).await? {
            if manifest.bytes == bytes.len() as u64 {
                return Ok(digest);
            }
        }
        let chunks: Vec<&[u8]> = bytes.chunks(BLOB_CHUNK_BYTES).collect();
        for (index, chunk) in chunks.iter().enumerate() {
            let encoded = base64::engine::general_purpose::STANDARD.encode(chunk);
            self.storage
                .write(&chunk_key(&digest, index as u32), &encoded)
                .await?;
        }
        // The manifest last: a reader that finds it finds every chunk written.
        let manifest = Manifest {
            bytes: bytes.len() as u64,
            chunks: chunks.len() as u32,
        };
        self.storage
            .write(&manifest_key(&digest), &to_json(&manifest))
            .await?;
        Ok(digest)
    }

    /// The blob `digest`, checked against its digest. A replica may not have
    /// received a chunk yet (gossip delay): each key is read at its primary first,
    /// then at any replica, and a missing piece is retried until `patience` ends.
    pub async fn get_blob(
        &self,
        digest: &str,
        patience: Duration,
    ) -> Result<Vec<u8>, RegistryError> {
        check_digest(digest).map_err(RegistryError::Corrupt)?;
        let deadline = Instant::now() + patience;
        let manifest = self
            .manifest(digest, deadline)
            .await?
            .ok_or_else(|| RegistryError::MissingBlob(digest.to_string()))?;
        let mut bytes = Vec::with_capacity(manifest.bytes as usize);
        for chunk in 0..manifest.chunks {
            let value = self
                .read_until(&chunk_key(digest, chunk), deadline)
                .await?
                .ok_or_else(|| {
                    RegistryError::Corrupt(format!(
                        "blob {digest}: chunk {chunk} of {} is missing",
                        manifest.chunks
                    ))
                })?;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value)
                .map_err(|e| {
                    RegistryError::Corrupt(format!("blob {digest}, chunk {chunk}: {e}"))
                })?;
            bytes.extend_from_slice(&decoded);
        }
        if bytes.len() as u64 != manifest.bytes || digest_of(&bytes) != digest {
            return Err(RegistryError::Corrupt(format!(
                "blob {digest}: what storage holds does not match its digest"
            )));
        }
        Ok(bytes)
    }

    /// The manifest of blob `digest`, waiting for it until `deadline` if it is not
    /// there yet.
    async fn manifest(
        &self,
        digest: &str,
        deadline: Instant,
    ) -> Result<Option<Manifest>, RegistryError> {
        let key = manifest_key(digest);
        self.read_until(&key, deadline)
            .await?
            .map(|value| from_json(&key, &value))
            .transpose()
    }

    /// The newest value of `key` (see [`Self::read_newest`]), read again every 50 ms
    /// while it is missing — a replica may not have received it yet — until
    /// `deadline`; read once if the deadline has passed.
    async fn read_until(
        &self,
        key: &str,
        deadline: Instant,
    ) -> Result<Option<String>, ClientError> {
        loop {
            let value = self.read_newest(key).await?;
            if value.is_some() || Instant::now() >= deadline {
                return Ok(value);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The index at `key` (empty if it was never written) and the exact value it was
    /// read from, for a later compare-and-swap.
    pub async fn index<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<(Index<T>, Option<String>), RegistryError> {
        match self.read_newest(key).await? {
            None => Ok((Index::new(), None)),
            Some(value) => Ok((from_json(key, &value)?, Some(value))),
        }
    }

    /// Changes the index at `key` with `change` (which may refuse), by
    /// compare-and-swap, retrying when someone else changed it meanwhile. Returns the
    /// index as written and what `change` returned.
    pub async fn update_index<T, R>(
        &self,
        key: &str,
        mut change: impl FnMut(&mut Index<T>) -> Result<R, RegistryError>,
    ) -> Result<(Index<T>, R), RegistryError>
    where
        T: Serialize + DeserializeOwned,
    {
        for _ in 0..INDEX_CAS_ATTEMPTS {
            let (mut index, old) = self.index::<T>(key).await?;
            let result = change(&mut index)?;
            if index.len() > MAX_INDEX_ENTRIES {
                return Err(RegistryError::Refused(format!(
                    "{key} would hold {} names; the limit is {MAX_INDEX_ENTRIES}",
                    index.len()
                )));
            }
            let new = to_json(&index);
            if new.len() > MAX_VALUE_BYTES {
                return Err(RegistryError::Refused(format!(
                    "{key} would be {} bytes, over the value limit of {MAX_VALUE_BYTES}",
                    new.len()
                )));
            }
            let swapped = match old {
                // A compare-and-swap needs a value to compare with: the first entry
                // ever is a plain write. The scheduler serialises its own changes,
                // so only two schedulers' first writes could race.
                None => Some(self.storage.write(key, &new).await?),
                Some(old) => self.storage.update_if_value_is(key, &old, &new).await?,
            };
            if swapped.is_some() {
                return Ok((index, result));
            }
        }
        Err(RegistryError::Refused(format!(
            "{key} changed {INDEX_CAS_ATTEMPTS} times while being updated; try again"
        )))
    }

    /// The newest value of `key` at its primary, which executes every write of it,
    /// or at another replica when the primary cannot be reached.
    async fn read_newest(&self, key: &str) -> Result<Option<String>, ClientError> {
        let primary = self.storage.primary(key).to_string();
        let record = match self.storage.read_from(&primary, key, None).await {
            Ok(record) => record,
            Err(_) => self.storage.read(key, None).await?,
        };
        Ok(record.map(|r| r.value))
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("registry entries always serialise")
}

fn from_json<T: DeserializeOwned>(key: &str, value: &str) -> Result<T, RegistryError> {
    serde_json::from_str(value).map_err(|e| {
        RegistryError::Corrupt(format!(
            "{key} does not hold what dida wrote there ({e}); keys starting with \
             {RESERVED_PREFIX} are reserved"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha256_in_lowercase_hex() {
        let digest = digest_of(b"abc");
        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(check_digest(&digest).is_ok());
        assert!(check_digest("ABC").is_err());
        assert!(check_digest(&digest.to_uppercase()).is_err());
        assert!(check_digest(&format!("{digest}/0")).is_err());
    }

    #[test]
    fn a_chunk_fits_in_one_value() {
        let encoded = BLOB_CHUNK_BYTES.div_ceil(3) * 4;
        assert!(encoded < MAX_VALUE_BYTES);
    }
}
