//! `dida sim`: the deterministic simulator of a storage cluster (`dida-sim`).

use std::time::Instant;

use anyhow::bail;
use clap::Args;
use dida_core::limits::check_write_acks;
use dida_sim::many::{run_seeds, summarize};
use dida_sim::{run_seed, SeedReport, SimConfig};
use dida_verify::plan::{Fault, NemesisKind};

/// Flags of `dida sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// How many seeds to run (from --first-seed on).
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed of the range.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Run this one seed only (and print its trace with --trace).
    #[arg(long)]
    seed: Option<u64>,
    /// Print every event of the run (with --seed).
    #[arg(long, requires = "seed")]
    trace: bool,
    /// --write-acks of every node (default: 2 or 3, drawn by the seed).
    #[arg(long)]
    write_acks: Option<usize>,
    /// --probe-fanout of every node, 1 to 1024 (default: the platform's, 3; the
    /// simulated cluster has 5 nodes, so 4 or more probes every peer each period).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    probe_fanout: Option<usize>,
    /// The nemesis: kill, pause, partition, restart, mixed (each fault drawn among
    /// those four), leave (one member removed among mixed faults), join (new nodes
    /// join, half the faults, among mixed ones), rolling-restart, declare-all or
    /// storm (default: by seed, the first seven in turn).
    #[arg(long)]
    nemesis: Option<NemesisKind>,
    /// Turn the fence of invariant D2 off, to see the checks catch the lost writes.
    #[arg(long)]
    break_fence: bool,
    /// Acknowledge writes before the other --write-acks replicas hold them (a
    /// deliberate bug), to see the checks catch the acknowledged writes it loses.
    #[arg(long)]
    break_acks: bool,
    /// Print one JSON object per seed instead of the summary.
    #[arg(long)]
    json: bool,
}

fn one_line(report: &SeedReport) -> String {
    let verdict = if report.passed() { "ok" } else { "FAILED" };
    let faults: Vec<String> = report.faults.iter().map(fault_text).collect();
    format!(
        "seed {:>5} {verdict:<6} nemesis {:<9} acks {} ops {:>5} peak lost {} lost nodes {:?}{} faults [{}]",
        report.seed,
        report.nemesis,
        report.write_acks,
        report.operations,
        report.peak_lost,
        report.lost_nodes,
        if report.beyond_tolerance {
            " (beyond tolerance)"
        } else {
            ""
        },
        faults.join("; ")
    )
}

/// Runs the simulator; fails when any seed fails a check.
pub fn run(args: SimArgs) -> anyhow::Result<()> {
    if let Some(acks) = args.write_acks {
        // The simulated cluster has replication factor 3.
        check_write_acks(acks, 3).map_err(anyhow::Error::msg)?;
    }
    let config = SimConfig {
        write_acks: args.write_acks,
        nemesis: args.nemesis,
        probe_fanout: args.probe_fanout,
        trace: args.trace,
        break_fence: args.break_fence,
        break_acks: args.break_acks,
    };
    let began = Instant::now();
    let reports = match args.seed {
        Some(seed) => {
            let report = run_seed(seed, &config)?;
            for line in &report.trace {
                println!("{line}");
            }
            vec![report]
        }
        None => run_seeds(args.first_seed, args.seeds, &config, &|report| {
            if !report.passed() {
                eprintln!("{}", one_line(report));
            }
        })?,
    };
    if args.json {
        for report in &reports {
            println!("{}", serde_json::to_string(report)?);
        }
    } else {
        for report in &reports {
            if !report.passed() || args.seed.is_some() {
                println!("{}", one_line(report));
                for finding in &report.findings {
                    println!("    {}: {}", finding.invariant, finding.detail);
                }
            }
        }
        println!("nemesis    seeds  passed  beyond-tolerance  faults   peak-lost  operations  acked-lost");
        for (kind, sum) in summarize(&reports) {
            println!(
                "{:<10} {:>5}  {:>6}  {:>16}  {:>6}  {:>10}  {:>10}  {:>10}",
                kind.to_string(),
                sum.seeds,
                sum.passed,
                sum.beyond_tolerance,
                sum.faults,
                sum.peak_lost,
                sum.operations,
                sum.lost_acknowledged
            );
        }
        println!(
            "{} seeds in {:.1} s",
            reports.len(),
            began.elapsed().as_secs_f64()
        );
    }
    let failed: Vec<u64> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.seed)
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} seeds failed: {failed:?}",
            failed.len(),
            reports.len()
        );
    }
    Ok(())
}

/// A fault in a few words: `partition s3 2.7-5.1s`, `kill s1 9.0s`, and why it was
/// not injected, if it was not.
fn fault_text(fault: &Fault) -> String {
    let kind = dida_verify::report::serde_name(&fault.kind);
    let at = fault.at_ns as f64 / 1e9;
    let mut text = match fault.end_ns {
        Some(end) => format!("{kind} {} {at:.1}-{:.1}s", fault.node, end as f64 / 1e9),
        None => format!("{kind} {} {at:.1}s", fault.node),
    };
    if let Some(error) = &fault.error {
        text.push_str(&format!(" ({error})"));
    }
    text
}
