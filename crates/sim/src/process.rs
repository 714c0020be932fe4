//! A simulated process: whether a node is up, paused (SIGSTOP) or crashed
//! (SIGKILL), and the wrapper that makes every future of the node obey it.
//!
//! Everything a node does — its background protocols and each message handler the
//! network runs for it — is polled through [`Gated`]. A paused node's futures are
//! not polled at all (their timers expire, and fire only when it resumes, exactly
//! like a stopped process); a crashed node's futures are dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// What a simulated node is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    /// Running.
    Up,
    /// Stopped: nothing of it runs until resumed.
    Paused,
    /// Killed: it never runs again.
    Crashed,
}

/// One node's process state, shared by all of its futures.
#[derive(Debug)]
pub struct Process {
    state: Mutex<ProcState>,
    /// Futures waiting for the process to resume.
    parked: Mutex<Vec<Waker>>,
}

impl Process {
    /// A running process.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(ProcState::Up),
            parked: Mutex::new(Vec::new()),
        })
    }

    /// Its state now.
    pub fn state(&self) -> ProcState {
        *self.state.lock().expect("process lock poisoned")
    }

    /// Moves to `next` (a crashed process stays crashed) and wakes every parked
    /// future so it observes the change.
    pub fn set(&self, next: ProcState) {
        {
            let mut state = self.state.lock().expect("process lock poisoned");
            if *state == ProcState::Crashed {
                return;
            }
            *state = next;
        }
        for waker in self.parked.lock().expect("process lock poisoned").drain(..) {
            waker.wake();
        }
    }
}

/// A future that runs only while its process is up; it ends with `None` when the
/// process crashes (dropping the inner future).
pub struct Gated<F> {
    process: Arc<Process>,
    inner: Option<Pin<Box<F>>>,
}

impl<F: Future> Gated<F> {
    /// Runs `inner` as part of `process`.
    pub fn new(process: Arc<Process>, inner: F) -> Self {
        Self {
            process,
            inner: Some(Box::pin(inner)),
        }
    }
}

impl<F: Future> Future for Gated<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.process.state() {
            ProcState::Crashed => {
                self.inner = None;
                Poll::Ready(None)
            }
            ProcState::Paused => {
                self.process
                    .parked
                    .lock()
                    .expect("process lock poisoned")
                    .push(cx.waker().clone());
                Poll::Pending
            }
            ProcState::Up => match self.inner.as_mut() {
                Some(inner) => inner.as_mut().poll(cx).map(Some),
                None => Poll::Ready(None),
            },
        }
    }
}
