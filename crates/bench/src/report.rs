//! Turning measurements into what `dida bench` prints: the set-up, one row per
//! measurement (as a table line or a JSON object), and the verdict.
//!
//! Every row carries its throughput as a ratio to the no-op RPC at the same
//! concurrency, because on a shared machine the ratio is what can be compared from one
//! run (or machine) to the next; the absolute numbers are shown for context only.
//! Storage rows of `read` and `write` also carry a ratio to Redis doing the same job
//! (`vs redis`), a baseline that does not share dida's request path.

use crate::closed_loop::Measurement;
use crate::lines::{self, BenchLine, BenchSetup, StorageSetup, Verdict};
use crate::redis::RedisWorkload;
use crate::workload::Workload;

/// The concurrency the verdict is about (from the issue: reads at 64 in flight).
pub(crate) const VERDICT_CONCURRENCY: usize = 64;

/// The target of the verdict: reads must reach this share of the no-op RPC's
/// throughput at [`VERDICT_CONCURRENCY`] in flight.
pub(crate) const VERDICT_TARGET: f64 = 0.70;

/// The target of the verdict against Redis (from the issue): reads must reach this
/// share of Redis GET's throughput at [`VERDICT_CONCURRENCY`] in flight.
pub(crate) const REDIS_VERDICT_TARGET: f64 = 0.6;

/// The quantiles every row lists in JSON (`percentiles`), enough points to draw a
/// latency CDF: the minimum (0), the body in tenths, and the tail up to the maximum
/// (1).
pub(crate) const CDF_QUANTILES: [f64; 19] = [
    0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995,
    0.9999, 1.0,
];

/// One measurement, summarised for the report: the `measurement` line `--json`
/// prints, so the table and the JSON come from one type (`vs_redis` is set only
/// as the storage table prints it).
pub(crate) type Row = lines::Measurement;

impl Row {
    /// Summarises `measurement`, comparing it with the baseline's throughput.
    pub fn new(
        workload: impl Into<String>,
        concurrency: usize,
        measurement: &Measurement,
        ping_ops_per_sec: f64,
    ) -> Self {
        let ops_per_sec = measurement.throughput();
        Self {
            workload: workload.into(),
            concurrency,
            ops_per_sec,
            p50_us: measurement.latency_us.value_at_quantile(0.50),
            p99_us: measurement.latency_us.value_at_quantile(0.99),
            errors: measurement.errors,
            first_error: measurement.first_error.clone(),
            vs_ping: ratio(ops_per_sec, ping_ops_per_sec),
            percentiles: percentiles(&measurement.latency_us),
            vs_redis: None,
        }
    }
}

impl Row {
    /// The row as the `measurement` line `--json` prints: `vs_redis` only in the
    /// storage table.
    fn to_line(&self, redis: RedisColumn) -> lines::Measurement {
        lines::Measurement {
            vs_redis: match redis {
                RedisColumn::Absent => None,
                RedisColumn::Ratio(vs_redis) => vs_redis,
            },
            ..self.clone()
        }
    }
}

/// The latency at each of [`CDF_QUANTILES`], or nothing for an empty histogram.
fn percentiles(latency_us: &hdrhistogram::Histogram<u64>) -> Vec<(f64, u64)> {
    if latency_us.is_empty() {
        return Vec::new();
    }
    CDF_QUANTILES
        .iter()
        .map(|&quantile| (quantile, latency_us.value_at_quantile(quantile)))
        .collect()
}

/// `value / baseline`, or `None` when there is no baseline to compare with.
pub(crate) fn ratio(value: f64, baseline: f64) -> Option<f64> {
    (baseline > 0.0).then(|| value / baseline)
}

/// The one-line verdict on the target, from the rows of a run.
pub(crate) fn verdict(rows: &[Row]) -> String {
    let reads = rows
        .iter()
        .find(|row| row.workload == "read" && row.concurrency == VERDICT_CONCURRENCY);
    match reads.and_then(|row| row.vs_ping) {
        Some(share) => format!(
            "reads at {VERDICT_CONCURRENCY} in flight: {:.0}% of no-op RPC throughput (target ≥ {:.0}%): {}",
            share * 100.0,
            VERDICT_TARGET * 100.0,
            if share >= VERDICT_TARGET { "met" } else { "NOT met" }
        ),
        None => format!(
            "reads at {VERDICT_CONCURRENCY} in flight: not measured (include {VERDICT_CONCURRENCY} in --concurrency)"
        ),
    }
}

/// The one-line verdict on reads against Redis GET, from the rows of a run.
pub(crate) fn redis_verdict(rows: &[Row]) -> String {
    let get = Workload::Redis(RedisWorkload::Get).name();
    let at_verdict = |workload: &str| {
        rows.iter()
            .find(|row| row.workload == workload && row.concurrency == VERDICT_CONCURRENCY)
    };
    let prefix = format!("reads at {VERDICT_CONCURRENCY} in flight");
    if !rows.iter().any(|row| row.workload == get) {
        return format!(
            "{prefix} against Redis GET: not measured (no Redis in this run; see the set-up)"
        );
    }
    let (Some(reads), Some(gets)) = (at_verdict(Workload::Read.name()), at_verdict(get)) else {
        return format!(
            "{prefix} against Redis GET: not measured (include {VERDICT_CONCURRENCY} in --concurrency)"
        );
    };
    match ratio(reads.ops_per_sec, gets.ops_per_sec) {
        Some(share) => format!(
            "{prefix}: {share:.2}× Redis GET (target ≥ {REDIS_VERDICT_TARGET}×): {}",
            if share >= REDIS_VERDICT_TARGET {
                "met"
            } else {
                "NOT met"
            }
        ),
        None => format!("{prefix} against Redis GET: no GET succeeded (see the redis-get row)"),
    }
}

/// Whether a table has a `vs redis` column, and if so a row's value in it.
#[derive(Debug, Clone, Copy)]
enum RedisColumn {
    /// The chain benchmark's table: no Redis.
    Absent,
    /// The storage benchmark's table: the row's ratio to its Redis counterpart, if
    /// it has one and Redis was measured.
    Ratio(Option<f64>),
}

/// Prints the report, as a table for people or as JSON lines for scripts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Printer {
    /// One JSON object per line instead of text.
    pub json: bool,
}

impl Printer {
    /// Prints the set-up (and, as text, the table's header).
    pub fn setup(self, setup: &StorageSetup) {
        if self.json {
            lines::print_json(&BenchLine::Setup(BenchSetup::Storage(setup.clone())));
            return;
        }
        println!("dida bench storage");
        println!(
            "  cluster:            {} storage nodes ({})",
            setup.nodes, setup.cluster
        );
        println!("  replication factor: {}", setup.replication_factor);
        if let (Some(acks), Some(delay)) = (setup.write_acks, setup.gossip_delay_ms) {
            println!("  write acks:         {acks}; gossip delay {delay} ms");
        }
        println!(
            "  target node:        {} (every request goes to it)",
            setup.target
        );
        println!(
            "  values:             {} bytes, {} keys per workload",
            setup.value_size, setup.keys
        );
        println!(
            "  each measurement:   {} s after a {} s warm-up, closed loop",
            setup.duration_s, setup.warmup_s
        );
        println!("  machine:            {} cores available", setup.cores);
        println!("  redis:              {}", setup.redis);
        println!("  durability:         {}", setup.durability);
        println!();
        self.header(RedisColumn::Ratio(None));
    }

    /// Prints the header of a table of rows without Redis (nothing in JSON mode).
    pub fn table_header(self) {
        self.header(RedisColumn::Absent);
    }

    /// Prints the header of a table, with a `vs redis` column or without.
    fn header(self, redis: RedisColumn) {
        if self.json {
            return;
        }
        let width = workload_width(redis);
        print!(
            "{:<width$} {:>11} {:>10} {:>9} {:>9} {:>7} {:>8}",
            "workload", "concurrency", "ops/s", "p50 (µs)", "p99 (µs)", "errors", "vs ping"
        );
        match redis {
            RedisColumn::Absent => println!(),
            RedisColumn::Ratio(_) => println!(" {:>8}", "vs redis"),
        }
    }

    /// Prints one row of a table without Redis (and, as text, the first error if
    /// there were any).
    pub fn row(self, row: &Row) {
        self.print_row(row, RedisColumn::Absent);
    }

    /// Prints one row of the storage table, with its ratio to the Redis workload
    /// doing the same job (`None` when it has none or Redis was not measured).
    pub fn storage_row(self, row: &Row, vs_redis: Option<f64>) {
        self.print_row(row, RedisColumn::Ratio(vs_redis));
    }

    /// Prints one row, as a JSON object or a table line.
    fn print_row(self, row: &Row, redis: RedisColumn) {
        if self.json {
            lines::print_json(&BenchLine::Measurement(row.to_line(redis)));
            return;
        }
        let vs_ping = row
            .vs_ping
            .map_or_else(|| "-".to_string(), |share| format!("{:.0}%", share * 100.0));
        let width = workload_width(redis);
        print!(
            "{:<width$} {:>11} {:>10.0} {:>9} {:>9} {:>7} {:>8}",
            row.workload,
            row.concurrency,
            row.ops_per_sec,
            row.p50_us,
            row.p99_us,
            row.errors,
            vs_ping
        );
        match redis {
            RedisColumn::Absent => println!(),
            RedisColumn::Ratio(vs_redis) => println!(" {:>8}", redis_ratio_text(vs_redis)),
        }
        if let Some(error) = &row.first_error {
            println!("         first error: {error}");
        }
    }

    /// Prints verdict lines: as text after a blank line, in JSON one `verdict` object
    /// per line.
    pub fn verdicts(self, lines: &[String]) {
        if !self.json {
            println!();
        }
        for text in lines {
            if self.json {
                lines::print_json(&BenchLine::Verdict(Verdict::text(text.as_str())));
            } else {
                println!("{text}");
            }
        }
    }
}

/// Width of the workload column: wide enough for `redis-get` in the storage table,
/// unchanged (8) in tables without Redis.
fn workload_width(redis: RedisColumn) -> usize {
    match redis {
        RedisColumn::Absent => 12,
        RedisColumn::Ratio(_) => 9,
    }
}

/// A `vs redis` cell: the ratio as a multiple, or `-` when there is none.
fn redis_ratio_text(vs_redis: Option<f64>) -> String {
    vs_redis.map_or_else(|| "-".to_string(), |share| format!("{share:.2}×"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(workload: &'static str, concurrency: usize, ops_per_sec: f64, ping: f64) -> Row {
        Row {
            workload: workload.to_string(),
            concurrency,
            ops_per_sec,
            p50_us: 0,
            p99_us: 0,
            errors: 0,
            first_error: None,
            vs_ping: ratio(ops_per_sec, ping),
            percentiles: Vec::new(),
            vs_redis: None,
        }
    }

    #[test]
    fn ratio_is_relative_to_the_baseline_and_absent_without_one() {
        assert_eq!(ratio(750.0, 1000.0), Some(0.75));
        assert_eq!(ratio(750.0, 0.0), None);
    }

    #[test]
    fn verdict_reports_reads_at_64_against_the_target() {
        let rows = [
            row("ping", 64, 1000.0, 1000.0),
            row("read", 16, 100.0, 1000.0),
            row("read", 64, 812.0, 1000.0),
        ];
        assert_eq!(
            verdict(&rows),
            "reads at 64 in flight: 81% of no-op RPC throughput (target ≥ 70%): met"
        );
        let slow = [row("read", 64, 500.0, 1000.0)];
        assert!(verdict(&slow).ends_with("50% of no-op RPC throughput (target ≥ 70%): NOT met"));
    }

    #[test]
    fn redis_verdict_compares_reads_with_gets_at_64() {
        let rows = [
            row("ping", 64, 1000.0, 1000.0),
            row("redis-get", 64, 2000.0, 1000.0),
            row("read", 16, 900.0, 1000.0),
            row("read", 64, 1300.0, 1000.0),
        ];
        assert_eq!(
            redis_verdict(&rows),
            "reads at 64 in flight: 0.65× Redis GET (target ≥ 0.6×): met"
        );
        let slow = [
            row("redis-get", 64, 2000.0, 1000.0),
            row("read", 64, 1100.0, 1000.0),
        ];
        assert_eq!(
            redis_verdict(&slow),
            "reads at 64 in flight: 0.55× Redis GET (target ≥ 0.6×): NOT met"
        );
    }

    #[test]
    fn redis_verdict_says_why_it_has_no_ratio() {
        let no_redis = [row("read", 64, 900.0, 1000.0)];
        assert!(redis_verdict(&no_redis).contains("no Redis in this run"));
        let not_at_64 = [
            row("redis-get", 16, 900.0, 1000.0),
            row("read", 16, 900.0, 1000.0),
        ];
        assert!(redis_verdict(&not_at_64).contains("include 64 in --concurrency"));
        let failed = [
            row("redis-get", 64, 0.0, 1000.0),
            row("read", 64, 900.0, 1000.0),
        ];
        assert!(redis_verdict(&failed).contains("no GET succeeded"));
    }

    #[test]
    fn redis_ratios_are_shown_as_multiples() {
        assert_eq!(redis_ratio_text(Some(0.456)), "0.46×");
        assert_eq!(redis_ratio_text(Some(1.5)), "1.50×");
        assert_eq!(redis_ratio_text(None), "-");
    }

    #[test]
    fn percentiles_run_from_the_minimum_to_the_maximum() {
        let mut latency_us = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        for value in 1..=1000 {
            latency_us.record(value).unwrap();
        }
        let listed = percentiles(&latency_us);
        assert_eq!(listed.len(), CDF_QUANTILES.len());
        assert_eq!(listed.first(), Some(&(0.0, 1)));
        assert_eq!(listed.last(), Some(&(1.0, 1000)));
        assert!(listed.contains(&(0.5, 500)));
        assert!(listed.windows(2).all(|pair| pair[0].1 <= pair[1].1));
        let empty = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        assert!(percentiles(&empty).is_empty());
    }

    #[test]
    fn json_rows_list_their_percentiles_as_pairs() {
        let row = Row {
            percentiles: vec![(0.5, 90), (0.99, 400)],
            ..row("read", 16, 10.0, 10.0)
        };
        let storage = serde_json::to_value(BenchLine::Measurement(
            row.to_line(RedisColumn::Ratio(Some(0.5))),
        ))
        .unwrap();
        assert_eq!(storage["event"], "measurement");
        assert_eq!(storage["percentiles"].to_string(), "[[0.5,90],[0.99,400]]");
        assert_eq!(storage["vs_redis"], 0.5);
        let chain =
            serde_json::to_value(BenchLine::Measurement(row.to_line(RedisColumn::Absent))).unwrap();
        assert_eq!(chain["percentiles"], storage["percentiles"]);
        assert!(chain.get("vs_redis").is_none());
    }

    #[test]
    fn verdict_says_so_when_64_was_not_measured() {
        let rows = [row("read", 16, 900.0, 1000.0)];
        assert!(verdict(&rows).contains("not measured"));
    }
}
