//! What one invocation leaves for inspection (`dida status`, `dida logs`): the
//! operator's log lines — its SDK `log` calls and what it printed on WASI stdout and
//! stderr, in the order it produced them — and the fuel it used.
//!
//! Lines are kept within a byte budget, the part of the execution's
//! [`MAX_EXECUTION_LOG_BYTES`] that earlier operators left: the first lines that fit
//! are kept, every later one is dropped and counted, and a last line says how many
//! bytes were dropped. So an operator that prints without end costs the worker at
//! most the budget (and the tail of stderr that explains a trap), and printing never
//! fails the operator.
//!
//! One [`Capture`] is shared by the host state (log calls), the two output streams
//! the WASI context writes to, and the hop that reads it once the call is over.

use std::sync::{Arc, Mutex, MutexGuard};

use dida_core::limits::MAX_EXECUTION_LOG_BYTES;
use dida_proto::execution::{LogLevel, LogLine};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Most bytes of an operator's stderr kept (its end) to explain a trap.
const STDERR_TAIL_BYTES: usize = 16 * 1024;

/// What one invocation printed and used, shared between its store and its hop.
#[derive(Debug, Clone)]
pub(crate) struct Capture(Arc<Mutex<Captured>>);

#[derive(Debug, Default)]
struct Captured {
    order: u32,
    /// Bytes of text lines may still take.
    budget: usize,
    lines: Vec<LogLine>,
    /// Bytes of lines dropped over the budget.
    dropped: u64,
    /// Bytes printed on stdout and stderr since their last newline.
    partial: [Vec<u8>; 2],
    /// The end of stderr, for the panic message of a trap.
    stderr_tail: Vec<u8>,
    fuel_used: u64,
    /// The instance's linear memory, in bytes.
    memory_bytes: u64,
    /// How long instantiating the operator took, once it was.
    instantiation: Option<std::time::Duration>,
}

/// The WASI stream an operator prints on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    fn level(self) -> LogLevel {
        match self {
            Stream::Stdout => LogLevel::Stdout,
            Stream::Stderr => LogLevel::Stderr,
        }
    }
}

impl Capture {
    /// An empty capture for the operator at position `order`, keeping at most
    /// `budget` bytes of lines.
    pub(crate) fn new(order: u32, budget: usize) -> Self {
        Self(Arc::new(Mutex::new(Captured {
            order,
            budget,
            ..Captured::default()
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Captured> {
        // A panic while holding the lock leaves nothing half-done worth refusing.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a log call of the operator.
    pub(crate) fn log(&self, level: LogLevel, text: &str) {
        self.lock().push(level, text);
    }

    /// Records bytes the operator printed on `stream`: each complete line becomes a
    /// log line.
    pub(crate) fn print(&self, stream: Stream, bytes: &[u8]) {
        self.lock().print(stream, bytes);
    }

    /// Records the fuel the invocation used.
    pub(crate) fn set_fuel_used(&self, fuel: u64) {
        self.lock().fuel_used = fuel;
    }

    /// The fuel the invocation used.
    pub(crate) fn fuel_used(&self) -> u64 {
        self.lock().fuel_used
    }

    /// Records the linear memory the instance grew to.
    pub(crate) fn set_memory_bytes(&self, bytes: u64) {
        self.lock().memory_bytes = bytes;
    }

    /// The linear memory the instance grew to, in bytes.
    pub(crate) fn memory_bytes(&self) -> u64 {
        self.lock().memory_bytes
    }

    /// Records how long instantiating the operator took.
    pub(crate) fn set_instantiation(&self, took: std::time::Duration) {
        self.lock().instantiation = Some(took);
    }

    /// How long instantiating the operator took (`None` if it never was).
    pub(crate) fn instantiation(&self) -> Option<std::time::Duration> {
        self.lock().instantiation
    }

    /// The last bytes the operator printed on stderr.
    pub(crate) fn stderr_tail(&self) -> String {
        String::from_utf8_lossy(&self.lock().stderr_tail).into_owned()
    }

    /// The lines kept, ending with what was printed after the last newline and, if
    /// lines were dropped, a line that says how many bytes.
    pub(crate) fn take_lines(&self) -> Vec<LogLine> {
        let mut captured = self.lock();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut captured.partial[stream as usize]);
            if !rest.is_empty() {
                captured.push(stream.level(), &String::from_utf8_lossy(&rest));
            }
        }
        let mut lines = std::mem::take(&mut captured.lines);
        if captured.dropped > 0 {
            lines.push(LogLine {
                order: captured.order,
                level: LogLevel::Warn as i32,
                text: dropped_marker(captured.dropped),
                operator: String::new(),
            });
            captured.dropped = 0;
        }
        lines
    }

    /// An output stream for the WASI context that records what is printed on `stream`.
    pub(crate) fn output(&self, stream: Stream) -> CapturedOutput {
        CapturedOutput {
            capture: self.clone(),
            stream,
        }
    }
}

/// The line that ends an operator's lines when some were dropped.
pub(crate) fn dropped_marker(bytes: u64) -> String {
    format!(
        "{bytes} bytes of logs dropped: an execution keeps at most {MAX_EXECUTION_LOG_BYTES} \
         bytes of logs"
    )
}

impl Captured {
    fn push(&mut self, level: LogLevel, text: &str) {
        if text.len() <= self.budget {
            self.budget -= text.len();
            self.lines.push(LogLine {
                order: self.order,
                level: level as i32,
                text: text.to_string(),
                operator: String::new(),
            });
        } else {
            // Keep the first lines: once one does not fit, none after it is kept.
            self.budget = 0;
            self.dropped += text.len() as u64;
        }
    }

    fn print(&mut self, stream: Stream, bytes: &[u8]) {
        if stream == Stream::Stderr {
            self.stderr_tail.extend_from_slice(bytes);
            if self.stderr_tail.len() > 2 * STDERR_TAIL_BYTES {
                let cut = self.stderr_tail.len() - STDERR_TAIL_BYTES;
                self.stderr_tail.drain(..cut);
            }
        }
        let index = stream as usize;
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            match piece.strip_suffix(b"\n") {
                Some(end) => {
                    let mut line = std::mem::take(&mut self.partial[index]);
                    line.extend_from_slice(end);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    self.push(stream.level(), &String::from_utf8_lossy(&line));
                }
                None if self.budget == 0 => self.dropped += piece.len() as u64,
                None => {
                    self.partial[index].extend_from_slice(piece);
                    // A line longer than the budget cannot be kept: drop it now
                    // rather than hold it.
                    if self.partial[index].len() > self.budget {
                        let line = std::mem::take(&mut self.partial[index]);
                        self.budget = 0;
                        self.dropped += line.len() as u64;
                    }
                }
            }
        }
    }
}

/// Stdout or stderr of one invocation, recorded in its [`Capture`]. It takes every
/// write: what is over the budget is counted and dropped, never refused.
#[derive(Debug, Clone)]
pub(crate) struct CapturedOutput {
    capture: Capture,
    stream: Stream,
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// Largest write announced as possible at once (any write is taken whole).
const WRITE_PERMIT: usize = 64 * 1024;

#[wasmtime_wasi::async_trait]
impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.capture.print(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.capture.print(self.stream, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Bytes of log text `lines` hold (what the execution's budget counts).
pub(crate) fn text_bytes<'a>(lines: impl IntoIterator<Item = &'a LogLine>) -> usize {
    lines.into_iter().map(|line| line.text.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[LogLine]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn log_calls_and_printed_lines_keep_their_order_and_level() {
        let capture = Capture::new(2, 1000);
        capture.print(Stream::Stdout, b"hello ");
        capture.log(LogLevel::Info, "from the sdk");
        capture.print(Stream::Stdout, b"world\r\nsecond\n");
        capture.print(Stream::Stderr, b"oops\nno newline");
        let lines = capture.take_lines();
        assert_eq!(
            texts(&lines),
            [
                "from the sdk",
                "hello world",
                "second",
                "oops",
                "no newline"
            ]
        );
        assert_eq!(lines[0].level, LogLevel::Info as i32);
        assert_eq!(lines[1].level, LogLevel::Stdout as i32);
        assert_eq!(lines[4].level, LogLevel::Stderr as i32);
        assert!(lines.iter().all(|l| l.order == 2));
        assert_eq!(capture.stderr_tail(), "oops\nno newline");
    }

    #[test]
    fn over_the_budget_the_first_lines_are_kept_and_a_marker_says_how_much_was_dropped() {
        let capture = Capture::new(0, 25);
        for i in 0..10 {
            capture.log(LogLevel::Info, &format!("line {i:03}")); // 8 bytes each
        }
        capture.print(Stream::Stdout, b"printed too\nand a long unfinished line");
        let lines = capture.take_lines();
        assert_eq!(
            texts(&lines[..3]),
            ["line 000", "line 001", "line 002"],
            "the first lines that fit"
        );
        assert_eq!(lines.len(), 4);
        // 7 log lines of 8 bytes, "printed too" (11) and the unfinished 26.
        assert_eq!(lines[3].text, dropped_marker(7 * 8 + 11 + 26));
        assert!(text_bytes(&lines[..3]) <= 25);
    }

    #[test]
    fn a_line_longer_than_the_budget_is_dropped_without_being_held() {
        let capture = Capture::new(0, 10);
        let mut printed = 0;
        for _ in 0..1000 {
            capture.print(Stream::Stdout, &[b'x'; 100]);
            printed += 100;
        }
        assert!(capture.lock().partial[0].is_empty());
        let lines = capture.take_lines();
        assert_eq!(texts(&lines), [dropped_marker(printed)]);
    }

    #[test]
    fn stderr_keeps_its_end_for_the_panic_message() {
        let capture = Capture::new(0, 0);
        for _ in 0..100 {
            capture.print(Stream::Stderr, &[b'a'; 1000]);
        }
        capture.print(Stream::Stderr, b"\npanicked at the end\n");
        let tail = capture.stderr_tail();
        assert!(tail.len() <= 2 * STDERR_TAIL_BYTES);
        assert!(tail.ends_with("panicked at the end\n"));
    }
}
