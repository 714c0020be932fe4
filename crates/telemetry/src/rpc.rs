//! Per-method count and latency of every gRPC call a node serves, as a tower layer
//! on the server, so no service has to instrument its handlers by hand.
//!
//! Label values come from bounded sets only (Prometheus' rule: every distinct
//! label value is a series held for ever): the method is one the node's server
//! defines, or [`OTHER_METHOD`] for any other path a client sends. Labelling by the
//! raw path once let 5,000 calls to made-up paths grow a storage node by 80 MB.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use tonic::codegen::http;

/// The `method` label of every call to a path the server does not define.
pub const OTHER_METHOD: &str = "other";

/// The methods of the gRPC health service every node serves beside its own
/// (`health_service`).
const HEALTH_METHODS: [&str; 2] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];

/// The labels of an RPC: its method and the status it ended with.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    /// `/package.Service/Method` when the server defines it, else [`OTHER_METHOD`].
    method: &'static str,
    /// The gRPC status code's name (`Ok`, `NotFound`, …).
    code: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~1.6 s: a storage read on loopback to a timed-out write.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// The RPC instruments of one node.
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    calls: Family<RpcLabels, Counter>,
    latency: Family<RpcLabels, Histogram, fn() -> Histogram>,
}

impl RpcMetrics {
    /// Creates the instruments and registers them as `dida_rpc_server_calls_total`
    /// and `dida_rpc_server_duration_seconds`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            calls: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        };
        registry.register(
            "rpc_server_calls",
            "gRPC calls served, by method and status code",
            metrics.calls.clone(),
        );
        registry.register_with_unit(
            "rpc_server_duration",
            "Time from a gRPC call's arrival to its response headers (the whole call \
             for unary methods, the start of the stream for streaming ones)",
            Unit::Seconds,
            metrics.latency.clone(),
        );
        metrics
    }

    pub(crate) fn record(&self, method: &'static str, code: tonic::Code, seconds: f64) {
        let labels = RpcLabels {
            method,
            code: format!("{code:?}"),
        };
        self.calls.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
    }
}

/// The status a gRPC response carries in its headers: errors are sent as
/// "trailers-only" responses, so their code is there; a response without it is a
/// success whose code follows in the trailers.
fn status_code<B>(response: &http::Response<B>) -> tonic::Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
        .unwrap_or(tonic::Code::Ok)
}

/// The `method` label of a call to `path`: `path` itself when it is one of the
/// sorted `known` methods or a health method, else [`OTHER_METHOD`].
fn method_label(known: &'static [&'static str], path: &str) -> &'static str {
    if let Ok(index) = known.binary_search(&path) {
        return known[index];
    }
    HEALTH_METHODS
        .iter()
        .find(|m| **m == path)
        .copied()
        .unwrap_or(OTHER_METHOD)
}

/// Applies [`RpcMetrics`] to every call of a server (see `Telemetry::rpc_layer`).
#[derive(Debug, Clone, Default)]
pub struct RpcMetricsLayer {
    metrics: Option<RpcMetrics>,
    known: &'static [&'static str],
}

impl RpcMetricsLayer {
    /// A layer recording into `metrics`, or passing calls through when `None`.
    /// Until [`Self::with_known_methods`] names the server's methods, every call
    /// is labelled [`OTHER_METHOD`] (but for the health service's).
    pub fn new(metrics: Option<RpcMetrics>) -> Self {
        Self {
            metrics,
            known: &[],
        }
    }

    /// Labels calls to the `known` methods (full paths, sorted) by their path; the
    /// server builder passes every method the `.proto` files define.
    pub fn with_known_methods(mut self, known: &'static [&'static str]) -> Self {
        debug_assert!(known.is_sorted(), "known methods must be sorted");
        self.known = known;
        self
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
            known: self.known,
        }
    }
}

/// The service [`RpcMetricsLayer`] wraps around a server's routes.
#[derive(Debug, Clone)]
pub struct RpcMetricsService<S> {
    inner: S,
    metrics: Option<RpcMetrics>,
    known: &'static [&'static str],
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Some(metrics) = self.metrics.clone() else {
            return Box::pin(self.inner.call(request));
        };
        let method = method_label(self.known, request.uri().path());
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            let code = match &result {
                Ok(response) => status_code(response),
                Err(_) => tonic::Code::Unknown,
            };
            metrics.record(method, code, started.elapsed().as_secs_f64());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_methods_label_calls() {
        let known: &'static [&'static str] = &[
            "/dida.storage.v1.Storage/Get",
            "/dida.storage.v1.Storage/Put",
        ];
        assert_eq!(
            method_label(known, "/dida.storage.v1.Storage/Put"),
            "/dida.storage.v1.Storage/Put"
        );
        assert_eq!(
            method_label(known, "/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        for unknown in [
            "/x.Y/Z",
            "",
            "/dida.storage.v1.Storage/Get/",
            "/dida.storage.v1.Storage/get",
        ] {
            assert_eq!(method_label(known, unknown), OTHER_METHOD, "{unknown:?}");
        }
    }
}
