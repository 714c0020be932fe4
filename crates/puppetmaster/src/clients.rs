//! `client` lines: submitted to the scheduler at once, their outcome printed when it
//! arrives (tagged with the execution id), while the script goes on.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dida_core::app::read_app_file;
use dida_core::events::Event;
use dida_core::membership::NodeUrl;
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::{ExecutionOutcome, OutcomeRequest, SubmitRequest};
use dida_proto::transport::{lazy_channel, NodeChannel, MAX_MESSAGE_BYTES};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::CommandError;
use crate::output::Printer;

/// How long one `Outcome` call waits on the scheduler before asking again.
const OUTCOME_WAIT_MS: u32 = 10_000;

/// The clients issued by a session and still running.
#[derive(Debug)]
pub struct Clients {
    running: JoinSet<()>,
    /// How long a client may wait for its outcome.
    timeout: Duration,
    printer: Arc<Printer>,
}

impl Clients {
    /// No client yet; outcomes will be printed by `printer`.
    pub fn new(timeout: Duration, printer: Arc<Printer>) -> Self {
        Self {
            running: JoinSet::new(),
            timeout,
            printer,
        }
    }

    /// Submits `input` to the application in `app` (resolved path) and returns once
    /// the scheduler accepted it; the outcome is printed later.
    pub async fn issue(
        &mut self,
        line: usize,
        input: &str,
        app_as_written: &str,
        app: &Path,
        scheduler: &NodeUrl,
    ) -> Result<(), CommandError> {
        let (timeout, printer) = (self.timeout, self.printer.clone());
        let operators = read_app_file(app)?;
        // The outcome call waits up to OUTCOME_WAIT_MS on the scheduler.
        let channel = lazy_channel(
            &scheduler.to_string(),
            Duration::from_millis(u64::from(OUTCOME_WAIT_MS)) + Duration::from_secs(10),
        )
        .map_err(|e| CommandError::SchedulerUrl {
            url: scheduler.clone(),
            message: format!("{e:#}"),
        })?;
        // Outcomes carry every output: take them as large as the scheduler sends.
        let mut client = SchedulerClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let id = client
            .submit(SubmitRequest {
                app: app_as_written.to_string(),
                operators,
                input: input.to_string(),
            })
            .await
            .map_err(|status| CommandError::Scheduler {
                what: format!("the scheduler at {scheduler} did not take the execution"),
                status,
            })?
            .into_inner()
            .execution_id;
        printer.event(
            &Event::Submitted {
                line: Some(line),
                id: id.clone(),
                input: input.to_string(),
                app: app_as_written.to_string(),
            },
            || format!("client {input} {app_as_written}: submitted as {id}"),
        );
        let app_as_written = app_as_written.to_string();
        let input = input.to_string();
        self.running.spawn(async move {
            let event = match wait_for(&mut client, &id, timeout).await {
                Ok(outcome) => client_event(outcome),
                Err(error) => Event::Client {
                    id: id.clone(),
                    input,
                    app: app_as_written,
                    status: "error".into(),
                    outputs: Vec::new(),
                    error: Some(error.to_string()),
                },
            };
            printer.event(&event, || describe(&event));
        });
        Ok(())
    }

    /// Waits until every client issued so far has its outcome printed.
    pub async fn wait_all(&mut self) {
        while self.running.join_next().await.is_some() {}
    }
}

async fn wait_for(
    client: &mut SchedulerClient<NodeChannel>,
    id: &str,
    limit: Duration,
) -> Result<ExecutionOutcome, CommandError> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let reply = client
            .outcome(OutcomeRequest {
                execution_id: id.to_string(),
                wait_ms: OUTCOME_WAIT_MS,
            })
            .await
            .map_err(|status| CommandError::Scheduler {
                what: format!("cannot fetch the outcome of {id}"),
                status,
            })?
            .into_inner();
        if let (true, Some(outcome)) = (reply.finished, reply.outcome) {
            return Ok(outcome);
        }
    }
    Err(CommandError::NotFinished {
        id: id.to_string(),
        limit,
    })
}

fn client_event(outcome: ExecutionOutcome) -> Event {
    Event::Client {
        id: outcome.execution_id,
        input: outcome.input,
        app: outcome.app,
        status: if outcome.error.is_none() {
            "ok"
        } else {
            "error"
        }
        .into(),
        outputs: outcome.outputs,
        error: outcome.error,
    }
}

/// The text form of a `client` event.
fn describe(event: &Event) -> String {
    let Event::Client {
        id,
        input,
        app,
        outputs,
        error,
        ..
    } = event
    else {
        return String::new();
    };
    let outputs = if outputs.is_empty() {
        "no output".to_string()
    } else {
        outputs.join(" → ")
    };
    match error {
        None => format!("[{id}] client {input} {app}: ok: {outputs}"),
        Some(error) => format!("[{id}] client {input} {app}: FAILED after {outputs}: {error}"),
    }
}
