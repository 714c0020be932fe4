//! Configuring, starting and stopping the scheduler.

use dida_core::listen::ListenAddr;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dida_core::limits::DEFAULT_RETAINED_BYTES;
use dida_core::membership::NodeUrl;
use dida_core::Membership;
use dida_proto::acked::{self, AckedLinks};
use dida_proto::execution::scheduler_server::SchedulerServer;
use dida_proto::execution::{HandOffReply, HandOffRequest};
use dida_proto::registry::applications_server::ApplicationsServer;
use dida_proto::registry::operators_server::OperatorsServer;
use dida_proto::server::{bind, bind_node, wait_for_termination, ServerHandle};
use dida_proto::transport::MAX_MESSAGE_BYTES;
use dida_storage_client::{ClientConfig, StorageClient, VIEW_REFRESH};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::apps_service::ApplicationsService;
use crate::catalogue::OperatorCatalogue;
use crate::executions::{ExecutionDetails, ExecutionLogs, ExecutionSummary, ExecutionTable};
use crate::members::WorkerState;
use crate::metrics::LoadCollector;
use crate::operators_service::OperatorsService;
use crate::registry::ClusterRegistry;
use crate::roster::{Roster, RENEWALS_PER_LEASE};
use crate::service::SchedulerService;
use dida_storage_client::registry::{Deployment, Index};
use dida_telemetry::NodeTelemetry;

/// Everything the scheduler is configured with.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The scheduler's id.
    pub id: String,
    /// Where it serves.
    pub url: NodeUrl,
    /// The static workers (`--workers`): members for as long as the scheduler
    /// runs, without a lease. Others register themselves (`RegisterWorker`).
    pub workers: Option<Membership>,
    /// How long a worker's registration holds without renewal
    /// (`--worker-lease-ms`): a worker that falls silent gets no placement after
    /// it. Workers renew every lease / [`RENEWALS_PER_LEASE`].
    pub worker_lease: Duration,
    /// Deadline of every call to a worker.
    pub rpc_deadline: Duration,
    /// An execution with no outcome after this long is failed and its load released.
    pub execution_timeout: Duration,
    /// How often the workers' operator lists are fetched again in the background (a
    /// submit naming an operator not known everywhere asks at once).
    pub operator_refresh: Duration,
    /// The storage cluster and its replication factor, when given: the scheduler
    /// then follows which storage nodes crashed (SPEC §2.5) and reports it in its
    /// status. It never calls storage otherwise.
    pub storage: Option<(Membership, usize)>,
    /// Bytes of outcomes, and of running executions' inputs, kept at most
    /// (`--max-retained-mb`): beyond them the oldest outcomes are forgotten, and a
    /// submit the running executions leave no room for is refused.
    pub max_retained_bytes: usize,
    /// Where the HTTP gateway serves (`--http-listen`), if it does.
    pub http_listen: Option<NodeUrl>,
    /// Where to bind (`--listen`); `None` binds the host and port of the node's
    /// URL. Given when peers reach the node by a name it cannot bind (a container,
    /// a pod, NAT).
    pub listen: Option<dida_core::listen::ListenAddr>,
    /// Where to serve `/metrics`, `/healthz` and `/readyz` (`--metrics-listen`).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The names of the operators built into the workers (`EchoOperator`, …),
    /// which no one may deploy over or remove: a deployment would change what they
    /// run for every application of the cluster. The `dida` binary fills it.
    pub builtin_operators: BTreeSet<String>,
    /// Where validating a deploy keeps what it compiles, and finds what this
    /// machine compiled before (`--compile-cache`); `None`: nowhere.
    pub compile_cache: Option<std::path::PathBuf>,
}

impl SchedulerConfig {
    /// A configuration with the default deadlines: 5 s calls, 5 min executions,
    /// operator lists refreshed every second, 3 s worker leases; outcomes kept up to
    /// [`DEFAULT_RETAINED_BYTES`].
    pub fn new(id: impl Into<String>, url: NodeUrl, workers: Option<Membership>) -> Self {
        Self {
            id: id.into(),
            url,
            workers,
            worker_lease: Duration::from_secs(3),
            rpc_deadline: Duration::from_secs(5),
            execution_timeout: Duration::from_secs(300),
            operator_refresh: Duration::from_secs(1),
            storage: None,
            max_retained_bytes: DEFAULT_RETAINED_BYTES,
            http_listen: None,
            listen: None,
            metrics_listen: None,
            builtin_operators: BTreeSet::new(),
            compile_cache: None,
        }
    }
}

/// What the scheduler's service shares.
#[derive(Debug)]
pub(crate) struct SchedulerState {
    pub config: SchedulerConfig,
    /// The workers: static and registered, with their leases.
    pub workers: Roster,
    /// Streams to the workers that new executions are handed on.
    pub hand_offs: AckedLinks<HandOffRequest, HandOffReply>,
    /// Fires when the scheduler stops: ends its streams, both directions.
    pub stop: watch::Receiver<()>,
    pub executions: Mutex<ExecutionTable>,
    pub operators: Arc<OperatorCatalogue>,
    /// A client of the storage cluster: to follow its view, and where deployed
    /// operators and registered applications are kept.
    pub storage: Option<Arc<StorageClient>>,
    /// Deployed operators and registered applications.
    pub registry: ClusterRegistry,
}

/// One worker as the scheduler's status (`Status`) and the gateway's
/// `GET /v1/workers` list it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct WorkerEntry {
    pub id: String,
    pub url: String,
    /// `alive`, `leaving` or `gone`.
    pub state: WorkerState,
    /// Operators assigned and not yet confirmed complete.
    pub load: u64,
    /// Operators assigned since the scheduler started.
    pub assigned: u64,
}

/// Inspecting executions: what the gRPC service (`ListExecutions`, `Outcome`,
/// `ExecutionLogs`) and any other front end of the scheduler answer with. Each call
/// copies what it returns out of the table under its lock, briefly.
impl SchedulerState {
    /// The most recent executions, newest first (see [`ExecutionTable::recent`]).
    pub(crate) fn recent_executions(&self, limit: usize) -> Vec<ExecutionSummary> {
        self.executions
            .lock()
            .expect("executions lock poisoned")
            .recent(limit)
    }

    /// What is kept about execution `id` but its logs; `None` if unknown. (The
    /// gRPC `Outcome` answers with the outcome message itself, which carries the same;
    /// this is for front ends that speak JSON.)
    pub(crate) fn execution_details(&self, id: &str) -> Option<ExecutionDetails> {
        self.executions
            .lock()
            .expect("executions lock poisoned")
            .details(id)
    }

    /// The log lines of execution `id`; `None` if unknown.
    /// The deployed operators, and the names every worker runs from its own files
    /// or built-ins and that are not deployed (a deployed name takes precedence):
    /// what `dida operator list` and `GET /v1/operators` show.
    pub(crate) async fn operator_listing(
        &self,
    ) -> Result<(Index<Deployment>, Vec<String>), tonic::Status> {
        let deployed = self.registry.operators.current().await?;
        let local = self
            .operators
            .common(&self.workers.snapshot().placeable_slots())
            .into_iter()
            .filter(|name| !deployed.contains_key(name))
            .collect();
        Ok((deployed, local))
    }

    /// Every worker the scheduler knows, by slot, with its state and load.
    pub(crate) fn worker_listing(&self) -> Vec<WorkerEntry> {
        let workers = self.workers.snapshot().workers;
        let executions = self.executions.lock().expect("executions lock poisoned");
        let loads = executions.loads();
        workers
            .into_iter()
            .enumerate()
            .map(|(slot, w)| WorkerEntry {
                id: w.id,
                url: w.url,
                state: w.state,
                load: loads.loads().get(slot).copied().unwrap_or(0),
                assigned: loads.assigned().get(slot).copied().unwrap_or(0),
            })
            .collect()
    }

    pub(crate) fn execution_logs(&self, id: &str) -> Option<ExecutionLogs> {
        self.executions
            .lock()
            .expect("executions lock poisoned")
            .logs(id)
    }
}

/// A running scheduler: serve until [`NodeHandle::shutdown`] or drop. It is the
/// server handle every dida role uses, with the scheduler's background tasks tied to it.
pub type NodeHandle = ServerHandle;

/// Starts the scheduler on `listener`, in the current runtime, without the HTTP
/// gateway.
pub async fn start(config: SchedulerConfig, listener: TcpListener) -> anyhow::Result<NodeHandle> {
    start_with_gateway(config, listener, None).await
}

/// Starts the scheduler on `listener`, and its HTTP gateway on `http` if given, in
/// the current runtime.
pub async fn start_with_gateway(
    config: SchedulerConfig,
    listener: TcpListener,
    http: Option<TcpListener>,
) -> anyhow::Result<NodeHandle> {
    let workers = Roster::new(
        config.workers.as_ref().map_or(&[], |w| w.members()),
        config.worker_lease,
        config.rpc_deadline,
    )?;
    let static_workers = config.workers.as_ref().map_or(0, Membership::len);
    // Execution ids are "<boot>-<n>": the boot tag (start time, base 36) keeps ids
    // unique across scheduler restarts.
    let boot_millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let boot = radix36(boot_millis % 36u128.pow(5));
    let storage = match &config.storage {
        // The registry's keys are dida's own: this client may change them.
        Some((membership, replication_factor)) => Some(Arc::new(StorageClient::for_registry(
            membership.clone(),
            ClientConfig {
                replication_factor: *replication_factor,
                deadline: config.rpc_deadline,
                ..ClientConfig::default()
            },
        )?)),
        None => None,
    };
    let (stop_signal, stop) = watch::channel(());
    let state = Arc::new(SchedulerState {
        hand_offs: acked::hand_offs(config.rpc_deadline, stop.clone()),
        stop,
        executions: Mutex::new(ExecutionTable::new(
            static_workers,
            boot,
            config.max_retained_bytes,
        )),
        operators: Arc::new(OperatorCatalogue::default()),
        workers,
        registry: ClusterRegistry::new(
            storage.clone(),
            config.builtin_operators.clone(),
            config.compile_cache.clone(),
        ),
        storage,
        config,
    });
    let service = SchedulerServer::new(SchedulerService {
        state: state.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let operators = OperatorsServer::new(OperatorsService {
        state: state.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let applications = ApplicationsServer::new(ApplicationsService {
        state: state.clone(),
    });
    let execution_metrics = state
        .executions
        .lock()
        .expect("execution table lock poisoned")
        .metrics()
        .clone();
    let loads = LoadCollector {
        state: state.clone(),
    };
    let telemetry = NodeTelemetry::start(
        state.config.metrics_listen,
        dida_telemetry::always_ready(),
        |registry| {
            execution_metrics.register(registry);
            registry.register_collector(Box::new(loads));
        },
    )
    .await?;
    let router = dida_proto::transport::server_builder(telemetry.telemetry.rpc_layer())?
        .add_service(telemetry.health)
        .add_service(service)
        .add_service(operators)
        .add_service(applications);
    let view = state
        .storage
        .clone()
        .map(|storage| tokio::spawn(storage.follow_view(VIEW_REFRESH)));
    let catalogue = {
        let roster = state.clone();
        tokio::spawn(state.operators.clone().refresh_forever(
            move || roster.workers.placeable_clients(),
            state.config.operator_refresh,
        ))
    };
    // Ends the leases that ran out, a few times per lease, so the log says when a
    // silent worker was dropped (placement never needs it: it reads the clock).
    let leases = {
        let state = state.clone();
        let period =
            (state.config.worker_lease / (2 * RENEWALS_PER_LEASE)).max(Duration::from_millis(1));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            loop {
                ticks.tick().await;
                state.workers.expire();
            }
        })
    };
    let period = state.config.operator_refresh;
    let deployed = tokio::spawn(state.registry.operators.clone().refresh_forever(period));
    let apps = tokio::spawn(state.registry.apps.clone().refresh_forever(period));
    let gateway = match http {
        Some(http) => Some(crate::http::serve(state.clone(), http)?),
        None => None,
    };
    let server = ServerHandle::spawn(router, listener)?
        .with_tasks(
            view.into_iter()
                .chain([catalogue, leases, deployed, apps])
                .chain(gateway)
                .chain(telemetry.tasks),
        )
        .with_stop_signal(stop_signal);
    info!(id = %state.config.id, addr = %server.local_addr(), static_workers, lease_ms = state.config.worker_lease.as_millis() as u64, "scheduler serving");
    Ok(server)
}

/// Runs the `dida scheduler` process until Ctrl-C or SIGTERM.
pub async fn run(config: SchedulerConfig) -> anyhow::Result<()> {
    let listen = config
        .listen
        .clone()
        .unwrap_or_else(|| ListenAddr::of_url(&config.url));
    let listener = bind_node(&listen, &config.url).await?;
    let http = match &config.http_listen {
        Some(url) => {
            crate::http::check_exposure(&url.host)?;
            Some(bind(&url.host, url.port).await?)
        }
        None => None,
    };
    let handle = start_with_gateway(config, listener, http).await?;
    wait_for_termination().await;
    info!("scheduler stopping");
    handle.shutdown().await
}

fn radix36(mut n: u128) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}
