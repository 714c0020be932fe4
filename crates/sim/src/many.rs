//! Many seeds, spread over the machine's cores (each seed on its own
//! single-threaded runtime, so parallelism does not affect any run).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use dida_verify::plan::NemesisKind;

use crate::run::{run_seed, SeedReport, SimConfig};

/// Runs seeds `first..first + count` and returns their reports in seed order.
/// `progress` is called after each seed.
pub fn run_seeds(
    first: u64,
    count: u64,
    config: &SimConfig,
    progress: &(dyn Fn(&SeedReport) + Sync),
) -> anyhow::Result<Vec<SeedReport>> {
    let next = AtomicU64::new(first);
    let reports = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let seed = next.fetch_add(1, Ordering::Relaxed);
                        if seed >= first + count {
                            return Ok(());
                        }
                        let report = run_seed(seed, config)?;
                        progress(&report);
                        reports.lock().expect("reports lock poisoned").push(report);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("a simulation thread panicked"))??;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    let mut reports = reports.into_inner().expect("reports lock poisoned");
    reports.sort_by_key(|r| r.seed);
    Ok(reports)
}

/// What many seeds add up to, per nemesis kind.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct KindSummary {
    /// Seeds run with this nemesis.
    pub seeds: u64,
    /// Of those, passing every check.
    pub passed: u64,
    /// Of those, losing more nodes than `--write-acks` tolerates (loss checks
    /// skipped).
    pub beyond_tolerance: u64,
    /// Faults injected (those skipped, the budget spent, left out).
    pub faults: u64,
    /// The sum over seeds of the most nodes lost at one time.
    pub peak_lost: u64,
    /// Writes, CAS and reads recorded.
    pub operations: u64,
    /// Acknowledged writes no serving node holds.
    pub lost_acknowledged: u64,
}

/// Adds the reports up per nemesis kind, in the kinds' order.
pub fn summarize(reports: &[SeedReport]) -> Vec<(NemesisKind, KindSummary)> {
    NemesisKind::ALL
        .into_iter()
        .map(|kind| {
            let mut sum = KindSummary::default();
            for report in reports.iter().filter(|r| r.nemesis == kind) {
                sum.seeds += 1;
                sum.passed += u64::from(report.passed());
                sum.beyond_tolerance += u64::from(report.beyond_tolerance);
                sum.faults += report.faults.iter().filter(|f| f.error.is_none()).count() as u64;
                sum.peak_lost += report.peak_lost as u64;
                sum.operations += report.operations as u64;
                sum.lost_acknowledged += report.lost_acknowledged as u64;
            }
            (kind, sum)
        })
        .filter(|(_, sum)| sum.seeds > 0)
        .collect()
}
