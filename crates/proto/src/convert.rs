//! Conversions between wire messages and the core types, in one place so that every
//! role validates incoming records the same way.

use dida_core::limits::{check_key, check_value};
use dida_core::{Record, Version};

use crate::storage as wire;

/// Wire form of a version.
pub fn version_to_wire(version: Version) -> wire::Version {
    wire::Version {
        number: version.number,
        replica: version.replica,
    }
}

/// Core form of a wire version.
pub fn version_from_wire(version: wire::Version) -> Version {
    Version::new(version.number, version.replica)
}

/// Wire form of a record.
pub fn record_to_wire(record: &Record) -> wire::Record {
    wire::Record {
        key: record.key.clone(),
        version: Some(version_to_wire(record.version)),
        value: record.value.clone(),
    }
}

/// Why a wire record was refused.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A record must carry its version.
    #[error("record of key {key:?} has no version")]
    MissingVersion {
        /// The record's key.
        key: String,
    },
    /// The key or value breaks a size limit.
    #[error("record of key {key:?}: {source}")]
    Limit {
        /// The record's key (truncated to 64 bytes for display).
        key: String,
        /// The broken limit.
        source: dida_core::limits::LimitError,
    },
}

/// Core form of a wire record, checked against the size limits.
pub fn record_from_wire(record: wire::Record) -> Result<Record, RecordError> {
    let shown_key = || record.key.chars().take(64).collect::<String>();
    check_key(&record.key)
        .and_then(|()| check_value(&record.value))
        .map_err(|source| RecordError::Limit {
            key: shown_key(),
            source,
        })?;
    let version = record
        .version
        .ok_or_else(|| RecordError::MissingVersion { key: shown_key() })?;
    Ok(Record {
        key: record.key,
        version: version_from_wire(version),
        value: record.value,
    })
}
