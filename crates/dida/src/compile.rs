//! `dida compile-operator` (hidden): compiles one untrusted component for the
//! scheduler or worker that started this process, within the budget it passes
//! (`dida_worker::bounded`). It limits its own memory and CPU before it reads the
//! component from stdin, and writes the compiled artifact on stdout (`--emit`) or
//! nothing (a check). An invalid component exits with status 1 and the reason on
//! stderr; a component over the budget is killed by the kernel.

use std::io::Write;

use anyhow::Context;
use clap::Args;
use dida_core::limits::MAX_OPERATOR_FILE_BYTES;
use nix::sys::resource::{setrlimit, Resource};

/// Flags of `dida compile-operator`, set by the parent process.
#[derive(Debug, Args)]
pub struct CompileArgs {
    /// Memory cap of the parent's sandboxes, so the artifact fits its engine.
    #[arg(long)]
    sandbox_memory_bytes: usize,
    /// RLIMIT_DATA of this process.
    #[arg(long)]
    memory_limit_bytes: u64,
    /// RLIMIT_CPU of this process (SIGXCPU at it, SIGKILL a second later).
    #[arg(long)]
    cpu_limit_seconds: u64,
    /// Write the compiled artifact on stdout (else only check the component).
    #[arg(long)]
    emit: bool,
}

/// Limits this process, then compiles the component on stdin.
pub fn run(args: CompileArgs) -> anyhow::Result<()> {
    setrlimit(
        Resource::RLIMIT_DATA,
        args.memory_limit_bytes,
        args.memory_limit_bytes,
    )
    .context("cannot limit the compiler's memory")?;
    setrlimit(
        Resource::RLIMIT_CPU,
        args.cpu_limit_seconds,
        args.cpu_limit_seconds + 1,
    )
    .context("cannot limit the compiler's CPU time")?;
    let artifact = dida_worker::bounded::compile_from(
        std::io::stdin().lock(),
        MAX_OPERATOR_FILE_BYTES,
        args.sandbox_memory_bytes,
    )?;
    if args.emit {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(&artifact)
            .and_then(|()| stdout.flush())
            .context("cannot write the compiled artifact")?;
    }
    Ok(())
}
