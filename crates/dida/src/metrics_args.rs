//! `--metrics-listen`: the one check of the address every role serves its metrics
//! on (the flag itself is defined with each role's settings).

use std::net::SocketAddr;

use anyhow::Context;

/// Where to serve the metrics, once checked like every other listener
/// (`Security::check_exposure`): the endpoint shows the cluster's members, load and
/// traffic, so it is kept to loopback unless the cluster is secured or `--insecure`
/// says so. The only way a role reads the flag.
pub fn checked(metrics_listen: Option<SocketAddr>) -> anyhow::Result<Option<SocketAddr>> {
    if let Some(addr) = metrics_listen {
        dida_proto::security::installed()
            .check_exposure(&addr.ip().to_string())
            .context("--metrics-listen")?;
    }
    Ok(metrics_listen)
}
