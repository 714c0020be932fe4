//! The unit of storage: `(key, version, value)`.

use serde::{Deserialize, Serialize};

use crate::Version;

/// One version of one key (SPEC §2.1). Keys and values are UTF-8 strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Record {
    /// The key.
    pub key: String,
    /// Which version of the key this is.
    pub version: Version,
    /// The value stored at that version.
    pub value: String,
}
