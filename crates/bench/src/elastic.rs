//! `dida bench elastic`: workers joining and leaving a cluster under a steady HTTP
//! invocation load (issue 25, "elastic clusters").
//!
//! It starts a local cluster of real processes with the scheduler's HTTP gateway
//! and **one** worker, and keeps `--clients` invocations in flight over HTTP for the
//! whole run (a closed loop: each client sends its next `POST /v1/invoke` as soon
//! as the previous one answered). Meanwhile:
//!
//! 1. **one worker**: measured for `--phase` seconds, after `--warmup`;
//! 2. **two workers join** (`dida worker --scheduler URL`: they register
//!    themselves, no `--workers` list changes); once the scheduler lists both
//!    `alive`, the three workers are measured for `--phase` seconds;
//! 3. **one worker leaves** (SIGTERM, as an operator stops it): it tells the
//!    scheduler it is leaving, finishes what it runs and exits; the two remaining
//!    workers are measured for `--phase` seconds from the SIGTERM on.
//!
//! Each execution is one `SleepOperator` that waits `--sleep-ms` (a function
//! waiting on an outside service), and each worker runs at most
//! `--worker-concurrency` operators at once: a worker's capacity is then its slots
//! over the wait, whatever the machine's cores, so the throughput each phase can
//! reach is known in advance (`workers × slots ÷ wait`) and the benchmark measures
//! whether the cluster uses the workers it is given. CPU-bound operators would
//! measure the machine instead: on 2 cores three workers cannot do three times the
//! work of one.
//!
//! It checks, and says so in its verdicts: every invocation answered `succeeded`
//! (none lost or failed), the scheduler counts exactly the executions the clients
//! sent and all of them finished, the leaving worker was running executions when
//! it was asked to leave and they finished (its process exited with status 0
//! after draining, not SIGKILLed), and throughput with three workers is at least
//! twice that with one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context};
use clap::Args;
use dida_local_cluster::{current_dida, free_ports, ClusterSpec, ComputeSpec, LocalCluster};
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::{SchedulerStatusReply, SchedulerStatusRequest};
use dida_proto::transport::{lazy_channel, NodeChannel};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::http_client::HttpClient;
use crate::lines;
use crate::storage::{parse_positive_seconds, parse_seconds, stop_cluster};

/// The operator every execution runs.
const OPERATOR: &str = "SleepOperator";

/// The ids of the workers that join, and of the one that then leaves.
const JOINING: [&str; 2] = ["w2", "w3"];
const LEAVING: &str = "w3";

/// How long a joining worker may take to answer, and then to be listed `alive`.
const JOIN_LIMIT: Duration = Duration::from_secs(60);

/// How long the leaving worker may take to drain and exit.
const LEAVE_LIMIT: Duration = Duration::from_secs(60);

/// Deadline of one HTTP invocation (far above any phase's latency).
const INVOKE_DEADLINE: Duration = Duration::from_secs(30);

/// The verdict's target: throughput with three workers over throughput with one.
pub(crate) const SCALE_TARGET: f64 = 2.0;

/// Flags of `dida bench elastic`.
#[derive(Debug, Args)]
pub(crate) struct ElasticBenchArgs {
    /// Milliseconds each execution's SleepOperator waits (1 to 10000).
    #[arg(long, default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    sleep_ms: u64,
    /// Operators each worker runs at once (its --concurrency).
    #[arg(long, default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    worker_concurrency: u32,
    /// HTTP invocations kept in flight (closed loop). More than the three workers'
    /// slots together, so that every phase is limited by its workers.
    #[arg(long, default_value_t = 24,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    clients: u64,
    /// Seconds each phase is measured (fractions allowed).
    #[arg(long, default_value = "4", value_parser = parse_positive_seconds)]
    phase: Duration,
    /// Seconds of load before the first phase is measured.
    #[arg(long, default_value = "1", value_parser = parse_seconds)]
    warmup: Duration,
    /// Storage nodes of the local cluster (the operator touches no storage; the
    /// scheduler and workers need a storage cluster all the same).
    #[arg(long, default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=16))]
    nodes: u64,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

/// One JSON line of `dida bench elastic --json`, told apart by its `event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum ElasticLine {
    /// What was measured: the first line.
    Setup(ElasticSetup),
    /// One phase of the run.
    Phase(PhaseLine),
    /// The worker that left, and what became of its executions.
    Leave(LeaveLine),
    /// What the whole run sent and the scheduler counted.
    Totals(TotalsLine),
    /// A verdict.
    Verdict(lines::Verdict),
}

/// The set-up of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ElasticSetup {
    /// Storage nodes.
    pub nodes: u64,
    /// The operator of every execution, and how long it waits.
    pub operator: String,
    /// Its wait, in milliseconds.
    pub sleep_ms: u64,
    /// Each worker's `--concurrency`.
    pub worker_concurrency: u32,
    /// Invocations in flight.
    pub clients: u64,
    /// Seconds per phase.
    pub phase_s: f64,
    /// Seconds of warm-up.
    pub warmup_s: f64,
    /// Cores of the machine.
    pub cores: usize,
}

/// One phase: which workers, and what the clients saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PhaseLine {
    /// `one worker`, `three workers`, `two workers (w3 leaving)`.
    pub phase: String,
    /// Workers taking work during the phase.
    pub workers: usize,
    /// The throughput its workers' slots allow: workers × slots ÷ wait.
    pub capacity_per_s: f64,
    /// Invocations that answered `succeeded` during the phase, per second.
    pub ops_per_s: f64,
    /// Their median latency, in milliseconds.
    pub p50_ms: f64,
    /// Their 99th percentile, in milliseconds.
    pub p99_ms: f64,
    /// Invocations that answered during the phase.
    pub completed: u64,
    /// Invocations that failed during the phase.
    pub errors: u64,
    /// How many of the phase's executions each worker ran.
    pub by_worker: BTreeMap<String, u64>,
    /// Seconds measured.
    pub seconds: f64,
}

/// The worker that left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LeaveLine {
    /// Its id.
    pub worker: String,
    /// Operators the scheduler counted on it, assigned and not yet confirmed,
    /// right before it was asked to leave.
    pub load_at_leave: u64,
    /// Executions in progress on it at the SIGTERM (its run started before and
    /// ended after): running, or loaded and waiting for one of its slots.
    pub running_at_leave: u64,
    /// How many of those ended `succeeded`.
    pub running_at_leave_succeeded: u64,
    /// Executions that started on it after the SIGTERM (placed before the
    /// scheduler heard it leave), all counted in the phases.
    pub started_after_leave: u64,
    /// Milliseconds from the SIGTERM until its process exited.
    pub drain_ms: u64,
    /// How its process ended.
    pub exit: String,
    /// Whether it exited by itself with status 0 (drained and deregistered).
    pub clean_exit: bool,
    /// What the scheduler lists it as afterwards (`gone`).
    pub state_after: String,
}

/// What the whole run sent and the scheduler counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TotalsLine {
    /// Invocations the clients sent.
    pub sent: u64,
    /// Invocations that answered `succeeded`.
    pub succeeded: u64,
    /// Invocations that failed (an error status, a transport error, a deadline).
    pub failed: u64,
    /// The first failure, to explain a non-zero `failed`.
    pub first_error: Option<String>,
    /// Executions the scheduler counted as submitted during the run.
    pub submitted: u64,
    /// Executions the scheduler counted as finished during the run.
    pub finished: u64,
    /// Executions the scheduler counts as running at the end.
    pub running_at_end: u64,
}

/// One invocation as a client saw it.
#[derive(Debug, Clone)]
struct Sample {
    /// When it was sent and answered, since the start of the load.
    sent: Duration,
    answered: Duration,
    /// Its operator's run (worker, start in Unix ms, duration in µs), when the
    /// answer says where it ran (a failed execution's too).
    run: Option<Run>,
    /// Why it did not succeed; `None` when it answered `succeeded`.
    error: Option<String>,
}

impl Sample {
    fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

/// Where and when an execution's operator ran, as the worker measured.
#[derive(Debug, Clone)]
struct Run {
    worker: String,
    started_unix_ms: u64,
    duration_us: u64,
}

/// Runs `dida bench elastic`.
pub(crate) async fn run(args: ElasticBenchArgs) -> anyhow::Result<()> {
    ensure!(
        dida_operators::find_builtin(OPERATOR).is_some(),
        "this dida has no built-in {OPERATOR}"
    );
    let binary = current_dida()?;
    let nodes = usize::try_from(args.nodes).context("--nodes")?;
    let spec = ClusterSpec {
        nodes,
        replication_factor: ClusterSpec::default().replication_factor.min(nodes),
        ..ClusterSpec::default()
    };
    let mut cluster = LocalCluster::start(&binary, spec)
        .await
        .with_context(|| format!("cannot start a local cluster of {nodes} storage nodes"))?;
    let gateway_port = free_ports(1)?[0];
    let compute = ComputeSpec {
        workers: 1,
        scheduler_args: vec![
            "--http-listen".to_string(),
            format!("127.0.0.1:{gateway_port}"),
        ],
        worker_args: vec![format!("--concurrency={}", args.worker_concurrency)],
        ..ComputeSpec::default()
    };
    let outcome = match cluster.start_compute(&binary, compute).await {
        Ok(()) => {
            let gateway = format!("http://127.0.0.1:{gateway_port}");
            measure(&args, &mut cluster, &gateway).await
        }
        Err(error) => Err(error.context("cannot start a local scheduler and its first worker")),
    };
    let stopped = stop_cluster(cluster).await;
    outcome?;
    stopped
}

/// The phases, the leave and the checks, on a running cluster.
async fn measure(
    args: &ElasticBenchArgs,
    cluster: &mut LocalCluster,
    gateway: &str,
) -> anyhow::Result<()> {
    let printer = Report { json: args.json };
    printer.setup(&ElasticSetup {
        nodes: args.nodes,
        operator: OPERATOR.to_string(),
        sleep_ms: args.sleep_ms,
        worker_concurrency: args.worker_concurrency,
        clients: args.clients,
        phase_s: args.phase.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    let scheduler = SchedulerClient::new(
        lazy_channel(cluster.scheduler_url()?, Duration::from_secs(5))
            .context("invalid scheduler URL")?,
    );
    let before = scheduler_status(&scheduler).await?;

    let load = Load::start(gateway, args.clients, args.sleep_ms);
    let slots_per_s = f64::from(args.worker_concurrency) * 1000.0 / args.sleep_ms as f64;

    tokio::time::sleep(args.warmup).await;
    let one = (load.now(), load.now() + args.phase);
    tokio::time::sleep(args.phase).await;

    for id in JOINING {
        cluster
            .add_worker(id, JOIN_LIMIT)
            .await
            .with_context(|| format!("worker {id} did not start"))?;
    }
    wait_for_workers(&scheduler, &JOINING, "alive", JOIN_LIMIT).await?;
    let three = (load.now(), load.now() + args.phase);
    tokio::time::sleep(args.phase).await;

    let load_at_leave = scheduler_status(&scheduler)
        .await?
        .workers
        .iter()
        .find(|w| w.worker_id == LEAVING)
        .map_or(0, |w| w.load);
    let leave_at = load.now();
    let leave_unix_ms = load.unix_ms(leave_at);
    cluster.leave_worker(LEAVING)?;
    let two = (leave_at, leave_at + args.phase);
    let started = Instant::now();
    let (exited, ()) = tokio::join!(
        async {
            let status = cluster.wait_worker_exit(LEAVING, LEAVE_LIMIT).await;
            (status, started.elapsed())
        },
        tokio::time::sleep(args.phase),
    );
    let (exit_status, drain) = exited;
    let exit_status = exit_status?;

    let samples = load.stop().await?;
    let after = scheduler_status(&scheduler).await?;

    let phases = [
        ("one worker".to_string(), 1, one),
        ("three workers".to_string(), 3, three),
        (format!("two workers ({LEAVING} leaving)"), 2, two),
    ];
    let mut measured = Vec::new();
    for (name, workers, (from, to)) in phases {
        let line = phase_line(&samples, &name, workers, from, to, slots_per_s);
        printer.phase(&line);
        measured.push(line);
    }

    let on_leaving: Vec<(&Run, bool)> = samples
        .iter()
        .filter_map(|s| match &s.run {
            Some(run) if run.worker == LEAVING => Some((run, s.succeeded())),
            _ => None,
        })
        .collect();
    let running_at_leave: Vec<&(&Run, bool)> = on_leaving
        .iter()
        .filter(|(run, _)| {
            let ended = run.started_unix_ms + run.duration_us.div_ceil(1000);
            run.started_unix_ms <= leave_unix_ms && ended > leave_unix_ms
        })
        .collect();
    let leave = LeaveLine {
        worker: LEAVING.to_string(),
        load_at_leave,
        running_at_leave: running_at_leave.len() as u64,
        running_at_leave_succeeded: running_at_leave.iter().filter(|(_, ok)| *ok).count() as u64,
        started_after_leave: on_leaving
            .iter()
            .filter(|(run, _)| run.started_unix_ms > leave_unix_ms)
            .count() as u64,
        drain_ms: drain.as_millis() as u64,
        exit: exit_status.to_string(),
        clean_exit: exit_status.success(),
        state_after: after
            .workers
            .iter()
            .find(|w| w.worker_id == LEAVING)
            .map_or_else(|| "not listed".to_string(), |w| w.state.clone()),
    };
    printer.leave(&leave);

    let failed: Vec<&String> = samples.iter().filter_map(|s| s.error.as_ref()).collect();
    let totals = TotalsLine {
        sent: samples.len() as u64,
        succeeded: (samples.len() - failed.len()) as u64,
        failed: failed.len() as u64,
        first_error: failed.first().map(|e| e.to_string()),
        submitted: after
            .executions_submitted
            .saturating_sub(before.executions_submitted),
        finished: after
            .executions_finished
            .saturating_sub(before.executions_finished),
        running_at_end: after.executions_running,
    };
    printer.totals(&totals);

    let verdicts = verdicts(&measured, &leave, &totals);
    printer.verdicts(&verdicts);
    Ok(())
}

/// The verdicts of a run, from its phases, the leave and the totals.
fn verdicts(phases: &[PhaseLine], leave: &LeaveLine, totals: &TotalsLine) -> Vec<lines::Verdict> {
    let mut verdicts = Vec::new();
    let lost = totals.failed + totals.submitted.abs_diff(totals.sent);
    let none_lost = totals.failed == 0
        && totals.submitted == totals.sent
        && totals.finished == totals.submitted
        && totals.running_at_end == 0;
    verdicts.push(lines::Verdict {
        text: format!(
            "executions: {} sent, {} succeeded, {} failed; the scheduler counted {} submitted, \
             {} finished, {} still running: {}",
            totals.sent,
            totals.succeeded,
            totals.failed,
            totals.submitted,
            totals.finished,
            totals.running_at_end,
            if none_lost {
                "none lost".to_string()
            } else {
                format!("{lost} LOST or failed")
            }
        ),
        ratio: None,
        met: Some(none_lost),
    });
    let drained = leave.clean_exit
        && leave.running_at_leave > 0
        && leave.running_at_leave_succeeded == leave.running_at_leave;
    verdicts.push(lines::Verdict {
        text: format!(
            "{} left while {} executions were in progress on it; {} of them succeeded; its \
             process ended ({}) {} ms after the SIGTERM and the scheduler lists it {}: {}",
            leave.worker,
            leave.running_at_leave,
            leave.running_at_leave_succeeded,
            leave.exit,
            leave.drain_ms,
            leave.state_after,
            if drained {
                "its running executions finished"
            } else if leave.running_at_leave == 0 {
                "NOT shown (it ran nothing when it was asked to leave)"
            } else {
                "NOT met"
            }
        ),
        ratio: None,
        met: Some(drained),
    });
    if let [one, three, ..] = phases {
        let ratio = (one.ops_per_s > 0.0).then(|| three.ops_per_s / one.ops_per_s);
        let met = ratio.is_some_and(|r| r >= SCALE_TARGET);
        verdicts.push(lines::Verdict {
            text: format!(
                "three workers: {:.0} executions/s, {} one worker's {:.0} (target ≥ {SCALE_TARGET}×): {}",
                three.ops_per_s,
                ratio.map_or_else(|| "no ratio to".to_string(), |r| format!("{r:.2}×")),
                one.ops_per_s,
                if met { "met" } else { "NOT met" }
            ),
            ratio,
            met: Some(met),
        });
    }
    verdicts
}

/// What the clients saw between `from` and `to` (since the start of the load):
/// the invocations that answered then.
fn phase_line(
    samples: &[Sample],
    name: &str,
    workers: usize,
    from: Duration,
    to: Duration,
    slots_per_s: f64,
) -> PhaseLine {
    let within: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.answered >= from && s.answered < to)
        .collect();
    let mut latencies_ms: Vec<f64> = within
        .iter()
        .filter(|s| s.succeeded())
        .map(|s| (s.answered - s.sent).as_secs_f64() * 1000.0)
        .collect();
    latencies_ms.sort_by(f64::total_cmp);
    let percentile = |p: f64| -> f64 {
        match latencies_ms.len().checked_sub(1) {
            Some(last) => latencies_ms[((last as f64) * p).round() as usize],
            None => 0.0,
        }
    };
    let mut by_worker = BTreeMap::new();
    for sample in within.iter().filter(|s| s.succeeded()) {
        if let Some(run) = &sample.run {
            *by_worker.entry(run.worker.clone()).or_insert(0) += 1;
        }
    }
    let seconds = (to - from).as_secs_f64();
    let completed = latencies_ms.len() as u64;
    PhaseLine {
        phase: name.to_string(),
        workers,
        capacity_per_s: workers as f64 * slots_per_s,
        ops_per_s: completed as f64 / seconds,
        p50_ms: percentile(0.5),
        p99_ms: percentile(0.99),
        completed,
        errors: within.len() as u64 - completed,
        by_worker,
        seconds,
    }
}

/// The scheduler's status, within its channel's deadline.
async fn scheduler_status(
    scheduler: &SchedulerClient<NodeChannel>,
) -> anyhow::Result<SchedulerStatusReply> {
    Ok(scheduler
        .clone()
        .status(SchedulerStatusRequest {})
        .await
        .map_err(|status| anyhow::anyhow!("scheduler status failed: {}", status.message()))?
        .into_inner())
}

/// Polls the scheduler until it lists every worker of `ids` in `state`.
async fn wait_for_workers(
    scheduler: &SchedulerClient<NodeChannel>,
    ids: &[&str],
    state: &str,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let status = scheduler_status(scheduler).await?;
        let listed = |id: &&str| {
            status
                .workers
                .iter()
                .any(|w| w.worker_id == *id && w.state == state)
        };
        if ids.iter().all(listed) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the scheduler did not list {ids:?} as {state} within {limit:?}: it lists {:?}",
            status
                .workers
                .iter()
                .map(|w| format!("{} {}", w.worker_id, w.state))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The clients: each sends its next invocation as soon as the previous one
/// answered, until [`Load::stop`].
struct Load {
    started: Instant,
    started_unix_ms: u64,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Sample>>>,
}

impl Load {
    fn start(gateway: &str, clients: u64, sleep_ms: u64) -> Self {
        let started = Instant::now();
        let started_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let stop = Arc::new(AtomicBool::new(false));
        let url = format!("{gateway}/v1/invoke");
        let body = json!({"operators": [OPERATOR], "input": sleep_ms.to_string()});
        let tasks = (0..clients)
            .map(|_| {
                let (stop, url, body) = (stop.clone(), url.clone(), body.clone());
                let client = HttpClient::new(INVOKE_DEADLINE);
                tokio::spawn(async move {
                    let mut samples = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let sent = started.elapsed();
                        let (run, error) = invoke(&client, &url, &body).await;
                        samples.push(Sample {
                            sent,
                            answered: started.elapsed(),
                            run,
                            error,
                        });
                    }
                    samples
                })
            })
            .collect();
        Self {
            started,
            started_unix_ms,
            stop,
            tasks,
        }
    }

    /// Time since the load started.
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// `at` (since the load started) as Unix time in milliseconds.
    fn unix_ms(&self, at: Duration) -> u64 {
        self.started_unix_ms + at.as_millis() as u64
    }

    /// Stops sending; waits for every client's last invocation to answer; returns
    /// every sample.
    async fn stop(mut self) -> anyhow::Result<Vec<Sample>> {
        self.stop.store(true, Ordering::Relaxed);
        let mut samples = Vec::new();
        for task in std::mem::take(&mut self.tasks) {
            samples.extend(task.await.context("a client task panicked")?);
        }
        Ok(samples)
    }
}

impl Drop for Load {
    /// A run that fails half-way (a worker that does not join) stops its clients
    /// too, rather than leaving them sending to a cluster being stopped.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One invocation: where its operator ran, if the answer says, and why it did not
/// succeed, if it did not.
async fn invoke(
    client: &HttpClient,
    url: &str,
    body: &serde_json::Value,
) -> (Option<Run>, Option<String>) {
    let response = match client.post_json(url, body).await {
        Ok(response) => response,
        Err(error) => return (None, Some(format!("{error:#}"))),
    };
    if !response.status.is_success() {
        let error = format!("HTTP {}: {}", response.status, response.body);
        return (None, Some(error));
    }
    let body = match response.json() {
        Ok(body) => body,
        Err(error) => return (None, Some(format!("{error:#}"))),
    };
    let run = body["runs"].get(0).map(|run| Run {
        worker: run["worker_id"].as_str().unwrap_or("?").to_string(),
        started_unix_ms: run["started_unix_ms"].as_u64().unwrap_or(0),
        duration_us: run["duration_us"].as_u64().unwrap_or(0),
    });
    let error = (body["status"] != "succeeded").then(|| format!("the execution ended {body}"));
    (run, error)
}

/// Prints the run as text for people or as JSON lines.
#[derive(Debug, Clone, Copy)]
struct Report {
    json: bool,
}

impl Report {
    fn setup(self, setup: &ElasticSetup) {
        if self.json {
            lines::print_json(&ElasticLine::Setup(setup.clone()));
            return;
        }
        println!("dida bench elastic");
        println!(
            "  cluster:            {} storage node{}, a scheduler with its HTTP gateway, \
             1 worker; then w2 and w3 join, then w3 leaves (SIGTERM)",
            setup.nodes,
            if setup.nodes == 1 { "" } else { "s" }
        );
        println!(
            "  executions:         POST /v1/invoke of one {} waiting {} ms; {} in flight (closed loop)",
            setup.operator, setup.sleep_ms, setup.clients
        );
        println!(
            "  workers:            --concurrency {} each: {:.0} executions/s per worker at most",
            setup.worker_concurrency,
            f64::from(setup.worker_concurrency) * 1000.0 / setup.sleep_ms as f64
        );
        println!(
            "  each phase:         {} s ({} s of warm-up first)",
            setup.phase_s, setup.warmup_s
        );
        println!("  machine:            {} cores available", setup.cores);
        println!();
        println!(
            "{:<26} {:>7} {:>10} {:>8} {:>8} {:>9} {:>6}  executions by worker",
            "phase", "ops/s", "capacity", "p50 ms", "p99 ms", "completed", "errors"
        );
    }

    fn phase(self, line: &PhaseLine) {
        if self.json {
            lines::print_json(&ElasticLine::Phase(line.clone()));
            return;
        }
        let by_worker: Vec<String> = line
            .by_worker
            .iter()
            .map(|(w, n)| format!("{w} {n}"))
            .collect();
        println!(
            "{:<26} {:>7.1} {:>10.0} {:>8.1} {:>8.1} {:>9} {:>6}  {}",
            line.phase,
            line.ops_per_s,
            line.capacity_per_s,
            line.p50_ms,
            line.p99_ms,
            line.completed,
            line.errors,
            by_worker.join(", ")
        );
    }

    fn leave(self, line: &LeaveLine) {
        if self.json {
            lines::print_json(&ElasticLine::Leave(line.clone()));
            return;
        }
        println!();
        println!(
            "{} asked to leave with {} operators counted on it by the scheduler, {} executions \
             in progress on it; {} started on it after the SIGTERM; its process ended ({}) {} ms \
             later; the scheduler lists it {}",
            line.worker,
            line.load_at_leave,
            line.running_at_leave,
            line.started_after_leave,
            line.exit,
            line.drain_ms,
            line.state_after
        );
    }

    fn totals(self, line: &TotalsLine) {
        if self.json {
            lines::print_json(&ElasticLine::Totals(line.clone()));
        } else if let Some(error) = &line.first_error {
            println!("first failure: {error}");
        }
    }

    fn verdicts(self, verdicts: &[lines::Verdict]) {
        if !self.json {
            println!();
        }
        for verdict in verdicts {
            if self.json {
                lines::print_json(&ElasticLine::Verdict(verdict.clone()));
            } else {
                println!("{}", verdict.text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sent_ms: u64, answered_ms: u64, worker: Option<&str>) -> Sample {
        Sample {
            sent: Duration::from_millis(sent_ms),
            answered: Duration::from_millis(answered_ms),
            run: worker.map(|worker| Run {
                worker: worker.into(),
                started_unix_ms: 0,
                duration_us: 0,
            }),
            error: worker.is_none().then(|| "refused".to_string()),
        }
    }

    #[test]
    fn a_phase_counts_what_answered_within_it() {
        let samples = [
            sample(0, 900, Some("w1")),
            sample(900, 1000, Some("w1")),
            sample(950, 1100, Some("w2")),
            sample(1000, 1500, None),
            sample(1500, 2000, Some("w1")),
        ];
        let line = phase_line(
            &samples,
            "p",
            2,
            Duration::from_secs(1),
            Duration::from_secs(2),
            80.0,
        );
        assert_eq!(line.completed, 2, "{line:?}");
        assert_eq!(line.errors, 1);
        assert!((line.ops_per_s - 2.0).abs() < 1e-9);
        assert_eq!(line.capacity_per_s, 160.0);
        assert_eq!(line.p50_ms, 150.0);
        assert_eq!(
            line.by_worker,
            BTreeMap::from([("w1".to_string(), 1), ("w2".to_string(), 1)])
        );
    }

    #[test]
    fn a_lost_execution_or_an_undrained_leave_fails_its_verdict() {
        let phase = |ops_per_s| PhaseLine {
            phase: "p".into(),
            workers: 1,
            capacity_per_s: 80.0,
            ops_per_s,
            p50_ms: 0.0,
            p99_ms: 0.0,
            completed: 0,
            errors: 0,
            by_worker: BTreeMap::new(),
            seconds: 1.0,
        };
        let leave = LeaveLine {
            worker: "w3".into(),
            load_at_leave: 4,
            running_at_leave: 4,
            running_at_leave_succeeded: 4,
            started_after_leave: 0,
            drain_ms: 60,
            exit: "exit status: 0".into(),
            clean_exit: true,
            state_after: "gone".into(),
        };
        let totals = TotalsLine {
            sent: 100,
            succeeded: 100,
            failed: 0,
            first_error: None,
            submitted: 100,
            finished: 100,
            running_at_end: 0,
        };
        let met = |v: &[lines::Verdict]| v.iter().map(|v| v.met).collect::<Vec<_>>();
        let phases = [phase(75.0), phase(220.0)];
        assert_eq!(
            met(&verdicts(&phases, &leave, &totals)),
            [Some(true), Some(true), Some(true)]
        );
        let lost = TotalsLine {
            finished: 99,
            running_at_end: 1,
            ..totals.clone()
        };
        assert_eq!(met(&verdicts(&phases, &leave, &lost))[0], Some(false));
        let killed = LeaveLine {
            clean_exit: false,
            ..leave.clone()
        };
        assert_eq!(met(&verdicts(&phases, &killed, &totals))[1], Some(false));
        let idle = LeaveLine {
            running_at_leave: 0,
            running_at_leave_succeeded: 0,
            ..leave
        };
        let text = &verdicts(&phases, &idle, &totals)[1];
        assert_eq!(
            text.met,
            Some(false),
            "a leave with nothing running shows nothing"
        );
        let flat = [phase(75.0), phase(100.0)];
        assert_eq!(met(&verdicts(&flat, &idle, &totals))[2], Some(false));
    }
}
