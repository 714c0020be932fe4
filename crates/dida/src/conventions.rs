//! What every `dida` command does the same way at its edges: errors as a JSON event
//! under `--json`, a quiet end when stdout is a closed pipe, shell completions.
//!
//! - **Errors under `--json`.** A command run with `--json` that fails prints, besides
//!   its usual `error: …` line on stderr and its exit status, one `error` event
//!   (SPEC §6.3, [`Event::Error`]) on **stdout**, where a script reads every other
//!   event of the command: `{"event":"error","line":null,"command":"kv write",…}`.
//!   Usage errors (exit status 2) are reported the same way when `--json` is on the
//!   command line.
//! - **Closed pipe.** `dida kv list | head` closes stdout early. The commands stop
//!   quietly, with exit status 0 (as ripgrep does: the reader got what it wanted),
//!   instead of panicking. Output written with [`print_line`] checks for it; a panic
//!   hook catches the same error from `println!` anywhere else in the process.

use std::io::{ErrorKind, Write};

use clap::ArgMatches;
use dida_core::events::Event;

/// Exit status when stdout turned out to be a closed pipe.
pub const BROKEN_PIPE_EXIT: i32 = 0;

/// Writes `text` and a newline to stdout; exits quietly (status
/// [`BROKEN_PIPE_EXIT`]) if stdout is a closed pipe.
pub fn print_line(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    check_written(written);
}

/// Writes `bytes` to stdout as they are; exits quietly on a closed pipe.
pub fn print_bytes(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    check_written(stdout.write_all(bytes).and_then(|()| stdout.flush()));
}

fn check_written(written: std::io::Result<()>) {
    match written {
        Ok(()) => {}
        Err(error) if error.kind() == ErrorKind::BrokenPipe => std::process::exit(BROKEN_PIPE_EXIT),
        // Like `println!`: output that cannot be written is a failure of the command.
        Err(error) => {
            eprintln!("error: cannot write to stdout: {error}");
            std::process::exit(1)
        }
    }
}

/// Makes the panic `println!` raises when stdout is a closed pipe end the process
/// quietly, for the output this crate does not write through [`print_line`]
/// (other crates' printers). Every other panic is reported as before.
pub fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if is_broken_pipe_panic(message) {
            std::process::exit(BROKEN_PIPE_EXIT);
        }
        default(info);
    }));
}

/// Whether a panic message is the standard library's on a write to a closed stdout
/// (`failed printing to stdout: Broken pipe (os error 32)`).
fn is_broken_pipe_panic(message: &str) -> bool {
    message.starts_with("failed printing to stdout")
        && (message.contains("Broken pipe") || message.contains("os error 32"))
}

/// Whether the command that `matches` parsed asked for `--json` (on any level).
pub fn wants_json(matches: &ArgMatches) -> bool {
    let mut level = Some(matches);
    while let Some(matches) = level {
        if let Ok(Some(true)) = matches.try_get_one::<bool>("json") {
            return true;
        }
        level = matches.subcommand().map(|(_, sub)| sub);
    }
    false
}

/// The subcommand path of `matches` (`kv write`), for the `command` of an error event.
pub fn command_path(matches: &ArgMatches) -> String {
    let mut names = Vec::new();
    let mut level = matches.subcommand();
    while let Some((name, sub)) = level {
        names.push(name);
        level = sub.subcommand();
    }
    names.join(" ")
}

/// The `error` event of a failed `command`.
pub fn error_event(command: &str, message: &str) -> String {
    Event::Error {
        line: None,
        command: command.to_string(),
        message: message.to_string(),
    }
    .to_json_line()
}

/// Reports the error a command failed with: `error: …` on stderr, and with `--json`
/// its `error` event on stdout.
pub fn report_error(json: bool, command: &str, error: &anyhow::Error) {
    if json {
        print_line(&error_event(command, &format!("{error:#}")));
    }
    eprintln!("error: {error:#}");
}

/// Reports a command-line error clap found, then exits like clap (status 2; 0 for
/// `--help` and `--version`). With `--json` on the command line, an `error` event
/// goes to stdout too.
///
/// Missing required settings are reported on one line that names each of them and
/// where it may come from: a node started in a container or by a unit file with
/// a setting left out says which, not a usage block.
pub fn exit_on_usage_error(error: clap::Error) -> ! {
    let missing = missing_settings(&error);
    if error.use_stderr() && std::env::args_os().any(|arg| arg == "--json") {
        let rendered = error.render().to_string();
        let message = rendered
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ");
        print_line(&error_event("usage", missing.as_deref().unwrap_or(message)));
    }
    if let Some(missing) = missing {
        eprintln!("error: {missing}");
        std::process::exit(crate::exit::Exit::Usage.code().into());
    }
    error.exit()
}

/// Reports a `--config` file that cannot be used, then exits with status 2, as
/// for a command line that does not parse.
pub fn exit_on_settings_file_error(error: &crate::exit::UsageError) -> ! {
    if std::env::args_os().any(|arg| arg == "--json") {
        print_line(&error_event("usage", &error.to_string()));
    }
    eprintln!("error: {error}");
    std::process::exit(crate::exit::Exit::Usage.code().into());
}

/// One line naming the required flags `error` says are missing, if that is what
/// it says.
fn missing_settings(error: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if error.kind() != ErrorKind::MissingRequiredArgument {
        return None;
    }
    let Some(ContextValue::Strings(flags)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let names: Vec<&str> = flags
        .iter()
        .map(|flag| flag.split_whitespace().next().unwrap_or(flag))
        .collect();
    Some(format!(
        "missing required setting{} {}: give {} as a flag, a DIDA_… environment \
         variable (see --help) or a key of a --config file",
        if names.len() == 1 { "" } else { "s" },
        names.join(", "),
        if names.len() == 1 { "it" } else { "each" },
    ))
}

/// `dida completions SHELL`: the completion script of `command` for `shell`.
pub fn print_completions(shell: clap_complete::Shell, mut command: clap::Command) {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "dida", &mut script);
    print_bytes(&script);
}

/// Writes the man page of `command` and of each of its visible subcommands, at
/// every depth, into `dir` (`dida.1`, `dida-storage.1`, `dida-bench-idle.1`, …),
/// and prints each file written. Hidden subcommands (internal ones) get none.
pub fn write_man_pages(dir: &std::path::Path, command: clap::Command) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    let mut command = command;
    // Built, every subcommand knows its full name (`dida-bench-idle`) and the
    // flags propagated to it (`--version`).
    command.build();
    let mut pending = vec![command];
    while let Some(command) = pending.pop() {
        let name = command
            .get_display_name()
            .unwrap_or_else(|| command.get_name())
            .to_string();
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(command.clone())
            .title(name.to_uppercase())
            .render(&mut page)
            .with_context(|| format!("cannot render the man page of {name}"))?;
        std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}", path.display());
        pending.extend(
            command
                .get_subcommands()
                .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
                .cloned(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::Cli;

    /// Every argument of every (sub)command with no help text, as `path: --arg`.
    fn undocumented(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let generated = matches!(arg.get_id().as_str(), "help" | "version");
            if !generated && arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path}: {}", arg.get_id()));
            }
        }
        for sub in command.get_subcommands() {
            if sub.get_name() != "help" {
                undocumented(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
    }

    #[test]
    fn every_argument_of_every_subcommand_has_help() {
        let mut missing = Vec::new();
        undocumented(&Cli::command(), "dida", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        crate::env_flags::with_env_variables(Cli::command()).debug_assert();
    }

    #[test]
    fn kv_json_is_accepted_after_the_subcommand() {
        let peers = "s1=http://127.0.0.1:1";
        for args in [
            ["dida", "kv", "--peers", peers, "--json", "list"],
            ["dida", "kv", "--peers", peers, "list", "--json"],
        ] {
            let matches = Cli::command().try_get_matches_from(args).unwrap();
            assert!(wants_json(&matches), "{args:?}");
            assert_eq!(command_path(&matches), "kv list");
            // The flag reaches `dida kv` itself, wherever it was given.
            let cli = Cli::try_parse_from(args).unwrap();
            assert!(format!("{cli:?}").contains("json: true"), "{cli:?}");
        }
        let matches = Cli::command()
            .try_get_matches_from(["dida", "kv", "--peers", peers, "list"])
            .unwrap();
        assert!(!wants_json(&matches));
    }

    #[test]
    fn the_standard_broken_pipe_panic_is_recognised() {
        assert!(is_broken_pipe_panic(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(!is_broken_pipe_panic(
            "failed printing to stdout: No space left on device (os error 28)"
        ));
        assert!(!is_broken_pipe_panic("index out of bounds"));
    }

    #[test]
    fn error_events_have_the_spec_fields() {
        assert_eq!(
            error_event("kv write", "no node answered"),
            r#"{"event":"error","line":null,"command":"kv write","message":"no node answered"}"#
        );
    }
}
