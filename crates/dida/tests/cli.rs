//! The conventions every `dida` command follows, as a user meets them on a real
//! process: shell completions, `--json` errors as events, a quiet end on a closed
//! pipe.

use std::io::Read;
use std::process::{Command, Output, Stdio};

mod support;
use support::dida;

fn run(args: &[&str]) -> Output {
    Command::new(dida()).args(args).output().expect("run dida")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn completions_are_printed_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let output = run(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {}", text(&output.stderr));
        let script = text(&output.stdout);
        for word in [
            "storage",
            "puppetmaster",
            "kv",
            "new",
            "completions",
            "json",
        ] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    let unknown = run(&["completions", "tcsh"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn every_subcommand_names_the_version_and_the_commit_it_was_built_from() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| text(&output.stdout).trim().to_string());
    for args in [
        &["--version"][..],
        &["storage", "--version"],
        &["worker", "--version"],
        &["kv", "--version"],
        &["bench", "idle", "--version"],
    ] {
        let output = run(args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            text(&output.stderr)
        );
        let line = text(&output.stdout);
        assert!(
            line.contains(&format!("{} (commit ", env!("CARGO_PKG_VERSION"))),
            "{args:?}: {line}"
        );
        if let Some(commit) = &commit {
            assert!(
                line.contains(commit.as_str()),
                "{args:?}: {line} lacks {commit}"
            );
        }
    }
    // `kv read --version` is a record's version, not the program's.
    let read = run(&["kv", "read", "k", "--version", "not-a-version"]);
    assert_eq!(read.status.code(), Some(2), "{}", text(&read.stderr));
    assert!(text(&read.stderr).contains("not-a-version"));
}

#[test]
fn man_pages_are_written_for_every_visible_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(&["man", "--out", dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let written = text(&output.stdout);
    for page in [
        "dida.1",
        "dida-storage.1",
        "dida-worker.1",
        "dida-kv-read.1",
        "dida-bench-idle.1",
        "dida-cluster-remove.1",
    ] {
        assert!(written.contains(page), "{page} not listed in {written}");
        let roff = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(
            roff.starts_with(".ie") || roff.contains(".TH "),
            "{page}: {roff}"
        );
        assert!(roff.contains("commit "), "{page} names no commit");
    }
    let storage = std::fs::read_to_string(dir.path().join("dida-storage.1")).unwrap();
    assert!(storage.contains(r"\-\-join"), "the flags are described");
    // Internal subcommands get no page.
    assert!(!written.contains("compile"), "{written}");
}

/// Storage nodes nobody serves: every call fails at once (connection refused).
const NO_PEERS: &str = "s1=http://127.0.0.1:1";

#[test]
fn a_failed_command_with_json_prints_an_error_event_on_stdout() {
    // `--json` after the subcommand is accepted too.
    for args in [
        [
            "kv",
            "--peers",
            NO_PEERS,
            "--deadline",
            "500",
            "--json",
            "write",
            "k",
            "v",
        ],
        [
            "kv",
            "--peers",
            NO_PEERS,
            "--deadline",
            "500",
            "write",
            "k",
            "v",
            "--json",
        ],
    ] {
        let output = run(&args);
        assert_eq!(
            output.status.code(),
            Some(5),
            "{args:?}: cluster unreachable"
        );
        let stdout = text(&output.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stdout}");
        let event: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(event["event"], "error");
        assert_eq!(event["command"], "kv write");
        assert!(event["message"].as_str().unwrap().contains("s1"), "{event}");
        // The human-readable line is still on stderr.
        assert!(text(&output.stderr).contains("error: "), "{args:?}");
    }
    // Without --json, stdout stays empty.
    let plain = run(&[
        "kv",
        "--peers",
        NO_PEERS,
        "--deadline",
        "500",
        "write",
        "k",
        "v",
    ]);
    assert_eq!(plain.status.code(), Some(5));
    assert!(plain.stdout.is_empty(), "{}", text(&plain.stdout));

    // A usage error with --json: an event too, and clap's exit status 2.
    let usage = run(&["kv", "--peers", NO_PEERS, "--json", "frobnicate"]);
    assert_eq!(usage.status.code(), Some(2));
    let event: serde_json::Value = serde_json::from_str(text(&usage.stdout).trim()).unwrap();
    assert_eq!(event["event"], "error");
    assert_eq!(event["command"], "usage");
}

/// Runs `dida ARGS…` with its stdout a pipe whose read end is already closed.
fn with_closed_stdout(args: &[&str]) -> Output {
    let mut child = Command::new(dida())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dida");
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    Output {
        status,
        stdout: Vec::new(),
        stderr: stderr.into_bytes(),
    }
}

#[test]
fn writing_to_a_closed_pipe_ends_quietly() {
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("op");
    for args in [
        vec!["completions", "bash"],
        vec!["new", "QuietOperator", "--path", path.to_str().unwrap()],
    ] {
        let output = with_closed_stdout(&args);
        let stderr = text(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
        assert_eq!(output.status.code(), Some(0), "{args:?}");
    }
}

#[test]
fn any_flag_can_come_from_its_variable_and_the_command_line_wins() {
    let seeds = |env: &[(&str, &str)], args: &[&str]| {
        let output = Command::new(dida())
            .args(["sim", "--json"])
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run dida sim");
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout).lines().count()
    };
    assert_eq!(seeds(&[("DIDA_SIM_SEEDS", "2")], &[]), 2);
    assert_eq!(seeds(&[("DIDA_SIM_SEEDS", "2")], &["--seeds", "1"]), 1);
    let help = text(&run(&["kv", "--help"]).stdout);
    assert!(
        help.contains("DIDA_KV_DEADLINE"),
        "--help names the variable:\n{help}"
    );
}
