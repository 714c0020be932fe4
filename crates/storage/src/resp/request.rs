//! Reading a client's commands off a RESP connection: a command is an array of
//! bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`, what every client library and
//! `redis-benchmark` send) or an inline line (`GET k\r\n`, what a person types into
//! `nc`).
//!
//! Why not a RESP codec crate: commands are this narrow grammar, and the crate made
//! for the job (`redis-protocol`) parses every frame type recursively with no bound
//! on nesting — 40 KB of `*1\r\n` overflowed a 2 MiB stack and aborted the process
//! when we tried it — and re-parses a partial frame from its start on every read.
//! This parser is incremental, never recurses, refuses a length beyond its bounds
//! the moment it reads the length (a `$1073741824` header is refused without waiting
//! for a gigabyte), and allocates only the argument list. The tests check it against
//! `redis-protocol`'s encoder.

use std::ops::Range;

use dida_core::limits::MAX_VALUE_BYTES;

/// The most arguments one command may have (the command name included): an
/// `MGET` of 4,095 keys.
pub const MAX_ARGUMENTS: usize = 4096;

/// The longest argument: a value (`MAX_VALUE_BYTES`), with room for nothing more.
pub const MAX_ARGUMENT_BYTES: usize = MAX_VALUE_BYTES;

/// The longest command in bytes, all its arguments together. A connection buffers
/// at most this much of a command it has not finished reading.
pub const MAX_COMMAND_BYTES: usize = 8 * 1024 * 1024;

/// The longest inline command line.
const MAX_INLINE_BYTES: usize = 64 * 1024;

/// The longest length header (`*4096\r\n`, `$1048576\r\n`): longer is malformed.
const MAX_HEADER_BYTES: usize = 32;

/// Why a connection's input is not a command; the connection answers with the
/// message and closes, as Redis does, since the stream cannot be resynchronised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

fn malformed(what: impl Into<String>) -> ProtocolError {
    ProtocolError(what.into())
}

/// One complete command: its arguments, as ranges of the buffer it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Each argument's bytes in the buffer, the command's name first.
    pub arguments: Vec<Range<usize>>,
    /// How many bytes of the buffer the command took.
    pub consumed: usize,
}

/// Parses the first command of `buffer`: `Ok(None)` when it is not complete yet
/// (read more, then call again with the longer buffer), an error when the input
/// is malformed or a bound is exceeded. An empty inline line parses as a command
/// with no arguments, which the caller skips.
pub fn parse(buffer: &[u8]) -> Result<Option<Parsed>, ProtocolError> {
    match buffer.first() {
        None => Ok(None),
        Some(b'*') => parse_array(buffer),
        Some(_) => parse_inline(buffer),
    }
}

/// The integer of a `<prefix><digits>\r\n` header at `at`, and the offset after it.
fn header(buffer: &[u8], at: usize, prefix: u8) -> Result<Option<(i64, usize)>, ProtocolError> {
    let rest = &buffer[at..];
    match rest.first() {
        None => return Ok(None),
        Some(&byte) if byte != prefix => {
            return Err(malformed(format!(
                "expected '{}', got '{}'",
                prefix as char,
                byte.escape_ascii()
            )))
        }
        Some(_) => {}
    }
    let window = &rest[..rest.len().min(MAX_HEADER_BYTES)];
    let Some(end) = window.windows(2).position(|pair| pair == b"\r\n") else {
        return if rest.len() >= MAX_HEADER_BYTES {
            Err(malformed("length header too long"))
        } else {
            Ok(None)
        };
    };
    let digits = std::str::from_utf8(&rest[1..end]).map_err(|_| malformed("invalid length"))?;
    let value: i64 = digits
        .parse()
        .map_err(|_| malformed(format!("invalid length {digits:?}")))?;
    Ok(Some((value, at + end + 2)))
}

fn parse_array(buffer: &[u8]) -> Result<Option<Parsed>, ProtocolError> {
    let Some((count, mut at)) = header(buffer, 0, b'*')? else {
        return Ok(None);
    };
    if count <= 0 {
        // `*0` and `*-1` are valid RESP, and carry no command.
        return Ok(Some(Parsed {
            arguments: Vec::new(),
            consumed: at,
        }));
    }
    let count = count as usize;
    if count > MAX_ARGUMENTS {
        return Err(malformed(format!(
            "a command has at most {MAX_ARGUMENTS} arguments, this one {count}"
        )));
    }
    let mut arguments = Vec::with_capacity(count);
    for _ in 0..count {
        let Some((length, start)) = header(buffer, at, b'$')? else {
            return Ok(None);
        };
        if !(0..=MAX_ARGUMENT_BYTES as i64).contains(&length) {
            return Err(malformed(format!(
                "invalid bulk length {length}: an argument has at most {MAX_ARGUMENT_BYTES} bytes"
            )));
        }
        let end = start + length as usize;
        if end > MAX_COMMAND_BYTES {
            return Err(malformed(format!(
                "a command has at most {MAX_COMMAND_BYTES} bytes"
            )));
        }
        if buffer.len() < end + 2 {
            return Ok(None);
        }
        if &buffer[end..end + 2] != b"\r\n" {
            return Err(malformed("a bulk string does not end with CRLF"));
        }
        arguments.push(start..end);
        at = end + 2;
    }
    Ok(Some(Parsed {
        arguments,
        consumed: at,
    }))
}

fn parse_inline(buffer: &[u8]) -> Result<Option<Parsed>, ProtocolError> {
    let window = &buffer[..buffer.len().min(MAX_INLINE_BYTES)];
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        return if buffer.len() >= MAX_INLINE_BYTES {
            Err(malformed(format!(
                "an inline command has at most {MAX_INLINE_BYTES} bytes"
            )))
        } else {
            Ok(None)
        };
    };
    let line_end = if newline > 0 && buffer[newline - 1] == b'\r' {
        newline - 1
    } else {
        newline
    };
    let mut arguments = Vec::new();
    let mut at = 0;
    while at < line_end {
        if buffer[at].is_ascii_whitespace() {
            at += 1;
            continue;
        }
        let start = at;
        while at < line_end && !buffer[at].is_ascii_whitespace() {
            at += 1;
        }
        if arguments.len() == MAX_ARGUMENTS {
            return Err(malformed(format!(
                "a command has at most {MAX_ARGUMENTS} arguments"
            )));
        }
        arguments.push(start..at);
    }
    Ok(Some(Parsed {
        arguments,
        consumed: newline + 1,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn words(buffer: &[u8]) -> Vec<Vec<u8>> {
        let parsed = parse(buffer).unwrap().unwrap();
        assert_eq!(parsed.consumed, buffer.len());
        parsed
            .arguments
            .into_iter()
            .map(|range| buffer[range].to_vec())
            .collect()
    }

    #[test]
    fn parses_arrays_of_bulk_strings_and_inline_lines() {
        assert_eq!(
            words(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
            [b"GET".to_vec(), b"k".to_vec()]
        );
        assert_eq!(
            words(b"SET  k v\r\n"),
            [b"SET".to_vec(), b"k".to_vec(), b"v".to_vec()]
        );
        assert_eq!(words(b"PING\n"), [b"PING".to_vec()]);
        assert_eq!(words(b"\r\n"), Vec::<Vec<u8>>::new());
        assert_eq!(words(b"*0\r\n"), Vec::<Vec<u8>>::new());
        // A value may hold CRLF and anything else: only its length counts.
        assert_eq!(words(b"*1\r\n$4\r\na\r\nb\r\n"), [b"a\r\nb".to_vec()]);
    }

    #[test]
    fn waits_for_the_rest_of_a_partial_command() {
        let whole = b"*2\r\n$3\r\nGET\r\n$5\r\nhello\r\n";
        for end in 0..whole.len() {
            assert_eq!(parse(&whole[..end]), Ok(None), "prefix of {end} bytes");
        }
        assert!(parse(whole).unwrap().is_some());
        assert_eq!(parse(b"GET k"), Ok(None));
    }

    #[test]
    fn refuses_oversized_and_malformed_input_at_the_header() {
        // A gigabyte's bulk length is refused before a byte of it arrives.
        let error = parse(b"*2\r\n$3\r\nSET\r\n$1073741824\r\n").unwrap_err();
        assert!(
            error.0.contains("invalid bulk length 1073741824"),
            "{error}"
        );
        assert!(parse(b"*1000000\r\n").unwrap_err().0.contains("at most"));
        assert!(parse(b"*1\r\n$-1\r\n").is_err());
        assert!(parse(b"*1\r\n*1\r\n$1\r\na\r\n")
            .unwrap_err()
            .0
            .contains("expected '$'"));
        assert!(parse(b"*x\r\n").is_err());
        assert!(parse(b"*1\r\n$1\r\nab\r\n").is_err());
        assert!(parse(&[b'*'; 64]).unwrap_err().0.contains("too long"));
        assert!(parse(&vec![b'a'; MAX_INLINE_BYTES]).is_err());
        // Nesting is refused at its first level, whatever its depth.
        let nested = b"*1\r\n".repeat(100_000);
        assert!(parse(&nested).is_err());
    }

    proptest! {
        /// Whatever `redis-protocol` (the reference encoder) writes as a command,
        /// in one piece or split anywhere, parses back to the same arguments.
        #[test]
        fn parses_what_the_reference_encoder_writes(
            arguments in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..8),
            split in any::<prop::sample::Index>(),
        ) {
            use redis_protocol::resp2::{encode::extend_encode, types::BytesFrame};
            let frame = BytesFrame::Array(
                arguments.iter().map(|a| BytesFrame::BulkString(a.clone().into())).collect(),
            );
            let mut buffer = bytes::BytesMut::new();
            extend_encode(&mut buffer, &frame, false).unwrap();
            let cut = split.index(buffer.len());
            prop_assert_eq!(parse(&buffer[..cut]), Ok(None));
            let parsed = parse(&buffer).unwrap().unwrap();
            prop_assert_eq!(parsed.consumed, buffer.len());
            let got: Vec<Vec<u8>> = parsed.arguments.into_iter().map(|r| buffer[r].to_vec()).collect();
            prop_assert_eq!(got, arguments);
        }

        /// Arbitrary bytes never panic the parser.
        #[test]
        fn never_panics(input in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&input);
        }
    }
}
