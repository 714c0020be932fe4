//! The interactive console: line editing, history (kept in `~/.dida_history`),
//! `help`, and tab completion of commands and node ids, by `rustyline`.
//!
//! rustyline blocks, so the editor lives on its own thread and hands each line to
//! the session; it prompts again only once the line has run, and whatever the
//! session prints meanwhile (client outcomes, debug reports, node output) goes
//! through rustyline's external printer, above the prompt rather than through it.
//!
//! With a dashboard, lines typed into its page run here too, in turn with the
//! terminal's, numbered in the same sequence. When the terminal's input ends (not
//! `quit`), the page's lines keep running until Ctrl-C.

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

use dida_core::script::{parse_line, Line, Role, COMMANDS};
use dida_dashboard::ScriptRequest;
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, ExternalPrinter, Helper};
use tokio::sync::mpsc;

use crate::output::{Printer, Sink};
use crate::page_lines;
use crate::session::Session;

/// Words the console understands besides the script commands.
const CONSOLE_WORDS: &[&str] = &["help", "quit", "exit"];

/// Completes command names (first word) and node ids (later words).
#[derive(Debug, Default)]
struct ConsoleHelper {
    /// Every node id with its role, refreshed after each line.
    nodes: Arc<Mutex<Vec<(String, Role)>>>,
}

/// What completes the word at `pos` of `line`: its start and the candidates.
fn completions(line: &str, pos: usize, nodes: &[(String, Role)]) -> (usize, Vec<String>) {
    let before = &line[..pos];
    let start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
    let word = &before[start..];
    let first = before.split_whitespace().next().unwrap_or("");
    let candidates: Vec<String> = if start == 0 {
        COMMANDS
            .iter()
            .map(|c| c.name)
            .chain(CONSOLE_WORDS.iter().copied())
            .filter(|name| name.starts_with(word))
            .map(|name| format!("{name} "))
            .collect()
    } else {
        let only = match first {
            "listServer" | "crash" | "restart" | "removeStorage" => Some(Role::Storage),
            "removeWorker" => Some(Role::Worker),
            // A new node's id is new: nothing to complete.
            "addWorker" | "addStorage" => return (start, Vec::new()),
            _ => None,
        };
        nodes
            .iter()
            .filter(|(_, role)| only.is_none_or(|only| *role == only))
            .map(|(id, _)| id)
            .filter(|id| id.starts_with(word))
            .cloned()
            .collect()
    };
    (start, candidates)
}

impl Completer for ConsoleHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        Ok(completions(line, pos, &nodes))
    }
}

impl Hinter for ConsoleHelper {
    type Hint = String;
}
impl Highlighter for ConsoleHelper {}
impl Validator for ConsoleHelper {}
impl Helper for ConsoleHelper {}

/// The text of `help`.
pub fn help_text() -> String {
    let width = COMMANDS.iter().map(|c| c.usage().len()).max().unwrap_or(0);
    let mut text = String::from("commands:\n");
    for command in COMMANDS {
        text.push_str(&format!(
            "  {:<width$}  {}\n",
            command.usage(),
            command.summary
        ));
    }
    text.push_str(&format!(
        "  {:<width$}  {}\n  {:<width$}  {}",
        "help", "this list", "quit", "stop every node and leave (also Ctrl-D)"
    ));
    text
}

fn history_file() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".dida_history"))
}

/// Runs the console until `quit`, `exit` or end of input (with a dashboard's
/// `web` lines: until `quit` or `exit`).
pub async fn run(
    session: &mut Session,
    printer: &Printer,
    mut web: Option<mpsc::Receiver<ScriptRequest>>,
) -> anyhow::Result<()> {
    let helper = ConsoleHelper::default();
    let nodes = helper.nodes.clone();
    let mut editor: Editor<ConsoleHelper, DefaultHistory> = Editor::new()?;
    editor.set_helper(Some(helper));
    if let Some(file) = history_file() {
        let _ = editor.load_history(&file);
    }
    if let Ok(external) = editor.create_external_printer() {
        let external = Arc::new(Mutex::new(external));
        let sink: Sink = Arc::new(move |line| {
            let _ = external
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .print(format!("{line}\n"));
        });
        printer.redirect(sink.clone(), sink);
    }
    printer.text(|| "dida PuppetMaster console: `help` lists the commands".into());

    let (lines_tx, mut lines_rx) = mpsc::channel::<String>(1);
    let (ready_tx, ready_rx) = std_mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        while ready_rx.recv().is_ok() {
            match editor.readline("dida> ") {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    if lines_tx.blocking_send(line).is_err() {
                        break;
                    }
                }
                Err(ReadlineError::Interrupted) => {
                    if lines_tx.blocking_send(String::new()).is_err() {
                        break;
                    }
                }
                Err(_) => break, // end of input or a terminal error
            }
        }
        if let Some(file) = history_file() {
            let _ = editor.save_history(&file);
        }
    });

    let mut number = 0;
    let _ = ready_tx.send(());
    let mut terminal_open = true;
    loop {
        let input = tokio::select! {
            line = lines_rx.recv(), if terminal_open => match line {
                Some(text) => Input::Terminal(text),
                None if web.is_some() => {
                    terminal_open = false;
                    printer.note("console input ended: lines typed into the dashboard still run, until Ctrl-C");
                    continue;
                }
                None => break,
            },
            Some(request) = next_request(&mut web) => Input::Page(request),
            else => break,
        };
        number += 1;
        match input {
            Input::Terminal(text) => {
                if matches!(text.trim(), "quit" | "exit") {
                    break;
                }
                // The terminal saw the outcome printed; there is no one else to tell.
                let _ = run_line(session, printer, number, &text, Source::Terminal).await;
                *nodes.lock().unwrap_or_else(|e| e.into_inner()) = session
                    .cluster()
                    .nodes()
                    .iter()
                    .map(|n| (n.decl.id.clone(), n.decl.role))
                    .collect();
                if ready_tx.send(()).is_err() {
                    break;
                }
            }
            Input::Page(request) => answer_page(session, printer, number, request).await,
        }
    }
    drop(ready_tx);
    drop(lines_rx);
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    Ok(())
}

/// Runs line `number`, typed into the dashboard's page, and answers the page.
pub(crate) async fn answer_page(
    session: &mut Session,
    printer: &Printer,
    number: usize,
    request: ScriptRequest,
) {
    let answer = if matches!(request.text.trim(), "quit" | "exit") {
        Err("quit from the PuppetMaster's terminal (or Ctrl-C)".to_string())
    } else {
        run_line(session, printer, number, &request.text, Source::Page).await
    };
    // The page may have stopped waiting; the line ran all the same.
    let _ = request.reply.send(answer);
}

/// A line to run, from the terminal or from the dashboard's page.
enum Input {
    Terminal(String),
    Page(ScriptRequest),
}

/// The next line typed into the dashboard; pending forever without one.
async fn next_request(web: &mut Option<mpsc::Receiver<ScriptRequest>>) -> Option<ScriptRequest> {
    match web {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Where a line was typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The PuppetMaster's terminal: whoever runs the PuppetMaster.
    Terminal,
    /// The dashboard's page: whoever reached it, possibly through a browser.
    Page,
}

/// Runs line `number` (`help`, a script line, or nothing for a blank one); returns
/// its number, or why it failed (the session has printed the error too). A line
/// from the page may read only valid files of the script's folder
/// ([`crate::page_lines`]).
async fn run_line(
    session: &mut Session,
    printer: &Printer,
    number: usize,
    text: &str,
    source: Source,
) -> Result<usize, String> {
    if text.trim() == "help" {
        printer.text(help_text);
        return Ok(number);
    }
    match parse_line(number, text) {
        Ok(Some(command)) => {
            if source == Source::Page {
                if let Err(refusal) = page_lines::check(session.base_dir(), &command) {
                    let refusal = refusal.to_string();
                    session.report(number, command.name(), &refusal);
                    return Err(refusal);
                }
            }
            if session.execute(&Line { number, command }).await {
                Ok(number)
            } else {
                Err(format!("line {number} failed (the output says why)"))
            }
        }
        Ok(None) => Ok(number),
        Err(error) => {
            session.report(error.line, &error.command, &error.message);
            Err(error.message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_commands_then_node_ids() {
        let nodes = vec![
            ("s1".to_string(), Role::Storage),
            ("s2".to_string(), Role::Storage),
            ("w1".to_string(), Role::Worker),
        ];
        assert_eq!(
            completions("list", 4, &nodes),
            (0, vec!["listServer ".into(), "listGlobal ".into()])
        );
        assert_eq!(completions("q", 1, &nodes), (0, vec!["quit ".into()]));
        assert_eq!(
            completions("crash ", 6, &nodes),
            (6, vec!["s1".into(), "s2".into()])
        );
        assert_eq!(
            completions("restart ", 8, &nodes),
            (8, vec!["s1".into(), "s2".into()]),
            "only storage nodes restart"
        );
        assert_eq!(completions("status w", 8, &nodes), (7, vec!["w1".into()]));
        assert_eq!(
            completions("removeWorker ", 13, &nodes),
            (13, vec!["w1".into()]),
            "only workers leave"
        );
        assert_eq!(completions("addWorker ", 10, &nodes), (10, vec![]));
        assert_eq!(completions("addStorage s", 12, &nodes), (11, vec![]));
        assert_eq!(
            completions("removeStorage ", 14, &nodes),
            (14, vec!["s1".into(), "s2".into()]),
            "only storage nodes are removed by removeStorage"
        );
        assert_eq!(
            completions("rem", 3, &nodes),
            (0, vec!["removeWorker ".into(), "removeStorage ".into()])
        );
    }

    #[test]
    fn help_lists_every_command() {
        let help = help_text();
        for command in COMMANDS {
            assert!(help.contains(&command.usage()), "{}", command.name);
        }
    }
}
