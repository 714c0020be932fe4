//! `dida pcs` as a real process: it starts only dida roles with valid flags, refuses
//! requests without its token, crashes nodes with SIGKILL, and leaves no process
//! behind, even when it is itself killed.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use dida_local_cluster::free_ports;
use dida_pcs::PcsClient;
use dida_proto::control::{Flag, StartNodeRequest};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use support::prom::{scrape, total};

const TOKEN: &str = "test-token-1234";

fn dida() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_dida"))
}

/// Starts `dida pcs` on a free loopback port with [`TOKEN`]; returns it and its URL
/// once it answers.
async fn start_pcs() -> (Child, String) {
    start_pcs_with(&[]).await
}

/// [`start_pcs`] with further flags.
async fn start_pcs_with(flags: &[&str]) -> (Child, String) {
    let port = free_ports(1).unwrap()[0];
    let child = Command::new(dida())
        .args(["pcs", "--listen", &format!("127.0.0.1:{port}")])
        .args(flags)
        .env("DIDA_PCS_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let client = PcsClient::new(&url, Some(TOKEN)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.ping().await.is_err() {
        assert!(Instant::now() < deadline, "the PCS did not answer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (child, url)
}

fn storage_request(id: &str, port: u16) -> StartNodeRequest {
    let url = format!("http://127.0.0.1:{port}");
    StartNodeRequest {
        role: "storage".into(),
        node_id: id.into(),
        url: url.clone(),
        flags: vec![Flag {
            name: "peers".into(),
            value: format!("{id}={url}"),
        }],
        log_level: "warn".into(),
    }
}

fn answers(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
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

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcs_refuses_requests_without_its_token_and_anything_but_a_dida_role() {
    let (_pcs, url) = start_pcs().await;
    let port = free_ports(1).unwrap()[0];

    let anonymous = PcsClient::new(&url, None).unwrap();
    let refused = anonymous.ping().await.unwrap_err().to_string();
    assert!(refused.contains("requires a token"), "{refused}");
    let refused = anonymous
        .start_node(storage_request("s1", port))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("requires a token"), "{refused}");
    let wrong = PcsClient::new(&url, Some("guess")).unwrap();
    assert!(wrong.list_nodes().await.is_err());

    let pcs = PcsClient::new(&url, Some(TOKEN)).unwrap();
    for role in ["sh", "/bin/sh", "kv", "pcs", "puppetmaster"] {
        let mut request = storage_request("x1", port);
        request.role = role.into();
        let refused = pcs.start_node(request).await.unwrap_err().to_string();
        assert!(refused.contains("only dida roles"), "{role}: {refused}");
    }
    let mut request = storage_request("x1", port);
    request.flags.push(Flag {
        name: "exec".into(),
        value: "/bin/sh".into(),
    });
    let refused = pcs.start_node(request).await.unwrap_err().to_string();
    assert!(refused.contains("not a flag the PCS passes"), "{refused}");
    assert!(
        pcs.list_nodes().await.unwrap().is_empty(),
        "nothing started"
    );
    assert!(!answers(port));
}

/// `dida_pcs_nodes` counts the node processes by role and state as they start and
/// crash (parsed as Prometheus text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcs_metrics_count_its_nodes_by_role_and_state() {
    let ports = free_ports(2).unwrap();
    let metrics = format!("127.0.0.1:{}", ports[1]);
    let (_pcs, url) = start_pcs_with(&["--metrics-listen", &metrics]).await;
    let pcs = PcsClient::new(&url, Some(TOKEN)).unwrap();
    let http = dida_bench::http_client::HttpClient::new(Duration::from_secs(5));
    let metrics: std::net::SocketAddr = metrics.parse().unwrap();
    let nodes = |state: &'static str| {
        let http = &http;
        async move {
            let scrape = scrape(http, metrics).await;
            assert!(
                scrape
                    .samples
                    .iter()
                    .filter(|s| s.metric == "dida_pcs_nodes")
                    .all(|s| matches!(s.value, prometheus_parse::Value::Gauge(_))),
                "dida_pcs_nodes is a gauge"
            );
            total(&scrape, "dida_pcs_nodes", |labels| {
                labels.get("role") == Some("storage") && labels.get("state") == Some(state)
            })
        }
    };
    assert_eq!(nodes("running").await, 0.0);
    pcs.start_node(storage_request("s1", ports[0]))
        .await
        .unwrap();
    assert_eq!(nodes("running").await, 1.0);
    pcs.kill_node("s1").await.unwrap();
    assert_eq!(nodes("running").await, 0.0);
    assert_eq!(nodes("exited").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcs_starts_crashes_and_cleans_up_nodes() {
    let (mut pcs_process, url) = start_pcs().await;
    let pcs = PcsClient::new(&url, Some(TOKEN)).unwrap();
    let mut output = pcs.output().await.unwrap();
    let ports = free_ports(2).unwrap();

    let pid = pcs
        .start_node(storage_request("s1", ports[0]))
        .await
        .unwrap();
    assert!(answers(ports[0]), "StartNode answers once the node listens");
    assert!(alive(pid));

    // The same id twice, and a port already taken, are clear errors.
    let twice = pcs
        .start_node(storage_request("s1", ports[1]))
        .await
        .unwrap_err()
        .to_string();
    assert!(twice.contains("already running"), "{twice}");
    let in_use = pcs
        .start_node(storage_request("s2", ports[0]))
        .await
        .unwrap_err()
        .to_string();
    assert!(in_use.contains("already in use"), "{in_use}");

    // crash: SIGKILL, the port stops answering, the node is reported dead.
    assert_eq!(pcs.kill_node("s1").await.unwrap(), pid);
    assert!(!answers(ports[0]));
    assert!(!alive(pid));
    let listed = pcs.list_nodes().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].running);
    assert!(listed[0].exit.contains("SIGKILL"), "{:?}", listed[0]);
    let again = pcs.kill_node("s1").await.unwrap_err().to_string();
    assert!(again.contains("not running"), "{again}");
    let unknown = pcs.kill_node("nope").await.unwrap_err().to_string();
    assert!(unknown.contains("not started by this PCS"), "{unknown}");

    // The PCS relays what happens to its nodes, prefixed with the node id.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let line = tokio::time::timeout_at(deadline, output.message())
            .await
            .expect("the PCS relayed the crash")
            .unwrap()
            .unwrap();
        if line.node_id == "s1" && line.line.contains("killed") {
            break;
        }
    }

    // A node still running when the PCS is SIGKILLed dies with it.
    let pid = pcs
        .start_node(storage_request("s2", ports[1]))
        .await
        .unwrap();
    assert!(alive(pid));
    pcs_process.kill().await.unwrap();
    eventually("the orphaned node is gone", || !alive(pid)).await;
    eventually("its port is closed", || !answers(ports[1])).await;
}

/// The command line of live process `pid`, from `/proc/PID/cmdline`.
fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcs_restarts_a_node_with_exactly_its_original_command_line() {
    let (_pcs, url) = start_pcs().await;
    let pcs = PcsClient::new(&url, Some(TOKEN)).unwrap();
    let port = free_ports(1).unwrap()[0];
    let mut request = storage_request("s1", port);
    request.flags.push(Flag {
        name: "gossip-delay".into(),
        value: "150".into(),
    });
    let first = pcs.start_node(request).await.unwrap();
    let original = cmdline(first);
    assert!(
        original.contains(&"--gossip-delay=150".to_string()),
        "{original:?}"
    );

    // Running: SIGKILLed first, then started again with the same argv.
    let reply = pcs.restart_node("s1").await.unwrap();
    assert_eq!(reply.killed_pid, first);
    assert_ne!(reply.pid, first);
    assert!(!alive(first), "the old process was killed");
    assert!(answers(port), "RestartNode answers once the node listens");
    assert_eq!(cmdline(reply.pid), original);

    // Crashed: started again, nothing to kill.
    let second = reply.pid;
    pcs.kill_node("s1").await.unwrap();
    assert!(!answers(port));
    let reply = pcs.restart_node("s1").await.unwrap();
    assert_eq!(reply.killed_pid, 0);
    assert!(!alive(second));
    assert!(answers(port));
    assert_eq!(cmdline(reply.pid), original);
    let listed = pcs.list_nodes().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].running);
    assert_eq!(listed[0].pid, reply.pid);

    let unknown = pcs.restart_node("s9").await.unwrap_err().to_string();
    assert!(
        unknown.contains("s9 was not started by this PCS"),
        "{unknown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_through_an_unreachable_pcs_fails_in_time() {
    let port = free_ports(1).unwrap()[0];
    let pcs = PcsClient::new(&format!("http://127.0.0.1:{port}"), Some(TOKEN)).unwrap();
    let started = Instant::now();
    let error = pcs.restart_node("s1").await.unwrap_err().to_string();
    assert!(started.elapsed() < dida_pcs::client::PCS_DEADLINE);
    assert!(
        error.contains(&format!("PCS http://127.0.0.1:{port}: cannot restart s1")),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcs_stops_a_node_gracefully_and_kills_it_only_after_its_grace() {
    let (_pcs, url) = start_pcs().await;
    let pcs = PcsClient::new(&url, Some(TOKEN)).unwrap();
    let ports = free_ports(2).unwrap();

    // A node stopped with SIGTERM shuts down by itself, well within its grace.
    let pid = pcs
        .start_node(storage_request("s1", ports[0]))
        .await
        .unwrap();
    let started = Instant::now();
    let reply = pcs.stop_node("s1", Duration::from_secs(10)).await.unwrap();
    assert_eq!(reply.pid, pid);
    assert!(!reply.forced, "{reply:?}");
    assert_eq!(reply.exit, "exited with status 0");
    assert!(started.elapsed() < Duration::from_secs(5), "{reply:?}");
    assert!(!alive(pid));
    assert!(!answers(ports[0]));
    let again = pcs
        .stop_node("s1", Duration::from_secs(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(again.contains("not running"), "{again}");
    let no_grace = pcs
        .stop_node("s1", Duration::ZERO)
        .await
        .unwrap_err()
        .to_string();
    assert!(no_grace.contains("grace_ms must be from 1"), "{no_grace}");

    // A node that cannot act on SIGTERM (here: paused with SIGSTOP) is SIGKILLed
    // once its grace period is over, and the reply says so.
    let pid = pcs
        .start_node(storage_request("s2", ports[1]))
        .await
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let started = Instant::now();
    let reply = pcs
        .stop_node("s2", Duration::from_millis(300))
        .await
        .unwrap();
    assert!(reply.forced, "{reply:?}");
    assert!(reply.exit.contains("SIGKILL"), "{reply:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(!alive(pid));
}
