//! The PCS (Process Creation Service, SPEC §6.1): one per machine, it starts `dida`
//! node processes on the PuppetMaster's request, kills them (`crash`) and relays
//! every line they print, prefixed with the node id.
//!
//! It is deliberately not a remote shell: it starts only the `dida` binary it was
//! configured with, only as `scheduler`, `storage` or `worker`, and only with the
//! flags of that role, each value checked ([`launch`]). It listens on loopback unless
//! told otherwise, and when it has a token every request must carry it ([`auth`]).
//! The processes it starts die with it: it kills them when it stops, and on Linux
//! the kernel kills them if the PCS itself is killed.
//!
//! - [`launch`]: validating a start request and building the command line;
//! - `children`: the processes, their output relay and their exit;
//! - `service`: the gRPC service;
//! - `metrics`: its node processes, as Prometheus metrics;
//! - [`node`]: configuration, start-up and shutdown, in-process or as `dida pcs`;
//! - [`client`]: the client the PuppetMaster (and tests) use.

pub mod auth;
mod children;
pub mod client;
pub mod launch;
mod metrics;
pub mod node;
mod service;

pub use client::PcsClient;
pub use node::{PcsConfig, PcsHandle};
pub use service::MAX_STOP_GRACE;

/// The port a PCS listens on unless told otherwise (SPEC §6.1).
pub const DEFAULT_PORT: u16 = 10000;
