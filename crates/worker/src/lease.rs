//! The worker's membership of the scheduler's worker set (issue 25; docs/protocols.md,
//! "Worker membership: leases").
//!
//! A worker registers itself with its scheduler and renews its lease by registering
//! again, every `renew_ms` the scheduler names (its `--worker-lease-ms` is the one
//! definition of the durations). When it is asked to leave ([`Lease::leave`]:
//! SIGTERM or Ctrl-C in `dida worker`) it says so on its next renewal — the
//! scheduler places nothing more on it — waits until it runs no hop and the
//! scheduler counts no operator of it still unconfirmed, then deregisters.
//!
//! A refusal that trying again cannot cure (the id is held by another live worker,
//! a malformed registration, a caller the scheduler does not authorise) is reported
//! through [`Lease::refused`], so the process exits with that error instead of
//! running unused. An unreachable scheduler is retried at every renewal.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use dida_proto::execution::{DeregisterWorkerRequest, RegisterWorkerRequest};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::{Code, Status};
use tracing::{debug, error, info, warn};

use crate::node::WorkerState;

/// How often the worker registers before the scheduler has said how often to
/// renew (and again while the scheduler is unreachable).
const FIRST_RENEWAL: Duration = Duration::from_millis(500);

/// How often a leaving worker asks the scheduler what it still counts against it.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// Where the worker stands in the scheduler's worker set, as it means to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    /// Takes work.
    Member,
    /// Drains: no new work.
    Leaving,
    /// Deregistered: renew no more.
    Left,
}

/// What the last registration taught.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heard {
    /// Nothing yet, or the last attempt failed.
    Nothing,
    /// The scheduler answered a registration sent with `leaving`, counting `load`
    /// operators of this worker not yet confirmed.
    Answer { leaving: bool, load: u64 },
}

/// The worker's side of its membership: renews the lease in the background; drains
/// and deregisters on [`Lease::leave`].
#[derive(Debug)]
pub struct Lease {
    state: Arc<WorkerState>,
    intent: watch::Sender<Intent>,
    heard: watch::Receiver<Heard>,
    refused: watch::Receiver<Option<String>>,
    /// Becomes true when the renewal task has stopped renewing (or it ended).
    renewing_stopped: watch::Receiver<bool>,
}

impl Lease {
    /// Starts registering `state`'s worker with its scheduler; returns the handle
    /// and the renewal task (to tie to the server, which ends it on shutdown).
    pub(crate) fn start(state: Arc<WorkerState>) -> (Self, tokio::task::JoinHandle<()>) {
        let (intent, intent_rx) = watch::channel(Intent::Member);
        let (heard_tx, heard) = watch::channel(Heard::Nothing);
        let (refused_tx, refused) = watch::channel(None);
        let (stopped_tx, renewing_stopped) = watch::channel(false);
        let task = tokio::spawn(renew_forever(
            state.clone(),
            intent_rx,
            heard_tx,
            refused_tx,
            stopped_tx,
        ));
        (
            Self {
                state,
                intent,
                heard,
                refused,
                renewing_stopped,
            },
            task,
        )
    }

    /// Resolves when the scheduler refused this worker for a reason retrying cannot
    /// cure, with that reason (it never resolves otherwise).
    pub async fn refused(&mut self) -> String {
        match self.refused.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            // The renewal task ended (the server stopped): nothing more to hear.
            Err(_) => std::future::pending().await,
        }
    }

    /// Leaves the scheduler's worker set: takes no new work, finishes the hops it
    /// runs and waits until the scheduler counts none of its operators as
    /// unconfirmed (at most `drain_timeout`), then deregisters. Returns whether it
    /// drained fully within the timeout.
    pub async fn leave(&mut self, drain_timeout: Duration) -> bool {
        let _ = self.intent.send(Intent::Leaving);
        let deadline = Instant::now() + drain_timeout;
        info!(
            ?drain_timeout,
            "leaving: no new work; draining running executions"
        );
        let drained = loop {
            let hops = self.state.stats.hops.load(Relaxed);
            let load = match *self.heard.borrow() {
                Heard::Answer {
                    leaving: true,
                    load,
                } => Some(load),
                // Until the scheduler acknowledged the leave, it may still place
                // here; an unreachable scheduler places nothing anywhere, so only
                // the local hops count.
                Heard::Answer { leaving: false, .. } => None,
                Heard::Nothing => Some(0),
            };
            if hops == 0 && load == Some(0) {
                break true;
            }
            if Instant::now() >= deadline {
                warn!(hops, ?load, "drain timeout: leaving with work unfinished");
                break false;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        };
        let _ = self.intent.send(Intent::Left);
        let config = &self.state.config;
        // A renewal still in flight would register the worker again (as leaving)
        // after the deregistration: wait until the renewal task has stopped. It
        // stops at once when idle, and within its RPC deadline when not; if it
        // ended otherwise, the channel closes and there is nothing to wait for.
        let _ = tokio::time::timeout(
            config.rpc_deadline,
            self.renewing_stopped.wait_for(|stopped| *stopped),
        )
        .await;
        let request = DeregisterWorkerRequest {
            worker_id: config.id.clone(),
            url: config.url.to_string(),
        };
        let mut scheduler = self.state.scheduler.clone();
        match tokio::time::timeout(config.rpc_deadline, scheduler.deregister_worker(request)).await
        {
            Ok(Ok(_)) => info!("left the scheduler's worker set"),
            Ok(Err(status)) => {
                warn!(error = %status.message(), "deregistration refused; the lease will end by itself")
            }
            Err(_) => warn!("deregistration timed out; the lease will end by itself"),
        }
        drained
    }
}

/// Registers, then renews, for as long as the worker is a member or leaving; says
/// on `stopped` when it stops for good (the worker left), so no renewal follows
/// the deregistration.
async fn renew_forever(
    state: Arc<WorkerState>,
    mut intent: watch::Receiver<Intent>,
    heard: watch::Sender<Heard>,
    refused: watch::Sender<Option<String>>,
    stopped: watch::Sender<bool>,
) {
    let mut period = FIRST_RENEWAL;
    let mut registered = false;
    loop {
        let now = *intent.borrow_and_update();
        let leaving = match now {
            Intent::Member => false,
            Intent::Leaving => true,
            Intent::Left => {
                stopped.send_replace(true);
                return;
            }
        };
        match register(&state, leaving, period).await {
            Ok(reply) => {
                if !registered {
                    info!(
                        scheduler = %state.config.scheduler_url,
                        lease_ms = reply.lease_ms,
                        "registered with the scheduler"
                    );
                }
                registered = true;
                period = Duration::from_millis(reply.renew_ms.max(1));
                heard.send_replace(Heard::Answer {
                    leaving,
                    load: reply.load,
                });
            }
            Err(status) => {
                heard.send_replace(Heard::Nothing);
                if matches!(
                    status.code(),
                    Code::AlreadyExists
                        | Code::InvalidArgument
                        | Code::PermissionDenied
                        | Code::Unauthenticated
                        | Code::Unimplemented
                ) {
                    let reason = format!(
                        "the scheduler at {} refused worker {}: {}",
                        state.config.scheduler_url,
                        state.config.id,
                        status.message()
                    );
                    error!("{reason}");
                    refused.send_replace(Some(reason));
                } else if registered {
                    warn!(error = %status.message(), "lease renewal failed; retrying");
                } else {
                    debug!(error = %status.message(), "registration failed; retrying");
                }
                registered = false;
                period = FIRST_RENEWAL;
            }
        }
        let wait = if leaving {
            period.min(DRAIN_POLL)
        } else {
            period
        };
        // A change of intent (leaving) is told at once. Once no one holds the
        // handle (an embedded worker that never leaves), only time passes.
        if let Ok(Err(_)) = tokio::time::timeout(wait, intent.changed()).await {
            tokio::time::sleep(wait).await;
        }
    }
}

/// One registration (or renewal), bounded by `deadline` and the worker's RPC
/// deadline, whichever is shorter: a renewal slower than its period is as good as
/// lost.
async fn register(
    state: &WorkerState,
    leaving: bool,
    deadline: Duration,
) -> Result<dida_proto::execution::RegisterWorkerReply, Status> {
    let request = RegisterWorkerRequest {
        worker_id: state.config.id.clone(),
        url: state.config.url.to_string(),
        leaving,
    };
    let mut scheduler = state.scheduler.clone();
    let deadline = deadline.min(state.config.rpc_deadline);
    match tokio::time::timeout(deadline, scheduler.register_worker(request)).await {
        Ok(reply) => reply.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no answer within {deadline:?}"
        ))),
    }
}
