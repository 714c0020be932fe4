//! Compiling untrusted operators within a budget (issue 23).
//!
//! What compiling a WebAssembly component costs grows with what it holds, and not
//! only with its size: a 16 MiB component built to be expensive to compile once cost
//! the scheduler 1.2 GB and 20 s of CPU per deploy. So every component that came from
//! a client — a deploy the scheduler checks, a deployed operator a worker fetches —
//! is compiled by a child process, `dida compile-operator`, that limits itself before
//! it reads the component (see [`CompileBudget::for_component`]: a fixed budget
//! plus a share per MiB, since a Python or JavaScript operator carries a whole
//! interpreter):
//!
//! - **memory**: `RLIMIT_DATA` (heap and private writable mappings; wasmtime's
//!   address-space reservations are not writable and do not count, which is why the
//!   limit is not `RLIMIT_AS`), so an allocation past it fails and the child dies;
//! - **CPU**: `RLIMIT_CPU`, counted over all of its compiler threads;
//! - **wall time**: the parent kills the child when it runs longer.
//!
//! Before any child is started, [`precheck`] reads the component's structure
//! (without compiling it) and refuses what is obviously too expensive: a function
//! whose locals times body bytes passes [`MAX_LOCALS_TIMES_BODY_BYTES`] (compiling
//! costs about that product: every local may be live in every block).
//!
//! The parent holds only the component and the compiled artifact (at most
//! [`MAX_ARTIFACT_BYTES`]), which it loads without compiling again. At most
//! [`CONCURRENT_COMPILES`] children run at once per process; a compile that finds no
//! slot within [`COMPILE_QUEUE_WAIT`] is refused as [`CompileError::Busy`].
//!
//! The `dida` binary names itself the compiler with [`use_compiler_process`] when it
//! starts a scheduler or a worker. A process that did not (the role crates used as
//! libraries, as in-process test clusters do: there is no `dida` executable to start)
//! compiles in a thread of its own under the same concurrency bound and wall-time
//! wait, but with no memory bound; a compilation abandoned by its wait finishes in
//! the background.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, SemaphorePermit};

use dida_core::limits::MAX_OPERATOR_FILE_BYTES;
use dida_storage_client::registry::digest_of;

use crate::runtime::{OperatorPre, OperatorRuntime};

/// The resources one compilation of an untrusted component may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileBudget {
    /// `RLIMIT_DATA` of the child: its heap and private writable mappings.
    pub memory_bytes: u64,
    /// `RLIMIT_CPU` of the child, all threads together.
    pub cpu: Duration,
    /// How long the parent waits for the child before killing it.
    pub wall_time: Duration,
}

/// The budget of a component of no size; [`CompileBudget::for_component`] adds
/// [`COMPILE_BUDGET_PER_MIB`] for each MiB. The sample Rust operators (a few hundred
/// KiB each) compile in well under a second with less than 100 MiB; a component
/// built to be expensive is refused at this scale (a 3.2 MB one needed 950 MB).
pub const COMPILE_BUDGET: CompileBudget = CompileBudget {
    memory_bytes: 768 << 20,
    cpu: Duration::from_secs(20),
    wall_time: Duration::from_secs(15),
};

/// What each MiB of a component adds to [`COMPILE_BUDGET`]. A Python operator
/// (componentize-py, 18.4 MiB, most of it CPython's code) took 26 s of CPU, 28 s of
/// wall time and 436 MiB on a loaded 2-core machine, and made a 38 MB artifact, so a
/// component's cost is about 1.4 s of CPU and 24 MiB per MiB; this leaves it room
/// twice over, while the budget still grows only with what a client sent.
pub const COMPILE_BUDGET_PER_MIB: CompileBudget = CompileBudget {
    memory_bytes: 24 << 20,
    cpu: Duration::from_secs(3),
    wall_time: Duration::from_secs(3),
};

impl CompileBudget {
    /// The budget of compiling a component of `len` bytes: [`COMPILE_BUDGET`] plus
    /// [`COMPILE_BUDGET_PER_MIB`] for each started MiB.
    pub fn for_component(len: usize) -> Self {
        let mib = u32::try_from(len.div_ceil(1 << 20)).unwrap_or(u32::MAX);
        CompileBudget {
            memory_bytes: COMPILE_BUDGET.memory_bytes
                + u64::from(mib) * COMPILE_BUDGET_PER_MIB.memory_bytes,
            cpu: COMPILE_BUDGET.cpu + COMPILE_BUDGET_PER_MIB.cpu * mib,
            wall_time: COMPILE_BUDGET.wall_time + COMPILE_BUDGET_PER_MIB.wall_time * mib,
        }
    }

    /// The budget of the largest component a worker loads
    /// ([`MAX_OPERATOR_FILE_BYTES`]): what a caller waiting for a compilation must
    /// allow for.
    pub fn largest() -> Self {
        Self::for_component(MAX_OPERATOR_FILE_BYTES as usize)
    }
}

/// Children compiling at once per process: each may use its budget, and the
/// scheduler and workers have other work than compiling.
pub const CONCURRENT_COMPILES: usize = 2;

/// How long a compilation waits for one of the [`CONCURRENT_COMPILES`] slots before
/// it is refused as busy.
pub const COMPILE_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Largest compiled artifact a parent reads from its child (four times the largest
/// component; CPython's made 2.1 times its component): what a compilation can make
/// the parent hold.
pub const MAX_ARTIFACT_BYTES: u64 = 4 * MAX_OPERATOR_FILE_BYTES;

/// Bytes of the child's error output kept for the message.
const MAX_CHILD_ERROR_BYTES: u64 = 16 << 10;

/// Largest product of a function's locals and its body's bytes that is compiled at
/// all. A function of 2000 locals and 200 KB (4·10⁸) took a compiler 16 s and
/// 950 MB, and is left to the budget to stop; a function of 10 000 locals and 200 KB
/// is refused at once. A large function of ordinary code (a few hundred locals,
/// 100 KB) stays two orders of magnitude below.
pub const MAX_LOCALS_TIMES_BODY_BYTES: u64 = 1_000_000_000;

/// The hidden subcommand of `dida` that compiles one component.
pub const COMPILE_SUBCOMMAND: &str = "compile-operator";

/// Why an untrusted component was not compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// It is not an operator a worker can run (not a component, another world).
    #[error("{0}")]
    Invalid(String),
    /// Compiling it went over its [`CompileBudget::for_component`].
    #[error("compiling it went over the budget of untrusted compilation: {0}")]
    OverBudget(String),
    /// Every compilation slot stayed taken for [`COMPILE_QUEUE_WAIT`].
    #[error(
        "{CONCURRENT_COMPILES} components are being compiled already and none finished \
         within {COMPILE_QUEUE_WAIT:?}; try again later"
    )]
    Busy,
    /// The child could not be run.
    #[error("cannot run the operator compiler: {0}")]
    Internal(String),
}

/// The program run as `PROGRAM compile-operator`, once named.
static COMPILER: OnceLock<PathBuf> = OnceLock::new();

/// The slots of concurrent compilations, for the whole process.
static SLOTS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(CONCURRENT_COMPILES));

/// Makes every untrusted compilation of this process run in a child process
/// `program compile-operator` (`program` is the `dida` executable). Called once at
/// start-up; a later call changes nothing.
pub fn use_compiler_process(program: PathBuf) {
    let _ = COMPILER.set(program);
}

/// Checks that an untrusted `wasm` is an operator the workers can run, by compiling
/// it within the budget (the scheduler's validation of a deploy) — or by finding it
/// in the runtime's compile cache, where only a successful compilation of these
/// very bytes by this engine can have put it (`dida build` does, on the machine it
/// ran on). A compilation here is kept there too, so deploying it again is quick.
pub async fn check(runtime: &OperatorRuntime, wasm: Vec<u8>) -> Result<(), CompileError> {
    compile(runtime, wasm).await.map(drop)
}

/// Compiles an untrusted `wasm` within the budget and loads it (a worker's deployed
/// operator), or loads what an earlier compilation of it left in the runtime's
/// compile cache.
pub async fn compile(
    runtime: &OperatorRuntime,
    wasm: Vec<u8>,
) -> Result<OperatorPre, CompileError> {
    let digest = digest_of(&wasm);
    let cached = {
        let (runtime, digest) = (runtime.clone(), digest.clone());
        tokio::task::spawn_blocking(move || runtime.cached(&digest))
            .await
            .map_err(|e| CompileError::Internal(format!("loading task failed: {e}")))?
    };
    if let Some(pre) = cached {
        return Ok(pre);
    }
    precheck(&wasm)?;
    let _slot = slot().await?;
    let Some(program) = COMPILER.get() else {
        return in_thread(runtime, wasm).await;
    };
    let artifact = in_child(program, runtime, wasm).await?;
    let runtime = runtime.clone();
    tokio::task::spawn_blocking(move || runtime.load_and_keep_artifact(&digest, &artifact))
        .await
        .map_err(|e| CompileError::Internal(format!("loading task failed: {e}")))?
        .map_err(|e| CompileError::Internal(format!("{e:#}")))
}

/// Refuses, without compiling it, a component with a function too expensive to
/// compile (see [`MAX_LOCALS_TIMES_BODY_BYTES`]). Reading the structure is linear in
/// the component's size and allocates nothing per function; what does not parse is
/// left to the compiler, whose message says why.
pub fn precheck(wasm: &[u8]) -> Result<(), CompileError> {
    let mut functions = 0;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let Ok(wasmparser::Payload::CodeSectionEntry(body)) = payload else {
            if payload.is_err() {
                return Ok(());
            }
            continue;
        };
        functions += 1;
        let mut locals: u64 = 0;
        let Ok(reader) = body.get_locals_reader() else {
            return Ok(());
        };
        for entry in reader {
            let Ok((count, _)) = entry else {
                return Ok(());
            };
            locals = locals.saturating_add(u64::from(count));
        }
        let bytes = body.range().len() as u64;
        if locals.saturating_mul(bytes) > MAX_LOCALS_TIMES_BODY_BYTES {
            return Err(CompileError::OverBudget(format!(
                "its function body {functions} has {locals} locals and {bytes} bytes of \
                 code, and locals times bytes may be at most {MAX_LOCALS_TIMES_BODY_BYTES}"
            )));
        }
    }
    Ok(())
}

/// One of the [`CONCURRENT_COMPILES`] slots, waiting at most [`COMPILE_QUEUE_WAIT`].
async fn slot() -> Result<SemaphorePermit<'static>, CompileError> {
    match tokio::time::timeout(COMPILE_QUEUE_WAIT, SLOTS.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_)) | Err(_) => Err(CompileError::Busy),
    }
}

/// Compiles in a child process under its [`CompileBudget::for_component`]; returns the
/// compiled artifact.
async fn in_child(
    program: &Path,
    runtime: &OperatorRuntime,
    wasm: Vec<u8>,
) -> Result<Vec<u8>, CompileError> {
    let budget = CompileBudget::for_component(wasm.len());
    let mut command = tokio::process::Command::new(program);
    command
        .arg(COMPILE_SUBCOMMAND)
        .arg("--sandbox-memory-bytes")
        .arg(runtime.limits().memory_bytes.to_string())
        .arg("--memory-limit-bytes")
        .arg(budget.memory_bytes.to_string())
        .arg("--cpu-limit-seconds")
        .arg(budget.cpu.as_secs().max(1).to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command.arg("--emit");
    let mut child = command
        .spawn()
        .map_err(|e| CompileError::Internal(format!("cannot start {}: {e}", program.display())))?;
    let (Some(mut stdin), Some(stderr)) = (child.stdin.take(), child.stderr.take()) else {
        return Err(CompileError::Internal("the child has no pipes".into()));
    };
    let stdout = child.stdout.take();
    let run = async {
        let feed = async {
            // A child that dies early closes its end: the error is its exit status's.
            let _ = stdin.write_all(&wasm).await;
            drop(stdin);
        };
        let artifact = async {
            let mut artifact = Vec::new();
            if let Some(stdout) = stdout {
                stdout
                    .take(MAX_ARTIFACT_BYTES + 1)
                    .read_to_end(&mut artifact)
                    .await
                    .map_err(|e| {
                        CompileError::Internal(format!("cannot read the artifact: {e}"))
                    })?;
            }
            Ok(artifact)
        };
        let errors = async {
            let mut errors = Vec::new();
            let _ = stderr
                .take(MAX_CHILD_ERROR_BYTES)
                .read_to_end(&mut errors)
                .await;
            errors
        };
        let ((), artifact, errors) = tokio::join!(feed, artifact, errors);
        let status = child
            .wait()
            .await
            .map_err(|e| CompileError::Internal(format!("cannot wait for the child: {e}")))?;
        Ok::<_, CompileError>((status, artifact?, errors))
    };
    let (status, artifact, errors) = match tokio::time::timeout(budget.wall_time, run).await {
        Ok(finished) => finished?,
        // Dropping `run` dropped the child, which `kill_on_drop` kills.
        Err(_) => {
            return Err(CompileError::OverBudget(format!(
                "it took longer than {:?} and was stopped",
                budget.wall_time
            )))
        }
    };
    let message = String::from_utf8_lossy(&errors)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if status.success() {
        if artifact.len() as u64 > MAX_ARTIFACT_BYTES {
            return Err(CompileError::OverBudget(format!(
                "its compiled code is larger than {MAX_ARTIFACT_BYTES} bytes"
            )));
        }
        return Ok(artifact);
    }
    let out_of_memory = [
        "memory allocation",
        "out of memory",
        "Cannot allocate memory",
    ]
    .iter()
    .any(|text| message.contains(text));
    Err(match (status.code(), status.signal()) {
        _ if out_of_memory => CompileError::OverBudget(format!(
            "it needed more than {} MiB of memory",
            budget.memory_bytes >> 20
        )),
        (_, Some(signal)) if signal == Signal::SIGXCPU as i32 => {
            CompileError::OverBudget(format!("it used more than {:?} of CPU", budget.cpu))
        }
        (Some(1), _) if !message.is_empty() => CompileError::Invalid(message),
        (_, Some(signal)) => CompileError::OverBudget(format!(
            "the compiler died of signal {signal} (memory limit {} MiB, CPU limit {:?}){}",
            budget.memory_bytes >> 20,
            budget.cpu,
            if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            }
        )),
        (code, None) => {
            CompileError::Internal(format!("the compiler exited with {code:?}: {message}"))
        }
    })
}

/// Compiles in a thread of this process, waiting at most the budget's wall time
/// (see the module documentation: no memory bound).
async fn in_thread(runtime: &OperatorRuntime, wasm: Vec<u8>) -> Result<OperatorPre, CompileError> {
    let wall_time = CompileBudget::for_component(wasm.len()).wall_time;
    let runtime = runtime.clone();
    let task = tokio::task::spawn_blocking(move || runtime.compile(&wasm));
    match tokio::time::timeout(wall_time, task).await {
        Ok(Ok(compiled)) => compiled.map_err(|e| CompileError::Invalid(format!("{e:#}"))),
        Ok(Err(e)) => Err(CompileError::Internal(format!(
            "compilation task failed: {e}"
        ))),
        Err(_) => Err(CompileError::OverBudget(format!(
            "it took longer than {wall_time:?}"
        ))),
    }
}

/// The child's side, `dida compile-operator`: reads one component (at most
/// `max_component_bytes`) from `input`, compiles it with a runtime whose sandboxes
/// have `sandbox_memory_bytes` (the parent's, so the artifact fits the parent's
/// engine) and returns the artifact. The caller has limited the process first.
pub fn compile_from(
    mut input: impl Read,
    max_component_bytes: u64,
    sandbox_memory_bytes: usize,
) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    let mut wasm = Vec::new();
    input
        .by_ref()
        .take(max_component_bytes + 1)
        .read_to_end(&mut wasm)
        .context("cannot read the component")?;
    if wasm.len() as u64 > max_component_bytes {
        anyhow::bail!("the component is larger than {max_component_bytes} bytes");
    }
    let runtime = OperatorRuntime::new(crate::SandboxLimits {
        concurrent_invocations: 1,
        memory_bytes: sandbox_memory_bytes,
        ..crate::SandboxLimits::default()
    })?;
    runtime.compile_to_artifact(&wasm)
}
