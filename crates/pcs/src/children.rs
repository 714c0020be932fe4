//! The node processes a PCS started: spawning them, relaying their output, noticing
//! when they exit, killing them.
//!
//! Each child is owned by one waiter task, which reaps it when it exits or SIGKILLs
//! it on request; the rest of the PCS only sees its entry (pid, exit status, last
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
use dida_proto::control::{NodeProcess, OutputLine};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::launch::Launch;

/// Lines of a child's output kept to explain a failed start.
const RECENT_LINES: usize = 20;

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
    /// Asks the waiter to SIGKILL the child.
    kill: mpsc::Sender<()>,
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

/// Every node a PCS started.
#[derive(Debug)]
pub(crate) struct Children {
    binary: PathBuf,
    start_timeout: Duration,
    nodes: Mutex<BTreeMap<String, Entry>>,
    output: broadcast::Sender<OutputLine>,
}

impl Children {
    pub fn new(binary: PathBuf, start_timeout: Duration) -> Self {
        Self {
            binary,
            start_timeout,
            nodes: Mutex::new(BTreeMap::new()),
            output: broadcast::channel(4096).0,
        }
    }

    /// Every line the children print from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<OutputLine> {
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
        let (kill_tx, kill_rx) = mpsc::channel(1);
        let (exit_tx, exit_rx) = watch::channel(None);
        let waiter = tokio::spawn(wait_for_exit(
            id.clone(),
            child,
            kill_rx,
            exit_tx,
            self.output.clone(),
        ));
        let url = launch.url.clone();
        let entry = Entry {
            launch,
            pid,
            kill: kill_tx,
            exit: exit_rx.clone(),
            waiter,
        };
        if let Some(old) = self.lock().insert(id.clone(), entry) {
            old.waiter.abort();
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
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                {
                    let mut recent = recent.lock().unwrap_or_else(|e| e.into_inner());
                    if recent.len() == RECENT_LINES {
                        recent.pop_front();
                    }
                    recent.push_back(line.clone());
                }
                // No subscriber is not an error: the line is simply not relayed.
                let _ = output.send(OutputLine {
                    node_id: id.clone(),
                    stream: stream.to_string(),
                    line,
                });
            }
        });
    }

    /// SIGKILLs node `id` and waits until it is reaped; returns its pid.
    pub async fn kill(&self, id: &str) -> Result<u32, ChildError> {
        let (pid, kill, mut exit) = {
            let nodes = self.lock();
            let entry = nodes
                .get(id)
                .ok_or_else(|| ChildError::Unknown(id.to_string()))?;
            if let Some(exit) = entry.exit() {
                return Err(ChildError::NotRunning(id.to_string(), exit));
            }
            (entry.pid, entry.kill.clone(), entry.exit.clone())
        };
        // The waiter may have reaped it meanwhile; either way we wait for the exit.
        let _ = kill.send(()).await;
        let _ = exit.wait_for(Option::is_some).await;
        info!(node = %id, pid, "node killed");
        Ok(pid)
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

/// Owns `child` until it exits (or is killed on request), then publishes how it ended.
async fn wait_for_exit(
    id: String,
    mut child: Child,
    mut kill: mpsc::Receiver<()>,
    exit: watch::Sender<Option<String>>,
    output: broadcast::Sender<OutputLine>,
) {
    let status = tokio::select! {
        status = child.wait() => status,
        Some(()) = kill.recv() => {
            if let Err(error) = child.start_kill() {
                warn!(node = %id, %error, "cannot SIGKILL the node");
            }
            child.wait().await
        }
    };
    let how = match status {
        Ok(status) => match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => format!("was killed ({status})"),
        },
        Err(error) => format!("could not be waited for: {error}"),
    };
    info!(node = %id, "node {how}");
    let _ = output.send(OutputLine {
        node_id: id,
        stream: "pcs".into(),
        line: format!("process {how}"),
    });
    let _ = exit.send(Some(how));
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
