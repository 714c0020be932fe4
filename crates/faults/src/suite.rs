//! One run of the suite, start to finish: start a local cluster of real processes,
//! run the workload and the nemesis together, let the cluster converge, run the
//! checkers, stop the cluster, and build the report.
//!
//! The whole run is under a watchdog: every call already has a deadline, and on top
//! of that the run as a whole gives up (with an error naming the phase) rather than
//! hang.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context};
use dida_local_cluster::{ClusterSpec, ComputeSpec, LocalCluster};
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::transport::lazy_channel;
use dida_storage_client::{ClientConfig, StorageClient};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinSet;

use dida_verify::at_rest;
use dida_verify::chains::ChainReport;
use dida_verify::history::{HistoryCounts, Operation, RunClock};
use dida_verify::linearizability::{check_key, SearchLimits};
use dida_verify::lost_writes::{self, acknowledged_writes};
use dida_verify::nemesis;
use dida_verify::plan::{self, Fault, FaultKind, NemesisKind, Schedule};
use dida_verify::report::{LinearizabilityReport, Report, RunSettings};
use dida_verify::timeline::{self, Mark, MarkEvent, Setup};
use dida_verify::workload::{self, StorageWorkload};

use crate::chains::{self, ChainWorkload};
use crate::marks::{self, WatchConfig};
use crate::processes::{self, Processes};
use crate::readback;
use crate::resp_kv::RespKv;
use crate::storage_kv::StorageKv;

/// How the storage workload's clients reach the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageProtocol {
    /// The gRPC client library (`dida_storage_client`), which finds each key's
    /// primary itself.
    Grpc,
    /// A Redis client library against the nodes' RESP endpoints (`--resp-listen`),
    /// each client at one node that forwards what it does not lead.
    Resp,
}

/// Everything a run needs to know.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// The `dida` binary the cluster's processes run.
    pub binary: PathBuf,
    /// How long the workload runs.
    pub duration: Duration,
    /// Concurrent storage clients.
    pub clients: usize,
    /// How they reach the cluster (`--client`).
    pub protocol: StorageProtocol,
    /// Concurrent chain clients (0: no scheduler and workers are started).
    pub chain_clients: usize,
    /// Contended keys of the storage workload (and of the write-then-read chains).
    pub keys: usize,
    /// `--write-acks` of the storage nodes.
    pub write_acks: usize,
    /// Faults to inject during the run (`--crashes`; at most R − 1: each may cost
    /// one node).
    pub crashes: usize,
    /// Which faults (`--nemesis`).
    pub nemesis: NemesisKind,
    /// Shortest and longest pause or partition (`--fault-ms`).
    pub fault_lengths: (Duration, Duration),
    /// Seed of every random choice.
    pub seed: u64,
    /// Start the storage nodes with the deliberate bug of `--break-acks`: a write
    /// acknowledged before the other `--write-acks` replicas hold it. Only to show
    /// that the checkers catch it.
    pub break_acks: bool,
    /// Storage nodes.
    pub nodes: usize,
    /// Replication factor.
    pub replication_factor: usize,
    /// `--max-versions` of the storage nodes. Large (1 000 000 by default), so that no
    /// version is garbage-collected in a run of any practical length and the
    /// lost-writes check stays exact: a 20 s release run on 5 keys acknowledges 1 400
    /// to 3 700 writes per key, beyond the 1 000 versions the issue suggested. The
    /// limit costs nothing until versions are actually written.
    pub max_versions: usize,
    /// Workers.
    pub workers: usize,
    /// `--gossip-delay` of every storage node: the window in which a write
    /// acknowledged with `--write-acks 1` exists on its primary only.
    pub gossip_delay: Duration,
    /// `--anti-entropy-interval` of the storage nodes.
    pub anti_entropy_interval: Duration,
    /// Deadline of one storage call; beyond the nodes' 5 s `--ack-timeout`, so a
    /// write waiting for acknowledgements is not cut short by the client. An
    /// operation as a whole (the client library's retries at a new primary after a
    /// crash included) is bounded by [`Self::op_limit`].
    pub op_deadline: Duration,
    /// An execution without an outcome this long after submission has hung.
    pub chain_deadline: Duration,
    /// Longest wait for the cluster to converge before the lost-writes check.
    pub convergence_limit: Duration,
    /// Longest time the linearizability checker may spend, over all keys.
    pub check_budget: Duration,
    /// Where to write the history as JSON lines, if anywhere.
    pub history_path: Option<PathBuf>,
    /// Where to write the crash timeline as JSON lines, if anywhere
    /// ([`dida_verify::timeline`]).
    pub timeline_path: Option<PathBuf>,
}

impl SuiteConfig {
    /// The defaults of `dida faults` for a given binary.
    pub fn new(binary: PathBuf) -> Self {
        Self {
            binary,
            duration: Duration::from_secs(20),
            clients: 8,
            protocol: StorageProtocol::Grpc,
            chain_clients: 2,
            keys: 5,
            write_acks: 2,
            crashes: 2,
            nemesis: NemesisKind::Kill,
            fault_lengths: (Duration::from_millis(1000), Duration::from_millis(5000)),
            seed: 1,
            break_acks: false,
            nodes: 5,
            replication_factor: 3,
            max_versions: 1_000_000,
            workers: 3,
            gossip_delay: Duration::ZERO,
            anti_entropy_interval: Duration::from_millis(250),
            op_deadline: Duration::from_secs(8),
            chain_deadline: Duration::from_secs(60),
            convergence_limit: Duration::from_secs(30),
            check_budget: Duration::from_secs(60),
            history_path: None,
            timeline_path: None,
        }
    }

    /// Rejects settings the suite cannot run meaningfully.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(!self.duration.is_zero(), "--duration must be positive");
        ensure!(
            !self.nemesis.simulator_only(),
            "--nemesis {} is the simulator's only (`dida sim --nemesis {}`)",
            self.nemesis,
            self.nemesis
        );
        ensure!(self.clients > 0, "--clients must be at least 1");
        ensure!(self.keys > 0, "--keys must be at least 1");
        ensure!(
            self.nodes >= self.replication_factor && self.replication_factor > 0,
            "{} nodes cannot hold {} replicas of each key",
            self.nodes,
            self.replication_factor
        );
        dida_core::limits::check_write_acks(self.write_acks, self.replication_factor)
            .map_err(anyhow::Error::msg)?;
        ensure!(
            self.crashes < self.replication_factor,
            "--crashes {} would leave keys without any replica: at most R - 1 = {} \
             storage nodes may crash",
            self.crashes,
            self.replication_factor - 1
        );
        ensure!(
            !self.fault_lengths.0.is_zero() && self.fault_lengths.0 <= self.fault_lengths.1,
            "--fault-ms must be MIN-MAX with 0 < MIN <= MAX"
        );
        ensure!(
            self.workers > 0 || self.chain_clients == 0,
            "chain clients need at least one worker"
        );
        Ok(())
    }

    /// The longest one storage operation may take, retries included: one call, the
    /// client library's failover window (during which it retries, at the key's new
    /// primary, a write that certainly had no effect) and a margin. Past it the
    /// operation is recorded as unknown.
    pub fn op_limit(&self) -> Duration {
        self.op_deadline + ClientConfig::default().failover_deadline + Duration::from_secs(2)
    }

    /// How long the whole run may take before the watchdog stops it: start-up, the
    /// workload, the slowest operation or chain, convergence (or the timeline's
    /// watcher, if longer), the checks and a margin.
    pub fn watchdog(&self) -> Duration {
        let settle = if self.timeline_path.is_some() {
            self.convergence_limit.max(self.watch().limit())
        } else {
            self.convergence_limit
        };
        Duration::from_secs(180)
            + self.duration
            + self.op_limit().max(self.chain_deadline)
            + settle
            + self.check_budget * 2
    }

    /// How the timeline's watcher follows each crash ([`crate::marks`]).
    pub fn watch(&self) -> WatchConfig {
        WatchConfig {
            detection_poll: Duration::from_millis(50),
            detection_limit: Duration::from_secs(15),
            replication_poll: Duration::from_millis(100),
            replication_limit: self.convergence_limit,
            vnodes: ClientConfig::default().vnodes,
            replication_factor: self.replication_factor,
        }
    }

    /// How many faults the run plans: `--crashes`, or one restart per node for a
    /// rolling restart.
    pub fn planned_faults(&self) -> usize {
        if self.nemesis == NemesisKind::RollingRestart {
            self.nodes
        } else {
            self.crashes
        }
    }

    /// The settings a report (and a timeline) repeats.
    fn settings(&self) -> RunSettings {
        RunSettings {
            nodes: self.nodes,
            replication_factor: self.replication_factor,
            write_acks: self.write_acks,
            max_versions: self.max_versions,
            workers: if self.chain_clients > 0 {
                self.workers
            } else {
                0
            },
            clients: self.clients,
            client_protocol: match self.protocol {
                StorageProtocol::Grpc => "grpc",
                StorageProtocol::Resp => "resp",
            }
            .to_string(),
            chain_clients: self.chain_clients,
            keys: self.keys,
            duration_ms: millis(self.duration),
            crashes: self.planned_faults(),
            nemesis: self.nemesis,
            fault_ms: (millis(self.fault_lengths.0), millis(self.fault_lengths.1)),
            gossip_delay_ms: millis(self.gossip_delay),
            seed: self.seed,
            break_acks: self.break_acks,
        }
    }
}

/// Runs the suite; returns the report and the history. The report says whether the
/// checkers held; an `Err` means the run itself could not be carried out (the
/// cluster did not start, the watchdog fired, …).
pub async fn run(config: SuiteConfig) -> anyhow::Result<(Report, Vec<Operation>)> {
    config.validate()?;
    let limit = config.watchdog();
    let phase = Arc::new(std::sync::Mutex::new("starting"));
    match tokio::time::timeout(limit, run_inner(config, phase.clone())).await {
        Ok(result) => result,
        Err(_) => {
            let phase = phase.lock().map(|p| *p).unwrap_or("unknown");
            bail!("watchdog: the run did not finish within {limit:?} (stuck while {phase})")
        }
    }
}

type Phase = Arc<std::sync::Mutex<&'static str>>;

fn enter(phase: &Phase, name: &'static str) {
    tracing::info!("faults: {name}");
    if let Ok(mut current) = phase.lock() {
        *current = name;
    }
}

async fn run_inner(config: SuiteConfig, phase: Phase) -> anyhow::Result<(Report, Vec<Operation>)> {
    let started = Instant::now();
    let mut seeds = StdRng::seed_from_u64(config.seed);

    enter(&phase, "starting the storage nodes");
    let mut cluster = LocalCluster::start(
        &config.binary,
        ClusterSpec {
            nodes: config.nodes,
            replication_factor: config.replication_factor,
            max_versions: config.max_versions,
            write_acks: config.write_acks,
            gossip_delays_ms: vec![
                u64::try_from(config.gossip_delay.as_millis())
                    .unwrap_or(u64::MAX);
                config.nodes
            ],
            anti_entropy_interval_ms: u64::try_from(config.anti_entropy_interval.as_millis())
                .unwrap_or(u64::MAX),
            env: if config.break_acks {
                vec![("DIDA_STORAGE_BREAK_ACKS".to_string(), "true".to_string())]
            } else {
                Vec::new()
            },
            partitionable: matches!(
                config.nemesis,
                NemesisKind::Partition
                    | NemesisKind::Mixed
                    | NemesisKind::Leave
                    | NemesisKind::Join
            ),
            data: None,
            metrics: false,
            resp: config.protocol == StorageProtocol::Resp,
            // A join plan has as many joins as `joins_of` says, whatever the
            // seed: one spare node (port, proxy links) for each.
            spare: if config.nemesis == NemesisKind::Join {
                plan::joins_of(config.planned_faults())
            } else {
                0
            },
        },
    )
    .await
    .context("cannot start the storage nodes")?;
    let scheduler = if config.chain_clients > 0 {
        enter(&phase, "starting the scheduler and workers");
        cluster
            .start_compute(
                &config.binary,
                ComputeSpec {
                    workers: config.workers,
                    ..ComputeSpec::default()
                },
            )
            .await
            .context("cannot start the scheduler and workers")?;
        let url = cluster.scheduler_url()?;
        let scheduler = SchedulerClient::new(
            lazy_channel(url, Duration::from_secs(20))
                .with_context(|| format!("bad scheduler URL {url}"))?,
        );
        enter(&phase, "warming up the workers");
        let completed =
            chains::warm_up(scheduler.clone(), 2 * config.workers, config.chain_deadline).await;
        tracing::info!(completed, "faults: warm-up executions completed");
        Some(scheduler)
    } else {
        None
    };
    let membership = cluster.membership().clone();
    let client_config = |deadline| ClientConfig {
        replication_factor: config.replication_factor,
        deadline,
        ..ClientConfig::default()
    };
    let new_client = |deadline| {
        StorageClient::new(membership.clone(), client_config(deadline))
            .context("cannot build a storage client")
    };

    enter(&phase, "running the workload and the nemesis");
    let clock = RunClock::start();
    let start_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0);
    let keys = Arc::new(workload::storage_keys(config.keys));
    let storage_workload = StorageWorkload {
        keys: keys.clone(),
        duration: config.duration,
        op_deadline: config.op_limit(),
        max_think: Duration::from_millis(4),
        error_backoff: Duration::from_millis(20),
    };
    let mut tasks: JoinSet<Vec<Operation>> = JoinSet::new();
    let resp_nodes = match config.protocol {
        StorageProtocol::Grpc => Vec::new(),
        StorageProtocol::Resp => membership
            .ids()
            .map(|id| cluster.resp_addr(id))
            .collect::<anyhow::Result<Vec<_>>>()?,
    };
    for i in 0..config.clients {
        let id = u32::try_from(i + 1).unwrap_or(u32::MAX);
        match config.protocol {
            StorageProtocol::Grpc => tasks.spawn(workload::run_storage_client(
                id,
                StorageKv(new_client(config.op_deadline)?),
                storage_workload.clone(),
                clock,
                seeds.next_u64(),
            )),
            StorageProtocol::Resp => tasks.spawn(workload::run_storage_client(
                id,
                RespKv::new(resp_nodes.clone(), i, config.op_deadline),
                storage_workload.clone(),
                clock,
                seeds.next_u64(),
            )),
        };
    }
    if let Some(scheduler) = &scheduler {
        let chain_workload = ChainWorkload {
            keys: chains::chain_keys(config.keys),
            duration: config.duration,
            chain_deadline: config.chain_deadline,
            pause: Duration::from_millis(20),
        };
        for i in 0..config.chain_clients {
            let id = u32::try_from(1000 + i).unwrap_or(u32::MAX);
            tasks.spawn(chains::run_chain_client(
                id,
                scheduler.clone(),
                chain_workload.clone(),
                clock,
                seeds.next_u64(),
            ));
        }
    }
    let (kills, watcher) = if config.timeline_path.is_some() {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let watcher = tokio::spawn(marks::watch_crashes(
            new_client(Duration::from_secs(1))?,
            receiver,
            clock,
            config.watch(),
        ));
        (Some(sender), Some(AbortOnDrop(watcher)))
    } else {
        (None, None)
    };
    let cluster = Arc::new(Processes::new(
        cluster,
        false,
        client_config(processes::SURVEY_DEADLINE),
        kills,
    )?);
    let schedule = Schedule {
        duration: config.duration,
        faults: config.crashes,
        nodes: config.nodes,
        lengths: config.fault_lengths,
    };
    let plan = plan::plan(seeds.next_u64(), config.nemesis, &schedule);
    let setup = nemesis::Setup {
        keys: keys
            .iter()
            .cloned()
            .chain(chains::chain_keys(if scheduler.is_some() {
                config.keys
            } else {
                0
            }))
            .collect(),
        vnodes: ClientConfig::default().vnodes,
        replication_factor: config.replication_factor,
        budget: config.replication_factor - 1,
        keeps_data: false,
        settle_between: config.nemesis == NemesisKind::RollingRestart,
    };
    let nemesis_cluster = cluster.clone();
    let mut nemesis_task = AbortOnDrop(tokio::spawn(async move {
        let mut faults = nemesis::run(&*nemesis_cluster, &plan, &setup, clock).await;
        let survey = nemesis_cluster.settle(&mut faults).await;
        (faults, survey)
    }));
    let mut history = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        history.extend(joined.context("a client task panicked")?);
    }
    let (faults, survey) = (&mut nemesis_task.0)
        .await
        .context("the nemesis task panicked")?;
    history.sort_by_key(|op| (op.invoked_ns, op.client));
    for (id, op) in history.iter_mut().enumerate() {
        op.id = id as u64;
    }
    if let Some(path) = &config.history_path {
        write_history(path, &history)?;
    }

    enter(&phase, "waiting for the cluster to converge");
    // Nodes killed, and nodes declared failed after a pause or partition: the latter
    // are fenced (or will be as soon as they hear of it) and no longer hold data
    // anyone reads.
    // A node removed from the cluster (a leave) handed everything off and stopped.
    // Nodes that joined are read back like the first ones, by a client that
    // knows them.
    let lost = &survey.lost;
    let removed = cluster.removed();
    let membership = cluster.membership();
    let all_nodes: Vec<String> = membership.ids().map(str::to_string).collect();
    let live: Vec<String> = all_nodes
        .iter()
        .filter(|n| !lost.contains(*n) && !removed.contains(*n))
        .cloned()
        .collect();
    let reader = StorageClient::new(membership, client_config(Duration::from_secs(5)))
        .context("cannot build a storage client")?;
    let (snapshot, converged, convergence) = readback::wait_for_convergence(
        &reader,
        &live,
        config.anti_entropy_interval * 4,
        config.convergence_limit,
    )
    .await;
    // The replicas of each key in the cluster's ring now, as the nodes say it.
    reader.refresh_view().await;
    let placement = at_rest::placement(&snapshot, |key| {
        reader.replicas(key).into_iter().map(String::from).collect()
    });
    if let (Some(path), Some(mut watcher)) = (&config.timeline_path, watcher) {
        enter(&phase, "waiting for the crash marks of the timeline");
        let limit = config.watch().limit();
        let found = match tokio::time::timeout(limit, &mut watcher.0).await {
            Ok(joined) => joined.context("the timeline's watcher panicked")?,
            Err(_) => {
                tracing::warn!("faults: the timeline's watcher did not finish in {limit:?}");
                Vec::new()
            }
        };
        let mut marks = fault_marks(&faults);
        marks.extend(found);
        marks.sort_by_key(|m| m.t_ms);
        let setup = Setup {
            start_unix_ms,
            bucket_ms: millis(timeline::BUCKET),
            node_ids: all_nodes.clone(),
            anti_entropy_interval_ms: millis(config.anti_entropy_interval),
            detection_poll_ms: millis(config.watch().detection_poll),
            replication_poll_ms: millis(config.watch().replication_poll),
            settings: config.settings(),
        };
        let end_ns = marks
            .iter()
            .map(|m| m.t_ms.saturating_add(1).saturating_mul(1_000_000))
            .chain([u64::try_from(config.duration.as_nanos()).unwrap_or(u64::MAX)])
            .max()
            .unwrap_or(0);
        let buckets = timeline::buckets(&history, timeline::BUCKET, end_ns);
        write_timeline(path, &setup, &buckets, &marks)?;
    }
    // Everything the checkers need is recorded: stop every process now, so the
    // checks have the machine to themselves.
    drop(cluster);

    enter(&phase, "checking");
    let acked = acknowledged_writes(&history);
    let mut lost = lost_writes::count_lost(&acked, &snapshot, config.max_versions);
    lost.converged = converged;
    lost.convergence_ms = u64::try_from(convergence.as_millis()).unwrap_or(u64::MAX);
    let lost_ops: HashSet<u64> = if config.write_acks == 1 {
        // Every lost write, not just the examples the report keeps.
        lost_writes::all_lost(&acked, &snapshot, config.max_versions)
            .into_iter()
            .collect()
    } else {
        HashSet::new()
    };
    let linearizability = check_linearizability(&history, &keys, &lost_ops, &config).await?;
    let mut report = Report {
        settings: config.settings(),
        operations: HistoryCounts::of(&history),
        lost_nodes: survey.lost.iter().cloned().collect(),
        faults,
        lost_writes: lost,
        linearizability,
        chains: ChainReport::of(&history),
        placement,
        checks: Vec::new(),
        passed: false,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    report.judge();
    Ok((report, history))
}

/// The timeline's marks of the faults the nemesis injected: kill; pause and resume;
/// partition (with the links cut) and heal; kill and restart; leave and left; join
/// and joined.
fn fault_marks(faults: &[Fault]) -> Vec<Mark> {
    let mut marks = Vec::new();
    for fault in faults.iter().filter(|f| f.error.is_none()) {
        let (start, end) = match fault.kind {
            FaultKind::Kill => (MarkEvent::Kill, None),
            FaultKind::Pause => (MarkEvent::Pause, Some(MarkEvent::Resume)),
            FaultKind::Partition => (MarkEvent::Partition, Some(MarkEvent::Heal)),
            FaultKind::Restart => (MarkEvent::Kill, Some(MarkEvent::Restart)),
            FaultKind::Leave => (MarkEvent::Leave, Some(MarkEvent::Left)),
            FaultKind::Join => (MarkEvent::Join, Some(MarkEvent::Joined)),
            FaultKind::Declare => continue,
        };
        let mut mark = Mark::at_ns(fault.at_ns, start, &fault.node);
        if !fault.cuts.is_empty() {
            mark.by = Some(fault.cut_links().join(","));
        }
        marks.push(mark);
        if let (Some(end), Some(at_ns)) = (end, fault.end_ns) {
            marks.push(Mark::at_ns(at_ns, end, &fault.node));
        }
    }
    marks
}

/// Aborts the task when dropped, so that a run stopped by the watchdog does not leave
/// the nemesis (and the cluster it holds) running.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Checker (2), key by key, on blocking threads (the search is CPU-bound).
async fn check_linearizability(
    history: &[Operation],
    keys: &[String],
    lost_ops: &HashSet<u64>,
    config: &SuiteConfig,
) -> anyhow::Result<LinearizabilityReport> {
    let per_key = config.check_budget / u32::try_from(keys.len().max(1)).unwrap_or(u32::MAX);
    let limits = SearchLimits {
        max_time: per_key.max(Duration::from_secs(1)),
        ..SearchLimits::default()
    };
    let history = Arc::new(history.to_vec());
    let lost_ops = Arc::new(lost_ops.clone());
    let mut report = LinearizabilityReport::default();
    for key in keys {
        let (history, lost_ops, key) = (history.clone(), lost_ops.clone(), key.clone());
        let checked =
            tokio::task::spawn_blocking(move || check_key(&history, &key, &lost_ops, limits))
                .await
                .context("the linearizability checker panicked")?;
        if let dida_verify::linearizability::Verdict::NotLinearizable { blocked_op, .. } =
            &checked.verdict
        {
            tracing::warn!(key = %checked.key, blocked_op, "faults: history not linearizable");
        }
        report.keys.push(checked);
    }
    Ok(report)
}

/// Writes the timeline file.
fn write_timeline(
    path: &Path,
    setup: &Setup,
    buckets: &[timeline::Bucket],
    marks: &[Mark],
) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("cannot create the timeline file {}", path.display()))?;
    timeline::write(&mut std::io::BufWriter::new(file), setup, buckets, marks)
        .with_context(|| format!("cannot write the timeline to {}", path.display()))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Writes the history as JSON lines, one operation per line.
fn write_history(path: &Path, history: &[Operation]) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("cannot create the history file {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for op in history {
        serde_json::to_writer(&mut out, op)
            .with_context(|| format!("cannot write the history to {}", path.display()))?;
        out.write_all(b"\n")
            .with_context(|| format!("cannot write the history to {}", path.display()))?;
    }
    out.flush()
        .with_context(|| format!("cannot write the history to {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn settings_beyond_the_replication_factor_are_refused() {
        let mut config = SuiteConfig::new(PathBuf::from("dida"));
        assert!(config.validate().is_ok());
        config.crashes = 3;
        assert!(config.validate().is_err());
        config.crashes = 1;
        config.fault_lengths = (Duration::from_secs(2), Duration::from_secs(1));
        assert!(config.validate().is_err());
        config.fault_lengths = (Duration::ZERO, Duration::from_secs(1));
        assert!(config.validate().is_err());
        config.fault_lengths = (Duration::from_secs(1), Duration::from_secs(1));
        assert!(config.validate().is_ok());
        config.write_acks = 4;
        assert!(config.validate().is_err());
        config.write_acks = 0;
        assert!(config.validate().is_err());
        config.write_acks = 2;
        config.nemesis = NemesisKind::Storm;
        assert!(config.validate().is_err(), "storm is the simulator's only");
    }
}
