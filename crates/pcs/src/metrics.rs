//! The PCS's own Prometheus metrics, beside those of its RPCs: the node processes it
//! started, by role and by whether they still run, read from its table of children
//! at scrape time.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::children::Children;

/// Collects the PCS's metrics when `/metrics` is scraped.
#[derive(Debug)]
pub(crate) struct PcsCollector {
    children: Arc<Children>,
}

impl PcsCollector {
    pub fn new(children: Arc<Children>) -> Self {
        Self { children }
    }
}

impl Collector for PcsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let mut counts: BTreeMap<(String, &'static str), i64> = BTreeMap::new();
        for node in self.children.list() {
            let state = if node.running { "running" } else { "exited" };
            *counts.entry((node.role, state)).or_default() += 1;
        }
        let mut metric = encoder.encode_descriptor(
            "pcs_nodes",
            "Node processes this PCS started, by role and by state (running or exited)",
            None,
            MetricType::Gauge,
        )?;
        for ((role, state), count) in counts {
            let labels = [("role", role.as_str()), ("state", state)];
            ConstGauge::new(count).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
