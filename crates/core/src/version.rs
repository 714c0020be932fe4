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
    /// The number of a key's first version: a write of a key with no version gets
    /// it, so no stored version has number 0 (version `0.0` means "none").
    pub const FIRST_NUMBER: u64 = 1;

    /// The highest number a version may have: 2^62.
    ///
    /// Numbers grow by one per write of a key, so a cluster writing one key a
    /// billion times a second would reach it after about 146 years: no honest
    /// history comes near it. Bounding numbers well below `u64::MAX` is what lets
    /// every node refuse a version that cannot be followed — a peer pushing
    /// `u64::MAX` would otherwise make the primary's next write wrap to 0, below
    /// every version the replicas hold, so they would diverge for good and a
    /// conditional update would report success while the newest value stayed the
    /// same. A write of a key whose newest version is at the bound fails
    /// ([`Version::after`]); a peer's record above it is refused.
    pub const MAX_NUMBER: u64 = 1 << 62;

    /// Builds a version from its two parts.
    pub const fn new(number: u64, replica: u32) -> Self {
        Self { number, replica }
    }

    /// The version a primary stamped `replica` gives the next write of a key whose
    /// newest version is `newest` (`None`: the key has none): one number higher,
    /// never wrapping. Fails when `newest` is at [`Version::MAX_NUMBER`] (or beyond,
    /// which only a store that took in an unchecked record could hold): the key
    /// cannot take another version, and saying so beats creating one that sorts
    /// below the versions it should follow.
    pub fn after(newest: Option<Version>, replica: u32) -> Result<Version, VersionError> {
        let number = match newest {
            None => Self::FIRST_NUMBER,
            Some(newest) => newest
                .number
                .checked_add(1)
                .filter(|&n| n <= Self::MAX_NUMBER)
                .ok_or(VersionError::Exhausted { newest })?,
        };
        Ok(Self::new(number, replica))
    }

    /// Checks that this version's number is one a write can have created and a
    /// later write can still follow: from [`Version::FIRST_NUMBER`] to
    /// [`Version::MAX_NUMBER`]. Whether its replica number names a member is for
    /// the caller, who knows the membership.
    pub fn check_number(self) -> Result<(), VersionError> {
        if self.number < Self::FIRST_NUMBER {
            return Err(VersionError::NoNumber { version: self });
        }
        if self.number > Self::MAX_NUMBER {
            return Err(VersionError::TooLarge { version: self });
        }
        Ok(())
    }
}

/// Why a version cannot be created or accepted.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum VersionError {
    /// The key's newest version is at [`Version::MAX_NUMBER`]: no write can follow it.
    #[error(
        "the newest version of the key, {newest}, is at the highest version number \
         allowed ({max}); no later version can be created",
        max = Version::MAX_NUMBER
    )]
    Exhausted {
        /// The key's newest version.
        newest: Version,
    },
    /// Number 0: no write creates it (it stands for "no version").
    #[error("version {version} has number 0, which no write creates")]
    NoNumber {
        /// The refused version.
        version: Version,
    },
    /// A number above [`Version::MAX_NUMBER`], which no write could follow.
    #[error(
        "version {version} has a number above the highest allowed ({max}): no later \
         write could follow it",
        max = Version::MAX_NUMBER
    )]
    TooLarge {
        /// The refused version.
        version: Version,
    },
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
    fn the_next_version_never_wraps_and_stops_at_the_bound() {
        assert_eq!(Version::after(None, 3), Ok(Version::new(1, 3)));
        assert_eq!(
            Version::after(Some(Version::new(41, 1)), 3),
            Ok(Version::new(42, 3))
        );
        let last = Version::new(Version::MAX_NUMBER - 1, 1);
        assert_eq!(
            Version::after(Some(last), 2),
            Ok(Version::new(Version::MAX_NUMBER, 2))
        );
        for newest in [Version::MAX_NUMBER, Version::MAX_NUMBER + 1, u64::MAX] {
            let newest = Version::new(newest, 1);
            assert_eq!(
                Version::after(Some(newest), 2),
                Err(VersionError::Exhausted { newest })
            );
        }
    }

    #[test]
    fn only_numbers_a_write_can_create_and_follow_are_valid() {
        assert!(Version::new(1, 1).check_number().is_ok());
        assert!(Version::new(Version::MAX_NUMBER, 1).check_number().is_ok());
        let zero = Version::new(0, 0);
        assert_eq!(
            zero.check_number(),
            Err(VersionError::NoNumber { version: zero })
        );
        let wrapping = Version::new(u64::MAX, 1);
        let error = wrapping.check_number().unwrap_err();
        assert_eq!(error, VersionError::TooLarge { version: wrapping });
        assert!(
            error.to_string().contains("18446744073709551615.1"),
            "{error}"
        );
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
