//! Where `dida up` puts a cluster on this machine, and so where every client command
//! looks for one when it is given no `--scheduler`. Defined once, so that the
//! addresses `dida up` binds, the commands it prints and the clients' defaults
//! cannot drift apart.
//!
//! The layout is a block of ports from a base (7000 by default): the scheduler at
//! the base, storage node `sN` at base + N, worker `wN` at base + 10 + N, the HTTP
//! gateway at base + 80 and the dashboard at base + 81, all on 127.0.0.1. Storage
//! node `sN` also speaks the Redis protocol at base + 20 + N.

use std::net::SocketAddr;

/// The base port of `dida up` when none is given.
pub const DEFAULT_BASE_PORT: u16 = 7000;

/// The scheduler URL of a `dida up` cluster at [`DEFAULT_BASE_PORT`]: the default of
/// every client command's `--scheduler`.
pub const DEFAULT_SCHEDULER_URL: &str = "http://127.0.0.1:7000";

/// Most storage nodes, and most workers, in the layout (their port ranges are ten
/// wide).
pub const MAX_NODES_PER_ROLE: usize = 9;

/// How far above its own port each storage node speaks the Redis protocol.
pub const RESP_PORT_OFFSET: u16 = 20;

/// The ports of a local cluster laid out from a base port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalLayout {
    base: u16,
}

impl LocalLayout {
    /// The layout from `base`; refused when its last port would pass 65535.
    pub fn new(base: u16) -> Result<Self, String> {
        if base == 0 || base.checked_add(81).is_none() {
            return Err(format!(
                "--port {base}: a local cluster takes ports {base} to {base}+81; \
                 choose a base port from 1 to {}",
                u16::MAX - 81
            ));
        }
        Ok(Self { base })
    }

    /// The scheduler's URL.
    pub fn scheduler_url(&self) -> String {
        url(self.base)
    }

    /// The URL of storage node `sN` (`n` from 1).
    pub fn storage_url(&self, n: usize) -> String {
        url(self.offset(n))
    }

    /// The URL of worker `wN` (`n` from 1).
    pub fn worker_url(&self, n: usize) -> String {
        url(self.offset(10 + n))
    }

    /// Where storage node `sN` (`n` from 1) speaks the Redis protocol.
    pub fn resp_listen(&self, n: usize) -> SocketAddr {
        SocketAddr::from((
            [127, 0, 0, 1],
            self.offset(n + usize::from(RESP_PORT_OFFSET)),
        ))
    }

    /// Where the scheduler's HTTP gateway listens.
    pub fn http_listen(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.offset(80)))
    }

    /// Where the dashboard listens.
    pub fn dashboard_listen(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.offset(81)))
    }

    fn offset(&self, by: usize) -> u16 {
        // `new` keeps base + 81 in range, and callers stay within it.
        self.base + u16::try_from(by).expect("a layout offset is below 82")
    }
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_scheduler_url_is_the_default_layouts() {
        let layout = LocalLayout::new(DEFAULT_BASE_PORT).unwrap();
        assert_eq!(layout.scheduler_url(), DEFAULT_SCHEDULER_URL);
        assert_eq!(layout.storage_url(3), "http://127.0.0.1:7003");
        assert_eq!(layout.worker_url(2), "http://127.0.0.1:7012");
        assert_eq!(layout.resp_listen(1).to_string(), "127.0.0.1:7021");
        assert_eq!(layout.http_listen().to_string(), "127.0.0.1:7080");
        assert_eq!(layout.dashboard_listen().to_string(), "127.0.0.1:7081");
    }

    #[test]
    fn a_base_too_high_for_the_block_is_refused() {
        assert!(LocalLayout::new(u16::MAX - 81).is_ok());
        assert!(LocalLayout::new(u16::MAX - 80).is_err());
        assert!(LocalLayout::new(0).is_err());
    }
}
