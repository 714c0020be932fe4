//! Where a node listens (`--listen HOST:PORT`) as opposed to the URL it advertises
//! (`--url`), and the check that the two can describe the same socket.
//!
//! A node in a container, a pod or behind NAT binds an address of its own machine
//! (`0.0.0.0:7001`) but is known to its peers by a name it cannot bind
//! (`http://dida-storage-0.dida-storage:7001`). Splitting the two is what lets it
//! run there; checking them is what keeps a typo from starting a node that every
//! peer calls at a port nobody listens on.

use std::fmt;
use std::net::IpAddr;

use crate::membership::{parse_host_port, NodeUrl};

/// An address a node binds: `HOST:PORT`, the host an IP address or a name of this
/// machine (`0.0.0.0` or `[::]` for every interface).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenAddr {
    /// The host, as written (an IPv6 address in brackets).
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl ListenAddr {
    /// Parses `HOST:PORT`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (host, port) =
            parse_host_port(text).map_err(|why| format!("{text:?} is not HOST:PORT: {why}"))?;
        Ok(Self { host, port })
    }

    /// The address `url` names, for a node that listens where it is reached.
    pub fn of_url(url: &NodeUrl) -> Self {
        Self {
            host: url.host.clone(),
            port: url.port,
        }
    }

    /// Whether the host binds every interface (`0.0.0.0`, `::`).
    fn is_unspecified(&self) -> bool {
        ip(&self.host).is_some_and(|ip| ip.is_unspecified())
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Checks that peers calling `url` can reach a node listening on `listen`.
///
/// The ports must be equal: dida does not assume a port mapping in between (a
/// container publishing 7001 as 17001 advertises 17001 and listens on 17001, or
/// maps the port unchanged). The hosts must be equal when both are IP addresses
/// and `listen` is not every interface; a host name in either cannot be checked
/// without resolving it where the peers are, so it is taken as written.
pub fn check_advertised(listen: &ListenAddr, url: &NodeUrl) -> Result<(), String> {
    if listen.port != url.port {
        return Err(format!(
            "--url {url} does not match --listen {listen}: peers would call port {} \
             where the node listens on port {} (use the same port in both)",
            url.port, listen.port
        ));
    }
    if listen.is_unspecified() {
        return Ok(());
    }
    match (ip(&listen.host), ip(&url.host)) {
        (Some(bound), Some(advertised)) if bound != advertised => Err(format!(
            "--url {url} does not match --listen {listen}: the node would listen on \
             {bound} only, and peers would call {advertised} (listen on {advertised}, or \
             on 0.0.0.0 for every interface)"
        )),
        _ => Ok(()),
    }
}

/// `host` as an IP address, brackets of an IPv6 address removed.
fn ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(listen: &str, url: &str) -> Result<(), String> {
        check_advertised(
            &ListenAddr::parse(listen).unwrap(),
            &NodeUrl::parse(url).unwrap(),
        )
    }

    #[test]
    fn every_interface_serves_any_advertised_name_on_the_same_port() {
        assert_eq!(
            check("0.0.0.0:7001", "http://dida-storage-0.dida:7001"),
            Ok(())
        );
        assert_eq!(check("[::]:7001", "https://10.0.0.5:7001"), Ok(()));
        assert_eq!(check("127.0.0.1:7001", "http://127.0.0.1:7001/"), Ok(()));
        assert_eq!(
            check("10.0.0.5:7001", "http://node-a:7001"),
            Ok(()),
            "names are not resolved"
        );
    }

    #[test]
    fn another_port_or_another_address_is_refused_with_both_named() {
        let refused = check("0.0.0.0:7001", "http://s1:7002").unwrap_err();
        assert!(
            refused.contains("--url http://s1:7002 does not match --listen 0.0.0.0:7001"),
            "{refused}"
        );
        assert!(refused.contains("port 7002"), "{refused}");
        let refused = check("127.0.0.1:7001", "http://10.0.0.5:7001").unwrap_err();
        assert!(refused.contains("listen on 127.0.0.1 only"), "{refused}");
    }

    #[test]
    fn listen_addresses_are_host_and_port() {
        assert_eq!(
            ListenAddr::parse("[::1]:80").unwrap(),
            ListenAddr {
                host: "[::1]".into(),
                port: 80
            }
        );
        for bad in ["7001", ":7001", "host:0", "host:x", "a/b:1", "http://h:1"] {
            assert!(ListenAddr::parse(bad).is_err(), "{bad}");
        }
    }
}
