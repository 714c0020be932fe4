//! # dida-sdk: write a dida operator in a few lines of Rust
//!
//! A dida **operator** is one step of an application chain (SPEC §3): the worker
//! calls it with the execution's metadata, the client's input and the previous
//! operator's output, and it returns its own output or an error. Operators are
//! untrusted code, so they are shipped as WebAssembly components and run in a
//! sandbox; the contract between the worker and an operator is the WIT world
//! `dida:operator/operator` (`wit/operator.wit` at the root of the repository).
//!
//! This crate hides the component-model plumbing behind one trait and one macro:
//!
//! ```ignore
//! use dida_sdk::{Context, Operator};
//!
//! struct HelloOperator;
//!
//! impl Operator for HelloOperator {
//!     fn run(ctx: &mut Context, input: &str, _previous: Option<&str>) -> Result<String, String> {
//!         let greeting = format!("hello, {input}");
//!         let version = ctx.write(input, &greeting)?;
//!         ctx.info(format!("wrote {input}@{version}"));
//!         Ok(greeting)
//!     }
//! }
//!
//! dida_sdk::export_operator!(HelloOperator);
//! ```
//!
//! Built with `cargo build --release --target wasm32-wasip2` as a `cdylib` whose
//! library is named after the operator class (`[lib] name = "HelloOperator"`), the
//! crate becomes `HelloOperator.wasm`, which a worker loads by that name. See
//! `docs/operators.md` for the whole guide.
//!
//! ## What the worker guarantees
//!
//! - **Consistency (SPEC §4).** Every storage call goes through the worker's storage
//!   proxy. Within one execution, a read (without a version) of a key that this or an
//!   earlier operator of the execution already read or wrote returns exactly that
//!   version, so operators of a chain see one consistent snapshot of what they touched.
//!   The one exception is [`Context::read_latest`], for compare-and-swap retry loops.
//! - **Isolation.** Every invocation runs in a fresh instance: no global state
//!   survives from one call to the next, which is why [`Operator::run`] takes no
//!   `self`. Data meant for later operators goes to the metadata
//!   ([`Context::meta_set`]) or to storage.
//! - **Limits.** The worker bounds CPU (fuel), memory and wall time. An operator that
//!   exceeds a limit, panics (a panic traps the instance) or returns `Err` fails only
//!   its own execution.

#![warn(missing_docs)]

use std::fmt;
use std::str::FromStr;

/// The bindings generated from `wit/operator.wit`. Not part of the public API: they
/// are public only because [`export_operator!`] expands, in the operator's crate, to
/// code that names them.
#[doc(hidden)]
#[allow(clippy::all)] // Generated code: its style is wit-bindgen's business.
pub mod __bindings {
    wit_bindgen::generate!({
        world: "operator",
        path: "../../wit",
        // The export macro is invoked from the operator's crate, not from here.
        pub_export_macro: true,
        export_macro_name: "__export_operator_world",
        default_bindings_module: "dida_sdk::__bindings",
    });
}

use __bindings::dida::operator::{
    log as wit_log, meta as wit_meta, storage as wit_storage, types as wit_types,
};

/// An operator: one step of an application chain.
///
/// Implement it on a unit struct and export the struct with [`export_operator!`].
/// There is no `self`: the worker instantiates the component afresh for every
/// invocation, so an operator has no state of its own between calls.
pub trait Operator {
    /// Runs the operator once.
    ///
    /// - `ctx` gives the execution's metadata, the storage API, the metadata entries
    ///   and logging;
    /// - `input` is the client's input string (the same for every operator of the
    ///   chain);
    /// - `previous` is the previous operator's output, `None` for the first operator.
    ///
    /// Returns the operator's output, stored in the request and handed to the next
    /// operator, or an error message that stops the execution and is reported to the
    /// client. [`StorageError`] converts into `String`, so `?` works on storage calls.
    fn run(ctx: &mut Context, input: &str, previous: Option<&str>) -> Result<String, String>;
}

/// The execution's metadata as it stood when this operator started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Unique id the scheduler gave the execution: the same for every operator of
    /// the chain, different for every execution (handy as a per-execution key).
    pub id: String,
    /// Position of this operator in the chain, 0 for the first.
    pub order: u32,
    /// User-visible metadata entries set by earlier operators, in the order the
    /// worker handed them over. Use [`Context::meta_get`] to also see the entries
    /// this operator set itself.
    pub entries: Vec<(String, String)>,
}

/// A record version: `number` orders the versions of a key, `replica` (the storage
/// node that created it) breaks ties. The derived order is exactly that: by number,
/// then by replica (SPEC §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Version number, larger for newer versions of the key.
    pub number: u64,
    /// Id of the storage replica that created the version.
    pub replica: u32,
}

impl fmt::Display for Version {
    /// `N.R`: number, a dot, replica id — the form used throughout dida's output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.number, self.replica)
    }
}

/// Why a string is not a [`Version`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseVersionError(String);

impl fmt::Display for ParseVersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a version (expected NUMBER.REPLICA): {:?}", self.0)
    }
}

impl std::error::Error for ParseVersionError {}

impl FromStr for Version {
    type Err = ParseVersionError;

    /// Parses the `N.R` form of [`Display`](fmt::Display), so that a version an
    /// operator printed (in its output or in storage) can be read back, for example
    /// to pass it to [`Context::read_version`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = || ParseVersionError(s.to_string());
        let (number, replica) = s.split_once('.').ok_or_else(error)?;
        Ok(Version {
            number: number.parse().map_err(|_| error())?,
            replica: replica.parse().map_err(|_| error())?,
        })
    }
}

impl From<wit_types::Version> for Version {
    fn from(v: wit_types::Version) -> Self {
        Version {
            number: v.number,
            replica: v.replica,
        }
    }
}

impl From<Version> for wit_types::Version {
    fn from(v: Version) -> Self {
        wit_types::Version {
            number: v.number,
            replica: v.replica,
        }
    }
}

/// One version of one key, as returned by a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The key read.
    pub key: String,
    /// The version read.
    pub version: Version,
    /// The value of that version.
    pub value: String,
}

impl From<wit_types::StoredRecord> for Record {
    fn from(r: wit_types::StoredRecord) -> Self {
        Record {
            key: r.key,
            version: r.version.into(),
            value: r.value,
        }
    }
}

/// A storage call failed (for example no replica of the key answered, or a version
/// the execution depends on was discarded).
///
/// Errors the platform cannot recover from fail the execution even if the operator
/// ignores them, so the usual reaction is to propagate it with `?`: it converts into
/// the `String` error of [`Operator::run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError {
    /// The worker's human-readable explanation.
    pub message: String,
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "storage error: {}", self.message)
    }
}

impl std::error::Error for StorageError {}

impl From<StorageError> for String {
    fn from(e: StorageError) -> Self {
        e.to_string()
    }
}

fn storage_error(message: String) -> StorageError {
    StorageError { message }
}

/// Severity of a log message, from the most verbose to the most severe. The worker
/// writes operator logs to its own log, tagged with execution id and operator, and
/// filters them with its log level like its own messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal progress.
    Info,
    /// Something unexpected that the operator handled.
    Warn,
    /// Something failed.
    Error,
}

impl From<Level> for wit_log::Level {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => wit_log::Level::Trace,
            Level::Debug => wit_log::Level::Debug,
            Level::Info => wit_log::Level::Info,
            Level::Warn => wit_log::Level::Warn,
            Level::Error => wit_log::Level::Error,
        }
    }
}

/// Everything an operator may use during one invocation: the execution's metadata,
/// the storage API (SPEC §2.2, through the worker's consistent proxy), the metadata
/// entries, and logging.
///
/// The worker creates one per invocation and hands it to [`Operator::run`] by
/// exclusive reference; methods take `&self` so that calls can be freely combined
/// (`ctx.read(&ctx.meta().id)`), and the exclusive reference leaves room for future
/// per-invocation state without breaking operators.
#[derive(Debug)]
pub struct Context {
    meta: Meta,
}

impl Context {
    /// The execution's metadata (id, position of this operator, entries set by
    /// earlier operators) as it stood when this operator started.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The current value of metadata entry `name`: set by an earlier operator of the
    /// execution or by this one, `None` if never set.
    pub fn meta_get(&self, name: &str) -> Option<String> {
        wit_meta::get(name)
    }

    /// Sets metadata entry `name` for this operator and every later operator of the
    /// execution. Metadata travels with the request, so it is the way to hand small
    /// data (an id, a price) down the chain without a storage round trip.
    pub fn meta_set(&self, name: &str, value: &str) {
        wit_meta::set(name, value)
    }

    /// The newest version of `key`, or `None` if the key has no value.
    ///
    /// If the execution already read or wrote `key` (in this operator or an earlier
    /// one), this returns exactly that version instead (SPEC §4); otherwise the
    /// version returned is pinned for the rest of the execution. To retry a lost
    /// compare-and-swap, re-read with [`read_latest`](Self::read_latest) instead.
    pub fn read(&self, key: &str) -> Result<Option<Record>, StorageError> {
        wit_storage::read(key, None)
            .map(|record| record.map(Record::from))
            .map_err(storage_error)
    }

    /// The newest version of `key` in storage right now, or `None` if the key has no
    /// value, **ignoring** what this execution pinned: the escape hatch from SPEC §4
    /// for read-modify-write loops.
    ///
    /// [`read`](Self::read) keeps a key's version stable for the whole execution, so
    /// after a lost [`update_if_value_is`](Self::update_if_value_is) it returns the
    /// same stale value again and a retry built on it can never succeed. Read once
    /// with `read`, and after each lost compare-and-swap re-read with `read_latest`:
    ///
    /// ```ignore
    /// let mut current = ctx.read("counter")?.ok_or("counter has no value")?;
    /// loop {
    ///     let next = (current.value.parse::<u64>().map_err(|e| e.to_string())? + 1).to_string();
    ///     if ctx.update_if_value_is("counter", &current.value, &next)?.is_some() {
    ///         break;
    ///     }
    ///     // Lost the race: someone else changed the counter; look again.
    ///     current = ctx.read_latest("counter")?.ok_or("counter has no value")?;
    /// }
    /// ```
    ///
    /// The worker reads the key at its primary, the storage node that executes (and
    /// so compares) every write of the key, or at another replica when the primary
    /// cannot be reached. The version returned replaces the execution's pin of `key`:
    /// later reads of `key` in this execution, in this operator or a later one, return
    /// it (with `None`, the key is no longer pinned).
    pub fn read_latest(&self, key: &str) -> Result<Option<Record>, StorageError> {
        wit_storage::read_latest(key)
            .map(|record| record.map(Record::from))
            .map_err(storage_error)
    }

    /// Exactly version `version` of `key`, or `None` if no replica holds it (any
    /// more: replicas keep a bounded number of versions per key).
    pub fn read_version(
        &self,
        key: &str,
        version: Version,
    ) -> Result<Option<Record>, StorageError> {
        wit_storage::read(key, Some(version.into()))
            .map(|record| record.map(Record::from))
            .map_err(storage_error)
    }

    /// Writes a new version of `key` with `value` and returns it. Later reads of
    /// `key` in this execution return this version.
    pub fn write(&self, key: &str, value: &str) -> Result<Version, StorageError> {
        wit_storage::write(key, value)
            .map(Version::from)
            .map_err(storage_error)
    }

    /// Compare-and-swap: writes `new` only if the newest value of `key` is `old`
    /// (a key with no value never matches). Returns the new version, or `None` when
    /// the comparison failed. All writes and conditional updates of a key are
    /// totally ordered, so this is the building block for counters, reservations
    /// and other read-modify-write steps that must not lose updates.
    pub fn update_if_value_is(
        &self,
        key: &str,
        old: &str,
        new: &str,
    ) -> Result<Option<Version>, StorageError> {
        wit_storage::update_if_value_is(key, old, new)
            .map(|version| version.map(Version::from))
            .map_err(storage_error)
    }

    /// Logs `message` at `level` through the worker's log.
    pub fn log(&self, level: Level, message: impl AsRef<str>) {
        wit_log::log(level.into(), message.as_ref())
    }

    /// Logs at [`Level::Trace`].
    pub fn trace(&self, message: impl AsRef<str>) {
        self.log(Level::Trace, message)
    }

    /// Logs at [`Level::Debug`].
    pub fn debug(&self, message: impl AsRef<str>) {
        self.log(Level::Debug, message)
    }

    /// Logs at [`Level::Info`].
    pub fn info(&self, message: impl AsRef<str>) {
        self.log(Level::Info, message)
    }

    /// Logs at [`Level::Warn`].
    pub fn warn(&self, message: impl AsRef<str>) {
        self.log(Level::Warn, message)
    }

    /// Logs at [`Level::Error`].
    pub fn error(&self, message: impl AsRef<str>) {
        self.log(Level::Error, message)
    }
}

/// Support code for [`export_operator!`]; not part of the public API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    /// Adapts the generated `run` export to [`Operator::run`].
    pub fn run<O: Operator>(
        meta: wit_types::ExecutionMeta,
        input: String,
        previous_output: Option<String>,
    ) -> Result<String, String> {
        let mut ctx = Context {
            meta: Meta {
                id: meta.id,
                order: meta.order,
                entries: meta.entries,
            },
        };
        O::run(&mut ctx, &input, previous_output.as_deref())
    }

    pub use crate::__bindings::dida::operator::types::ExecutionMeta;
    pub use crate::__bindings::Guest;
}

/// Exports a type implementing [`Operator`] as the component's `run` function.
///
/// Invoke it once, at the top level of the operator's crate (a `cdylib` built for
/// `wasm32-wasip2`):
///
/// ```ignore
/// dida_sdk::export_operator!(MyOperator);
/// ```
///
/// It generates the `run` export of the `dida:operator/operator` world (and the
/// metadata that lets the toolchain turn the crate into a component), so the crate
/// needs no dependency on `wit-bindgen` of its own.
#[macro_export]
macro_rules! export_operator {
    ($operator:ty) => {
        const _: () = {
            struct __DidaOperatorExport;

            impl $crate::__private::Guest for __DidaOperatorExport {
                fn run(
                    meta: $crate::__private::ExecutionMeta,
                    input: ::std::string::String,
                    previous_output: ::core::option::Option<::std::string::String>,
                ) -> ::core::result::Result<::std::string::String, ::std::string::String> {
                    $crate::__private::run::<$operator>(meta, input, previous_output)
                }
            }

            $crate::__bindings::__export_operator_world!(__DidaOperatorExport with_types_in $crate::__bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_displays_and_parses_as_number_dot_replica() {
        let version = Version {
            number: 12,
            replica: 3,
        };
        assert_eq!(version.to_string(), "12.3");
        assert_eq!("12.3".parse::<Version>(), Ok(version));
        assert!("12".parse::<Version>().is_err());
        assert!("a.3".parse::<Version>().is_err());
        assert!("12.-1".parse::<Version>().is_err());
    }

    #[test]
    fn versions_order_by_number_then_replica() {
        let v = |number, replica| Version { number, replica };
        assert!(v(1, 9) < v(2, 0));
        assert!(v(2, 0) < v(2, 1));
    }

    #[test]
    fn storage_errors_convert_to_the_run_error() {
        let error: String = StorageError {
            message: "no replica answered".to_string(),
        }
        .into();
        assert_eq!(error, "storage error: no replica answered");
    }
}
