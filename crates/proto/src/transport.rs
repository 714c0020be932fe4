//! Transport settings shared by every dida role, so every connection between nodes
//! behaves the same way: lazy connection, a connect deadline, a per-call deadline,
//! `TCP_NODELAY`, and the same message-size limit on both ends.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// Largest message any dida node encodes or decodes (64 MiB): big enough for a
/// `ListRecords` of a large node, small enough that a hostile peer cannot make a node
/// allocate without bound.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Opens a lazily connected channel to `url` (`http://HOST:PORT`).
///
/// Nothing is sent until the first call; a node that is down is discovered by that
/// call, which fails within `deadline` (the deadline bounds both connecting and every
/// call made on the channel), so no caller ever hangs on an unreachable node.
pub fn lazy_channel(url: &str, deadline: Duration) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_string())?
        .connect_timeout(deadline)
        .timeout(deadline)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(deadline)
        .connect_lazy())
}

/// Whether a failed call never reached its server: the connection could not be made
/// (refused, no route, connect timeout). Such a call certainly had no effect, so a
/// write may be retried elsewhere without risk of applying it twice; any other
/// failure (a reset or a deadline mid-call) leaves the outcome unknown.
pub fn is_connect_failure(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable
            ) {
                return true;
            }
        }
        // hyper-util reports connect failures as `ConnectError("tcp connect error", …)`.
        if error.to_string().contains("connect error") {
            return true;
        }
        source = error.source();
    }
    false
}
