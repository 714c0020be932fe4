//! Configuring, starting and stopping a worker.

use dida_core::listen::ListenAddr;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::WorkerMetrics;
use anyhow::Context;
use dida_core::membership::NodeUrl;
use dida_core::Membership;
use dida_proto::acked::{self, AckedLinks};
use dida_proto::control::debug_sink_client::DebugSinkClient;
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::worker_server::WorkerServer;
use dida_proto::execution::{
    HandOffReply, HandOffRequest, ReportOutcomesReply, ReportOutcomesRequest,
};
use dida_proto::server::{bind_node, wait_for_termination, ServerHandle};
use dida_proto::transport::{lazy_channel, MAX_MESSAGE_BYTES};
use dida_storage_client::{ClientConfig, StorageClient, VIEW_REFRESH};
use dida_telemetry::NodeTelemetry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::completions::CompletionQueue;
use crate::consistency::ConsistencySettings;
use crate::lease::Lease;
use crate::registry::OperatorRegistry;
use crate::runtime::{OperatorRuntime, SandboxLimits};
use crate::service::WorkerService;

/// Everything a worker is configured with.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This worker's id.
    pub id: String,
    /// Where this worker serves (also how others reach it).
    pub url: NodeUrl,
    /// How long the worker waits before forwarding a request to the next worker.
    pub gossip_delay: Duration,
    /// The storage cluster operators use.
    pub storage: Membership,
    /// The storage cluster's replication factor (for routing).
    pub replication_factor: usize,
    /// The storage cluster's virtual nodes per node (for routing).
    pub vnodes: u32,
    /// The scheduler to register with (and renew the lease), confirm completions
    /// and report outcomes to.
    pub scheduler_url: NodeUrl,
    /// How long a leaving worker waits at most for its executions to drain
    /// (`--drain-timeout`).
    pub drain_timeout: Duration,
    /// A directory of `<ClassName>.wasm` operators, taking precedence over built-ins.
    pub operators_dir: Option<PathBuf>,
    /// Built-in operators: class name → component bytes.
    pub builtins: BTreeMap<String, &'static [u8]>,
    /// Sandbox limits of every invocation.
    pub limits: SandboxLimits,
    /// How reads of pinned versions wait for gossip.
    pub consistency: ConsistencySettings,
    /// Deadline of every call to another node.
    pub rpc_deadline: Duration,
    /// Debug mode (`--debug-sink`): after each operator, the worker sends what it
    /// output and wrote, with the metadata, to this PuppetMaster debug sink.
    pub debug_sink: Option<NodeUrl>,
    /// Where to bind (`--listen`); `None` binds the host and port of the node's
    /// URL. Given when peers reach the node by a name it cannot bind (a container,
    /// a pod, NAT).
    pub listen: Option<dida_core::listen::ListenAddr>,
    /// Where to serve `/metrics`, `/healthz` and `/readyz` (`--metrics-listen`).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Where compiled operators are kept across starts (`--compile-cache`); `None`
    /// compiles every operator on every start.
    pub compile_cache: Option<PathBuf>,
}

impl WorkerConfig {
    /// A configuration with default limits and deadlines (a 5 min drain).
    pub fn new(
        id: impl Into<String>,
        url: NodeUrl,
        storage: Membership,
        scheduler_url: NodeUrl,
    ) -> Self {
        Self {
            id: id.into(),
            url,
            gossip_delay: Duration::ZERO,
            storage,
            replication_factor: 3,
            vnodes: 128,
            scheduler_url,
            drain_timeout: Duration::from_secs(300),
            operators_dir: None,
            builtins: BTreeMap::new(),
            limits: SandboxLimits::default(),
            consistency: ConsistencySettings::default(),
            rpc_deadline: Duration::from_secs(5),
            debug_sink: None,
            listen: None,
            metrics_listen: None,
            compile_cache: None,
        }
    }
}

/// Counters reported by `Status`.
#[derive(Debug, Default)]
pub(crate) struct WorkerStats {
    pub running: AtomicU64,
    /// Hops in progress, from accepting a request to handing it on or reporting
    /// its outcome (longer than `running`, which counts only the operator's run):
    /// a leaving worker waits for these.
    pub hops: AtomicU64,
    pub completed: AtomicU64,
    pub failed: AtomicU64,
}

/// What the worker's service and hop tasks share.
#[derive(Debug)]
pub(crate) struct WorkerState {
    pub config: WorkerConfig,
    pub registry: OperatorRegistry,
    pub storage: Arc<StorageClient>,
    pub scheduler: SchedulerClient<dida_proto::transport::NodeChannel>,
    /// The PuppetMaster's debug sink, in debug mode.
    pub debug_sink: Option<DebugSinkClient<dida_proto::transport::NodeChannel>>,
    /// Streams to other workers, by URL, that requests are handed on.
    pub hand_offs: AckedLinks<HandOffRequest, HandOffReply>,
    /// The stream to the scheduler that outcomes are reported on.
    pub reports: AckedLinks<ReportOutcomesRequest, ReportOutcomesReply>,
    /// Fires when the worker stops: ends its streams, both directions.
    pub stop: watch::Receiver<()>,
    /// Completed operators not yet confirmed to the scheduler.
    pub completions: CompletionQueue,
    pub stats: WorkerStats,
    /// The worker's Prometheus instruments.
    pub metrics: WorkerMetrics,
}

/// A running worker: serve until [`NodeHandle::shutdown`] or drop. It is the
/// server handle every dida role uses, with the worker's background tasks tied to it.
pub type NodeHandle = ServerHandle;

/// Starts a worker serving on `listener`, in the current runtime; it registers with
/// its scheduler and renews its lease until shut down, and never leaves gracefully
/// (see [`start_member`] for that).
pub async fn start(config: WorkerConfig, listener: TcpListener) -> anyhow::Result<NodeHandle> {
    start_member(config, listener)
        .await
        .map(|(handle, _)| handle)
}

/// Starts a worker serving on `listener`, in the current runtime, with the handle
/// of its membership of the scheduler's worker set, through which it leaves
/// ([`Lease::leave`]). Built-in operators are compiled in the background so the
/// first executions need not wait for them.
pub async fn start_member(
    config: WorkerConfig,
    listener: TcpListener,
) -> anyhow::Result<(NodeHandle, Lease)> {
    if let Some(dir) = &config.operators_dir {
        anyhow::ensure!(
            dir.is_dir(),
            "--operators {} is not a directory",
            dir.display()
        );
    }
    let mut runtime = OperatorRuntime::new(config.limits)?;
    if let Some(dir) = &config.compile_cache {
        runtime = runtime.with_compiled_cache(dir);
    }
    let storage = StorageClient::new(
        config.storage.clone(),
        ClientConfig {
            replication_factor: config.replication_factor,
            vnodes: config.vnodes,
            deadline: config.rpc_deadline,
            ..ClientConfig::default()
        },
    )
    .context("invalid storage membership")?;
    let storage = Arc::new(storage);
    let metrics = WorkerMetrics::new();
    let registry = OperatorRegistry::new(
        runtime,
        config.builtins.clone(),
        config.operators_dir.clone(),
    )
    .with_deployed_from(storage.clone())
    .counting_loads(metrics.loads());
    let scheduler = SchedulerClient::new(
        lazy_channel(&config.scheduler_url.to_string(), config.rpc_deadline)
            .context("invalid --scheduler")?,
    );
    let debug_sink = match &config.debug_sink {
        Some(url) => Some(DebugSinkClient::new(
            lazy_channel(&url.to_string(), config.rpc_deadline).context("invalid --debug-sink")?,
        )),
        None => None,
    };
    let (stop_signal, stop) = watch::channel(());
    let state = Arc::new(WorkerState {
        registry,
        storage,
        scheduler,
        debug_sink,
        hand_offs: acked::hand_offs(config.rpc_deadline, stop.clone()),
        reports: acked::outcome_reports(config.rpc_deadline, stop.clone()),
        stop,
        completions: CompletionQueue::default(),
        stats: WorkerStats::default(),
        metrics,
        config,
    });
    let warm = {
        let state = state.clone();
        tokio::spawn(async move {
            for name in state.config.builtins.keys() {
                if let Err(error) = state.registry.get(name).await {
                    tracing::warn!(%error, "built-in operator failed to compile");
                }
            }
        })
    };
    let view = tokio::spawn(state.storage.clone().follow_view(VIEW_REFRESH));
    let confirm = tokio::spawn(CompletionQueue::flush_forever(state.clone()));
    let service = WorkerServer::new(WorkerService {
        state: state.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let telemetry = NodeTelemetry::start(
        state.config.metrics_listen,
        dida_telemetry::always_ready(),
        |registry| state.metrics.register(registry),
    )
    .await?;
    let router = dida_proto::transport::server_builder(telemetry.telemetry.rpc_layer())?
        .add_service(telemetry.health)
        .add_service(service);
    let server = ServerHandle::spawn(router, listener)?;
    // Registered only once it serves: the scheduler may hand it work at once.
    let (membership, renewals) = Lease::start(state.clone());
    let server = server
        .with_tasks([warm, view, confirm, renewals])
        .with_tasks(telemetry.tasks)
        .with_stop_signal(stop_signal);
    info!(id = %state.config.id, addr = %server.local_addr(), "worker serving");
    Ok((server, membership))
}

/// Runs the `dida worker` process until Ctrl-C or SIGTERM, then leaves the
/// scheduler's worker set gracefully (drains, deregisters) and stops. Fails if the
/// scheduler refuses the worker (its id is held by another live worker, …).
pub async fn run(config: WorkerConfig) -> anyhow::Result<()> {
    let listen = config
        .listen
        .clone()
        .unwrap_or_else(|| ListenAddr::of_url(&config.url));
    let listener = bind_node(&listen, &config.url).await?;
    let drain_timeout = config.drain_timeout;
    let (handle, mut membership) = start_member(config, listener).await?;
    tokio::select! {
        () = wait_for_termination() => {}
        reason = membership.refused() => {
            handle.shutdown().await?;
            anyhow::bail!(reason);
        }
    }
    membership.leave(drain_timeout).await;
    info!("worker stopping");
    handle.shutdown().await
}
