//! `dida bench`: throughput and latency percentiles of dida's real request paths.
//!
//! Absolute numbers say more about the machine than about dida, so every benchmark
//! measures a transport baseline in the same run, against the same node, and reports
//! its results as ratios to that baseline. The storage benchmark also measures Redis
//! beside dida, a baseline that shares none of dida's request path. Nothing here
//! asserts an absolute time.
//!
//! Modules, one job each:
//! - `storage`: `dida bench storage` — its flags, the cluster it measures and the
//!   order of the measurements;
//! - `chain`: `dida bench chain` — executions of chains of no-op operators against
//!   the worker ping, the per-hop overhead, and one operator invocation alone;
//! - `idle`: `dida bench idle` — the CPU an idle, converged cluster burns, empty and
//!   holding data;
//! - `invoke`: `dida bench invoke` — one operator invocation per language (compile,
//!   load, first, warm, memory) against the worker ping;
//! - `elastic`: `dida bench elastic` — workers joining and leaving under a steady
//!   HTTP invocation load;
//! - `rebalance`: `dida bench rebalance` — a storage node joining a loaded cluster:
//!   how long the data takes to move, how much moves, client latency meanwhile;
//! - `resp`: `dida bench resp` — `redis-benchmark` against a storage node's RESP
//!   port and against `redis-server`, same flags, same run;
//! - `cpu`: CPU time of the node processes, from `/proc`;
//! - `workload`: the storage workloads (which keys, what one request is);
//! - `redis`: the Redis baseline of `dida bench storage` — starting `redis-server`
//!   and the Redis GET and SET workloads;
//! - `closed_loop`: the load generator every workload runs under;
//! - `report`: turning measurements into table rows, JSON lines and the verdict;
//! - `lines`: the JSON lines every benchmark prints, as types the writers and the
//!   readers share;
//! - `evaluate`: `dida bench report` — the evaluation report (`docs/evaluation.md` and
//!   its SVG plots) rebuilt from the JSON results `scripts/evaluate.sh` collects.

mod chain;
mod closed_loop;
mod cpu;
mod elastic;
mod evaluate;
pub mod http_client;
mod idle;
mod invoke;
mod lines;
mod rebalance;
mod redis;
mod report;
mod resp;
mod storage;
mod transport;
mod workload;

use clap::{Args, Subcommand};

/// Flags of `dida bench`: which benchmark to run, and its own flags.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    target: BenchTarget,
}

#[derive(Debug, Subcommand)]
enum BenchTarget {
    /// Storage reads, writes and CAS against a no-op RPC baseline and Redis.
    Storage(storage::StorageBenchArgs),
    /// Chains of no-op operators against a worker ping, and one invocation alone.
    Chain(chain::ChainBenchArgs),
    /// CPU of an idle, converged cluster, empty and then holding data.
    Idle(idle::IdleBenchArgs),
    /// One operator invocation per language (compile, load, first, warm, memory)
    /// against the worker ping.
    Invoke(invoke::InvokeBenchArgs),
    /// Workers joining and leaving under a steady HTTP invocation load: throughput
    /// and latency with one, three and two workers; no execution lost.
    Elastic(elastic::ElasticBenchArgs),
    /// A storage node joining a loaded cluster: time until the data is at rest,
    /// keys moved against the ideal share, client latency before, during, after.
    Rebalance(rebalance::RebalanceBenchArgs),
    /// redis-benchmark against a storage node's RESP port and against redis-server,
    /// with the same flags in the same run.
    Resp(resp::RespBenchArgs),
    /// The evaluation report: plots and docs/evaluation.md from scripts/evaluate.sh's
    /// results.
    Report(evaluate::ReportArgs),
}

/// Runs the selected benchmark and prints its report on standard output.
///
/// Called by the `dida` binary for `dida bench …`; the benchmark may start storage,
/// scheduler and worker processes of that same binary, and stops them before
/// returning.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.target {
        BenchTarget::Storage(args) => storage::run(args).await,
        BenchTarget::Chain(args) => chain::run(args).await,
        BenchTarget::Idle(args) => idle::run(args).await,
        BenchTarget::Invoke(args) => invoke::run(args).await,
        BenchTarget::Elastic(args) => elastic::run(args).await,
        BenchTarget::Rebalance(args) => rebalance::run(args).await,
        BenchTarget::Resp(args) => resp::run(args).await,
        BenchTarget::Report(args) => evaluate::run(args),
    }
}
