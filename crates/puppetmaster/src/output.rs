//! Everything the PuppetMaster prints goes through a [`Printer`]: readable text, or
//! with `--json` one JSON event per line on stdout (SPEC §6.3), plus the node output
//! the PCSs relay, always on stderr so it never mixes with the events.
//!
//! Where the lines go is a [`Sink`], so the interactive console can print above its
//! prompt instead of through it. With a dashboard, every line is also mirrored into
//! its [`Feed`], and workers' debug reports go there as JSON whatever the mode.

use std::sync::{Arc, RwLock};

use dida_core::events::Event;
use dida_dashboard::{Feed, FeedKind};
use serde::Serialize;

/// Where printed lines go.
pub type Sink = Arc<dyn Fn(String) + Send + Sync>;

/// The PuppetMaster's own events, beside the SPEC's and every command's (`client`,
/// `record`, `status`, `submitted`, `error`, which are [`Event`]s). Both have the
/// one shape of `--json` output: an object whose `event` field names its kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum PmEvent {
    /// A node process changed state: `started`, `crashed`, `restarted`, `joined`
    /// (a worker `addWorker` started is placed work on; a storage node
    /// `addStorage` started is listed active by the cluster), `leaving` (a worker
    /// `removeWorker` asked to leave drains; a storage node whose removal
    /// `removeStorage` had decided hands its records off), `removed` (a leaving
    /// storage node's process exited by itself once it was removed), `exited` (a
    /// leaving storage node's process ended otherwise), `stopped` (it exited after
    /// SIGTERM) or `killed` (it outlived its grace period after SIGTERM and was
    /// SIGKILLed).
    Node {
        /// Node id.
        node: String,
        /// `scheduler`, `storage` or `worker`.
        role: String,
        /// Where it serves.
        url: String,
        /// `started`, `crashed`, `restarted`, `joined`, `leaving`, `removed`,
        /// `exited`, `stopped` or `killed`.
        state: String,
        /// Its process id on the PCS's machine.
        pid: u32,
        /// The PCS that runs it.
        pcs: String,
        /// How the process ended, once stopped (`exited with status 0`); absent
        /// otherwise.
        #[serde(skip_serializing_if = "Option::is_none")]
        exit: Option<String>,
        /// Where it serves `/metrics`, `/healthz` and `/readyz`, when the
        /// PuppetMaster gave it an address (`--metrics-port-offset`).
        #[serde(skip_serializing_if = "Option::is_none")]
        metrics: Option<String>,
        /// The storage cluster's configuration epoch that made the change, for a
        /// storage node `addStorage` made join (active) or `removeStorage` made
        /// leave (or that was then removed), so the event can be matched with
        /// `status` and `dida cluster members`.
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<u64>,
    },
    /// What a worker in debug mode reported after an operator.
    Debug {
        /// The worker.
        worker: String,
        /// Execution id.
        id: String,
        /// The operator's class name.
        operator: String,
        /// Its position in the chain.
        order: u32,
        /// Its output (null if it failed).
        output: Option<String>,
        /// Why it failed (null if it succeeded).
        error: Option<String>,
        /// The records it wrote.
        written: Vec<serde_json::Value>,
        /// The execution's user metadata after the operator.
        metadata: serde_json::Value,
        /// The versions the execution has read or written so far.
        pinned: serde_json::Value,
    },
}

/// Prints text or JSON events; see the module documentation.
pub struct Printer {
    json: bool,
    out: RwLock<Sink>,
    err: RwLock<Sink>,
    mirror: RwLock<Option<Arc<Feed>>>,
}

impl std::fmt::Debug for Printer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Printer").field("json", &self.json).finish()
    }
}

impl Printer {
    /// Prints to stdout and stderr.
    pub fn stdio(json: bool) -> Self {
        Self::new(
            json,
            Arc::new(|line| println!("{line}")),
            Arc::new(|line| eprintln!("{line}")),
        )
    }

    /// Prints to the given sinks (`out` for results, `err` for diagnostics).
    pub fn new(json: bool, out: Sink, err: Sink) -> Self {
        Self {
            json,
            out: RwLock::new(out),
            err: RwLock::new(err),
            mirror: RwLock::new(None),
        }
    }

    /// Also sends every later line to a dashboard's feed.
    pub fn mirror_to(&self, feed: Arc<Feed>) {
        *self.mirror.write().unwrap_or_else(|e| e.into_inner()) = Some(feed);
    }

    fn mirror(&self, kind: FeedKind, line: &str) {
        if let Some(feed) = &*self.mirror.read().unwrap_or_else(|e| e.into_inner()) {
            feed.push(kind, line);
        }
    }

    /// Whether events are printed as JSON.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Sends every later line to these sinks (the console's printer, for example).
    pub fn redirect(&self, out: Sink, err: Sink) {
        *self.out.write().unwrap_or_else(|e| e.into_inner()) = out;
        *self.err.write().unwrap_or_else(|e| e.into_inner()) = err;
    }

    fn out(&self, line: String) {
        self.mirror(FeedKind::Output, &line);
        (self.out.read().unwrap_or_else(|e| e.into_inner()))(line);
    }

    fn err(&self, line: String) {
        self.mirror(FeedKind::Diagnostic, &line);
        (self.err.read().unwrap_or_else(|e| e.into_inner()))(line);
    }

    /// Prints a SPEC event as JSON, or `text` in text mode (nothing when `text` is
    /// empty: the event is part of a table printed as a whole).
    pub fn event(&self, event: &Event, text: impl FnOnce() -> String) {
        if self.json {
            self.out(event.to_json_line());
        } else {
            let text = text();
            if !text.is_empty() {
                self.out(text);
            }
        }
    }

    /// Prints one of the PuppetMaster's own events as JSON, or `text` in text mode.
    pub fn pm_event(&self, event: &PmEvent, text: impl FnOnce() -> String) {
        if matches!(event, PmEvent::Debug { .. }) {
            if let Ok(json) = serde_json::to_string(event) {
                self.mirror(FeedKind::Debug, &json);
            }
        }
        if self.json {
            match serde_json::to_string(event) {
                Ok(line) => self.out(line),
                Err(error) => self.err(format!("cannot print an event: {error}")),
            }
        } else {
            self.out(text());
        }
    }

    /// Prints a line of text (nothing in JSON mode, where events say it all).
    pub fn text(&self, text: impl FnOnce() -> String) {
        if !self.json {
            self.out(text());
        }
    }

    /// Reports an error of a script line (or, with no line, of the session).
    pub fn error(&self, line: Option<usize>, command: &str, message: &str) {
        if self.json {
            let event = Event::Error {
                line,
                command: command.to_string(),
                message: message.to_string(),
            };
            self.out(event.to_json_line());
        } else {
            match line {
                Some(line) => self.err(format!("error: line {line} ({command}): {message}")),
                None => self.err(format!("error: {command}: {message}")),
            }
        }
    }

    /// A diagnostic that is not an event (progress, warnings): stderr in both modes.
    pub fn note(&self, text: &str) {
        self.err(text.to_string());
    }

    /// A line a node printed, relayed by its PCS.
    pub fn relay(&self, node: &str, line: &str) {
        self.err(format!("[{node}] {line}"));
    }
}

/// Formats rows as a table with aligned columns (the first row is the header).
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(c, cell)| {
                    if c + 1 == row.len() {
                        cell.clone()
                    } else {
                        format!("{cell:<width$}", width = widths[c])
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn capture(json: bool) -> (Printer, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (out, err) = (lines.clone(), lines.clone());
        let printer = Printer::new(
            json,
            Arc::new(move |l| out.lock().unwrap().push(format!("out {l}"))),
            Arc::new(move |l| err.lock().unwrap().push(format!("err {l}"))),
        );
        (printer, lines)
    }

    #[test]
    fn json_mode_prints_events_with_the_spec_field_names() {
        let (printer, lines) = capture(true);
        printer.error(Some(4), "crash", "unknown node");
        printer.text(|| "not in json".into());
        printer.pm_event(
            &PmEvent::Node {
                node: "s1".into(),
                role: "storage".into(),
                url: "http://127.0.0.1:1".into(),
                state: "started".into(),
                pid: 42,
                pcs: "local".into(),
                exit: None,
                metrics: None,
                epoch: None,
            },
            String::new,
        );
        printer.relay("s1", "hello");
        let lines = lines.lock().unwrap();
        assert_eq!(
            lines[0],
            r#"out {"event":"error","line":4,"command":"crash","message":"unknown node"}"#
        );
        assert_eq!(
            lines[1],
            r#"out {"event":"node","node":"s1","role":"storage","url":"http://127.0.0.1:1","state":"started","pid":42,"pcs":"local"}"#
        );
        assert_eq!(lines[2], "err [s1] hello");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn text_mode_prints_errors_with_their_line_on_stderr() {
        let (printer, lines) = capture(false);
        printer.error(Some(4), "crash", "unknown node");
        printer.text(|| "hello".into());
        assert_eq!(
            *lines.lock().unwrap(),
            ["err error: line 4 (crash): unknown node", "out hello"]
        );
    }

    #[test]
    fn tables_align_their_columns() {
        let rows = vec![
            vec!["node".into(), "state".into(), "url".into()],
            vec!["s10".into(), "alive".into(), "http://x:1".into()],
        ];
        assert_eq!(table(&rows), "node  state  url\ns10   alive  http://x:1");
    }
}
