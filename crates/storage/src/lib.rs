//! The dida storage node (SPEC §2).
//!
//! A storage node keeps, in memory, the versions of the keys the consistent-hash ring
//! gives it, and cooperates with the other nodes to keep every key on its
//! `replication_factor` replicas:
//!
//! - [`store`]: the multi-version store itself, which keeps the digests anti-entropy
//!   compares current as records change (`digest`), bucketed by the arcs of the ring
//!   with every node alive (`arcs`) so that they stay valid in every view;
//! - [`durable`] (with `wal`, the log's format, `synced`, the sync mark, and
//!   `data_dir`, the directory's lock and identity): with `--data-dir`, the store's
//!   log and snapshot, group commit and recovery after a restart
//!   (docs/durability.md);
//! - [`config`]: the node's settings and their checks; [`error`]: the errors the
//!   crate returns at its boundary;
//! - [`node`]: start-up and shutdown of a serving node, in-process or as a
//!   process; `node_core`: the [`Node`] itself — the parts each protocol works
//!   with, and the entry point of every message, handed to its protocol;
//! - `api`, `peer_service` and `membership_service`: the client-facing, the
//!   peer-facing and the operator-facing gRPC services, thin adapters that authorize a call and hand it to the node;
//!   [`listing`]: `ListRecords`, streamed in pages of bounded size; `resp`: the
//!   Redis-protocol endpoint (`--resp-listen`), over the same node;
//! - `peering`: the narrow context the protocols share — identity, view, transport,
//!   counters — and `lifecycle`, the node's incarnation, fence and catch-up mark
//!   with their transitions; `view` is the view itself, `validation` the checks
//!   every message passes before it changes anything.
//!
//! Each protocol is one module, holding its sending side, its receiving side, its
//! state and its decisions as plain functions tested beside them:
//!
//! - `routing`: where a client's read, write or conditional update is served —
//!   here, or forwarded to the key's replicas or primary;
//! - `write_path`: replication's write path — a primary's takeover catch-up (and
//!   the replicas' answers to its key pulls), applying a write under the view, and
//!   counting `--write-acks` acknowledgements;
//! - `gossip`: background pushes of new versions to the other replicas, each
//!   message delayed by the node's gossip delay, and the receiving node's checks;
//! - `anti_entropy`: periodic digest comparison with each replica peer, repairing
//!   whatever a push missed, and the peer's answer;
//! - `handoff`: records of ranges a node holds but no longer replicates (after a
//!   rejoin or a cold start) pushed to their replicas, then dropped once every
//!   replica confirmed holding them;
//! - `detector` (with `suspicion`, its rules): crash detection by probes and
//!   indirect probes, the answers to both, and the view — every member's
//!   incarnation and liveness — from which the ring of the alive nodes follows
//!   (SPEC §2.5);
//! - `reconfig` (over `consensus`: single-decree Paxos per epoch as plain
//!   functions, and the acceptor's state on disk): members leave a running
//!   cluster through a configuration decided by consensus, one epoch at a time;
//! - `rejoin` (with `handback`, the peers' side, and `divergence`): a node
//!   (re)starting, or starting over after being declared failed, joins as a new
//!   incarnation and catches up before it leads its keys again.
//!
//! The invariants these modules keep are written down in `docs/protocols.md`.

mod anti_entropy;
mod api;
mod arcs;
pub mod config;
mod consensus;
mod data_dir;
mod detector;
mod digest;
pub mod durable;
pub mod error;
mod gossip;
mod grpc_peers;
mod handoff;
mod lifecycle;
pub mod listing;
mod membership_service;
mod metrics;
pub mod node;
mod node_core;
mod peer_service;
mod peering;
mod reconfig;
mod rejoin;
mod resp;
mod roster;
mod routing;
mod stats;
pub mod store;
mod synced;
pub mod transport;
mod validation;
mod view;
mod wal;
mod write_path;

pub use config::StorageConfig;
pub use error::{ConfigError, DurabilityError, StorageError};
pub use node::NodeHandle;
pub use node_core::Node;
pub use store::MultiVersionStore;
pub use transport::PeerTransport;
