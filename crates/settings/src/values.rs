//! The value parsers every role's flags share, each enforcing a bound named in
//! [`dida_core::limits`]: a flag is checked once, when it is parsed, the same way by
//! the CLI, the PCS and the PuppetMaster.

use clap::builder::{RangedU64ValueParser, TypedValueParser, ValueParser};
use dida_core::limits::{
    MAX_DEADLINE_MS, MAX_GOSSIP_DELAY_MS, MAX_OPERATOR_CONCURRENCY, MAX_OPERATOR_MEMORY_MB,
    MAX_RETAINED_MB, MAX_VERSIONS, MAX_VNODES,
};
use dida_core::membership::{check_node_id, NodeUrl};
use dida_core::Membership;

/// A deadline or timeout in milliseconds: 1 to [`MAX_DEADLINE_MS`] (zero would fail
/// every call; longer is a typo).
pub fn deadline_ms() -> RangedU64ValueParser<u64> {
    RangedU64ValueParser::new().range(1..=MAX_DEADLINE_MS)
}

/// A deadline in seconds: 1 to [`MAX_DEADLINE_MS`] / 1000.
pub fn deadline_s() -> RangedU64ValueParser<u64> {
    RangedU64ValueParser::new().range(1..=MAX_DEADLINE_MS / 1000)
}

/// A gossip delay in milliseconds: 0 to [`MAX_GOSSIP_DELAY_MS`].
pub fn gossip_delay_ms() -> RangedU64ValueParser<u64> {
    RangedU64ValueParser::new().range(0..=MAX_GOSSIP_DELAY_MS)
}

/// Virtual nodes per storage node: 1 to [`MAX_VNODES`].
pub fn vnodes() -> RangedU64ValueParser<u32> {
    RangedU64ValueParser::new().range(1..=u64::from(MAX_VNODES))
}

/// Versions a replica keeps per key: 1 to [`MAX_VERSIONS`].
pub fn max_versions() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(1..=MAX_VERSIONS as u64)
}

/// A count that must be at least 1 (a replication factor, `--write-acks`,
/// `--max-fuel`, `--max-nodes`); its upper bound depends on other settings and is
/// checked with them.
pub fn positive<T>() -> RangedU64ValueParser<T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
    <T as TryFrom<u64>>::Error: std::error::Error + Send + Sync + 'static,
{
    RangedU64ValueParser::new().range(1..)
}

/// Memory of one operator invocation in MiB: 1 to [`MAX_OPERATOR_MEMORY_MB`].
pub fn operator_memory_mb() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(1..=MAX_OPERATOR_MEMORY_MB as u64)
}

/// Operator invocations a worker runs at once: 1 to [`MAX_OPERATOR_CONCURRENCY`].
pub fn operator_concurrency() -> RangedU64ValueParser<u32> {
    RangedU64ValueParser::new().range(1..=u64::from(MAX_OPERATOR_CONCURRENCY))
}

/// MiB of outcomes the scheduler keeps: 1 to [`MAX_RETAINED_MB`].
pub fn retained_mb() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(1..=MAX_RETAINED_MB as u64)
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
