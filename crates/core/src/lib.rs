//! The shared vocabulary of dida.
//!
//! Everything here is pure (no I/O, no async) so that every role — storage nodes,
//! clients, workers, the scheduler and the PuppetMaster — agrees on the same
//! definitions: what a version is and how versions are ordered, how keys are placed on
//! the consistent-hash ring, how cluster membership and data files are parsed, and the
//! size limits every input is checked against.

pub mod app;
pub mod cluster;
pub mod datafile;
pub mod events;
pub mod limits;
pub mod listen;
pub mod liveness;
pub mod membership;
pub mod record;
pub mod ring;
pub mod script;
pub mod textfile;
pub mod version;

pub use cluster::{ClusterConfig, ClusterMember, Standing};
pub use liveness::{Liveness, MemberState, MemberStates};
pub use membership::{Member, Membership, MembershipError};
pub use record::Record;
pub use ring::{RangeId, Ring};
pub use version::{Version, VersionParseError};
