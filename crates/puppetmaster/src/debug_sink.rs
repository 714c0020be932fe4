//! The PuppetMaster's service on port 10001 (SPEC §6.2): after a `debug` line,
//! workers send it what each operator output and wrote, with the execution's
//! metadata, and it prints that live.
//!
//! Anyone who reaches the port can send reports, so what the sink spends on them is
//! bounded: a report is at most [`MAX_DEBUG_REPORT_BYTES`] (a larger one is refused
//! while it is decoded), a connection has at most [`DEBUG_SINK_CONCURRENCY`] reports
//! in hand at once, and the sink prints at most [`DEBUG_SINK_BYTES_PER_SECOND`] of
//! them — reports beyond that are refused with `RESOURCE_EXHAUSTED`. Nothing is kept
//! once printed.

use std::sync::{Arc, Mutex};

use dida_core::limits::{
    DEBUG_SINK_BYTES_PER_SECOND, DEBUG_SINK_CONCURRENCY, MAX_DEBUG_REPORT_BYTES,
};
use dida_proto::control::debug_sink_server::{DebugSink, DebugSinkServer};
use dida_proto::control::{DebugReportReply, DebugReportRequest};
use dida_proto::convert::version_from_wire;
use dida_proto::server::ServerHandle;
use prost::Message;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use crate::output::{PmEvent, Printer};

/// Prints every report it receives, within its byte rate.
#[derive(Debug, Clone)]
struct Sink {
    printer: Arc<Printer>,
    budget: Arc<Mutex<ByteBudget>>,
}

#[tonic::async_trait]
impl DebugSink for Sink {
    async fn report(
        &self,
        request: Request<DebugReportRequest>,
    ) -> Result<Response<DebugReportReply>, Status> {
        let report = request.into_inner();
        let bytes = report.encoded_len();
        let taken = self
            .budget
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(bytes, Instant::now());
        if !taken {
            return Err(Status::resource_exhausted(format!(
                "the debug sink prints at most {DEBUG_SINK_BYTES_PER_SECOND} bytes of reports \
                 per second; this report of {bytes} bytes was dropped"
            )));
        }
        let event = debug_event(report);
        self.printer.pm_event(&event, || describe(&event));
        Ok(Response::new(DebugReportReply {}))
    }
}

/// A token bucket of bytes: refills at `rate` bytes per second up to `rate` bytes.
#[derive(Debug)]
struct ByteBudget {
    rate: usize,
    available: f64,
    refilled: Instant,
}

impl ByteBudget {
    fn new(rate: usize, now: Instant) -> Self {
        Self {
            rate,
            available: rate as f64,
            refilled: now,
        }
    }

    /// Takes `bytes` from the budget if it has them at `now`.
    fn take(&mut self, bytes: usize, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.available = (self.available + elapsed * self.rate as f64).min(self.rate as f64);
        self.refilled = now;
        if bytes as f64 > self.available {
            return false;
        }
        self.available -= bytes as f64;
        true
    }
}

/// Starts the sink on `listener`, with the bounds of the module documentation.
pub fn start(listener: TcpListener, printer: Arc<Printer>) -> anyhow::Result<ServerHandle> {
    let sink = Sink {
        printer,
        budget: Arc::new(Mutex::new(ByteBudget::new(
            DEBUG_SINK_BYTES_PER_SECOND,
            Instant::now(),
        ))),
    };
    let service = DebugSinkServer::new(sink)
        .max_decoding_message_size(MAX_DEBUG_REPORT_BYTES)
        .max_encoding_message_size(MAX_DEBUG_REPORT_BYTES);
    let router = dida_proto::transport::server_builder(Default::default())?
        .concurrency_limit_per_connection(DEBUG_SINK_CONCURRENCY)
        .add_service(service);
    ServerHandle::spawn(router, listener)
}

fn debug_event(report: DebugReportRequest) -> PmEvent {
    let version = |v: Option<dida_proto::storage::Version>| {
        v.map(version_from_wire).map_or(
            Value::Null,
            |v| json!({ "number": v.number, "replica": v.replica }),
        )
    };
    let mut entries: Vec<_> = report.entries.into_iter().collect();
    entries.sort();
    let mut pinned: Vec<_> = report.pinned.into_iter().collect();
    pinned.sort_by(|a, b| a.0.cmp(&b.0));
    PmEvent::Debug {
        worker: report.worker_id,
        id: report.execution_id,
        operator: report.operator,
        order: report.order,
        output: report.output,
        error: report.error,
        written: report
            .written
            .into_iter()
            .map(|r| json!({ "key": r.key, "version": version(r.version), "value": r.value }))
            .collect(),
        metadata: Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        ),
        pinned: Value::Object(
            pinned
                .into_iter()
                .map(|(k, v)| (k, version(Some(v))))
                .collect(),
        ),
    }
}

fn describe(event: &PmEvent) -> String {
    let PmEvent::Debug {
        worker,
        id,
        operator,
        order,
        output,
        error,
        written,
        metadata,
        ..
    } = event
    else {
        return String::new();
    };
    let result = match (output, error) {
        (Some(output), _) => format!("output {output:?}"),
        (None, Some(error)) => format!("failed: {error}"),
        (None, None) => "no output".into(),
    };
    let written = written
        .iter()
        .map(|r| {
            format!(
                "{}@{}.{}={}",
                r["key"].as_str().unwrap_or_default(),
                r["version"]["number"],
                r["version"]["replica"],
                r["value"].as_str().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    format!("debug [{id}] {worker} {operator}#{order}: {result}; wrote [{written}]; metadata {metadata}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use dida_proto::control::debug_sink_client::DebugSinkClient;
    use dida_proto::storage::{Record, Version};

    use super::*;

    #[test]
    fn the_byte_budget_refills_at_its_rate_and_never_past_it() {
        let start = Instant::now();
        let mut budget = ByteBudget::new(1000, start);
        assert!(budget.take(600, start));
        assert!(!budget.take(600, start), "only 400 left");
        assert!(budget.take(600, start + Duration::from_millis(200)));
        // A long pause refills to the rate, no more.
        let later = start + Duration::from_secs(60);
        assert!(budget.take(1000, later));
        assert!(!budget.take(1, later));
        assert!(!ByteBudget::new(1000, start).take(1001, start));
    }

    #[tokio::test]
    async fn an_oversized_report_is_refused_and_the_sink_keeps_serving() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = lines.clone();
        let printer = Arc::new(Printer::new(
            false,
            Arc::new(move |line| out.lock().unwrap().push(line)),
            Arc::new(|_| {}),
        ));
        let sink = start(listener, printer).unwrap();
        let mut client = DebugSinkClient::connect(url)
            .await
            .unwrap()
            .max_encoding_message_size(usize::MAX);
        let report = |output: String| DebugReportRequest {
            worker_id: "w1".into(),
            execution_id: "e-1".into(),
            operator: "EchoOperator".into(),
            output: Some(output),
            ..DebugReportRequest::default()
        };
        let refused = client
            .report(report("x".repeat(MAX_DEBUG_REPORT_BYTES + 1)))
            .await
            .unwrap_err();
        assert!(
            refused.message().contains("message length too large"),
            "{refused:?}"
        );
        client.report(report("small".into())).await.unwrap();
        let printed = lines.lock().unwrap().clone();
        assert_eq!(printed.len(), 1, "{printed:?}");
        assert!(printed[0].contains("output \"small\""), "{printed:?}");
        sink.shutdown().await.unwrap();
    }

    #[test]
    fn reports_become_debug_events() {
        let report = DebugReportRequest {
            worker_id: "w1".into(),
            execution_id: "e-1".into(),
            operator: "AddOperator".into(),
            order: 0,
            output: Some("12".into()),
            error: None,
            written: vec![Record {
                key: "23".into(),
                version: Some(Version {
                    number: 2,
                    replica: 1,
                }),
                value: "12".into(),
            }],
            entries: [("item".to_string(), "book".to_string())].into(),
            pinned: [(
                "23".to_string(),
                Version {
                    number: 2,
                    replica: 1,
                },
            )]
            .into(),
        };
        let event = debug_event(report);
        let line = serde_json::to_string(&event).unwrap();
        assert_eq!(
            line,
            r#"{"event":"debug","worker":"w1","id":"e-1","operator":"AddOperator","order":0,"output":"12","error":null,"written":[{"key":"23","value":"12","version":{"number":2,"replica":1}}],"metadata":{"item":"book"},"pinned":{"23":{"number":2,"replica":1}}}"#
        );
        assert!(describe(&event).contains("wrote [23@2.1=12]"));
    }
}
