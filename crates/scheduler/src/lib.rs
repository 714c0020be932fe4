//! The dida scheduler (SPEC §5).
//!
//! It gives every execution a unique id, assigns each operator of the chain to the
//! worker currently running the fewest operators ([`load`]), hands the request to the
//! first worker — and is then off the data path: workers pass the request along and
//! confirm each operator they finish, and the last one reports the outcome, which the
//! scheduler keeps for the client ([`executions`]). Which operators each worker can
//! run is kept current in the background (`catalogue`), so a submit costs no call
//! but the one to the first worker. Workers come and go: besides the static ones of
//! `--workers`, workers register themselves and hold leases ([`members`]).

pub mod apps;
mod apps_service;
mod catalogue;
pub mod executions;
mod http;
pub mod load;
pub mod members;
pub mod metrics;
pub mod node;
mod operators_service;
mod registry;
mod roster;
mod service;

pub use node::{NodeHandle, SchedulerConfig};
