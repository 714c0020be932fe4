//! The wire protocol of dida, generated from `proto/*.proto` by `build.rs`.
//!
//! Kept in its own crate so that every role (storage nodes, their clients, and later
//! workers and the scheduler) speaks exactly the same messages, and so that the
//! generated code is compiled once.

/// Generated code, nested by protobuf package as the generator expects
/// (`dida.storage.v1` → `packages::dida::storage::v1`).
mod packages {
    pub mod dida {
        pub mod storage {
            pub mod v1 {
                #![allow(missing_docs, clippy::all, clippy::pedantic)]
                tonic::include_proto!("dida.storage.v1");
            }
        }
        pub mod execution {
            pub mod v1 {
                #![allow(missing_docs, clippy::all, clippy::pedantic)]
                tonic::include_proto!("dida.execution.v1");
            }
        }
        pub mod registry {
            pub mod v1 {
                #![allow(missing_docs, clippy::all, clippy::pedantic)]
                tonic::include_proto!("dida.registry.v1");
            }
        }
        pub mod control {
            pub mod v1 {
                #![allow(missing_docs, clippy::all, clippy::pedantic)]
                tonic::include_proto!("dida.control.v1");
            }
        }
    }
}

/// Storage API (`Storage` service) and storage-to-storage replication
/// (`Replication` service).
pub use packages::dida::storage::v1 as storage;

/// Execution protocol: the scheduler (`Scheduler` service), workers (`Worker`
/// service), and the request that travels between workers.
pub use packages::dida::execution::v1 as execution;

/// Control plane: the PCS (`ProcessCreation` service) that starts and kills node
/// processes for the PuppetMaster, and the PuppetMaster's `DebugSink`.
pub use packages::dida::control::v1 as control;

/// Operator deployment (`Operators` service, served by the scheduler).
pub use packages::dida::registry::v1 as registry;

/// The full path (`/package.Service/Method`) of every method the `.proto` files
/// define, sorted: the only values the RPC metrics give their `method` label, so a
/// client sending calls to made-up paths cannot grow a node's metrics without bound.
pub const GRPC_METHODS: &[&str] = include!(concat!(env!("OUT_DIR"), "/grpc_methods.rs"));

pub mod acked;
pub mod authorize;
pub mod connections;
pub mod convert;
pub mod cookie;
pub mod http_server;
pub mod reserved;
pub mod security;
pub mod server;
pub mod transport;
