//! Size limits for everything that crosses the wire.
//!
//! The limits exist so that a buggy or hostile client gets a clear error instead of
//! making a node allocate without bound. They are deliberately generous for the
//! platform's use (small keys, values up to a megabyte).

/// Largest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// Largest value, in bytes of UTF-8.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// Why a key or value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    /// Keys must have at least one character.
    #[error("the key is empty")]
    EmptyKey,
    /// The key is longer than [`MAX_KEY_BYTES`].
    #[error("the key is {len} bytes long; the limit is {MAX_KEY_BYTES}")]
    KeyTooLong {
        /// Actual length in bytes.
        len: usize,
    },
    /// The value is longer than [`MAX_VALUE_BYTES`].
    #[error("the value is {len} bytes long; the limit is {MAX_VALUE_BYTES}")]
    ValueTooLong {
        /// Actual length in bytes.
        len: usize,
    },
}

/// Checks a key against the limits.
pub fn check_key(key: &str) -> Result<(), LimitError> {
    if key.is_empty() {
        return Err(LimitError::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(LimitError::KeyTooLong { len: key.len() });
    }
    Ok(())
}

/// Checks a value against the limits.
pub fn check_value(value: &str) -> Result<(), LimitError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(LimitError::ValueTooLong { len: value.len() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_enforced_at_their_boundaries() {
        assert_eq!(check_key(""), Err(LimitError::EmptyKey));
        assert!(check_key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        assert_eq!(
            check_key(&"k".repeat(MAX_KEY_BYTES + 1)),
            Err(LimitError::KeyTooLong {
                len: MAX_KEY_BYTES + 1
            })
        );
        assert!(check_value("").is_ok());
        assert!(check_value(&"v".repeat(MAX_VALUE_BYTES)).is_ok());
        assert!(check_value(&"v".repeat(MAX_VALUE_BYTES + 1)).is_err());
    }
}
