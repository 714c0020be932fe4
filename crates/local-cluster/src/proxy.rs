//! A TCP proxy for one ordered pair of nodes, which can be cut and healed: how the
//! fault suite partitions a local cluster without root (no iptables, no network
//! namespaces).
//!
//! Node A reaches node B through the [`Link`] for (A, B) — A is started with
//! `--dial B=<link address>` — so cutting that link cuts exactly A's connections to B,
//! and B's connections to A (another link) are untouched: cuts can be asymmetric.
//!
//! **A cut is silent, like a real partition.** Nothing is closed or reset: the proxy
//! simply stops relaying bytes, in both directions of every connection of the link,
//! and holds new connections (the kernel accepts them; the proxy does not connect
//! them onward) until the link heals. Callers see no error, only silence, and hit
//! their own deadlines, as they would when packets are dropped. On heal the relaying
//! resumes where it stopped and held connections are connected onward: what was
//! held is delivered late, as TCP retransmission would deliver it after a real
//! partition heals (bytes are never dropped mid-stream: that would corrupt the
//! HTTP/2 framing, which a real network never does to a TCP stream).
//!
//! **Deadlines.** Connecting onward has one ([`CONNECT_TIMEOUT`]). Relaying bytes has
//! none on purpose: the proxy stands for a wire, and a wire has no deadline — the
//! endpoints' own deadlines decide when a silent connection is given up (they then
//! close it, and the proxy closes the other side when it sees that). Every task of a
//! link ends when the [`Link`] is dropped.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Longest wait for the destination to accept a relayed connection. A destination
/// that is down (a killed node) or stopped (a paused one, whose kernel still
/// accepts) is then given up, and the caller's connection closed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Bytes read from one side before they are written to the other.
const BUFFER: usize = 16 * 1024;

/// A cuttable proxy from a listening address on loopback to one destination.
#[derive(Debug)]
pub struct Link {
    addr: SocketAddr,
    open: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Link {
    /// Listens on a free port of 127.0.0.1 and relays every connection to
    /// `destination`. The link starts open.
    pub async fn start(destination: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (open, watcher) = watch::channel(true);
        let task = tokio::spawn(accept_loop(listener, destination, watcher));
        Ok(Self { addr, open, task })
    }

    /// The address to connect to instead of the destination.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops relaying, silently, until [`Link::heal`].
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    /// Resumes relaying what was held and connects held connections onward.
    pub fn heal(&self) {
        self.open.send_replace(true);
    }

    /// True while the link is cut.
    pub fn is_cut(&self) -> bool {
        !*self.open.borrow()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // The accept loop owns the connections' tasks (a JoinSet): aborting it ends
        // them all and closes their sockets.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, destination: SocketAddr, open: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((inbound, _)) => {
                    connections.spawn(relay(inbound, destination, open.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: try again shortly rather
                    // than spin or give the link up.
                    tracing::warn!(%destination, "proxy: accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reap finished connections so the set does not grow for ever.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Waits until the link is open. False if the link is gone (never, while the accept
/// loop that owns this task lives).
async fn wait_open(open: &mut watch::Receiver<bool>) -> bool {
    open.wait_for(|is_open| *is_open).await.is_ok()
}

/// Relays one connection: held while the link is cut, then connected onward, then
/// both directions pumped until either side closes.
async fn relay(inbound: TcpStream, destination: SocketAddr, mut open: watch::Receiver<bool>) {
    if !wait_open(&mut open).await {
        return;
    }
    let outbound =
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(destination)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(%destination, "proxy: cannot connect onward: {error}");
                return;
            }
            Err(_) => {
                tracing::debug!(%destination, "proxy: connecting onward timed out");
                return;
            }
        };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    // Each direction ends on its own (a half-close is passed on); the connection ends
    // when both have.
    tokio::join!(
        pump(in_read, out_write, open.clone()),
        pump(out_read, in_write, open)
    );
}

/// Copies `from` to `to` while the link is open; holds the bytes while it is cut.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut open: watch::Receiver<bool>) {
    let mut buffer = vec![0; BUFFER];
    loop {
        if !wait_open(&mut open).await {
            return;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(read) => read,
        };
        // Bytes read just as the link was cut are held with the rest.
        if !wait_open(&mut open).await || to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server; returns its address.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, message: &[u8], limit: Duration) -> bool {
        let exchange = async {
            stream.write_all(message).await?;
            let mut answer = vec![0; message.len()];
            stream.read_exact(&mut answer).await?;
            io::Result::Ok(answer == message)
        };
        matches!(tokio::time::timeout(limit, exchange).await, Ok(Ok(true)))
    }

    const QUICK: Duration = Duration::from_secs(5);
    const SILENCE: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn bytes_flow_a_cut_stops_them_and_heal_resumes() {
        let link = Link::start(echo_server().await).await.unwrap();
        let mut stream = TcpStream::connect(link.addr()).await.unwrap();
        assert!(round_trip(&mut stream, b"hello", QUICK).await);

        link.cut();
        assert!(link.is_cut());
        // Silence, not an error: the write is accepted, no answer comes.
        stream.write_all(b"during").await.unwrap();
        let mut answer = [0; 6];
        assert!(
            tokio::time::timeout(SILENCE, stream.read_exact(&mut answer))
                .await
                .is_err(),
            "bytes crossed a cut link"
        );

        link.heal();
        // What was held is delivered on heal, in order, then traffic flows again.
        tokio::time::timeout(QUICK, stream.read_exact(&mut answer))
            .await
            .expect("held bytes delivered after heal")
            .unwrap();
        assert_eq!(&answer, b"during");
        assert!(round_trip(&mut stream, b"after", QUICK).await);
    }

    #[tokio::test]
    async fn a_new_connection_is_held_silently_while_cut() {
        let link = Link::start(echo_server().await).await.unwrap();
        link.cut();
        // The connection is accepted (no refusal, no reset) but nothing comes back.
        let mut stream = TcpStream::connect(link.addr()).await.unwrap();
        assert!(!round_trip(&mut stream, b"ping", SILENCE).await);
        link.heal();
        let mut answer = [0; 4];
        tokio::time::timeout(QUICK, stream.read_exact(&mut answer))
            .await
            .expect("held connection connected on heal")
            .unwrap();
        assert_eq!(&answer, b"ping");
    }

    #[tokio::test]
    async fn a_cut_link_leaves_the_reverse_direction_alone() {
        // Two links to the same server stand for A→B and B→A: cutting one does not
        // affect the other.
        let server = echo_server().await;
        let forward = Link::start(server).await.unwrap();
        let backward = Link::start(server).await.unwrap();
        forward.cut();
        let mut stream = TcpStream::connect(backward.addr()).await.unwrap();
        assert!(round_trip(&mut stream, b"other way", QUICK).await);
    }

    #[tokio::test]
    async fn closing_one_side_closes_the_other() {
        let link = Link::start(echo_server().await).await.unwrap();
        let mut stream = TcpStream::connect(link.addr()).await.unwrap();
        assert!(round_trip(&mut stream, b"x", QUICK).await);
        stream.shutdown().await.unwrap();
        // The echo server sees the end of its input and closes; we read the end.
        let mut rest = Vec::new();
        tokio::time::timeout(QUICK, stream.read_to_end(&mut rest))
            .await
            .expect("end of stream passed on")
            .unwrap();
        assert!(rest.is_empty());
    }
}
