//! One hop of an execution (SPEC §3.3): run `chain[next]`, store its output, then
//! hand the request to the next worker — or, at the end of the chain or on a failure,
//! report the outcome to the scheduler. The worker also confirms to the scheduler
//! every operator it ran, which is what the scheduler's load accounting counts: on
//! the outcome report when this hop ends the execution, otherwise through the
//! [`CompletionQueue`](crate::completions::CompletionQueue), in batches — so a hop
//! costs one RPC, the forward.
//!
//! Each hop also records how its operator ran (worker, start, duration, fuel,
//! outcome) and the operator's log lines in the request's assignment, so they travel
//! with the request and reach the scheduler in the outcome report: inspecting an
//! execution costs no call of its own.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dida_core::limits::{MAX_CHAIN_REQUEST_BYTES, MAX_DEBUG_REPORT_BYTES, MAX_EXECUTION_LOG_BYTES};
use dida_core::{Record, Version};
use dida_proto::control::DebugReportRequest;
use dida_proto::convert::{record_to_wire, version_from_wire, version_to_wire};
use dida_proto::execution::{
    Assignment, ChainRequest, Completion, ExecutionOutcome, HandOffRequest, Metadata, OperatorRun,
    OperatorsCompletedRequest, OutcomeReport, ReportOutcomesRequest,
};
use prost::Message;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::capture::{self, Capture};
use crate::consistency::ExecutionStorage;
use crate::host::HostState;
use crate::node::WorkerState;
use crate::runtime::ExecutionMeta;

/// Attempts of a call to another node before giving up.
const ATTEMPTS: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Runs the request's next operator and moves the execution on. Never fails: every
/// failure ends up in the outcome reported to the scheduler.
///
/// The hop runs in an `operator` span carrying the execution id, the position and
/// the operator's name (from the request, as the scheduler assigned them), so every
/// line this worker logs about the hop can be joined with the scheduler's and the
/// other workers' lines on the execution id.
pub(crate) async fn run_hop(state: Arc<WorkerState>, request: ChainRequest) {
    let order = request.next as usize;
    let span = info_span!(
        "operator",
        execution = request.meta.as_ref().map_or("", |m| m.id.as_str()),
        position = order,
        operator = request
            .chain
            .get(order)
            .map_or("", |a| a.classname.as_str()),
    );
    state.stats.hops.fetch_add(1, Relaxed);
    hop(state.clone(), request).instrument(span).await;
    state.stats.hops.fetch_sub(1, Relaxed);
}

/// [`run_hop`] within its span.
async fn hop(state: Arc<WorkerState>, mut request: ChainRequest) {
    let order = request.next as usize;
    let classname = request.chain[order].classname.clone();
    let previous = order
        .checked_sub(1)
        .and_then(|p| request.chain[p].output.clone());
    let meta = request.meta.take().unwrap_or_default();
    let execution_id = meta.id.clone();
    // The operator logs within what the earlier ones left of the execution's bound.
    let logged = capture::text_bytes(request.chain[..order].iter().flat_map(|a| &a.logs));
    let capture = Capture::new(order as u32, MAX_EXECUTION_LOG_BYTES.saturating_sub(logged));

    state.stats.running.fetch_add(1, Relaxed);
    state.metrics.started();
    let started = SystemTime::now();
    let clock = Instant::now();
    let (result, meta, written) = run_operator(
        &state,
        meta,
        order,
        &request.chain[order],
        &request.input,
        previous.as_deref(),
        capture.clone(),
    )
    .await;
    let took = clock.elapsed();
    state.stats.running.fetch_sub(1, Relaxed);
    info!(
        outcome = if result.is_ok() {
            "succeeded"
        } else {
            "failed"
        },
        duration_us = took.as_micros() as u64,
        fuel = capture.fuel_used(),
        "operator finished"
    );
    let assignment = &mut request.chain[order];
    assignment.run = Some(OperatorRun {
        order: order as u32,
        classname: classname.clone(),
        worker_id: state.config.id.clone(),
        started_unix_ms: started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        duration_us: took.as_micros() as u64,
        fuel_used: capture.fuel_used(),
        error: result.as_ref().err().cloned(),
        memory_bytes: capture.memory_bytes(),
        instantiate_us: capture
            .instantiation()
            .map_or(0, |took| took.as_micros() as u64),
    });
    state.metrics.finished(
        &classname,
        result.is_ok(),
        took,
        capture.fuel_used(),
        capture.instantiation(),
    );
    assignment.logs = capture.take_lines();
    if state.debug_sink.is_some() {
        report_debug(&state, &classname, order, &result, &meta, written);
    }
    request.meta = Some(meta);
    let completion = Completion {
        execution_id: execution_id.clone(),
        order: order as u32,
    };

    match result {
        Ok(output) => {
            state.stats.completed.fetch_add(1, Relaxed);
            debug!(%output, "operator output");
            request.chain[order].output = Some(output);
            request.next += 1;
            if (request.next as usize) < request.chain.len() {
                state.completions.push(completion);
                let forwarded = match check_request_size(&request) {
                    Ok(()) => {
                        // Even a zero-length tokio sleep waits for the next 1 ms timer
                        // tick, which would be most of a hop's cost: sleep only when
                        // asked to.
                        if !state.config.gossip_delay.is_zero() {
                            tokio::time::sleep(state.config.gossip_delay).await;
                        }
                        forward(&state, &request).await
                    }
                    Err(error) => {
                        warn!("{error}");
                        Err(error)
                    }
                };
                if let Err(error) = forwarded {
                    let next = request.next as usize;
                    let error = error.to_string();
                    report(&state, outcome(&request, Some((error, next)), next), None).await;
                }
            } else {
                let ended = outcome(&request, None, request.chain.len());
                report(&state, ended, Some(completion)).await;
            }
        }
        Err(message) => {
            state.stats.failed.fetch_add(1, Relaxed);
            let error = format!(
                "{classname} (position {order}) failed on worker {}: {message}",
                state.config.id
            );
            warn!("{error}");
            let ended = outcome(&request, Some((error, order)), order + 1);
            report(&state, ended, Some(completion)).await;
        }
    }
}

/// Runs one operator (`assignment`: its class name and the digest it was assigned)
/// in the sandbox; returns its output (or why it failed), the metadata to carry on
/// (pins and entries as the operator left them) and the records it wrote. Its logs
/// and fuel go to `capture`.
async fn run_operator(
    state: &WorkerState,
    meta: Metadata,
    order: usize,
    assignment: &Assignment,
    input: &str,
    previous: Option<&str>,
    capture: Capture,
) -> (Result<String, String>, Metadata, Vec<Record>) {
    // Loading (reading and compiling a new or changed file) counts against the
    // invocation's wall-time limit, like the call itself.
    let wall_time = state.registry.runtime().limits().wall_time;
    let deadline = tokio::time::Instant::now() + wall_time;
    let classname = assignment.classname.as_str();
    let load = state.registry.get_assigned(classname, &assignment.digest);
    let operator = match tokio::time::timeout_at(deadline, load).await {
        Ok(Ok(operator)) => operator,
        Ok(Err(error)) => return (Err(error.to_string()), meta, Vec::new()),
        Err(_) => {
            let error = format!(
                "loading operator {classname} took longer than its wall-time limit of \
                 {wall_time:?}; it was not run"
            );
            return (Err(error), meta, Vec::new());
        }
    };
    let pins: BTreeMap<String, Version> = meta
        .pinned
        .iter()
        .map(|(key, v)| (key.clone(), version_from_wire(*v)))
        .collect();
    let entries: BTreeMap<String, String> = meta.entries.clone().into_iter().collect();
    let storage = ExecutionStorage::new(state.storage.clone(), pins, state.config.consistency);
    let limits = state.registry.runtime().limits();
    let host = HostState::new(
        storage,
        entries.clone(),
        limits.memory_bytes,
        meta.id.clone(),
        classname.to_string(),
        capture,
    );
    let wit_meta = ExecutionMeta {
        id: meta.id.clone(),
        order: order as u32,
        entries: entries.into_iter().collect(),
    };
    let (result, host) = state
        .registry
        .runtime()
        .invoke(&operator, host, wit_meta, input, previous, deadline)
        .await;
    let HostState {
        storage, entries, ..
    } = host;
    // A consistency failure stops the execution even if the operator swallowed it.
    let result = match storage.fatal() {
        Some(fatal) => Err(fatal.to_string()),
        None => result.map_err(|e| e.to_string()),
    };
    let written = storage.written().to_vec();
    let meta = Metadata {
        id: meta.id,
        pinned: storage
            .into_pins()
            .into_iter()
            .map(|(key, v)| (key, version_to_wire(v)))
            .collect(),
        entries: entries.into_iter().collect(),
    };
    (result, meta, written)
}

/// Debug mode: sends what the operator output and wrote, with the metadata, to the
/// PuppetMaster's debug sink — in the background and with the call deadline, so a
/// slow or absent PuppetMaster never delays the execution.
fn report_debug(
    state: &Arc<WorkerState>,
    classname: &str,
    order: usize,
    result: &Result<String, String>,
    meta: &Metadata,
    written: Vec<Record>,
) {
    let Some(mut sink) = state.debug_sink.clone() else {
        return;
    };
    let mut report = DebugReportRequest {
        worker_id: state.config.id.clone(),
        execution_id: meta.id.clone(),
        operator: classname.to_string(),
        order: order as u32,
        output: result.as_ref().ok().cloned(),
        error: result.as_ref().err().cloned(),
        written: written.iter().map(record_to_wire).collect(),
        entries: meta.entries.clone(),
        pinned: meta.pinned.clone(),
    };
    let size = report.encoded_len();
    if size > MAX_DEBUG_REPORT_BYTES {
        // The sink refuses larger reports: send what fits, and say what is left out.
        report.output = None;
        report.written.clear();
        report.entries.clear();
        report.error = Some(format!(
            "the debug report was {size} bytes, over the sink's limit of \
             {MAX_DEBUG_REPORT_BYTES}: the output, records and metadata are left out{}",
            report
                .error
                .as_deref()
                .map(|e| format!("; the operator failed: {}", truncated(e, 4096)))
                .unwrap_or_default()
        ));
    }
    tokio::spawn(async move {
        if let Err(status) = sink.report(report).await {
            debug!(error = %status.message(), "debug sink did not take the report");
        }
    });
}

/// Why a request could not be handed to the worker of its next operator: the
/// execution ends there, and the message is its outcome's error.
#[derive(Debug, thiserror::Error)]
enum HopError {
    /// The request grew over the per-hop limit.
    #[error(
        "the request to hand {classname} (position {order}) to worker {worker} is {size} \
         bytes, over the limit of {MAX_CHAIN_REQUEST_BYTES} bytes per hop: the input and \
         outputs so far are too large to carry on"
    )]
    TooLarge {
        /// The next operator.
        classname: String,
        /// Its position.
        order: u32,
        /// The worker assigned to it.
        worker: String,
        /// The request's encoded size.
        size: usize,
    },
    /// The next worker did not take it, after retries.
    #[error(
        "could not hand {classname} (position {order}) to worker {worker} at {url}: {}",
        status.message()
    )]
    HandOffRequest {
        /// The next operator.
        classname: String,
        /// Its position.
        order: u32,
        /// The worker assigned to it.
        worker: String,
        /// Its address.
        url: String,
        /// The last failure.
        status: tonic::Status,
    },
}

/// Whether `request` may be handed to its next worker: at most
/// [`MAX_CHAIN_REQUEST_BYTES`] encoded. A larger one would near the transport's
/// message limit as it grows, and a hop lost in transit leaves the client waiting for
/// the execution's timeout; instead the execution fails here, at once, and the error
/// reaches the client with the outcome.
fn check_request_size(request: &ChainRequest) -> Result<(), HopError> {
    let size = request.encoded_len();
    if size <= MAX_CHAIN_REQUEST_BYTES {
        return Ok(());
    }
    let next = &request.chain[request.next as usize];
    Err(HopError::TooLarge {
        classname: next.classname.clone(),
        order: next.order,
        worker: next.worker_id.clone(),
        size,
    })
}

/// Hands the request to the worker assigned to its next operator, on this worker's
/// stream to it (retried like a call).
async fn forward(state: &WorkerState, request: &ChainRequest) -> Result<(), HopError> {
    let next = &request.chain[request.next as usize];
    retry(|| async {
        state
            .hand_offs
            .send(&next.worker_url, |seq| HandOffRequest {
                seq,
                request: Some(request.clone()),
            })
            .await
            .map(|_| ())
            .map_err(tonic::Status::from)
    })
    .await
    .map_err(|status| HopError::HandOffRequest {
        classname: next.classname.clone(),
        order: next.order,
        worker: next.worker_id.clone(),
        url: next.worker_url.clone(),
        status,
    })
}

/// Reports how the execution ended to the scheduler, confirming on the way `own` (the
/// completion of the operator that ended it) and every completion still queued. If
/// the report cannot be delivered, the completions go back to the queue.
async fn report(state: &WorkerState, outcome: ExecutionOutcome, own: Option<Completion>) {
    let mut completions = state.completions.take();
    completions.extend(own);
    let report = OutcomeReport {
        outcome: Some(bounded(outcome)),
        completions: Some(OperatorsCompletedRequest {
            worker_id: state.config.id.clone(),
            completions,
        }),
    };
    let scheduler = state.config.scheduler_url.to_string();
    let sent = retry(|| async {
        state
            .reports
            .send(&scheduler, |seq| ReportOutcomesRequest {
                seq,
                report: Some(report.clone()),
            })
            .await
            .map(|_| ())
            .map_err(tonic::Status::from)
    })
    .await;
    if let Err(status) = sent {
        let OutcomeReport {
            outcome,
            completions,
        } = report;
        let id = outcome.map(|o| o.execution_id).unwrap_or_default();
        warn!(execution = %id, error = %status.message(), "could not report the outcome to the scheduler");
        state
            .completions
            .push_all(completions.map(|c| c.completions).unwrap_or_default());
    }
}

/// `outcome`, made to fit in [`MAX_CHAIN_REQUEST_BYTES`] so that its report is never
/// lost in transit: past the limit, outputs are left out from the last one back (and
/// the input, if it alone is too large), and the outcome becomes a failure that says
/// so — the client gets a clear error instead of waiting for the timeout.
fn bounded(mut outcome: ExecutionOutcome) -> ExecutionOutcome {
    let size = outcome.encoded_len();
    if size <= MAX_CHAIN_REQUEST_BYTES {
        return outcome;
    }
    // A string field costs its bytes, a tag byte and its length's varint.
    let field = |text: &str| text.len() + 1 + prost::length_delimiter_len(text.len());
    let mut left = size;
    while left > MAX_CHAIN_REQUEST_BYTES {
        match outcome.outputs.pop() {
            Some(output) => left -= field(&output),
            None => {
                outcome.logs.clear();
                outcome.input.clear();
                break;
            }
        }
    }
    let note = format!(
        "the outcome was {size} bytes, over the limit of {MAX_CHAIN_REQUEST_BYTES} bytes: \
         only the first {} outputs are reported",
        outcome.outputs.len()
    );
    outcome.error = Some(match outcome.error.take() {
        Some(error) => format!("{error}; {note}"),
        None => note,
    });
    outcome
}

/// The outcome of `request` as it stands: outputs so far, and the error and the
/// position it concerns, if any.
fn outcome(
    request: &ChainRequest,
    error: Option<(String, usize)>,
    unrun_from: usize,
) -> ExecutionOutcome {
    let failed = error.as_ref().map(|(_, order)| &request.chain[*order]);
    ExecutionOutcome {
        execution_id: request
            .meta
            .as_ref()
            .map(|m| m.id.clone())
            .unwrap_or_default(),
        app: request.app.clone(),
        input: request.input.clone(),
        outputs: request
            .chain
            .iter()
            .map_while(|a| a.output.clone())
            .collect(),
        failed_operator: failed.map(|a| a.classname.clone()),
        failed_order: failed.map(|a| a.order),
        error: error.map(|(message, _)| message),
        unrun_from: unrun_from as u32,
        runs: request.chain.iter().filter_map(|a| a.run.clone()).collect(),
        logs: request
            .chain
            .iter()
            .flat_map(|a| a.logs.iter().cloned())
            .collect(),
        ..ExecutionOutcome::default()
    }
}

/// At most the first `max` bytes of `text`, cut at a character boundary.
fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Calls `attempt` up to [`ATTEMPTS`] times, pausing between failures. Each attempt
/// is bounded by the channel's deadline, so this never hangs.
pub(crate) async fn retry<F, Fut>(mut attempt: F) -> Result<(), tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), tonic::Status>>,
{
    let mut last = None;
    for round in 0..ATTEMPTS {
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(status) => last = Some(status),
        }
        if round + 1 < ATTEMPTS {
            tokio::time::sleep(RETRY_PAUSE * (round + 1)).await;
        }
    }
    Err(last.expect("at least one attempt"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(input: &str, outputs: &[&str]) -> ChainRequest {
        let chain = (0..=outputs.len())
            .map(|order| Assignment {
                classname: format!("Op{order}"),
                order: order as u32,
                worker_id: "w1".into(),
                worker_url: "http://127.0.0.1:1".into(),
                output: outputs.get(order).map(|o| o.to_string()),
                ..Assignment::default()
            })
            .collect();
        ChainRequest {
            meta: Some(Metadata {
                id: "e-1".into(),
                ..Metadata::default()
            }),
            input: input.into(),
            next: outputs.len() as u32,
            chain,
            app: "app.txt".into(),
        }
    }

    #[test]
    fn a_hop_over_the_request_limit_fails_naming_the_next_operator() {
        assert!(check_request_size(&request("in", &["a", "b"])).is_ok());
        let big = "x".repeat(MAX_CHAIN_REQUEST_BYTES / 2 + 1);
        let error = check_request_size(&request("in", &[&big, &big])).unwrap_err();
        assert!(
            matches!(
                &error,
                HopError::TooLarge { classname, order: 2, worker, size }
                    if classname == "Op2" && worker == "w1" && *size > MAX_CHAIN_REQUEST_BYTES
            ),
            "{error}"
        );
    }

    #[test]
    fn an_outcome_over_the_limit_keeps_what_fits_and_says_so() {
        let small = request("in", &["a", "b"]);
        let kept = bounded(outcome(&small, None, 2));
        assert_eq!(kept.error, None);
        assert_eq!(kept.outputs, ["a", "b"]);

        let big = "x".repeat(MAX_CHAIN_REQUEST_BYTES / 2 + 1);
        let large = request("in", &["a", &big, &big]);
        let failed = outcome(&large, Some(("boom".into(), 3)), 3);
        let kept = bounded(failed);
        assert!(kept.encoded_len() <= MAX_CHAIN_REQUEST_BYTES);
        assert_eq!(kept.outputs.len(), 2, "the last output is left out");
        let error = kept.error.unwrap();
        assert!(error.starts_with("boom; the outcome was"), "{error}");
        assert!(error.contains("only the first 2 outputs"), "{error}");
        assert_eq!(kept.input, "in");

        // A success too large to report becomes a failure that says why.
        let huge = "x".repeat(MAX_CHAIN_REQUEST_BYTES + 1);
        let kept = bounded(outcome(&request(&huge, &[]), None, 0));
        assert!(kept.input.is_empty() && kept.error.is_some());
        assert!(kept.encoded_len() <= MAX_CHAIN_REQUEST_BYTES);
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncated("héllo", 2), "h");
        assert_eq!(truncated("héllo", 3), "hé");
        assert_eq!(truncated("abc", 10), "abc");
    }
}
