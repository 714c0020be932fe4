//! The wire protocol of dida, generated from `proto/*.proto` by `build.rs`.
//!
//! Kept in its own crate so that every role (storage nodes, their clients, and later
//! workers and the scheduler) speaks exactly the same messages, and so that the
//! generated code is compiled once.

/// Storage API (`Storage` service) and storage-to-storage replication
/// (`Replication` service).
pub mod storage {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("dida.storage.v1");
}

pub mod transport;
pub mod convert;
