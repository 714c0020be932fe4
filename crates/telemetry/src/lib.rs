//! What every dida node says about itself: Prometheus metrics, liveness and
//! readiness over HTTP (`--metrics-listen`), and the standard gRPC health service on
//! the node's own port.
//!
//! Each node owns a [`Telemetry`]: its own registry (not a process-wide recorder),
//! so the nodes of an in-process cluster keep their metrics apart exactly as
//! separate processes do. Roles register their metrics into it when they start; the
//! RPC metrics of every gRPC server come from [`RpcMetricsLayer`], which the shared
//! server builder applies.

mod endpoint;
mod health;
mod rpc;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

pub use health::{health_service, HealthServer};
pub use rpc::{RpcMetrics, RpcMetricsLayer, RpcMetricsService, OTHER_METHOD};

/// Whether a node can take traffic now: `Err` carries the reason it cannot, which
/// `/readyz` prints and the gRPC health service turns into `NOT_SERVING`.
pub type ReadinessCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A readiness check for roles that are ready as soon as they serve.
pub fn always_ready() -> ReadinessCheck {
    Arc::new(|| Ok(()))
}

/// One node's metrics registry and RPC instruments.
///
/// Built enabled when the node serves `/metrics`; built disabled otherwise, so a
/// node without `--metrics-listen` pays nothing per RPC (the layer passes calls
/// straight through) while role metrics, being plain atomics, stay cheap either way.
#[derive(Debug)]
pub struct Telemetry {
    registry: Mutex<Registry>,
    rpc: Option<RpcMetrics>,
}

impl Telemetry {
    /// A registry for one node; `enabled` turns the per-RPC instruments on.
    pub fn new(enabled: bool) -> Arc<Self> {
        let mut registry = Registry::with_prefix("dida");
        let rpc = enabled.then(|| RpcMetrics::register(&mut registry));
        Arc::new(Self {
            registry: Mutex::new(registry),
            rpc,
        })
    }

    /// Lets a role add its own metrics and collectors to the node's registry.
    pub fn register(&self, add: impl FnOnce(&mut Registry)) {
        add(&mut self
            .registry
            .lock()
            .expect("metrics registry lock poisoned"));
    }

    /// The layer the node's gRPC server applies: counts and times every call when
    /// metrics are enabled, and does nothing otherwise.
    pub fn rpc_layer(&self) -> RpcMetricsLayer {
        RpcMetricsLayer::new(self.rpc.clone())
    }

    /// The whole registry in the text exposition format (OpenMetrics, which
    /// Prometheus scrapes natively).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self
            .registry
            .lock()
            .expect("metrics registry lock poisoned");
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// What a role gets from [`NodeTelemetry::start`]: the pieces to add to its server.
#[derive(Debug)]
pub struct NodeTelemetry {
    /// The node's registry and RPC layer (for `server_builder`).
    pub telemetry: Arc<Telemetry>,
    /// The gRPC health service, to add to the node's router.
    pub health: HealthServer,
    /// Where `/metrics` is served, if it is.
    pub metrics_addr: Option<SocketAddr>,
    /// The health refresher and the HTTP endpoint: tie them to the node's server.
    pub tasks: Vec<JoinHandle<()>>,
}

impl NodeTelemetry {
    /// Everything a node exposes about itself, the one way every role sets it up:
    /// a registry with the role's metrics (`register`), the gRPC health service
    /// following `ready`, and, when `listen` is given, `/metrics`, `/healthz` and
    /// `/readyz` there.
    pub async fn start(
        listen: Option<SocketAddr>,
        ready: ReadinessCheck,
        register: impl FnOnce(&mut Registry),
    ) -> anyhow::Result<Self> {
        let telemetry = Telemetry::new(listen.is_some());
        telemetry.register(register);
        let (health, health_task) = health_service(ready.clone());
        let mut tasks = vec![health_task];
        let metrics_addr = match listen {
            Some(addr) => {
                let (addr, task) = endpoint::serve(addr, telemetry.clone(), ready).await?;
                tasks.push(task);
                Some(addr)
            }
            None => None,
        };
        Ok(Self {
            telemetry,
            health,
            metrics_addr,
            tasks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> prometheus_parse::Scrape {
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .expect("valid Prometheus text")
    }

    #[test]
    fn rpc_calls_are_exposed_by_method_and_code() {
        let telemetry = Telemetry::new(true);
        let rpc = telemetry.rpc.as_ref().expect("enabled");
        rpc.record("/dida.storage.v1.Storage/Get", tonic::Code::NotFound, 0.002);
        rpc.record("/dida.storage.v1.Storage/Get", tonic::Code::NotFound, 0.004);
        let scrape = parse(&telemetry.encode());
        let calls = scrape
            .samples
            .iter()
            .find(|s| s.metric == "dida_rpc_server_calls_total")
            .expect("a call counter");
        assert_eq!(
            calls.labels.get("method"),
            Some("/dida.storage.v1.Storage/Get")
        );
        assert_eq!(calls.labels.get("code"), Some("NotFound"));
        // The parser reads Prometheus' own format; OpenMetrics names a counter's
        // family without `_total`, so it may see the sample as untyped.
        assert!(matches!(
            calls.value,
            prometheus_parse::Value::Counter(n) | prometheus_parse::Value::Untyped(n) if n == 2.0
        ));
        assert!(scrape
            .samples
            .iter()
            .any(|s| s.metric == "dida_rpc_server_duration_seconds"));
    }

    #[test]
    fn a_node_without_metrics_listen_records_no_rpcs() {
        let telemetry = Telemetry::new(false);
        assert!(telemetry.rpc.is_none());
        assert!(parse(&telemetry.encode()).samples.is_empty());
    }
}
