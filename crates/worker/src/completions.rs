//! Confirming completed operators to the scheduler without an RPC each.
//!
//! The scheduler's load of a worker is the operators assigned to it and not yet
//! confirmed (SPEC §3), so every operator a worker runs must be confirmed. A call per
//! operator would double the RPCs of a hop (the forward is the other one); instead a
//! worker queues its completions here and confirms them
//!
//! - on messages sent anyway, which take the whole queue with them: the outcome report
//!   when the worker ends an execution, and its answer when the scheduler hands it a
//!   new execution; or else
//! - in one `OperatorsCompleted` batch, sent by [`CompletionQueue::flush_forever`] at
//!   most [`BATCH_WINDOW`] after the first completion of the batch was queued (if no
//!   message took it meanwhile).
//!
//! So a completion reaches the scheduler at most `BATCH_WINDOW` plus one call after
//! the operator ended (plus the retries of [`crate::chain`] if the scheduler is
//! unreachable), and never later than the outcome of its execution, which settles
//! every position: that is how stale a worker's load can be.

use std::mem;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dida_proto::execution::{Completion, OperatorsCompletedRequest};
use tokio::sync::Notify;
use tracing::warn;

use crate::chain::retry;
use crate::node::WorkerState;

/// How long the first completion of a batch waits for others to join it.
pub const BATCH_WINDOW: Duration = Duration::from_millis(5);

/// Most completions sent in one call; more wait for the next one.
const MAX_BATCH: usize = 4096;

/// Completions this worker has not confirmed yet.
#[derive(Debug, Default)]
pub(crate) struct CompletionQueue {
    pending: Mutex<Vec<Completion>>,
    /// Wakes the flusher when the queue stops being empty.
    queued: Notify,
}

impl CompletionQueue {
    /// Queues one completion.
    pub fn push(&self, completion: Completion) {
        self.push_all(vec![completion]);
    }

    /// Queues completions again (after a report that carried them failed).
    pub fn push_all(&self, completions: Vec<Completion>) {
        if completions.is_empty() {
            return;
        }
        let was_empty = {
            let mut pending = self.pending.lock().expect("completion queue poisoned");
            let was_empty = pending.is_empty();
            pending.extend(completions);
            was_empty
        };
        if was_empty {
            self.queued.notify_one();
        }
    }

    /// Takes up to [`MAX_BATCH`] queued completions, oldest first.
    pub fn take(&self) -> Vec<Completion> {
        let mut pending = self.pending.lock().expect("completion queue poisoned");
        if pending.len() <= MAX_BATCH {
            return mem::take(&mut *pending);
        }
        let rest = pending.split_off(MAX_BATCH);
        mem::replace(&mut *pending, rest)
    }

    /// Whether nothing is queued.
    fn is_empty(&self) -> bool {
        self.pending
            .lock()
            .expect("completion queue poisoned")
            .is_empty()
    }

    /// Sends queued completions to the scheduler in batches, for as long as the worker
    /// runs: wakes when the queue stops being empty, waits [`BATCH_WINDOW`] for more,
    /// sends what is queued then (an outcome report may have taken it all).
    pub async fn flush_forever(state: Arc<WorkerState>) {
        let queue = &state.completions;
        loop {
            queue.queued.notified().await;
            tokio::time::sleep(BATCH_WINDOW).await;
            loop {
                let completions = queue.take();
                if completions.is_empty() {
                    break;
                }
                let batch = OperatorsCompletedRequest {
                    worker_id: state.config.id.clone(),
                    completions,
                };
                let sent = retry(|| {
                    let mut scheduler = state.scheduler.clone();
                    let batch = batch.clone();
                    async move { scheduler.operators_completed(batch).await.map(|_| ()) }
                })
                .await;
                if let Err(status) = sent {
                    warn!(
                        completions = batch.completions.len(),
                        error = %status.message(),
                        "could not confirm completed operators to the scheduler; their load stays until the executions end"
                    );
                }
                if queue.is_empty() {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completion(execution_id: &str, order: usize) -> Completion {
        Completion {
            execution_id: execution_id.to_string(),
            order: order as u32,
        }
    }

    #[test]
    fn take_returns_completions_oldest_first_in_bounded_batches() {
        let queue = CompletionQueue::default();
        for i in 0..MAX_BATCH + 3 {
            queue.push(completion(&format!("e-{i}"), i % 4));
        }
        let first = queue.take();
        assert_eq!(first.len(), MAX_BATCH);
        assert_eq!(first[0].execution_id, "e-0");
        let second = queue.take();
        assert_eq!(second.len(), 3);
        assert_eq!(second[0].execution_id, format!("e-{MAX_BATCH}"));
        assert!(queue.take().is_empty());
    }

    #[tokio::test]
    async fn the_first_completion_after_empty_wakes_the_flusher_once() {
        let queue = CompletionQueue::default();
        queue.push(completion("e-1", 0));
        queue.push(completion("e-1", 1));
        // The permit stored by the first push wakes a waiter that comes later.
        tokio::time::timeout(Duration::from_secs(5), queue.queued.notified())
            .await
            .expect("the flusher is woken");
        assert_eq!(queue.take().len(), 2);
        queue.push_all(Vec::new());
        assert!(queue.is_empty(), "pushing nothing queues nothing");
    }
}
