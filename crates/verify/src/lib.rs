//! The verification core of dida, shared by its two fault back-ends: the
//! deterministic simulator (`dida-sim`, `dida sim`) and the real-process suite
//! (`dida-faults`, `dida faults`).
//!
//! Both run the same [`workload`] of clients over a [`kv::KeyValue`] — the
//! simulator's through its in-memory network, the suite's through the storage
//! client — record the same [`history`], inject faults of the same [`plan`], and are
//! judged by the same checkers: [`linearizability`], [`lost_writes`] (one rule for
//! both, stated there), [`chains`] and [`at_rest`]. A real-process run's outcome is
//! one [`report::Report`] (with its [`timeline`]), which `dida faults --json`
//! writes and the evaluation (`dida-bench`) reads back with these same types.
//!
//! Modules, one job each:
//! - [`history`]: the recorded operations and the run's clock;
//! - [`kv`]: the key-value trait the workload drives, and its typed error;
//! - [`workload`]: the storage clients, generic over [`kv::KeyValue`];
//! - [`plan`]: the kinds of faults, the seeded plan, and what each injected fault was;
//! - [`nemesis`]: carries a plan out through a back-end's injector;
//! - [`linearizability`]: the register linearizability checker;
//! - [`lost_writes`]: acknowledged writes held, discarded or lost;
//! - [`at_rest`]: every serving replica of a key holds the same versions;
//! - [`chains`]: chain executions consistent, failed clearly or hung;
//! - [`report`]: the summary and the verdict, as text or JSON;
//! - [`timeline`]: operations per 100 ms with the marks of each fault.

pub mod at_rest;
pub mod chains;
pub mod history;
pub mod kv;
pub mod linearizability;
pub mod lost_writes;
pub mod nemesis;
pub mod plan;
pub mod report;
pub mod timeline;
pub mod workload;

pub use report::Report;
