//! `dida run` and `dida status`: submit an application and fetch its outcome (and,
//! for `status`, how each of its operators ran).

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use dida_core::events::{rfc3339_utc, Event};
use dida_core::limits::check_deadline_s;
use dida_core::membership::NodeUrl;
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::{ExecutionOutcome, OutcomeRequest, RunRequest, SubmitRequest};
use dida_proto::transport::{lazy_channel_for_waits, NodeChannel, MAX_MESSAGE_BYTES};
use tokio::time::Instant;

use crate::exit::{CallFailed, ExecutionFailed, NotFinished};

/// `--scheduler`, the scheduler a client command talks to: defined once for every
/// such command, with the default of the cluster `dida up` starts, so that the
/// local developer loop needs no flag.
#[derive(Debug, Args)]
pub struct SchedulerAddress {
    /// The scheduler's URL (by default the one `dida up` starts).
    #[arg(
        long = "scheduler",
        env = "DIDA_SCHEDULER",
        default_value = dida_settings::local::DEFAULT_SCHEDULER_URL,
        global = true
    )]
    pub url: String,
}

/// Flags of `dida run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    scheduler: SchedulerAddress,
    /// The input string of the execution.
    #[arg(long)]
    input: String,
    /// What to run: an application file (`operator <ClassName> <position>` per
    /// line), or the name of a registered application (`dida app list`).
    #[arg(required_unless_present = "operators", conflicts_with = "operators")]
    app: Option<String>,
    /// Run these operators as a chain, in this order, without an application file.
    #[arg(long, value_delimiter = ',', value_name = "A,B,…")]
    operators: Vec<String>,
    /// Print the execution id and return at once; `dida status ID` fetches the outcome.
    #[arg(long = "async")]
    detach: bool,
    /// Print the `client` event as JSON (with --async, the `submitted` event).
    #[arg(long)]
    json: bool,
    /// Give up waiting after this many seconds (1 to 3600; exit status 7 then: the
    /// execution may still finish).
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

/// Flags of `dida status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    scheduler: SchedulerAddress,
    /// The execution id `dida run --async` printed.
    id: String,
    /// Wait for the execution to finish (up to --timeout seconds) instead of answering
    /// at once.
    #[arg(long)]
    wait: bool,
    /// Print the `client` and `operator` events as JSON (a `running` event while
    /// the execution runs).
    #[arg(long)]
    json: bool,
    /// Give up waiting after this many seconds (1 to 3600; exit status 7 then: the
    /// execution may still finish).
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

/// Checks `--timeout` (seconds): positive and at most an hour, like every deadline.
fn timeout(seconds: u64) -> anyhow::Result<Duration> {
    check_deadline_s("--timeout", seconds).map_err(anyhow::Error::msg)
}

/// Deadline of connecting to the scheduler.
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);

/// How much longer than the wait it asks for a call may take (the scheduler answers
/// when the wait ends; this covers the round trip and a busy scheduler).
const CALL_MARGIN: Duration = Duration::from_secs(10);

/// One `Outcome` call of `dida status --wait` waits this long on the scheduler.
const OUTCOME_WAIT: Duration = Duration::from_secs(10);

/// A client of the scheduler at `url` whose calls may wait up to `longest_wait`.
pub(crate) fn scheduler(
    url: &str,
    longest_wait: Duration,
) -> anyhow::Result<SchedulerClient<NodeChannel>> {
    let url = NodeUrl::parse(url).context("invalid --scheduler")?;
    let channel = lazy_channel_for_waits(
        &url.to_string(),
        CONNECT_DEADLINE,
        longest_wait.saturating_add(CALL_MARGIN),
    )?;
    // An outcome carries every output (up to the 16 MiB per-hop limit): the client
    // takes messages as large as the nodes send, not tonic's default 4 MiB.
    Ok(SchedulerClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// Runs `dida run`: with `--async`, a `Submit` that prints the id; otherwise one
/// `Run` call that submits and answers with the outcome when the execution ends.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let limit = timeout(args.timeout)?;
    let (app, operators) =
        crate::app::resolve(&args.scheduler.url, args.app.as_deref(), args.operators).await?;
    let mut client = scheduler(&args.scheduler.url, limit)?;
    let submit = SubmitRequest {
        app: app.clone(),
        operators,
        input: args.input.clone(),
    };
    let refused = |s: tonic::Status| {
        CallFailed::new(
            format!(
                "the scheduler at {} did not take the execution",
                args.scheduler.url
            ),
            s,
        )
    };
    if args.detach {
        let reply = client.submit(submit).await.map_err(refused)?.into_inner();
        if args.json {
            let event = Event::Submitted {
                line: None,
                id: reply.execution_id,
                input: args.input,
                app,
            };
            println!("{}", event.to_json_line());
        } else {
            println!("{}", reply.execution_id);
        }
        return Ok(());
    }
    let reply = client
        .run(RunRequest {
            submit: Some(submit),
            wait_ms: u32::try_from(limit.as_millis()).unwrap_or(u32::MAX).max(1),
        })
        .await
        .map_err(refused)?
        .into_inner();
    let outcome = reply.outcome.unwrap_or_default();
    if !reply.finished {
        let id = outcome.execution_id;
        return Err(NotFinished { id, limit }.into());
    }
    print_outcome(&outcome, args.json, false)
}

/// Runs `dida status`.
pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let mut client = scheduler(&args.scheduler.url, OUTCOME_WAIT)?;
    let limit = timeout(args.timeout)?;
    let outcome = if args.wait {
        wait_for(&mut client, &args.id, limit).await?
    } else {
        let reply = client
            .outcome(OutcomeRequest {
                execution_id: args.id.clone(),
                wait_ms: 0,
            })
            .await
            .map_err(|s| {
                CallFailed::new(
                    format!(
                        "cannot fetch the outcome of {} from {}",
                        args.id, args.scheduler.url
                    ),
                    s,
                )
            })?
            .into_inner();
        match (reply.finished, reply.outcome) {
            (true, Some(outcome)) => outcome,
            _ => {
                if args.json {
                    println!("{}", Event::Running { id: args.id }.to_json_line());
                } else {
                    println!("{}: running", args.id);
                }
                return Ok(());
            }
        }
    };
    print_outcome(&outcome, args.json, true)
}

async fn wait_for(
    client: &mut SchedulerClient<NodeChannel>,
    id: &str,
    limit: Duration,
) -> anyhow::Result<ExecutionOutcome> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let reply = client
            .outcome(OutcomeRequest {
                execution_id: id.to_string(),
                wait_ms: OUTCOME_WAIT.as_millis() as u32,
            })
            .await
            .map_err(|s| CallFailed::new(format!("cannot fetch the outcome of {id}"), s))?
            .into_inner();
        if let (true, Some(outcome)) = (reply.finished, reply.outcome) {
            return Ok(outcome);
        }
    }
    Err(NotFinished {
        id: id.to_string(),
        limit,
    }
    .into())
}

/// Prints an outcome, and with `runs` how each operator ran (after the `client`
/// event, one `operator` event each); an execution that failed makes the command
/// fail too.
fn print_outcome(outcome: &ExecutionOutcome, json: bool, runs: bool) -> anyhow::Result<()> {
    if json {
        let event = Event::Client {
            id: outcome.execution_id.clone(),
            input: outcome.input.clone(),
            app: outcome.app.clone(),
            status: if outcome.error.is_none() {
                "ok"
            } else {
                "error"
            }
            .to_string(),
            outputs: outcome.outputs.clone(),
            error: outcome.error.clone(),
        };
        println!("{}", event.to_json_line());
        if runs {
            for event in operator_events(outcome) {
                println!("{}", event.to_json_line());
            }
        }
    } else {
        println!(
            "execution {} ({} with input {:?})",
            outcome.execution_id, outcome.app, outcome.input
        );
        for (order, output) in outcome.outputs.iter().enumerate() {
            println!("  [{order}] {output}");
        }
        if runs {
            print!("{}", runs_text(outcome));
        }
    }
    match &outcome.error {
        Some(error) => Err(ExecutionFailed {
            id: outcome.execution_id.clone(),
            error: error.clone(),
        }
        .into()),
        None => Ok(()),
    }
}

/// One `operator` event per operator that ran.
fn operator_events(outcome: &ExecutionOutcome) -> Vec<Event> {
    outcome
        .runs
        .iter()
        .map(|run| Event::Operator {
            id: outcome.execution_id.clone(),
            order: run.order,
            operator: run.classname.clone(),
            worker: run.worker_id.clone(),
            started: rfc3339_utc(run.started_unix_ms),
            duration_us: run.duration_us,
            fuel_used: run.fuel_used,
            memory_bytes: run.memory_bytes,
            instantiate_us: run.instantiate_us,
            status: if run.error.is_none() { "ok" } else { "error" }.to_string(),
            error: run.error.clone(),
        })
        .collect()
}

/// When the execution was submitted and how long it took, then a line per operator
/// that ran: position, class name, worker, start, duration, fuel, outcome.
fn runs_text(outcome: &ExecutionOutcome) -> String {
    let mut text = String::new();
    if outcome.submitted_unix_ms > 0 {
        text.push_str(&format!(
            "  submitted {}, ended after {} ms\n",
            rfc3339_utc(outcome.submitted_unix_ms),
            outcome
                .ended_unix_ms
                .saturating_sub(outcome.submitted_unix_ms)
        ));
    }
    if outcome.runs.is_empty() {
        return text;
    }
    text.push_str("  operators:\n");
    for run in &outcome.runs {
        let result = match &run.error {
            None => "ok".to_string(),
            Some(error) => format!("failed: {error}"),
        };
        text.push_str(&format!(
            "    [{}] {} on worker {}, started {}, took {:.3} ms (instantiating {:.3} ms), \
             fuel {}, memory {} KiB: {result}\n",
            run.order,
            run.classname,
            run.worker_id,
            rfc3339_utc(run.started_unix_ms),
            run.duration_us as f64 / 1000.0,
            run.instantiate_us as f64 / 1000.0,
            run.fuel_used,
            run.memory_bytes / 1024,
        ));
    }
    text
}
