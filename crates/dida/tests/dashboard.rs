//! The PuppetMaster's web dashboard in a real browser: headless Chromium, driven
//! through chromedriver (WebDriver), opens the dashboard of a cluster of real
//! processes and checks what a person would see — every node and its state, a
//! storage node shown failed within 10 s of a `crash` typed into the page, an
//! execution submitted meanwhile with its operators and their workers, the debug
//! stream, and a key's versions on every replica. It saves screenshots (the ones in
//! docs/img come from this test).
//!
//! Chromium and chromedriver are installed by `scripts/ensure-chromium.sh`, which
//! `scripts/test.sh` runs first; without them this test fails and says so.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use dida_local_cluster::free_ports;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use support::{copy_example_files, dida, eventually};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "chromedriver";

/// How long the cluster gets to come up and the page to show it.
const STARTUP: Duration = Duration::from_secs(60);

/// The bound: a crashed storage node is shown failed within this.
const SHOWN_FAILED_WITHIN: Duration = Duration::from_secs(10);

/// Where the screenshots go: `DIDA_SCREENSHOTS` if set, else cargo's scratch
/// folder for tests.
fn screenshot_dir() -> PathBuf {
    std::env::var_os("DIDA_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard"))
}

/// A child process killed when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// Copies the example apps and data and writes a script that starts a cluster on
/// free ports, in debug mode, and runs one client.
fn prepare() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    copy_example_files(dir.path());
    let ports = free_ports(7).unwrap();
    let url = |i: usize| format!("http://127.0.0.1:{}", ports[i]);
    let script = format!(
        "debug\n\
         storage s1 {} 0\nstorage s2 {} 0\nstorage s3 {} 0\nstorage s4 {} 0\n\
         worker w1 {} 0\nworker w2 {} 0\n\
         scheduler sched {}\n\
         populate data/course.txt\n\
         client 23 apps/add-update.txt\n\
         await\n",
        url(0),
        url(1),
        url(2),
        url(3),
        url(4),
        url(5),
        url(6)
    );
    let path = dir.path().join("dashboard.txt");
    std::fs::write(&path, script).unwrap();
    (dir, path)
}

/// Starts the PuppetMaster with its dashboard on `port`; its stdin stays open (the
/// console waits on it), its output is drained into the test's log.
fn start_puppetmaster(script: &Path, port: u16) -> Reaped {
    let mut child = Command::new(dida())
        .arg("pm")
        .arg(script)
        .args(["--dashboard", &format!("127.0.0.1:{port}")])
        .args(["--debug-listen", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    tokio::spawn(async move {
        let mut lines = BufReader::new(out).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            println!("pm| {line}");
        }
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(err).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            println!("pm! {line}");
        }
    });
    Reaped(child)
}

/// Starts chromedriver on a free port and returns it once it answers.
async fn start_chromedriver() -> (Reaped, u16) {
    let port = free_ports(1).unwrap()[0];
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {CHROMEDRIVER} ({e}): install Chromium and its driver with \
                 scripts/ensure-chromium.sh (scripts/test.sh does)"
            )
        });
    eventually(
        Duration::from_secs(20),
        "chromedriver to listen",
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
        },
    )
    .await;
    (Reaped(child), port)
}

/// A headless Chromium session with a fresh profile.
async fn browser(driver_port: u16, profile: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1400,1900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a Chromium session through chromedriver")
}

/// What the page shows, read from its DOM: `[id, role, state]` of every node row.
async fn nodes_shown(page: &Client) -> Vec<(String, String, String)> {
    let rows = page
        .execute(
            "return Array.from(document.querySelectorAll('#nodes tbody tr'))\
             .map(r => [r.dataset.node, r.dataset.role, r.dataset.state]);",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(rows).unwrap_or_default()
}

/// The executions the page shows: id, status and `operator@worker` of each run.
async fn executions_shown(page: &Client) -> Vec<(String, String, Vec<(String, String)>)> {
    let rows = page
        .execute(
            "return Array.from(document.querySelectorAll('#executions tbody tr')).map(r => \
             [r.dataset.execution, r.dataset.status, Array.from(r.querySelectorAll('.run'))\
             .map(s => [s.dataset.operator, s.dataset.worker])]);",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(rows).unwrap_or_default()
}

/// The pid of the one process of this machine whose command line holds both `role`
/// and `flag` (a node the PuppetMaster started through its PCS).
fn pid_of(role: &str, flag: &str) -> nix::unistd::Pid {
    let pids: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter(|pid: &i32| {
            let line = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = line.split(|b| *b == 0).collect();
            args.contains(&role.as_bytes()) && args.contains(&flag.as_bytes())
        })
        .collect();
    assert_eq!(pids.len(), 1, "one process runs {role} {flag}: {pids:?}");
    nix::unistd::Pid::from_raw(pids[0])
}

/// The ring legend's colour of each storage node: `[id, CSS colour]`.
async fn ring_colours(page: &Client) -> Vec<(String, String)> {
    let entries = page
        .execute(
            "return Array.from(document.querySelectorAll('#ring-legend span'))\
             .map(s => [s.dataset.node, s.querySelector('i').style.background]);",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(entries).unwrap_or_default()
}

async fn text_of(page: &Client, selector: &str) -> String {
    page.find(Locator::Css(selector))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn screenshot(page: &Client, name: &str) {
    let png = page.screenshot().await.unwrap();
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

/// Types `line` into the page's console and presses Run, as a person would.
async fn type_script_line(page: &Client, line: &str) {
    let input = page.find(Locator::Css("#script-line")).await.unwrap();
    input.send_keys(line).await.unwrap();
    page.find(Locator::Css("#script-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_cluster_a_crash_and_executions_in_a_real_browser() {
    let (dir, script) = prepare();
    let dashboard_port = free_ports(1).unwrap()[0];
    let mut pm = start_puppetmaster(&script, dashboard_port);
    let (_driver, driver_port) = start_chromedriver().await;
    let profile = tempfile::tempdir().unwrap();
    let page = browser(driver_port, profile.path()).await;
    let home = format!("http://127.0.0.1:{dashboard_port}/");
    eventually(STARTUP, "the dashboard to serve", || async {
        page.goto(&home).await.ok()
    })
    .await;

    // Every node, alive, once the setup block has started them.
    let expected = [
        ("s1", "storage"),
        ("s2", "storage"),
        ("s3", "storage"),
        ("s4", "storage"),
        ("sched", "scheduler"),
        ("w1", "worker"),
        ("w2", "worker"),
    ];
    eventually(STARTUP, "every node shown alive", || async {
        let shown = nodes_shown(&page).await;
        let all = expected.iter().all(|(id, role)| {
            shown
                .iter()
                .any(|(i, r, s)| i == id && r == role && s == "alive")
        });
        (all && shown.len() == expected.len()).then_some(())
    })
    .await;
    // The script's client ran, with both operators on workers.
    let first = eventually(STARTUP, "the script's execution", || async {
        executions_shown(&page)
            .await
            .into_iter()
            .find(|(_, status, runs)| status == "succeeded" && runs.len() == 2)
    })
    .await;
    assert!(first
        .2
        .iter()
        .all(|(op, w)| !op.is_empty() && w.starts_with('w')));
    let ring_note = text_of(&page, "#ring-note").await;
    assert_eq!(ring_note, "every storage node is in the ring");
    let colours_before = ring_colours(&page).await;
    let distinct: std::collections::BTreeSet<&String> =
        colours_before.iter().map(|(_, c)| c).collect();
    assert_eq!(
        distinct.len(),
        4,
        "a colour per storage node: {colours_before:?}"
    );
    screenshot(&page, "dashboard-cluster.png").await;

    // A script line typed into the page runs: crash s2. The page shows it failed.
    type_script_line(&page, "crash s2").await;
    let crashed_at = Instant::now();
    eventually(SHOWN_FAILED_WITHIN, "s2 shown failed", || async {
        nodes_shown(&page)
            .await
            .iter()
            .any(|(id, _, state)| id == "s2" && state == "failed")
            .then_some(())
    })
    .await;
    let shown_failed_after = crashed_at.elapsed();
    println!("s2 shown failed {shown_failed_after:?} after the crash line was typed");
    let others = nodes_shown(&page).await;
    assert!(
        others
            .iter()
            .filter(|(id, _, _)| id != "s2")
            .all(|(_, _, state)| state == "alive"),
        "only s2 failed: {others:?}"
    );
    // Every node keeps its colour on the ring while s2 is out of it, and after a
    // reload of the page.
    eventually(STARTUP, "s2 out of the ring", || async {
        text_of(&page, "#ring-note")
            .await
            .contains("s2")
            .then_some(())
    })
    .await;
    assert_eq!(ring_colours(&page).await, colours_before);
    page.refresh().await.unwrap();
    let reloaded = eventually(STARTUP, "the ring legend after a reload", || async {
        let colours = ring_colours(&page).await;
        (colours.len() == 4).then_some(colours)
    })
    .await;
    assert_eq!(reloaded, colours_before);

    // Another line typed meanwhile: a client. Its execution appears, with its two
    // IncrementOperators and the workers that ran them.
    type_script_line(&page, "client 7 apps/increment.txt").await;
    let second = eventually(STARTUP, "the typed client's execution", || async {
        executions_shown(&page)
            .await
            .into_iter()
            .find(|(id, status, runs)| {
                *id != first.0
                    && status == "succeeded"
                    && runs.len() == 2
                    && runs
                        .iter()
                        .all(|(op, w)| op == "IncrementOperator" && w.starts_with('w'))
            })
    })
    .await;
    println!("typed client ran as {}: {:?}", second.0, second.2);
    // The console shows what the line printed; the debug stream, the workers'
    // reports of the new execution.
    eventually(STARTUP, "the console to show the typed lines", || async {
        let console = text_of(&page, "#console").await;
        (console.contains("» crash s2") && console.contains("» client 7 apps/increment.txt"))
            .then_some(())
    })
    .await;
    let selector = format!("#debug tbody tr[data-execution='{}']", second.0);
    eventually(STARTUP, "the debug reports of the typed client", || async {
        let rows = page.find_all(Locator::Css(&selector)).await.ok()?;
        (rows.len() == 2).then_some(())
    })
    .await;
    screenshot(&page, "dashboard-crash.png").await;

    // The records browser: a key of the data file, on every replica.
    page.find(Locator::Css("#records-key"))
        .await
        .unwrap()
        .send_keys("13")
        .await
        .unwrap();
    page.find(Locator::Css("#records-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let holders: Value = eventually(STARTUP, "the key's versions", || async {
        let rows = page
            .execute(
                "return Array.from(document.querySelectorAll('#records-table tbody tr'))\
                 .map(r => [r.dataset.node, r.cells[1].textContent, r.cells[2].textContent]);",
                vec![],
            )
            .await
            .ok()?;
        (rows.as_array()?.len() == 4).then_some(rows)
    })
    .await;
    let replicas_holding: Vec<&Value> = holders
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row[1] != "" && row[2].as_str().unwrap().contains("= 1"))
        .collect();
    assert!(
        replicas_holding.len() >= 2,
        "the key's live replicas show its value: {holders}"
    );
    screenshot(&page, "dashboard-records.png").await;

    // A worker added from the page's console joins, alive; asked to leave, it goes,
    // and the page says it left when asked (not that it failed).
    let port = free_ports(1).unwrap()[0];
    type_script_line(&page, &format!("addWorker w9 http://127.0.0.1:{port} 0")).await;
    eventually(STARTUP, "w9 shown alive", || async {
        nodes_shown(&page)
            .await
            .into_iter()
            .find(|(id, role, state)| id == "w9" && role == "worker" && state == "alive")
    })
    .await;
    type_script_line(&page, "removeWorker w9").await;
    let row = eventually(STARTUP, "w9 shown gone, its process ended", || async {
        let rows = page
            .execute(
                "return Array.from(document.querySelectorAll('#nodes tbody tr'))\
                 .filter(r => r.dataset.node === 'w9')\
                 .map(r => [r.dataset.state, r.dataset.process]);",
                vec![],
            )
            .await
            .ok()?;
        let rows: Vec<(String, String)> = serde_json::from_value(rows).ok()?;
        rows.into_iter().find(|(state, process)| {
            state == "gone" && (process == "stopped" || process.starts_with("left: "))
        })
    })
    .await;
    assert!(
        row.1 == "stopped" || row.1 == "left: exited with status 0",
        "it drained and exited by itself: {row:?}"
    );

    // A worker killed outside the console (as by the OOM killer): the page shows its
    // process exited, as its PCS says, not `running` as the PuppetMaster left it.
    let w2 = pid_of("worker", "--id=w2");
    nix::sys::signal::kill(w2, nix::sys::signal::Signal::SIGKILL).unwrap();
    let row = eventually(STARTUP, "w2's process shown exited", || async {
        let rows = page
            .execute(
                "return Array.from(document.querySelectorAll('#nodes tbody tr'))\
                 .filter(r => r.dataset.node === 'w2')\
                 .map(r => [r.dataset.state, r.dataset.process]);",
                vec![],
            )
            .await
            .ok()?;
        let rows: Vec<(String, String)> = serde_json::from_value(rows).ok()?;
        rows.into_iter()
            .find(|(_, process)| process.starts_with("exited"))
    })
    .await;
    assert_eq!(row.0, "failed", "{row:?}");
    assert!(
        row.1.contains("SIGKILL"),
        "the PCS's word on how it ended: {row:?}"
    );

    page.close().await.unwrap();
    // Ctrl-C: the PuppetMaster stops every node it started, and exits cleanly.
    let pid = nix::unistd::Pid::from_raw(pm.0.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), pm.0.wait())
        .await
        .expect("the PuppetMaster stopped after Ctrl-C")
        .unwrap();
    assert!(status.success(), "{status:?}");
    drop(dir);
}

/// `dida dashboard` beside a running cluster (no PuppetMaster): its JSON shows the
/// storage nodes, the scheduler and the workers it learned from the scheduler, a
/// SIGKILLed storage node goes failed, the records browser finds a key's versions
/// on its replicas, and the console is refused with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_dashboard_follows_a_running_cluster() {
    use dida_bench::http_client::{HttpClient, StatusCode};
    use dida_local_cluster::{ClusterSpec, ComputeSpec, LocalCluster};

    let mut cluster = LocalCluster::start(
        dida(),
        ClusterSpec {
            nodes: 3,
            ..ClusterSpec::default()
        },
    )
    .await
    .unwrap();
    cluster
        .start_compute(
            dida(),
            ComputeSpec {
                workers: 2,
                ..ComputeSpec::default()
            },
        )
        .await
        .unwrap();
    let client = cluster.client().unwrap();
    client.write("dash-key", "v1").await.unwrap();
    client.write("dash-key", "v2").await.unwrap();
    let port = free_ports(1).unwrap()[0];
    let _dashboard = Reaped(
        Command::new(dida())
            .args(["dashboard", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--storage", cluster.peers()])
            .args(["--scheduler", cluster.scheduler_url().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap(),
    );
    let http = HttpClient::new(Duration::from_secs(5));
    let base = format!("http://127.0.0.1:{port}");
    let states = |snapshot: &Value| -> Vec<(String, String, String)> {
        snapshot["snapshot"]["nodes"]
            .as_array()
            .map(|nodes| {
                nodes
                    .iter()
                    .map(|n| {
                        let field = |k: &str| n[k].as_str().unwrap_or_default().to_string();
                        (field("id"), field("role"), field("state"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let snapshot = eventually(STARTUP, "every node alive in the snapshot", || async {
        let reply = http.get(&format!("{base}/api/snapshot")).await.ok()?;
        let snapshot = reply.json().ok()?;
        let shown = states(&snapshot);
        let storage = shown
            .iter()
            .filter(|(_, r, s)| r == "storage" && s == "alive");
        let workers = shown
            .iter()
            .filter(|(_, r, s)| r == "worker" && s == "alive");
        let scheduler = shown
            .iter()
            .filter(|(_, r, s)| r == "scheduler" && s == "alive");
        (storage.count() == 3 && workers.count() >= 1 && scheduler.count() == 1).then_some(snapshot)
    })
    .await;
    let ring = &snapshot["snapshot"]["ring"];
    assert_eq!(ring["excluded"], json!([]));
    assert!(!ring["ranges"].as_array().unwrap().is_empty());

    // The key's versions on every replica (three nodes, replication factor 3).
    let reply = http
        .get(&format!("{base}/api/records?key=dash-key"))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let view = reply.json().unwrap();
    assert!(
        view["newest"].as_str().unwrap().starts_with("2."),
        "the second write is the newest version: {view}"
    );
    for holder in view["nodes"].as_array().unwrap() {
        assert_eq!(holder["replica"], true, "{view}");
        let values: Vec<&str> = holder["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["value"].as_str().unwrap())
            .collect();
        assert_eq!(values, ["v2", "v1"], "newest first: {view}");
    }

    // A SIGKILLed node is shown failed once its peers declare it.
    let victim = cluster.ids().last().unwrap();
    cluster.kill(&victim).await.unwrap();
    eventually(
        SHOWN_FAILED_WITHIN,
        "the killed node shown failed",
        || async {
            let snapshot = http
                .get(&format!("{base}/api/snapshot"))
                .await
                .ok()?
                .json()
                .ok()?;
            states(&snapshot)
                .iter()
                .any(|(id, _, state)| *id == victim && state == "failed")
                .then_some(())
        },
    )
    .await;

    // No PuppetMaster, no console: refused, saying why.
    let reply = http
        .post_json(&format!("{base}/api/script"), &json!({ "line": "status" }))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(reply.body.contains("dida pm --dashboard"), "{}", reply.body);
}
