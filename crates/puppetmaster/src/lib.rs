//! The PuppetMaster (SPEC §6.2–6.3): the single console from which an operator of
//! the platform starts nodes, runs applications, inspects state and injects
//! crashes.
//!
//! It reads the script language of [`dida_core::script`] from a file (all at once,
//! or one line per key press with `--step`) or from an interactive console, starts
//! nodes through PCSs (one in-process when none is given, so one command brings a
//! whole cluster up), and prints readable tables or, with `--json`, one event per
//! line. In batch mode it runs a script, waits for every client it issued, stops the
//! nodes it started and tells whether everything went well.
//!
//! - [`config`]: what it is configured with;
//! - [`session`]: running lines, reporting errors with their line numbers;
//! - [`error`]: why a command failed, typed;
//! - `cluster`: the setup block, placing and starting nodes, crashing them, adding
//!   and removing workers on a running cluster (`addWorker`, `removeWorker`),
//!   adding and removing storage nodes (`addStorage`, `removeStorage`);
//! - `placement`: which PCS runs a node;
//! - `process_watch`: what the PCSs say of the session's processes, for the
//!   dashboard (a node killed outside the console shows its process exited);
//! - `clients`, `inspect`: `client`; `status`, `listServer`, `listGlobal`, `populate`;
//! - `debug_sink`: the service workers in debug mode report to;
//! - [`output`]: text and JSON events;
//! - `console`: the interactive console;
//! - `dashboard`: the session's web dashboard (`--dashboard`);
//! - `page_lines`: what a line typed into the dashboard may read;
//! - `requests`: the settings each declared node is started with, checked with the
//!   role's own definition (`dida_settings`) before its PCS is asked.

mod clients;
mod cluster;
pub mod config;
mod console;
mod dashboard;
mod debug_sink;
pub mod error;
mod inspect;
pub mod output;
mod page_lines;
mod placement;
mod process_watch;
pub mod requests;
pub mod session;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use dida_core::script::{parse_line, Line};
use dida_core::textfile::{read_text_file, TextLimits};

pub use config::PmConfig;
pub use output::Printer;
pub use session::{Session, Summary};

/// How the PuppetMaster takes its commands.
#[derive(Debug, Clone, Default)]
pub struct Mode {
    /// The script to run; `None`: the interactive console.
    pub script: Option<PathBuf>,
    /// Run the script one line per key press.
    pub step: bool,
    /// Run the script, wait for its clients, stop the nodes and return.
    pub batch: bool,
    /// Stop running the script at its first failed line.
    pub stop_on_error: bool,
}

/// Runs the PuppetMaster until its script (batch mode) or console ends, or until
/// Ctrl-C; stops every node it started before returning.
pub async fn run(config: PmConfig, mode: Mode, printer: Arc<Printer>) -> anyhow::Result<Summary> {
    let script = match &mode.script {
        Some(path) => Some((
            read_text_file(path, "script", TextLimits::SCRIPT_FILE)
                .with_context(|| format!("cannot read the script {}", path.display()))?,
            script_dir(path)?,
        )),
        None => None,
    };
    let base_dir = match &script {
        Some((_, dir)) => dir.clone(),
        None => std::env::current_dir().context("cannot find the current directory")?,
    };
    let dashboard_listen = config.dashboard;
    let mut session = Session::start(config, printer.clone(), base_dir).await?;
    let (_dashboard, web_lines) = match dashboard_listen {
        Some(listen) => {
            let (handle, lines) = dashboard::start(listen, &mut session, &printer).await?;
            (Some(handle), Some(lines))
        }
        None => (None, None),
    };
    let script_text = script.as_ref().map(|(text, _)| text.as_str());
    let interrupted = tokio::select! {
        () = drive(&mut session, script_text, &mode, &printer, web_lines) => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    if interrupted {
        printer.note("interrupted: stopping the nodes");
    }
    let summary = session.summary();
    let stopped = session.shutdown().await;
    tracing::debug!(?stopped, "nodes stopped");
    Ok(summary)
}

/// Brings up the nodes `setup` declares (script lines, SPEC §6.2) and keeps them
/// running until Ctrl-C or SIGTERM, then stops every one: what `dida up` runs.
/// `ready` is called once every node answers, with the session's printer. Fails,
/// after stopping what did start, when a line is invalid or a node cannot start.
pub async fn serve(
    config: PmConfig,
    setup: &str,
    printer: Arc<Printer>,
    ready: impl FnOnce(&Printer),
) -> anyhow::Result<()> {
    let base_dir = std::env::current_dir().context("cannot find the current directory")?;
    let dashboard_listen = config.dashboard;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    let mut session = Session::start(config, printer.clone(), base_dir).await?;
    let (dashboard, mut page_lines) = match dashboard_listen {
        Some(listen) => match dashboard::start(listen, &mut session, &printer).await {
            Ok((handle, lines)) => (Some(handle), Some(lines)),
            Err(error) => {
                session.shutdown().await;
                return Err(error);
            }
        },
        None => (None, None),
    };
    let mode = Mode {
        stop_on_error: true,
        ..Mode::default()
    };
    let started = tokio::select! {
        started = async {
            run_script(&mut session, setup, &mode, &printer).await
                && session.finish_setup().await
        } => Some(started),
        _ = tokio::signal::ctrl_c() => None,
        _ = terminate.recv() => None,
    };
    let result = match started {
        Some(true) => {
            ready(&printer);
            // Lines typed into the dashboard's console run until the end.
            let mut number = setup.lines().count();
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    _ = terminate.recv() => break,
                    Some(request) = next_page_line(&mut page_lines) => {
                        number += 1;
                        console::answer_page(&mut session, &printer, number, request).await;
                    }
                }
            }
            printer.note("stopping the nodes");
            Ok(())
        }
        Some(false) => Err(anyhow::anyhow!(
            "the cluster did not come up (the reason is above); the nodes that started \
             are stopped"
        )),
        None => {
            printer.note("interrupted: stopping the nodes");
            Ok(())
        }
    };
    session.shutdown().await;
    drop(dashboard);
    result
}

/// The next line typed into the dashboard's console; pending forever without a
/// dashboard (or once it is gone).
async fn next_page_line(
    lines: &mut Option<tokio::sync::mpsc::Receiver<dida_dashboard::ScriptRequest>>,
) -> Option<dida_dashboard::ScriptRequest> {
    match lines {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The script's folder, against which its `client` and `populate` paths resolve.
fn script_dir(path: &Path) -> anyhow::Result<PathBuf> {
    let absolute = std::path::absolute(path)
        .with_context(|| format!("cannot resolve the script path {}", path.display()))?;
    Ok(absolute
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf))
}

async fn drive(
    session: &mut Session,
    script: Option<&str>,
    mode: &Mode,
    printer: &Printer,
    web_lines: Option<tokio::sync::mpsc::Receiver<dida_dashboard::ScriptRequest>>,
) {
    if let Some(text) = script {
        if !run_script(session, text, mode, printer).await {
            printer.note("the script stopped at its first error (--stop-on-error)");
        }
        session.finish_setup().await;
        if mode.batch {
            session.wait_for_clients().await;
            return;
        }
    }
    if let Err(error) = console::run(session, printer, web_lines).await {
        printer.error(None, "console", &format!("{error:#}"));
    }
    session.wait_for_clients().await;
}

/// Runs every line of `text`; returns false if it stopped early.
async fn run_script(session: &mut Session, text: &str, mode: &Mode, printer: &Printer) -> bool {
    let mut stepping = mode.step;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let command = match parse_line(number, raw) {
            Ok(Some(command)) => command,
            Ok(None) => continue,
            Err(error) => {
                session.report(error.line, &error.command, &error.message);
                if mode.stop_on_error {
                    return false;
                }
                continue;
            }
        };
        if stepping {
            match step_prompt(number, raw.trim(), printer).await {
                Step::Run => {}
                Step::Continue => stepping = false,
                Step::Quit => return true,
            }
        }
        let ok = session.execute(&Line { number, command }).await;
        if !ok && mode.stop_on_error {
            return false;
        }
    }
    true
}

enum Step {
    Run,
    Continue,
    Quit,
}

/// Shows the next line and waits for a key press (Enter runs it, `c` runs the rest
/// without stopping, `q` stops the script).
async fn step_prompt(number: usize, line: &str, printer: &Printer) -> Step {
    printer.note(&format!(
        "line {number}: {line}    [Enter: run, c: run the rest, q: stop]"
    ));
    // A plain thread, not `spawn_blocking`: after a Ctrl-C the runtime must not wait
    // for this read to end before the process can exit.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut answer = String::new();
        let answer = match std::io::stdin().read_line(&mut answer) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(answer),
        };
        let _ = tx.send(answer);
    });
    let answer = rx.await.ok().flatten();
    match answer.as_deref().map(str::trim) {
        None if !std::io::stdin().is_terminal() => Step::Continue,
        None | Some("q") => Step::Quit,
        Some("c") => Step::Continue,
        Some(_) => Step::Run,
    }
}
