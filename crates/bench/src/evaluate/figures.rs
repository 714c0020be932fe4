//! Which plots the evaluation draws, from which rows.
//!
//! Each function returns the [`Figure`] of one SVG file, or `None` when the run has
//! nothing for it (the report then says what is missing instead of showing an old
//! picture).

use super::analysis::{chain_length, Knob, Settings, TimelineSummary};
use super::input::{BenchRun, Evaluation, Timeline};
use super::plot::{Axis, Color, Figure, Legend, Mark, Panel, Series};
use crate::chain::{rpc_bound, RPC_BOUND_TARGET};
use crate::lines::Measurement;
use dida_verify::timeline::MarkEvent;

/// The storage figures' workloads, baselines first, as `dida bench storage` runs them.
const STORAGE_ORDER: [&str; 6] = ["ping", "redis-get", "redis-set", "read", "write", "cas"];

/// The concurrency the storage CDFs are drawn at, when measured (the 64).
const STORAGE_CDF_CONCURRENCY: usize = 64;

/// The concurrency the chain CDFs are drawn at, when measured.
const CHAIN_CDF_CONCURRENCY: usize = 16;

/// File names, one per figure.
pub(crate) const STORAGE_THROUGHPUT: &str = "storage-throughput.svg";
pub(crate) const STORAGE_LATENCY: &str = "storage-latency.svg";
pub(crate) const LATENCY_CDF: &str = "latency-cdf.svg";
pub(crate) const CHAIN: &str = "chain.svg";
pub(crate) const SETTINGS: &str = "settings.svg";
pub(crate) const CRASH_TIMELINE: &str = "crash-timeline.svg";

/// Every file this module may draw (so that stale ones can be removed).
pub(crate) const ALL_FILES: [&str; 6] = [
    STORAGE_THROUGHPUT,
    STORAGE_LATENCY,
    LATENCY_CDF,
    CHAIN,
    SETTINGS,
    CRASH_TIMELINE,
];

/// The colour of a storage workload, the same in every figure.
pub(crate) fn workload_color(workload: &str) -> Color {
    match workload {
        "ping" => Color::Grey,
        "redis-get" => Color::Purple,
        "redis-set" => Color::Brown,
        "read" => Color::Blue,
        "write" => Color::Orange,
        "cas" => Color::Green,
        _ => Color::Sky,
    }
}

/// Baselines are dashed, dida's own workloads solid.
fn is_baseline(workload: &str) -> bool {
    workload == "ping" || workload.starts_with("redis-")
}

/// `points(row)` of every row of `workload`, in the order measured.
fn series_of(
    run: &BenchRun,
    workload: &str,
    point: impl Fn(&Measurement) -> (f64, f64),
) -> Vec<(f64, f64)> {
    run.rows
        .iter()
        .filter(|row| row.workload == workload)
        .map(point)
        .collect()
}

/// The storage workloads of `run` in figure order, then any others.
fn storage_workloads(run: &BenchRun) -> Vec<&str> {
    let measured = run.workloads();
    let mut ordered: Vec<&str> = STORAGE_ORDER
        .iter()
        .copied()
        .filter(|w| measured.contains(w))
        .collect();
    ordered.extend(measured.iter().filter(|w| !STORAGE_ORDER.contains(w)));
    ordered
}

/// A line of one storage workload.
fn storage_series(workload: &str, points: Vec<(f64, f64)>) -> Series {
    let series = Series::new(workload, workload_color(workload), points);
    if is_baseline(workload) {
        series.dashed()
    } else {
        series
    }
}

/// Throughput against concurrency, every storage workload.
pub(crate) fn storage_throughput(run: &BenchRun) -> Figure {
    let mut panel = Panel::new(
        "Throughput against requests in flight",
        Axis::log("requests in flight"),
        Axis::log("successful operations / s"),
    );
    for workload in storage_workloads(run) {
        let points = series_of(run, workload, |r| (r.concurrency as f64, r.ops_per_sec));
        panel.push(storage_series(workload, points));
    }
    panel.headroom = 1.5;
    let mut figure = Figure::new(STORAGE_THROUGHPUT, vec![panel]);
    figure.panel_width = 760;
    figure
}

/// p50 and p99 latency against concurrency, every storage workload.
pub(crate) fn storage_latency(run: &BenchRun) -> Figure {
    let panel = |title: &str, value: fn(&Measurement) -> u64| {
        let mut panel = Panel::new(
            title,
            Axis::log("requests in flight"),
            Axis::log("latency (µs)"),
        );
        for workload in storage_workloads(run) {
            let points = series_of(run, workload, |r| (r.concurrency as f64, value(r) as f64));
            panel.push(storage_series(workload, points));
        }
        panel
    };
    Figure::new(
        STORAGE_LATENCY,
        vec![
            panel("Median latency (p50)", |r| r.p50_us),
            panel("99th percentile (p99)", |r| r.p99_us),
        ],
    )
}

/// The concurrency to draw CDFs at: `preferred` if measured, else the highest.
pub(crate) fn cdf_concurrency(run: &BenchRun, preferred: usize) -> Option<usize> {
    let levels = run.concurrencies();
    if levels.contains(&preferred) {
        Some(preferred)
    } else {
        levels.into_iter().max()
    }
}

/// A latency CDF panel of `run`'s workloads at `concurrency`.
fn cdf_panel(
    title: String,
    run: &BenchRun,
    concurrency: usize,
    workloads: &[&str],
    color: impl Fn(usize, &str) -> Color,
) -> Panel {
    let mut panel = Panel::new(
        title,
        Axis::log("latency (µs)"),
        Axis::linear("share of requests at most this slow").with_range(0.0, 1.0),
    );
    panel.legend = Legend::LowerRight;
    for (index, workload) in workloads.iter().enumerate() {
        let Some(row) = run.row(workload, concurrency) else {
            continue;
        };
        let points = row
            .percentiles
            .iter()
            .map(|&(quantile, us)| (us.max(1) as f64, quantile))
            .collect();
        let series = Series::new(*workload, color(index, workload), points);
        panel.push(if is_baseline(workload) {
            series.dashed()
        } else {
            series
        });
    }
    panel
}

/// Latency CDFs: the storage workloads at 64 in flight and the chains at 16 (or the
/// highest concurrency measured). `None` when no row lists its percentiles.
pub(crate) fn latency_cdf(storage: Option<&BenchRun>, chain: Option<&BenchRun>) -> Option<Figure> {
    let mut panels = Vec::new();
    if let Some(run) = storage {
        if let Some(concurrency) = cdf_concurrency(run, STORAGE_CDF_CONCURRENCY) {
            panels.push(cdf_panel(
                format!("Storage, {concurrency} in flight"),
                run,
                concurrency,
                &storage_workloads(run),
                |_, workload| workload_color(workload),
            ));
        }
    }
    if let Some(run) = chain {
        if let Some(concurrency) = cdf_concurrency(run, CHAIN_CDF_CONCURRENCY) {
            let workloads: Vec<&str> = run
                .workloads()
                .into_iter()
                .filter(|w| *w == "ping" || chain_length(w).is_some())
                .collect();
            panels.push(cdf_panel(
                format!("Chains, {concurrency} in flight"),
                run,
                concurrency,
                &workloads,
                |index, workload| {
                    if workload == "ping" {
                        Color::Grey
                    } else {
                        chain_color(index)
                    }
                },
            ));
        }
    }
    let figure = Figure::new(LATENCY_CDF, panels);
    (!figure.is_empty()).then_some(figure)
}

/// Colours for the chain lengths or the concurrencies, grey left for the ping.
fn chain_color(index: usize) -> Color {
    const COLORS: [Color; 7] = [
        Color::Blue,
        Color::Orange,
        Color::Green,
        Color::Vermilion,
        Color::Purple,
        Color::Sky,
        Color::Brown,
    ];
    COLORS[index % COLORS.len()]
}

/// Chain throughput against length beside its RPC bound, and the share of the bound.
pub(crate) fn chain(run: &BenchRun) -> Option<Figure> {
    let mut throughput = Panel::new(
        "Executions per second against chain length",
        Axis::linear("operators per chain"),
        Axis::log("executions / s"),
    );
    throughput.legend = Legend::UpperRight;
    throughput.headroom = 3.0;
    let mut share = Panel::new(
        "Share of the RPC bound (ping ÷ (N + 2))",
        Axis::linear("operators per chain"),
        Axis::linear("executions ÷ RPC bound"),
    );
    share.legend = Legend::UpperRight;
    let mut longest = 1;
    for (index, concurrency) in run.concurrencies().into_iter().enumerate() {
        let Some(ping) = run.row("ping", concurrency) else {
            continue;
        };
        let mut measured = Vec::new();
        let mut bound = Vec::new();
        for row in run.rows.iter().filter(|r| r.concurrency == concurrency) {
            if let Some(length) = chain_length(&row.workload) {
                longest = longest.max(length);
                let limit = rpc_bound(ping.ops_per_sec, length);
                measured.push((length as f64, row.ops_per_sec));
                bound.push((length as f64, limit));
            }
        }
        measured.sort_by(|a, b| a.0.total_cmp(&b.0));
        bound.sort_by(|a, b| a.0.total_cmp(&b.0));
        let shares = measured
            .iter()
            .zip(&bound)
            .filter(|(_, b)| b.1 > 0.0)
            .map(|(m, b)| (m.0, m.1 / b.1))
            .collect();
        let color = chain_color(index);
        throughput.push(Series::new(
            format!("measured, {concurrency} in flight"),
            color,
            measured,
        ));
        throughput.push(
            Series::new(format!("RPC bound, {concurrency} in flight"), color, bound).dashed(),
        );
        share.push(Series::new(
            format!("{concurrency} in flight"),
            color,
            shares,
        ));
    }
    if share.series.is_empty() {
        return None;
    }
    share.push(
        Series::new(
            format!("target {:.0}%", RPC_BOUND_TARGET * 100.0),
            Color::Grey,
            vec![
                (0.0, RPC_BOUND_TARGET),
                (longest as f64 + 1.0, RPC_BOUND_TARGET),
            ],
        )
        .dashed()
        .without_markers(),
    );
    // Room at the top for the legend.
    let top = share.max_y().max(RPC_BOUND_TARGET).max(1.0) * 1.4;
    share.y = share.y.clone().with_range(0.0, top);
    let x_range = (0.0, longest as f64 + 1.0);
    throughput.x = throughput.x.clone().with_range(x_range.0, x_range.1);
    share.x = share.x.clone().with_range(x_range.0, x_range.1);
    Some(Figure::new(CHAIN, vec![throughput, share]))
}

/// The highest concurrency every settings run measured.
pub(crate) fn settings_concurrency(runs: &[BenchRun]) -> Option<usize> {
    let mut common: Option<Vec<usize>> = None;
    for run in runs {
        let levels = run.concurrencies();
        common = Some(match common {
            None => levels,
            Some(kept) => kept.into_iter().filter(|c| levels.contains(c)).collect(),
        });
    }
    common?.into_iter().max()
}

/// The label of a knob's value: `100 ms` for a gossip delay, the number otherwise.
pub(crate) fn knob_value_label(knob: Knob, value: u64) -> String {
    match knob {
        Knob::GossipDelay => format!("{value} ms"),
        Knob::WriteAcks | Knob::ReplicationFactor => value.to_string(),
    }
}

/// What stays fixed in one series of a knob's panel, e.g. `acks 2`.
fn fixed_label(knob: Knob, settings: &Settings) -> String {
    let mut parts = Vec::new();
    if knob != Knob::ReplicationFactor && settings.replication_factor != 3 {
        parts.push(format!("R={}", settings.replication_factor));
    }
    if knob != Knob::WriteAcks {
        parts.push(format!("acks {}", settings.write_acks));
    }
    if knob != Knob::GossipDelay {
        parts.push(format!("gossip {} ms", settings.gossip_delay_ms));
    }
    parts.join(", ")
}

/// The cost of `--write-acks`, `--gossip-delay` and `--replication-factor`: write
/// and read throughput at one concurrency, one panel per knob that was varied.
pub(crate) fn settings(runs: &[BenchRun]) -> Option<Figure> {
    let concurrency = settings_concurrency(runs)?;
    let mut panels = Vec::new();
    for knob in Knob::ALL {
        let groups = knob.series(runs);
        let mut values: Vec<u64> = groups
            .iter()
            .flatten()
            .map(|(settings, _)| knob.value(settings))
            .collect();
        values.sort_unstable();
        values.dedup();
        if values.len() < 2 {
            continue;
        }
        let names: Vec<String> = values.iter().map(|&v| knob_value_label(knob, v)).collect();
        let mut panel = Panel::new(
            format!("{}, {concurrency} in flight", knob.flag()),
            Axis::categories(knob.flag(), &names),
            Axis::log("successful operations / s"),
        );
        panel.legend = Legend::UpperRight;
        panel.headroom = 4.0;
        for (index, group) in groups.iter().enumerate() {
            let fixed = fixed_label(knob, &group[0].0);
            // Reads change little with these settings: drawn for the first group only.
            let workloads: &[&str] = if index == 0 {
                &["read", "write"]
            } else {
                &["write"]
            };
            for workload in workloads {
                let points = group
                    .iter()
                    .filter_map(|(settings, run)| {
                        let at = values.iter().position(|&v| v == knob.value(settings))?;
                        let row = run.row(workload, concurrency)?;
                        Some((at as f64, row.ops_per_sec))
                    })
                    .collect();
                let color = match (*workload, index) {
                    ("read", _) => workload_color("read"),
                    (_, 0) => workload_color("write"),
                    (_, n) => chain_color(n + 2),
                };
                let series = Series::new(format!("{workload} ({fixed})"), color, points);
                panel.push(if *workload == "read" {
                    series.dashed()
                } else {
                    series
                });
            }
        }
        panels.push(panel);
    }
    let mut figure = Figure::new(SETTINGS, panels);
    figure.panel_width = 520;
    (!figure.is_empty()).then_some(figure)
}

/// Successful and failed operations per bucket over a faults run, with its kills,
/// detections and ends of re-replication marked.
pub(crate) fn crash_timeline(timeline: &Timeline) -> Figure {
    let summary = TimelineSummary::of(timeline);
    let seconds = |t_ms: u64| t_ms as f64 / 1000.0;
    let mut panel = Panel::new(
        "Operations over a dida faults run",
        Axis::linear("seconds since the workload started"),
        Axis::linear(format!("operations per {} ms", summary.bucket_ms)),
    );
    panel.legend = Legend::UpperRight;
    panel.headroom = 1.25;
    let ok = timeline
        .buckets
        .iter()
        .map(|b| (seconds(b.t_ms), b.ok as f64))
        .collect();
    let errors = timeline
        .buckets
        .iter()
        .map(|b| (seconds(b.t_ms), b.errors as f64))
        .collect();
    panel.push(Series::new("succeeded", Color::Blue, ok).without_markers());
    panel.push(Series::new("failed or unknown", Color::Vermilion, errors).without_markers());
    panel.marks = timeline
        .marks
        .iter()
        .map(|mark| Mark {
            x: seconds(mark.t_ms),
            label: format!("{} {}", mark.what, mark.node),
            color: match mark.what {
                MarkEvent::Kill => Color::Vermilion,
                MarkEvent::Detected => Color::Orange,
                MarkEvent::ReReplicated => Color::Green,
                _ => Color::Grey,
            },
        })
        .collect();
    let mut figure = Figure::new(CRASH_TIMELINE, vec![panel]);
    figure.panel_width = 1000;
    figure
}

/// Every figure the evaluation can draw from `evaluation`.
pub(crate) fn all(evaluation: &Evaluation) -> Vec<Figure> {
    let mut figures = Vec::new();
    if let Some(run) = &evaluation.storage {
        figures.push(storage_throughput(run));
        figures.push(storage_latency(run));
    }
    figures.extend(latency_cdf(
        evaluation.storage.as_ref(),
        evaluation.chain.as_ref(),
    ));
    if let Some(run) = &evaluation.chain {
        figures.extend(chain(run));
    }
    figures.extend(settings(&evaluation.settings));
    if let Some(timeline) = &evaluation.timeline {
        figures.push(crash_timeline(timeline));
    }
    figures.retain(|figure| !figure.is_empty());
    figures
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lines::samples::{measurement, storage_setup};
    use dida_verify::timeline::{Bucket, Mark as TimelineMark};

    fn row(workload: &str, concurrency: usize, ops_per_sec: f64) -> Measurement {
        Measurement {
            p50_us: 100 * concurrency as u64,
            p99_us: 300 * concurrency as u64,
            percentiles: vec![(0.0, 20), (0.5, 100), (0.99, 300), (1.0, 2000)],
            ..measurement(workload, concurrency, ops_per_sec)
        }
    }

    fn storage() -> BenchRun {
        let mut rows = Vec::new();
        for concurrency in [1, 4, 64] {
            for (workload, ops) in [
                ("ping", 10.0),
                ("redis-get", 50.0),
                ("read", 9.0),
                ("write", 7.0),
            ] {
                rows.push(row(
                    workload,
                    concurrency,
                    ops * 1000.0 * concurrency as f64,
                ));
            }
        }
        BenchRun {
            rows,
            ..BenchRun::default()
        }
    }

    fn chain_run() -> BenchRun {
        let mut rows = Vec::new();
        for concurrency in [1, 16] {
            rows.push(row("ping", concurrency, 12_000.0));
            for length in [1, 5, 20] {
                rows.push(row(
                    &format!("chain-{length}"),
                    concurrency,
                    3000.0 / length as f64,
                ));
            }
        }
        BenchRun {
            rows,
            ..BenchRun::default()
        }
    }

    #[test]
    fn storage_figures_draw_one_line_per_workload_baselines_dashed() {
        let run = storage();
        let throughput = storage_throughput(&run);
        let labels: Vec<&str> = throughput.panels[0]
            .series
            .iter()
            .map(|s| s.label.as_str())
            .collect();
        assert_eq!(labels, vec!["ping", "redis-get", "read", "write"]);
        let ping = &throughput.panels[0].series[0];
        assert_eq!(ping.line, crate::evaluate::plot::Line::Dashed);
        assert_eq!(
            ping.points,
            vec![(1.0, 10_000.0), (4.0, 40_000.0), (64.0, 640_000.0)]
        );
        let latency = storage_latency(&run);
        assert_eq!(latency.panels.len(), 2);
        assert_eq!(latency.panels[1].series[2].points[0], (1.0, 300.0));
    }

    #[test]
    fn cdfs_are_drawn_at_64_and_16_or_at_the_highest_concurrency() {
        let storage = storage();
        let chains = chain_run();
        assert_eq!(cdf_concurrency(&storage, 64), Some(64));
        assert_eq!(cdf_concurrency(&chains, 64), Some(16));
        let figure = latency_cdf(Some(&storage), Some(&chains)).unwrap();
        assert_eq!(figure.panels[0].title, "Storage, 64 in flight");
        assert_eq!(figure.panels[1].title, "Chains, 16 in flight");
        // Latency on x, the quantile on y.
        assert_eq!(figure.panels[0].series[0].points[1], (100.0, 0.5));
        assert_eq!(figure.panels[1].series.len(), 4, "ping and three lengths");
        let without = BenchRun {
            rows: vec![Measurement {
                percentiles: Vec::new(),
                ..row("read", 1, 1.0)
            }],
            ..BenchRun::default()
        };
        assert!(latency_cdf(Some(&without), None).is_none());
    }

    #[test]
    fn chain_figure_sets_each_length_beside_its_rpc_bound() {
        let figure = chain(&chain_run()).unwrap();
        let throughput = &figure.panels[0];
        assert_eq!(throughput.series.len(), 4, "measured and bound at 1 and 16");
        let bound = &throughput.series[1];
        assert_eq!(bound.label, "RPC bound, 1 in flight");
        assert_eq!(bound.points[0], (1.0, 4000.0));
        let share = &figure.panels[1];
        assert_eq!(share.series[0].points[0], (1.0, 0.75));
        assert_eq!(share.series.last().unwrap().label, "target 60%");
        assert_eq!(throughput.x.range, Some((0.0, 21.0)));
    }

    fn settings_run(rf: usize, acks: usize, gossip: u64, write: f64) -> BenchRun {
        BenchRun {
            setup: Some(storage_setup(rf, acks, gossip)),
            rows: vec![
                row("read", 1, 9000.0),
                row("read", 16, 20_000.0),
                row("write", 1, write / 2.0),
                row("write", 16, write),
            ],
            ..BenchRun::default()
        }
    }

    #[test]
    fn settings_figure_has_a_panel_per_varied_knob() {
        let runs = vec![
            settings_run(3, 1, 0, 15_000.0),
            settings_run(3, 2, 0, 9_000.0),
            settings_run(3, 3, 0, 8_000.0),
            settings_run(3, 1, 100, 14_000.0),
            settings_run(3, 2, 100, 150.0),
        ];
        assert_eq!(settings_concurrency(&runs), Some(16));
        let figure = settings(&runs).unwrap();
        let titles: Vec<&str> = figure.panels.iter().map(|p| p.title.as_str()).collect();
        assert_eq!(
            titles,
            vec!["--write-acks, 16 in flight", "--gossip-delay, 16 in flight"]
        );
        let gossip = &figure.panels[1];
        assert_eq!(gossip.x.ticks[1].1, "100 ms");
        let labels: Vec<&str> = gossip.series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            vec!["read (acks 1)", "write (acks 1)", "write (acks 2)"]
        );
        assert_eq!(gossip.series[2].points, vec![(0.0, 9000.0), (1.0, 150.0)]);
        assert!(settings(&runs[..1]).is_none());
        assert!(settings(&[]).is_none());
    }

    #[test]
    fn the_timeline_marks_every_event_and_everything_is_drawn_into_a_directory() {
        let timeline = Timeline {
            setup: Default::default(),
            buckets: (0..50)
                .map(|i| Bucket {
                    t_ms: i * 100,
                    ok: if (20..25).contains(&i) { 5 } else { 60 },
                    errors: u64::from((20..23).contains(&i)) * 4,
                    by_op: Default::default(),
                    errors_by_op: Default::default(),
                })
                .collect(),
            marks: vec![
                TimelineMark::at_ns(2_000_000_000, MarkEvent::Kill, "s2"),
                TimelineMark::at_ns(2_300_000_000, MarkEvent::Detected, "s2"),
                TimelineMark::at_ns(2_600_000_000, MarkEvent::ReReplicated, "s2"),
            ],
        };
        let figure = crash_timeline(&timeline);
        let marks: Vec<&str> = figure.panels[0]
            .marks
            .iter()
            .map(|m| m.label.as_str())
            .collect();
        assert_eq!(marks, vec!["kill s2", "detected s2", "re-replicated s2"]);
        assert_eq!(figure.panels[0].marks[0].x, 2.0);

        let evaluation = Evaluation {
            storage: Some(storage()),
            chain: Some(chain_run()),
            settings: vec![settings_run(3, 1, 0, 1.0), settings_run(3, 2, 0, 2.0)],
            timeline: Some(timeline),
            ..Evaluation::default()
        };
        let figures = all(&evaluation);
        let files: Vec<&str> = figures.iter().map(|f| f.file.as_str()).collect();
        assert_eq!(files, ALL_FILES.to_vec());
        let dir = tempfile::tempdir().unwrap();
        for figure in &figures {
            figure.write(dir.path()).unwrap();
        }
        let svg = std::fs::read_to_string(dir.path().join(CRASH_TIMELINE)).unwrap();
        assert!(svg.contains("re-replicated s2"));
    }
}
