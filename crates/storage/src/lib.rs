//! The dida storage node (SPEC §2).
//!
//! A storage node keeps, in memory, the versions of the keys the consistent-hash ring
//! gives it, and cooperates with the other nodes to keep every key on its
//! `replication_factor` replicas:
//!
//! - [`store`]: the multi-version store itself;
//! - [`node`]: configuration, start-up and shutdown, in-process or as a process;
//! - `api`: the client-facing gRPC service (read, write, conditional update, list,
//!   status), executing writes of the keys this node leads and forwarding the rest to
//!   their primary;
//! - `gossip`: background pushes of new versions to the other replicas, each message
//!   delayed by the node's gossip delay, with optional acknowledgements for
//!   `--write-acks`;
//! - `anti_entropy`: periodic digest comparison with each replica peer, repairing
//!   whatever a push missed;
//! - `replication`: the peer-facing gRPC service that receives both.
//!
//! The invariants these modules keep are written down in `docs/protocols.md`.

mod anti_entropy;
mod api;
mod gossip;
pub mod node;
mod peers;
mod replication;
mod state;
mod stats;
pub mod store;

pub use node::{NodeHandle, StorageConfig};
pub use store::MultiVersionStore;
