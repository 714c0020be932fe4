//! Deterministic simulation of a dida storage cluster (`dida sim`).
//!
//! The real protocol code — [`dida_storage::Node`]: gossip, the crash detector,
//! anti-entropy, takeover, rejoin, forwarding — runs five nodes in one process, on
//! an in-memory network instead of gRPC, with simulated time. The seed decides
//! everything random: message delays (so reordering), losses and duplicates, the
//! faults (crashes, restarts, pauses, symmetric, asymmetric and partial partitions,
//! often of a key's primary, members leaving and new nodes joining), and the
//! clients' writes, compare-and-swaps and reads.
//! The same seed gives the same run, event for event.
//!
//! Throughout the workload a hostile peer ([`forger`]) hands the nodes forged
//! replication messages, each of which must be refused (R1).
//!
//! The clients, the history, the fault kinds and the checks of W1, A1 and G2 are
//! [`dida_verify`]'s, shared with the real-process suite (`dida faults`); this crate
//! is the simulated back-end: its [`sim_kv`] carries the workload's calls over the
//! in-memory network. After each run the checks of docs/protocols.md are applied
//! (V1, V2, W1, W2, G2, H2, A1, T1, D1, D3, R1), and — with `--write-acks` ≥ 2 and the
//! losses within the fault budget — no acknowledged write may be lost.
//!
//! **Why not a simulation library.** `madsim` replaces tokio (and needs the whole
//! build under `--cfg madsim`); `turmoil` simulates TCP hosts, so it would run
//! gRPC over its streams — no message-level loss, duplication or reordering, and a
//! listener abstraction the servers would have to take. tokio's own paused clock on
//! a single-threaded runtime already makes the production code deterministic; what
//! was missing was a transport trait and a network to put behind it, which is this
//! crate (about 1,000 lines).
//!
//! Modules: [`process`] (up, paused, crashed), [`network`], [`cluster`] (which
//! node runs at each index, restarts, leaves and joins), [`sim_kv`], [`forger`],
//! [`nemesis`], [`checks`], [`trace`], [`run`] (one seed) and [`many`] (many seeds
//! on all cores).

pub mod checks;
pub mod cluster;
pub mod forger;
pub mod many;
pub mod nemesis;
pub mod network;
pub mod process;
pub mod run;
pub mod sim_kv;
pub mod trace;

pub use run::{run_seed, SeedReport, SimConfig};
