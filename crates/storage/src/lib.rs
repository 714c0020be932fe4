//! The dida storage node (SPEC §2).
//!
//! A storage node keeps, in memory, the versions of the keys the consistent-hash ring
//! gives it, and cooperates with the other nodes to keep every key on its
//! `replication_factor` replicas:
//!
//! - [`store`]: the multi-version store itself, which keeps the digests anti-entropy
//!   compares current as records change (`digest`), bucketed by the arcs of the ring
//!   with every node alive (`arcs`) so that they stay valid in every view;
//! - [`durable`] (with `wal`, the log's format, and `data_dir`, the directory's lock
//!   and identity): with `--data-dir`, the store's log and snapshot, group commit
//!   and recovery after a restart (docs/durability.md);
//! - [`config`]: the node's settings and their checks;
//! - [`node`]: start-up and shutdown, in-process or as a process;
//! - `api`: the client-facing gRPC service (read, write, conditional update, list,
//!   status), executing writes of the keys this node leads and forwarding the rest to
//!   their primary;
//! - [`listing`]: `ListRecords`, streamed in pages of bounded size, a few at a time;
//! - `gossip`: background pushes of new versions to the other replicas, each message
//!   delayed by the node's gossip delay, with optional acknowledgements for
//!   `--write-acks`;
//! - `anti_entropy`: periodic digest comparison with each replica peer, repairing
//!   whatever a push missed;
//! - `replication`: the peer-facing gRPC service that receives both, handing each
//!   message to `peer_handlers`, which first checks it with `validation` (sender,
//!   versions, views, ranges) and refuses it whole if anything is wrong;
//! - `detector`, `suspicion` and `view`: crash detection (probes, indirect probes;
//!   the suspicion rules as plain functions, tested without sockets) and
//!   the view — every member's incarnation and liveness — from which the ring of the
//!   alive nodes follows: the next replica takes over a crashed primary's keys
//!   (after pulling them from the surviving replicas) and the next live node becomes
//!   a replica (SPEC §2.5);
//! - `rejoin`: a node (re)starting, or starting over after being declared failed,
//!   joins as a new incarnation and catches up before it leads its keys again.
//!
//! The invariants these modules keep are written down in `docs/protocols.md`.

mod anti_entropy;
mod api;
mod arcs;
mod client_handlers;
pub mod config;
mod data_dir;
mod detector;
mod digest;
mod divergence;
pub mod durable;
mod gossip;
mod grpc_peers;
pub mod listing;
mod metrics;
pub mod node;
mod peer_handlers;
mod peering;
mod rejoin;
mod replication;
mod state;
mod stats;
pub mod store;
mod suspicion;
mod synced;
pub mod transport;
mod validation;
mod view;
mod wal;

pub use config::StorageConfig;
pub use node::NodeHandle;
pub use state::Node;
pub use store::MultiVersionStore;
pub use transport::PeerTransport;
