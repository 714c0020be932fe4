//! `dida bench`: benchmarks of the real request paths.
//!
//! (Being written: see crates/bench.)

use clap::{Args, Subcommand};

/// Flags of `dida bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    target: BenchTarget,
}

#[derive(Debug, Subcommand)]
enum BenchTarget {
    /// Storage reads, writes and CAS against a no-op RPC baseline.
    Storage,
}

/// Runs the selected benchmark.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.target {
        BenchTarget::Storage => anyhow::bail!("dida bench storage is not implemented yet"),
    }
}
