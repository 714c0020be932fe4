//! The fault-injection suite of dida (`dida faults`).
//!
//! A workload of concurrent clients writes, compare-and-swaps and reads a small set
//! of contended keys and runs chain executions, while a nemesis SIGKILLs storage
//! nodes at random moments. Every operation is recorded with its invocation time,
//! completion time and result, and checkers then judge the run from that record:
//!
//! 1. no acknowledged write is lost (must hold with `--write-acks` ≥ 2);
//! 2. each key's history of writes and CAS is linearizable;
//! 3. every chain execution either completes with consistent reads (SPEC §4) or
//!    fails with a clear error — none hangs;
//! 4. with `--write-acks 1`, how many acknowledged writes were lost (reported).
//!
//! Modules, one job each:
//! - [`history`]: the recorded operations;
//! - [`linearizability`]: the register linearizability checker;

pub mod history;
pub mod linearizability;
