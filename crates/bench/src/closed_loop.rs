//! The closed-loop load generator every workload runs under.
//!
//! Closed loop: each of `concurrency` tasks issues its next request as soon as the
//! previous one has answered, so exactly `concurrency` requests are in flight at all
//! times. That fixes the load at a known level, which is what makes the throughput of
//! two workloads at the same concurrency comparable (an open loop at a fixed rate
//! would instead measure how far each one falls behind).
//!
//! Each task records latencies in its own histogram, so the measurement path shares
//! nothing between tasks; the histograms are merged once the run is over.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;

/// Largest latency the histograms track, in microseconds (one minute). Requests have
/// a client deadline far below this; anything slower is recorded as this value.
const MAX_LATENCY_US: u64 = 60_000_000;

/// One kind of request, issued back to back by one task of a closed loop.
///
/// Each task owns its operation, so a workload that needs per-task state (the CAS
/// workload's counter) keeps it without locking, and the state survives from the
/// warm-up into the measured run.
pub(crate) trait Operation: Send + 'static {
    /// Issues one request and waits for its answer. An error counts as a failed
    /// request: it is counted and reported, and its latency is not recorded.
    fn call(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// What one closed-loop run measured.
#[derive(Debug)]
pub(crate) struct Measurement {
    /// Requests that succeeded.
    pub completed: u64,
    /// Requests that failed.
    pub errors: u64,
    /// The first failure seen, so that a non-zero error count can be explained.
    pub first_error: Option<String>,
    /// Time from the start of the run until the last task's last request answered.
    pub elapsed: Duration,
    /// Latency of every successful request, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl Measurement {
    /// Adds `other`, measured right after this one, to it: one measurement of the
    /// two runs back to back.
    pub fn absorb(&mut self, other: Measurement) -> anyhow::Result<()> {
        self.completed += other.completed;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed += other.elapsed;
        self.latency_us
            .add(&other.latency_us)
            .context("cannot merge latency histograms")
    }

    /// Successful requests per second of the run.
    pub fn throughput(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.completed as f64 / seconds
        } else {
            0.0
        }
    }
}

/// What one task of a run measured.
struct TaskResult {
    errors: u64,
    first_error: Option<String>,
    latency_us: Histogram<u64>,
}

/// Runs every operation in its own task, back to back, until `duration` has passed,
/// and merges what the tasks measured. The operations are handed back (with whatever
/// state they keep) so the same ones can be run again, e.g. after a warm-up.
pub(crate) async fn run<O: Operation>(
    ops: Vec<O>,
    duration: Duration,
) -> anyhow::Result<(Vec<O>, Measurement)> {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = ops
        .into_iter()
        .map(|op| tokio::spawn(drive(op, deadline)))
        .collect();
    let finished = futures::future::try_join_all(tasks)
        .await
        .context("a load task panicked")?
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    let elapsed = start.elapsed();

    let mut ops = Vec::with_capacity(finished.len());
    let mut results = Vec::with_capacity(finished.len());
    for (op, result) in finished {
        ops.push(op);
        results.push(result);
    }
    let errors = results.iter().map(|r| r.errors).sum();
    let first_error = results.iter().find_map(|r| r.first_error.clone());
    let latency_us = merge(results.into_iter().map(|r| r.latency_us))?;
    let measurement = Measurement {
        completed: latency_us.len(),
        errors,
        first_error,
        elapsed,
        latency_us,
    };
    Ok((ops, measurement))
}

/// One task of a run: calls `op` until `deadline`, timing each call.
async fn drive<O: Operation>(mut op: O, deadline: Instant) -> anyhow::Result<(O, TaskResult)> {
    let mut result = TaskResult {
        errors: 0,
        first_error: None,
        latency_us: new_histogram()?,
    };
    while Instant::now() < deadline {
        let sent = Instant::now();
        match op.call().await {
            Ok(()) => result.latency_us.saturating_record(micros(sent.elapsed())),
            Err(error) => {
                result.errors += 1;
                result
                    .first_error
                    .get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }
    Ok((op, result))
}

/// An empty latency histogram: 1 µs to a minute, three significant digits (so a
/// percentile is off by at most 0.1%); every benchmark records into one.
pub(crate) fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("cannot create a latency histogram")
}

/// Adds up the histograms of a run's tasks into one.
fn merge(histograms: impl IntoIterator<Item = Histogram<u64>>) -> anyhow::Result<Histogram<u64>> {
    let mut merged = new_histogram()?;
    for histogram in histograms {
        merged
            .add(&histogram)
            .context("cannot merge latency histograms")?;
    }
    Ok(merged)
}

/// A duration in whole microseconds, saturating (a u64 of microseconds is 584 000
/// years).
fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram_of(values: &[u64]) -> Histogram<u64> {
        let mut histogram = new_histogram().unwrap();
        for &value in values {
            histogram.record(value).unwrap();
        }
        histogram
    }

    #[test]
    fn merging_keeps_every_sample_and_the_percentiles_of_the_union() {
        let fast = histogram_of(&[100; 90]);
        let slow = histogram_of(&[10_000; 10]);
        let merged = merge([fast, slow]).unwrap();
        assert_eq!(merged.len(), 100);
        assert_eq!(merged.value_at_quantile(0.5), 100);
        assert!(merged.value_at_quantile(0.99).abs_diff(10_000) <= 10);
    }

    #[test]
    fn merging_nothing_gives_an_empty_histogram() {
        assert_eq!(merge([]).unwrap().len(), 0);
    }

    #[test]
    fn throughput_is_successes_per_second_and_zero_for_an_empty_run() {
        let measurement = |completed, elapsed| Measurement {
            completed,
            errors: 0,
            first_error: None,
            elapsed,
            latency_us: new_histogram().unwrap(),
        };
        assert_eq!(
            measurement(500, Duration::from_millis(250)).throughput(),
            2000.0
        );
        assert_eq!(measurement(0, Duration::ZERO).throughput(), 0.0);
    }

    /// Succeeds twice, then fails, and so on; counts its calls.
    struct Flaky {
        calls: u64,
    }

    impl Operation for Flaky {
        async fn call(&mut self) -> anyhow::Result<()> {
            self.calls += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
            if self.calls.is_multiple_of(3) {
                anyhow::bail!("call {} failed", self.calls);
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_run_counts_successes_and_errors_and_hands_the_operations_back() {
        let ops = vec![Flaky { calls: 0 }, Flaky { calls: 0 }];
        let (ops, measurement) = run(ops, Duration::from_millis(50)).await.unwrap();
        let calls: u64 = ops.iter().map(|op| op.calls).sum();
        assert!(calls >= 6, "only {calls} calls in 50 ms");
        assert_eq!(measurement.completed + measurement.errors, calls);
        assert_eq!(
            measurement.errors,
            ops.iter().map(|op| op.calls / 3).sum::<u64>()
        );
        assert_eq!(measurement.first_error.as_deref(), Some("call 3 failed"));
        assert!(measurement.elapsed >= Duration::from_millis(50));
        assert!(measurement.latency_us.value_at_quantile(0.5) >= 1000);
    }
}
