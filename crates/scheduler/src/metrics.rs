//! The scheduler's Prometheus metrics: executions submitted and finished by
//! application and outcome, their end-to-end latency, and each worker's load.
//!
//! The application label takes values from a bounded set ([`AppLabels`]): the
//! name is whatever a client submits, and labelling by it raw once grew a
//! scheduler's `/metrics` to 749 MB.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::node::SchedulerState;

/// An application (the name it was submitted with; `-` for an anonymous chain).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct App {
    app: String,
}

/// An application and how its execution ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppOutcome {
    app: String,
    /// `succeeded` or `failed`.
    outcome: &'static str,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~13 s: a one-operator chain on loopback to a slow long chain.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
}

/// Distinct application names a scheduler labels metrics with; executions of any
/// other application are counted under [`OTHER_APP`]. Each name costs a few
/// dozen series (a histogram's buckets per outcome); real clusters run a handful
/// of applications.
pub const MAX_APP_LABELS: usize = 64;

/// Longest application name used as a label; a longer one counts as [`OTHER_APP`]
/// (a submitted name may be 4096 bytes, repeated in every series).
pub const MAX_APP_LABEL_BYTES: usize = 128;

/// The label of executions whose application has no label of its own.
pub const OTHER_APP: &str = "other";

/// The application names metrics are labelled with: the first [`MAX_APP_LABELS`]
/// distinct names of at most [`MAX_APP_LABEL_BYTES`] a scheduler sees, `-` for an
/// anonymous chain, and [`OTHER_APP`] for every other.
#[derive(Debug, Default)]
struct AppLabels {
    named: Mutex<HashSet<String>>,
}

impl AppLabels {
    fn label(&self, app: &str) -> String {
        if app.is_empty() {
            return "-".to_string();
        }
        if app.len() > MAX_APP_LABEL_BYTES || app == OTHER_APP {
            return OTHER_APP.to_string();
        }
        let mut named = self.named.lock().unwrap_or_else(|e| e.into_inner());
        if named.contains(app) {
            return app.to_string();
        }
        if named.len() < MAX_APP_LABELS {
            named.insert(app.to_string());
            return app.to_string();
        }
        OTHER_APP.to_string()
    }
}

/// The execution instruments of one scheduler. Cloning shares them.
#[derive(Debug, Clone)]
pub struct SchedulerMetrics {
    apps: Arc<AppLabels>,
    submitted: Family<App, Counter>,
    finished: Family<AppOutcome, Counter>,
    latency: Family<App, Histogram, fn() -> Histogram>,
}

impl Default for SchedulerMetrics {
    fn default() -> Self {
        Self {
            apps: Arc::default(),
            submitted: Family::default(),
            finished: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl SchedulerMetrics {
    /// Adds the instruments to a node's registry.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "scheduler_executions_submitted",
            "Executions accepted, by application (the first 64 names seen; `other` beyond)",
            self.submitted.clone(),
        );
        registry.register(
            "scheduler_executions_finished",
            "Executions ended, by application and outcome (timeouts count as failed)",
            self.finished.clone(),
        );
        registry.register_with_unit(
            "scheduler_execution_duration",
            "End-to-end time of an execution, from submit to its outcome, by application",
            Unit::Seconds,
            self.latency.clone(),
        );
    }

    /// An execution of `app` was accepted.
    pub fn submitted(&self, app: &str) {
        self.submitted
            .get_or_create(&App {
                app: self.apps.label(app),
            })
            .inc();
    }

    /// An execution of `app` ended after `took`.
    pub fn finished(&self, app: &str, ok: bool, took: Duration) {
        let app = self.apps.label(app);
        self.finished
            .get_or_create(&AppOutcome {
                app: app.clone(),
                outcome: if ok { "succeeded" } else { "failed" },
            })
            .inc();
        self.latency
            .get_or_create(&App { app })
            .observe(took.as_secs_f64());
    }
}

/// A worker, by id.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Worker {
    worker: String,
}

/// Reads the load table at scrape time: operators assigned to each worker and not
/// yet completed (what the least-loaded placement compares).
#[derive(Debug)]
pub(crate) struct LoadCollector {
    pub state: Arc<SchedulerState>,
}

impl Collector for LoadCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let loads: Vec<u64> = self
            .state
            .executions
            .lock()
            .expect("execution table lock poisoned")
            .loads()
            .loads()
            .to_vec();
        let mut family = encoder.encode_descriptor(
            "scheduler_worker_load",
            "Operators assigned to each worker and not completed yet",
            None,
            MetricType::Gauge,
        )?;
        let workers = self.state.workers.snapshot().workers;
        for (slot, worker) in workers.into_iter().enumerate() {
            let load = loads.get(slot).copied().unwrap_or(0);
            let labels = Worker { worker: worker.id };
            ConstGauge::new(load as i64).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_labels_are_bounded() {
        let labels = AppLabels::default();
        assert_eq!(labels.label(""), "-");
        assert_eq!(
            labels.label(&"x".repeat(MAX_APP_LABEL_BYTES + 1)),
            OTHER_APP
        );
        let names: Vec<String> = (0..MAX_APP_LABELS).map(|i| format!("app{i}")).collect();
        for name in &names {
            assert_eq!(labels.label(name), *name);
        }
        assert_eq!(labels.label("one-too-many"), OTHER_APP);
        assert_eq!(
            labels.label("app3"),
            "app3",
            "a labelled name keeps its label"
        );
    }
}
