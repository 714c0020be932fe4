//! `dida bench rebalance`: a storage node joining a loaded cluster (issue 25,
//! "elastic clusters") — how long the data takes to move, how much of it moves,
//! and what the clients' latency does meanwhile.
//!
//! It starts a local cluster of `--nodes` real storage processes, writes `--keys`
//! keys of `--value-bytes` each, and keeps `--clients` requests in flight (a
//! closed loop of reads, one write in `--write-every`, of random keys of the data
//! set) through the whole run, with a client that follows the cluster's view as
//! every long-lived client does (so it learns the new node and routes to it):
//!
//! 1. **before**: measured for `--before` seconds;
//! 2. **during**: a new node starts with `dida storage --join`; measured in
//!    windows of `--window` until the cluster lists it active (it caught up and
//!    entered the ring) and the data is at rest again — every node holding only
//!    the keys it replicates, `RF × keys` copies in all (the old replicas handed
//!    off what moved);
//! 3. **after**: measured for `--before` seconds more.
//!
//! It reports the time to each milestone, the keys and bytes the new node received
//! against its ideal share (`RF × keys ÷ nodes`: consistent hashing moves no more),
//! and the latency percentiles of each phase. Its verdicts: p99 during the move at
//! most [`P99_TARGET`] times p99 before (a ratio measured in the same run, against
//! the same cluster, so the machine's speed cancels out), the moved share at most
//! [`SHARE_TARGET`] times the ideal, and no request failed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Args;
use dida_core::Membership;
use dida_local_cluster::{current_dida, ClusterSpec, LocalCluster};
use dida_storage_client::{ClientConfig, StorageClient, VIEW_REFRESH};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::closed_loop::{self, Measurement, Operation};
use crate::lines::{self, Verdict};
use crate::storage::{parse_positive_seconds, stop_cluster};

/// The verdict's target: p99 during the move over p99 before it.
pub(crate) const P99_TARGET: f64 = 3.0;

/// The verdict's target: what the new node received over its ideal share.
pub(crate) const SHARE_TARGET: f64 = 1.5;

/// Replication factor of the benchmark's cluster.
const REPLICATION_FACTOR: usize = 3;

/// How long the move may take before the benchmark gives up.
const MOVE_LIMIT: Duration = Duration::from_secs(600);

/// Writes in flight while the data set is written.
const POPULATE_IN_FLIGHT: usize = 32;

/// Flags of `dida bench rebalance`.
#[derive(Debug, Args)]
pub(crate) struct RebalanceBenchArgs {
    /// Storage nodes before the join (the joining node makes one more).
    #[arg(long, default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(3..=16))]
    nodes: u64,
    /// Keys written before the join.
    #[arg(long, default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    keys: u64,
    /// Bytes of each value.
    #[arg(long, default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    value_bytes: u64,
    /// Requests kept in flight (closed loop).
    #[arg(long, default_value_t = 8,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    clients: u64,
    /// One request in this many is a write (the others read).
    #[arg(long, default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    write_every: u64,
    /// Seconds measured before the join, and again after the move.
    #[arg(long, default_value = "10", value_parser = parse_positive_seconds)]
    before: Duration,
    /// Seconds of each measuring window during the move (the move is checked
    /// between windows).
    #[arg(long, default_value = "1", value_parser = parse_positive_seconds)]
    window: Duration,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

/// One JSON line of `dida bench rebalance --json`, told apart by its `event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum RebalanceLine {
    /// What was measured: the first line.
    Setup(RebalanceSetup),
    /// One phase's latency and throughput.
    Phase(RebalancePhase),
    /// How the move went.
    Move(MoveLine),
    /// A verdict.
    Verdict(Verdict),
}

/// The set-up of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RebalanceSetup {
    /// Storage nodes before the join.
    pub nodes: usize,
    /// Replication factor.
    pub replication_factor: usize,
    /// Keys in the data set.
    pub keys: u64,
    /// Bytes per value.
    pub value_bytes: u64,
    /// Requests in flight.
    pub clients: u64,
    /// One request in this many writes.
    pub write_every: u64,
    /// Cores of the machine.
    pub cores: usize,
}

/// One phase: `before`, `during` or `after` the move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RebalancePhase {
    /// The phase's name.
    pub phase: String,
    /// Requests answered per second.
    pub ops_per_s: f64,
    /// Median latency, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, in milliseconds.
    pub p99_ms: f64,
    /// 99.9th percentile, in milliseconds.
    pub p999_ms: f64,
    /// Requests answered.
    pub completed: u64,
    /// Requests that failed.
    pub errors: u64,
    /// The first failure, to explain a non-zero `errors`.
    pub first_error: Option<String>,
    /// Seconds measured.
    pub seconds: f64,
}

/// How the move went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MoveLine {
    /// Seconds from the join's start until the cluster listed the node active.
    pub active_s: f64,
    /// Seconds from the join's start until the data was at rest again.
    pub at_rest_s: f64,
    /// Keys the new node holds at rest.
    pub keys_moved: u64,
    /// Bytes of their values.
    pub bytes_moved: u64,
    /// Its ideal share: `RF × keys ÷ nodes`.
    pub ideal_keys: f64,
    /// `keys_moved ÷ ideal_keys`.
    pub share: f64,
}

/// Reads, and one write in `write_every`, of random keys of the data set.
struct Mixed {
    client: Arc<StorageClient>,
    keys: u64,
    write_every: u64,
    value: Arc<str>,
    /// xorshift state: a generator per task, seeded apart, so tasks share nothing.
    state: u64,
    calls: u64,
}

impl Operation for Mixed {
    async fn call(&mut self) -> anyhow::Result<()> {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let key = key(self.state % self.keys);
        self.calls += 1;
        if self.calls.is_multiple_of(self.write_every) {
            self.client.write(&key, &self.value).await?;
        } else {
            self.client
                .read(&key, None)
                .await?
                .with_context(|| format!("{key} has no value"))?;
        }
        Ok(())
    }
}

/// The `n`-th key of the data set.
fn key(n: u64) -> String {
    format!("rebalance-{n}")
}

/// Runs `dida bench rebalance`.
pub(crate) async fn run(args: RebalanceBenchArgs) -> anyhow::Result<()> {
    let binary = current_dida()?;
    let nodes = usize::try_from(args.nodes).context("--nodes")?;
    let spec = ClusterSpec {
        nodes,
        spare: 1,
        replication_factor: REPLICATION_FACTOR,
        ..ClusterSpec::default()
    };
    // The spare node, named after the others.
    let joining = format!("s{}", nodes + 1);
    let mut cluster = LocalCluster::start(&binary, spec)
        .await
        .with_context(|| format!("cannot start a local cluster of {nodes} storage nodes"))?;
    let setup = RebalanceSetup {
        nodes,
        replication_factor: REPLICATION_FACTOR,
        keys: args.keys,
        value_bytes: args.value_bytes,
        clients: args.clients,
        write_every: args.write_every,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let print = |line: RebalanceLine| match args.json {
        true => lines::print_json(&line),
        false => print_text(&line),
    };
    print(RebalanceLine::Setup(setup));
    let client = Arc::new(cluster.client()?);
    // Like every long-lived client (workers, the scheduler), it follows the
    // cluster's view, and so learns the node that joins and routes to it.
    let following = tokio::spawn(client.clone().follow_view(VIEW_REFRESH));
    let value: Arc<str> = "x".repeat(args.value_bytes as usize).into();
    populate(&client, args.keys, &value).await?;

    let ops: Vec<Mixed> = (0..args.clients)
        .map(|task| Mixed {
            client: client.clone(),
            keys: args.keys,
            write_every: args.write_every,
            value: value.clone(),
            state: 0x9E37_79B9_7F4A_7C15 ^ (task + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
            calls: task,
        })
        .collect();
    let (ops, before) = closed_loop::run(ops, args.before).await?;
    print(RebalanceLine::Phase(phase("before", &before)));

    let seeds: Vec<String> = cluster
        .membership()
        .members()
        .iter()
        .map(|m| m.url.to_string())
        .collect();
    let started = Instant::now();
    cluster.join(&joining, &seeds, MOVE_LIMIT).await?;
    let (ops, during, active, at_rest) =
        measure_move(&mut cluster, &joining, ops, args.window, started, args.keys).await?;
    print(RebalanceLine::Phase(phase("during", &during)));
    let (_, after) = closed_loop::run(ops, args.before).await?;
    print(RebalanceLine::Phase(phase("after", &after)));

    let grown = StorageClient::new(cluster.members()?, ClientConfig::default())?;
    let keys_moved = grown.status(&joining).await?.keys;
    let ideal_keys = (REPLICATION_FACTOR as u64 * args.keys) as f64 / (nodes + 1) as f64;
    let share = keys_moved as f64 / ideal_keys;
    print(RebalanceLine::Move(MoveLine {
        active_s: active.as_secs_f64(),
        at_rest_s: at_rest.as_secs_f64(),
        keys_moved,
        bytes_moved: keys_moved * args.value_bytes,
        ideal_keys,
        share,
    }));
    let p99_ratio = percentile_ms(&during, 0.99) / percentile_ms(&before, 0.99).max(f64::EPSILON);
    print(RebalanceLine::Verdict(Verdict {
        text: format!(
            "p99 during the move is {p99_ratio:.2}x p99 before it (target at most {P99_TARGET}x)"
        ),
        ratio: Some(p99_ratio),
        met: Some(p99_ratio <= P99_TARGET),
    }));
    print(RebalanceLine::Verdict(Verdict {
        text: format!(
            "the new node received {share:.2}x its ideal share of the keys (target at most \
             {SHARE_TARGET}x)"
        ),
        ratio: Some(share),
        met: Some(share <= SHARE_TARGET),
    }));
    let errors = before.errors + during.errors + after.errors;
    print(RebalanceLine::Verdict(Verdict {
        text: format!("{errors} requests failed"),
        ratio: None,
        met: Some(errors == 0),
    }));
    following.abort();
    stop_cluster(cluster).await
}

/// Writes every key of the data set, [`POPULATE_IN_FLIGHT`] at a time.
async fn populate(client: &StorageClient, keys: u64, value: &str) -> anyhow::Result<()> {
    futures::stream::iter(0..keys)
        .map(|n| async move {
            client
                .write(&key(n), value)
                .await
                .with_context(|| format!("cannot write {}", key(n)))
        })
        .buffer_unordered(POPULATE_IN_FLIGHT)
        .try_for_each(|_| async { Ok(()) })
        .await
}

/// Runs the load in windows of `window` from the join's start until the cluster
/// lists the new node active and the data is at rest; returns the operations,
/// what the windows measured together, and the time to each milestone.
async fn measure_move(
    cluster: &mut LocalCluster,
    joining: &str,
    mut ops: Vec<Mixed>,
    window: Duration,
    started: Instant,
    keys: u64,
) -> anyhow::Result<(Vec<Mixed>, Measurement, Duration, Duration)> {
    let mut during: Option<Measurement> = None;
    let mut active = None;
    loop {
        ensure!(
            started.elapsed() < MOVE_LIMIT,
            "the move did not end within {MOVE_LIMIT:?}"
        );
        ensure!(
            cluster.try_wait(joining)?.is_none(),
            "the joining node exited (see its log above)"
        );
        let (back, measured) = closed_loop::run(ops, window).await?;
        ops = back;
        match &mut during {
            Some(total) => total.absorb(measured)?,
            None => during = Some(measured),
        }
        if active.is_none() && cluster.is_active(joining).await? {
            active = Some(started.elapsed());
        }
        let peers = cluster.members()?;
        if active.is_some() && at_rest(&peers, keys).await {
            let during = during.context("at least one window ran")?;
            return Ok((ops, during, active.unwrap_or_default(), started.elapsed()));
        }
    }
}

/// Whether the nodes hold `RF × keys` keys between them: each only what it
/// replicates, the old replicas having handed off what moved.
async fn at_rest(peers: &Membership, keys: u64) -> bool {
    let Ok(client) = StorageClient::new(peers.clone(), ClientConfig::default()) else {
        return false;
    };
    let mut held = 0;
    for id in peers.ids() {
        match client.status(id).await {
            Ok(status) => held += status.keys,
            Err(_) => return false,
        }
    }
    held == REPLICATION_FACTOR as u64 * keys
}

fn phase(name: &str, measured: &Measurement) -> RebalancePhase {
    RebalancePhase {
        phase: name.to_string(),
        ops_per_s: measured.throughput(),
        p50_ms: percentile_ms(measured, 0.5),
        p99_ms: percentile_ms(measured, 0.99),
        p999_ms: percentile_ms(measured, 0.999),
        completed: measured.completed,
        errors: measured.errors,
        first_error: measured.first_error.clone(),
        seconds: measured.elapsed.as_secs_f64(),
    }
}

fn percentile_ms(measured: &Measurement, quantile: f64) -> f64 {
    measured.latency_us.value_at_quantile(quantile) as f64 / 1000.0
}

fn print_text(line: &RebalanceLine) {
    match line {
        RebalanceLine::Setup(s) => println!(
            "dida bench rebalance: {} storage nodes (RF {}), {} keys of {} bytes, {} clients \
             (1 write in {}), {} cores; then one node joins\n\
             phase      ops/s      p50 ms    p99 ms   p99.9 ms  errors",
            s.nodes, s.replication_factor, s.keys, s.value_bytes, s.clients, s.write_every, s.cores
        ),
        RebalanceLine::Phase(p) => println!(
            "{:<8} {:>9.0} {:>9.2} {:>9.2} {:>10.2} {:>7}",
            p.phase, p.ops_per_s, p.p50_ms, p.p99_ms, p.p999_ms, p.errors
        ),
        RebalanceLine::Move(m) => println!(
            "the new node was active after {:.1} s and the data at rest after {:.1} s; it \
             received {} keys ({:.1} MiB), {:.2}x its ideal share of {:.0}",
            m.active_s,
            m.at_rest_s,
            m.keys_moved,
            m.bytes_moved as f64 / (1024.0 * 1024.0),
            m.share,
            m.ideal_keys
        ),
        RebalanceLine::Verdict(v) => println!(
            "{}{}",
            match v.met {
                Some(true) => "ok: ",
                Some(false) => "MISSED: ",
                None => "",
            },
            v.text
        ),
    }
}
