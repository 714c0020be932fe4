//! `dida bench chain`: executions of chains of no-op operators against a raw RPC
//! baseline, and one operator invocation measured alone.
//!
//! The benchmark measures a running cluster (`--scheduler` and `--worker`) or, by
//! default, starts one of real processes on loopback — storage nodes, a scheduler and
//! workers of the same `dida` binary — and stops it at the end. It measures, in this
//! order:
//!
//! 1. **one invocation alone**: `EchoOperator` instantiated and called in this
//!    process's own wasmtime runtime, the way a worker's hop does it, with no network
//!    (one task, back to back);
//! 2. at each concurrency, the **baseline** first — the worker `Ping` RPC, an empty
//!    call answered without touching any state — and then one **execution** of a
//!    chain of each length: one `Run` call to the scheduler, which submits it and
//!    answers with the outcome when the execution has ended — exactly what `dida run`
//!    does; its latency is the end-to-end latency a client sees.
//!
//! The **per-hop overhead** at a concurrency is the slope of median latency against
//! chain length, between the shortest and the longest chain: with the default 1 and 10,
//! (p50(10) − p50(1)) / 9. Everything an execution pays once (the client's call, the
//! scheduler's bookkeeping, the final report) cancels out, leaving what one more
//! operator costs: running it and handing the request to the next worker (its
//! confirmation to the scheduler rides in a batch). It is compared with the ping's
//! median at the same concurrency.
//!
//! The **RPC bound** of a chain of N operators is the ping's throughput ÷ (N + 2): an
//! execution needs one call from the client, N hand-offs (the scheduler's to the
//! first worker and N − 1 between workers) and one outcome report, each at best as
//! cheap as a ping. Each chain row shows its throughput as a share of that bound.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use clap::Args;
use dida_core::membership::NodeUrl;
use dida_core::Membership;
use dida_local_cluster::{current_dida, free_ports, ClusterSpec, ComputeSpec, LocalCluster};
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::worker_client::WorkerClient;
use dida_proto::execution::{RunRequest, SubmitRequest};
use dida_proto::storage::PingRequest;
use dida_proto::transport::lazy_channel;
use dida_proto::transport::NodeChannel;
use dida_storage_client::{ClientConfig, StorageClient};
use dida_worker::consistency::{ConsistencySettings, ExecutionStorage};
use dida_worker::registry::OperatorRegistry;
use dida_worker::runtime::OperatorRuntime;
use dida_worker::SandboxLimits;
use serde_json::json;

use crate::closed_loop::{Measurement, Operation};
use crate::http_client::HttpClient;
use crate::lines::{self, BenchLine, BenchSetup, ChainSetup, Comparison, ModeCost};
use crate::report::{ratio, Printer, Row};
use crate::storage::{
    median_runs, parse_positive_seconds, parse_seconds, print_mode_costs, stop_cluster,
    Concurrencies, ModeRow, Timing,
};

/// The operator every chain is made of: the no-op built-in, which returns its input
/// (or the previous output) and touches no storage.
const OPERATOR: &str = "EchoOperator";

/// The input of every execution (and so, through `EchoOperator`, every output).
const INPUT: &str = "bench";

/// Longest chain `--lengths` accepts.
const MAX_LENGTH: usize = 1000;

/// How long one `Run` call waits on the scheduler for the execution to end; the
/// channel's deadline is longer, so a call never times out on the client's side first.
const RUN_WAIT_MS: u32 = 60_000;
const SCHEDULER_DEADLINE: Duration = Duration::from_secs(70);

/// Deadline of the baseline's calls to the worker.
const PING_DEADLINE: Duration = Duration::from_secs(5);

/// The target of the verdict on the per-hop overhead at `concurrency` in flight: at
/// most this many raw round trips (the ping's median) per hop, at the median — two
/// with one execution in flight (the hand-off and the operator), three under load.
pub(crate) fn per_hop_target(concurrency: usize) -> f64 {
    if concurrency <= 1 {
        2.0
    } else {
        3.0
    }
}

/// The target of the verdict on chain throughput: at least this share of the RPC
/// bound, ping throughput ÷ (N + 2).
pub(crate) const RPC_BOUND_TARGET: f64 = 0.60;

/// The target of the verdict on one invocation alone: a median below this.
pub(crate) const INVOCATION_TARGET_US: u64 = 20;

/// Flags of `dida bench chain`.
#[derive(Debug, Args)]
pub(crate) struct ChainBenchArgs {
    /// The scheduler of a running cluster to measure (with --worker). Without it, the
    /// benchmark starts a local cluster of its own and stops it at the end.
    #[arg(long, requires = "worker")]
    scheduler: Option<String>,
    /// A worker of that running cluster: the target of the ping baseline (with
    /// --scheduler).
    #[arg(long, requires = "scheduler")]
    worker: Option<String>,
    /// Storage nodes of the local cluster (ignored with --scheduler).
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Workers of the local cluster (ignored with --scheduler).
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Chain lengths to measure (EchoOperators per execution), comma-separated. The
    /// per-hop overhead is computed from the shortest and the longest.
    #[arg(long, default_value = "1,5,10")]
    lengths: ChainLengths,
    /// Executions (and pings) in flight to measure at, comma-separated.
    #[arg(long, default_value = "1,16")]
    concurrency: Concurrencies,
    /// Seconds per measurement (fractions allowed).
    #[arg(long, default_value = "3", value_parser = parse_positive_seconds)]
    duration: Duration,
    /// Seconds of warm-up before each measurement, not counted.
    #[arg(long, default_value = "0.5", value_parser = parse_seconds)]
    warmup: Duration,
    /// Also invoke the shortest chain over the scheduler's HTTP gateway, beside the
    /// gRPC path and the ping. The local cluster's scheduler then serves one; a
    /// running cluster's is given with --gateway.
    #[arg(long)]
    http: bool,
    /// Measure the cost of metrics: run everything twice, on a fresh local cluster
    /// each, without and then with --metrics-listen on every node (scraped by
    /// nobody: the cost is recording), and end the report with the second's
    /// throughput over the first's.
    #[arg(long, conflicts_with = "scheduler")]
    metrics_overhead: bool,
    /// With --metrics-overhead: run the off/on pair this many times, alternating,
    /// and compare each row's median (a shared machine's speed drifts over minutes;
    /// alternating spreads the drift over both modes).
    #[arg(long, default_value_t = 1, requires = "metrics_overhead",
          value_parser = clap::value_parser!(u32).range(1..=9))]
    rounds: u32,
    /// The HTTP gateway of the running cluster given by --scheduler (HOST:PORT or
    /// http://HOST:PORT); implies --http.
    #[arg(long, requires = "scheduler")]
    gateway: Option<String>,
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

/// The chain lengths to measure, in the order given; each from 1 to [`MAX_LENGTH`],
/// no repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ChainLengths(Vec<usize>);

impl FromStr for ChainLengths {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut lengths = Vec::new();
        for part in text.split(',').map(str::trim) {
            let length: usize = part
                .parse()
                .map_err(|_| format!("{part:?} is not a number of operators"))?;
            if !(1..=MAX_LENGTH).contains(&length) {
                return Err(format!(
                    "a chain has from 1 to {MAX_LENGTH} operators, not {length}"
                ));
            }
            if lengths.contains(&length) {
                return Err(format!("length {length} is listed twice"));
            }
            lengths.push(length);
        }
        Ok(Self(lengths))
    }
}

impl ChainLengths {
    /// The shortest and the longest length, when they differ (the per-hop overhead
    /// needs two lengths).
    fn span(&self) -> Option<(usize, usize)> {
        let shortest = *self.0.iter().min()?;
        let longest = *self.0.iter().max()?;
        (shortest < longest).then_some((shortest, longest))
    }
}

/// The name of the workload measuring chains of `length` operators.
fn chain_workload(length: usize) -> String {
    format!("chain-{length}")
}

/// Runs `dida bench chain`.
pub(crate) async fn run(args: ChainBenchArgs) -> anyhow::Result<()> {
    ensure!(
        dida_operators::find_builtin(OPERATOR).is_some(),
        "this dida has no built-in {OPERATOR}"
    );
    if args.metrics_overhead {
        let mut runs = Vec::new();
        for _ in 0..args.rounds {
            for (name, metrics) in [("off", false), ("on", true)] {
                let rows = measure_local(&args, metrics).await?;
                runs.push((name, rows.iter().map(ModeRow::from).collect()));
            }
        }
        print_mode_costs(
            Printer { json: args.json },
            Comparison::Metrics,
            &median_runs(&runs),
        );
        return Ok(());
    }
    if let (Some(scheduler), Some(worker)) = (&args.scheduler, &args.worker) {
        let target = Target {
            description: "given by --scheduler and --worker".to_string(),
            scheduler_url: NodeUrl::parse(scheduler)
                .context("invalid --scheduler")?
                .to_string(),
            worker_id: "--worker".to_string(),
            worker_url: NodeUrl::parse(worker)
                .context("invalid --worker")?
                .to_string(),
            gateway: args
                .gateway
                .as_deref()
                .map(|g| format!("http://{}", g.trim_start_matches("http://"))),
        };
        return measure_all(&args, &target).await.map(drop);
    }
    measure_local(&args, false).await.map(drop)
}

/// Starts a local cluster (every node serving metrics when `metrics` is set),
/// measures it, stops it and returns the rows.
async fn measure_local(args: &ChainBenchArgs, metrics: bool) -> anyhow::Result<Vec<Row>> {
    let cluster = start_cluster(args, metrics).await?;
    let outcome = match cluster_target(&cluster, args) {
        Ok(target) => measure_all(args, &target).await,
        Err(error) => Err(error),
    };
    let stopped = stop_cluster(cluster).await;
    let rows = outcome?;
    stopped?;
    Ok(rows)
}

/// What the benchmark measures: the scheduler executions go to and the worker the
/// baseline pings.
struct Target {
    /// Where the nodes come from.
    description: String,
    scheduler_url: String,
    worker_id: String,
    worker_url: String,
    /// The scheduler's HTTP gateway, `http://HOST:PORT`, when it is measured.
    gateway: Option<String>,
}

/// Starts the storage nodes, then the scheduler and the workers, every node serving
/// metrics when `metrics` is set.
async fn start_cluster(args: &ChainBenchArgs, metrics: bool) -> anyhow::Result<LocalCluster> {
    let binary = current_dida()?;
    let defaults = ClusterSpec::default();
    let spec = ClusterSpec {
        nodes: args.nodes,
        // Nodes refuse a replication factor above their number.
        replication_factor: defaults.replication_factor.min(args.nodes),
        metrics,
        ..defaults
    };
    let mut cluster = LocalCluster::start(&binary, spec).await.with_context(|| {
        format!(
            "cannot start a local cluster of {} storage nodes",
            args.nodes
        )
    })?;
    let mut scheduler_args = Vec::new();
    let mut worker_args = Vec::new();
    if args.http {
        let port = free_ports(1)?[0];
        scheduler_args.extend(["--http-listen".to_string(), format!("127.0.0.1:{port}")]);
    }
    if metrics {
        // Port 0: each node takes a port of its own; nobody scrapes them here.
        let listen = ["--metrics-listen".to_string(), "127.0.0.1:0".to_string()];
        scheduler_args.extend(listen.clone());
        worker_args.extend(listen);
    }
    let compute = ComputeSpec {
        workers: args.workers,
        scheduler_args,
        worker_args,
        ..ComputeSpec::default()
    };
    if let Err(error) = cluster.start_compute(&binary, compute).await {
        // Dropping the cluster kills whatever did start; reap the storage nodes too.
        stop_cluster(cluster).await?;
        return Err(error.context(format!(
            "cannot start a local scheduler and {} workers",
            args.workers
        )));
    }
    Ok(cluster)
}

/// The scheduler and first worker of the local cluster.
fn cluster_target(cluster: &LocalCluster, args: &ChainBenchArgs) -> anyhow::Result<Target> {
    let worker = cluster
        .workers()?
        .members()
        .first()
        .context("the local cluster has no worker")?;
    Ok(Target {
        description: format!(
            "{} storage nodes, a scheduler and {} workers: local processes started by this run",
            args.nodes, args.workers
        ),
        scheduler_url: cluster.scheduler_url()?.to_string(),
        worker_id: worker.id.clone(),
        worker_url: worker.url.to_string(),
        gateway: cluster
            .scheduler_args()?
            .windows(2)
            .find(|pair| pair[0] == "--http-listen")
            .map(|pair| format!("http://{}", pair[1])),
    })
}

/// Measures one invocation alone, then the baseline and every chain length at every
/// concurrency, and prints the report.
async fn measure_all(args: &ChainBenchArgs, target: &Target) -> anyhow::Result<Vec<Row>> {
    let printer = Printer { json: args.json };
    print_setup(printer, args, target);
    let timing = Timing {
        warmup: args.warmup,
        duration: args.duration,
    };
    let scheduler = SchedulerClient::new(
        lazy_channel(&target.scheduler_url, SCHEDULER_DEADLINE).context("invalid scheduler URL")?,
    );
    let worker = WorkerClient::new(
        lazy_channel(&target.worker_url, PING_DEADLINE).context("invalid worker URL")?,
    );

    printer.table_header();
    let invocation = timing
        .measure(vec![Invoke::prepare().await?])
        .await
        .context("invocations alone failed")?;
    let invocation = Row::new("invoke", 1, &invocation, 0.0);
    printer.row(&invocation);

    let mut rows = Vec::new();
    for &concurrency in &args.concurrency.0 {
        let pings = (0..concurrency)
            .map(|_| WorkerPing {
                worker: worker.clone(),
            })
            .collect();
        let ping = timing
            .measure(pings)
            .await
            .with_context(|| format!("ping at concurrency {concurrency} failed"))?;
        let ping_ops_per_sec = ping.throughput();
        let row = Row::new("ping", concurrency, &ping, ping_ops_per_sec);
        printer.row(&row);
        rows.push(row);
        for &length in &args.lengths.0 {
            let measurement = measure_chain(timing, &scheduler, length, concurrency)
                .await
                .with_context(|| {
                    format!("chains of {length} at concurrency {concurrency} failed")
                })?;
            let row = Row::new(
                chain_workload(length),
                concurrency,
                &measurement,
                ping_ops_per_sec,
            );
            printer.row(&row);
            rows.push(row);
        }
        if let (Some(gateway), Some(&length)) = (&target.gateway, args.lengths.0.iter().min()) {
            let invocations = (0..concurrency)
                .map(|_| HttpInvoke::new(gateway, length))
                .collect();
            let measurement = timing
                .measure(invocations)
                .await
                .with_context(|| format!("HTTP invocations at concurrency {concurrency} failed"))?;
            let row = Row::new(
                http_workload(length),
                concurrency,
                &measurement,
                ping_ops_per_sec,
            );
            printer.row(&row);
            rows.push(row);
        }
    }

    let mut verdicts = Vec::new();
    if target.gateway.is_some() {
        let length = args.lengths.0.iter().copied().min().unwrap_or(1);
        for &concurrency in &args.concurrency.0 {
            verdicts.push(gateway_comparison(printer, &rows, length, concurrency));
        }
    }
    for &concurrency in &args.concurrency.0 {
        for &length in &args.lengths.0 {
            verdicts.push(rpc_bound_verdict(&rows, length, concurrency));
        }
    }
    for &concurrency in &args.concurrency.0 {
        let hop = PerHop::from_rows(&rows, &args.lengths, concurrency);
        if printer.json {
            if let Some(hop) = &hop {
                lines::print_json(&BenchLine::PerHop(hop.to_line()));
            }
        }
        verdicts.push(per_hop_verdict(hop.as_ref(), concurrency));
    }
    verdicts.push(invocation_verdict(&invocation));
    printer.verdicts(&verdicts);
    Ok(rows)
}

/// Prints what is measured and where.
fn print_setup(printer: Printer, args: &ChainBenchArgs, target: &Target) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if printer.json {
        lines::print_json(&BenchLine::Setup(BenchSetup::Chain(ChainSetup {
            cluster: target.description.clone(),
            scheduler: target.scheduler_url.clone(),
            ping_target: target.worker_url.clone(),
            gateway: target.gateway.clone(),
            operator: OPERATOR.to_string(),
            lengths: args.lengths.0.clone(),
            duration_s: args.duration.as_secs_f64(),
            warmup_s: args.warmup.as_secs_f64(),
            cores,
        })));
        return;
    }
    let lengths: Vec<String> = args.lengths.0.iter().map(ToString::to_string).collect();
    println!("dida bench chain");
    println!("  cluster:            {}", target.description);
    println!(
        "  chains:             {} × {OPERATOR} (the no-op built-in)",
        lengths.join(", ")
    );
    println!("  one execution:      one Run call to the scheduler, answered when it has ended");
    println!(
        "  baseline (ping):    worker Ping RPC to {} ({})",
        target.worker_id, target.worker_url
    );
    println!("  invoke:             {OPERATOR} instantiated and called in-process, no network");
    if let Some(gateway) = &target.gateway {
        println!("  http-chain-N:       POST {gateway}/v1/invoke (the HTTP gateway), answered when it has ended");
    }
    println!(
        "  each measurement:   {} s after a {} s warm-up, closed loop",
        args.duration.as_secs_f64(),
        args.warmup.as_secs_f64()
    );
    println!("  machine:            {cores} cores available");
    println!();
}

/// Measures executions of chains of `length` at `concurrency` in flight.
async fn measure_chain(
    timing: Timing,
    scheduler: &SchedulerClient<NodeChannel>,
    length: usize,
    concurrency: usize,
) -> anyhow::Result<Measurement> {
    let operators: Arc<[String]> = vec![OPERATOR.to_string(); length].into();
    let ops = (0..concurrency)
        .map(|_| Execute {
            scheduler: scheduler.clone(),
            app: format!("bench-chain-{length}"),
            operators: Arc::clone(&operators),
        })
        .collect();
    timing.measure(ops).await
}

/// The name of the workload invoking chains of `length` over HTTP.
fn http_workload(length: usize) -> String {
    format!("http-chain-{length}")
}

/// Compares, at one concurrency, the HTTP gateway's invocations of chains of
/// `length` with the gRPC path's (`Run`) and with the ping: prints one `gateway`
/// JSON line per path with `--json`, and returns the verdict.
fn gateway_comparison(printer: Printer, rows: &[Row], length: usize, concurrency: usize) -> String {
    let find = |workload: &str| {
        rows.iter()
            .find(|r| r.workload == workload && r.concurrency == concurrency)
    };
    let (Some(ping), Some(grpc), Some(http)) = (
        find("ping"),
        find(&chain_workload(length)),
        find(&http_workload(length)),
    ) else {
        return format!("HTTP gateway at {concurrency} in flight: not measured");
    };
    if printer.json {
        for (via, row) in [("ping", ping), ("grpc", grpc), ("http", http)] {
            let cost = ModeCost {
                mode: via.to_string(),
                base: "grpc".to_string(),
                workload: if via == "ping" {
                    "ping".to_string()
                } else {
                    chain_workload(length)
                },
                concurrency,
                ops_per_sec: row.ops_per_sec,
                p50_us: row.p50_us,
                p99_us: row.p99_us,
                errors: row.errors,
                vs_base: ratio(row.ops_per_sec, grpc.ops_per_sec),
            };
            lines::print_json(&Comparison::Gateway.line(cost));
        }
    }
    let share = |row: &Row, of: &Row| {
        ratio(row.ops_per_sec, of.ops_per_sec).map_or("–".to_string(), |r| format!("{r:.2}×"))
    };
    format!(
        "HTTP gateway, chain-{length} at {concurrency} in flight: {} the gRPC path's \
         throughput ({} µs against {} µs at the median), {} the ping's",
        share(http, grpc),
        http.p50_us,
        grpc.p50_us,
        share(http, ping),
    )
}

/// One execution over the HTTP gateway: `POST /v1/invoke`, answered when it has
/// ended — what any HTTP client does. Fails unless every operator echoed the input.
struct HttpInvoke {
    client: HttpClient,
    url: String,
    body: serde_json::Value,
    length: usize,
}

impl HttpInvoke {
    fn new(gateway: &str, length: usize) -> Self {
        Self {
            client: HttpClient::new(SCHEDULER_DEADLINE),
            url: format!("{gateway}/v1/invoke"),
            body: json!({"operators": vec![OPERATOR; length], "input": INPUT}),
            length,
        }
    }
}

impl Operation for HttpInvoke {
    async fn call(&mut self) -> anyhow::Result<()> {
        let response = self.client.post_json(&self.url, &self.body).await?;
        ensure!(
            response.status.is_success(),
            "HTTP invoke answered {}: {}",
            response.status,
            response.body
        );
        let body = response.json()?;
        let outputs = body["outputs"].as_array().map_or(0, |o| {
            o.iter().filter(|v| v.as_str() == Some(INPUT)).count()
        });
        ensure!(
            body["status"] == "succeeded" && outputs == self.length,
            "HTTP invoke of {} operators ended with {body}",
            self.length
        );
        Ok(())
    }
}

/// The baseline: the worker's `Ping`, an empty RPC answered without touching any
/// state — the cost of one round trip between two dida processes.
struct WorkerPing {
    worker: WorkerClient<NodeChannel>,
}

impl Operation for WorkerPing {
    async fn call(&mut self) -> anyhow::Result<()> {
        self.worker
            .ping(PingRequest {})
            .await
            .map_err(|status| anyhow::anyhow!("worker ping failed: {}", status.message()))?;
        Ok(())
    }
}

/// One execution of a chain: one `Run` call, answered when it has ended. Fails unless
/// every operator ran and echoed the input.
struct Execute {
    scheduler: SchedulerClient<NodeChannel>,
    app: String,
    operators: Arc<[String]>,
}

impl Operation for Execute {
    async fn call(&mut self) -> anyhow::Result<()> {
        let reply = self
            .scheduler
            .run(RunRequest {
                submit: Some(SubmitRequest {
                    app: self.app.clone(),
                    operators: self.operators.to_vec(),
                    input: INPUT.to_string(),
                }),
                wait_ms: RUN_WAIT_MS,
            })
            .await
            .map_err(|status| anyhow::anyhow!("run refused: {}", status.message()))?
            .into_inner();
        let outcome = reply.outcome.unwrap_or_default();
        let execution_id = &outcome.execution_id;
        ensure!(
            reply.finished,
            "execution {execution_id} had not finished after {} s",
            RUN_WAIT_MS / 1000
        );
        if let Some(error) = &outcome.error {
            bail!("execution {execution_id} failed: {error}");
        }
        let echoed = outcome.outputs.iter().filter(|o| *o == INPUT).count();
        ensure!(
            outcome.outputs.len() == self.operators.len() && echoed == outcome.outputs.len(),
            "execution {execution_id} of {} operators finished with outputs {:?}",
            self.operators.len(),
            outcome.outputs
        );
        Ok(())
    }
}

/// One invocation alone: `EchoOperator` looked up in a worker's operator registry (a
/// cache hit: it is compiled beforehand) and run in a fresh sandbox with
/// [`OperatorRuntime::invoke_alone`] — the registry look-up, storage proxy, host
/// state, instantiation and call a worker's hop performs, without the network.
struct Invoke {
    registry: Arc<OperatorRegistry>,
    storage: Arc<StorageClient>,
}

impl Invoke {
    /// A runtime with the worker's default limits and a registry holding only
    /// `EchoOperator`, compiled; and a storage client that is never called (the
    /// operator uses no storage), pointing at a closed loopback port.
    async fn prepare() -> anyhow::Result<Self> {
        let wasm = dida_operators::find_builtin(OPERATOR)
            .with_context(|| format!("no built-in {OPERATOR}"))?
            .wasm;
        let runtime = OperatorRuntime::new(SandboxLimits::default())?;
        let builtins = BTreeMap::from([(OPERATOR.to_string(), wasm)]);
        let registry = OperatorRegistry::new(runtime, builtins, None);
        registry
            .get(OPERATOR)
            .await
            .with_context(|| format!("cannot compile {OPERATOR}"))?;
        let unused = Membership::parse("unused=http://127.0.0.1:1")?;
        let storage = StorageClient::new(
            unused,
            ClientConfig {
                replication_factor: 1,
                ..ClientConfig::default()
            },
        )?;
        Ok(Self {
            registry: Arc::new(registry),
            storage: Arc::new(storage),
        })
    }
}

impl Operation for Invoke {
    async fn call(&mut self) -> anyhow::Result<()> {
        let operator = self.registry.get(OPERATOR).await?;
        let storage = ExecutionStorage::new(
            Arc::clone(&self.storage),
            BTreeMap::new(),
            ConsistencySettings::default(),
        );
        let output = self
            .registry
            .runtime()
            .invoke_alone(&operator, OPERATOR, storage, INPUT)
            .await?;
        ensure!(
            output == INPUT,
            "{OPERATOR} returned {output:?}, not {INPUT:?}"
        );
        Ok(())
    }
}

/// The per-hop overhead at one concurrency, from the medians of the shortest and the
/// longest chain.
#[derive(Debug, Clone, PartialEq)]
struct PerHop {
    concurrency: usize,
    shortest: usize,
    longest: usize,
    shortest_p50_us: u64,
    longest_p50_us: u64,
    /// Ping's median at the same concurrency.
    ping_p50_us: u64,
}

impl PerHop {
    /// Picks the rows it needs; `None` when a length or the ping is missing, or only
    /// one length was measured.
    fn from_rows(rows: &[Row], lengths: &ChainLengths, concurrency: usize) -> Option<Self> {
        let (shortest, longest) = lengths.span()?;
        let p50 = |workload: &str| {
            rows.iter()
                .find(|row| row.workload == workload && row.concurrency == concurrency)
                .map(|row| row.p50_us)
        };
        Some(Self {
            concurrency,
            shortest,
            longest,
            shortest_p50_us: p50(&chain_workload(shortest))?,
            longest_p50_us: p50(&chain_workload(longest))?,
            ping_p50_us: p50("ping")?,
        })
    }

    /// The extra median latency of one more operator, in microseconds (negative if
    /// noise made the longer chain's median the lower).
    fn per_hop_us(&self) -> f64 {
        per_hop_us(
            (self.shortest, self.shortest_p50_us),
            (self.longest, self.longest_p50_us),
        )
    }

    /// The per-hop overhead in raw round trips; `None` if the ping's median is zero.
    fn round_trips(&self) -> Option<f64> {
        ratio(self.per_hop_us(), self.ping_p50_us as f64)
    }

    fn to_line(&self) -> lines::PerHop {
        lines::PerHop {
            concurrency: self.concurrency,
            shortest: self.shortest,
            longest: self.longest,
            shortest_p50_us: self.shortest_p50_us,
            longest_p50_us: self.longest_p50_us,
            per_hop_us: self.per_hop_us(),
            ping_p50_us: self.ping_p50_us,
            round_trips: self.round_trips(),
            target_round_trips: per_hop_target(self.concurrency),
        }
    }
}

/// The slope of median latency against chain length between two (length, p50 µs)
/// points: (p50(longest) − p50(shortest)) / (longest − shortest). The lengths must
/// differ.
fn per_hop_us(shortest: (usize, u64), longest: (usize, u64)) -> f64 {
    let hops = longest.0 as f64 - shortest.0 as f64;
    (longest.1 as f64 - shortest.1 as f64) / hops
}

/// The verdict on the per-hop overhead at one concurrency.
fn per_hop_verdict(hop: Option<&PerHop>, concurrency: usize) -> String {
    let Some(hop) = hop else {
        return format!(
            "per hop at {concurrency} in flight: not measured (give at least two --lengths)"
        );
    };
    let how = format!(
        "per hop at {concurrency} in flight: {:.0} µs = (p50 chain-{} {} µs − p50 chain-{} {} µs) / {}",
        hop.per_hop_us(),
        hop.longest,
        hop.longest_p50_us,
        hop.shortest,
        hop.shortest_p50_us,
        hop.longest - hop.shortest,
    );
    let target = per_hop_target(concurrency);
    match hop.round_trips() {
        Some(trips) => format!(
            "{how}; ping p50 {} µs → {trips:.1}× a raw round trip (target ≤ {target:.0}×): {}",
            hop.ping_p50_us,
            if trips <= target { "met" } else { "NOT met" }
        ),
        None => format!("{how}; no ping median to compare with"),
    }
}

/// The RPC bound of chains of `length` operators: ping throughput ÷ (length + 2),
/// the rate at which the calls one execution needs (the client's, `length`
/// hand-offs, the outcome report) could go if each cost a ping.
pub(crate) fn rpc_bound(ping_ops_per_sec: f64, length: usize) -> f64 {
    ping_ops_per_sec / (length as f64 + 2.0)
}

/// The verdict on the throughput of chains of `length` at `concurrency` in flight,
/// as a share of their RPC bound.
fn rpc_bound_verdict(rows: &[Row], length: usize, concurrency: usize) -> String {
    let find = |workload: &str| {
        rows.iter()
            .find(|row| row.workload == workload && row.concurrency == concurrency)
    };
    let workload = chain_workload(length);
    let (Some(chain), Some(ping)) = (find(&workload), find("ping")) else {
        return format!("{workload} at {concurrency} in flight: not measured");
    };
    let bound = rpc_bound(ping.ops_per_sec, length);
    match ratio(chain.ops_per_sec, bound) {
        Some(share) => format!(
            "{workload} at {concurrency} in flight: {:.0}/s = {:.0}% of its RPC bound (ping {:.0}/s ÷ {}) (target ≥ {:.0}%): {}",
            chain.ops_per_sec,
            share * 100.0,
            ping.ops_per_sec,
            length + 2,
            RPC_BOUND_TARGET * 100.0,
            if share >= RPC_BOUND_TARGET { "met" } else { "NOT met" }
        ),
        None => format!("{workload} at {concurrency} in flight: no ping throughput to compare with"),
    }
}

/// The verdict on one invocation alone.
fn invocation_verdict(row: &Row) -> String {
    if row.errors > 0 {
        return format!(
            "operator invocation alone: {} invocations failed (target: none fail, p50 < {INVOCATION_TARGET_US} µs): NOT met",
            row.errors
        );
    }
    if row.ops_per_sec == 0.0 {
        return "operator invocation alone: nothing completed, not measured".to_string();
    }
    format!(
        "operator invocation alone: p50 {} µs, p99 {} µs (target p50 < {INVOCATION_TARGET_US} µs): {}; p99 {} the target",
        row.p50_us,
        row.p99_us,
        if row.p50_us < INVOCATION_TARGET_US { "met" } else { "NOT met" },
        if row.p99_us < INVOCATION_TARGET_US { "is also under" } else { "is over" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_keep_their_order() {
        assert_eq!("1,5,10".parse(), Ok(ChainLengths(vec![1, 5, 10])));
        assert_eq!(" 10, 2 ".parse(), Ok(ChainLengths(vec![10, 2])));
    }

    #[test]
    fn lengths_reject_zero_too_long_repeats_and_garbage() {
        assert!("0,4"
            .parse::<ChainLengths>()
            .unwrap_err()
            .contains("from 1 to"));
        assert!("1,1001".parse::<ChainLengths>().is_err());
        assert!("4,4".parse::<ChainLengths>().unwrap_err().contains("twice"));
        assert!("4,,8".parse::<ChainLengths>().is_err());
        assert!("ten".parse::<ChainLengths>().is_err());
    }

    #[test]
    fn the_span_is_the_shortest_and_longest_when_they_differ() {
        assert_eq!(ChainLengths(vec![5, 10, 1]).span(), Some((1, 10)));
        assert_eq!(ChainLengths(vec![7]).span(), None);
    }

    #[test]
    fn per_hop_is_the_slope_between_the_two_medians() {
        assert_eq!(per_hop_us((1, 1000), (10, 1900)), 100.0);
        assert_eq!(per_hop_us((2, 500), (4, 800)), 150.0);
        assert_eq!(per_hop_us((1, 1000), (10, 910)), -10.0);
    }

    fn row(workload: &str, concurrency: usize, p50_us: u64) -> Row {
        Row {
            workload: workload.to_string(),
            concurrency,
            ops_per_sec: 1000.0,
            p50_us,
            p99_us: p50_us * 2,
            errors: 0,
            first_error: None,
            vs_ping: None,
            percentiles: Vec::new(),
            vs_redis: None,
        }
    }

    #[test]
    fn per_hop_reads_the_rows_of_its_concurrency() {
        let rows = [
            row("ping", 1, 100),
            row("chain-1", 1, 1000),
            row("chain-5", 1, 1300),
            row("chain-10", 1, 1900),
            row("ping", 16, 400),
            row("chain-1", 16, 5000),
            row("chain-10", 16, 9500),
        ];
        let lengths = ChainLengths(vec![1, 5, 10]);
        let at_1 = PerHop::from_rows(&rows, &lengths, 1).unwrap();
        assert_eq!(at_1.per_hop_us(), 100.0);
        assert_eq!(at_1.round_trips(), Some(1.0));
        let at_16 = PerHop::from_rows(&rows, &lengths, 16).unwrap();
        assert_eq!(at_16.per_hop_us(), 500.0);
        assert_eq!(at_16.round_trips(), Some(1.25));
        assert_eq!(PerHop::from_rows(&rows, &lengths, 64), None);
        assert_eq!(PerHop::from_rows(&rows, &ChainLengths(vec![1]), 1), None);
    }

    #[test]
    fn chain_throughput_is_judged_against_ping_over_n_plus_two() {
        assert_eq!(rpc_bound(12_000.0, 10), 1000.0);
        let mut chain = row("chain-10", 16, 5000);
        chain.ops_per_sec = 700.0;
        let mut ping = row("ping", 16, 400);
        ping.ops_per_sec = 12_000.0;
        let rows = [ping, chain];
        assert_eq!(
            rpc_bound_verdict(&rows, 10, 16),
            "chain-10 at 16 in flight: 700/s = 70% of its RPC bound (ping 12000/s ÷ 12) \
             (target ≥ 60%): met"
        );
        assert!(rpc_bound_verdict(&rows, 1, 16).ends_with("not measured"));
    }

    #[test]
    fn per_hop_verdict_compares_with_two_round_trips_alone_and_three_under_load() {
        let hop = |longest_p50_us| PerHop {
            concurrency: 16,
            shortest: 1,
            longest: 10,
            shortest_p50_us: 1000,
            longest_p50_us,
            ping_p50_us: 100,
        };
        assert_eq!(
            per_hop_verdict(Some(&hop(3700)), 16),
            "per hop at 16 in flight: 300 µs = (p50 chain-10 3700 µs − p50 chain-1 1000 µs) / 9; \
             ping p50 100 µs → 3.0× a raw round trip (target ≤ 3×): met"
        );
        assert!(per_hop_verdict(Some(&hop(3800)), 16)
            .ends_with("3.1× a raw round trip (target ≤ 3×): NOT met"));
        assert!(per_hop_verdict(Some(&hop(2900)), 1)
            .ends_with("2.1× a raw round trip (target ≤ 2×): NOT met"));
        assert!(per_hop_verdict(None, 16).contains("not measured"));
    }

    #[test]
    fn invocation_verdict_judges_the_median_and_reports_the_tail() {
        let fast = row("invoke", 1, 8);
        assert_eq!(
            invocation_verdict(&fast),
            "operator invocation alone: p50 8 µs, p99 16 µs (target p50 < 20 µs): met; \
             p99 is also under the target"
        );
        let slow = row("invoke", 1, 20);
        assert!(invocation_verdict(&slow).contains("NOT met; p99 is over the target"));
        let failed = Row {
            errors: 3,
            ..row("invoke", 1, 20)
        };
        assert!(invocation_verdict(&failed)
            .starts_with("operator invocation alone: 3 invocations failed"));
    }
}
