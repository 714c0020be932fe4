//! The PuppetMaster's service on port 10001 (SPEC §6.2): after a `debug` line,
//! workers send it what each operator output and wrote, with the execution's
//! metadata, and it prints that live.

use std::sync::Arc;

use dida_proto::control::debug_sink_server::{DebugSink, DebugSinkServer};
use dida_proto::control::{DebugAck, DebugReport};
use dida_proto::convert::version_from_wire;
use dida_proto::server::ServerHandle;
use dida_proto::transport::MAX_MESSAGE_BYTES;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::output::{PmEvent, Printer};

/// Prints every report it receives.
#[derive(Debug, Clone)]
struct Sink {
    printer: Arc<Printer>,
}

#[tonic::async_trait]
impl DebugSink for Sink {
    async fn report(&self, request: Request<DebugReport>) -> Result<Response<DebugAck>, Status> {
        let event = debug_event(request.into_inner());
        self.printer.pm_event(&event, || describe(&event));
        Ok(Response::new(DebugAck {}))
    }
}

/// Starts the sink on `listener`.
pub fn start(listener: TcpListener, printer: Arc<Printer>) -> anyhow::Result<ServerHandle> {
    let service = DebugSinkServer::new(Sink { printer })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let router = dida_proto::transport::server_builder()?.add_service(service);
    ServerHandle::spawn(router, listener)
}

fn debug_event(report: DebugReport) -> PmEvent {
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
    use dida_proto::storage::{Record, Version};

    use super::*;

    #[test]
    fn reports_become_debug_events() {
        let report = DebugReport {
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
