//! The wasmtime engine that runs operators, and one sandboxed invocation.
//!
//! Operators are compiled once into an [`OperatorPre`] (a pre-instantiated component:
//! imports resolved, type-checked), so an invocation is only "allocate an instance
//! from the pool, call `run`": microseconds, not milliseconds. Every invocation gets a
//! fresh store — nothing survives from one call to the next — with three limits:
//!
//! - **CPU**: a fuel budget (about one unit per WebAssembly instruction); running out
//!   traps. The guest also yields to the async runtime every few million units, so a
//!   busy operator never starves the worker's other tasks.
//! - **memory**: a cap on linear-memory growth, enforced by a resource limiter.
//! - **wall time**: a deadline on the whole call, storage calls included.
//!
//! Exceeding a limit, trapping (a panic in Rust), or returning an error fails only
//! that invocation, with a message saying which; the worker keeps serving.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Semaphore;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
};

use crate::capture::Capture;
use crate::compiled_cache::CompiledCache;
use crate::consistency::ExecutionStorage;
use crate::host::HostState;

/// Generated bindings of the `operator` world of `wit/operator.wit`.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "operator",
        imports: { "dida:operator/storage": async },
        exports: { default: async },
    });
}

pub(crate) use bindings::dida::operator::types::ExecutionMeta;
/// A compiled, pre-instantiated operator, ready to be instantiated cheaply.
pub type OperatorPre = bindings::OperatorPre<HostState>;

/// Fuel consumed between two yields of a running guest to the async runtime.
const FUEL_YIELD_INTERVAL: u64 = 5_000_000;

/// The sandbox limits of one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxLimits {
    /// CPU budget in fuel units (about one per WebAssembly instruction).
    pub fuel: u64,
    /// Largest linear memory an operator may grow to, in bytes.
    pub memory_bytes: usize,
    /// Longest an invocation may take, storage calls included.
    pub wall_time: Duration,
    /// Invocations that may run at once on this worker (each holds a pool slot).
    pub concurrent_invocations: u32,
}

impl Default for SandboxLimits {
    /// 2·10⁹ fuel (a second or two of CPU), 64 MiB, 30 s, 64 at once.
    fn default() -> Self {
        Self {
            fuel: dida_core::limits::DEFAULT_OPERATOR_FUEL,
            memory_bytes: 64 * 1024 * 1024,
            wall_time: Duration::from_secs(30),
            concurrent_invocations: 64,
        }
    }
}

/// Why an invocation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvocationError {
    /// The operator returned an error.
    #[error("operator returned an error: {0}")]
    Returned(String),
    /// The operator used up its fuel.
    #[error("operator exceeded its CPU limit ({0} fuel units) and was stopped")]
    OutOfFuel(u64),
    /// The operator tried to grow its memory past the limit.
    #[error("operator exceeded its memory limit of {0} bytes and was stopped")]
    OutOfMemory(usize),
    /// The operator ran past its wall-time deadline.
    #[error("operator exceeded its wall-time limit of {0:?} and was stopped")]
    WallTime(Duration),
    /// The operator trapped (for example a Rust panic).
    #[error("operator trapped: {0}")]
    Trapped(String),
    /// The operator could not be instantiated.
    #[error("operator could not be instantiated: {0}")]
    Instantiation(String),
}

/// What one invocation cost, as the worker records it per operator run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InvocationCost {
    /// Instantiating the operator (`None`: it never was).
    pub instantiation: Option<std::time::Duration>,
    /// The linear memory the instance grew to, in bytes.
    pub memory_bytes: u64,
    /// Fuel the call used.
    pub fuel_used: u64,
}

/// Runs operators: one engine and linker per worker.
#[derive(Clone)]
pub struct OperatorRuntime {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    limits: SandboxLimits,
    slots: Arc<Semaphore>,
    /// Where compiled operators are kept across starts (`--compile-cache`).
    compiled_cache: Option<CompiledCache>,
}

impl std::fmt::Debug for OperatorRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorRuntime")
            .field("limits", &self.limits)
            .finish()
    }
}

/// Bytes of each pool slot's memory and table kept resident between invocations. A
/// Rust operator's stack ends at 1 MiB and its data and heap start there, so 2 MiB
/// keeps what a typical invocation touches; with the default 64 slots a worker keeps
/// at most 128 MiB of memories resident, and only pages operators actually touched.
/// Measured with `dida bench chain` (the `invoke` row): p50 20–22 µs → 9 µs.
const KEEP_RESIDENT_BYTES: usize = 2 << 20;

impl OperatorRuntime {
    /// An engine with a pooling allocator sized for `limits.concurrent_invocations`,
    /// fuel metering, and a linker providing the operator's imports (and a WASI
    /// environment with no files, no network, no environment variables).
    pub fn new(limits: SandboxLimits) -> anyhow::Result<Self> {
        let slots = limits.concurrent_invocations.max(1);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(slots)
            .total_core_instances(slots * 16)
            .total_memories(slots * 4)
            .total_tables(slots * 16)
            .total_stacks(slots)
            .max_memory_size(limits.memory_bytes)
            // Reset a slot for its next instance by rewriting only the pages the last
            // one touched (found with Linux's PAGEMAP_SCAN where the kernel has it),
            // instead of madvise: no page faults on reuse, and no TLB shoot-down
            // across the worker's threads per invocation. At most this much of each
            // slot stays resident; the rest is decommitted as before.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_BYTES);
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("cannot create the WebAssembly engine")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("cannot link WASI")?;
        bindings::Operator::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(anyhow::Error::from)
            .context("cannot link the operator imports")?;
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            limits,
            slots: Arc::new(Semaphore::new(slots as usize)),
            compiled_cache: None,
        })
    }

    /// Keeps compiled operators in `dir` (see [`crate::compiled_cache`]), so a
    /// component is compiled once per machine, not once per start. A directory that
    /// cannot be used is logged and left out: the runtime compiles as if it had none.
    pub fn with_compiled_cache(mut self, dir: &std::path::Path) -> Self {
        match CompiledCache::open(dir, &self.engine) {
            Ok(cache) => self.compiled_cache = Some(cache),
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                "compiled operators will not be kept on disk"
            ),
        }
        self
    }

    /// The cache of compiled operators, if the runtime has one.
    pub fn compiled_cache(&self) -> Option<&CompiledCache> {
        self.compiled_cache.as_ref()
    }

    /// The limits every invocation runs under.
    pub fn limits(&self) -> SandboxLimits {
        self.limits
    }

    /// Compiles a component and resolves its imports. CPU-heavy: call it off the
    /// async runtime's worker threads. Its cost grows with the component, so use it
    /// only on trusted components (built-ins, the worker's own files); untrusted ones
    /// go through [`crate::bounded`], which compiles them in a child process with a
    /// budget.
    pub fn compile(&self, wasm: &[u8]) -> anyhow::Result<OperatorPre> {
        let Some(cache) = &self.compiled_cache else {
            let component = self.component(wasm)?;
            return self.prepare(&component);
        };
        let entry = cache.entry_of(wasm);
        if let Some(component) = cache.load(&self.engine, &entry) {
            return self.prepare(&component);
        }
        let component = self.component(wasm)?;
        let pre = self.prepare(&component)?;
        match component.serialize() {
            Ok(artifact) => cache.store(&entry, &artifact),
            Err(error) => tracing::warn!(%error, "cannot serialise a compiled operator"),
        }
        Ok(pre)
    }

    /// The operator compiled from the component whose SHA-256 is `digest`, if the
    /// compile cache holds it: how a worker skips compiling a deployed operator again.
    pub(crate) fn cached(&self, digest: &str) -> Option<OperatorPre> {
        let cache = self.compiled_cache.as_ref()?;
        let component = cache.load(&self.engine, &cache.entry(digest))?;
        self.prepare(&component).ok()
    }

    /// Loads an artifact made by the `dida compile-operator` child (see
    /// [`Self::load_artifact`]) and keeps it in the compile cache under `digest`.
    pub(crate) fn load_and_keep_artifact(
        &self,
        digest: &str,
        artifact: &[u8],
    ) -> anyhow::Result<OperatorPre> {
        let pre = self.load_artifact(artifact)?;
        if let Some(cache) = &self.compiled_cache {
            cache.store(&cache.entry(digest), artifact);
        }
        Ok(pre)
    }

    /// Compiles a component, checks that it is an operator (as [`Self::compile`]
    /// does) and returns the compiled artifact, which [`Self::load_artifact`] of a
    /// runtime with the same limits loads without compiling again. This is what the
    /// `dida compile-operator` child process runs, under its budget.
    pub fn compile_to_artifact(&self, wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
        let component = self.component(wasm)?;
        self.prepare(&component)?;
        component
            .serialize()
            .map_err(anyhow::Error::from)
            .context("cannot serialise the compiled component")
    }

    /// Loads an artifact that [`Self::compile_to_artifact`] made in the
    /// `dida compile-operator` child process this process started, and resolves its
    /// imports. wasmtime checks that the artifact was made by the same wasmtime with
    /// a compatible configuration, and refuses it otherwise.
    pub(crate) fn load_artifact(&self, artifact: &[u8]) -> anyhow::Result<OperatorPre> {
        // SAFETY: `Component::deserialize` runs the machine code in the artifact as
        // is, so it must come from wasmtime's own compiler. It does: the only caller
        // passes the stdout of the `dida compile-operator` child it spawned itself
        // from this process's own executable, read through a pipe no one else holds.
        // It never comes from the network or from storage.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(&self.engine, artifact) }
            .map_err(anyhow::Error::from)
            .context("cannot load the compiled component")?;
        self.prepare(&component)
    }

    /// Compiles `wasm` into a component (not yet checked to be an operator).
    fn component(&self, wasm: &[u8]) -> anyhow::Result<Component> {
        Component::new(&self.engine, wasm)
            .map_err(anyhow::Error::from)
            .context("not a valid WebAssembly component")
    }

    /// Resolves a compiled component's imports and checks its `run` export.
    fn prepare(&self, component: &Component) -> anyhow::Result<OperatorPre> {
        let instance_pre = self
            .linker
            .instantiate_pre(component)
            .map_err(anyhow::Error::from)
            .context("the component does not fit the dida:operator world (check its imports)")?;
        bindings::OperatorPre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .context("the component does not export `run`")
    }

    /// Runs `operator` (class name `name`) once, outside any execution, the way a
    /// worker's hop runs it: a fresh store and host state under this runtime's
    /// limits, `storage` as the storage proxy, position 0, no metadata entries and no
    /// previous output. Returns only the output (or why it failed).
    ///
    /// This is the whole invocation — instantiating from the pool and calling `run` —
    /// with no worker, scheduler or network around it, so benchmarks and tests can
    /// measure or exercise it alone. `storage` is called only if the operator uses
    /// storage.
    pub async fn invoke_alone(
        &self,
        operator: &OperatorPre,
        name: &str,
        storage: ExecutionStorage,
        input: &str,
    ) -> Result<String, InvocationError> {
        self.invoke_alone_measured(operator, name, storage, input)
            .await
            .0
    }

    /// [`Self::invoke_alone`], and what the invocation cost as the worker records it
    /// for each operator run: how benchmarks tell instantiation from the call, and
    /// see each instance's memory.
    pub async fn invoke_alone_measured(
        &self,
        operator: &OperatorPre,
        name: &str,
        storage: ExecutionStorage,
        input: &str,
    ) -> (Result<String, InvocationError>, InvocationCost) {
        let execution_id = format!("{name}-alone");
        let meta = ExecutionMeta {
            id: execution_id.clone(),
            order: 0,
            entries: Vec::new(),
        };
        let host = HostState::new(
            storage,
            BTreeMap::new(),
            self.limits.memory_bytes,
            execution_id,
            name.to_string(),
            Capture::new(0, dida_core::limits::MAX_EXECUTION_LOG_BYTES),
        );
        let deadline = tokio::time::Instant::now() + self.limits.wall_time;
        let (result, host) = self
            .invoke(operator, host, meta, input, None, deadline)
            .await;
        let cost = InvocationCost {
            instantiation: host.capture.instantiation(),
            memory_bytes: host.capture.memory_bytes(),
            fuel_used: host.capture.fuel_used(),
        };
        (result, cost)
    }

    /// Runs `run(meta, input, previous)` of an operator in a fresh sandbox, stopping
    /// it at `deadline` (the wall-time limit, counted from when the hop began loading
    /// the operator). Returns the operator's output (or why it failed) and the host
    /// state, which carries the storage pins and metadata the operator left, and in
    /// its capture the fuel the call used.
    pub(crate) async fn invoke(
        &self,
        operator: &OperatorPre,
        host: HostState,
        meta: ExecutionMeta,
        input: &str,
        previous: Option<&str>,
        deadline: tokio::time::Instant,
    ) -> (Result<String, InvocationError>, HostState) {
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the slot semaphore is never closed");
        let mut store = Store::new(&self.engine, host);
        store.limiter(|state| &mut state.limiter);
        if let Err(error) = store
            .set_fuel(self.limits.fuel)
            .and_then(|()| store.fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL)))
        {
            return (
                Err(InvocationError::Instantiation(error.to_string())),
                store.into_data(),
            );
        }
        let call = async {
            let instantiating = std::time::Instant::now();
            let instance = operator
                .instantiate_async(&mut store)
                .await
                .map_err(|e| InvocationError::Instantiation(format!("{e:#}")))?;
            store
                .data()
                .capture
                .set_instantiation(instantiating.elapsed());
            instance
                .call_run(&mut store, &meta, input, previous)
                .await
                .map_err(Err)
                .and_then(|result| result.map_err(|message| Ok(InvocationError::Returned(message))))
                .map_err(|e: Result<InvocationError, wasmtime::Error>| match e {
                    Ok(returned) => returned,
                    Err(trap) => self.classify_trap(&store, trap),
                })
        };
        let result = match tokio::time::timeout_at(deadline, call).await {
            Ok(result) => result,
            Err(_) => Err(InvocationError::WallTime(self.limits.wall_time)),
        };
        let left = store.get_fuel().unwrap_or(0);
        let host = store.into_data();
        host.capture
            .set_fuel_used(self.limits.fuel.saturating_sub(left));
        host.capture
            .set_memory_bytes(host.limiter.memory_bytes as u64);
        (result, host)
    }

    /// Turns a trap into the limit that caused it, when one did.
    fn classify_trap(&self, store: &Store<HostState>, error: wasmtime::Error) -> InvocationError {
        if store.data().limiter.memory_exceeded {
            return InvocationError::OutOfMemory(self.limits.memory_bytes);
        }
        if error.downcast_ref::<Trap>() == Some(&Trap::OutOfFuel) {
            return InvocationError::OutOfFuel(self.limits.fuel);
        }
        let panic = store.data().panic_message();
        let trap = error
            .downcast_ref::<Trap>()
            .map_or_else(|| format!("{error:#}"), ToString::to_string);
        match panic {
            Some(panic) => InvocationError::Trapped(format!("{trap}; it printed: {panic}")),
            None => InvocationError::Trapped(trap),
        }
    }
}
