//! The chain clients: executions of the two applications of
//! [`dida_verify::chains`] submitted to the scheduler while faults are injected.
//!
//! An execution is submitted to the scheduler and its outcome awaited up to a
//! deadline; one with no outcome by then has hung, which is a failure of the check.

use std::time::Duration;

use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::{OutcomeRequest, SubmitRequest};
use dida_proto::transport::NodeChannel;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use dida_verify::chains::{INCREMENT_TWICE, WRITE_READ};
use dida_verify::history::{ClientId, OpKind, OpResult, Operation, RunClock};

/// How long one `Outcome` call waits on the scheduler before the client looks at its
/// own deadline again.
const OUTCOME_WAIT_MS: u32 = 2_000;

/// What every chain client of a run shares.
#[derive(Debug, Clone)]
pub struct ChainWorkload {
    /// Keys the write-then-read chains use (distinct from the storage workload's).
    pub keys: Vec<String>,
    /// Clients stop submitting once the run clock passes this.
    pub duration: Duration,
    /// An execution without an outcome this long after its submission has hung.
    pub chain_deadline: Duration,
    /// Pause between two executions of one client.
    pub pause: Duration,
}

/// The keys of the write-then-read chains: `chain0`, `chain1`, ….
pub fn chain_keys(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("chain{i}")).collect()
}

/// Runs one chain client until the workload's duration has passed, alternating the
/// two applications, and returns its executions as operations.
pub async fn run_chain_client(
    client_id: ClientId,
    scheduler: SchedulerClient<NodeChannel>,
    workload: ChainWorkload,
    clock: RunClock,
    seed: u64,
) -> Vec<Operation> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut history = Vec::new();
    let mut round: u64 = 0;
    while clock.elapsed() < workload.duration {
        round += 1;
        let (app, key) = if round % 2 == 1 && !workload.keys.is_empty() {
            let key = workload.keys[rng.random_range(0..workload.keys.len())].clone();
            (WRITE_READ, key)
        } else {
            (INCREMENT_TWICE, format!("inc-{client_id}-{round}"))
        };
        let invoked_ns = clock.now_ns();
        let result = execute(scheduler.clone(), app, key.clone(), workload.chain_deadline).await;
        let completed_ns = clock.now_ns();
        let operators = app.map(String::from).to_vec();
        history.push(Operation {
            id: 0,
            client: client_id,
            key,
            kind: OpKind::Chain { operators },
            invoked_ns,
            completed_ns,
            result,
        });
        tokio::time::sleep(workload.pause).await;
    }
    history
}

/// Runs `per_app` executions of each application at once and waits for them, before
/// the measured run: workers compile an operator the first time they run it (seconds
/// in a debug build), and that start-up cost is not what the suite measures. Returns
/// how many warm-up executions completed; their results are not part of the history.
pub async fn warm_up(
    scheduler: SchedulerClient<NodeChannel>,
    per_app: usize,
    deadline: Duration,
) -> usize {
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..per_app {
        for app in [WRITE_READ, INCREMENT_TWICE] {
            let input = format!("warm-up-{i}");
            runs.spawn(execute(scheduler.clone(), app, input, deadline));
        }
    }
    let mut completed = 0;
    while let Some(result) = runs.join_next().await {
        match result {
            Ok(OpResult::ChainCompleted { .. }) => completed += 1,
            Ok(other) => tracing::warn!("faults: a warm-up execution did not complete: {other:?}"),
            Err(error) => tracing::warn!("faults: a warm-up execution panicked: {error}"),
        }
    }
    completed
}

/// Submits one execution of `app` and waits for its outcome, up to `deadline` in all.
async fn execute(
    mut scheduler: SchedulerClient<NodeChannel>,
    app: [&'static str; 2],
    input: String,
    deadline: Duration,
) -> OpResult {
    let started = tokio::time::Instant::now();
    let submit = SubmitRequest {
        app: format!("faults-{}", app.join("-")),
        operators: app.map(String::from).to_vec(),
        input,
    };
    let execution_id = match tokio::time::timeout(deadline, scheduler.submit(submit)).await {
        Ok(Ok(reply)) => reply.into_inner().execution_id,
        Ok(Err(status)) => {
            let error = format!("the scheduler refused the execution: {}", status.message());
            return OpResult::Failed { error };
        }
        Err(_) => {
            let error = format!("the scheduler did not accept the execution within {deadline:?}");
            return OpResult::Unknown { error };
        }
    };
    let mut last_error = None;
    while let Some(left) = deadline.checked_sub(started.elapsed()) {
        let request = OutcomeRequest {
            execution_id: execution_id.clone(),
            wait_ms: OUTCOME_WAIT_MS,
        };
        match tokio::time::timeout(left, scheduler.outcome(request)).await {
            Ok(Ok(reply)) => {
                let reply = reply.into_inner();
                if let (true, Some(outcome)) = (reply.finished, reply.outcome) {
                    return match outcome.error {
                        None => OpResult::ChainCompleted {
                            execution_id,
                            outputs: outcome.outputs,
                        },
                        Some(error) => OpResult::ChainFailed {
                            execution_id,
                            error,
                        },
                    };
                }
            }
            Ok(Err(status)) => {
                last_error = Some(status.message().to_string());
                // Do not spin on a scheduler that answers errors at once.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => break,
        }
    }
    let last_error = last_error.map(|e| format!(" (last error: {e})"));
    let error = format!(
        "execution {execution_id} had no outcome within {deadline:?}{}",
        last_error.unwrap_or_default()
    );
    OpResult::Unknown { error }
}
