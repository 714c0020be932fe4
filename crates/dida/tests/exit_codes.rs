//! The exit statuses of `dida` (the table in the README's CLI reference, defined
//! once in `src/exit.rs`), each produced by the real binary against a real local
//! cluster; and the one shape of every command's `--json` output: one JSON object
//! per line, whose `event` field names its kind.

use std::path::{Path, PathBuf};
use std::process::Output;

use dida_local_cluster::ComputeSpec;
use serde_json::Value;

mod support;
use support::{dida, one_storage_node_and, stderr, stdout};

/// Storage nodes nobody serves: every call is refused at once.
const NO_PEERS: &str = "s1=http://127.0.0.1:1";
/// A scheduler nobody serves.
const NO_SCHEDULER: &str = "http://127.0.0.1:1";

/// Runs `dida ARGS…` (no scheduler from the environment).
async fn run(args: &[&str]) -> Output {
    tokio::process::Command::new(dida())
        .args(args)
        .env_remove("DIDA_SCHEDULER")
        .env_remove("DIDA_PEERS")
        .output()
        .await
        .expect("run dida")
}

/// Asserts `output` exited with `code`.
fn exits(output: &Output, code: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: stdout {} stderr {}",
        stdout(output),
        stderr(output)
    );
}

/// The events of a `--json` output: every line one object with a string `event`.
fn events(output: &Output, what: &str) -> Vec<Value> {
    let text = stdout(output);
    assert!(!text.trim().is_empty(), "{what} printed nothing");
    text.lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {line}"));
            assert!(event.is_object(), "{what}: not an object: {line}");
            assert!(event["event"].is_string(), "{what}: no `event`: {line}");
            event
        })
        .collect()
}

fn app_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_has_its_exit_status_and_every_json_line_is_an_event() {
    let cluster = one_storage_node_and(ComputeSpec {
        workers: 1,
        operators_dir: Some(dida_operators::fixtures_dir().to_path_buf()),
        ..ComputeSpec::default()
    })
    .await;
    let peers = cluster.peers().to_string();
    let scheduler = cluster.scheduler_url().unwrap().to_string();
    let kv = |args: &[&str]| {
        let mut all = vec!["kv", "--peers", peers.as_str()];
        all.extend_from_slice(args);
        all.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let dir = tempfile::tempdir().unwrap();

    // 0: success, with events.
    let written = run(&as_str(&kv(&["--json", "write", "k", "v1"]))).await;
    exits(&written, 0, "kv write");
    assert_eq!(events(&written, "kv write")[0]["event"], "write");
    let read = run(&as_str(&kv(&["--json", "read", "k"]))).await;
    exits(&read, 0, "kv read");
    assert_eq!(events(&read, "kv read")[0]["event"], "record");
    for (args, kind) in [
        (kv(&["--json", "list"]), "record"),
        (kv(&["--json", "status"]), "status"),
        (kv(&["--json", "cas", "k", "v1", "v2"]), "cas"),
    ] {
        let output = run(&as_str(&args)).await;
        exits(&output, 0, &args.join(" "));
        assert_eq!(events(&output, &args.join(" "))[0]["event"], kind);
    }

    // 3: a compare-and-swap that found another value; its result is printed.
    let lost = run(&as_str(&kv(&["--json", "cas", "k", "v1", "v3"]))).await;
    exits(&lost, 3, "kv cas (lost)");
    let event = &events(&lost, "kv cas")[0];
    assert_eq!(event["event"], "cas");
    assert_eq!(event["applied"], false);

    // 4: a missing key (and a missing version), with an `error` event.
    let missing = run(&as_str(&kv(&["--json", "read", "never-written"]))).await;
    exits(&missing, 4, "kv read (missing key)");
    assert_eq!(events(&missing, "kv read missing")[0]["event"], "error");
    assert!(stderr(&missing).contains("holds no value for key"));
    let no_version = run(&as_str(&kv(&["read", "k", "--version", "9.1"]))).await;
    exits(&no_version, 4, "kv read (missing version)");

    // 6: an execution that failed; 0 for one that succeeded.
    let ok_app = app_file(dir.path(), "ok.txt", "operator EchoOperator 0\n");
    let ok = run(&[
        "run",
        "--scheduler",
        &scheduler,
        "--json",
        "--input",
        "x",
        ok_app.to_str().unwrap(),
    ])
    .await;
    exits(&ok, 0, "run (ok)");
    let client = &events(&ok, "run")[0];
    assert_eq!(client["event"], "client");
    let id = client["id"].as_str().unwrap().to_string();
    let failing = app_file(
        dir.path(),
        "failing.txt",
        "operator EchoOperator 0\noperator FailOperator 1\n",
    );
    let failed = run(&[
        "run",
        "--scheduler",
        &scheduler,
        "--json",
        "--input",
        "x",
        failing.to_str().unwrap(),
    ])
    .await;
    exits(&failed, 6, "run (failing application)");
    let kinds: Vec<Value> = events(&failed, "run failing")
        .iter()
        .map(|e| e["event"].clone())
        .collect();
    assert_eq!(kinds, ["client", "error"]);
    for args in [
        vec!["status", id.as_str(), "--json"],
        vec!["executions", "--json"],
        vec!["logs", id.as_str(), "--json"],
        vec!["operator", "list", "--json"],
    ] {
        let mut args = args;
        args.extend(["--scheduler", scheduler.as_str()]);
        let output = run(&args).await;
        exits(&output, 0, &args.join(" "));
        if args[0] != "logs" {
            // An echo logs nothing; every other listing has lines.
            events(&output, &args.join(" "));
        }
    }

    let detached = run(&[
        "run",
        "--scheduler",
        &scheduler,
        "--async",
        "--json",
        "--input",
        "y",
        ok_app.to_str().unwrap(),
    ])
    .await;
    exits(&detached, 0, "run --async");
    let submitted = &events(&detached, "run --async")[0];
    assert_eq!(submitted["event"], "submitted");
    assert_eq!(submitted["input"], "y");

    // 7: an execution still running when --timeout ran out (an operator that waits
    // for a key no one writes; the worker's wall-time limit ends it later).
    let waiting = app_file(dir.path(), "waiting.txt", "operator AwaitKeyOperator 0\n");
    let unfinished = run(&[
        "run",
        "--scheduler",
        &scheduler,
        "--timeout",
        "1",
        "--input",
        "never",
        waiting.to_str().unwrap(),
    ])
    .await;
    exits(&unfinished, 7, "run (not finished in time)");
    assert!(stderr(&unfinished).contains("did not finish within"));

    // 1: any other failure (an application file that does not exist).
    let absent = dir.path().join("absent.txt");
    let other = run(&[
        "run",
        "--scheduler",
        &scheduler,
        "--input",
        "x",
        absent.to_str().unwrap(),
    ])
    .await;
    exits(&other, 1, "run (no such file)");

    // 2: a usage error, with --json an `error` event too.
    let usage = run(&as_str(&kv(&["--json", "frobnicate"]))).await;
    exits(&usage, 2, "kv frobnicate");
    assert_eq!(events(&usage, "usage")[0]["event"], "error");

    // 5: the cluster cannot be reached: refused connections (storage, scheduler),
    // and a node that does not answer in time (SIGSTOPped).
    let refused = run(&["kv", "--peers", NO_PEERS, "--json", "read", "k"]).await;
    exits(&refused, 5, "kv read (refused)");
    assert_eq!(events(&refused, "refused")[0]["event"], "error");
    let no_scheduler = run(&["executions", "--scheduler", NO_SCHEDULER]).await;
    exits(&no_scheduler, 5, "executions (no scheduler)");
    cluster.pause("s1").unwrap();
    let paused = run(&as_str(&kv(&["--deadline", "500", "read", "k"]))).await;
    cluster.resume("s1").unwrap();
    exits(&paused, 5, "kv read (paused node)");
}

/// `Vec<String>` as the `&[&str]` a command takes.
fn as_str(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}
