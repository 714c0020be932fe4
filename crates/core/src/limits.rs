//! Size limits for everything that crosses the wire or is read from a file, in one
//! place.
//!
//! The limits exist so that a buggy or hostile client gets a clear error instead of
//! making a node allocate without bound. They are deliberately generous for the
//! platform's use (small keys, values up to a megabyte). Every limit is listed, with
//! its flag where it has one, in `docs/limits.md`; keep the two in step.

use std::time::Duration;

/// Largest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// Largest value, in bytes of UTF-8.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// Largest input string of an execution (1 MiB), checked by the scheduler at
/// submit. An input is what the first operator reads — typically a key or a value —
/// so it gets the same limit as a value; the scheduler keeps a running execution's
/// input until it ends, so the limit also bounds what each submit can make it hold.
pub const MAX_INPUT_BYTES: usize = MAX_VALUE_BYTES;

/// Most operators in one chain (10 001, positions 0 to 10 000). The scheduler keeps
/// per-operator state for every running execution, and an application file longer
/// than this is certainly a mistake.
pub const MAX_CHAIN_OPERATORS: usize = 10_001;

/// Largest request one worker hands to the next on a chain hop (16 MiB, encoded).
///
/// The request carries the input and every output so far, so it grows with each
/// hop. The transport refuses messages over 64 MiB (`MAX_MESSAGE_BYTES` of
/// `dida-proto`); a hop over it would be lost in transit and the client would wait
/// for the execution's timeout. At 16 MiB the request, and the outcome report built
/// from the same outputs, stay a quarter of the transport's limit: a worker that would
/// send a larger request fails the execution at once, with a clear error, instead.
pub const MAX_CHAIN_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// Default of the scheduler's `--max-retained-mb` (256 MiB): the bytes of outcomes
/// (and of running executions' inputs) it keeps for clients to fetch. Outcomes are
/// evicted oldest first beyond it (and beyond 100 000 of them), so a burst of large
/// outcomes cannot grow the scheduler without bound; 256 MiB keeps over a thousand
/// outcomes even at the 16 MiB request limit, and every one of the 100 000 at
/// typical sizes (a few hundred bytes).
pub const DEFAULT_RETAINED_BYTES: usize = 256 * 1024 * 1024;

/// Most bytes of log text an execution keeps (64 KiB): its operators' SDK `log`
/// calls and what they print on stdout and stderr. The lines ride in the request
/// from hop to hop and the scheduler keeps them with the outcome, so they are
/// bounded like the rest of it: each operator gets what the earlier ones left, keeps
/// its first lines that fit and ends with one line saying how many bytes it dropped.
/// A worker holds at most this much of a running operator's output.
pub const MAX_EXECUTION_LOG_BYTES: usize = 64 * 1024;

/// Most finished executions the scheduler keeps (100 000), with their outcomes,
/// per-operator runs and logs; beyond it, or beyond `--max-retained-mb`, the oldest
/// are forgotten first.
pub const KEPT_EXECUTIONS: usize = 100_000;

/// Most executions one `ListExecutions` call (`dida executions --limit`) returns
/// (1000); the default is 20.
pub const MAX_LISTED_EXECUTIONS: usize = 1000;

/// Largest line of a `populate` data file: a key of [`MAX_KEY_BYTES`], the comma, a
/// value of [`MAX_VALUE_BYTES`] and a carriage return. A longer line cannot be a
/// valid record, so reading stops there instead of buffering it.
pub const MAX_DATA_LINE_BYTES: usize = MAX_KEY_BYTES + 1 + MAX_VALUE_BYTES + 1;

/// Largest `populate` data file (64 MiB). The file is checked whole before any
/// record is written, so it is held in memory; 64 MiB is far beyond the course's data
/// files and small enough for any client machine.
pub const MAX_DATA_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Largest line of a PuppetMaster script or an application file: a `client` line
/// with an input of [`MAX_INPUT_BYTES`] and room for its command and file name.
pub const MAX_SCRIPT_LINE_BYTES: usize = MAX_INPUT_BYTES + 8 * 1024;

/// Largest PuppetMaster script or application file (4 MiB): both are written by
/// hand (an application of [`MAX_CHAIN_OPERATORS`] lines is well under 2 MiB), and
/// both are read whole.
pub const MAX_SCRIPT_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Largest operator file (`<ClassName>.wasm`) a worker loads (48 MiB). A Rust
/// operator is a few hundred KiB, but a Python or JavaScript one carries its
/// interpreter (componentize-py's are about 19 MB); compiling is CPU-heavy and a
/// worker keeps every compiled operator, so a file far larger than any real operator
/// is refused before it is read. Below the transport's 64 MiB message limit, so a
/// deploy of the largest file still fits one request.
pub const MAX_OPERATOR_FILE_BYTES: u64 = 48 * 1024 * 1024;

/// Most virtual nodes per storage node on the ring (4096, 32 times the default 128).
/// Every node and client builds the ring, with a point and a preference list per
/// virtual node, and anti-entropy compares ranges one by one; at 4096 a 16-node ring
/// has 65 536 ranges (a few MB, built in milliseconds), while the 50 000 000 of the
/// hostile review took 1.6 GB.
pub const MAX_VNODES: u32 = 4096;

/// Longest deadline or timeout any flag accepts (one hour, in milliseconds). Every
/// deadline must also be positive: a zero deadline fails every call. A longer one is
/// a typo, and would leave a caller hanging on a node that is gone.
pub const MAX_DEADLINE_MS: u64 = 3_600_000;

/// Largest gossip delay any flag or script line accepts, in milliseconds (ten
/// minutes): the delay is an experiment's knob, and a longer one only stalls the
/// cluster.
pub const MAX_GOSSIP_DELAY_MS: u64 = 600_000;

/// Most versions of a key a storage node keeps (`--max-versions`, 1 to 1,000,000):
/// every replica holds that many per key, and anti-entropy sends them all. The
/// bound refuses a value no deployment means (a count near 2^64); it is as high
/// as the fault suite needs, which keeps every version a run writes so that its
/// checkers see the whole history of each key.
pub const MAX_VERSIONS: usize = 1_000_000;

/// Largest memory of one operator invocation, in MiB (`--max-memory-mb`): a 32-bit
/// WebAssembly memory cannot pass 4 GiB.
pub const MAX_OPERATOR_MEMORY_MB: usize = 4096;

/// Most operator invocations a worker runs at once (`--concurrency`): each holds a
/// pool slot whose memories are reserved up front (virtual memory), so the pool
/// must stay sane.
pub const MAX_OPERATOR_CONCURRENCY: u32 = 1024;

/// Default CPU budget of one operator invocation (`--max-fuel`): 2·10⁹ fuel units,
/// about a second or two of CPU.
pub const DEFAULT_OPERATOR_FUEL: u64 = 2_000_000_000;

/// Largest `--max-retained-mb` of the scheduler (64 GiB): beyond it the flag is
/// surely a typo.
pub const MAX_RETAINED_MB: usize = 64 * 1024;

/// Largest report the PuppetMaster's debug sink accepts (4 MiB, encoded). A report
/// carries one operator's output and the records it wrote; anyone who can reach the
/// sink's port can send one, and the sink formats each for printing. Workers leave
/// the output and records out of a larger report (and say so) rather than lose it.
pub const MAX_DEBUG_REPORT_BYTES: usize = 4 * 1024 * 1024;

/// Bytes of reports per second the debug sink prints (16 MiB/s, with a burst of as
/// much). It bounds what a flood of reports costs the PuppetMaster (formatting and
/// printing); reports beyond it are refused with `RESOURCE_EXHAUSTED`, which workers
/// only log: debug output is best effort.
pub const DEBUG_SINK_BYTES_PER_SECOND: usize = 16 * 1024 * 1024;

/// Reports the debug sink handles at once on one connection (8): each holds up to
/// [`MAX_DEBUG_REPORT_BYTES`] while it is decoded and printed.
pub const DEBUG_SINK_CONCURRENCY: usize = 8;

/// Default of `dida pcs --max-nodes` (64): node processes one PCS runs at once. A
/// script declares a node per line, and each node is a process with its own memory
/// (a worker reserves a pool of sandboxes); 64 is ten times the course's clusters
/// and still fits one machine.
pub const DEFAULT_PCS_MAX_NODES: usize = 64;

// Limits that contain one another stay in that order, checked when compiling.
const _: () = assert!(MAX_DATA_LINE_BYTES as u64 <= MAX_DATA_FILE_BYTES);
const _: () = assert!(MAX_SCRIPT_LINE_BYTES as u64 <= MAX_SCRIPT_FILE_BYTES);
const _: () = assert!(MAX_INPUT_BYTES < MAX_CHAIN_REQUEST_BYTES);
const _: () = assert!(MAX_CHAIN_REQUEST_BYTES <= DEFAULT_RETAINED_BYTES);
const _: () = assert!(MAX_EXECUTION_LOG_BYTES < MAX_CHAIN_REQUEST_BYTES / 64);

/// Checks a deadline flag given in milliseconds: positive and at most
/// [`MAX_DEADLINE_MS`]. Returns it as a duration, or a message naming `flag`.
pub fn check_deadline_ms(flag: &str, ms: u64) -> Result<Duration, String> {
    if ms == 0 || ms > MAX_DEADLINE_MS {
        return Err(format!(
            "{flag} must be from 1 to {MAX_DEADLINE_MS} milliseconds (one hour), got {ms}"
        ));
    }
    Ok(Duration::from_millis(ms))
}

/// Checks a deadline flag given in seconds, as [`check_deadline_ms`] does one in
/// milliseconds: positive and at most an hour.
pub fn check_deadline_s(flag: &str, seconds: u64) -> Result<Duration, String> {
    let max = MAX_DEADLINE_MS / 1000;
    if seconds == 0 || seconds > max {
        return Err(format!(
            "{flag} must be from 1 to {max} seconds, got {seconds}"
        ));
    }
    Ok(Duration::from_secs(seconds))
}

/// Checks `--vnodes`: from 1 to [`MAX_VNODES`].
pub fn check_vnodes(vnodes: u32) -> Result<(), String> {
    if vnodes == 0 || vnodes > MAX_VNODES {
        return Err(format!(
            "--vnodes must be from 1 to {MAX_VNODES}, got {vnodes} (every node and client \
             builds a ring with that many points per node)"
        ));
    }
    Ok(())
}

/// The replication factor when `--replication-factor` is not given: 3, or the
/// number of storage nodes if there are fewer (so a one-node cluster needs no flag).
pub const DEFAULT_REPLICATION_FACTOR: usize = 3;

/// The replication factor for `nodes` storage nodes: `flag` if given, checked
/// (at least 1, at most `nodes`: a key cannot have more distinct replicas than there
/// are nodes), else [`DEFAULT_REPLICATION_FACTOR`] capped at `nodes`.
pub fn replication_factor(flag: Option<usize>, nodes: usize) -> Result<usize, String> {
    match flag {
        None => Ok(DEFAULT_REPLICATION_FACTOR.min(nodes).max(1)),
        Some(factor) if factor == 0 || factor > nodes => Err(format!(
            "--replication-factor must be from 1 to the number of storage nodes ({nodes}), \
             got {factor}"
        )),
        Some(factor) => Ok(factor),
    }
}

/// Checks `--write-acks` against the replication factor it applies to: a write
/// cannot wait for more replicas than a key has. The one check of this rule, called
/// by every role and tool that sets both (so they all refuse alike).
pub fn check_write_acks(write_acks: usize, replication_factor: usize) -> Result<(), String> {
    if write_acks == 0 || write_acks > replication_factor {
        return Err(write_acks_refusal(write_acks, replication_factor));
    }
    Ok(())
}

/// The one message refusing `--write-acks` against a replication factor, for the
/// typed errors that carry the two numbers and print the same sentence.
pub fn write_acks_refusal(write_acks: usize, replication_factor: usize) -> String {
    format!(
        "--write-acks must be from 1 to the replication factor ({replication_factor}), \
         got {write_acks}"
    )
}

/// Why a key or value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    /// Keys must have at least one character.
    #[error("the key is empty")]
    EmptyKey,
    /// The key is longer than [`MAX_KEY_BYTES`].
    #[error("the key is {len} bytes long; the limit is {MAX_KEY_BYTES}")]
    KeyTooLong {
        /// Actual length in bytes.
        len: usize,
    },
    /// The value is longer than [`MAX_VALUE_BYTES`].
    #[error("the value is {len} bytes long; the limit is {MAX_VALUE_BYTES}")]
    ValueTooLong {
        /// Actual length in bytes.
        len: usize,
    },
    /// An execution's input is longer than [`MAX_INPUT_BYTES`].
    #[error("the input is {len} bytes long; the limit is {MAX_INPUT_BYTES}")]
    InputTooLong {
        /// Actual length in bytes.
        len: usize,
    },
}

/// Checks a key against the limits.
pub fn check_key(key: &str) -> Result<(), LimitError> {
    if key.is_empty() {
        return Err(LimitError::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(LimitError::KeyTooLong { len: key.len() });
    }
    Ok(())
}

/// Checks a value against the limits.
pub fn check_value(value: &str) -> Result<(), LimitError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(LimitError::ValueTooLong { len: value.len() });
    }
    Ok(())
}

/// Checks an execution's input against [`MAX_INPUT_BYTES`].
pub fn check_input(input: &str) -> Result<(), LimitError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(LimitError::InputTooLong { len: input.len() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_enforced_at_their_boundaries() {
        assert_eq!(check_key(""), Err(LimitError::EmptyKey));
        assert!(check_key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        assert_eq!(
            check_key(&"k".repeat(MAX_KEY_BYTES + 1)),
            Err(LimitError::KeyTooLong {
                len: MAX_KEY_BYTES + 1
            })
        );
        assert!(check_value("").is_ok());
        assert!(check_value(&"v".repeat(MAX_VALUE_BYTES)).is_ok());
        assert!(check_value(&"v".repeat(MAX_VALUE_BYTES + 1)).is_err());
        assert!(check_input(&"i".repeat(MAX_INPUT_BYTES)).is_ok());
        assert_eq!(
            check_input(&"i".repeat(MAX_INPUT_BYTES + 1)),
            Err(LimitError::InputTooLong {
                len: MAX_INPUT_BYTES + 1
            })
        );
    }

    #[test]
    fn flag_checks_name_the_flag_and_the_bounds() {
        assert!(check_vnodes(1).is_ok() && check_vnodes(MAX_VNODES).is_ok());
        for bad in [0, MAX_VNODES + 1, 50_000_000] {
            let error = check_vnodes(bad).unwrap_err();
            assert!(error.contains("--vnodes must be from 1 to 4096"), "{error}");
        }
        assert_eq!(replication_factor(Some(1), 1), Ok(1));
        assert_eq!(replication_factor(Some(3), 5), Ok(3));
        assert!(replication_factor(Some(0), 5)
            .unwrap_err()
            .contains("from 1 to the number of storage nodes (5), got 0"));
        assert!(replication_factor(Some(4), 3).is_err());
        assert_eq!(check_write_acks(3, 3), Ok(()));
        for (acks, factor) in [(0, 3), (4, 3), (2, 1)] {
            let error = check_write_acks(acks, factor).unwrap_err();
            assert!(
                error.starts_with("--write-acks must be from 1 to the replication factor"),
                "{error}"
            );
        }
        // Without the flag: 3, capped at the nodes there are.
        assert_eq!(replication_factor(None, 5), Ok(3));
        assert_eq!(replication_factor(None, 1), Ok(1));
        assert_eq!(
            check_deadline_ms("--deadline", 5000),
            Ok(Duration::from_secs(5))
        );
        for bad in [0, MAX_DEADLINE_MS + 1, u64::MAX] {
            let error = check_deadline_ms("--deadline", bad).unwrap_err();
            assert!(error.starts_with("--deadline must be from 1 to"), "{error}");
        }
    }
}
