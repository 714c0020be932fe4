//! The benchmarks and the evaluation report speak one schema: short real runs of
//! `dida bench storage --durability`, `dida bench chain --http`, `dida bench
//! elastic`, `dida bench rebalance`, `dida bench resp` and `dida bench idle` write their JSON lines, and `dida bench report` reads them back into a
//! report that shows them. A field one side renamed would fail this test, not fill
//! the report with zeros. The elastic run is also the demonstration, checked
//! here: workers join and one leaves under HTTP load, and no execution is lost.

use std::path::Path;
use std::process::Command;

mod support;
use support::dida;

/// Runs `dida bench ARGS --json`, keeping its stdout as `dir/name`.
fn bench(dir: &Path, name: &str, args: &[&str]) {
    let output = Command::new(dida())
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .expect("run dida bench");
    assert!(
        output.status.success(),
        "dida bench {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(dir.join(name), &output.stdout).unwrap();
}

/// The first line of `text` (a benchmark's `--json` output) whose `event` is `event`.
fn event_line(text: &str, event: &str) -> serde_json::Value {
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["event"] == event)
        .unwrap_or_else(|| panic!("no {event} line in {text}"))
}

#[test]
fn the_report_reads_what_the_benchmarks_write() {
    let results = tempfile::tempdir().unwrap();
    let short = ["--duration", "0.3", "--warmup", "0.1", "--concurrency", "1"];
    let storage: Vec<&str> = ["storage", "--nodes", "3", "--keys", "20", "--no-redis"]
        .into_iter()
        .chain(short)
        .collect();
    bench(results.path(), "storage.jsonl", &storage);
    let durability: Vec<&str> = storage
        .iter()
        .copied()
        .chain(["--durability", "memory,never"])
        .collect();
    bench(results.path(), "durability.jsonl", &durability);
    let chain: Vec<&str> = [
        "chain",
        "--nodes",
        "3",
        "--workers",
        "2",
        "--lengths",
        "1,2",
        "--http",
    ]
    .into_iter()
    .chain(short)
    .collect();
    bench(results.path(), "chain.jsonl", &chain);
    bench(
        results.path(),
        "elastic.jsonl",
        &["elastic", "--phase", "0.5", "--warmup", "0.2"],
    );
    let elastic = std::fs::read_to_string(results.path().join("elastic.jsonl")).unwrap();
    let line = |event: &str| event_line(&elastic, event);
    // None lost: every invocation succeeded and the scheduler counted exactly them.
    let totals = line("totals");
    assert!(totals["sent"].as_u64().unwrap() > 0, "{totals}");
    assert_eq!(totals["failed"], 0, "{totals}");
    assert_eq!(totals["submitted"], totals["sent"], "{totals}");
    assert_eq!(totals["finished"], totals["sent"], "{totals}");
    assert_eq!(totals["running_at_end"], 0, "{totals}");
    // The leaving worker drained: it ran executions when asked to leave (24 in
    // flight saturate the three workers' 12 slots), they all succeeded, and it
    // exited by itself with status 0.
    let leave = line("leave");
    assert!(leave["running_at_leave"].as_u64().unwrap() > 0, "{leave}");
    assert_eq!(
        leave["running_at_leave_succeeded"], leave["running_at_leave"],
        "{leave}"
    );
    assert_eq!(leave["clean_exit"], true, "{leave}");
    assert_eq!(leave["state_after"], "gone", "{leave}");

    // A node joins a loaded cluster: it receives about its share, nothing fails.
    bench(
        results.path(),
        "rebalance.jsonl",
        &[
            "rebalance",
            "--keys",
            "3000",
            "--before",
            "0.5",
            "--window",
            "0.3",
        ],
    );
    let rebalance = std::fs::read_to_string(results.path().join("rebalance.jsonl")).unwrap();
    let moved = event_line(&rebalance, "move");
    let share = moved["share"].as_f64().unwrap();
    assert!((0.5..=1.5).contains(&share), "{moved}");
    assert!(
        rebalance.contains("\"text\":\"0 requests failed\""),
        "{rebalance}"
    );

    // redis-benchmark against a storage node's RESP port (dida alone: the suite
    // installs redis-benchmark with redis-cli, not redis-server).
    bench(
        results.path(),
        "resp.jsonl",
        &[
            "resp",
            "--no-redis",
            "--requests",
            "2000",
            "--pipelines",
            "1",
        ],
    );

    // The idle cost, then a crash detected by every survivor.
    bench(
        results.path(),
        "idle.jsonl",
        &[
            "idle",
            "--nodes",
            "3",
            "--keys",
            "20",
            "--duration",
            "0.3",
            "--settle",
            "0.5",
        ],
    );
    let idle = std::fs::read_to_string(results.path().join("idle.jsonl")).unwrap();
    let detection = event_line(&idle, "detection");
    assert_eq!(detection["killed"], "s3", "{detection}");
    assert_eq!(
        detection["survivors_s"].as_array().unwrap().len(),
        2,
        "{detection}"
    );

    let docs = tempfile::tempdir().unwrap();
    let output = Command::new(dida())
        .args(["bench", "report", "--input"])
        .arg(results.path())
        .arg("--out")
        .arg(docs.path())
        .arg("--method")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/evaluation-method.md"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "dida bench report failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = std::fs::read_to_string(docs.path().join("evaluation.md")).unwrap();
    assert!(
        report.contains("`dida bench storage` on 3 storage nodes"),
        "the storage set-up is read:\n{report}"
    );
    assert!(
        report.contains("never"),
        "the durability lines are read:\n{report}"
    );
    assert!(
        report.contains("`dida bench chain`"),
        "the chain run is read:\n{report}"
    );
    assert!(
        report.contains("## Speaking Redis") && report.contains("| 1 | GET | – |"),
        "the redis-benchmark rows are read:\n{report}"
    );
    assert!(
        report.contains("`s3` was SIGKILLed: its 2 survivors listed it failed"),
        "the idle run's detection is read:\n{report}"
    );
    assert!(
        report.contains("## Workers joining and leaving under load")
            && report.contains("| three workers | 3 |"),
        "the elastic run is read:\n{report}"
    );
    assert!(
        report.contains("## A storage node joining under load") && report.contains("| during |"),
        "the rebalance run is read:\n{report}"
    );
}
