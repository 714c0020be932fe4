//! The worker's Prometheus metrics: invocations of each operator by outcome, how
//! long they took, how long instantiating the operator took and how much fuel they
//! burned, the invocations running now, and whether each operator load found it
//! compiled already (the compile cache).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// An operator and how its invocation ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    operator: String,
    /// `ok` or `error`.
    outcome: &'static str,
}

/// An operator class.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operator {
    operator: String,
}

/// Whether a load found the operator compiled.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CacheLookup {
    /// `hit` (compiled already) or `miss` (compiled, or waited for a compilation).
    cache: &'static str,
}

/// Operator loads by compile-cache outcome; the registry counts them.
pub(crate) type LoadCounter = Family<CacheLookup, Counter>;

/// Counts one load in `loads`: `hit` when the operator was compiled already.
pub(crate) fn count_load(loads: &LoadCounter, hit: bool) {
    loads
        .get_or_create(&CacheLookup {
            cache: if hit { "hit" } else { "miss" },
        })
        .inc();
}

fn duration_histogram() -> Histogram {
    // 100 µs to ~13 s: a trivial operator to one near the wall-time limit.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
}

/// The instruments of one worker.
#[derive(Debug, Clone)]
pub(crate) struct WorkerMetrics {
    invocations: Family<Outcome, Counter>,
    duration: Family<Operator, Histogram, fn() -> Histogram>,
    fuel: Family<Operator, Counter>,
    running: Gauge,
    instantiation: Family<Operator, Histogram, fn() -> Histogram>,
    loads: LoadCounter,
}

impl WorkerMetrics {
    /// Creates the instruments; [`WorkerMetrics::register`] exposes them.
    pub fn new() -> Self {
        Self {
            invocations: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            fuel: Family::default(),
            running: Gauge::default(),
            instantiation: Family::new_with_constructor(duration_histogram),
            loads: LoadCounter::default(),
        }
    }

    /// The counter of operator loads, for the registry to count into.
    pub fn loads(&self) -> LoadCounter {
        self.loads.clone()
    }

    /// Adds the instruments to a node's registry.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "worker_invocations",
            "Operator invocations finished, by operator and outcome",
            self.invocations.clone(),
        );
        registry.register_with_unit(
            "worker_invocation_duration",
            "Time of an operator invocation, loading and instantiation included",
            Unit::Seconds,
            self.duration.clone(),
        );
        registry.register(
            "worker_fuel_used",
            "Fuel (wasm instructions, roughly) operators burned",
            self.fuel.clone(),
        );
        registry.register_with_unit(
            "worker_instantiation_duration",
            "Time to instantiate a compiled operator in a fresh sandbox, by operator",
            Unit::Seconds,
            self.instantiation.clone(),
        );
        registry.register(
            "worker_operator_loads",
            "Operator loads by compile-cache outcome (hit: compiled already)",
            self.loads.clone(),
        );
        registry.register(
            "worker_invocations_running",
            "Operator invocations running now",
            self.running.clone(),
        );
    }

    /// An invocation starts.
    pub fn started(&self) {
        self.running.inc();
    }

    /// An invocation of `operator` ended after `took`, burning `fuel`, having spent
    /// `instantiation` (if it got that far) instantiating the operator.
    pub fn finished(
        &self,
        operator: &str,
        ok: bool,
        took: Duration,
        fuel: u64,
        instantiation: Option<Duration>,
    ) {
        self.running.dec();
        self.invocations
            .get_or_create(&Outcome {
                operator: operator.to_string(),
                outcome: if ok { "ok" } else { "error" },
            })
            .inc();
        let operator = Operator {
            operator: operator.to_string(),
        };
        self.duration
            .get_or_create(&operator)
            .observe(took.as_secs_f64());
        self.fuel.get_or_create(&operator).inc_by(fuel);
        if let Some(instantiation) = instantiation {
            self.instantiation
                .get_or_create(&operator)
                .observe(instantiation.as_secs_f64());
        }
    }
}
