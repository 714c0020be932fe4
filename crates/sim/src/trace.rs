//! The run's trace: every event (message, fault, client operation) with its
//! simulated time. Each event is hashed as it happens, so two runs of a seed can be
//! compared event for event without keeping them; the text is kept only when asked
//! (`dida sim --trace`).

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::Hasher;
use std::sync::Mutex;

use tokio::time::Instant;

/// The event log of one simulated run.
#[derive(Debug)]
pub struct Trace {
    start: Instant,
    keep: bool,
    inner: Mutex<TraceInner>,
}

#[derive(Debug)]
struct TraceInner {
    lines: Vec<String>,
    events: u64,
    /// SipHash with fixed keys: the same events give the same fingerprint.
    hasher: DefaultHasher,
}

impl Trace {
    /// A trace starting now; `keep` keeps the text of every event.
    pub fn new(keep: bool) -> Self {
        Self {
            start: Instant::now(),
            keep,
            inner: Mutex::new(TraceInner {
                lines: Vec::new(),
                events: 0,
                hasher: DefaultHasher::new(),
            }),
        }
    }

    /// Simulated time since the start of the run.
    pub fn elapsed(&self) -> std::time::Duration {
        Instant::now().duration_since(self.start)
    }

    /// Records one event.
    pub fn event(&self, what: fmt::Arguments<'_>) {
        let line = format!("{:>10.3}s  {what}", self.elapsed().as_secs_f64());
        let mut inner = self.inner.lock().expect("trace lock poisoned");
        inner.events += 1;
        inner.hasher.write(line.as_bytes());
        if self.keep {
            inner.lines.push(line);
        }
    }

    /// How many events so far, and their fingerprint.
    pub fn fingerprint(&self) -> (u64, u64) {
        let inner = self.inner.lock().expect("trace lock poisoned");
        (inner.events, inner.hasher.finish())
    }

    /// The kept lines (empty unless `keep`).
    pub fn take_lines(&self) -> Vec<String> {
        std::mem::take(&mut self.inner.lock().expect("trace lock poisoned").lines)
    }
}
