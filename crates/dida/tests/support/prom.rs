//! Reading a node's `/metrics` as Prometheus would: fetched over HTTP and parsed
//! by a Prometheus text parser, never matched as strings.

use std::net::SocketAddr;

use dida_bench::http_client::{HttpClient, StatusCode};
use prometheus_parse::{Labels, Scrape, Value};

/// Scrapes and parses `/metrics` at `addr`.
pub async fn scrape(http: &HttpClient, addr: SocketAddr) -> Scrape {
    let reply = http.get(&format!("http://{addr}/metrics")).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    Scrape::parse(reply.body.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text")
}

/// The sum of every sample of `name` (over all label sets) whose labels satisfy
/// `keep`; histograms count their observations.
pub fn total(scrape: &Scrape, name: &str, keep: impl Fn(&Labels) -> bool) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && keep(&s.labels))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

/// Keeps every label set.
pub fn any(_: &Labels) -> bool {
    true
}
