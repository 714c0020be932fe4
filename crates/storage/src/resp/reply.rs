//! The replies a RESP connection sends, written in the protocol the client chose
//! with `HELLO`: RESP2 by default, RESP3 after `HELLO 3`. The two differ only in
//! how a null and a map are written (RESP2 has neither: `$-1` and a flat array).

use bytes::{BufMut, BytesMut};

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// RESP2: every client's default.
    Resp2,
    /// RESP3, asked for by `HELLO 3`.
    Resp3,
}

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`: a short status, never containing CR or LF.
    Status(&'static str),
    /// `-CODE message`: the first word is the error's code (`ERR`, `NOPERM`, …).
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$5\r\nhello`: bytes of any kind.
    Bulk(Vec<u8>),
    /// No value (`$-1` in RESP2, `_` in RESP3).
    Null,
    /// `*N`: replies in order.
    Array(Vec<Reply>),
    /// `%N` in RESP3, a flat array of keys and values in RESP2.
    Map(Vec<(Reply, Reply)>),
}

impl Reply {
    /// A bulk string of text.
    pub fn text(text: impl Into<String>) -> Self {
        Reply::Bulk(text.into().into_bytes())
    }

    /// An error reply with code `code` (`ERR`, `NOPERM`, …). Line breaks in the
    /// message would end the reply early, so they become spaces.
    pub fn error(code: &str, message: impl std::fmt::Display) -> Self {
        let message = message.to_string().replace(['\r', '\n'], " ");
        Reply::Error(format!("{code} {message}"))
    }

    /// Writes the reply onto `out` in `protocol`.
    pub fn encode(&self, protocol: Protocol, out: &mut BytesMut) {
        match self {
            Reply::Status(status) => line(out, b'+', status.as_bytes()),
            Reply::Error(error) => line(out, b'-', error.as_bytes()),
            Reply::Integer(n) => line(out, b':', n.to_string().as_bytes()),
            Reply::Bulk(bytes) => {
                line(out, b'$', bytes.len().to_string().as_bytes());
                out.put_slice(bytes);
                out.put_slice(b"\r\n");
            }
            Reply::Null => match protocol {
                Protocol::Resp2 => out.put_slice(b"$-1\r\n"),
                Protocol::Resp3 => out.put_slice(b"_\r\n"),
            },
            Reply::Array(items) => {
                line(out, b'*', items.len().to_string().as_bytes());
                for item in items {
                    item.encode(protocol, out);
                }
            }
            Reply::Map(pairs) => {
                match protocol {
                    Protocol::Resp2 => line(out, b'*', (2 * pairs.len()).to_string().as_bytes()),
                    Protocol::Resp3 => line(out, b'%', pairs.len().to_string().as_bytes()),
                }
                for (key, value) in pairs {
                    key.encode(protocol, out);
                    value.encode(protocol, out);
                }
            }
        }
    }
}

fn line(out: &mut BytesMut, prefix: u8, body: &[u8]) {
    out.reserve(body.len() + 3);
    out.put_u8(prefix);
    out.put_slice(body);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_protocol::{resp2, resp3};

    fn sample() -> Reply {
        Reply::Array(vec![
            Reply::Status("OK"),
            Reply::error("ERR", "two\r\nlines"),
            Reply::Integer(-7),
            Reply::Bulk(b"a\r\nb".to_vec()),
            Reply::Null,
            Reply::Map(vec![(Reply::text("proto"), Reply::Integer(3))]),
        ])
    }

    fn encoded(protocol: Protocol) -> BytesMut {
        let mut out = BytesMut::new();
        sample().encode(protocol, &mut out);
        out
    }

    /// The reference decoder (`redis-protocol`) reads back what is written, in
    /// both protocols, and nothing is left over.
    #[test]
    fn the_reference_decoder_reads_both_protocols() {
        use resp2::types::OwnedFrame as F2;
        let resp2 = encoded(Protocol::Resp2);
        let (frame, used) = resp2::decode::decode(&resp2).unwrap().unwrap();
        assert_eq!(used, resp2.len());
        assert_eq!(
            frame,
            F2::Array(vec![
                F2::SimpleString(b"OK".to_vec()),
                F2::Error("ERR two  lines".into()),
                F2::Integer(-7),
                F2::BulkString(b"a\r\nb".to_vec()),
                F2::Null,
                F2::Array(vec![F2::BulkString(b"proto".to_vec()), F2::Integer(3)]),
            ])
        );

        let resp3 = encoded(Protocol::Resp3);
        let (frame, used) = resp3::decode::complete::decode(&resp3).unwrap().unwrap();
        assert_eq!(used, resp3.len());
        let resp3::types::OwnedFrame::Array { data, .. } = frame else {
            panic!("an array: {frame:?}")
        };
        assert!(matches!(data[4], resp3::types::OwnedFrame::Null));
        assert!(matches!(data[5], resp3::types::OwnedFrame::Map { .. }));
    }
}
