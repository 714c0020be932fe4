//! Executions you can inspect, against real processes on loopback (a storage node,
//! a scheduler and two workers with the test fixtures): `dida executions` lists
//! them with status and duration, `dida status ID` shows how each operator ran
//! (worker, start, duration, fuel, outcome), and `dida logs ID` shows what the
//! operators logged and printed, within the per-execution bound.

use std::path::{Path, PathBuf};
use std::process::Output;

use dida_core::limits::MAX_EXECUTION_LOG_BYTES;
use dida_local_cluster::ComputeSpec;
use serde_json::Value;

mod support;
use support::{dida, one_storage_node_and, stderr, stdout};

/// Runs `dida ARGS --scheduler URL`.
async fn cli(scheduler: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(dida())
        .args(args)
        .args(["--scheduler", scheduler])
        .env_remove("DIDA_SCHEDULER")
        .output()
        .await
        .expect("run dida")
}

/// The JSON events of `output`, one per line.
fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn app_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `dida run --async`: the execution id.
async fn submit(scheduler: &str, app: &Path, input: &str) -> String {
    let mut args = vec!["run", "--async", "--input", input];
    let app = app.to_str().unwrap();
    args.push(app);
    let run = cli(scheduler, &args).await;
    assert!(run.status.success(), "dida run: {}", stderr(&run));
    stdout(&run).trim().to_string()
}

/// `dida status ID --wait --json`: the `client` event, then the `operator` events.
async fn status(scheduler: &str, id: &str) -> (Output, Vec<Value>) {
    let output = cli(
        scheduler,
        &["status", id, "--wait", "--json", "--timeout", "60"],
    )
    .await;
    let events = json_lines(&output);
    (output, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_list_operator_runs_and_logs_are_inspectable() {
    let cluster = one_storage_node_and(ComputeSpec {
        workers: 2,
        operators_dir: Some(dida_operators::fixtures_dir().to_path_buf()),
        ..ComputeSpec::default()
    })
    .await;
    let scheduler = cluster.scheduler_url().unwrap().to_string();
    let scheduler = scheduler.as_str();
    let dir = tempfile::tempdir().unwrap();

    // A two-operator chain on two workers (least-loaded assignment, both idle): the
    // first logs and prints.
    let logging = app_file(
        dir.path(),
        "logging.txt",
        "operator LogOperator 0\noperator EchoOperator 1\n",
    );
    let ok = submit(scheduler, &logging, "hello").await;
    let (output, events) = status(scheduler, &ok).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(events[0]["event"], "client");
    assert_eq!(events[0]["outputs"], serde_json::json!(["hello", "hello"]));
    let operators = &events[1..];
    assert_eq!(operators.len(), 2, "{events:?}");
    for (order, (operator, name)) in operators
        .iter()
        .zip(["LogOperator", "EchoOperator"])
        .enumerate()
    {
        assert_eq!(operator["event"], "operator");
        assert_eq!(operator["order"], order);
        assert_eq!(operator["operator"], name);
        assert_eq!(operator["status"], "ok");
        assert!(operator["error"].is_null());
        assert!(operator["fuel_used"].as_u64().unwrap() > 0, "{operator}");
        assert!(operator["duration_us"].as_u64().unwrap() > 0, "{operator}");
        assert!(operator["started"].as_str().unwrap().ends_with('Z'));
    }
    let workers: Vec<&str> = operators
        .iter()
        .map(|o| o["worker"].as_str().unwrap())
        .collect();
    assert!(
        workers.iter().all(|w| ["w1", "w2"].contains(w)),
        "{workers:?}"
    );
    // The text form says the same, a line per operator.
    let text = cli(scheduler, &["status", &ok]).await;
    let text = stdout(&text);
    assert!(text.contains("operators:"), "{text}");
    assert!(
        text.contains("[0] LogOperator on worker w") && text.contains(": ok"),
        "{text}"
    );
    assert!(text.contains("[1] EchoOperator on worker w"), "{text}");

    // Its logs: the SDK call, stdout and stderr, in order, named by operator.
    let logs = cli(scheduler, &["logs", &ok, "--json"]).await;
    assert!(logs.status.success(), "{}", stderr(&logs));
    let lines: Vec<(String, String, String)> = json_lines(&logs)
        .iter()
        .map(|e| {
            assert_eq!(e["event"], "log");
            assert_eq!(e["id"], ok.as_str());
            assert_eq!(e["order"], 0);
            (
                e["operator"].as_str().unwrap().to_string(),
                e["level"].as_str().unwrap().to_string(),
                e["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("info", "LogOperator got hello"),
        ("stdout", "printed on stdout: hello"),
        ("stderr", "printed on stderr"),
    ]
    .map(|(level, text)| {
        (
            "LogOperator".to_string(),
            level.to_string(),
            text.to_string(),
        )
    });
    assert_eq!(lines, expected);
    let text = stdout(&cli(scheduler, &["logs", &ok]).await);
    assert!(
        text.contains("[0] LogOperator stdout: printed on stdout: hello"),
        "{text}"
    );

    // A failing execution: its failing operator's outcome.
    let failing = app_file(
        dir.path(),
        "failing.txt",
        "operator EchoOperator 0\noperator FailOperator 1\n",
    );
    let failed = submit(scheduler, &failing, "x").await;
    let (output, events) = status(scheduler, &failed).await;
    assert!(
        !output.status.success(),
        "a failed execution fails `status`"
    );
    assert_eq!(events[0]["status"], "error");
    let operators: Vec<&Value> = events.iter().filter(|e| e["event"] == "operator").collect();
    assert_eq!(operators.len(), 2, "{events:?}");
    assert_eq!(operators[0]["status"], "ok");
    assert_eq!(operators[1]["operator"], "FailOperator");
    assert_eq!(operators[1]["status"], "error");
    // With --json the command's failure is an `error` event too.
    assert_eq!(events.last().unwrap()["event"], "error");
    let error = operators[1]["error"].as_str().unwrap();
    assert!(error.contains("operator failed on purpose"), "{error}");

    // An operator that logs more than the bound: its first lines, then the marker.
    let spam = submit(scheduler, &logging, "spam:2000").await;
    let (output, _) = status(scheduler, &spam).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let logs = json_lines(&cli(scheduler, &["logs", &spam, "--json"]).await);
    let texts: Vec<&str> = logs.iter().map(|e| e["text"].as_str().unwrap()).collect();
    let kept: usize = texts[..texts.len() - 1].iter().map(|t| t.len()).sum();
    assert!(kept <= MAX_EXECUTION_LOG_BYTES, "{kept} bytes kept");
    assert!(kept > MAX_EXECUTION_LOG_BYTES - 200, "{kept} bytes kept");
    assert_eq!(texts[0], "LogOperator got spam:2000");
    let marker = texts.last().unwrap();
    assert!(
        marker.ends_with(&format!(
            "bytes of logs dropped: an execution keeps at most {MAX_EXECUTION_LOG_BYTES} bytes of logs"
        )),
        "{marker}"
    );
    let dropped: usize = marker.split(' ').next().unwrap().parse().unwrap();
    // 2000 lines of 100 bytes, the first line and what was printed, less what was kept.
    let produced = 2000 * 100
        + texts[0].len()
        + "printed on stdout: spam:2000".len()
        + "printed on stderr".len();
    assert_eq!(kept + dropped, produced);

    // The listing: newest first, with status and duration.
    let listed = cli(scheduler, &["executions", "--json"]).await;
    assert!(listed.status.success(), "{}", stderr(&listed));
    let listed = json_lines(&listed);
    let ids: Vec<&str> = listed.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [&spam, &failed, &ok]);
    let statuses: Vec<&str> = listed
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["succeeded", "failed", "succeeded"]);
    for execution in &listed {
        assert_eq!(execution["event"], "execution");
        assert!(execution["duration_ms"].is_u64(), "{execution}");
        assert!(execution["submitted"].as_str().unwrap().ends_with('Z'));
    }
    assert!(listed[2]["app"].as_str().unwrap().ends_with("logging.txt"));
    let limited = json_lines(&cli(scheduler, &["executions", "--json", "--limit", "1"]).await);
    assert_eq!(limited.len(), 1);
    let table = stdout(&cli(scheduler, &["executions"]).await);
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("ID"), "{table}");
    assert!(
        rows[1].starts_with(&spam) && rows[1].contains("succeeded") && rows[1].ends_with(" ms"),
        "{table}"
    );

    // An unknown id is an error that says so.
    let unknown = cli(scheduler, &["logs", "nope-1"]).await;
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("unknown execution id"),
        "{}",
        stderr(&unknown)
    );
}
