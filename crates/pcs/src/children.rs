//! The node processes a PCS started: spawning them, relaying their output, noticing
//! when they exit, killing them.
//!
//! Each child is owned by one waiter task, which reaps it when it exits and signals
//! it on request (SIGTERM for a graceful stop, SIGKILL for a crash); only the waiter
//! signals, so a signal never reaches a reaped pid that was reused; the rest of the PCS only sees its entry (pid, exit status, last
//! lines). Children are started in their own process group, so a Ctrl-C in the
//! terminal reaches the PCS (which then stops them in order) rather than each node,
//! and on Linux they are tied to the PCS with `PR_SET_PDEATHSIG`, so even a PCS
//! killed with SIGKILL leaves no orphan behind.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dida_core::membership::NodeUrl;
use dida_proto::control::{NodeProcess, OutputReply};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::launch::Launch;

/// Lines of a child's output kept to explain a failed start.
const RECENT_LINES: usize = 20;

/// Longest line of a child's output relayed, in bytes; the rest of a longer line is
/// dropped (and the line says so). Relayed lines wait in a channel of 4096 for slow
/// readers, so each must be bounded: a worker logging an operator's output at debug
/// level could otherwise print a line of tens of megabytes.
const MAX_RELAYED_LINE_BYTES: usize = 16 * 1024;

/// Entries (running or exited nodes) kept per allowed live node: beyond
/// `max_nodes` times this, the exited ones are forgotten (and can no longer be
/// restarted by id), so a stream of distinct ids cannot grow the table forever.
const ENTRIES_PER_NODE: usize = 4;

/// Why a child could not be started or killed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChildError {
    #[error("node {0} is already running on this PCS")]
    AlreadyRunning(String),
    #[error("node {0} was not started by this PCS")]
    Unknown(String),
    #[error("node {0} is not running (it {1})")]
    NotRunning(String, String),
    #[error("cannot start node {id}: {host}:{port} is not free on this machine (is the port already in use?): {error}")]
    PortInUse {
        id: String,
        host: String,
        port: u16,
        error: std::io::Error,
    },
    #[error("cannot start {binary}: {error}")]
    Spawn {
        binary: String,
        error: std::io::Error,
    },
    #[error("node {id} {exit} during start-up{}", last_lines(.recent))]
    ExitedEarly {
        id: String,
        exit: String,
        recent: Vec<String>,
    },
    #[error("cannot start node {id}: this PCS already runs {max} nodes, its limit (dida pcs --max-nodes)")]
    TooManyNodes { id: String, max: usize },
    #[error("node {id} did not listen on {url} within {timeout:?}; it was killed{}", last_lines(.recent))]
    NotListening {
        id: String,
        url: String,
        timeout: Duration,
        recent: Vec<String>,
    },
}

fn last_lines(recent: &[String]) -> String {
    if recent.is_empty() {
        String::new()
    } else {
        format!("; its last lines: {}", recent.join(" | "))
    }
}

/// One started node.
#[derive(Debug)]
struct Entry {
    /// The validated command line it was started with, kept so that a restart runs
    /// exactly the same one (nothing is re-validated or rebuilt).
    launch: Launch,
    pid: u32,
    /// Asks the waiter to signal the child.
    signals: mpsc::Sender<Signal>,
    /// `None` while running, then how the process ended.
    exit: watch::Receiver<Option<String>>,
    /// Owns the child; aborting it drops the child, which SIGKILLs it.
    waiter: JoinHandle<()>,
}

impl Entry {
    fn exit(&self) -> Option<String> {
        self.exit.borrow().clone()
    }
}

/// What the waiter of a child is asked to send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// SIGTERM: stop gracefully.
    Term,
    /// SIGKILL: a fail-stop crash, or the end of a grace period.
    Kill,
}

/// What it takes to signal a running node and see it end: its pid, its waiter's
/// signal channel, its exit.
type Running = (u32, mpsc::Sender<Signal>, watch::Receiver<Option<String>>);

/// How a node ended when it was stopped ([`Children::stop`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stopped {
    /// Its pid.
    pub pid: u32,
    /// Whether it outlived its grace period and was SIGKILLed.
    pub forced: bool,
    /// How it ended, as [`NodeProcess::exit`] says it.
    pub exit: String,
}

/// Every node a PCS started.
#[derive(Debug)]
pub(crate) struct Children {
    binary: PathBuf,
    start_timeout: Duration,
    nodes: Mutex<BTreeMap<String, Entry>>,
    output: broadcast::Sender<OutputReply>,
    /// Most nodes running at once.
    max_nodes: usize,
    /// One permit per running node, held by its waiter until the process exits.
    slots: Arc<Semaphore>,
}

impl Children {
    /// No node yet; at most `max_nodes` will run at once.
    pub fn new(binary: PathBuf, start_timeout: Duration, max_nodes: usize) -> Self {
        Self {
            binary,
            start_timeout,
            nodes: Mutex::new(BTreeMap::new()),
            output: broadcast::channel(4096).0,
            max_nodes,
            slots: Arc::new(Semaphore::new(max_nodes)),
        }
    }

    /// Every line the children print from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<OutputReply> {
        self.output.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `launch` and waits until it listens on its URL; returns its pid.
    pub async fn start(&self, launch: Launch) -> Result<u32, ChildError> {
        let id = launch.id.clone();
        if self.lock().get(&id).is_some_and(|e| e.exit().is_none()) {
            return Err(ChildError::AlreadyRunning(id));
        }
        let slot =
            self.slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| ChildError::TooManyNodes {
                    id: id.clone(),
                    max: self.max_nodes,
                })?;
        let (host, port) = (launch.url.host.clone(), launch.url.port);
        // Checked here, where the port is, so that "port in use" is one clear error
        // rather than a node that exits with it in its log.
        if let Err(error) = std::net::TcpListener::bind((host.as_str(), port)) {
            return Err(ChildError::PortInUse {
                id,
                host,
                port,
                error,
            });
        }
        let mut command = Command::new(&self.binary);
        command
            .args(&launch.args)
            .env("RUST_LOG", &launch.log_level)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        die_with_parent(&mut command);
        let mut child = command.spawn().map_err(|error| ChildError::Spawn {
            binary: self.binary.display().to_string(),
            error,
        })?;
        let pid = child.id().unwrap_or_default();
        info!(node = %id, role = %launch.role, url = %launch.url, pid, "node started");
        let recent = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stdout) = child.stdout.take() {
            self.relay(&id, "stdout", stdout, recent.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            self.relay(&id, "stderr", stderr, recent.clone());
        }
        let (signals_tx, signals_rx) = mpsc::channel(1);
        let (exit_tx, exit_rx) = watch::channel(None);
        let waiter = tokio::spawn(wait_for_exit(
            id.clone(),
            child,
            signals_rx,
            exit_tx,
            self.output.clone(),
            slot,
        ));
        let url = launch.url.clone();
        let entry = Entry {
            launch,
            pid,
            signals: signals_tx,
            exit: exit_rx.clone(),
            waiter,
        };
        {
            let mut nodes = self.lock();
            if nodes.len() >= self.max_nodes.saturating_mul(ENTRIES_PER_NODE) {
                nodes.retain(|_, e| e.exit().is_none());
            }
            if let Some(old) = nodes.insert(id.clone(), entry) {
                old.waiter.abort();
            }
        }
        self.wait_until_listening(&id, &url, exit_rx, &recent)
            .await
            .map(|()| pid)
    }

    async fn wait_until_listening(
        &self,
        id: &str,
        url: &NodeUrl,
        mut exit: watch::Receiver<Option<String>>,
        recent: &Mutex<VecDeque<String>>,
    ) -> Result<(), ChildError> {
        let deadline = Instant::now() + self.start_timeout;
        let recent = || {
            recent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect::<Vec<_>>()
        };
        loop {
            let exited = exit.borrow_and_update().clone();
            if let Some(exit) = exited {
                // Let the relays catch the last lines the node printed.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err(ChildError::ExitedEarly {
                    id: id.to_string(),
                    exit,
                    recent: recent(),
                });
            }
            if tokio::net::TcpStream::connect((url.host.as_str(), url.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.kill(id).await;
                return Err(ChildError::NotListening {
                    id: id.to_string(),
                    url: url.to_string(),
                    timeout: self.start_timeout,
                    recent: recent(),
                });
            }
            tokio::select! {
                _ = exit.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    }

    /// Relays every line of one output stream of node `id`.
    fn relay(
        &self,
        id: &str,
        stream: &'static str,
        pipe: impl AsyncRead + Unpin + Send + 'static,
        recent: Arc<Mutex<VecDeque<String>>>,
    ) {
        let output = self.output.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let mut pipe = BufReader::new(pipe);
            while let Ok(Some(line)) = next_line(&mut pipe, MAX_RELAYED_LINE_BYTES).await {
                {
                    let mut recent = recent.lock().unwrap_or_else(|e| e.into_inner());
                    if recent.len() == RECENT_LINES {
                        recent.pop_front();
                    }
                    recent.push_back(line.clone());
                }
                // No subscriber is not an error: the line is simply not relayed.
                let _ = output.send(OutputReply {
                    node_id: id.clone(),
                    stream: stream.to_string(),
                    line,
                });
            }
        });
    }

    /// The pid, signal channel and exit of running node `id`.
    fn running(&self, id: &str) -> Result<Running, ChildError> {
        let nodes = self.lock();
        let entry = nodes
            .get(id)
            .ok_or_else(|| ChildError::Unknown(id.to_string()))?;
        if let Some(exit) = entry.exit() {
            return Err(ChildError::NotRunning(id.to_string(), exit));
        }
        Ok((entry.pid, entry.signals.clone(), entry.exit.clone()))
    }

    /// SIGKILLs node `id` and waits until it is reaped; returns its pid.
    pub async fn kill(&self, id: &str) -> Result<u32, ChildError> {
        let (pid, signals, mut exit) = self.running(id)?;
        // The waiter may have reaped it meanwhile; either way we wait for the exit.
        let _ = signals.send(Signal::Kill).await;
        let _ = exit.wait_for(Option::is_some).await;
        info!(node = %id, pid, "node killed");
        Ok(pid)
    }

    /// Stops node `id` gracefully: SIGTERM, then SIGKILL if it still runs after
    /// `grace`; waits until it is reaped. Other calls go on meanwhile (nothing is
    /// locked while waiting).
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<Stopped, ChildError> {
        let (pid, signals, mut exit) = self.running(id)?;
        let _ = signals.send(Signal::Term).await;
        let forced = tokio::time::timeout(grace, exit.wait_for(Option::is_some))
            .await
            .is_err();
        if forced {
            warn!(node = %id, pid, ?grace, "node still runs after SIGTERM and its grace period: SIGKILLing it");
            let _ = signals.send(Signal::Kill).await;
            let _ = exit.wait_for(Option::is_some).await;
        }
        let how = exit.borrow().clone().unwrap_or_default();
        info!(node = %id, pid, forced, "node stopped: it {how}");
        Ok(Stopped {
            pid,
            forced,
            exit: how,
        })
    }

    /// Starts node `id` again with the launch it was first started with, SIGKILLing
    /// (and reaping) it first if it still runs; returns the new pid and the pid
    /// killed, if any. Like [`Children::start`], answers once the node listens.
    pub async fn restart(&self, id: &str) -> Result<(u32, Option<u32>), ChildError> {
        let (launch, running) = {
            let nodes = self.lock();
            let entry = nodes
                .get(id)
                .ok_or_else(|| ChildError::Unknown(id.to_string()))?;
            (entry.launch.clone(), entry.exit().is_none())
        };
        let killed = if running {
            match self.kill(id).await {
                Ok(pid) => Some(pid),
                // It exited on its own between the look-up and the kill.
                Err(ChildError::NotRunning(..)) => None,
                Err(error) => return Err(error),
            }
        } else {
            None
        };
        info!(node = %id, killed, args = ?launch.args, "restarting a node with its original command line");
        let pid = self.start(launch).await?;
        Ok((pid, killed))
    }

    /// SIGKILLs every node still running; returns their pids.
    pub async fn stop_all(&self) -> Vec<u32> {
        let running: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.exit().is_none())
            .map(|(id, _)| id.clone())
            .collect();
        let kills = running.iter().map(|id| self.kill(id));
        futures::future::join_all(kills)
            .await
            .into_iter()
            .filter_map(Result::ok)
            .collect()
    }

    /// Every node started, running or not.
    pub fn list(&self) -> Vec<NodeProcess> {
        self.lock()
            .iter()
            .map(|(id, e)| {
                let exit = e.exit();
                NodeProcess {
                    node_id: id.clone(),
                    role: e.launch.role.to_string(),
                    url: e.launch.url.to_string(),
                    pid: e.pid,
                    running: exit.is_none(),
                    exit: exit.unwrap_or_default(),
                }
            })
            .collect()
    }
}

impl Drop for Children {
    /// Dropping the waiters drops the children, which SIGKILLs them.
    fn drop(&mut self) {
        for entry in self.lock().values() {
            entry.waiter.abort();
        }
    }
}

/// The next line of `reader` without its line end (`None` at the end), at most
/// `max` bytes of it: the rest of a longer line is read and dropped, and the line
/// ends with a note saying how much. Invalid UTF-8 is replaced, as for any relayed
/// output.
async fn next_line(
    reader: &mut (impl AsyncBufRead + Unpin),
    max: usize,
) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut dropped = 0usize;
    let mut read_any = false;
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            break;
        }
        read_any = true;
        let (chunk, done) = match buffer.iter().position(|&b| b == b'\n') {
            Some(end) => (&buffer[..end], Some(end + 1)),
            None => (buffer, None),
        };
        let room = max - line.len();
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        dropped += chunk.len().saturating_sub(room);
        let used = done.unwrap_or(buffer.len());
        reader.consume(used);
        if done.is_some() {
            break;
        }
    }
    if !read_any {
        return Ok(None);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let mut text = String::from_utf8_lossy(&line).into_owned();
    if dropped > 0 {
        text.push_str(&format!(" … ({dropped} more bytes dropped)"));
    }
    Ok(Some(text))
}

/// Owns `child` until it exits (or is killed on request), then publishes how it
/// ended, giving its `slot` back first so that a restart finds it free. Signals
/// are sent here, where the child is known not to be reaped yet.
async fn wait_for_exit(
    id: String,
    mut child: Child,
    mut signals: mpsc::Receiver<Signal>,
    exit: watch::Sender<Option<String>>,
    output: broadcast::Sender<OutputReply>,
    slot: OwnedSemaphorePermit,
) {
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            Some(signal) = signals.recv() => match signal {
                Signal::Kill => {
                    if let Err(error) = child.start_kill() {
                        warn!(node = %id, %error, "cannot SIGKILL the node");
                    }
                    break child.wait().await;
                }
                Signal::Term => terminate(&id, &child),
            },
        }
    };
    let how = match status {
        Ok(status) => match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => format!("was killed ({status})"),
        },
        Err(error) => format!("could not be waited for: {error}"),
    };
    drop(slot);
    info!(node = %id, "node {how}");
    let _ = output.send(OutputReply {
        node_id: id,
        stream: "pcs".into(),
        line: format!("process {how}"),
    });
    let _ = exit.send(Some(how));
}

/// Sends SIGTERM to `child`, which is not reaped yet (its pid is still its own).
fn terminate(id: &str, child: &Child) {
    use nix::sys::signal::{kill, Signal as UnixSignal};
    use nix::unistd::Pid;
    let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) else {
        return;
    };
    if let Err(error) = kill(Pid::from_raw(pid), UnixSignal::SIGTERM) {
        warn!(node = %id, %error, "cannot SIGTERM the node");
    }
}

/// Asks the kernel to SIGKILL the child when the thread that started it (a runtime
/// worker thread, which lives as long as the PCS) dies.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::ffi::{c_int, c_ulong};
    extern "C" {
        // From the C library every Rust program on Linux already links.
        fn prctl(option: c_int, ...) -> c_int;
    }
    const PR_SET_PDEATHSIG: c_int = 1;
    const SIGKILL: c_ulong = 9;
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // prctl, which is async-signal-safe, and reads errno on failure.
    unsafe {
        command.pre_exec(|| {
            if prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relayed_lines_are_bounded() {
        let long = "x".repeat(100);
        let input = format!("short\r\n{long}\nlast");
        let mut reader = BufReader::with_capacity(7, input.as_bytes());
        assert_eq!(next_line(&mut reader, 10).await.unwrap().unwrap(), "short");
        assert_eq!(
            next_line(&mut reader, 10).await.unwrap().unwrap(),
            "xxxxxxxxxx … (90 more bytes dropped)"
        );
        assert_eq!(next_line(&mut reader, 10).await.unwrap().unwrap(), "last");
        assert_eq!(next_line(&mut reader, 10).await.unwrap(), None);
    }
}
