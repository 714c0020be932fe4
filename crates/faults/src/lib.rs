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
//! Modules, one job each:
//! - [`history`]: the recorded operations and the run's clock;
//! - [`linearizability`]: the register linearizability checker;
//! - [`lost_writes`]: reading back every live replica and classifying each
//!   acknowledged write as held, discarded by `max_versions`, or lost;
//! - [`workload`]: the storage clients;
//! - [`chains`]: the chain clients and the chain checker;
//! - [`nemesis`]: when and which storage nodes are killed, paused or partitioned
//!   (partitions through `dida_local_cluster::proxy`);
//! - [`rolling`]: the rolling restart, every storage node restarted in turn;
//! - [`survey`]: which nodes the cluster has lost (killed, or declared failed and
//!   fenced after a pause or partition);
//! - [`report`]: the summary, as text or JSON, and the verdict;
//! - [`timeline`]: the crash timeline (`--timeline`): operations per 100 ms, with
//!   marks for each fault, the detection of each lost node and the end of
//!   re-replication;
//! - [`marks`]: the watcher that finds when a crash was detected and when
//!   replication was restored;
//! - [`suite`]: one run from start to finish, under a watchdog.
//!
//! See `docs/faults.md` for how to run it and what the results mean.

pub mod chains;
pub mod history;
pub mod linearizability;
pub mod lost_writes;
pub mod marks;
pub mod nemesis;
pub mod report;
pub mod rolling;
pub mod suite;
pub mod survey;
pub mod timeline;
pub mod workload;

pub use report::Report;
pub use suite::{run, SuiteConfig};
