//! The host side of the operator world: what an operator may call.
//!
//! Storage calls go through the execution's [`ExecutionStorage`] proxy (SPEC §4);
//! metadata entries are kept here and carried on to the next operator; log lines go
//! to the worker's `tracing` output, tagged with the execution and operator.

use std::collections::BTreeMap;

use dida_core::Version;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::consistency::ExecutionStorage;
use crate::runtime::bindings::dida::operator::{log, meta, storage, types};

/// Most bytes of an operator's stderr kept to explain a trap.
const STDERR_CAPTURE_BYTES: usize = 16 * 1024;

/// Caps linear-memory growth and remembers whether the cap was hit, so a failed
/// allocation can be reported as "memory limit exceeded" rather than as a bare trap.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    max_bytes: usize,
    pub memory_exceeded: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.memory_exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Everything one invocation's store holds.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: MemoryOutputPipe,
    pub(crate) limiter: MemoryLimiter,
    /// The execution's storage proxy.
    pub(crate) storage: ExecutionStorage,
    /// User metadata entries, updated by `meta.set`.
    pub(crate) entries: BTreeMap<String, String>,
    execution_id: String,
    operator: String,
}

impl HostState {
    /// A fresh state for one invocation of `operator` in execution `execution_id`.
    pub(crate) fn new(
        storage: ExecutionStorage,
        entries: BTreeMap<String, String>,
        memory_bytes: usize,
        execution_id: String,
        operator: String,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE_BYTES);
        // No files, no sockets, no environment: the operator sees only its imports.
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        Self {
            wasi,
            table: ResourceTable::new(),
            stderr,
            limiter: MemoryLimiter {
                max_bytes: memory_bytes,
                memory_exceeded: false,
            },
            storage,
            entries,
            execution_id,
            operator,
        }
    }

    /// The last line the operator wrote to stderr (a Rust panic message lands there).
    pub(crate) fn panic_message(&self) -> Option<String> {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        text.lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map(str::to_string)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn to_wit(version: Version) -> types::Version {
    types::Version {
        number: version.number,
        replica: version.replica,
    }
}

impl types::Host for HostState {}

impl storage::Host for HostState {
    async fn read(
        &mut self,
        key: String,
        version: Option<types::Version>,
    ) -> Result<Option<types::StoredRecord>, String> {
        let version = version.map(|v| Version::new(v.number, v.replica));
        let record = self.storage.read(&key, version).await?;
        Ok(record.map(|r| types::StoredRecord {
            key: r.key,
            version: to_wit(r.version),
            value: r.value,
        }))
    }

    async fn write(&mut self, key: String, value: String) -> Result<types::Version, String> {
        self.storage.write(&key, &value).await.map(to_wit)
    }

    async fn update_if_value_is(
        &mut self,
        key: String,
        old: String,
        new: String,
    ) -> Result<Option<types::Version>, String> {
        Ok(self
            .storage
            .update_if_value_is(&key, &old, &new)
            .await?
            .map(to_wit))
    }
}

impl meta::Host for HostState {
    fn get(&mut self, name: String) -> Option<String> {
        self.entries.get(&name).cloned()
    }

    fn set(&mut self, name: String, value: String) {
        self.entries.insert(name, value);
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let (execution, operator) = (&self.execution_id, &self.operator);
        match level {
            log::Level::Trace => tracing::trace!(execution, operator, "{message}"),
            log::Level::Debug => tracing::debug!(execution, operator, "{message}"),
            log::Level::Info => tracing::info!(execution, operator, "{message}"),
            log::Level::Warn => tracing::warn!(execution, operator, "{message}"),
            log::Level::Error => tracing::error!(execution, operator, "{message}"),
        }
    }
}
