//! The one check of the extra addresses a role serves on — `--metrics-listen` on
//! every role, `--resp-listen` on storage nodes (the flags themselves are defined
//! with each role's settings).

use std::net::SocketAddr;

use anyhow::Context;

/// Where to serve the metrics, once checked like every other listener
/// (`Security::check_exposure`): the endpoint shows the cluster's members, load and
/// traffic, so it is kept to loopback unless the cluster is secured or `--insecure`
/// says so. The only way a role reads the flag.
pub fn checked(metrics_listen: Option<SocketAddr>) -> anyhow::Result<Option<SocketAddr>> {
    checked_listener("--metrics-listen", metrics_listen)
}

/// `addr` of listener flag `flag`, once checked like every other listener: kept to
/// loopback unless the cluster is secured or `--insecure` says so.
pub fn checked_listener(
    flag: &str,
    addr: Option<SocketAddr>,
) -> anyhow::Result<Option<SocketAddr>> {
    if let Some(addr) = addr {
        dida_proto::security::installed()
            .check_exposure(&addr.ip().to_string())
            .with_context(|| flag.to_string())?;
    }
    Ok(addr)
}
