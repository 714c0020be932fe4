//! Bounds on the connections a dida server holds, so that no client can exhaust a
//! node's file descriptors or memory by opening connections: a flood of 20,000
//! connections once took every descriptor of a storage node and kept 600 MB.
//!
//! Every server accepts at most [`ConnectionLimits::total`] connections at once, and
//! at most [`ConnectionLimits::per_address`] from one IP address, so one host's flood
//! leaves room for everyone else — in particular for the other nodes, whose probes
//! must keep reaching a node under load or its peers would declare it failed. A
//! connection over a limit is accepted and closed at once (the peer sees a reset,
//! not a hang), with a warning at most once per [`REFUSAL_LOG_PERIOD`].
//!
//! The per-address limit counts by *source* ([`source_of`]): every loopback
//! address (`127.0.0.0/8`, `::1`, and their IPv4-mapped forms) is one source, as
//! they are all this machine — otherwise a local client could multiply its share by
//! dialling from 127.0.0.2, 127.0.0.3, ….
//!
//! Failing to accept (the process out of descriptors even so) pauses accepting for
//! [`ACCEPT_ERROR_PAUSE`] instead of retrying in a busy loop.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};
use tracing::warn;

/// Connections a server holds at once, at most (fewer if the process may open
/// fewer descriptors: see [`ConnectionLimits::for_this_process`]). Each costs a
/// descriptor and tens of kilobytes of buffers; 4096 is far more than a cluster's
/// nodes and clients need.
pub const MAX_CONNECTIONS: usize = 4096;

/// Connections one IP address may hold at once: a quarter of the total, so a single
/// host cannot take a server's every slot.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = MAX_CONNECTIONS / 4;

/// Descriptors kept free for everything else a node opens (its own connections to
/// peers, log files) when the process's descriptor limit is what bounds connections.
pub const RESERVED_DESCRIPTORS: usize = 256;

/// How long accepting pauses after the kernel refused to accept (out of
/// descriptors or memory): long enough not to spin, short enough to recover fast.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// At most one warning about refused connections per period, so a flood does not
/// also flood the log.
pub const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(5);

/// How many connections a server accepts, in total and per remote address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections held at once.
    pub total: usize,
    /// Connections held at once from one source (an IP address; the whole
    /// loopback range is one: see [`source_of`]).
    pub per_address: usize,
}

impl ConnectionLimits {
    /// [`MAX_CONNECTIONS`] and [`MAX_CONNECTIONS_PER_ADDRESS`], lowered to fit the
    /// process's open-file limit less [`RESERVED_DESCRIPTORS`], so the limit is met
    /// before the kernel's is.
    pub fn for_this_process() -> Self {
        let descriptors = open_file_limit().unwrap_or(1024);
        let total = MAX_CONNECTIONS
            .min(descriptors.saturating_sub(RESERVED_DESCRIPTORS))
            .max(16);
        Self {
            total,
            per_address: MAX_CONNECTIONS_PER_ADDRESS.min(total / 2).max(8),
        }
    }

    /// The limits of a port beside the process's gRPC port — the HTTP gateway, the
    /// dashboard, a storage node's RESP endpoint: a quarter of
    /// [`ConnectionLimits::for_this_process`], so that all of them together stay
    /// within the process's descriptors and a flood of such a port leaves the gRPC
    /// port (and the peers' probes) serving. A quarter of them per source, as for
    /// gRPC.
    pub fn for_a_side_port() -> Self {
        let total = (Self::for_this_process().total / 4).max(16);
        Self {
            total,
            per_address: (total / 4).max(8),
        }
    }
}

/// The source a connection from `ip` counts against for the per-address limit:
/// `ip` itself, with IPv4-mapped IPv6 addresses read as IPv4, and every loopback
/// address folded into `127.0.0.1`.
pub fn source_of(ip: IpAddr) -> IpAddr {
    let ip = ip.to_canonical();
    if ip.is_loopback() {
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
    } else {
        ip
    }
}

/// The soft limit on open descriptors of this process.
fn open_file_limit() -> Option<usize> {
    let (soft, _hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok()?;
    usize::try_from(soft).ok()
}

/// The connections currently held, in total and per address.
#[derive(Debug, Default)]
struct Held {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// One connection's place among the held ones: given back when the connection
/// is dropped (closed by either end).
#[derive(Debug)]
struct Slot {
    held: Arc<Mutex<Held>>,
    address: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.held.lock().expect("connection count lock poisoned");
        held.total -= 1;
        if let Some(address) = self.address {
            if let Some(count) = held.per_address.get_mut(&address) {
                *count -= 1;
                if *count == 0 {
                    held.per_address.remove(&address);
                }
            }
        }
    }
}

/// An accepted connection that holds its slot for as long as it is open.
#[derive(Debug)]
pub struct LimitedConnection {
    stream: TcpStream,
    _slot: Slot,
}

impl Connected for LimitedConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for LimitedConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The connections `incoming` accepts, within `limits`: those over a limit are
/// closed at once, and accept errors pause accepting briefly.
pub fn limited(
    incoming: TcpIncoming,
    limits: ConnectionLimits,
) -> impl Stream<Item = io::Result<LimitedConnection>> {
    let held = Arc::new(Mutex::new(Held::default()));
    let mut last_warning: Option<Instant> = None;
    let mut refused = 0u64;
    incoming.filter_map(move |accepted| {
        let admitted = match accepted {
            Ok(stream) => admit(stream, &held, limits, &mut last_warning, &mut refused),
            Err(error) => {
                warn!(%error, "could not accept a connection; pausing accepts");
                return futures::future::Either::Left(async {
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    None
                });
            }
        };
        futures::future::Either::Right(std::future::ready(admitted.map(Ok)))
    })
}

/// Takes a slot for `stream`, or closes it (drops it) if it is over a limit.
fn admit(
    stream: TcpStream,
    held: &Arc<Mutex<Held>>,
    limits: ConnectionLimits,
    last_warning: &mut Option<Instant>,
    refused_since_warning: &mut u64,
) -> Option<LimitedConnection> {
    let address = stream.peer_addr().ok().map(|a| source_of(a.ip()));
    let admitted = {
        let mut held = held.lock().expect("connection count lock poisoned");
        let from_address = address.map_or(0, |a| *held.per_address.get(&a).unwrap_or(&0));
        if held.total >= limits.total || from_address >= limits.per_address {
            false
        } else {
            held.total += 1;
            if let Some(address) = address {
                *held.per_address.entry(address).or_default() += 1;
            }
            true
        }
    };
    if !admitted {
        *refused_since_warning += 1;
        if last_warning.is_none_or(|at| at.elapsed() >= REFUSAL_LOG_PERIOD) {
            warn!(
                refused = *refused_since_warning,
                from = ?address,
                total = limits.total,
                per_address = limits.per_address,
                "refusing connections over the server's limits"
            );
            *last_warning = Some(Instant::now());
            *refused_since_warning = 0;
        }
        return None;
    }
    Some(LimitedConnection {
        stream,
        _slot: Slot {
            held: held.clone(),
            address,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_loopback_address_is_one_source() {
        let one = source_of("127.0.0.1".parse().unwrap());
        for ip in [
            "127.0.0.2",
            "127.255.255.254",
            "::1",
            "::ffff:127.0.0.9",
            "::ffff:127.0.0.1",
        ] {
            assert_eq!(source_of(ip.parse().unwrap()), one, "{ip}");
        }
    }

    #[test]
    fn other_addresses_stay_apart() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(source_of(a), a);
        assert_eq!(source_of("::ffff:10.0.0.1".parse().unwrap()), a);
        assert_ne!(source_of("10.0.0.2".parse().unwrap()), a);
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(source_of(v6), v6);
    }
}
