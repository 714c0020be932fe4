//! The typed settings of each node role — storage, worker, scheduler — defined once.
//!
//! Each role's flags used to live in four places (the CLI, the PCS's allowlist, the
//! PuppetMaster's launcher, local-cluster) and had drifted: the PCS accepted
//! deadlines the node then refused at start-up. Here each role has one clap
//! [`clap::Args`] struct whose value parsers enforce the bounds of
//! [`dida_core::limits`] (the one place every bound is named), whose every flag can
//! also come from a `DIDA_<ROLE>_<FLAG>` environment variable, and which turns back
//! into a command line ([`RoleSettings::to_args`]) so nothing writes one by hand:
//!
//! - `dida storage|worker|scheduler` flatten these structs as their flags;
//! - the PCS checks a remote start request by parsing it with [`NodeSettings::parse`]
//!   (keeping only a list of the flags remote callers may set);
//! - the PuppetMaster and local-cluster fill the structs and send
//!   [`RoleSettings::flags`].
//!
//! Settings that depend on one another (`--write-acks` against the replication
//! factor, the replication factor against the membership) are checked by
//! [`RoleSettings::check`], which every one of them calls. The crate stays light
//! (clap, dida-core, thiserror) so that all of them can depend on it.

mod command_line;
mod error;
pub mod local;
mod node;
pub mod paths;
mod scheduler;
mod storage;
pub mod values;
mod worker;

pub use command_line::{Flag, RoleSettings};
pub use error::SettingsError;
pub use node::NodeSettings;
pub use scheduler::SchedulerSettings;
pub use storage::{
    Fsync, StorageSettings, DEFAULT_MAX_VERSIONS, DEFAULT_VNODES, DEFAULT_WRITE_ACKS,
};
pub use worker::WorkerSettings;
