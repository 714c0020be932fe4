//! The JSON lines `dida bench … --json` prints, as types: the benchmarks write them
//! and the readers (`dida bench report`, and `--transport`, which reads its
//! children's measurements) read the same types back.
//!
//! One schema on both sides means a renamed or retyped field is a compile error in
//! the writer or a load error naming the line in the reader, never a column of
//! zeros in the report.

use serde::{Deserialize, Serialize};

/// One line of `dida bench storage --json` or `dida bench chain --json`, told apart
/// by its `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum BenchLine {
    /// What was measured and where: the first line of a run.
    Setup(BenchSetup),
    /// One workload at one concurrency.
    Measurement(Measurement),
    /// The chain benchmark's cost of one hop, from its shortest and longest chains.
    PerHop(PerHop),
    /// A durability mode beside memory (`--durability`).
    Durability(ModeCost),
    /// A transport beside plaintext (`--transport`).
    Transport(ModeCost),
    /// Metrics on beside off (`--metrics-overhead`).
    Metrics(ModeCost),
    /// The HTTP gateway and the ping beside the gRPC path (`dida bench chain --http`).
    Gateway(ModeCost),
    /// A verdict on a target of the issues.
    Verdict(Verdict),
}

/// What a [`ModeCost`] line compares: its `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Comparison {
    /// Durability modes beside memory.
    Durability,
    /// Transports beside plaintext.
    Transport,
    /// Metrics on beside off.
    Metrics,
    /// The ways into a chain beside the gRPC path.
    Gateway,
}

impl Comparison {
    /// The name people read (and the line's `kind`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Durability => "durability",
            Self::Transport => "transport",
            Self::Metrics => "metrics",
            Self::Gateway => "gateway",
        }
    }

    /// `cost` as a line of this comparison.
    pub fn line(self, cost: ModeCost) -> BenchLine {
        match self {
            Self::Durability => BenchLine::Durability(cost),
            Self::Transport => BenchLine::Transport(cost),
            Self::Metrics => BenchLine::Metrics(cost),
            Self::Gateway => BenchLine::Gateway(cost),
        }
    }
}

/// The set-up line of a storage or chain run, told apart by its `benchmark`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "benchmark", rename_all = "snake_case")]
pub(crate) enum BenchSetup {
    /// `dida bench storage`.
    Storage(StorageSetup),
    /// `dida bench chain`.
    Chain(ChainSetup),
}

/// The set-up of `dida bench storage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StorageSetup {
    /// Where the nodes come from, e.g. "local, started by this run".
    pub cluster: String,
    /// Number of storage nodes.
    pub nodes: usize,
    /// Replication factor of the cluster.
    pub replication_factor: usize,
    /// `--write-acks` of the nodes, when this run started them.
    pub write_acks: Option<usize>,
    /// `--gossip-delay` of the nodes in milliseconds, when this run started them.
    pub gossip_delay_ms: Option<u64>,
    /// The node every request goes to.
    pub target: String,
    /// Bytes per value of the read and write workloads.
    pub value_size: usize,
    /// Keys per read or write workload.
    pub keys: usize,
    /// Seconds of each measurement.
    pub duration_s: f64,
    /// Seconds of warm-up before each measurement.
    pub warmup_s: f64,
    /// Cores available to the benchmark (the cluster's processes share them).
    pub cores: usize,
    /// The Redis baseline: what was measured, or why it was not.
    pub redis: String,
    /// Where the nodes keep their records: `memory`, or the `--fsync` of their
    /// data directories (`never`, `batch`, `always`).
    pub durability: String,
}

/// The set-up of `dida bench chain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ChainSetup {
    /// Where the nodes come from.
    pub cluster: String,
    /// The scheduler every execution is submitted to.
    pub scheduler: String,
    /// The worker the ping baseline calls.
    pub ping_target: String,
    /// The HTTP gateway, when the run measured it.
    pub gateway: Option<String>,
    /// The operator every hop runs.
    pub operator: String,
    /// The chain lengths measured.
    pub lengths: Vec<usize>,
    /// Seconds of each measurement.
    pub duration_s: f64,
    /// Seconds of warm-up before each measurement.
    pub warmup_s: f64,
    /// Cores available to the benchmark.
    pub cores: usize,
}

/// One workload at one concurrency: throughput, latency, and the ratios that can
/// be compared from one run to the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Measurement {
    /// Workload name.
    pub workload: String,
    /// Requests in flight.
    pub concurrency: usize,
    /// Successful requests per second.
    pub ops_per_sec: f64,
    /// Median latency of successful requests, in microseconds.
    pub p50_us: u64,
    /// 99th percentile latency of successful requests, in microseconds.
    pub p99_us: u64,
    /// Failed requests.
    pub errors: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Throughput over the no-op RPC's at the same concurrency; absent when the
    /// baseline completed nothing.
    pub vs_ping: Option<f64>,
    /// `[quantile, µs]` pairs from the minimum to the maximum (empty when nothing
    /// succeeded): enough points to draw a latency CDF.
    pub percentiles: Vec<(f64, u64)>,
    /// The storage table only: throughput over the Redis workload doing the same
    /// job, when there is one and Redis was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_redis: Option<f64>,
}

/// One mode (a durability mode, a transport, metrics on or off, a way into the
/// chain) of a workload at one concurrency, beside the same in the base mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ModeCost {
    /// `memory`, `never`, `batch` or `always`; `plaintext` or `tls`; `off` or
    /// `on`; `ping`, `grpc` or `http`.
    pub mode: String,
    /// The mode every other is compared with.
    pub base: String,
    /// Workload name.
    pub workload: String,
    /// Requests in flight.
    pub concurrency: usize,
    /// Successful requests per second.
    pub ops_per_sec: f64,
    /// Median latency, in microseconds.
    pub p50_us: u64,
    /// 99th percentile latency, in microseconds.
    pub p99_us: u64,
    /// Failed requests.
    pub errors: u64,
    /// Throughput over the base mode's; absent when the base completed nothing.
    pub vs_base: Option<f64>,
}

/// The chain benchmark's cost of one hop at one concurrency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PerHop {
    /// Requests in flight.
    pub concurrency: usize,
    /// The shortest and longest chain measured.
    pub shortest: usize,
    pub longest: usize,
    /// Their median latencies, in microseconds.
    pub shortest_p50_us: u64,
    pub longest_p50_us: u64,
    /// What one more hop adds to the median, in microseconds.
    pub per_hop_us: f64,
    /// The ping's median at the same concurrency, in microseconds.
    pub ping_p50_us: u64,
    /// One hop's cost in ping round trips; absent when the ping took no time.
    pub round_trips: Option<f64>,
    /// The target the issue set, in round trips.
    pub target_round_trips: f64,
}

/// A verdict line: the text people read, and for the idle benchmark the ratio it
/// judged and whether the target was met.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Verdict {
    /// The verdict as a sentence.
    pub text: String,
    /// The ratio the verdict judged, when it is one number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// Whether the target was met, when the verdict judges one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
}

impl Verdict {
    /// A verdict that is only a sentence.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ratio: None,
            met: None,
        }
    }
}

/// One line of `dida bench idle --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum IdleLine {
    /// What was measured: the first line of a run.
    Setup(IdleSetup),
    /// The CPU of an idle cluster, empty or loaded.
    Measurement(IdleMeasurement),
    /// The verdict on the idle target.
    Verdict(Verdict),
    /// How long the survivors took to declare a SIGKILLed node failed.
    Detection(IdleDetection),
}

/// One line of `dida bench invoke --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum InvokeLine {
    /// The worker ping: the baseline.
    Ping(InvokePing),
    /// One build of the operator.
    Row(InvokeRow),
}

/// The worker ping of `dida bench invoke`, back to back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct InvokePing {
    /// Median, in microseconds.
    pub p50_us: u64,
    /// 99th percentile, in microseconds.
    pub p99_us: u64,
}

/// What one build of the operator costs (`dida bench invoke`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct InvokeRow {
    /// The language (or whatever `--operator` called it).
    pub label: String,
    /// Size of the component.
    pub component_bytes: u64,
    /// Size of the compiled artifact in the compile cache.
    pub artifact_bytes: u64,
    /// Compiling it, cold.
    pub compile_ms: f64,
    /// Loading it from the compile cache.
    pub load_ms: f64,
    /// The first invocation after loading.
    pub first_us: u64,
    /// Warm invocations: median.
    pub warm_p50_us: u64,
    /// Warm invocations: 99th percentile.
    pub warm_p99_us: u64,
    /// Instantiating, in warm invocations: median.
    pub instantiate_p50_us: u64,
    /// The linear memory one instance grew to.
    pub memory_bytes: u64,
}

/// The crash detection measured at the end of `dida bench idle`: one node
/// SIGKILLed, every survivor polled until it lists the node failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct IdleDetection {
    /// The node killed.
    pub killed: String,
    /// Seconds from the SIGKILL until each survivor listed it failed, ascending.
    pub survivors_s: Vec<f64>,
    /// How often each survivor was polled, in milliseconds: the resolution.
    pub poll_ms: u64,
}

/// The set-up of `dida bench idle`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct IdleSetup {
    /// Where the nodes come from.
    pub cluster: String,
    /// Number of storage nodes.
    pub nodes: usize,
    /// Replication factor of the cluster.
    pub replication_factor: usize,
    /// Keys written before the loaded measurement.
    pub keys: usize,
    /// Bytes per value.
    pub value_size: usize,
    /// Seconds of each measurement.
    pub duration_s: f64,
    /// The nodes' `--anti-entropy-interval`.
    pub anti_entropy_interval_ms: u64,
    /// Cores available to the benchmark.
    pub cores: usize,
}

/// One measurement of `dida bench idle`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct IdleMeasurement {
    /// `idle-empty` or `idle-loaded`.
    pub workload: String,
    /// Keys the cluster held.
    pub keys: usize,
    /// User + system CPU of every node process over the measurement.
    pub core_seconds: f64,
    /// Seconds the measurement lasted.
    pub duration_s: f64,
}

/// Prints `line` as one line of JSON. The types above hold only strings, numbers
/// and lists, which always serialize.
pub(crate) fn print_json(line: &impl Serialize) {
    match serde_json::to_string(line) {
        Ok(text) => println!("{text}"),
        Err(error) => tracing::error!(%error, "a benchmark line did not serialize"),
    }
}

/// Parses the JSON lines of a run: every non-blank line must be a `T`, and an
/// error names the line that is not.
pub(crate) fn parse_lines<T: for<'de> Deserialize<'de>>(text: &str) -> anyhow::Result<Vec<T>> {
    use anyhow::Context;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("line {} is not a benchmark line: {line}", index + 1))
        })
        .collect()
}

/// Lines for the tests of the writers and readers.
#[cfg(test)]
pub(crate) mod samples {
    use super::*;

    /// The set-up of a storage run on a cluster it started.
    pub fn storage_setup(replication_factor: usize, write_acks: usize, gossip: u64) -> BenchSetup {
        BenchSetup::Storage(StorageSetup {
            cluster: "local processes started by this run".into(),
            nodes: 5,
            replication_factor,
            write_acks: Some(write_acks),
            gossip_delay_ms: Some(gossip),
            target: "s1".into(),
            value_size: 16,
            keys: 1000,
            duration_s: 3.0,
            warmup_s: 0.5,
            cores: 2,
            redis: "Redis 7.0.15".into(),
            durability: "memory".into(),
        })
    }

    /// A measurement with latencies of 100 and 200 µs and no percentiles.
    pub fn measurement(workload: &str, concurrency: usize, ops_per_sec: f64) -> Measurement {
        Measurement {
            workload: workload.to_string(),
            concurrency,
            ops_per_sec,
            p50_us: 100,
            p99_us: 200,
            errors: 0,
            first_error: None,
            vs_ping: None,
            percentiles: Vec::new(),
            vs_redis: None,
        }
    }

    /// `lines` as the JSON lines a benchmark prints.
    pub fn jsonl<T: Serialize>(lines: &[T]) -> String {
        lines
            .iter()
            .map(|line| serde_json::to_string(line).unwrap() + "\n")
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setup_carries_its_kind_and_its_benchmark() {
        let line = BenchLine::Setup(BenchSetup::Chain(ChainSetup {
            cluster: "local".into(),
            scheduler: "http://127.0.0.1:1".into(),
            ping_target: "http://127.0.0.1:2".into(),
            gateway: None,
            operator: "sleep".into(),
            lengths: vec![1, 5],
            duration_s: 3.0,
            warmup_s: 0.5,
            cores: 2,
        }));
        let text = serde_json::to_string(&line).unwrap();
        assert!(
            text.starts_with(r#"{"event":"setup","benchmark":"chain","#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<BenchLine>(&text).unwrap(), line);
    }

    #[test]
    fn a_renamed_field_is_an_error_naming_the_line() {
        let text = concat!(
            r#"{"event":"verdict","text":"fine"}"#,
            "\n\n",
            r#"{"event":"measurement","workload":"read","concurrency":1,"ops":5}"#
        );
        let error = parse_lines::<BenchLine>(text).unwrap_err();
        assert!(format!("{error:#}").contains("line 3"), "{error:#}");
    }

    #[test]
    fn an_unknown_kind_is_refused() {
        assert!(parse_lines::<IdleLine>(r#"{"event":"per_hop"}"#).is_err());
    }
}

/// One line of `dida bench resp --json`: one command of `redis-benchmark` against
/// one target at one pipeline depth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RespRow {
    /// `redis` (a `redis-server` the run started) or `dida` (a storage node's RESP
    /// port).
    pub target: String,
    /// `redis-benchmark -P`: commands in flight on each connection.
    pub pipeline: u32,
    /// `redis-benchmark -c`: connections.
    pub clients: u32,
    /// `GET` or `SET`.
    pub command: String,
    /// Requests per second.
    pub rps: f64,
    /// Median latency, in milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, in milliseconds.
    pub p99_ms: Option<f64>,
}
