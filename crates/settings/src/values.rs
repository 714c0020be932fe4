//! The value parsers every role's flags share, each enforcing a bound named in
//! [`dida_core::limits`]: a flag is checked once, when it is parsed, the same way by
//! the CLI, the PCS and the PuppetMaster.

use std::ffi::OsStr;
use std::marker::PhantomData;

use clap::builder::{TypedValueParser, ValueParser};
use clap::error::ErrorKind;
use dida_core::limits::{
    MAX_DEADLINE_MS, MAX_GOSSIP_DELAY_MS, MAX_OPERATOR_CONCURRENCY, MAX_OPERATOR_MEMORY_MB,
    MAX_RETAINED_MB, MAX_VERSIONS, MAX_VNODES,
};
use dida_core::listen::ListenAddr;
use dida_core::membership::{check_node_id, NodeUrl};
use dida_core::Membership;

/// A whole number from `min` to `max`, refused with a sentence naming the flag and
/// its bounds (`--vnodes must be from 1 to 4096, got 5000`).
#[derive(Debug, Clone)]
pub struct Bounded<T> {
    min: u64,
    max: u64,
    /// What follows the bound in the message: a unit, a reason.
    unit: &'static str,
    value: PhantomData<fn() -> T>,
}

impl<T> Bounded<T> {
    fn new(min: u64, max: u64, unit: &'static str) -> Self {
        Self {
            min,
            max,
            unit,
            value: PhantomData,
        }
    }

    fn refusal(&self, flag: &str, text: &str) -> String {
        match (self.min, self.max) {
            (0, max) => format!("{flag} must be at most {max}{}, got {text}", self.unit),
            (min, u64::MAX) => format!("{flag} must be at least {min}{}, got {text}", self.unit),
            (min, max) => format!(
                "{flag} must be from {min} to {max}{}, got {text}",
                self.unit
            ),
        }
    }
}

impl<T> TypedValueParser for Bounded<T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let flag = arg
            .and_then(|a| a.get_long())
            .map_or_else(|| "the value".to_string(), |long| format!("--{long}"));
        let text = value.to_string_lossy();
        text.parse::<u64>()
            .ok()
            .filter(|n| (self.min..=self.max).contains(n))
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| {
                clap::Error::raw(
                    ErrorKind::ValueValidation,
                    format!("{}\n", self.refusal(&flag, &text)),
                )
                .with_cmd(command)
            })
    }
}

/// A deadline or timeout in milliseconds: 1 to [`MAX_DEADLINE_MS`] (zero would fail
/// every call; longer is a typo).
pub fn deadline_ms() -> Bounded<u64> {
    Bounded::new(1, MAX_DEADLINE_MS, " milliseconds (one hour)")
}

/// A deadline in seconds: 1 to [`MAX_DEADLINE_MS`] / 1000.
pub fn deadline_s() -> Bounded<u64> {
    Bounded::new(1, MAX_DEADLINE_MS / 1000, " seconds")
}

/// A gossip delay in milliseconds: 0 to [`MAX_GOSSIP_DELAY_MS`].
pub fn gossip_delay_ms() -> Bounded<u64> {
    Bounded::new(0, MAX_GOSSIP_DELAY_MS, " milliseconds")
}

/// Virtual nodes per storage node: 1 to [`MAX_VNODES`].
pub fn vnodes() -> Bounded<u32> {
    Bounded::new(
        1,
        u64::from(MAX_VNODES),
        " (every node and client builds a ring with that many points per node)",
    )
}

/// Versions a replica keeps per key: 1 to [`MAX_VERSIONS`].
pub fn max_versions() -> Bounded<usize> {
    Bounded::new(1, MAX_VERSIONS as u64, "")
}

/// A count that must be at least 1 (a replication factor, `--write-acks`,
/// `--max-fuel`, `--max-nodes`); its upper bound depends on other settings and is
/// checked with them.
pub fn positive<T>() -> Bounded<T> {
    Bounded::new(1, u64::MAX, "")
}

/// Memory of one operator invocation in MiB: 1 to [`MAX_OPERATOR_MEMORY_MB`].
pub fn operator_memory_mb() -> Bounded<usize> {
    Bounded::new(1, MAX_OPERATOR_MEMORY_MB as u64, "")
}

/// Operator invocations a worker runs at once: 1 to [`MAX_OPERATOR_CONCURRENCY`].
pub fn operator_concurrency() -> Bounded<u32> {
    Bounded::new(1, u64::from(MAX_OPERATOR_CONCURRENCY), "")
}

/// MiB of outcomes the scheduler keeps: 1 to [`MAX_RETAINED_MB`].
pub fn retained_mb() -> Bounded<usize> {
    Bounded::new(1, MAX_RETAINED_MB as u64, "")
}

/// A node id (letters, digits, `-` and `_`): it names the node's certificate and
/// appears in file names and logs.
pub fn node_id() -> ValueParser {
    ValueParser::new(
        clap::builder::NonEmptyStringValueParser::new().try_map(|text: String| {
            check_node_id(&text)
                .map(|_| text)
                .map_err(|e| e.to_string())
        }),
    )
}

/// A membership list `ID=URL,ID=URL,…`, checked and kept as written.
pub fn membership() -> ValueParser {
    ValueParser::new(
        clap::builder::NonEmptyStringValueParser::new().try_map(|text: String| {
            Membership::parse(&text)
                .map(|_| text)
                .map_err(|e| e.to_string())
        }),
    )
}

/// A node URL `http://HOST:PORT`, checked and kept as written.
pub fn node_url() -> ValueParser {
    ValueParser::new(
        clap::builder::NonEmptyStringValueParser::new().try_map(|text: String| {
            NodeUrl::parse(&text)
                .map(|_| text)
                .map_err(|e| e.to_string())
        }),
    )
}

/// A list of node URLs `URL[,URL…]` (the seeds of `--join`), checked and kept as
/// written.
pub fn node_urls() -> ValueParser {
    ValueParser::new(
        clap::builder::NonEmptyStringValueParser::new().try_map(|text: String| {
            if split_urls(&text).next().is_none() {
                return Err("give at least one URL".to_string());
            }
            for url in split_urls(&text) {
                NodeUrl::parse(url).map_err(|e| e.to_string())?;
            }
            Ok(text)
        }),
    )
}

/// The URLs of a comma-separated list, trimmed, empty entries skipped.
pub fn split_urls(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|url| !url.is_empty())
}

/// The address a node binds, `HOST:PORT` (`--listen`), checked and kept as written.
pub fn listen_addr() -> ValueParser {
    ValueParser::new(
        clap::builder::NonEmptyStringValueParser::new()
            .try_map(|text: String| ListenAddr::parse(&text).map(|_| text)),
    )
}

/// A listening address `HOST:PORT` (a name or an address), checked and kept as
/// written.
pub fn host_port() -> ValueParser {
    ValueParser::new(
        clap::builder::NonEmptyStringValueParser::new().try_map(|text: String| {
            NodeUrl::parse(&format!("http://{text}"))
                .map(|_| text.clone())
                .map_err(|_| format!("{text:?} is not HOST:PORT"))
        }),
    )
}
