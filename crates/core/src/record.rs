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

/// Keys dida keeps for itself (deployed operators, registered applications): users
/// should not write keys with this prefix.
pub const RESERVED_KEY_PREFIX: &str = "_dida/";

/// Longest value shown in full in a text listing for a key of dida's own.
const SHOWN_RESERVED_VALUE_CHARS: usize = 80;

/// `value` as a text listing shows it: in full, except a long value of one of
/// dida's own keys (a chunk of a deployed component is 700 KB of base64), which is
/// summarised by its size. JSON output always carries the whole value.
pub fn shown_value<'a>(key: &str, value: &'a str) -> std::borrow::Cow<'a, str> {
    if key.starts_with(RESERVED_KEY_PREFIX) && value.len() > SHOWN_RESERVED_VALUE_CHARS {
        format!("({} bytes kept by dida)", value.len()).into()
    } else {
        value.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_long_values_of_reserved_keys_are_summarised() {
        let chunk = "A".repeat(700_000);
        assert_eq!(
            shown_value("_dida/blob/abc/0", &chunk),
            "(700000 bytes kept by dida)"
        );
        assert_eq!(shown_value("_dida/operators", "{}"), "{}");
        assert_eq!(shown_value("user-key", &chunk).len(), 700_000);
    }
}
