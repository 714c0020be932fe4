//! `dida bench storage`: reads, writes and CAS against a no-op RPC baseline.
//!
//! The benchmark measures a running cluster (`--peers`) or, by default, starts one of
//! real `dida storage` processes on loopback and stops it at the end. At each
//! concurrency it measures the no-op RPC first and then every storage workload, all
//! against the same target node, so each row's "vs ping" compares runs made moments
//! apart under the same conditions.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context};
use clap::Args;
use dida_core::limits::check_value;
use dida_core::Membership;
use dida_local_cluster::{current_dida, ClusterSpec, LocalCluster};
use dida_storage_client::{ClientConfig, StorageClient};

use crate::closed_loop::{self, Measurement, Operation};
use crate::report::{Printer, Row, Setup};
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
    let value = "v".repeat(args.value_size);
    check_value(&value).context("--value-size is too large")?;

    let (cluster, membership) = match &args.peers {
        Some(peers) => (None, Membership::parse(peers).context("invalid --peers")?),
        None => {
            let cluster = start_cluster(&args).await?;
            let membership = cluster.membership().clone();
            (Some(cluster), membership)
        }
    };
    let outcome = measure_all(&args, membership, value).await;
    let stopped = match cluster {
        Some(cluster) => stop_cluster(cluster).await,
        None => Ok(()),
    };
    outcome?;
    stopped
}

/// Starts the local cluster the benchmark measures when no --peers are given.
async fn start_cluster(args: &StorageBenchArgs) -> anyhow::Result<LocalCluster> {
    let spec = ClusterSpec {
        nodes: args.nodes,
        replication_factor: args.replication_factor,
        ..ClusterSpec::default()
    };
    LocalCluster::start(&current_dida()?, spec)
        .await
        .with_context(|| {
            format!(
                "cannot start a local cluster of {} storage nodes",
                args.nodes
            )
        })
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
/// prints the report.
async fn measure_all(
    args: &StorageBenchArgs,
    membership: Membership,
    value: String,
) -> anyhow::Result<()> {
    let target = args.target.clone();
    membership
        .index_of(&target)
        .with_context(|| format!("--target {target} is not a storage node of the cluster"))?;
    let setup = Setup {
        cluster: if args.peers.is_some() {
            "given by --peers".to_string()
        } else {
            "local processes started by this run".to_string()
        },
        nodes: membership.len(),
        replication_factor: args.replication_factor,
        target: target.clone(),
        value_size: args.value_size,
        keys: args.keys,
        duration: args.duration,
        warmup: args.warmup,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let client = StorageClient::new(
        membership,
        ClientConfig {
            replication_factor: args.replication_factor,
            ..ClientConfig::default()
        },
    )
    .context("cannot create a storage client")?;
    let most = args.concurrency.0.iter().copied().max().unwrap_or(1);
    let bench = Bench::prepare(Arc::new(client), target, args.keys, most, value.into()).await?;

    let printer = Printer { json: args.json };
    printer.setup(&setup);
    let timing = Timing {
        warmup: args.warmup,
        duration: args.duration,
    };
    let mut rows = Vec::new();
    for &concurrency in &args.concurrency.0 {
        let mut ping_ops_per_sec = 0.0;
        for workload in Workload::ALL {
            let measurement = bench
                .measure(workload, concurrency, timing)
                .await
                .with_context(|| {
                    format!("{} at concurrency {concurrency} failed", workload.name())
                })?;
            if workload == Workload::Ping {
                ping_ops_per_sec = measurement.throughput();
            }
            let row = Row::new(workload.name(), concurrency, &measurement, ping_ops_per_sec);
            printer.row(&row);
            rows.push(row);
        }
    }
    printer.verdict(&rows);
    Ok(())
}

/// Everything the workloads share: the client, the target node and the keys chosen
/// so that the target serves them itself.
struct Bench {
    client: Arc<StorageClient>,
    target: String,
    read_keys: Arc<[String]>,
    write_keys: Arc<[String]>,
    cas_keys: Vec<String>,
    value: Arc<str>,
}

impl Bench {
    /// Chooses the keys of every workload (`keys` each for reads and writes, one per
    /// task for CAS at the highest concurrency) and populates the read keys on the
    /// target.
    async fn prepare(
        client: Arc<StorageClient>,
        target: String,
        keys: usize,
        most_in_flight: usize,
        value: Arc<str>,
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
        })
    }

    /// Measures one workload at one concurrency.
    async fn measure(
        &self,
        workload: Workload,
        concurrency: usize,
        timing: Timing,
    ) -> anyhow::Result<Measurement> {
        let (client, target) = (&self.client, self.target.as_str());
        match workload {
            Workload::Ping => {
                timing
                    .measure(workload::ping_ops(client, target, concurrency))
                    .await
            }
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
