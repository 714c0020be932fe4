//! The dida worker (SPEC §3.3–3.4).
//!
//! A worker runs one operator of an application chain at a time per request, stores
//! its output in the request and forwards the request to the next worker; the last
//! one reports the outcome to the scheduler. Operators are WebAssembly components run
//! by wasmtime in a sandbox:
//!
//! - [`registry`]: finds operators by class name (built-in or `<ClassName>.wasm` in
//!   the operators directory), compiles and pre-instantiates them once, and picks up
//!   a file replaced on disk;
//! - [`bounded`]: compiles untrusted (deployed) components in a child process with
//!   a memory, CPU and time budget;
//! - [`compiled_cache`]: compiled operators kept on disk by component digest and
//!   engine, so a component is compiled once per machine;
//! - [`runtime`]: the wasmtime engine (pooling allocator, fuel) and one invocation
//!   with its CPU, memory and wall-time limits;
//! - `host`: what an operator may call — storage, metadata, logging;
//! - `capture`: what an invocation leaves for inspection — its log lines and
//!   printed output (bounded per execution) and the fuel it used;
//! - [`consistency`]: the storage proxy that keeps an execution's reads consistent
//!   (SPEC §4);
//! - `service` and `chain`: the gRPC service and the hop-by-hop execution;
//! - `completions`: confirming completed operators to the scheduler in batches;
//! - [`lease`]: registering with the scheduler, renewing the lease, leaving
//!   gracefully (draining);
//! - [`node`]: configuration, start-up and shutdown.

pub mod bounded;
mod capture;
mod chain;
pub mod compiled_cache;
mod completions;
pub mod consistency;
mod host;
pub mod lease;
mod metrics;
pub mod node;
pub mod registry;
pub mod runtime;
mod service;

pub use node::{NodeHandle, WorkerConfig};
pub use runtime::SandboxLimits;
