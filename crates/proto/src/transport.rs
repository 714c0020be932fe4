//! Transport settings shared by every dida role, so every connection between nodes
//! behaves the same way: lazy connection, a connect deadline, a per-call deadline,
//! `TCP_NODELAY` on both ends, keep-alive, and the same message-size limit on both
//! ends. Clients get their channels from [`lazy_channel`], servers their builder from
//! [`server_builder`] (and their sockets' options from
//! [`ServerHandle::spawn`](crate::server::ServerHandle::spawn)).

use std::time::Duration;

use anyhow::Context;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig,
};

use dida_telemetry::RpcMetricsLayer;

use crate::authorize::AuthorizeLayer;
use crate::security::{self, CLUSTER_TOKEN_HEADER};

/// Largest message any dida node encodes or decodes (64 MiB): big enough for a
/// `ListRecords` of a large node, small enough that a hostile peer cannot make a node
/// allocate without bound.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Requests one connection may have in progress at once on a server; more wait for
/// one to finish. With the bounds on connections ([`crate::connections`]) it bounds
/// the work one client can make a node hold. A `Calls` or acknowledged-push stream
/// counts as one request however many messages it carries, so 256 is far above what
/// dida's own clients use.
pub const MAX_IN_FLIGHT_PER_CONNECTION: usize = 256;

/// How often an idle HTTP/2 connection is pinged, by either end, to notice a peer
/// that is gone (the kernel's keep-alive alone takes minutes to).
pub const HTTP2_KEEPALIVE: Duration = Duration::from_secs(10);

/// Idle time after which the kernel probes a connection with TCP keep-alive.
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// The layers of every dida server: RPC metrics around authorisation.
type NodeLayers = tower::layer::util::Stack<
    RpcMetricsLayer,
    tower::layer::util::Stack<AuthorizeLayer, tower::layer::util::Identity>,
>;

/// The server builder of every dida role: authorisation and RPC metrics on every
/// request.
pub type NodeServer = Server<NodeLayers>;

/// What a dida server serves: its services behind [`AuthorizeLayer`] and
/// [`RpcMetricsLayer`].
pub type NodeRouter = tonic::transport::server::Router<NodeLayers>;

/// The gRPC server builder every dida role starts from, so every server applies the
/// same transport settings and the same security: mutual TLS when this process has
/// a TLS identity ([`security::installed`]), [`AuthorizeLayer`] on every call, and
/// `rpc_metrics` (the node's `Telemetry::rpc_layer`, or a default layer that
/// records nothing) counting and timing every call, labelled by the methods the
/// `.proto` files define ([`crate::GRPC_METHODS`]) and `other`.
/// Serve the router it builds with
/// [`ServerHandle::spawn`](crate::server::ServerHandle::spawn), which applies
/// `TCP_NODELAY` to each accepted socket (the builder's own `tcp_nodelay` only
/// reaches sockets of listeners tonic binds itself).
pub fn server_builder(rpc_metrics: RpcMetricsLayer) -> anyhow::Result<NodeServer> {
    let mut builder = Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE))
        .concurrency_limit_per_connection(MAX_IN_FLIGHT_PER_CONNECTION);
    if let Some(tls) = &security::installed().tls {
        let config = ServerTlsConfig::new()
            .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
            .client_ca_root(Certificate::from_pem(&tls.ca_pem));
        builder = builder
            .tls_config(config)
            .context("cannot use this node's TLS certificate and key")?;
    }
    Ok(builder
        .layer(AuthorizeLayer)
        .layer(rpc_metrics.with_known_methods(crate::GRPC_METHODS)))
}

/// A channel to a dida node, as every client holds it: the cluster token (when this
/// process has one) is added to every call.
pub type NodeChannel = InterceptedService<Channel, Credentials>;

/// Adds the credentials a channel carries to every call made on it: this process's
/// cluster token, and any header its client adds (a PCS's own token).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    headers: Vec<(&'static str, MetadataValue<Ascii>)>,
}

impl Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        for (name, value) in &self.headers {
            request.metadata_mut().insert(*name, value.clone());
        }
        Ok(request)
    }
}

/// Opens a lazily connected channel to `url` (`http://HOST:PORT`).
///
/// Nothing is sent until the first call; a node that is down is discovered by that
/// call, which fails within `deadline` (the deadline bounds both connecting and every
/// call made on the channel), so no caller ever hangs on an unreachable node.
///
/// With TLS on ([`security::installed`]), the connection is made with TLS whatever
/// the URL's scheme, presenting this process's certificate and trusting only the
/// cluster's CA. Without it, an `https://` URL is refused.
pub fn lazy_channel(url: &str, deadline: Duration) -> anyhow::Result<NodeChannel> {
    lazy_channel_for_waits(url, deadline, deadline)
}

/// Like [`lazy_channel`], for calls that wait on the server on purpose (`Run`,
/// `Outcome`): connecting is bounded by `connect_deadline`, each call by
/// `call_deadline`, so an unreachable node is still noticed quickly.
pub fn lazy_channel_for_waits(
    url: &str,
    connect_deadline: Duration,
    call_deadline: Duration,
) -> anyhow::Result<NodeChannel> {
    lazy_channel_with_headers(url, connect_deadline, call_deadline, &[])
}

/// Like [`lazy_channel_for_waits`], adding `headers` (name, printable ASCII value)
/// to every call made on the channel.
pub fn lazy_channel_with_headers(
    url: &str,
    connect_deadline: Duration,
    call_deadline: Duration,
    headers: &[(&'static str, &str)],
) -> anyhow::Result<NodeChannel> {
    let security = security::installed();
    security.check_scheme(url)?;
    let url = match (&security.tls, url.strip_prefix("http://")) {
        (Some(_), Some(rest)) => format!("https://{rest}"),
        _ => url.to_string(),
    };
    let mut endpoint = Endpoint::from_shared(url.clone())
        .with_context(|| format!("invalid node URL {url:?}"))?
        .connect_timeout(connect_deadline)
        .timeout(call_deadline)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(HTTP2_KEEPALIVE)
        .tcp_keepalive(Some(TCP_KEEPALIVE))
        .keep_alive_timeout(connect_deadline);
    if let Some(tls) = &security.tls {
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&tls.ca_pem))
            .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
        endpoint = endpoint
            .tls_config(config)
            .context("cannot use this process's TLS certificate and key")?;
    }
    let token = security
        .node_token()
        .map(|token| (CLUSTER_TOKEN_HEADER, token));
    let headers = token
        .iter()
        .chain(headers)
        .map(|&(name, value)| {
            let value = value
                .parse()
                .with_context(|| format!("the value of {name} must be printable ASCII"))?;
            Ok((name, value))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(InterceptedService::new(
        endpoint.connect_lazy(),
        Credentials { headers },
    ))
}

/// Whether a failed call never reached its server: the connection could not be made
/// (refused, no route, connect timeout, a failed TLS handshake). Such a call
/// certainly had no effect, so a write may be retried elsewhere without risk of
/// applying it twice; any other failure (a reset or a deadline mid-call) leaves the
/// outcome unknown. Decided by type: tonic wraps every failure of its connector
/// (TCP connect and TLS handshake) in [`tonic::ConnectError`].
pub fn is_connect_failure(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::ConnectError>() {
            return true;
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable
            ) {
                return true;
            }
        }
        source = error.source();
    }
    false
}

/// A status's message followed by the chain of its sources, where the transport
/// hides the words that matter ("connection refused"): what error messages show and
/// what callers classify.
pub fn describe(status: &tonic::Status) -> String {
    let mut text = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        let shown = error.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        source = error.source();
    }
    text
}
