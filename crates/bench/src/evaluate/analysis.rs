//! What the evaluation computes from the rows: dida's throughput as a share of each
//! baseline, and from those shares its best and worst workloads.
//!
//! A comparison sets one dida workload at one concurrency against a baseline
//! measured in the same run: the no-op RPC at the same concurrency (storage
//! workloads), the RPC bound ping ÷ (N + 2) (chains of N operators), Redis through the
//! same harness at the same concurrency, and `redis-benchmark -c 64` (reads and
//! writes at 64 in flight). Shares against different baselines say different things,
//! so the best and the worst are picked within each baseline.

use crate::chain::rpc_bound;

use super::input::{BenchRun, FaultsRun, RedisBenchmarkRow, Timeline};
use dida_verify::timeline::MarkEvent;

/// What dida is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Baseline {
    /// The no-op RPC to the same node at the same concurrency.
    Ping,
    /// Ping throughput ÷ (N + 2) for a chain of N operators.
    RpcBound,
    /// Redis GET or SET through the same closed loop and one multiplexed connection.
    RedisHarness,
    /// `redis-benchmark -c 64`: 64 connections, one command in flight on each.
    RedisBenchmark,
}

impl Baseline {
    pub const ALL: [Baseline; 4] = [
        Baseline::Ping,
        Baseline::RpcBound,
        Baseline::RedisHarness,
        Baseline::RedisBenchmark,
    ];

    /// How the baseline is named in the report.
    pub fn describe(self) -> &'static str {
        match self {
            Baseline::Ping => "no-op RPC (storage ping, same concurrency)",
            Baseline::RpcBound => "RPC bound of a chain (worker ping ÷ (N + 2))",
            Baseline::RedisHarness => "Redis through the same harness (same concurrency)",
            Baseline::RedisBenchmark => "redis-benchmark -c 64",
        }
    }
}

/// One dida workload at one concurrency against one baseline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Comparison {
    pub baseline: Baseline,
    /// The dida workload, e.g. `read` or `chain-5`.
    pub workload: String,
    pub concurrency: usize,
    /// dida's successful operations (or executions) per second.
    pub ops_per_sec: f64,
    /// What it is compared with, e.g. `ping`, `ping ÷ 7`, `redis-get`.
    pub against: String,
    /// The baseline's operations per second.
    pub baseline_ops_per_sec: f64,
}

impl Comparison {
    /// dida ÷ baseline.
    pub fn share(&self) -> f64 {
        self.ops_per_sec / self.baseline_ops_per_sec
    }
}

/// The storage workloads of dida, each with its Redis counterpart if it has one.
const STORAGE_WORKLOADS: [(&str, Option<&str>); 3] = [
    ("read", Some("redis-get")),
    ("write", Some("redis-set")),
    ("cas", None),
];

/// The concurrency `redis-benchmark` runs at (`-c 64`).
pub(crate) const REDIS_BENCHMARK_CONCURRENCY: usize = 64;

/// Every comparison the storage sweep and `redis-benchmark` allow. Baselines that
/// completed nothing are left out (no share can be computed).
pub(crate) fn storage_comparisons(
    run: &BenchRun,
    redis_benchmark: &[RedisBenchmarkRow],
) -> Vec<Comparison> {
    let mut comparisons = Vec::new();
    for concurrency in run.concurrencies() {
        for (workload, redis) in STORAGE_WORKLOADS {
            let Some(row) = run.row(workload, concurrency) else {
                continue;
            };
            let mut push = |baseline, against: String, baseline_ops_per_sec: f64| {
                if baseline_ops_per_sec > 0.0 {
                    comparisons.push(Comparison {
                        baseline,
                        workload: workload.to_string(),
                        concurrency,
                        ops_per_sec: row.ops_per_sec,
                        against,
                        baseline_ops_per_sec,
                    });
                }
            };
            if let Some(ping) = run.row("ping", concurrency) {
                push(Baseline::Ping, "ping".to_string(), ping.ops_per_sec);
            }
            let Some(redis) = redis else { continue };
            if let Some(redis_row) = run.row(redis, concurrency) {
                push(
                    Baseline::RedisHarness,
                    redis.to_string(),
                    redis_row.ops_per_sec,
                );
            }
            if concurrency == REDIS_BENCHMARK_CONCURRENCY {
                let command = redis.trim_start_matches("redis-").to_uppercase();
                if let Some(rb) = redis_benchmark.iter().find(|rb| rb.test == command) {
                    push(
                        Baseline::RedisBenchmark,
                        format!("redis-benchmark {command}"),
                        rb.rps,
                    );
                }
            }
        }
    }
    comparisons
}

/// The length of a chain workload (`chain-N`).
pub(crate) fn chain_length(workload: &str) -> Option<usize> {
    workload.strip_prefix("chain-")?.parse().ok()
}

/// Every chain row against its RPC bound at the same concurrency.
pub(crate) fn chain_comparisons(run: &BenchRun) -> Vec<Comparison> {
    let mut comparisons = Vec::new();
    for row in &run.rows {
        let Some(length) = chain_length(&row.workload) else {
            continue;
        };
        let Some(ping) = run.row("ping", row.concurrency) else {
            continue;
        };
        let bound = rpc_bound(ping.ops_per_sec, length);
        if bound > 0.0 {
            comparisons.push(Comparison {
                baseline: Baseline::RpcBound,
                workload: row.workload.clone(),
                concurrency: row.concurrency,
                ops_per_sec: row.ops_per_sec,
                against: format!("ping ÷ {}", length + 2),
                baseline_ops_per_sec: bound,
            });
        }
    }
    comparisons
}

/// The best and the worst comparison against one baseline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Extremes<'a> {
    pub baseline: Baseline,
    /// The highest share of the baseline.
    pub best: &'a Comparison,
    /// The lowest share.
    pub worst: &'a Comparison,
    /// Comparisons this was picked from.
    pub out_of: usize,
}

/// For each baseline with at least one comparison, the comparisons with the highest
/// and the lowest share (the first one measured among equals), in the order of
/// [`Baseline::ALL`].
pub(crate) fn best_and_worst(comparisons: &[Comparison]) -> Vec<Extremes<'_>> {
    let mut extremes = Vec::new();
    for baseline in Baseline::ALL {
        let of_baseline: Vec<&Comparison> = comparisons
            .iter()
            .filter(|c| c.baseline == baseline && c.share().is_finite())
            .collect();
        let (Some(&first), count) = (of_baseline.first(), of_baseline.len()) else {
            continue;
        };
        let (mut best, mut worst) = (first, first);
        for &comparison in &of_baseline[1..] {
            if comparison.share() > best.share() {
                best = comparison;
            }
            if comparison.share() < worst.share() {
                worst = comparison;
            }
        }
        extremes.push(Extremes {
            baseline,
            best,
            worst,
            out_of: count,
        });
    }
    extremes
}

/// The settings a storage run used, from its set-up line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Settings {
    pub replication_factor: u64,
    pub write_acks: u64,
    pub gossip_delay_ms: u64,
}

impl Settings {
    /// The cluster `dida bench storage` starts by default.
    pub const DEFAULT: Settings = Settings {
        replication_factor: 3,
        write_acks: 1,
        gossip_delay_ms: 0,
    };

    /// The settings of `run`; `None` for a run on a cluster it did not start (the
    /// set-up then does not know them).
    pub fn of(run: &BenchRun) -> Option<Self> {
        let setup = run.storage_setup()?;
        Some(Self {
            replication_factor: setup.replication_factor as u64,
            write_acks: setup.write_acks? as u64,
            gossip_delay_ms: setup.gossip_delay_ms?,
        })
    }

    /// `R=3, acks 1, gossip 0 ms`.
    pub fn label(&self) -> String {
        format!(
            "R={}, acks {}, gossip {} ms",
            self.replication_factor, self.write_acks, self.gossip_delay_ms
        )
    }
}

/// One axis of the settings comparison: runs differing in one setting only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Knob {
    WriteAcks,
    GossipDelay,
    ReplicationFactor,
}

impl Knob {
    pub const ALL: [Knob; 3] = [Knob::WriteAcks, Knob::GossipDelay, Knob::ReplicationFactor];

    /// The flag the knob is.
    pub fn flag(self) -> &'static str {
        match self {
            Knob::WriteAcks => "--write-acks",
            Knob::GossipDelay => "--gossip-delay",
            Knob::ReplicationFactor => "--replication-factor",
        }
    }

    /// This knob's value in `settings`.
    pub fn value(self, settings: &Settings) -> u64 {
        match self {
            Knob::WriteAcks => settings.write_acks,
            Knob::GossipDelay => settings.gossip_delay_ms,
            Knob::ReplicationFactor => settings.replication_factor,
        }
    }

    /// `settings` with this knob's value replaced by `value`.
    fn with(self, settings: Settings, value: u64) -> Settings {
        let mut changed = settings;
        match self {
            Knob::WriteAcks => changed.write_acks = value,
            Knob::GossipDelay => changed.gossip_delay_ms = value,
            Knob::ReplicationFactor => changed.replication_factor = value,
        }
        changed
    }

    /// The runs that differ from each other in this knob only, grouped by the other
    /// settings: each group holds at least two runs, sorted by the knob's value. The
    /// group with the default's other settings comes first.
    pub fn series(self, runs: &[BenchRun]) -> Vec<Vec<(Settings, &BenchRun)>> {
        let mut groups: Vec<(Settings, Vec<(Settings, &BenchRun)>)> = Vec::new();
        for run in runs {
            let Some(settings) = Settings::of(run) else {
                continue;
            };
            // Runs are grouped by their settings with this knob at 0.
            let key = self.with(settings, 0);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, group)) => group.push((settings, run)),
                None => groups.push((key, vec![(settings, run)])),
            }
        }
        let default_key = self.with(Settings::DEFAULT, 0);
        groups.sort_by_key(|(key, _)| (*key != default_key, *key));
        groups
            .into_iter()
            .map(|(_, mut group)| {
                group.sort_by_key(|(settings, _)| self.value(settings));
                group.dedup_by_key(|(settings, _)| self.value(settings));
                group
            })
            .filter(|group| group.len() >= 2)
            .collect()
    }
}

/// What a crash did to the workload, from a timeline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CrashEffect {
    pub node: String,
    /// When it was killed, in seconds since the start.
    pub killed_s: f64,
    /// Seconds from the kill to its detection, and to the end of re-replication.
    pub detected_after_s: Option<f64>,
    pub re_replicated_after_s: Option<f64>,
    /// Failed operations from the kill to the end of re-replication (or of the run).
    pub errors: u64,
    /// Lowest successful operations in one bucket over the same span.
    pub lowest_ok: u64,
    /// Seconds of that span in buckets where no operation succeeded.
    pub stalled_s: f64,
}

/// Throughput before the first kill and the effect of each kill.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TimelineSummary {
    /// Mean successful operations per bucket before the first kill.
    pub ok_per_bucket_before: f64,
    pub bucket_ms: u64,
    pub total_ok: u64,
    pub total_errors: u64,
    pub crashes: Vec<CrashEffect>,
}

impl TimelineSummary {
    pub fn of(timeline: &Timeline) -> Self {
        let ms = |s: u64| s as f64 / 1000.0;
        let kills: Vec<_> = timeline
            .marks
            .iter()
            .filter(|mark| mark.what == MarkEvent::Kill)
            .collect();
        let first_kill = kills.first().map_or(u64::MAX, |kill| kill.t_ms);
        let before: Vec<u64> = timeline
            .buckets
            .iter()
            .filter(|bucket| bucket.t_ms < first_kill)
            .map(|bucket| bucket.ok)
            .collect();
        let ok_per_bucket_before = if before.is_empty() {
            0.0
        } else {
            before.iter().sum::<u64>() as f64 / before.len() as f64
        };
        let end = timeline.buckets.last().map_or(0, |bucket| bucket.t_ms);
        let crashes = kills
            .iter()
            .map(|kill| {
                let after = |event: MarkEvent| {
                    timeline
                        .marks
                        .iter()
                        .find(|m| m.what == event && m.node == kill.node && m.t_ms >= kill.t_ms)
                        .map(|m| m.t_ms)
                };
                let detected = after(MarkEvent::Detected);
                let re_replicated = after(MarkEvent::ReReplicated);
                let until = re_replicated.unwrap_or(end);
                let span: Vec<_> = timeline
                    .buckets
                    .iter()
                    .filter(|b| b.t_ms + timeline.bucket_ms() > kill.t_ms && b.t_ms <= until)
                    .collect();
                CrashEffect {
                    node: kill.node.clone(),
                    killed_s: ms(kill.t_ms),
                    detected_after_s: detected.map(|t| ms(t - kill.t_ms)),
                    re_replicated_after_s: re_replicated.map(|t| ms(t - kill.t_ms)),
                    errors: span.iter().map(|b| b.errors).sum(),
                    lowest_ok: span.iter().map(|b| b.ok).min().unwrap_or(0),
                    stalled_s: span.iter().filter(|b| b.ok == 0).count() as f64
                        * timeline.bucket_ms() as f64
                        / 1000.0,
                }
            })
            .collect();
        Self {
            ok_per_bucket_before,
            bucket_ms: timeline.bucket_ms(),
            total_ok: timeline.buckets.iter().map(|b| b.ok).sum(),
            total_errors: timeline.buckets.iter().map(|b| b.errors).sum(),
            crashes,
        }
    }
}

/// How many faults runs passed, out of those that produced a report.
pub(crate) fn faults_passed(runs: &[FaultsRun]) -> (usize, usize) {
    let reports: Vec<_> = runs.iter().filter_map(|r| r.report.as_ref().ok()).collect();
    (reports.iter().filter(|r| r.passed).count(), reports.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lines::samples::{measurement, storage_setup};
    use crate::lines::Measurement;
    use dida_verify::timeline::{Bucket, Mark};

    fn row(workload: &str, concurrency: usize, ops_per_sec: f64) -> Measurement {
        measurement(workload, concurrency, ops_per_sec)
    }

    fn storage_run() -> BenchRun {
        BenchRun {
            rows: vec![
                row("ping", 1, 10_000.0),
                row("redis-get", 1, 20_000.0),
                row("redis-set", 1, 25_000.0),
                row("read", 1, 9_000.0),
                row("write", 1, 5_000.0),
                row("cas", 1, 6_000.0),
                row("ping", 64, 40_000.0),
                row("redis-get", 64, 200_000.0),
                row("redis-set", 64, 0.0),
                row("read", 64, 44_000.0),
                row("write", 64, 30_000.0),
                row("cas", 64, 18_000.0),
            ],
            ..BenchRun::default()
        }
    }

    fn redis_benchmark() -> Vec<RedisBenchmarkRow> {
        ["GET", "SET"]
            .into_iter()
            .zip([55_000.0, 50_000.0])
            .map(|(test, rps)| RedisBenchmarkRow {
                test: test.to_string(),
                rps,
                p50_ms: None,
                p99_ms: None,
            })
            .collect()
    }

    fn find<'a>(
        comparisons: &'a [Comparison],
        baseline: Baseline,
        workload: &str,
        concurrency: usize,
    ) -> Option<&'a Comparison> {
        comparisons.iter().find(|c| {
            c.baseline == baseline && c.workload == workload && c.concurrency == concurrency
        })
    }

    #[test]
    fn storage_workloads_are_compared_with_ping_redis_and_redis_benchmark() {
        let comparisons = storage_comparisons(&storage_run(), &redis_benchmark());
        let read = find(&comparisons, Baseline::Ping, "read", 64).unwrap();
        assert_eq!(read.share(), 1.1);
        assert_eq!(read.against, "ping");
        let get = find(&comparisons, Baseline::RedisHarness, "read", 64).unwrap();
        assert_eq!(get.share(), 0.22);
        assert_eq!(get.against, "redis-get");
        let rb = find(&comparisons, Baseline::RedisBenchmark, "read", 64).unwrap();
        assert_eq!(rb.share(), 0.8);
        assert_eq!(rb.against, "redis-benchmark GET");
        assert_eq!(
            find(&comparisons, Baseline::RedisBenchmark, "write", 64)
                .unwrap()
                .share(),
            0.6
        );
        // Only at -c 64; no Redis counterpart for CAS; a Redis that did nothing gives
        // no share.
        assert!(find(&comparisons, Baseline::RedisBenchmark, "read", 1).is_none());
        assert!(find(&comparisons, Baseline::RedisHarness, "cas", 1).is_none());
        assert!(find(&comparisons, Baseline::RedisHarness, "write", 64).is_none());
        assert!(find(&comparisons, Baseline::Ping, "cas", 64).is_some());
    }

    #[test]
    fn best_and_worst_are_picked_within_each_baseline() {
        let comparisons = storage_comparisons(&storage_run(), &redis_benchmark());
        let extremes = best_and_worst(&comparisons);
        let baselines: Vec<Baseline> = extremes.iter().map(|e| e.baseline).collect();
        assert_eq!(
            baselines,
            vec![
                Baseline::Ping,
                Baseline::RedisHarness,
                Baseline::RedisBenchmark
            ]
        );
        let ping = &extremes[0];
        assert_eq!(
            (ping.best.workload.as_str(), ping.best.concurrency),
            ("read", 64)
        );
        assert_eq!(
            (ping.worst.workload.as_str(), ping.worst.concurrency),
            ("cas", 64)
        );
        assert_eq!(ping.worst.share(), 0.45);
        assert_eq!(ping.out_of, 6);
        let redis = &extremes[1];
        assert_eq!(
            (redis.best.workload.as_str(), redis.best.concurrency),
            ("read", 1)
        );
        assert_eq!(redis.worst.share(), 0.2);
        assert_eq!(redis.worst.workload, "write");
        assert!(best_and_worst(&[]).is_empty());
    }

    #[test]
    fn chains_are_compared_with_ping_over_n_plus_two() {
        let run = BenchRun {
            rows: vec![
                row("invoke", 1, 30_000.0),
                row("ping", 16, 24_000.0),
                row("chain-1", 16, 6_000.0),
                row("chain-10", 16, 1_000.0),
                row("chain-5", 1, 500.0),
            ],
            ..BenchRun::default()
        };
        let comparisons = chain_comparisons(&run);
        assert_eq!(comparisons.len(), 2, "chain-5 at 1 has no ping");
        assert_eq!(comparisons[0].share(), 0.75);
        assert_eq!(comparisons[1].against, "ping ÷ 12");
        assert_eq!(comparisons[1].baseline_ops_per_sec, 2000.0);
        let extremes = best_and_worst(&comparisons);
        assert_eq!(extremes[0].best.workload, "chain-1");
        assert_eq!(extremes[0].worst.workload, "chain-10");
        assert_eq!(chain_length("chain-20"), Some(20));
        assert_eq!(chain_length("invoke"), None);
    }

    fn settings_run(name: &str, rf: usize, acks: usize, gossip: u64) -> BenchRun {
        BenchRun {
            name: name.to_string(),
            setup: Some(storage_setup(rf, acks, gossip)),
            rows: vec![row("write", 16, 1000.0)],
            ..BenchRun::default()
        }
    }

    #[test]
    fn settings_series_vary_one_knob_with_the_default_group_first() {
        let runs = vec![
            settings_run("base", 3, 1, 0),
            settings_run("acks2", 3, 2, 0),
            settings_run("acks3", 3, 3, 0),
            settings_run("gossip100", 3, 1, 100),
            settings_run("acks2-gossip100", 3, 2, 100),
            settings_run("rf1", 1, 1, 0),
            settings_run("rf5", 5, 1, 0),
        ];
        let names = |group: &Vec<(Settings, &BenchRun)>| -> Vec<String> {
            group.iter().map(|(_, run)| run.name.clone()).collect()
        };
        let acks = Knob::WriteAcks.series(&runs);
        assert_eq!(acks.len(), 2);
        assert_eq!(names(&acks[0]), vec!["base", "acks2", "acks3"]);
        assert_eq!(names(&acks[1]), vec!["gossip100", "acks2-gossip100"]);
        let gossip = Knob::GossipDelay.series(&runs);
        assert_eq!(names(&gossip[0]), vec!["base", "gossip100"]);
        assert_eq!(names(&gossip[1]), vec!["acks2", "acks2-gossip100"]);
        let rf = Knob::ReplicationFactor.series(&runs);
        assert_eq!(rf.len(), 1);
        assert_eq!(names(&rf[0]), vec!["rf1", "base", "rf5"]);
        let unknown = BenchRun::default();
        assert!(Settings::of(&unknown).is_none());
        assert_eq!(Settings::DEFAULT.label(), "R=3, acks 1, gossip 0 ms");
    }

    #[test]
    fn a_timeline_summary_measures_each_crash_from_its_kill() {
        let bucket = |t_ms, ok, errors| Bucket {
            t_ms,
            ok,
            errors,
            by_op: Default::default(),
            errors_by_op: Default::default(),
        };
        let mark = |t_ms: u64, event| Mark::at_ns(t_ms * 1_000_000, event, "s2");
        let timeline = Timeline {
            setup: Default::default(),
            buckets: vec![
                bucket(0, 100, 0),
                bucket(100, 80, 0),
                bucket(200, 0, 5),
                bucket(300, 20, 3),
                bucket(400, 90, 0),
                bucket(500, 95, 1),
            ],
            marks: vec![
                mark(150, MarkEvent::Kill),
                mark(350, MarkEvent::Detected),
                mark(420, MarkEvent::ReReplicated),
            ],
        };
        let summary = TimelineSummary::of(&timeline);
        assert_eq!(summary.ok_per_bucket_before, 90.0);
        assert_eq!(summary.bucket_ms, 100);
        assert_eq!(summary.total_errors, 9);
        let crash = &summary.crashes[0];
        assert_eq!(crash.killed_s, 0.15);
        assert_eq!(crash.detected_after_s, Some(0.2));
        assert!((crash.re_replicated_after_s.unwrap() - 0.27).abs() < 1e-9);
        // Buckets 100 (holding the kill) to 400 (holding the end of re-replication).
        assert_eq!(crash.errors, 8);
        assert_eq!(crash.lowest_ok, 0);
        assert_eq!(crash.stalled_s, 0.1);
    }
}
