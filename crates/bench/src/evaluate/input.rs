//! Reading what one run of `scripts/evaluate.sh` left in its directory.
//!
//! Each benchmark wrote its `--json` output there; this module turns those files back
//! into typed rows. A file that is missing is a part of the run that did not happen
//! (the report says so); a file that is there but cannot be read is an error naming
//! the file and line, since a report built from half a file would mislead.
//!
//! The files, all optional:
//! - `machine.txt`: `key: value` lines about the machine and the commit;
//! - `storage.jsonl`: `dida bench storage --json`, the concurrency sweep;
//! - `settings-*.jsonl`: `dida bench storage --json` with other `--write-acks`,
//!   `--gossip-delay` or `--replication-factor`;
//! - `durability.jsonl`: `dida bench storage --durability … --json`, of which the
//!   `durability` lines (each mode's throughput over memory's) are read;
//! - `chain.jsonl`: `dida bench chain --json`;
//! - `idle.jsonl`: `dida bench idle --json`;
//! - `invoke.jsonl`: `dida bench invoke --json`;
//! - `idle-nodes-*.jsonl`: `dida bench idle --json` with other `--nodes`, for the
//!   cost per node and the detection time as the cluster grows;
//! - `elastic.jsonl`: `dida bench elastic --json`, workers joining and leaving under
//!   HTTP load;
//! - `rebalance.jsonl`: `dida bench rebalance --json`, a storage node joining a
//!   loaded cluster;
//! - `faults-*.json`: `dida faults --json` (one report object), with the run's stderr
//!   in `faults-*.log`;
//! - `faults-timeline.jsonl`: `dida faults --timeline`, operations per 100 ms and the
//!   moments of kill, detection and re-replication;
//! - `redis-benchmark.csv`: `redis-benchmark --csv`;
//! - `resp.jsonl`: `dida bench resp --json`, `redis-benchmark` against dida's RESP
//!   port and `redis-server`;
//! - `load.tsv`: the machine's load, sampled during the run;
//! - `skipped.txt`: `what: why` for every part the script left out.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use dida_verify::timeline::{Bucket, Mark, Setup, TimelineLine};
use dida_verify::Report;

use crate::elastic::{ElasticLine, ElasticSetup, LeaveLine, PhaseLine, TotalsLine};
use crate::lines::{
    self, BenchLine, BenchSetup, Comparison, IdleDetection, IdleLine, IdleMeasurement, IdleSetup,
    InvokeLine, InvokePing, InvokeRow, Measurement, ModeCost, PerHop, RespRow, StorageSetup,
};
use crate::rebalance::{MoveLine, RebalanceLine, RebalancePhase, RebalanceSetup};

/// Everything one run left in its directory.
#[derive(Debug, Default)]
pub(crate) struct Evaluation {
    /// `machine.txt`, in file order.
    pub machine: Vec<(String, String)>,
    /// The concurrency sweep of `dida bench storage`.
    pub storage: Option<BenchRun>,
    /// `dida bench storage` runs with other settings, by file name.
    pub settings: Vec<BenchRun>,
    /// What durability costs: `dida bench storage --durability`'s comparison lines.
    pub durability: Vec<ModeCost>,
    /// What mutual TLS costs: `dida bench storage --transport`'s comparison lines.
    pub transport: Vec<ModeCost>,
    /// The HTTP gateway beside the gRPC path and the ping: `dida bench chain
    /// --http`'s comparison lines.
    pub gateway: Vec<ModeCost>,
    /// What metrics cost: `dida bench storage --metrics-overhead` and `dida bench
    /// chain --metrics-overhead`'s comparison lines (`off`, `on`).
    pub metrics: Vec<ModeCost>,
    /// `dida bench chain`.
    pub chain: Option<BenchRun>,
    /// `dida bench idle`.
    pub idle: Option<IdleRun>,
    /// `dida bench invoke`.
    pub invoke: Option<InvokeRun>,
    /// `dida bench resp`: `redis-benchmark` rows, dida and Redis.
    pub resp: Option<Vec<RespRow>>,
    /// `dida bench idle` at other cluster sizes, by file name.
    pub idle_sizes: Vec<IdleRun>,
    /// `dida bench elastic`.
    pub elastic: Option<ElasticRun>,
    /// `dida bench rebalance`.
    pub rebalance: Option<RebalanceRun>,
    /// `dida faults` runs, by file name.
    pub faults: Vec<FaultsRun>,
    /// The timeline of one `dida faults` run.
    pub timeline: Option<Timeline>,
    /// `redis-benchmark --csv`, one row per command.
    pub redis_benchmark: Vec<RedisBenchmarkRow>,
    /// The machine's load during the run.
    pub load: Vec<LoadSample>,
    /// Parts of the run the script left out, and why.
    pub skipped: Vec<(String, String)>,
}

impl Evaluation {
    /// Reads every file of `dir` this module knows; the directory must exist.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        if !dir.is_dir() {
            bail!(
                "{} is not a directory: run scripts/evaluate.sh first",
                dir.display()
            );
        }
        let mut evaluation = Self {
            machine: optional(&dir.join("machine.txt"), |text| Ok(key_values(text)))?
                .unwrap_or_default(),
            storage: optional(&dir.join("storage.jsonl"), BenchRun::parse)?,
            durability: optional(&dir.join("durability.jsonl"), |text| {
                parse_comparison(text, Comparison::Durability)
            })?
            .unwrap_or_default(),
            transport: optional(&dir.join("transport.jsonl"), |text| {
                parse_comparison(text, Comparison::Transport)
            })?
            .unwrap_or_default(),
            chain: optional(&dir.join("chain.jsonl"), BenchRun::parse)?,
            gateway: optional(&dir.join("chain.jsonl"), |text| {
                parse_comparison(text, Comparison::Gateway)
            })?
            .unwrap_or_default(),
            metrics: [
                optional(&dir.join("metrics-storage.jsonl"), |text| {
                    parse_comparison(text, Comparison::Metrics)
                })?,
                optional(&dir.join("metrics-chain.jsonl"), |text| {
                    parse_comparison(text, Comparison::Metrics)
                })?,
            ]
            .into_iter()
            .flatten()
            .flatten()
            .collect(),
            idle: optional(&dir.join("idle.jsonl"), IdleRun::parse)?,
            invoke: optional(&dir.join("invoke.jsonl"), InvokeRun::parse)?,
            resp: optional(&dir.join("resp.jsonl"), |text| {
                let rows = lines::parse_lines::<RespRow>(text)?;
                if rows.is_empty() {
                    bail!("no measurement in it (did the benchmark fail? see resp.log)");
                }
                Ok(rows)
            })?,
            elastic: optional(&dir.join("elastic.jsonl"), ElasticRun::parse)?,
            rebalance: optional(&dir.join("rebalance.jsonl"), RebalanceRun::parse)?,
            timeline: optional(&dir.join("faults-timeline.jsonl"), Timeline::parse)?,
            redis_benchmark: optional(&dir.join("redis-benchmark.csv"), parse_redis_benchmark)?
                .unwrap_or_default(),
            load: optional(&dir.join("load.tsv"), parse_load)?.unwrap_or_default(),
            skipped: optional(&dir.join("skipped.txt"), |text| Ok(key_values(text)))?
                .unwrap_or_default(),
            ..Self::default()
        };
        for path in files(dir, "settings-", ".jsonl")? {
            let mut run = read_with(&path, BenchRun::parse)?;
            run.name = stem(&path, "settings-", ".jsonl");
            evaluation.settings.push(run);
        }
        for path in files(dir, "idle-nodes-", ".jsonl")? {
            evaluation
                .idle_sizes
                .push(read_with(&path, IdleRun::parse)?);
        }
        for path in files(dir, "faults-", ".json")? {
            let label = stem(&path, "faults-", ".json");
            let log = fs::read_to_string(path.with_extension("log")).unwrap_or_default();
            let text = fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            evaluation.faults.push(FaultsRun::parse(label, &text, &log));
        }
        Ok(evaluation)
    }

    /// The value of `key` in `machine.txt`, if given and not empty.
    pub fn machine(&self, key: &str) -> Option<&str> {
        self.machine
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// The files of `dir` named `<prefix>…<suffix>`, sorted by name.
fn files(dir: &Path, prefix: &str, suffix: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(prefix) && name.ends_with(suffix) && path.is_file() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// The part of a file name between `prefix` and `suffix`.
fn stem(path: &Path, prefix: &str, suffix: &str) -> String {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(suffix))
        .unwrap_or(name)
        .to_string()
}

/// Parses `path` with `parse`, or `None` when the file does not exist.
fn optional<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> anyhow::Result<T>,
) -> anyhow::Result<Option<T>> {
    if !path.exists() {
        return Ok(None);
    }
    read_with(path, parse).map(Some)
}

/// Reads `path` and parses it with `parse`, naming the file in any error.
fn read_with<T>(path: &Path, parse: impl FnOnce(&str) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text).with_context(|| format!("cannot parse {}", path.display()))
}

/// `key: value` lines (blank lines and lines without a colon are ignored).
fn key_values(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .filter(|(key, _)| !key.is_empty())
        .collect()
}

/// One `dida bench storage` or `dida bench chain` run (`--json`).
#[derive(Debug, Clone, Default)]
pub(crate) struct BenchRun {
    /// The file name between its prefix and `.jsonl` (settings runs only).
    pub name: String,
    /// The `setup` line.
    pub setup: Option<BenchSetup>,
    /// One per measurement, in the order measured.
    pub rows: Vec<Measurement>,
    /// The `per_hop` lines of a chain run.
    pub per_hop: Vec<PerHop>,
    /// The verdict lines.
    pub verdicts: Vec<String>,
}

impl BenchRun {
    /// Parses the JSON lines of one run: every line must be a [`BenchLine`].
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut run = Self::default();
        for line in lines::parse_lines::<BenchLine>(text)? {
            match line {
                BenchLine::Setup(setup) => run.setup = Some(setup),
                BenchLine::Measurement(row) => run.rows.push(row),
                BenchLine::PerHop(hop) => run.per_hop.push(hop),
                BenchLine::Verdict(verdict) => run.verdicts.push(verdict.text),
                BenchLine::Durability(_)
                | BenchLine::Transport(_)
                | BenchLine::Metrics(_)
                | BenchLine::Gateway(_) => {}
            }
        }
        if run.rows.is_empty() {
            bail!("no measurement in it (did the benchmark fail? see its .log)");
        }
        Ok(run)
    }

    /// The row of `workload` at `concurrency`, if measured.
    pub fn row(&self, workload: &str, concurrency: usize) -> Option<&Measurement> {
        self.rows
            .iter()
            .find(|row| row.workload == workload && row.concurrency == concurrency)
    }

    /// The concurrencies measured, in the order measured.
    pub fn concurrencies(&self) -> Vec<usize> {
        let mut levels = Vec::new();
        for row in &self.rows {
            if !levels.contains(&row.concurrency) {
                levels.push(row.concurrency);
            }
        }
        levels
    }

    /// The workloads measured, in the order first measured.
    pub fn workloads(&self) -> Vec<&str> {
        let mut names = Vec::new();
        for row in &self.rows {
            if !names.contains(&row.workload.as_str()) {
                names.push(row.workload.as_str());
            }
        }
        names
    }

    /// The set-up of a storage run.
    pub fn storage_setup(&self) -> Option<&StorageSetup> {
        match &self.setup {
            Some(BenchSetup::Storage(setup)) => Some(setup),
            _ => None,
        }
    }

    /// Where the run's nodes came from.
    pub fn cluster(&self) -> Option<&str> {
        match &self.setup {
            Some(BenchSetup::Storage(setup)) => Some(&setup.cluster),
            Some(BenchSetup::Chain(setup)) => Some(&setup.cluster),
            None => None,
        }
    }
}

/// One `dida bench invoke` run.
#[derive(Debug, Clone, Default)]
pub(crate) struct InvokeRun {
    pub ping: Option<InvokePing>,
    pub rows: Vec<InvokeRow>,
}

impl InvokeRun {
    fn parse(text: &str) -> anyhow::Result<Self> {
        let mut run = Self::default();
        for line in lines::parse_lines::<InvokeLine>(text)? {
            match line {
                InvokeLine::Ping(ping) => run.ping = Some(ping),
                InvokeLine::Row(row) => run.rows.push(row),
            }
        }
        if run.rows.is_empty() || run.ping.is_none() {
            bail!("no measurement in it (did the benchmark fail? see invoke.log)");
        }
        Ok(run)
    }
}

/// One `dida bench idle` run.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdleRun {
    pub setup: Option<IdleSetup>,
    pub rows: Vec<IdleMeasurement>,
    pub verdicts: Vec<String>,
    /// The crash detection measured at the end of the run.
    pub detection: Option<IdleDetection>,
}

/// The lines of `kind` (`durability`, `transport`, `metrics` or `gateway`) of a
/// run of `dida bench storage` or `dida bench chain`; every line must be a
/// [`BenchLine`].
fn parse_comparison(text: &str, kind: Comparison) -> anyhow::Result<Vec<ModeCost>> {
    Ok(lines::parse_lines::<BenchLine>(text)?
        .into_iter()
        .filter_map(|line| match (kind, line) {
            (Comparison::Durability, BenchLine::Durability(cost))
            | (Comparison::Transport, BenchLine::Transport(cost))
            | (Comparison::Metrics, BenchLine::Metrics(cost))
            | (Comparison::Gateway, BenchLine::Gateway(cost)) => Some(cost),
            _ => None,
        })
        .collect())
}

impl IdleRun {
    fn parse(text: &str) -> anyhow::Result<Self> {
        let mut run = Self::default();
        for line in lines::parse_lines::<IdleLine>(text)? {
            match line {
                IdleLine::Setup(setup) => run.setup = Some(setup),
                IdleLine::Measurement(row) => run.rows.push(row),
                IdleLine::Verdict(verdict) => run.verdicts.push(verdict.text),
                IdleLine::Detection(detection) => run.detection = Some(detection),
            }
        }
        if run.rows.is_empty() {
            bail!("no measurement in it (did the benchmark fail? see idle.log)");
        }
        Ok(run)
    }
}

/// One `dida bench elastic` run: its phases, the worker that left, the totals.
#[derive(Debug, Clone, Default)]
pub(crate) struct ElasticRun {
    pub setup: Option<ElasticSetup>,
    pub phases: Vec<PhaseLine>,
    pub leave: Option<LeaveLine>,
    pub totals: Option<TotalsLine>,
    pub verdicts: Vec<String>,
}

impl ElasticRun {
    fn parse(text: &str) -> anyhow::Result<Self> {
        let mut run = Self::default();
        for line in lines::parse_lines::<ElasticLine>(text)? {
            match line {
                ElasticLine::Setup(setup) => run.setup = Some(setup),
                ElasticLine::Phase(phase) => run.phases.push(phase),
                ElasticLine::Leave(leave) => run.leave = Some(leave),
                ElasticLine::Totals(totals) => run.totals = Some(totals),
                ElasticLine::Verdict(verdict) => run.verdicts.push(verdict.text),
            }
        }
        if run.phases.is_empty() {
            bail!("no phase in it (did the benchmark fail? see elastic.log)");
        }
        Ok(run)
    }
}

/// One `dida bench rebalance` run: its phases, the move, the verdicts.
#[derive(Debug, Clone, Default)]
pub(crate) struct RebalanceRun {
    pub setup: Option<RebalanceSetup>,
    pub phases: Vec<RebalancePhase>,
    pub moved: Option<MoveLine>,
    pub verdicts: Vec<String>,
}

impl RebalanceRun {
    fn parse(text: &str) -> anyhow::Result<Self> {
        let mut run = Self::default();
        for line in lines::parse_lines::<RebalanceLine>(text)? {
            match line {
                RebalanceLine::Setup(setup) => run.setup = Some(setup),
                RebalanceLine::Phase(phase) => run.phases.push(phase),
                RebalanceLine::Move(moved) => run.moved = Some(moved),
                RebalanceLine::Verdict(verdict) => run.verdicts.push(verdict.text),
            }
        }
        if run.moved.is_none() {
            bail!("no move in it (did the benchmark fail? see rebalance.log)");
        }
        Ok(run)
    }
}

/// One `dida faults --json` run.
#[derive(Debug, Clone)]
pub(crate) struct FaultsRun {
    /// The file name between `faults-` and `.json`.
    pub label: String,
    /// The report — the very type `dida faults` writes — or why there is none.
    pub report: Result<Report, String>,
}

impl FaultsRun {
    /// Reads a report from the run's stdout; without one, the reason is the last line
    /// of its stderr (`log`). A report whose fields do not match [`Report`] is an
    /// error naming the field, never a row of zeros.
    fn parse(label: String, text: &str, log: &str) -> Self {
        let report = match text.trim() {
            "" => {
                let last = log
                    .lines()
                    .rev()
                    .find(|line| !line.trim().is_empty())
                    .unwrap_or("no output");
                Err(format!("no report; the run ended with: {}", last.trim()))
            }
            text => serde_json::from_str::<Report>(text)
                .map_err(|error| format!("the report is not a `dida faults` report: {error}")),
        };
        Self { label, report }
    }
}

/// The timeline of a `dida faults --timeline` run, in the types `dida faults`
/// writes it with.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Timeline {
    /// The `setup` line: the run's settings.
    pub setup: Setup,
    /// Operations per bucket (100 ms), in time order.
    pub buckets: Vec<Bucket>,
    /// Faults, detections and ends of re-replication, in time order.
    pub marks: Vec<Mark>,
}

impl Timeline {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut timeline = Self::default();
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let line: TimelineLine = serde_json::from_str(line).with_context(|| {
                format!(
                    "line {} is not a line of a `dida faults` timeline",
                    number + 1
                )
            })?;
            match line {
                TimelineLine::Setup(setup) => timeline.setup = setup,
                TimelineLine::Bucket(bucket) => timeline.buckets.push(bucket),
                TimelineLine::Mark(mark) => timeline.marks.push(mark),
            }
        }
        if timeline.buckets.is_empty() {
            bail!("no bucket in it");
        }
        timeline.buckets.sort_by_key(|bucket| bucket.t_ms);
        timeline.marks.sort_by_key(|mark| mark.t_ms);
        Ok(timeline)
    }

    /// Width of a bucket in milliseconds: the smallest gap between two buckets (100
    /// when there is only one).
    pub fn bucket_ms(&self) -> u64 {
        self.buckets
            .windows(2)
            .map(|pair| pair[1].t_ms.saturating_sub(pair[0].t_ms))
            .filter(|&gap| gap > 0)
            .min()
            .unwrap_or(100)
    }
}

/// One command of `redis-benchmark --csv`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RedisBenchmarkRow {
    /// `GET`, `SET`, …
    pub test: String,
    /// Requests per second.
    pub rps: f64,
    /// Median latency, in milliseconds, when reported (Redis ≥ 7).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, in milliseconds, when reported.
    pub p99_ms: Option<f64>,
}

/// Parses `redis-benchmark --csv`: a header line naming the columns (`"test","rps",…`)
/// and one line per command, every field quoted. Older versions print no header and
/// only test and rps.
pub(crate) fn parse_redis_benchmark(text: &str) -> anyhow::Result<Vec<RedisBenchmarkRow>> {
    let unquote = |field: &str| field.trim().trim_matches('"').to_string();
    let mut header: Vec<String> = vec!["test".into(), "rps".into()];
    let mut rows = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let fields: Vec<String> = line.split(',').map(unquote).collect();
        if line.trim().is_empty() {
            continue;
        }
        if fields.first().is_some_and(|f| f == "test") {
            header = fields;
            continue;
        }
        let field = |name: &str| {
            header
                .iter()
                .position(|column| column == name)
                .and_then(|i| fields.get(i))
        };
        let number = |name: &str| field(name).and_then(|f| f.parse::<f64>().ok());
        let (Some(test), Some(rps)) = (field("test"), number("rps")) else {
            bail!("line {} is not a redis-benchmark result: {line}", index + 1);
        };
        rows.push(RedisBenchmarkRow {
            test: test.clone(),
            rps,
            p50_ms: number("p50_latency_ms"),
            p99_ms: number("p99_latency_ms"),
        });
    }
    Ok(rows)
}

/// One sample of the machine's load.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LoadSample {
    /// Seconds since the start of the run.
    pub t_s: f64,
    /// 1-minute load average.
    pub load1: f64,
    /// `rustc` processes running (other people's builds).
    pub rustc: u64,
}

/// Parses `load.tsv`: `seconds<TAB>load1<TAB>rustc processes` per line.
fn parse_load(text: &str) -> anyhow::Result<Vec<LoadSample>> {
    let mut samples = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        let sample = match fields.as_slice() {
            [t, load1, rustc] => (|| {
                Some(LoadSample {
                    t_s: t.parse().ok()?,
                    load1: load1.parse().ok()?,
                    rustc: rustc.parse().ok()?,
                })
            })(),
            _ => None,
        };
        match sample {
            Some(sample) => samples.push(sample),
            None => bail!("line {} is not `seconds load1 rustc`: {line}", index + 1),
        }
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::lines::samples::{jsonl, measurement, storage_setup};
    use crate::lines::Verdict;

    #[test]
    fn a_bench_run_keeps_its_setup_rows_and_verdicts() {
        let ping = Measurement {
            percentiles: vec![(0.0, 40), (0.5, 90), (1.0, 900)],
            ..measurement("ping", 1, 10_000.0)
        };
        let text = jsonl(&[
            BenchLine::Setup(storage_setup(3, 1, 0)),
            BenchLine::Measurement(ping.clone()),
            BenchLine::Measurement(measurement("read", 1, 9000.0)),
            BenchLine::Verdict(Verdict::text("reads at 64 in flight: not measured")),
        ]);
        let run = BenchRun::parse(&text).unwrap();
        assert_eq!(run.storage_setup().unwrap().write_acks, Some(1));
        assert_eq!(run.storage_setup().unwrap().target, "s1");
        assert_eq!(run.rows.len(), 2);
        assert_eq!(run.row("ping", 1), Some(&ping));
        assert_eq!(run.verdicts, vec!["reads at 64 in flight: not measured"]);
        assert_eq!(run.concurrencies(), vec![1]);
        assert_eq!(run.workloads(), vec!["ping", "read"]);
    }

    #[test]
    fn a_bench_run_names_the_line_it_cannot_read() {
        let error =
            BenchRun::parse("{\"event\":\"verdict\",\"text\":\"-\"}\nnot json\n").unwrap_err();
        assert!(format!("{error:#}").contains("line 2"), "{error:#}");
        let error =
            BenchRun::parse("{\"event\":\"measurement\",\"workload\":\"read\"}\n").unwrap_err();
        assert!(format!("{error:#}").contains("line 1"), "{error:#}");
        assert!(BenchRun::parse("{\"event\":\"setup\"}\n").is_err());
    }

    #[test]
    fn a_chain_run_keeps_its_per_hop_lines() {
        let text = r#"{"event":"setup","benchmark":"chain","cluster":"local","scheduler":"http://127.0.0.1:1","ping_target":"http://127.0.0.1:2","gateway":null,"operator":"echo","lengths":[1,10],"duration_s":3.0,"warmup_s":0.5,"cores":2}
{"event":"measurement","workload":"chain-1","concurrency":1,"ops_per_sec":2000.0,"p50_us":450,"p99_us":1100,"errors":0,"first_error":null,"vs_ping":0.2,"percentiles":[]}
{"event":"per_hop","concurrency":1,"shortest":1,"longest":10,"shortest_p50_us":450,"longest_p50_us":3100,"per_hop_us":294.4,"ping_p50_us":86,"round_trips":3.42,"target_round_trips":2.0}
"#;
        let run = BenchRun::parse(text).unwrap();
        assert_eq!(run.per_hop.len(), 1);
        assert_eq!(run.per_hop[0].round_trips, Some(3.42));
    }

    #[test]
    fn an_idle_run_reads_core_seconds() {
        let text = r#"{"event":"setup","cluster":"local","nodes":5,"replication_factor":3,"keys":300000,"value_size":16,"duration_s":10.0,"anti_entropy_interval_ms":1000,"cores":2}
{"event":"measurement","workload":"idle-empty","keys":0,"core_seconds":0.21,"duration_s":10.0}
{"event":"measurement","workload":"idle-loaded","keys":300000,"core_seconds":0.3,"duration_s":10.0}
{"event":"verdict","text":"idle CPU with 300000 keys: 1.43× the empty cluster's (target ≤ 2×): met","ratio":1.43,"met":true}
{"event":"detection","killed":"s5","survivors_s":[1.5,1.51,1.52,1.74],"poll_ms":10}
"#;
        let run = IdleRun::parse(text).unwrap();
        assert_eq!(run.rows.len(), 2);
        assert_eq!(run.rows[1].core_seconds, 0.3);
        assert!(run.verdicts[0].ends_with("met"));
        let detection = run.detection.expect("the detection line is read");
        assert_eq!(
            (detection.killed.as_str(), detection.survivors_s.len()),
            ("s5", 4)
        );
    }

    #[test]
    fn a_timeline_has_buckets_and_marks_in_time_order() {
        use dida_verify::timeline::MarkEvent;
        let bucket = |t_ms| {
            TimelineLine::Bucket(Bucket {
                t_ms,
                ok: 40,
                errors: 2,
                by_op: Default::default(),
                errors_by_op: Default::default(),
            })
        };
        let setup = Setup {
            bucket_ms: 100,
            ..Setup::default()
        };
        let lines = [
            TimelineLine::Setup(setup.clone()),
            bucket(100),
            bucket(0),
            TimelineLine::Mark(Mark::at_ns(150_000_000, MarkEvent::Detected, "s2")),
            TimelineLine::Mark(Mark::at_ns(120_000_000, MarkEvent::Kill, "s2")),
            bucket(200),
        ];
        let text: String = lines
            .iter()
            .map(|line| serde_json::to_string(line).unwrap() + "\n")
            .collect();
        let timeline = Timeline::parse(&text).unwrap();
        let times: Vec<u64> = timeline.buckets.iter().map(|b| b.t_ms).collect();
        assert_eq!(times, vec![0, 100, 200]);
        assert_eq!(timeline.bucket_ms(), 100);
        assert_eq!(timeline.marks[0].what, MarkEvent::Kill);
        assert_eq!(timeline.marks[1].node, "s2");
        assert_eq!(timeline.setup, setup);
        // A line the suite would not write is an error, not a bucket of zeros.
        let error = Timeline::parse(r#"{"event":"bucket","t_ms":0,"succeeded":4}"#).unwrap_err();
        assert!(format!("{error:#}").contains("line 1"), "{error:#}");
    }

    #[test]
    fn redis_benchmark_csv_is_read_by_column_name() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                    \"SET\",\"52910.05\",\"0.671\",\"0.120\",\"0.623\",\"1.015\",\"1.607\",\"4.023\"\n\
                    \"GET\",\"61349.69\",\"0.575\",\"0.104\",\"0.551\",\"0.863\",\"1.287\",\"3.599\"\n";
        let rows = parse_redis_benchmark(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].test, "GET");
        assert_eq!(rows[1].rps, 61349.69);
        assert_eq!(rows[0].p50_ms, Some(0.623));
        assert_eq!(rows[0].p99_ms, Some(1.607));
        let old = parse_redis_benchmark("\"SET\",\"40000.00\"\n").unwrap();
        assert_eq!(old[0].rps, 40000.0);
        assert_eq!(old[0].p50_ms, None);
        assert!(parse_redis_benchmark("\"GET\",\"fast\"\n").is_err());
    }

    #[test]
    fn a_faults_report_is_read_as_the_suite_wrote_it_and_a_missing_one_explained() {
        let report: Report = serde_json::from_str(FAULTS_REPORT).unwrap();
        let text = serde_json::to_string(&report).unwrap();
        let run = FaultsRun::parse("acks2".into(), &text, "");
        let read = run.report.unwrap();
        assert_eq!(read, report);
        assert_eq!(read.settings.write_acks, 2);
        assert_eq!(read.operations.attempted, 900);
        assert_eq!(read.faults[0].node, "s2");
        assert!(read.passed);
        // A renamed field is an error that names it, not a zero.
        let renamed = text.replace("\"attempted\"", "\"tried\"");
        let error = FaultsRun::parse("x".into(), &renamed, "")
            .report
            .unwrap_err();
        assert!(error.contains("attempted"), "{error}");
        let missing = FaultsRun::parse(
            "x".into(),
            "",
            "starting\nError: the cluster did not start\n",
        );
        assert_eq!(
            missing.report.unwrap_err(),
            "no report; the run ended with: Error: the cluster did not start"
        );
    }

    /// A report as `dida faults --json` writes it.
    const FAULTS_REPORT: &str = r#"{"settings":{"nodes":5,"replication_factor":3,"write_acks":2,"max_versions":1000000,"workers":3,"clients":8,"chain_clients":2,"keys":5,"duration_ms":20000,"crashes":2,"nemesis":"kill","fault_ms":[1000,5000],"gossip_delay_ms":0,"seed":7},
"operations":{"attempted":900,"writes":300,"cas":300,"reads":300,"acknowledged":500,"cas_failed":10,"reads_ok":290,"failed":12,"unknown":3,"chains":80,"without_result":0},
"crashes":[{"kind":"kill","node":"s2","shape":null,"cuts":[],"at_ns":4500000000,"end_ns":null,"led_keys":["k0"],"confirmed":true,"declared_failed_by":["s1"],"fenced":null,"lost":true,"error":null}],
"lost_nodes":["s2"],
"lost_writes":{"live_nodes":["s1"],"unreadable_nodes":{},"converged":true,"convergence_ms":300,"acknowledged":500,"held":500,"discarded_by_max_versions":0,"lost":0,"conflicting":0,"examples":[]},
"linearizability":{"keys":[]},
"chains":{"submitted":80,"consistent":78,"inconsistent":0,"failed":2,"hung":0,"failure_kinds":{"worker w2 at http://127.0.0.1:40123 is unreachable":2},"violations":[]},
"checks":[{"name":"(1) no acknowledged write lost (--write-acks 2)","status":"passed","detail":""}],
"passed":true,"elapsed_ms":41000}"#;

    #[test]
    fn load_samples_and_key_values_parse() {
        let samples = parse_load("0\t1.50\t2\n5.0\t2.25\t0\n").unwrap();
        assert_eq!(samples[1].load1, 2.25);
        assert_eq!(samples[0].rustc, 2);
        assert!(parse_load("0 1.5\n").is_err());
        let pairs = key_values("cpu: Intel(R) Xeon(R): 2 GHz\n\nnot a pair\ncores: 2\n");
        assert_eq!(pairs[0], ("cpu".into(), "Intel(R) Xeon(R): 2 GHz".into()));
        assert_eq!(pairs[1], ("cores".into(), "2".into()));
    }

    #[test]
    fn a_directory_with_some_files_reads_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let storage = jsonl(&[
            BenchLine::Setup(storage_setup(3, 2, 0)),
            BenchLine::Measurement(measurement("read", 1, 9000.0)),
        ]);
        fs::write(dir.path().join("storage.jsonl"), &storage).unwrap();
        fs::write(dir.path().join("settings-acks2.jsonl"), &storage).unwrap();
        fs::write(
            dir.path().join("machine.txt"),
            "cores: 2\ncommit: abc-dirty\n",
        )
        .unwrap();
        fs::write(dir.path().join("skipped.txt"), "timeline: no --timeline\n").unwrap();
        fs::write(dir.path().join("faults-acks1.json"), "").unwrap();
        fs::write(dir.path().join("faults-acks1.log"), "boom\n").unwrap();
        let evaluation = Evaluation::read(dir.path()).unwrap();
        assert!(evaluation.storage.is_some());
        assert!(evaluation.chain.is_none());
        assert_eq!(evaluation.settings[0].name, "acks2");
        assert_eq!(evaluation.machine("commit"), Some("abc-dirty"));
        assert_eq!(evaluation.machine("cpu"), None);
        assert_eq!(evaluation.skipped[0].0, "timeline");
        assert_eq!(evaluation.faults[0].label, "acks1");
        assert!(evaluation.faults[0].report.is_err());
        assert!(Evaluation::read(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn durability_lines_are_read_and_the_rest_of_the_run_skipped() {
        let text = concat!(
            r#"{"event":"verdict","text":"a run's other lines are read, and skipped"}"#,
            "\n",
            r#"{"event":"durability","mode":"always","base":"memory","workload":"write","concurrency":16,"ops_per_sec":800.0,"p50_us":19000,"p99_us":30000,"errors":0,"vs_base":0.25}"#,
            "\n",
        );
        let rows = parse_comparison(text, Comparison::Durability).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].mode.as_str(), rows[0].concurrency), ("always", 16));
        assert_eq!(rows[0].vs_base, Some(0.25));
        assert!(parse_comparison(
            r#"{"event":"durability","workload":"write"}"#,
            Comparison::Durability
        )
        .is_err());
        let transport = r#"{"event":"transport","mode":"tls","base":"plaintext","workload":"ping","concurrency":1,"ops_per_sec":900.0,"p50_us":1000,"p99_us":3000,"errors":0,"vs_base":0.9}"#;
        let rows = parse_comparison(transport, Comparison::Transport).unwrap();
        assert_eq!((rows[0].mode.as_str(), rows[0].vs_base), ("tls", Some(0.9)));
    }
}
