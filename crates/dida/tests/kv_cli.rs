//! `dida kv` as a user runs it, against a real 5-node cluster: output formats, and a
//! clear error (with nothing lost) for every kind of bad input.

use std::path::Path;
use std::process::Output;

use dida_local_cluster::{ClusterSpec, LocalCluster};

fn dida() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_dida"))
}

async fn kv(cluster: &LocalCluster, args: &[&str]) -> Output {
    tokio::process::Command::new(dida())
        .args(["kv", "--peers", cluster.peers()])
        .args(args)
        .output()
        .await
        .expect("run dida kv")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_commands_print_text_and_json_events() {
    let cluster = LocalCluster::start(dida(), ClusterSpec::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.txt");
    std::fs::write(
        &data,
        "13,1\n14,x\n\n# the classic course data\n23,11\n24,y\n",
    )
    .unwrap();

    let populated = kv(&cluster, &["populate", data.to_str().unwrap()]).await;
    assert!(populated.status.success(), "{}", stderr(&populated));
    assert!(stdout(&populated).contains("populated 4 records"));

    let read = kv(&cluster, &["--json", "read", "23"]).await;
    assert!(read.status.success(), "{}", stderr(&read));
    let event: serde_json::Value = serde_json::from_str(stdout(&read).trim()).unwrap();
    assert_eq!(event["event"], "record");
    assert_eq!(event["key"], "23");
    assert_eq!(event["value"], "11");
    assert_eq!(event["version"]["number"], 1);
    assert!(event["server"].as_str().unwrap().starts_with('s'));

    let cas = kv(&cluster, &["--json", "cas", "23", "11", "success"]).await;
    let event: serde_json::Value = serde_json::from_str(stdout(&cas).trim()).unwrap();
    assert_eq!(event["event"], "cas");
    assert_eq!(event["applied"], true);
    assert_eq!(event["version"]["number"], 2);
    // A swap that did not happen is no error, but has its own exit status.
    let failed_cas = kv(&cluster, &["cas", "23", "11", "again"]).await;
    assert_eq!(failed_cas.status.code(), Some(3), "{}", stderr(&failed_cas));
    assert!(stdout(&failed_cas).contains("not updated"));

    let exact = kv(
        &cluster,
        &[
            "read",
            "23",
            "--version",
            &format!("1.{}", event["version"]["replica"]),
        ],
    )
    .await;
    assert!(exact.status.success(), "{}", stderr(&exact));
    assert!(stdout(&exact).contains(" 11"), "{}", stdout(&exact));

    let list = kv(&cluster, &["--json", "list"]).await;
    assert!(list.status.success(), "{}", stderr(&list));
    let events: Vec<serde_json::Value> = stdout(&list)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 4 keys x 3 replicas, and key 23 has 2 versions on its primary at least.
    assert!(events.len() >= 13, "{events:?}");
    assert!(events.iter().all(|e| e["event"] == "record"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_loses_nothing() {
    let mut cluster = LocalCluster::start(dida(), ClusterSpec::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    // A malformed line: named with file and line, and nothing of the file is written.
    let data = dir.path().join("bad.txt");
    std::fs::write(&data, "a,1\nb,2\nc 3\nd,4\n").unwrap();
    let populated = kv(&cluster, &["populate", data.to_str().unwrap()]).await;
    assert!(!populated.status.success());
    let message = stderr(&populated);
    assert!(message.contains("bad.txt:3:"), "{message}");
    let read = kv(&cluster, &["read", "a"]).await;
    assert_eq!(
        read.status.code(),
        Some(4),
        "nothing may be written from a malformed file: the key is missing"
    );
    assert!(
        stderr(&read).contains("no value for key \"a\""),
        "{}",
        stderr(&read)
    );

    // A missing data file.
    let missing = kv(&cluster, &["populate", "/nonexistent/data.txt"]).await;
    assert!(
        stderr(&missing).contains("cannot read the data file"),
        "{}",
        stderr(&missing)
    );

    // An unknown server.
    let unknown = kv(&cluster, &["list", "--server", "s42"]).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("unknown storage node \"s42\""),
        "{}",
        stderr(&unknown)
    );

    // A malformed version.
    let version = kv(&cluster, &["read", "a", "--version", "x.1"]).await;
    assert_eq!(version.status.code(), Some(2), "a usage error");
    assert!(
        stderr(&version).contains("NUMBER.REPLICA"),
        "{}",
        stderr(&version)
    );

    // Malformed membership.
    let peers = tokio::process::Command::new(dida())
        .args(["kv", "--peers", "s1=127.0.0.1:1", "read", "a"])
        .output()
        .await
        .unwrap();
    assert!(
        stderr(&peers).contains("must start with http://"),
        "{}",
        stderr(&peers)
    );

    // An oversized key is refused before anything is sent.
    let long_key = "k".repeat(2000);
    let oversized = kv(&cluster, &["write", &long_key, "v"]).await;
    assert!(
        stderr(&oversized).contains("the limit is 1024"),
        "{}",
        stderr(&oversized)
    );

    // An unreachable node: the error names it; data on the other nodes is intact.
    let ok = kv(&cluster, &["write", "kept", "yes"]).await;
    assert!(ok.status.success(), "{}", stderr(&ok));
    let client = cluster.client().unwrap();
    let victim = client
        .replicas("kept")
        .into_iter()
        .last()
        .unwrap()
        .to_string();
    cluster.kill(&victim).await.unwrap();
    let listed = kv(&cluster, &["list", "--server", &victim]).await;
    assert_eq!(listed.status.code(), Some(5), "the node is unreachable");
    let message = stderr(&listed);
    assert!(
        message.contains(&format!("storage node {victim}")) && message.contains("unreachable"),
        "{message}"
    );
    let read = kv(&cluster, &["read", "kept"]).await;
    assert!(
        read.status.success(),
        "reads fall back to a live replica: {}",
        stderr(&read)
    );
    assert!(stdout(&read).contains("yes"));
}
