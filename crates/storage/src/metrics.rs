//! The storage node's Prometheus metrics, read from the node's own state at scrape
//! time: the store's counts, the replication counters `Status` also reports, the
//! gossip backlog and the node's view of the cluster. Nothing is counted twice, and
//! the request path pays nothing for them.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use dida_core::liveness::Liveness;
use dida_telemetry::ReadinessCheck;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::node_core::Node;

/// Collects a storage node's metrics when `/metrics` is scraped.
#[derive(Debug)]
pub(crate) struct StorageCollector {
    node: Arc<Node>,
}

impl StorageCollector {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: f64,
) -> fmt::Result {
    let metric = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> fmt::Result {
    let metric = encoder.encode_descriptor(name, help, unit, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

impl Collector for StorageCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let node = &self.node;
        let state = &node.peering;
        let (keys, records) = node.store.counts();
        gauge(
            &mut encoder,
            "storage_keys",
            "Keys this replica holds",
            None,
            keys as f64,
        )?;
        gauge(
            &mut encoder,
            "storage_records",
            "Versions of keys this replica holds (at most max_versions per key)",
            None,
            records as f64,
        )?;
        counter(
            &mut encoder,
            "storage_versions_discarded",
            "Versions dropped for being older than the max_versions newest of their key",
            None,
            node.store.discarded(),
        )?;
        let (depth, oldest) = node.gossip.backlog();
        gauge(
            &mut encoder,
            "storage_gossip_outbox_records",
            "Records waiting in the gossip outboxes (all peers)",
            None,
            depth as f64,
        )?;
        gauge(
            &mut encoder,
            "storage_gossip_outbox_oldest_age",
            "How long the oldest record in a gossip outbox has waited",
            Some(&Unit::Seconds),
            oldest.as_secs_f64(),
        )?;
        let stats = &state.stats();
        counter(
            &mut encoder,
            "storage_gossip_pushes",
            "Push messages sent to replicas",
            None,
            stats.push_messages_sent.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "storage_gossip_pushed_records",
            "Records sent to replicas in push messages",
            None,
            stats.records_pushed.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "storage_gossip_push_sent",
            "Payload bytes of push messages sent",
            Some(&Unit::Bytes),
            stats.push_bytes_sent.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "storage_gossip_push_failures",
            "Push messages that failed and were retried",
            None,
            stats.push_failures.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "storage_anti_entropy_rounds",
            "Anti-entropy rounds run with a peer",
            None,
            stats.anti_entropy_rounds.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "storage_anti_entropy_sent",
            "Bytes sent by anti-entropy",
            Some(&Unit::Bytes),
            stats.anti_entropy_bytes_sent.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "storage_anti_entropy_received",
            "Bytes received by anti-entropy",
            Some(&Unit::Bytes),
            stats.anti_entropy_bytes_received.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "storage_repaired_records",
            "Records anti-entropy found missing and repaired",
            None,
            stats.records_repaired.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "storage_handoff_records",
            "Records of ranges this node no longer replicates, sent to their replicas",
            None,
            stats.handoff_records_sent.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "storage_handoff_sent",
            "Bytes of handoff pushes sent",
            Some(&Unit::Bytes),
            stats.handoff_bytes_sent.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "storage_dropped_records",
            "Records dropped once every replica of their range confirmed holding them",
            None,
            stats.records_dropped.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "storage_dropped",
            "Bytes of keys and values dropped by handoff",
            Some(&Unit::Bytes),
            stats.bytes_dropped.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "storage_catch_up_records",
            "Records peers sent while this node caught up (joining or rejoining): the ranges gained",
            None,
            stats.catch_up_records_received.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "storage_catch_up_received",
            "Bytes of keys and values peers sent while this node caught up",
            Some(&Unit::Bytes),
            stats.catch_up_bytes_received.load(Relaxed),
        )?;
        let membership = &state.membership_stats();
        counter(
            &mut encoder,
            "storage_suspicions",
            "Peers this node's failure detector started to suspect",
            None,
            membership.suspicions.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "storage_declarations",
            "Peers this node's failure detector declared failed",
            None,
            membership.declarations.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "storage_fences",
            "Times this node learned it was declared failed and fenced itself",
            None,
            membership.fences.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "storage_catch_ups",
            "Times this node caught up and entered the ring (at start and after each rejoin)",
            None,
            membership.catch_ups.load(Relaxed),
        )?;
        let view = state.view().current();
        counter(
            &mut encoder,
            "storage_view_changes",
            "Changes of this node's view of the cluster since it started (its epoch)",
            None,
            view.epoch,
        )?;
        gauge(
            &mut encoder,
            "storage_view_epoch",
            "Epoch of this node's view of the cluster (it grows with each view change)",
            None,
            view.epoch as f64,
        )?;
        let config = state.cluster().decided();
        gauge(
            &mut encoder,
            "storage_config_epoch",
            "Epoch of the cluster configuration this node knows decided (it grows with \
             each membership change, `dida cluster remove`)",
            None,
            config.epoch as f64,
        )?;
        gauge(
            &mut encoder,
            "storage_members_leaving",
            "Members the cluster configuration has leaving: handing their records off",
            None,
            config
                .members
                .iter()
                .filter(|m| m.standing == dida_core::Standing::Leaving)
                .count() as f64,
        )?;
        gauge(
            &mut encoder,
            "storage_fenced",
            "1 while this node has been declared failed and refuses service",
            None,
            if state.is_fenced() { 1.0 } else { 0.0 },
        )?;
        let suspected = self.node.detection.suspected().len();
        gauge(
            &mut encoder,
            "storage_suspected_peers",
            "Peers this node suspects now",
            None,
            suspected as f64,
        )?;
        gauge(
            &mut encoder,
            "storage_failed_peers",
            "Peers declared failed in this node's view",
            None,
            state.failed_ids().len() as f64,
        )?;
        Ok(())
    }
}

/// Ready means serving requests for its share: neither fenced (declared failed, so
/// refusing everything until it rejoins) nor still catching up to enter the ring.
pub(crate) fn readiness(node: Arc<Node>) -> ReadinessCheck {
    Arc::new(move || {
        let state = &node.peering;
        if state.is_fenced() {
            return Err("fenced: declared failed by its peers, rejoining".into());
        }
        match state.view().current().members.get(state.me()).liveness {
            Liveness::Alive => Ok(()),
            Liveness::Joining => Err("joining: catching up before entering the ring".into()),
            Liveness::Failed => Err("out of the ring in its own view".into()),
        }
    })
}
