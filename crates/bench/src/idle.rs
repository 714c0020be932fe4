//! `dida bench idle`: the CPU an idle, converged cluster burns, empty and then holding
//! data (issue 9, item 5).
//!
//! With nothing to do, storage nodes still probe each other and run anti-entropy
//! rounds. That background work must not grow with the data: the target is that a
//! cluster holding `--keys` keys burns, idle, within 2× the CPU of the same cluster
//! empty. The benchmark starts a local cluster of real `dida storage` processes,
//! measures the user + system CPU time of every node over `--duration` while the
//! cluster is empty, populates it, waits until every replica holds every key, and
//! measures again — both in one run, on the same processes, so that the ratio compares
//! like with like on a shared machine.
//!
//! Last, it SIGKILLs one node and polls every survivor until it lists the node
//! failed: the crash detection time of this cluster size. The detector's cost and
//! its speed are two sides of one trade (probing fewer peers a period costs less
//! and may detect later), so one run shows both; `--nodes 5`, `10` and `20` show
//! how each grows with the cluster.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Args;
use dida_core::limits::check_value;
use dida_local_cluster::{current_dida, ClusterSpec, LocalCluster};
use dida_storage_client::StorageClient;
use futures::{StreamExt, TryStreamExt};
use tracing::info;

use crate::cpu::CpuClock;
use crate::lines::{self, IdleLine, IdleMeasurement, IdleSetup};
use crate::storage::parse_positive_seconds;

/// The target: loaded idle CPU at most this many times the empty cluster's.
const TARGET_RATIO: f64 = 2.0;

/// Writes in flight while populating: enough to keep every node busy, few enough that
/// on a small machine the nodes still answer the failure detector's probes in time.
const POPULATE_IN_FLIGHT: usize = 16;

/// How long the replicas may take to hold every key once the writes returned.
const CONVERGE_LIMIT: Duration = Duration::from_secs(180);

/// How often each survivor is polled for the killed node: the resolution of the
/// detection times.
const DETECTION_POLL: Duration = Duration::from_millis(10);

/// How long the survivors may take to list the killed node failed.
const DETECTION_LIMIT: Duration = Duration::from_secs(30);

/// Flags of `dida bench idle`.
#[derive(Debug, Args)]
pub(crate) struct IdleBenchArgs {
    /// Storage nodes of the local cluster.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Replication factor of the cluster.
    #[arg(long, default_value_t = 3)]
    replication_factor: usize,
    /// Keys the loaded cluster holds (each written once).
    #[arg(long, default_value_t = 300_000)]
    keys: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 16)]
    value_size: usize,
    /// Seconds of idleness per measurement (fractions allowed).
    #[arg(long, default_value = "10", value_parser = parse_positive_seconds)]
    duration: Duration,
    /// Quiet seconds before each measurement, so that start-up, the last gossip
    /// pushes and the repairs they cause are over: several anti-entropy rounds, and
    /// time for every node to have probed every peer (and so opened its connection
    /// to it) — with 20 nodes probing 3 peers a period that takes 14 periods, 3.5 s,
    /// and a 3 s settle counted 20 nodes' connection set-up as idle cost.
    #[arg(long, default_value = "10", value_parser = parse_positive_seconds)]
    settle: Duration,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

/// One measurement: what every node burned together while idle.
#[derive(Debug, Clone, PartialEq)]
struct IdleRow {
    /// `idle-empty` or `idle-loaded`.
    workload: &'static str,
    /// Keys the cluster held.
    keys: usize,
    /// User + system CPU time of all node processes over the measurement.
    core_seconds: f64,
    /// Length of the measurement.
    duration: Duration,
}

/// Runs `dida bench idle`.
pub(crate) async fn run(args: IdleBenchArgs) -> anyhow::Result<()> {
    ensure!(args.keys > 0, "--keys must be at least 1");
    let value = "v".repeat(args.value_size);
    check_value(&value).context("--value-size is too large")?;
    let clock = CpuClock::new()?;
    let spec = ClusterSpec {
        nodes: args.nodes,
        replication_factor: args.replication_factor,
        ..ClusterSpec::default()
    };
    let anti_entropy_interval_ms = spec.anti_entropy_interval_ms;
    let mut cluster = LocalCluster::start(&current_dida()?, spec)
        .await
        .with_context(|| {
            format!(
                "cannot start a local cluster of {} storage nodes",
                args.nodes
            )
        })?;
    print_setup(&args, anti_entropy_interval_ms);
    let outcome = measure_both(&args, &cluster, clock, &value).await;
    let detection = match &outcome {
        Ok(_) if args.nodes >= 3 => Some(measure_detection(&mut cluster).await),
        _ => None,
    };
    let stopped = cluster.kill_all().await;
    let [empty, loaded] = outcome?;
    print_verdict(args.json, &Verdict::of(&empty, &loaded));
    if let Some(detection) = detection {
        print_detection(args.json, &detection?);
    }
    stopped.context("cannot stop the local cluster")?;
    Ok(())
}

/// SIGKILLs the cluster's last node and returns, for every survivor in ascending
/// order, how long after the kill it listed the node failed. All survivors are
/// polled at once, every [`DETECTION_POLL`]. (A cluster of fewer than 3 nodes
/// cannot declare: the detector needs a majority of the live nodes.)
async fn measure_detection(cluster: &mut LocalCluster) -> anyhow::Result<lines::IdleDetection> {
    let client = cluster.client().context("cannot create a storage client")?;
    let mut ids: Vec<String> = cluster.ids().collect();
    let victim = ids.pop().context("the cluster has no node")?;
    cluster
        .kill(&victim)
        .await
        .with_context(|| format!("cannot SIGKILL storage node {victim}"))?;
    let killed = Instant::now();
    let detected = ids.iter().map(|survivor| {
        let (client, victim) = (&client, &victim);
        async move {
            loop {
                let status = client.status(survivor).await.with_context(|| {
                    format!("cannot get the status of storage node {survivor}")
                })?;
                if status.failed.iter().any(|failed| failed == victim) {
                    return Ok(killed.elapsed().as_secs_f64());
                }
                if killed.elapsed() > DETECTION_LIMIT {
                    bail!("{survivor} did not list the killed node {victim} failed within {DETECTION_LIMIT:?}");
                }
                tokio::time::sleep(DETECTION_POLL).await;
            }
        }
    });
    let mut survivors_s = futures::future::try_join_all(detected).await?;
    survivors_s.sort_by(f64::total_cmp);
    Ok(lines::IdleDetection {
        killed: victim,
        survivors_s,
        poll_ms: DETECTION_POLL.as_millis() as u64,
    })
}

/// Measures the empty cluster, populates it, waits until it converged, and measures
/// it again; prints each row as it is measured.
async fn measure_both(
    args: &IdleBenchArgs,
    cluster: &LocalCluster,
    clock: CpuClock,
    value: &str,
) -> anyhow::Result<[IdleRow; 2]> {
    tokio::time::sleep(args.settle).await;
    let empty = measure_idle(cluster, clock, "idle-empty", 0, args.duration).await?;
    print_row(args.json, &empty);

    let client = cluster.client().context("cannot create a storage client")?;
    let keys: Vec<String> = (0..args.keys).map(|i| format!("idle/{i}")).collect();
    let started = Instant::now();
    populate(&client, &keys, value).await?;
    let replicas = args.replication_factor.clamp(1, args.nodes) as u64;
    let ids: Vec<String> = cluster.ids().collect();
    wait_until_converged(&client, &ids, args.keys as u64 * replicas).await?;
    info!(
        keys = args.keys,
        seconds = started.elapsed().as_secs_f64(),
        "populated, every replica holds every key"
    );
    tokio::time::sleep(args.settle).await;
    let loaded = measure_idle(cluster, clock, "idle-loaded", args.keys, args.duration).await?;
    print_row(args.json, &loaded);
    Ok([empty, loaded])
}

/// The CPU every node process uses over `duration` while nobody sends a request.
async fn measure_idle(
    cluster: &LocalCluster,
    clock: CpuClock,
    workload: &'static str,
    keys: usize,
    duration: Duration,
) -> anyhow::Result<IdleRow> {
    let pids = cluster.pids();
    let cpu_used = |pids: &[u32]| -> anyhow::Result<Duration> {
        pids.iter()
            .map(|&pid| clock.used_by(pid))
            .sum::<anyhow::Result<Duration>>()
            .context("cannot read the CPU time of a storage node")
    };
    let before = cpu_used(&pids)?;
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    let after = cpu_used(&pids)?;
    let elapsed = started.elapsed();
    Ok(IdleRow {
        workload,
        keys,
        core_seconds: after.saturating_sub(before).as_secs_f64(),
        duration: elapsed,
    })
}

/// Writes `value` to every key, many writes in flight.
async fn populate(client: &StorageClient, keys: &[String], value: &str) -> anyhow::Result<()> {
    futures::stream::iter(keys)
        .map(|key| async move {
            client
                .write(key, value)
                .await
                .with_context(|| format!("cannot write {key} while populating"))
        })
        .buffer_unordered(POPULATE_IN_FLIGHT)
        .try_for_each(|_| futures::future::ready(Ok(())))
        .await
}

/// Waits until the nodes together hold `expected` keys and as many records: every
/// key, written once, on each of its replicas. A node's status counts come from
/// per-shard tallies, so polling them does not itself walk the data.
async fn wait_until_converged(
    client: &StorageClient,
    ids: &[String],
    expected: u64,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + CONVERGE_LIMIT;
    loop {
        let (mut keys, mut records) = (0, 0);
        for id in ids {
            let status = client
                .status(id)
                .await
                .with_context(|| format!("cannot get the status of storage node {id}"))?;
            keys += status.keys;
            records += status.records;
        }
        if keys == expected && records == expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the replicas did not converge within {CONVERGE_LIMIT:?}: they hold {keys} keys \
                 and {records} records in all, {expected} of each expected"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The verdict on the target, from the two measurements.
#[derive(Debug, Clone, PartialEq)]
struct Verdict {
    /// Keys of the loaded measurement.
    keys: usize,
    /// Loaded ÷ empty; `None` when the empty cluster used no measurable CPU.
    ratio: Option<f64>,
}

impl Verdict {
    fn of(empty: &IdleRow, loaded: &IdleRow) -> Self {
        Self {
            keys: loaded.keys,
            ratio: (empty.core_seconds > 0.0).then(|| loaded.core_seconds / empty.core_seconds),
        }
    }

    fn met(&self) -> bool {
        self.ratio.is_some_and(|ratio| ratio <= TARGET_RATIO)
    }

    fn text(&self) -> String {
        match self.ratio {
            Some(ratio) => format!(
                "idle CPU with {} keys: {ratio:.2}× the empty cluster's (target ≤ {TARGET_RATIO}×): {}",
                self.keys,
                if self.met() { "met" } else { "NOT met" }
            ),
            None => "idle CPU: the empty cluster used no measurable CPU, so no ratio \
                     (measure longer with --duration)"
                .to_string(),
        }
    }
}

fn print_setup(args: &IdleBenchArgs, anti_entropy_interval_ms: u64) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if args.json {
        lines::print_json(&IdleLine::Setup(IdleSetup {
            cluster: "local processes started by this run".to_string(),
            nodes: args.nodes,
            replication_factor: args.replication_factor,
            keys: args.keys,
            value_size: args.value_size,
            duration_s: args.duration.as_secs_f64(),
            anti_entropy_interval_ms,
            cores,
        }));
        return;
    }
    println!("dida bench idle");
    println!(
        "  cluster:            {} storage nodes (local processes started by this run)",
        args.nodes
    );
    println!("  replication factor: {}", args.replication_factor);
    println!("  anti-entropy:       a round every {anti_entropy_interval_ms} ms per node");
    println!(
        "  loaded:             {} keys, {}-byte values, on every replica",
        args.keys, args.value_size
    );
    println!(
        "  each measurement:   {} s idle; user + system CPU of every node process",
        args.duration.as_secs_f64()
    );
    println!("  machine:            {cores} cores available");
    println!();
    println!(
        "{:<12} {:>8} {:>13} {:>11}",
        "workload", "keys", "core-seconds", "cores busy"
    );
}

fn print_row(json: bool, row: &IdleRow) {
    if json {
        lines::print_json(&IdleLine::Measurement(IdleMeasurement {
            workload: row.workload.to_string(),
            keys: row.keys,
            core_seconds: row.core_seconds,
            duration_s: row.duration.as_secs_f64(),
        }));
        return;
    }
    println!(
        "{:<12} {:>8} {:>13.2} {:>10.1}%",
        row.workload,
        row.keys,
        row.core_seconds,
        100.0 * row.core_seconds / row.duration.as_secs_f64()
    );
}

fn print_verdict(json: bool, verdict: &Verdict) {
    if json {
        lines::print_json(&IdleLine::Verdict(lines::Verdict {
            text: verdict.text(),
            ratio: verdict.ratio,
            met: Some(verdict.met()),
        }));
        return;
    }
    println!();
    println!("{}", verdict.text());
}

fn print_detection(json: bool, detection: &lines::IdleDetection) {
    if json {
        lines::print_json(&IdleLine::Detection(detection.clone()));
        return;
    }
    let times = &detection.survivors_s;
    let (Some(first), Some(last)) = (times.first(), times.last()) else {
        return;
    };
    println!(
        "crash detection: {} SIGKILLed, listed failed by all {} survivors after {first:.2}–{last:.2} s (median {:.2} s; polled every {} ms)",
        detection.killed,
        times.len(),
        times[times.len() / 2],
        detection.poll_ms
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(workload: &'static str, keys: usize, core_seconds: f64) -> IdleRow {
        IdleRow {
            workload,
            keys,
            core_seconds,
            duration: Duration::from_secs(10),
        }
    }

    #[test]
    fn verdict_compares_loaded_with_empty_against_twice() {
        let met = Verdict::of(
            &row("idle-empty", 0, 0.25),
            &row("idle-loaded", 300_000, 0.375),
        );
        assert_eq!(met.ratio, Some(1.5));
        assert!(met.met());
        assert_eq!(
            met.text(),
            "idle CPU with 300000 keys: 1.50× the empty cluster's (target ≤ 2×): met"
        );
        let twice = Verdict::of(&row("idle-empty", 0, 0.25), &row("idle-loaded", 10, 0.5));
        assert!(twice.met(), "exactly 2× is within the target");
        let missed = Verdict::of(
            &row("idle-empty", 0, 0.15),
            &row("idle-loaded", 300_000, 7.0),
        );
        assert!(!missed.met());
        assert!(missed.text().ends_with("NOT met"), "{}", missed.text());
    }

    #[test]
    fn verdict_has_no_ratio_without_an_empty_baseline() {
        let verdict = Verdict::of(&row("idle-empty", 0, 0.0), &row("idle-loaded", 10, 0.1));
        assert_eq!(verdict.ratio, None);
        assert!(!verdict.met());
        assert!(verdict.text().contains("no ratio"));
    }
}
