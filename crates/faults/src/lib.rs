//! The fault-injection suite of dida (`dida faults`).
//!
//! A workload of concurrent clients writes, compare-and-swaps and reads a small set
//! of contended keys and runs chain executions, while a nemesis SIGKILLs, pauses
//! (SIGSTOP / SIGCONT), partitions or restarts storage nodes at random moments (or
//! restarts each in turn). Every operation is recorded with its invocation time,
//! completion time and result, and checkers then judge the run from that record:
//!
//! 1. no acknowledged write is lost (must hold with `--write-acks` ≥ 2);
//! 2. each key's history of writes and CAS is linearizable;
//! 3. every chain execution either completes with consistent reads (SPEC §4) or
//!    fails with a clear error — none hangs;
//! 4. with `--write-acks 1`, how many acknowledged writes were lost (reported).
//!
//! The history, the workload, the fault plan, the checkers and the report are
//! [`dida_verify`]'s, shared with the simulator; this crate is the real-process
//! back-end. Modules, one job each:
//! - [`storage_kv`]: the workload's key-value store, through the storage client;
//! - [`readback`]: listing every live node once the cluster has converged;
//! - [`chains`]: the chain clients;
//! - [`processes`]: the faults themselves (signals, proxy links through
//!   `dida_local_cluster::proxy`, restarts), confirmed, as
//!   `dida_verify::plan::Injector` (the shared `dida_verify::nemesis` decides
//!   whom and when);
//! - [`survey`]: which nodes the cluster has lost (killed, or declared failed and
//!   fenced after a pause or partition);
//! - [`marks`]: the watcher that finds when a crash was detected and when
//!   replication was restored;
//! - [`suite`]: one run from start to finish, under a watchdog.
//!
//! See `docs/faults.md` for how to run it and what the results mean.

pub mod chains;
pub mod marks;
pub mod processes;
pub mod readback;
pub mod resp_kv;
pub mod storage_kv;
pub mod suite;
pub mod survey;

pub use dida_verify::Report;
pub use suite::{run, SuiteConfig};
