//! `dida puppetmaster` as a user runs it: the example scripts in batch JSON mode
//! (every node a real process, started by the PuppetMaster's own PCS), crashes,
//! every kind of malformed line, and no process left behind.
//!
//! The examples use the course's fixed `localhost` ports; each test copies them to
//! a temporary folder with free loopback ports instead, so tests never collide.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

mod support;

use dida_local_cluster::free_ports;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::Instant;

use support::{copy_example_files, dida, examples};

/// Copies the examples to a temporary folder, giving every `localhost:PORT` of
/// `script` a free loopback port; returns the folder and the copied script.
fn prepare(script: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    copy_example_files(dir.path());
    let text = std::fs::read_to_string(examples().join(script)).unwrap();
    let path = dir.path().join(script);
    std::fs::write(&path, with_free_ports(&text)).unwrap();
    (dir, path)
}

/// Replaces every `http://localhost:PORT` with `http://127.0.0.1:FREE` (the same
/// free port for every mention of the same port).
fn with_free_ports(text: &str) -> String {
    const PREFIX: &str = "http://localhost:";
    let port_after = |at: usize| -> &str {
        let rest = &text[at + PREFIX.len()..];
        &rest[..rest.chars().take_while(char::is_ascii_digit).count()]
    };
    let mentions: Vec<usize> = text.match_indices(PREFIX).map(|(at, _)| at).collect();
    let distinct: Vec<&str> = mentions
        .iter()
        .map(|&at| port_after(at))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let free: BTreeMap<&str, u16> = distinct
        .iter()
        .copied()
        .zip(free_ports(distinct.len()).unwrap())
        .collect();
    let mut out = String::new();
    let mut copied = 0;
    for at in mentions {
        let port = port_after(at);
        out.push_str(&text[copied..at]);
        out.push_str(&format!("http://127.0.0.1:{}", free[port]));
        copied = at + PREFIX.len() + port.len();
    }
    out.push_str(&text[copied..]);
    out
}

/// What a batch run printed and how it ended.
struct Run {
    events: Vec<Value>,
    success: bool,
    stderr: String,
}

impl Run {
    fn of(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == kind).collect()
    }

    /// The `client` events, by input.
    fn clients(&self) -> Vec<(String, &Value)> {
        self.of("client")
            .into_iter()
            .map(|e| (e["input"].as_str().unwrap().to_string(), e))
            .collect()
    }

    /// The value of the newest version of `key` among the `record` events.
    fn newest(&self, key: &str) -> Option<String> {
        self.of("record")
            .into_iter()
            .filter(|r| r["key"] == key)
            .max_by_key(|r| {
                (
                    r["version"]["number"].as_u64().unwrap(),
                    r["version"]["replica"].as_u64().unwrap(),
                )
            })
            .map(|r| r["value"].as_str().unwrap().to_string())
    }

    /// Every pid a `node` event reported.
    fn pids(&self) -> HashSet<u32> {
        self.of("node")
            .iter()
            .map(|e| e["pid"].as_u64().unwrap() as u32)
            .collect()
    }
}

/// Runs `dida pm SCRIPT --batch --json ARGS` to the end (at most 100 s).
async fn batch(script: &Path, args: &[&str]) -> Run {
    let output = tokio::time::timeout(
        Duration::from_secs(100),
        Command::new(dida())
            .arg("pm")
            .arg(script)
            .args(["--batch", "--json", "--debug-listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the batch run finished in time")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let events = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    Run {
        events,
        success: output.status.success(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// True while `pid` is a live (not zombie) process.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

async fn assert_all_gone(pids: &HashSet<u32>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            Instant::now() < deadline,
            "processes left behind: {:?}",
            pids.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_course_script_runs_the_classic_applications() {
    let (_dir, script) = prepare("course.txt");
    let run = batch(&script, &[]).await;
    assert!(run.success, "{}", run.stderr);
    assert!(run.of("error").is_empty(), "{:?}", run.of("error"));

    let started = run.of("node");
    assert_eq!(
        started.iter().filter(|e| e["state"] == "started").count(),
        9
    );
    let clients = run.clients();
    assert_eq!(clients.len(), 2, "{clients:?}");
    for (input, event) in &clients {
        assert_eq!(event["status"], "ok", "{event}");
        assert_eq!(event["error"], Value::Null);
        let outputs: Vec<&str> = event["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap())
            .collect();
        match input.as_str() {
            "23" => assert_eq!(outputs, ["12", "end"]),
            "1" => assert_eq!(outputs, ["1", "2"]),
            other => panic!("unexpected client {other}"),
        }
        assert!(!event["id"].as_str().unwrap().is_empty());
    }
    // The final records: 23 went 11 → 12 → success; the increments' key holds 2.
    assert_eq!(run.newest("23").as_deref(), Some("success"));
    assert_eq!(run.newest("13").as_deref(), Some("1"));
    let increment = clients.iter().find(|(i, _)| i == "1").unwrap().1["id"]
        .as_str()
        .unwrap();
    assert_eq!(run.newest(increment).as_deref(), Some("2"));
    // listServer s1 lists only s1; listGlobal lists every node.
    let servers: HashSet<&str> = run
        .of("record")
        .iter()
        .map(|r| r["server"].as_str().unwrap())
        .collect();
    assert!(servers.len() > 1, "{servers:?}");
    // status: every node answered.
    let status = run.of("status");
    assert_eq!(status.len(), 9);
    assert!(status.iter().all(|s| s["state"] == "alive"), "{status:?}");
    // debug: the workers reported every operator they ran, with what it wrote.
    // (Reports are fire-and-forget; those of the first operators are certainly in.)
    let debug = run.of("debug");
    assert!(debug.len() <= 4, "{debug:?}");
    assert!(debug
        .iter()
        .any(|d| d["operator"] == "IncrementOperator" && d["order"] == 0));
    let add = debug
        .iter()
        .find(|d| d["operator"] == "AddOperator")
        .unwrap();
    assert_eq!(add["output"], "12");
    assert_eq!(add["written"][0]["key"], "23");
    assert_eq!(add["written"][0]["value"], "12");
    // Nothing is left running, and every node was stopped gracefully: SIGTERM, and
    // it shut down by itself (no SIGKILL after the grace period).
    let stopped: Vec<_> = run
        .of("node")
        .into_iter()
        .filter(|e| e["state"] == "stopped" || e["state"] == "killed")
        .collect();
    assert_eq!(stopped.len(), 9, "{stopped:?}");
    assert!(
        stopped
            .iter()
            .all(|e| e["state"] == "stopped" && e["exit"] == "exited with status 0"),
        "{stopped:?}"
    );
    assert_all_gone(&run.pids()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_script_takes_orders_until_stock_runs_out() {
    let (_dir, script) = prepare("shop.txt");
    let run = batch(&script, &[]).await;
    assert!(run.success, "{}", run.stderr);
    let clients = run.clients();
    assert_eq!(clients.len(), 5, "{clients:?}");
    let books: Vec<_> = clients.iter().filter(|(i, _)| i == "book").collect();
    assert!(books.iter().all(|(_, e)| e["status"] == "ok"), "{books:?}");
    let pens: Vec<_> = clients.iter().filter(|(i, _)| i == "pen").collect();
    assert_eq!(pens.iter().filter(|(_, e)| e["status"] == "ok").count(), 1);
    let failed = pens.iter().find(|(_, e)| e["status"] == "error").unwrap().1;
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("out of stock: pen"),
        "{failed}"
    );
    assert_eq!(run.newest("stock:book").as_deref(), Some("0"));
    assert_eq!(run.newest("stock:pen").as_deref(), Some("0"));
    assert_eq!(run.newest("revenue").as_deref(), Some("38"));
    assert_all_gone(&run.pids()).await;
}

/// Reads the events of a running PuppetMaster as they come, checking the crashed
/// node's process and port the moment the `crash` is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_kills_the_storage_process_and_status_shows_it_failed() {
    let (_dir, script) = prepare("crash.txt");
    let mut child = Command::new(dida())
        .arg("pm")
        .arg(&script)
        .args(["--batch", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(100);
    let mut events = Vec::new();
    let mut crashed_port = None;
    while let Some(line) = tokio::time::timeout_at(deadline, lines.next_line())
        .await
        .expect("the script finished in time")
        .unwrap()
    {
        let event: Value = serde_json::from_str(&line).unwrap();
        if event["event"] == "node" && event["state"] == "crashed" {
            assert_eq!(event["node"], "s1");
            let pid = event["pid"].as_u64().unwrap() as u32;
            assert!(!alive(pid), "the crashed node's process is gone");
            let url = event["url"].as_str().unwrap();
            let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
            assert!(
                std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
                "its port no longer answers"
            );
            crashed_port = Some(port);
        }
        events.push(event);
    }
    assert!(child.wait().await.unwrap().success());
    assert!(crashed_port.is_some(), "crash was reported");
    let s1 = events
        .iter()
        .find(|e| e["event"] == "status" && e["node"] == "s1")
        .expect("status reports s1");
    assert_eq!(s1["state"], "failed");
    let others: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "status" && e["node"] != "s1")
        .collect();
    assert!(others.iter().all(|e| e["state"] == "alive"), "{others:?}");
    let first = events
        .iter()
        .find(|e| e["event"] == "client" && e["input"] == "23")
        .unwrap();
    assert_eq!(first["status"], "ok", "{first}");
    let servers: HashSet<&str> = events
        .iter()
        .filter(|e| e["event"] == "record")
        .map(|r| r["server"].as_str().unwrap())
        .collect();
    assert!(!servers.contains("s1"), "listGlobal skips the crashed node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_line_is_one_error_with_its_line_and_the_session_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let [s1, s2, s3] = free_ports(3).unwrap()[..] else {
        unreachable!()
    };
    std::fs::write(dir.path().join("data.txt"), "k,v\n").unwrap();
    let script = format!(
        "storage s1 http://127.0.0.1:{s1} 0\n\
         storage s1 http://127.0.0.1:{s2} 0\n\
         worker w1 http://127.0.0.1:{taken_port} 0\n\
         storage s3 http://127.0.0.1:{s3} 0\n\
         storage s4 127.0.0.1:{s2} 0\n\
         scheduler sched http://127.0.0.1:{s2}\n\
         frobnicate\n\
         crash\n\
         populate data.txt\n\
         populate missing.txt\n\
         client 1 missing-app.txt\n\
         crash nobody\n\
         crash s3\n\
         crash s3\n\
         listServer s1\n"
    );
    let path = dir.path().join("bad.txt");
    std::fs::write(&path, script).unwrap();
    let run = batch(&path, &["--replication-factor", "2"]).await;
    drop(taken);
    assert!(!run.success, "an invalid script fails the batch run");
    // Every line's error, then the run's own (no line), as under every --json.
    let (line_errors, run_errors): (Vec<_>, Vec<_>) = run
        .of("error")
        .into_iter()
        .partition(|e| !e["line"].is_null());
    assert_eq!(run_errors.len(), 1, "{run_errors:?}");
    assert_eq!(run_errors[0]["command"], "puppetmaster");
    let errors: BTreeMap<u64, String> = line_errors
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        (2, "node id \"s1\" is already used"),
        (3, "already in use"),
        (5, "must start with http://"),
        (7, "unknown command \"frobnicate\""),
        (8, "`crash` takes 1 argument"),
        (10, "cannot read the data file"),
        (11, "cannot read the application file"),
        (12, "unknown node \"nobody\""),
        (14, "s3 has already crashed"),
    ];
    for (line, message) in expected {
        let got = errors
            .get(&line)
            .unwrap_or_else(|| panic!("no error on line {line}: {errors:?}"));
        assert!(got.contains(message), "line {line}: {got:?}");
    }
    assert_eq!(errors.len(), expected.len(), "{errors:?}");
    // The session went on: the good lines ran.
    assert_eq!(
        run.of("node")
            .iter()
            .filter(|e| e["state"] == "crashed")
            .count(),
        1
    );
    assert_eq!(
        run.newest("k").as_deref(),
        Some("v"),
        "populate and listServer ran"
    );
    assert_all_gone(&run.pids()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_script_spreads_executions_over_every_worker() {
    let (_dir, script) = prepare("load.txt");
    let run = batch(&script, &[]).await;
    assert!(run.success, "{}", run.stderr);
    let clients = run.clients();
    assert_eq!(clients.len(), 12);
    for (input, event) in &clients {
        assert_eq!(event["status"], "ok", "{input}: {event}");
        assert_eq!(event["outputs"], serde_json::json!(["1", "2"]), "{input}");
        let id = event["id"].as_str().unwrap();
        assert_eq!(run.newest(id), None, "load.txt lists no records");
    }
    // The second status comes after `await`: every operator has completed, and the
    // least-loaded assignment gave every worker a share.
    let workers: Vec<&Value> = run
        .of("status")
        .into_iter()
        .filter(|s| s["role"] == "worker")
        .collect();
    assert_eq!(workers.len(), 6, "two status commands, three workers");
    let completed: Vec<u64> = workers[3..]
        .iter()
        .map(|w| w["details"]["completed"].as_u64().unwrap())
        .collect();
    assert_eq!(completed.iter().sum::<u64>(), 24, "{completed:?}");
    assert!(completed.iter().all(|&c| c > 0), "{completed:?}");
    assert_all_gone(&run.pids()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_elastic_script_adds_two_workers_and_removes_one() {
    let (_dir, script) = prepare("elastic.txt");
    let run = batch(&script, &[]).await;
    assert!(run.success, "{}", run.stderr);
    let clients = run.clients();
    assert_eq!(clients.len(), 8);
    for (input, event) in &clients {
        assert_eq!(event["status"], "ok", "{input}: {event}");
        assert_eq!(event["outputs"], serde_json::json!(["1", "2"]), "{input}");
    }
    let states = |id: &str| -> Vec<String> {
        run.of("node")
            .into_iter()
            .filter(|e| e["node"] == id)
            .map(|e| e["state"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(states("w1"), ["started", "stopped"]);
    assert_eq!(states("w2"), ["started", "joined", "stopped"]);
    assert_eq!(states("w3"), ["started", "joined", "leaving", "stopped"]);
    // `status` showed w3 leaving or, if it had drained already, gone (that nothing
    // new goes to a leaving worker is the test above's).
    let w3 = run
        .of("status")
        .into_iter()
        .find(|s| s["node"] == "w3")
        .unwrap();
    assert!(w3["state"] == "leaving" || w3["state"] == "gone", "{w3}");
    let stopped = run
        .of("node")
        .into_iter()
        .find(|e| e["node"] == "w3" && e["state"] == "stopped")
        .unwrap();
    assert_eq!(stopped["exit"], "exited with status 0");
    assert_all_gone(&run.pids()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_brings_a_crashed_storage_node_back_with_its_flags() {
    // Restarted right after the crash, before its peers can declare it failed (that
    // takes seconds): the node comes back as the same member and answers as alive.
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(4).unwrap();
    let script = dir.path().join("restart.txt");
    std::fs::write(
        &script,
        format!(
            "storage s1 http://127.0.0.1:{} 0\n\
             storage s2 http://127.0.0.1:{} 0\n\
             storage s3 http://127.0.0.1:{} 0\n\
             crash s1\n\
             restart s1\n\
             restart s2\n\
             restart nope\n\
             status\n",
            ports[0], ports[1], ports[2]
        ),
    )
    .unwrap();
    let run = batch(&script, &[]).await;
    assert!(!run.success, "the bad restart line makes the batch fail");
    let errors: Vec<_> = run
        .of("error")
        .into_iter()
        .filter(|e| !e["line"].is_null())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["line"], 7);
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("unknown node \"nope\""),
        "{errors:?}"
    );
    let node_events = |id: &str| -> Vec<(String, u32)> {
        run.of("node")
            .into_iter()
            .filter(|e| e["node"] == id)
            .map(|e| {
                (
                    e["state"].as_str().unwrap().to_string(),
                    e["pid"].as_u64().unwrap() as u32,
                )
            })
            .collect()
    };
    // s1: started, crashed, restarted (a new process), stopped at the end.
    let s1 = node_events("s1");
    let states: Vec<&str> = s1.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        states,
        ["started", "crashed", "restarted", "stopped"],
        "{s1:?}"
    );
    assert_eq!(s1[0].1, s1[1].1, "the crash killed the first process");
    assert_ne!(s1[2].1, s1[0].1, "the restart started a new one");
    // s2 was running: the restart SIGKILLed it first.
    let s2 = node_events("s2");
    let states: Vec<&str> = s2.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        states,
        ["started", "crashed", "restarted", "stopped"],
        "{s2:?}"
    );
    assert_eq!(s2[0].1, s2[1].1);
    // Each restart prints the node's status once it answers, then `status` all three.
    let statuses: Vec<&Value> = run
        .of("status")
        .into_iter()
        .filter(|e| e["node"] == "s1")
        .collect();
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    for status in statuses {
        assert_eq!(status["state"], "alive", "{status}\n{}", run.stderr);
        assert_eq!(status["details"]["pid"], s1[2].1);
        assert_eq!(status["details"]["restarts"], 1);
        assert_eq!(status["details"]["members"], 3, "the same membership");
    }
    assert_all_gone(&run.pids()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_worker_and_remove_worker_grow_and_shrink_a_running_cluster() {
    // `hold` waits in AwaitKeyOperator on w1 (the only worker when it is issued)
    // until `populate` writes its key: w1 is asked to leave while it runs it, so
    // its leaving is seen, and the `free` execution issued meanwhile can only go to
    // w2. Nothing depends on timing: every wait is on an event.
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(4).unwrap();
    std::fs::create_dir(dir.path().join("apps")).unwrap();
    std::fs::write(
        dir.path().join("apps/hold.txt"),
        "operator AwaitKeyOperator 0\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("apps/echo.txt"),
        "operator EchoOperator 0\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("go.txt"), "hold-go,released\n").unwrap();
    let script = dir.path().join("elastic.txt");
    std::fs::write(
        &script,
        format!(
            "debug\n\
             storage s1 http://127.0.0.1:{s1} 0\n\
             scheduler sched http://127.0.0.1:{sched}\n\
             worker w1 http://127.0.0.1:{w1} 0\n\
             client hold apps/hold.txt\n\
             addWorker w2 http://127.0.0.1:{w2} 0\n\
             addWorker w2 http://127.0.0.1:{w2} 0\n\
             removeWorker w1\n\
             removeWorker w1\n\
             removeWorker s1\n\
             status\n\
             client free apps/echo.txt\n\
             populate go.txt\n\
             await\n",
            s1 = ports[0],
            sched = ports[1],
            w1 = ports[2],
            w2 = ports[3],
        ),
    )
    .unwrap();
    let fixtures = dida_operators::fixtures_dir().display().to_string();
    let run = batch(&script, &["--operators", &fixtures]).await;
    let errors: Vec<(u64, String)> = run
        .of("error")
        .into_iter()
        .filter(|e| !e["line"].is_null())
        .map(|e| {
            (
                e["line"].as_u64().unwrap_or(0),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        (7, "node id \"w2\" is already used"),
        (9, "w1 is already leaving"),
        (10, "s1 is a storage; removeWorker removes workers"),
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:?}\n{}", run.stderr);
    for ((line, message), (want_line, want)) in errors.iter().zip(expected) {
        assert_eq!(*line, want_line, "{errors:?}");
        assert!(message.contains(want), "{message:?} lacks {want:?}");
    }
    assert!(!run.success, "the refused lines make the batch fail");

    // While w1 drains `hold`, the scheduler lists it leaving and w2 alive.
    let status = |id: &str| -> &Value {
        run.of("status")
            .into_iter()
            .find(|e| e["node"] == id)
            .unwrap_or_else(|| panic!("no status of {id}: {}", run.stderr))
    };
    assert_eq!(status("w1")["state"], "leaving", "{}", status("w1"));
    assert_eq!(status("w1")["details"]["leaving"], true);
    assert_eq!(status("w2")["state"], "alive", "{}", status("w2"));
    let sched = status("sched");
    assert_eq!(sched["details"]["worker_states"]["w1"], "leaving");
    assert_eq!(sched["details"]["worker_states"]["w2"], "alive");

    // Both executions finished: `hold` on the leaving w1, `free` on w2.
    let clients: BTreeMap<String, &Value> = run.clients().into_iter().collect();
    assert_eq!(clients["hold"]["status"], "ok", "{}", clients["hold"]);
    assert_eq!(clients["hold"]["outputs"][0], "released");
    assert_eq!(clients["free"]["status"], "ok", "{}", clients["free"]);
    let ran_on = |input: &str| -> Vec<String> {
        let id = &clients[input]["id"];
        run.of("debug")
            .into_iter()
            .filter(|d| d["id"] == *id)
            .map(|d| d["worker"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ran_on("hold"), ["w1"]);
    assert_eq!(
        ran_on("free"),
        ["w2"],
        "nothing new goes to a leaving worker"
    );

    // w1 left by itself once drained (exit status 0, not SIGKILLed); w2 joined
    // and was stopped at the end like every node.
    let states = |id: &str| -> Vec<(String, Option<String>)> {
        run.of("node")
            .into_iter()
            .filter(|e| e["node"] == id)
            .map(|e| {
                (
                    e["state"].as_str().unwrap().to_string(),
                    e["exit"].as_str().map(String::from),
                )
            })
            .collect()
    };
    let w1 = states("w1");
    assert_eq!(
        w1.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        ["started", "leaving", "stopped"],
        "{w1:?}"
    );
    assert_eq!(w1[2].1.as_deref(), Some("exited with status 0"), "{w1:?}");
    let w2 = states("w2");
    assert_eq!(
        w2.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        ["started", "joined", "stopped"],
        "{w2:?}"
    );
    assert_all_gone(&run.pids()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_says_how_a_process_killed_outside_the_console_ended() {
    // The console reads lines from its stdin; w1 is SIGKILLed behind its back (as
    // by the OOM killer), then `status` is typed until the row says how w1 ended,
    // in its PCS's words (the PCS reaps the process a moment after the kill).
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(3).unwrap();
    let script = dir.path().join("outside.txt");
    std::fs::write(
        &script,
        format!(
            "storage s1 http://127.0.0.1:{} 0\n\
             scheduler sched http://127.0.0.1:{}\n\
             worker w1 http://127.0.0.1:{} 0\n",
            ports[0], ports[1], ports[2]
        ),
    )
    .unwrap();
    let mut child = Command::new(dida())
        .arg("pm")
        .arg(&script)
        .args(["--json", "--debug-listen", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let w1 = loop {
        let event = next_event(&mut lines, deadline).await;
        if event["event"] == "node" && event["node"] == "w1" && event["state"] == "started" {
            break event["pid"].as_u64().unwrap() as i32;
        }
    };
    stdin.write_all(b"status\n").await.unwrap();
    loop {
        let event = next_event(&mut lines, deadline).await;
        if event["event"] == "status" && event["node"] == "w1" {
            assert_eq!(event["state"], "alive", "{event}");
            assert!(event["details"].get("process_exit").is_none(), "{event}");
            break;
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(w1),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let row = loop {
        stdin.write_all(b"status\n").await.unwrap();
        let row = loop {
            let event = next_event(&mut lines, deadline).await;
            if event["event"] == "status" && event["node"] == "w1" {
                break event;
            }
        };
        if row["details"].get("process_exit").is_some() {
            break row;
        }
        assert!(Instant::now() < deadline, "w1's end never shown: {row}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(row["state"], "failed", "{row}");
    assert_eq!(row["details"]["pid"], w1, "{row}");
    assert!(
        row["details"]["process_exit"]
            .as_str()
            .unwrap()
            .contains("SIGKILL"),
        "{row}"
    );
    stdin.write_all(b"quit\n").await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the PuppetMaster quit")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// The next JSON event a running PuppetMaster prints, before `deadline`.
async fn next_event(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    deadline: Instant,
) -> Value {
    let line = tokio::time::timeout_at(deadline, lines.next_line())
        .await
        .expect("an event in time")
        .unwrap()
        .expect("the PuppetMaster is still running");
    serde_json::from_str(&line).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_storage_decommissions_a_storage_node_that_then_exits_by_itself() {
    // Four storage nodes (the factor 3 fits), keys written, then `removeStorage s4`
    // typed at the console: the cluster decides s4 leaves (epoch 1), s4 hands its
    // records off, is removed (epoch 2) and exits 0 by itself; `status` then shows
    // it removed with the epoch, the dashboard shows it removed and out of the
    // ring (the others keep their colours), the keys read back from the three that
    // stay, and removing s3 is refused (below the replication factor). Every wait
    // is on an event or polled with a deadline.
    use dida_core::Membership;
    use dida_storage_client::{ClientConfig, StorageClient};
    use tokio::io::AsyncWriteExt;

    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(5).unwrap();
    let (ports, dashboard) = (&ports[..4], ports[4]);
    let peers: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| format!("s{}=http://127.0.0.1:{port}", i + 1))
        .collect();
    let keys: Vec<(String, String)> = (0..40)
        .map(|n| (format!("key-{n}"), format!("value-{n}")))
        .collect();
    let data: String = keys.iter().map(|(k, v)| format!("{k},{v}\n")).collect();
    std::fs::write(dir.path().join("data.txt"), data).unwrap();
    let script = dir.path().join("decommission.txt");
    let setup: String = ports
        .iter()
        .enumerate()
        .map(|(i, port)| format!("storage s{} http://127.0.0.1:{port} 0\n", i + 1))
        .collect();
    std::fs::write(&script, format!("{setup}populate data.txt\n")).unwrap();
    let mut child = Command::new(dida())
        .arg("pm")
        .arg(&script)
        .args(["--json", "--debug-listen", "127.0.0.1:0"])
        .args(["--dashboard", &format!("127.0.0.1:{dashboard}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut started = 0;
    while started < 4 {
        let event = next_event(&mut lines, deadline).await;
        if event["event"] == "node" && event["state"] == "started" {
            started += 1;
        }
        assert_ne!(event["event"], "error", "{event}");
    }
    // The dashboard's storage nodes, by id: (state, colour), with the ring.
    let http = dida_bench::http_client::HttpClient::new(Duration::from_secs(5));
    let snapshot_url = format!("http://127.0.0.1:{dashboard}/api/snapshot");
    let shown = |snapshot: &Value| -> BTreeMap<String, (String, String)> {
        snapshot["snapshot"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["role"] == "storage")
            .map(|n| {
                let field = |k: &str| n[k].as_str().unwrap_or_default().to_string();
                (field("id"), (field("state"), field("colour")))
            })
            .collect()
    };
    let before = support::eventually(
        Duration::from_secs(30),
        "four alive storage nodes",
        || async {
            let snapshot = http.get(&snapshot_url).await.ok()?.json().ok()?;
            let nodes = shown(&snapshot);
            (nodes.len() == 4 && nodes.values().all(|(state, _)| state == "alive")).then_some(nodes)
        },
    )
    .await;
    // Lines run in order: `populate` has finished before this one runs.
    stdin.write_all(b"removeStorage s4\n").await.unwrap();
    let mut s4 = Vec::new();
    while s4.len() < 2 {
        let event = next_event(&mut lines, deadline).await;
        assert_ne!(event["event"], "error", "{event}");
        if event["event"] == "node" && event["node"] == "s4" {
            s4.push(event);
        }
    }
    assert_eq!(s4[0]["state"], "leaving", "{:?}", s4);
    assert_eq!(s4[0]["epoch"], 1, "{:?}", s4);
    assert_eq!(s4[1]["state"], "removed", "{:?}", s4);
    assert_eq!(s4[1]["exit"], "exited with status 0", "{:?}", s4);
    assert_eq!(s4[1]["epoch"], 2, "{:?}", s4);
    assert!(!alive(s4[1]["pid"].as_u64().unwrap() as u32));

    stdin.write_all(b"status\n").await.unwrap();
    let mut rows = BTreeMap::new();
    while rows.len() < 4 {
        let event = next_event(&mut lines, deadline).await;
        if event["event"] == "status" {
            rows.insert(event["node"].as_str().unwrap().to_string(), event);
        }
    }
    assert_eq!(rows["s4"]["state"], "removed", "{}", rows["s4"]);
    assert_eq!(rows["s4"]["details"]["config_epoch"], 2, "{}", rows["s4"]);
    for id in ["s1", "s2", "s3"] {
        assert_eq!(rows[id]["state"], "alive", "{}", rows[id]);
        assert_eq!(rows[id]["details"]["standing"], "active", "{}", rows[id]);
        assert_eq!(rows[id]["details"]["config_epoch"], 2, "{}", rows[id]);
    }

    let after = support::eventually(
        Duration::from_secs(30),
        "s4 removed on the dashboard",
        || async {
            let snapshot: Value = http.get(&snapshot_url).await.ok()?.json().ok()?;
            let ring = &snapshot["snapshot"]["ring"];
            (shown(&snapshot)["s4"].0 == "removed" && ring["epoch"] == 2).then_some(snapshot)
        },
    )
    .await;
    let ring = &after["snapshot"]["ring"];
    assert_eq!(ring["excluded"], serde_json::json!(["s4"]), "{ring}");
    assert!(ring["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| !r["replicas"].as_array().unwrap().contains(&"s4".into())));
    let after = shown(&after);
    for id in ["s1", "s2", "s3"] {
        assert_eq!(after[id].0, "alive", "{after:?}");
        assert_eq!(after[id].1, before[id].1, "{id} keeps its colour");
    }

    // Below the replication factor: the cluster's reason, nothing changed.
    stdin.write_all(b"removeStorage s3\n").await.unwrap();
    let refused = loop {
        let event = next_event(&mut lines, deadline).await;
        if event["event"] == "error" {
            break event;
        }
        assert_ne!(event["event"], "node", "{event}");
    };
    let message = refused["message"].as_str().unwrap();
    assert_eq!(refused["command"], "removeStorage", "{refused}");
    assert!(
        message.contains("cannot remove storage node s3")
            && message.contains("fewer than the replication factor 3"),
        "{message}"
    );

    // Every key reads back from the three that stay.
    let client = StorageClient::new(
        Membership::parse(&peers.join(",")).unwrap(),
        ClientConfig {
            replication_factor: 3,
            ..ClientConfig::default()
        },
    )
    .unwrap();
    client.refresh_view().await;
    for (key, value) in &keys {
        let read = client.read(key, None).await.expect("the read succeeds");
        assert_eq!(
            read.map(|r| r.value).as_deref(),
            Some(value.as_str()),
            "{key}"
        );
    }
    stdin.write_all(b"quit\n").await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the PuppetMaster quit")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_run_waits_for_a_leaving_storage_node_before_it_stops_the_others() {
    // decommission.txt ends right after `removeStorage s4`: the run waits until s4
    // has handed its records off and exited by itself, then stops the three
    // others. The second removal is refused by the cluster while s4 leaves (one
    // change at a time) — or, should s4 already be gone, below the replication
    // factor.
    let (_dir, script) = prepare("decommission.txt");
    let run = batch(&script, &[]).await;
    let errors: Vec<&Value> = run
        .of("error")
        .into_iter()
        .filter(|e| !e["line"].is_null())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}\n{}", run.stderr);
    assert_eq!(errors[0]["line"], 13);
    let message = errors[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("cannot remove storage node s3: ")
            && (message.contains("another membership change is in progress")
                || message.contains("fewer than the replication factor 3")),
        "{message}"
    );
    assert!(!run.success, "the refused line makes the batch fail");
    let nodes = run.of("node");
    let s4: Vec<&str> = nodes
        .iter()
        .filter(|e| e["node"] == "s4")
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(s4, ["started", "leaving", "removed"], "{nodes:?}");
    let removed_at = nodes
        .iter()
        .position(|e| e["node"] == "s4" && e["state"] == "removed")
        .unwrap();
    assert_eq!(nodes[removed_at]["exit"], "exited with status 0");
    let stopped: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, e)| e["state"] == "stopped")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(stopped.len(), 3, "{nodes:?}");
    assert!(
        stopped.iter().all(|&i| i > removed_at),
        "the others are stopped after s4 left: {nodes:?}"
    );
    assert_all_gone(&run.pids()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_storage_grows_a_running_cluster_and_the_new_node_takes_its_share() {
    // Three storage nodes (factor 3, two acks) hold 40 keys; then, at the console:
    // four bad `addStorage` lines, each one error and nothing started; `addStorage
    // s4`: started once the cluster admitted it (epoch 1), `joined` once active
    // (epoch 2). `status` shows it alive and active, the dashboard lists it with a
    // colour of its own (the others keep theirs), `listGlobal` — polled until the
    // old replicas have handed off — shows every key on exactly three nodes, and
    // every key reads back through a client of the four. s4 then survives a crash
    // and a restart like any storage node, and leaves with `removeStorage`; last,
    // the cluster itself refuses an id it used. Every wait is on an event or
    // polled with a deadline.
    use dida_core::Membership;
    use dida_storage_client::{ClientConfig, StorageClient};
    use tokio::io::AsyncWriteExt;

    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(7).unwrap();
    let (ports, s4, s5, s9, dashboard) = (&ports[..3], ports[3], ports[4], ports[5], ports[6]);
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    let keys: Vec<(String, String)> = (0..40)
        .map(|n| (format!("key-{n}"), format!("value-{n}")))
        .collect();
    let data: String = keys.iter().map(|(k, v)| format!("{k},{v}\n")).collect();
    std::fs::write(dir.path().join("data.txt"), data).unwrap();
    let setup: String = ports
        .iter()
        .enumerate()
        .map(|(i, &port)| format!("storage s{} {} 0\n", i + 1, url(port)))
        .collect();
    let script = dir.path().join("grow.txt");
    std::fs::write(&script, format!("{setup}populate data.txt\n")).unwrap();
    let mut child = Command::new(dida())
        .arg("pm")
        .arg(&script)
        .args([
            "--json",
            "--write-acks",
            "2",
            "--debug-listen",
            "127.0.0.1:0",
        ])
        .args(["--dashboard", &format!("127.0.0.1:{dashboard}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut started = 0;
    while started < 3 {
        let event = next_event(&mut lines, deadline).await;
        assert_ne!(event["event"], "error", "{event}");
        if event["event"] == "node" && event["state"] == "started" {
            started += 1;
        }
    }

    // Refused before anything is asked, each in so many words.
    let bad = [
        (
            format!("addStorage s1 {} 0", url(s9)),
            "node id \"s1\" is already used by the storage declared on line 1",
        ),
        (
            format!("addStorage s9 {} 0", url(ports[1])),
            "is already the address of s2 (line 2)",
        ),
        (
            format!("addStorage s9 127.0.0.1:{s9} 0"),
            "must start with http://",
        ),
        (
            format!("addStorage s9 {}", url(s9)),
            "usage: addStorage <id> <url> <gossip_delay>",
        ),
    ];
    for (line, expected) in &bad {
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        let event = next_event(&mut lines, deadline).await;
        assert_eq!(event["event"], "error", "{line}: {event}");
        assert_eq!(event["command"], "addStorage", "{event}");
        let message = event["message"].as_str().unwrap();
        assert!(message.contains(expected), "{line}: {message}");
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", s9)).is_err(),
        "nothing serves at s9's address"
    );

    // The dashboard's storage nodes, by id: (state, colour).
    let http = dida_bench::http_client::HttpClient::new(Duration::from_secs(5));
    let snapshot_url = format!("http://127.0.0.1:{dashboard}/api/snapshot");
    let shown = |snapshot: &Value| -> BTreeMap<String, (String, String)> {
        snapshot["snapshot"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["role"] == "storage")
            .map(|n| {
                let field = |k: &str| n[k].as_str().unwrap_or_default().to_string();
                (field("id"), (field("state"), field("colour")))
            })
            .collect()
    };
    let before = support::eventually(
        Duration::from_secs(30),
        "three alive storage nodes",
        || async {
            let snapshot = http.get(&snapshot_url).await.ok()?.json().ok()?;
            let nodes = shown(&snapshot);
            (nodes.len() == 3 && nodes.values().all(|(state, _)| state == "alive")).then_some(nodes)
        },
    )
    .await;

    stdin
        .write_all(format!("addStorage s4 {} 0\n", url(s4)).as_bytes())
        .await
        .unwrap();
    let mut s4_events = Vec::new();
    while s4_events.len() < 2 {
        let event = next_event(&mut lines, deadline).await;
        assert_ne!(event["event"], "error", "{event}");
        if event["event"] == "node" {
            assert_eq!(event["node"], "s4", "only s4 starts: {event}");
            s4_events.push(event);
        }
    }
    assert_eq!(s4_events[0]["state"], "started", "{s4_events:?}");
    assert_eq!(s4_events[1]["state"], "joined", "{s4_events:?}");
    assert_eq!(
        s4_events[1]["epoch"], 2,
        "admitted at epoch 1, active at 2: {s4_events:?}"
    );

    stdin.write_all(b"status\n").await.unwrap();
    let mut rows = BTreeMap::new();
    while rows.len() < 4 {
        let event = next_event(&mut lines, deadline).await;
        if event["event"] == "status" {
            rows.insert(event["node"].as_str().unwrap().to_string(), event);
        }
    }
    for id in ["s1", "s2", "s3", "s4"] {
        assert_eq!(rows[id]["state"], "alive", "{}", rows[id]);
        assert_eq!(rows[id]["details"]["standing"], "active", "{}", rows[id]);
        assert_eq!(rows[id]["details"]["config_epoch"], 2, "{}", rows[id]);
    }
    assert_eq!(rows["s4"]["details"]["write_acks"], 2, "{}", rows["s4"]);
    assert_eq!(rows["s4"]["details"]["replication_factor"], 3);

    let after = support::eventually(
        Duration::from_secs(30),
        "s4 alive on the dashboard",
        || async {
            let snapshot: Value = http.get(&snapshot_url).await.ok()?.json().ok()?;
            let nodes = shown(&snapshot);
            (nodes.get("s4")?.0 == "alive").then_some(nodes)
        },
    )
    .await;
    for id in ["s1", "s2", "s3"] {
        assert_eq!(after[id].1, before[id].1, "{id} keeps its colour");
    }
    let s4_colour = &after["s4"].1;
    assert!(!s4_colour.is_empty(), "{after:?}");
    assert!(
        before.values().all(|(_, colour)| colour != s4_colour),
        "s4 has a colour of its own: {after:?}"
    );

    // `listGlobal`, until the old replicas have handed off what s4 took over:
    // every key on exactly three nodes, with its value. A line the session
    // refuses marks the end of each listing.
    let servers = loop {
        stdin
            .write_all(b"listGlobal\nlistServer end-of-listing\n")
            .await
            .unwrap();
        let mut servers: BTreeMap<String, HashSet<String>> = BTreeMap::new();
        loop {
            let event = next_event(&mut lines, deadline).await;
            if event["event"] == "error" {
                let message = event["message"].as_str().unwrap();
                assert!(message.contains("end-of-listing"), "{event}");
                break;
            }
            assert_eq!(event["event"], "record", "{event}");
            let key = event["key"].as_str().unwrap();
            let value = keys.iter().find(|(k, _)| k == key).map(|(_, v)| v);
            assert_eq!(event["value"].as_str(), value.map(String::as_str));
            servers
                .entry(key.to_string())
                .or_default()
                .insert(event["server"].as_str().unwrap().to_string());
        }
        if servers.len() == keys.len() && servers.values().all(|s| s.len() == 3) {
            break servers;
        }
        assert!(
            Instant::now() < deadline,
            "keys not on exactly three nodes: {servers:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let on_s4 = servers.values().filter(|s| s.contains("s4")).count();
    assert!(on_s4 > 0, "s4 took its share: {servers:?}");

    // Every key reads back through a client of the four, in the configuration's
    // order.
    let members: Vec<String> = ports
        .iter()
        .chain([&s4])
        .enumerate()
        .map(|(i, &port)| format!("s{}={}", i + 1, url(port)))
        .collect();
    let client = StorageClient::new(
        Membership::parse(&members.join(",")).unwrap(),
        ClientConfig {
            replication_factor: 3,
            ..ClientConfig::default()
        },
    )
    .unwrap();
    for (key, value) in &keys {
        let read = client.read(key, None).await.expect("the read succeeds");
        assert_eq!(
            read.map(|r| r.value).as_deref(),
            Some(value.as_str()),
            "{key}"
        );
    }

    // A node added is a storage node like the others: crashed, restarted (it
    // asks to join again and is told the configuration that lists it), removed.
    stdin.write_all(b"crash s4\nrestart s4\n").await.unwrap();
    let mut states = Vec::new();
    let restarted = loop {
        let event = next_event(&mut lines, deadline).await;
        assert_ne!(event["event"], "error", "{event}");
        if event["event"] == "node" {
            states.push(event["state"].as_str().unwrap().to_string());
        }
        if event["event"] == "status" {
            break event;
        }
    };
    assert_eq!(states, ["crashed", "restarted"]);
    assert_eq!(restarted["node"], "s4", "{restarted}");
    assert_eq!(restarted["state"], "alive", "{restarted}");
    assert_eq!(restarted["details"]["restarts"], 1, "{restarted}");

    stdin.write_all(b"removeStorage s4\n").await.unwrap();
    let mut left = Vec::new();
    while left.len() < 2 {
        let event = next_event(&mut lines, deadline).await;
        assert_ne!(event["event"], "error", "{event}");
        if event["event"] == "node" && event["node"] == "s4" {
            left.push(event);
        }
    }
    assert_eq!(left[0]["state"], "leaving", "{left:?}");
    assert_eq!(left[0]["epoch"], 3, "{left:?}");
    assert_eq!(left[1]["state"], "removed", "{left:?}");
    assert_eq!(left[1]["exit"], "exited with status 0", "{left:?}");

    // The cluster's own refusal: a node the session does not know joins by
    // itself as s5, so `addStorage s5` (at another address) is refused in the
    // cluster's words; its process exited and the session does not keep it.
    let _outside = Command::new(dida())
        .args(["storage", "--id", "s5", "--url", &url(s5)])
        .args(["--join", &url(ports[0]), "--write-acks", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let seeds = Membership::parse(&members[..3].join(",")).unwrap();
    support::eventually(
        Duration::from_secs(30),
        "s5 active in the cluster",
        || async {
            let reply = dida_storage_client::cluster::members(&seeds, None, Duration::from_secs(2))
                .await
                .ok()?;
            let view = dida_storage_client::cluster::MembersView::of(&reply).ok()?;
            (view.standing("s5") == Some(dida_core::Standing::Active)).then_some(())
        },
    )
    .await;
    stdin
        .write_all(format!("addStorage s5 {} 0\nstatus\n", url(s9)).as_bytes())
        .await
        .unwrap();
    let refused = next_event(&mut lines, deadline).await;
    assert_eq!(refused["event"], "error", "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.starts_with("cannot add storage node s5: ")
            && message.contains("node id \"s5\" is already used in cluster"),
        "{message}"
    );
    let mut rows = Vec::new();
    while rows.len() < 4 {
        let event = next_event(&mut lines, deadline).await;
        assert_eq!(event["event"], "status", "nothing else: {event}");
        rows.push(event["node"].as_str().unwrap().to_string());
    }
    assert_eq!(rows, ["s1", "s2", "s3", "s4"], "s5 is not kept");
    assert!(std::net::TcpStream::connect(("127.0.0.1", s9)).is_err());

    stdin.write_all(b"quit\n").await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the PuppetMaster quit")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grow_script_adds_two_storage_nodes_and_removes_one() {
    let (_dir, script) = prepare("grow.txt");
    let run = batch(&script, &[]).await;
    assert!(run.success, "{:?}\n{}", run.of("error"), run.stderr);
    let states = |id: &str| -> Vec<(String, Option<u64>)> {
        run.of("node")
            .into_iter()
            .filter(|e| e["node"] == id)
            .map(|e| {
                (
                    e["state"].as_str().unwrap().to_string(),
                    e["epoch"].as_u64(),
                )
            })
            .collect()
    };
    let stopped = ("stopped".to_string(), None);
    // Each change is one epoch: s4 admitted (1) and active (2), s5 (3, 4), s1
    // leaving (5) and removed (6).
    assert_eq!(
        states("s4"),
        [
            ("started".into(), None),
            ("joined".into(), Some(2)),
            stopped.clone()
        ]
    );
    assert_eq!(
        states("s5"),
        [
            ("started".into(), None),
            ("joined".into(), Some(4)),
            stopped.clone()
        ]
    );
    assert_eq!(
        states("s1"),
        [
            ("started".into(), None),
            ("leaving".into(), Some(5)),
            ("removed".into(), Some(6))
        ]
    );
    for id in ["s4", "s5"] {
        let row = run
            .of("status")
            .into_iter()
            .find(|s| s["node"] == id)
            .unwrap();
        assert_eq!(row["state"], "alive", "{row}");
        assert_eq!(row["details"]["standing"], "active", "{row}");
    }
    let clients = run.clients();
    assert_eq!(clients.len(), 3);
    for (input, event) in &clients {
        assert_eq!(event["status"], "ok", "{input}: {event}");
        assert_eq!(event["outputs"], serde_json::json!(["1", "2"]), "{input}");
    }
    // The data written before the growth is still there.
    assert_eq!(run.newest("23").as_deref(), Some("11"));
    assert_all_gone(&run.pids()).await;
}
