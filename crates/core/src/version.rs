//! Record versions and their total order (SPEC §2.1).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A record version: `(number, replica)`.
///
/// Versions are totally ordered by `number`, then by `replica` (the field order makes
/// the derived `Ord` do exactly that). A primary that applies a write gives it a number
/// larger than any it knows for the key and its own replica number, so versions of one
/// key never collide even if two nodes ever executed writes of it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Version {
    /// Per-key sequence number, strictly increasing with every write.
    pub number: u64,
    /// The replica number of the node that executed the write (see
    /// [`crate::Membership`] for how nodes are numbered).
    pub replica: u32,
}

impl Version {
    /// Builds a version from its two parts.
    pub const fn new(number: u64, replica: u32) -> Self {
        Self { number, replica }
    }
}

impl fmt::Display for Version {
    /// Formats as `N.R`, the form the `--version` flags accept.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.number, self.replica)
    }
}

/// Why a `N.R` version string could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid version {input:?}: expected NUMBER.REPLICA, for example 3.1")]
pub struct VersionParseError {
    /// The rejected text.
    pub input: String,
}

impl FromStr for Version {
    type Err = VersionParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || VersionParseError {
            input: s.to_string(),
        };
        let (number, replica) = s.split_once('.').ok_or_else(err)?;
        Ok(Self {
            number: number.parse().map_err(|_| err())?,
            replica: replica.parse().map_err(|_| err())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_by_number_then_replica() {
        let mut versions = vec![
            Version::new(2, 1),
            Version::new(1, 3),
            Version::new(2, 0),
            Version::new(1, 1),
            Version::new(10, 0),
        ];
        versions.sort();
        assert_eq!(
            versions,
            vec![
                Version::new(1, 1),
                Version::new(1, 3),
                Version::new(2, 0),
                Version::new(2, 1),
                Version::new(10, 0),
            ]
        );
        assert!(Version::new(1, u32::MAX) < Version::new(2, 0));
    }

    #[test]
    fn version_text_round_trips() {
        let v: Version = "42.3".parse().unwrap();
        assert_eq!(v, Version::new(42, 3));
        assert_eq!(v.to_string(), "42.3");
        for bad in [
            "",
            "1",
            "1.",
            ".1",
            "a.b",
            "1.2.3",
            "-1.2",
            "99999999999999999999.1",
        ] {
            assert!(
                bad.parse::<Version>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
