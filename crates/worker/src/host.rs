//! The host side of the operator world: what an operator may call.
//!
//! Storage calls go through the execution's [`ExecutionStorage`] proxy (SPEC §4);
//! metadata entries are kept here and carried on to the next operator; log lines go
//! to the worker's `tracing` output, tagged with the execution and operator, and to
//! the invocation's [`Capture`] with what it prints on stdout and stderr, which the
//! execution keeps for `dida logs`.

use std::collections::BTreeMap;

use dida_core::{Record, Version};
use dida_proto::execution::LogLevel;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::capture::{Capture, Stream};
use crate::consistency::ExecutionStorage;
use crate::runtime::bindings::dida::operator::{log, meta, storage, types};

/// Caps linear-memory growth and remembers whether the cap was hit, so a failed
/// allocation can be reported as "memory limit exceeded" rather than as a bare trap.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    max_bytes: usize,
    pub memory_exceeded: bool,
    /// The linear memory of the instance, its memories summed: what it was
    /// allowed to grow to (wasmtime asks for each memory's initial size too).
    pub memory_bytes: usize,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.memory_exceeded = true;
            return Ok(false);
        }
        self.memory_bytes = self
            .memory_bytes
            .saturating_add(desired.saturating_sub(current));
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
    /// Log lines, printed output and fuel of this invocation.
    pub(crate) capture: Capture,
    pub(crate) limiter: MemoryLimiter,
    /// The execution's storage proxy.
    pub(crate) storage: ExecutionStorage,
    /// User metadata entries, updated by `meta.set`.
    pub(crate) entries: BTreeMap<String, String>,
    execution_id: String,
    operator: String,
}

impl HostState {
    /// A fresh state for one invocation of `operator` in execution `execution_id`,
    /// recording its logs and output in `capture`.
    pub(crate) fn new(
        storage: ExecutionStorage,
        entries: BTreeMap<String, String>,
        memory_bytes: usize,
        execution_id: String,
        operator: String,
        capture: Capture,
    ) -> Self {
        // No files, no sockets, no environment: the operator sees only its imports.
        let wasi = WasiCtx::builder()
            .stdout(capture.output(Stream::Stdout))
            .stderr(capture.output(Stream::Stderr))
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            capture,
            limiter: MemoryLimiter {
                max_bytes: memory_bytes,
                memory_exceeded: false,
                memory_bytes: 0,
            },
            storage,
            entries,
            execution_id,
            operator,
        }
    }

    /// What the operator wrote to stderr before trapping (see [`panic_report`]).
    pub(crate) fn panic_message(&self) -> Option<String> {
        panic_report(&self.capture.stderr_tail())
    }
}

/// An operator's stderr summed up on one line: from its last Rust panic report
/// (`thread '…' panicked at FILE:LINE:COL:` then the message) when there is one, else
/// its last line.
///
/// The standard library ends a panic report with the hint `note: run with
/// RUST_BACKTRACE=1 …`. That hint is dropped: it is always the last line, and taking
/// the last line used to report it instead of the panic message.
fn panic_report(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    let start = lines
        .iter()
        .rposition(|l| l.contains(" panicked at "))
        .unwrap_or(lines.len().saturating_sub(1));
    let report = lines.get(start..)?.join(" ");
    (!report.is_empty()).then_some(report)
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

fn to_wit_record(record: Record) -> types::StoredRecord {
    types::StoredRecord {
        key: record.key,
        version: to_wit(record.version),
        value: record.value,
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
        let record = self
            .storage
            .read(&key, version)
            .await
            .map_err(|e| e.to_string())?;
        Ok(record.map(to_wit_record))
    }

    async fn read_latest(&mut self, key: String) -> Result<Option<types::StoredRecord>, String> {
        let record = self
            .storage
            .read_latest(&key)
            .await
            .map_err(|e| e.to_string())?;
        Ok(record.map(to_wit_record))
    }

    async fn write(&mut self, key: String, value: String) -> Result<types::Version, String> {
        // The guest sees text (the WIT interface); the text says whether the write
        // may have been applied (see `StorageError`).
        self.storage
            .write(&key, &value)
            .await
            .map(to_wit)
            .map_err(|e| e.to_string())
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
            .await
            .map_err(|e| e.to_string())?
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
        let kept = match level {
            log::Level::Trace => {
                tracing::trace!(execution, operator, "{message}");
                LogLevel::Trace
            }
            log::Level::Debug => {
                tracing::debug!(execution, operator, "{message}");
                LogLevel::Debug
            }
            log::Level::Info => {
                tracing::info!(execution, operator, "{message}");
                LogLevel::Info
            }
            log::Level::Warn => {
                tracing::warn!(execution, operator, "{message}");
                LogLevel::Warn
            }
            log::Level::Error => {
                tracing::error!(execution, operator, "{message}");
                LogLevel::Error
            }
        };
        self.capture.log(kept, &message);
    }
}

#[cfg(test)]
mod tests {
    use super::panic_report;

    #[test]
    fn panic_report_keeps_the_message_not_the_backtrace_hint() {
        let stderr = "starting\n\
            thread '<unnamed>' panicked at src/lib.rs:17:9:\n\
            TrapOperator panicked on purpose\n\
            note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            panic_report(stderr).as_deref(),
            Some(
                "thread '<unnamed>' panicked at src/lib.rs:17:9: TrapOperator panicked on purpose"
            )
        );
        assert_eq!(
            panic_report("one\ntwo\n\n").as_deref(),
            Some("two"),
            "no panic report: the last line"
        );
        assert_eq!(panic_report(""), None);
        assert_eq!(
            panic_report("note: run with `RUST_BACKTRACE=1` ...\n"),
            None
        );
    }
}
