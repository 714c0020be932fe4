//! `dida bench storage`: reads, writes and CAS against a no-op RPC baseline and
//! against Redis.
//!
//! The benchmark measures a running cluster (`--peers`) or, by default, starts one of
//! real `dida storage` processes on loopback and stops it at the end. At each
//! concurrency it measures the baselines first — the no-op RPC to the target node,
//! then Redis GET and SET — and then every storage workload, all against the same
//! target node, so each row's "vs ping" and "vs redis" compare runs made moments
//! apart under the same conditions. Redis is started from PATH unless `--no-redis`
//! or `--redis-url` says otherwise (see `crate::redis`).
//!
//! `--durability memory,never,batch,always` measures the same workloads once per
//! mode, each on a fresh local cluster (in memory, or with a data directory per
//! node and that `--fsync`), and ends with every mode's throughput over the
//! in-memory cluster's: what durability costs, measured in one run.
//!
//! `--transport plaintext,tls` does the same for mutual TLS (see `crate::transport`).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context};
use clap::Args;
use dida_core::limits::check_value;
use dida_core::Membership;
use dida_local_cluster::{current_dida, ClusterSpec, DataDirs, LocalCluster};
use dida_storage_client::{ClientConfig, StorageClient};

use crate::closed_loop::{self, Measurement, Operation};
use crate::lines::{self, Comparison, ModeCost, StorageSetup};
use crate::redis::{self, Redis, RedisBaseline, RedisChoice};
use crate::report::{self, ratio, Printer, Row};
use crate::transport::{self, Transport};
use crate::workload::{self, Workload};

/// How long the set-up waits for the populated keys to reach the target.
const POPULATE_LIMIT: Duration = Duration::from_secs(10);

/// Flags of `dida bench storage`.
#[derive(Debug, Args)]
pub(crate) struct StorageBenchArgs {
    /// Storage nodes to measure: ID=URL,ID=URL,… Without it, the benchmark starts a
    /// local cluster of its own and stops it at the end.
    #[arg(long)]
    peers: Option<String>,
    /// Nodes of the local cluster (ignored with --peers).
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Replication factor of the cluster (with --peers, the one the nodes run with).
    #[arg(long, default_value_t = 3)]
    replication_factor: usize,
    /// `--write-acks` of the local cluster's nodes: replicas holding a write before it
    /// is acknowledged (ignored with --peers).
    #[arg(long, default_value_t = 1)]
    write_acks: usize,
    /// `--gossip-delay` of every node of the local cluster, in milliseconds (ignored
    /// with --peers).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    gossip_delay: u64,
    /// Requests in flight to measure at, comma-separated.
    #[arg(long, default_value = "1,16,64")]
    concurrency: Concurrencies,
    /// Seconds per measurement (fractions allowed).
    #[arg(long, default_value = "3", value_parser = parse_positive_seconds)]
    duration: Duration,
    /// Seconds of warm-up before each measurement, not counted.
    #[arg(long, default_value = "0.5", value_parser = parse_seconds)]
    warmup: Duration,
    /// Keys per read or write workload.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Bytes per value of the read and write workloads.
    #[arg(long, default_value_t = 16)]
    value_size: usize,
    /// The node every request goes to.
    #[arg(long, default_value = "s1")]
    target: String,
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Measure no Redis. By default the benchmark measures Redis GET and SET beside
    /// dida, starting redis-server from PATH (and skipping Redis if it is missing).
    #[arg(long, conflicts_with = "redis_url")]
    no_redis: bool,
    /// Measure the Redis at this URL (e.g. redis://127.0.0.1:6379) instead of
    /// starting redis-server; its keys dida-bench:* are deleted at the end.
    #[arg(long, value_name = "URL", value_parser = redis::parse_redis_url)]
    redis_url: Option<String>,
    /// How the local cluster keeps its records, one fresh cluster per mode listed:
    /// memory (the default), or a data directory per node with --fsync never,
    /// batch or always. With several, the report ends with each mode's
    /// throughput over memory's (list memory first). Redis is measured in the
    /// first mode's run only.
    #[arg(long, value_delimiter = ',', default_value = "memory")]
    durability: Vec<Durability>,
    /// How nodes and clients talk: plaintext or tls (mutual TLS with certificates
    /// made for the run). By default, as this process does (TLS with --tls-dir).
    /// With a list, each transport runs in a process of its own on a fresh local
    /// cluster, and the report ends with each one's throughput over the first's.
    #[arg(long, value_delimiter = ',')]
    transport: Option<Vec<Transport>>,
    /// Measure the cost of metrics: run the first --durability mode twice, on a
    /// fresh local cluster each, without and then with --metrics-listen on every
    /// node (scraped by nobody: the cost is recording), and end the report with
    /// the second's throughput over the first's.
    #[arg(long, conflicts_with = "peers")]
    metrics_overhead: bool,
    /// With --metrics-overhead: run the off/on pair this many times, alternating,
    /// and compare each row's median (a shared machine's speed drifts over minutes;
    /// alternating spreads the drift over both modes).
    #[arg(long, default_value_t = 1, requires = "metrics_overhead",
          value_parser = clap::value_parser!(u32).range(1..=9))]
    rounds: u32,
}

/// Where the measured nodes keep their records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Durability {
    /// In memory only, as the course's rule has it.
    Memory,
    /// A data directory per node, `--fsync never`.
    Never,
    /// A data directory per node, `--fsync batch`.
    Batch,
    /// A data directory per node, `--fsync always`.
    Always,
}

impl Durability {
    /// The mode's name on the command line and in reports.
    fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Never => "never",
            Self::Batch => "batch",
            Self::Always => "always",
        }
    }
}

/// A cluster this run started, with its nodes' data directories (removed when
/// dropped) if it is durable.
struct Started {
    cluster: LocalCluster,
    data: Option<tempfile::TempDir>,
}

impl StorageBenchArgs {
    /// Where the Redis baseline comes from.
    fn redis_choice(&self) -> RedisChoice {
        match (&self.redis_url, self.no_redis) {
            (Some(url), _) => RedisChoice::Url(url.clone()),
            (None, true) => RedisChoice::Skip,
            (None, false) => RedisChoice::Start,
        }
    }
}

/// The concurrencies to measure at, in the order given; each at least 1, no repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Concurrencies(pub(crate) Vec<usize>);

impl FromStr for Concurrencies {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut levels = Vec::new();
        for part in text.split(',').map(str::trim) {
            let level: usize = part
                .parse()
                .map_err(|_| format!("{part:?} is not a number of requests in flight"))?;
            if level == 0 {
                return Err("a concurrency must be at least 1".to_string());
            }
            if levels.contains(&level) {
                return Err(format!("concurrency {level} is listed twice"));
            }
            levels.push(level);
        }
        Ok(Self(levels))
    }
}

/// Parses a number of seconds (fractions allowed, zero allowed).
pub(crate) fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("{text:?} is not a usable number of seconds"))
}

/// Parses a number of seconds that must be more than zero.
pub(crate) fn parse_positive_seconds(text: &str) -> Result<Duration, String> {
    let duration = parse_seconds(text)?;
    if duration.is_zero() {
        return Err("must be more than zero seconds".to_string());
    }
    Ok(duration)
}

/// Runs `dida bench storage`.
pub(crate) async fn run(args: StorageBenchArgs) -> anyhow::Result<()> {
    ensure!(args.keys > 0, "--keys must be at least 1");
    ensure!(
        !args.durability.is_empty(),
        "--durability needs at least one mode"
    );
    ensure!(
        args.peers.is_none() || args.durability == [Durability::Memory],
        "--durability applies to the local cluster only, not to --peers"
    );
    let value = "v".repeat(args.value_size);
    check_value(&value).context("--value-size is too large")?;
    let this_process = if dida_proto::security::installed().tls.is_some() {
        Transport::Tls
    } else {
        Transport::Plaintext
    };
    if let Some(transports) = args.transport.as_deref().filter(|t| *t != [this_process]) {
        ensure!(
            args.peers.is_none(),
            "--transport applies to the local cluster only, not to --peers"
        );
        ensure!(!transports.is_empty(), "--transport needs at least one");
        return transport::compare(transports, args.nodes, args.json).await;
    }

    if let Some(peers) = &args.peers {
        let membership = Membership::parse(peers).context("invalid --peers")?;
        return measure_all(&args, membership, value, Durability::Memory, true)
            .await
            .map(drop);
    }
    // Each run: a durability mode, and whether the nodes record metrics.
    let plan: Vec<(Durability, bool)> = if args.metrics_overhead {
        (0..args.rounds)
            .flat_map(|_| [(args.durability[0], false), (args.durability[0], true)])
            .collect()
    } else {
        args.durability.iter().map(|&mode| (mode, false)).collect()
    };
    let mut runs = Vec::new();
    for (i, &(mode, metrics)) in plan.iter().enumerate() {
        let cluster = start_cluster(&args, mode, metrics).await?;
        let membership = cluster.cluster.membership().clone();
        let outcome = measure_all(&args, membership, value.clone(), mode, i == 0).await;
        let stopped = stop_cluster(cluster.cluster)
            .await
            .and_then(|()| match cluster.data {
                Some(root) => root
                    .close()
                    .context("cannot remove the nodes' data directories"),
                None => Ok(()),
            });
        let name = match (args.metrics_overhead, metrics) {
            (false, _) => mode.name(),
            (true, false) => "off",
            (true, true) => "on",
        };
        runs.push((name, outcome?));
        stopped?;
    }
    if runs.len() > 1 {
        let kind = if args.metrics_overhead {
            Comparison::Metrics
        } else {
            Comparison::Durability
        };
        let runs: Vec<_> = runs
            .iter()
            .map(|(name, rows)| (*name, rows.iter().map(ModeRow::from).collect()))
            .collect();
        print_mode_costs(Printer { json: args.json }, kind, &median_runs(&runs));
    }
    Ok(())
}

/// One workload at one concurrency in one mode of a comparison (a durability mode,
/// a transport): what [`print_mode_costs`] prints.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModeRow {
    pub workload: String,
    pub concurrency: usize,
    pub ops_per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub errors: u64,
}

impl From<&Row> for ModeRow {
    fn from(row: &Row) -> Self {
        Self {
            workload: row.workload.clone(),
            concurrency: row.concurrency,
            ops_per_sec: row.ops_per_sec,
            p50_us: row.p50_us,
            p99_us: row.p99_us,
            errors: row.errors,
        }
    }
}

/// Merges the runs of the same mode (rounds of a comparison) into one, each row
/// the median of that row over the rounds (errors summed); modes keep the order in
/// which they first ran. One run per mode comes back unchanged.
pub(crate) fn median_runs<'a>(runs: &[(&'a str, Vec<ModeRow>)]) -> Vec<(&'a str, Vec<ModeRow>)> {
    let mut modes: Vec<&str> = Vec::new();
    for (mode, _) in runs {
        if !modes.contains(mode) {
            modes.push(mode);
        }
    }
    modes
        .into_iter()
        .map(|mode| {
            let rounds: Vec<&Vec<ModeRow>> = runs
                .iter()
                .filter(|(m, _)| *m == mode)
                .map(|(_, rows)| rows)
                .collect();
            let rows = rounds[0]
                .iter()
                .map(|first| {
                    let same: Vec<&ModeRow> = rounds
                        .iter()
                        .filter_map(|rows| {
                            rows.iter().find(|r| {
                                r.workload == first.workload && r.concurrency == first.concurrency
                            })
                        })
                        .collect();
                    let median_of = |value: fn(&ModeRow) -> f64| {
                        let mut values: Vec<f64> = same.iter().map(|r| value(r)).collect();
                        values.sort_by(f64::total_cmp);
                        let n = values.len();
                        if n % 2 == 1 {
                            values[n / 2]
                        } else {
                            (values[n / 2 - 1] + values[n / 2]) / 2.0
                        }
                    };
                    ModeRow {
                        workload: first.workload.clone(),
                        concurrency: first.concurrency,
                        ops_per_sec: median_of(|r| r.ops_per_sec),
                        p50_us: median_of(|r| r.p50_us as f64).round() as u64,
                        p99_us: median_of(|r| r.p99_us as f64).round() as u64,
                        errors: same.iter().map(|r| r.errors).sum(),
                    }
                })
                .collect();
            (mode, rows)
        })
        .collect()
}

/// Prints every mode's dida measurements (not Redis's) with their throughput over
/// the first mode's at the same workload and concurrency. `kind` names the
/// comparison (`durability`, `transport`): the JSON lines' `kind`, and the key of
/// each line's mode.
pub(crate) fn print_mode_costs(printer: Printer, kind: Comparison, runs: &[(&str, Vec<ModeRow>)]) {
    let Some((base_mode, base_rows)) = runs.first() else {
        return;
    };
    if !printer.json {
        println!();
        println!(
            "{}: ops/s of each mode over {base_mode}'s (each on a fresh local cluster)",
            kind.name()
        );
        println!(
            "{:<10} {:<10} {:>11} {:>10} {:>9} {:>9} {:>7} {:>9}",
            "workload", "mode", "concurrency", "ops/s", "p50 (µs)", "p99 (µs)", "errors", "vs base"
        );
    }
    for (mode, rows) in runs {
        for row in rows.iter().filter(|r| !r.workload.starts_with("redis")) {
            let base = base_rows
                .iter()
                .find(|b| b.workload == row.workload && b.concurrency == row.concurrency);
            let vs_base = base.and_then(|b| ratio(row.ops_per_sec, b.ops_per_sec));
            if printer.json {
                let cost = ModeCost {
                    mode: mode.to_string(),
                    base: base_mode.to_string(),
                    workload: row.workload.clone(),
                    concurrency: row.concurrency,
                    ops_per_sec: row.ops_per_sec,
                    p50_us: row.p50_us,
                    p99_us: row.p99_us,
                    errors: row.errors,
                    vs_base,
                };
                lines::print_json(&kind.line(cost));
            } else {
                println!(
                    "{:<10} {:<10} {:>11} {:>10.0} {:>9} {:>9} {:>7} {:>9}",
                    row.workload,
                    mode,
                    row.concurrency,
                    row.ops_per_sec,
                    row.p50_us,
                    row.p99_us,
                    row.errors,
                    vs_base.map_or("-".to_string(), |r| format!("{r:.2}×"))
                );
            }
        }
    }
}

/// Starts the local cluster the benchmark measures when no --peers are given, in
/// memory or on data directories in a temporary root, each node serving metrics
/// when `metrics` is set.
async fn start_cluster(
    args: &StorageBenchArgs,
    mode: Durability,
    metrics: bool,
) -> anyhow::Result<Started> {
    dida_core::limits::check_write_acks(args.write_acks, args.replication_factor)
        .map_err(anyhow::Error::msg)?;
    let failed = || {
        format!(
            "cannot start a local cluster of {} storage nodes ({})",
            args.nodes,
            mode.name()
        )
    };
    let data = if mode == Durability::Memory {
        None
    } else {
        Some(
            tempfile::Builder::new()
                .prefix("dida-bench-data-")
                .tempdir()
                .context("cannot create the nodes' data directories")?,
        )
    };
    let spec = ClusterSpec {
        nodes: args.nodes,
        replication_factor: args.replication_factor,
        write_acks: args.write_acks,
        gossip_delays_ms: vec![args.gossip_delay; args.nodes],
        data: data.as_ref().map(|root| DataDirs {
            root: root.path().to_path_buf(),
            fsync: mode.name().to_string(),
        }),
        metrics,
        ..ClusterSpec::default()
    };
    let cluster = LocalCluster::start(&current_dida()?, spec)
        .await
        .with_context(failed)?;
    Ok(Started { cluster, data })
}

/// Stops every storage node of the local cluster and reaps its process. A scheduler
/// and workers, if started, are killed when the cluster is dropped at the end.
pub(crate) async fn stop_cluster(mut cluster: LocalCluster) -> anyhow::Result<()> {
    let ids: Vec<String> = cluster.ids().collect();
    for id in ids {
        cluster
            .kill(&id)
            .await
            .with_context(|| format!("cannot stop local storage node {id}"))?;
    }
    Ok(())
}

/// Prepares the workloads, then measures every workload at every concurrency and
/// prints the report; returns its rows. Redis is measured only `with_redis`.
async fn measure_all(
    args: &StorageBenchArgs,
    membership: Membership,
    value: String,
    durability: Durability,
    with_redis: bool,
) -> anyhow::Result<Vec<Row>> {
    let target = args.target.clone();
    membership
        .index_of(&target)
        .with_context(|| format!("--target {target} is not a storage node of the cluster"))?;
    let config = ClientConfig {
        replication_factor: args.replication_factor,
        ..ClientConfig::default()
    };
    let value: Arc<str> = value.into();
    // Redis commands get the deadline every dida request gets.
    let redis_choice = if with_redis {
        args.redis_choice()
    } else {
        RedisChoice::Skip
    };
    let (redis, redis_setup) =
        match redis::prepare(&redis_choice, args.keys, &value, config.deadline).await? {
            RedisBaseline::Ready(redis) => {
                let description = redis.description().to_string();
                (Some(*redis), description)
            }
            RedisBaseline::Skipped(why) => (None, why),
        };
    let setup = StorageSetup {
        cluster: if args.peers.is_some() {
            "given by --peers".to_string()
        } else {
            "local processes started by this run".to_string()
        },
        nodes: membership.len(),
        replication_factor: args.replication_factor,
        // Only a cluster this run started is known to use these.
        write_acks: args.peers.is_none().then_some(args.write_acks),
        gossip_delay_ms: args.peers.is_none().then_some(args.gossip_delay),
        target: target.clone(),
        value_size: args.value_size,
        keys: args.keys,
        duration_s: args.duration.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        redis: redis_setup,
        durability: durability.name().to_string(),
    };
    let client =
        StorageClient::new(membership, config).context("cannot create a storage client")?;
    let most = args.concurrency.0.iter().copied().max().unwrap_or(1);
    let bench = Bench::prepare(Arc::new(client), target, args.keys, most, value, redis).await?;

    let printer = Printer { json: args.json };
    printer.setup(&setup);
    let timing = Timing {
        warmup: args.warmup,
        duration: args.duration,
    };
    let mut rows = Vec::new();
    for &concurrency in &args.concurrency.0 {
        let mut ping_ops_per_sec = 0.0;
        let mut redis_ops_per_sec = Vec::new();
        for workload in Workload::ALL {
            let Some(measurement) = bench
                .measure(workload, concurrency, timing)
                .await
                .with_context(|| {
                    format!("{} at concurrency {concurrency} failed", workload.name())
                })?
            else {
                continue;
            };
            match workload {
                Workload::Ping => ping_ops_per_sec = measurement.throughput(),
                Workload::Redis(command) => {
                    redis_ops_per_sec.push((command, measurement.throughput()));
                }
                Workload::Read | Workload::Write | Workload::Cas => {}
            }
            let row = Row::new(workload.name(), concurrency, &measurement, ping_ops_per_sec);
            let vs_redis = workload
                .redis_baseline()
                .and_then(|command| redis_ops_per_sec.iter().find(|(c, _)| *c == command))
                .and_then(|&(_, redis)| ratio(row.ops_per_sec, redis));
            printer.storage_row(&row, vs_redis);
            rows.push(row);
        }
    }
    printer.verdicts(&[report::verdict(&rows), report::redis_verdict(&rows)]);
    bench.finish().await?;
    Ok(rows)
}

/// Everything the workloads share: the client, the target node, the keys chosen so
/// that the target serves them itself, and the Redis baseline if there is one.
struct Bench {
    client: Arc<StorageClient>,
    target: String,
    read_keys: Arc<[String]>,
    write_keys: Arc<[String]>,
    cas_keys: Vec<String>,
    value: Arc<str>,
    redis: Option<Redis>,
}

impl Bench {
    /// Chooses the keys of every workload (`keys` each for reads and writes, one per
    /// task for CAS at the highest concurrency) and populates the read keys on the
    /// target. `redis` is the Redis baseline, already populated, if this run has one.
    async fn prepare(
        client: Arc<StorageClient>,
        target: String,
        keys: usize,
        most_in_flight: usize,
        value: Arc<str>,
        redis: Option<Redis>,
    ) -> anyhow::Result<Self> {
        let replicated = |key: &str| client.replicas(key).contains(&target.as_str());
        let primary = |key: &str| client.primary(key) == target;
        let read_keys: Arc<[String]> = workload::select_keys("bench/read/", keys, replicated)
            .with_context(|| format!("cannot find keys replicated by {target}"))?
            .into();
        let write_keys: Arc<[String]> = workload::select_keys("bench/write/", keys, primary)
            .with_context(|| format!("cannot find keys whose primary is {target}"))?
            .into();
        let cas_keys = workload::select_keys("bench/cas/", most_in_flight, primary)
            .with_context(|| format!("cannot find keys whose primary is {target}"))?;
        workload::populate(&client, &read_keys, &value)
            .await
            .context("cannot populate the keys of the read workload")?;
        workload::wait_until_present(&client, &target, &read_keys, POPULATE_LIMIT)
            .await
            .context("the keys of the read workload did not all reach the target")?;
        Ok(Self {
            client,
            target,
            read_keys,
            write_keys,
            cas_keys,
            value,
            redis,
        })
    }

    /// Measures one workload at one concurrency; `None` for a Redis workload when
    /// this run has no Redis.
    async fn measure(
        &self,
        workload: Workload,
        concurrency: usize,
        timing: Timing,
    ) -> anyhow::Result<Option<Measurement>> {
        let (client, target) = (&self.client, self.target.as_str());
        let measurement = match workload {
            Workload::Ping => {
                timing
                    .measure(workload::ping_ops(client, target, concurrency))
                    .await
            }
            Workload::Redis(command) => match &self.redis {
                Some(redis) => redis.measure(command, concurrency, timing).await,
                None => return Ok(None),
            },
            Workload::Read => {
                let ops = workload::read_ops(client, target, &self.read_keys, concurrency);
                timing.measure(ops).await
            }
            Workload::Write => {
                let ops = workload::write_ops(client, &self.write_keys, &self.value, concurrency);
                timing.measure(ops).await
            }
            Workload::Cas => {
                let keys = &self.cas_keys[..concurrency];
                workload::populate(client, keys, "0")
                    .await
                    .context("cannot reset the keys of the CAS workload to 0")?;
                timing
                    .measure(workload::cas_ops(client, target, keys))
                    .await
            }
        };
        measurement.map(Some)
    }

    /// Ends the run's use of Redis (see [`Redis::finish`]); the storage side needs
    /// no clean-up.
    async fn finish(self) -> anyhow::Result<()> {
        match self.redis {
            Some(redis) => redis
                .finish()
                .await
                .context("cannot finish the Redis baseline"),
            None => Ok(()),
        }
    }
}

/// How long each measurement warms up and then runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
}

impl Timing {
    /// Warms `ops` up (connections, caches, the CAS counters), then measures them.
    /// Warm-up failures are logged rather than reported in the table, since the
    /// warm-up's numbers are discarded; the measured run reports its own.
    pub(crate) async fn measure<O: Operation>(self, ops: Vec<O>) -> anyhow::Result<Measurement> {
        let ops = if self.warmup.is_zero() {
            ops
        } else {
            let (ops, warmup) = closed_loop::run(ops, self.warmup).await?;
            if warmup.errors > 0 {
                tracing::warn!(
                    errors = warmup.errors,
                    first = warmup.first_error.as_deref().unwrap_or_default(),
                    "requests failed during the warm-up"
                );
            }
            ops
        };
        let (_, measurement) = closed_loop::run(ops, self.duration).await?;
        Ok(measurement)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `dida bench storage`'s flags as a command of their own, to parse them.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: StorageBenchArgs,
    }

    fn row(workload: &str, ops_per_sec: f64, errors: u64) -> ModeRow {
        ModeRow {
            workload: workload.into(),
            concurrency: 1,
            ops_per_sec,
            p50_us: ops_per_sec as u64,
            p99_us: 1,
            errors,
        }
    }

    #[test]
    fn rounds_merge_into_each_rows_median_per_mode_in_first_run_order() {
        let runs = vec![
            ("off", vec![row("read", 10.0, 0), row("write", 1.0, 0)]),
            ("on", vec![row("read", 30.0, 1)]),
            ("off", vec![row("read", 50.0, 0), row("write", 3.0, 2)]),
            ("on", vec![row("read", 20.0, 0)]),
            ("off", vec![row("read", 20.0, 0), row("write", 2.0, 0)]),
        ];
        let merged = median_runs(&runs);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].0, "off");
        assert_eq!(
            merged[0].1,
            vec![row("read", 20.0, 0), row("write", 2.0, 2)]
        );
        assert_eq!(merged[1].0, "on");
        assert_eq!(
            merged[1].1[0].ops_per_sec, 25.0,
            "the mean of the middle two"
        );
        assert_eq!(merged[1].1[0].errors, 1);
        let single = vec![("off", vec![row("read", 7.0, 0)])];
        assert_eq!(median_runs(&single), single);
    }

    fn redis_choice(flags: &[&str]) -> Result<RedisChoice, clap::Error> {
        let argv = std::iter::once("storage").chain(flags.iter().copied());
        Ok(Cli::try_parse_from(argv)?.args.redis_choice())
    }

    #[test]
    fn redis_is_started_by_default_skipped_or_given_by_url() {
        assert_eq!(redis_choice(&[]).unwrap(), RedisChoice::Start);
        assert_eq!(redis_choice(&["--no-redis"]).unwrap(), RedisChoice::Skip);
        assert_eq!(
            redis_choice(&["--redis-url", "redis://127.0.0.1:6379"]).unwrap(),
            RedisChoice::Url("redis://127.0.0.1:6379".to_string())
        );
    }

    #[test]
    fn redis_flags_reject_contradictions_and_bad_urls() {
        let both = ["--no-redis", "--redis-url", "redis://127.0.0.1:6379"];
        assert_eq!(
            redis_choice(&both).unwrap_err().kind(),
            clap::error::ErrorKind::ArgumentConflict
        );
        assert_eq!(
            redis_choice(&["--redis-url", "http://example.invalid"])
                .unwrap_err()
                .kind(),
            clap::error::ErrorKind::ValueValidation
        );
    }

    #[test]
    fn write_acks_and_gossip_delay_default_to_the_courses_mode() {
        let parse = |flags: &[&str]| {
            let argv = std::iter::once("storage").chain(flags.iter().copied());
            Cli::try_parse_from(argv).unwrap().args
        };
        let default = parse(&[]);
        assert_eq!((default.write_acks, default.gossip_delay), (1, 0));
        let given = parse(&["--write-acks", "2", "--gossip-delay", "100"]);
        assert_eq!((given.write_acks, given.gossip_delay), (2, 100));
    }

    #[test]
    fn durability_defaults_to_memory_and_takes_a_list() {
        let parse = |flags: &[&str]| {
            let argv = std::iter::once("storage").chain(flags.iter().copied());
            Cli::try_parse_from(argv).map(|cli| cli.args.durability)
        };
        assert_eq!(parse(&[]).unwrap(), vec![Durability::Memory]);
        assert_eq!(
            parse(&["--durability", "memory,always,batch"]).unwrap(),
            vec![Durability::Memory, Durability::Always, Durability::Batch]
        );
        assert!(parse(&["--durability", "disk"]).is_err());
    }

    #[test]
    fn concurrency_lists_keep_their_order() {
        assert_eq!("1,16,64".parse(), Ok(Concurrencies(vec![1, 16, 64])));
        assert_eq!(" 64, 8 ".parse(), Ok(Concurrencies(vec![64, 8])));
    }

    #[test]
    fn concurrency_lists_reject_zero_repeats_and_garbage() {
        assert!("0,4"
            .parse::<Concurrencies>()
            .unwrap_err()
            .contains("at least 1"));
        assert!("4,4"
            .parse::<Concurrencies>()
            .unwrap_err()
            .contains("twice"));
        assert!("4,,8".parse::<Concurrencies>().is_err());
        assert!("four".parse::<Concurrencies>().is_err());
    }

    #[test]
    fn seconds_accept_fractions_and_reject_nonsense() {
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_positive_seconds("0").is_err());
        assert_eq!(parse_positive_seconds("3"), Ok(Duration::from_secs(3)));
    }
}
