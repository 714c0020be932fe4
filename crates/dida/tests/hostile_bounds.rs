//! Hostile clients against what every node exposes besides its gRPC API — metric
//! labels, the HTTP gateway, the dashboard and the PuppetMaster's console — and
//! against the per-source connection limit, replayed on real processes on
//! loopback. Each case was once unbounded growth, an outage or a way into the
//! machine; each test asserts the bound or the refusal.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use dida_bench::http_client::{HttpClient, StatusCode};
use dida_local_cluster::{free_ports, ClusterSpec, ComputeSpec, LocalCluster};
use dida_proto::connections::ConnectionLimits;
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::SubmitRequest;
use dida_proto::storage::{PingReply, PingRequest};
use dida_proto::transport::lazy_channel;
use http_body_util::{BodyExt, Full};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::Command;

mod support;
use support::prom::{any, total};
use support::{dida, eventually, one_storage_node, one_storage_node_and};

/// Resident memory of a process, in bytes (from `/proc`).
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status");
    kib * 1024
}

/// Raises this process's soft descriptor limit to its hard limit (the nodes it
/// starts inherit it) and returns it.
fn raise_descriptor_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    hard
}

/// `/metrics` at `addr`, as text.
async fn metrics_text(addr: SocketAddr) -> String {
    let http = HttpClient::new(Duration::from_secs(10));
    let reply = http.get(&format!("http://{addr}/metrics")).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The distinct values of label `label` among the samples of `metric`.
fn label_values(scrape: &prometheus_parse::Scrape, metric: &str, label: &str) -> Vec<String> {
    let mut values: Vec<String> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter_map(|s| s.labels.get(label).map(str::to_string))
        .collect();
    values.sort();
    values.dedup();
    values
}

/// Calls `path` (a method no server defines) on the node at `url`.
async fn call_unknown(channel: tonic::transport::Channel, path: String) -> tonic::Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    if let Err(error) = grpc.ready().await {
        panic!("the node's channel is not ready: {error}");
    }
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(path).unwrap();
    let reply: Result<tonic::Response<PingReply>, tonic::Status> = grpc
        .unary(
            tonic::Request::new(PingRequest {}),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await;
    match reply {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

/// 3,000 calls to distinct made-up gRPC paths (each 200 bytes long) leave a storage
/// node's memory and its `/metrics` bounded: they are all counted as `other`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_grpc_paths_leave_a_nodes_metrics_bounded() {
    const CALLS: usize = 3_000;
    let cluster = LocalCluster::start(
        dida(),
        ClusterSpec {
            nodes: 1,
            replication_factor: 1,
            metrics: true,
            ..ClusterSpec::default()
        },
    )
    .await
    .unwrap();
    let metrics = cluster.metrics_addr("s1").unwrap();
    let pid = cluster.pid("s1").unwrap();
    let url = cluster.membership().get("s1").unwrap().url.to_string();
    let channel = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    let made_up = |i: usize| format!("/hostile.v1.Service{i:06}/{}", "M".repeat(170));
    // Warm up the paths every call takes, so the growth measured is per path.
    for i in 0..100 {
        call_unknown(channel.clone(), made_up(CALLS + i)).await;
    }
    let before = rss_bytes(pid);
    let started = Instant::now();
    for batch in (0..CALLS).collect::<Vec<_>>().chunks(100) {
        let codes = futures::future::join_all(
            batch
                .iter()
                .map(|&i| call_unknown(channel.clone(), made_up(i))),
        )
        .await;
        assert!(
            codes.iter().all(|c| *c == tonic::Code::Unimplemented),
            "{codes:?}"
        );
    }
    let grew = rss_bytes(pid).saturating_sub(before);
    let text = metrics_text(metrics).await;
    let scrape = parse(&text);
    let methods = label_values(&scrape, "dida_rpc_server_calls_total", "method");
    eprintln!(
        "{CALLS} unknown paths in {:?}: s1 grew {} KiB over {} MiB; /metrics is {} bytes; \
         method labels: {methods:?}",
        started.elapsed(),
        grew >> 10,
        before >> 20,
        text.len()
    );
    assert!(
        grew <= 30 << 20,
        "{CALLS} unknown paths grew s1 by {} MiB (bound: 30 MiB)",
        grew >> 20
    );
    assert!(text.len() < 1 << 20, "/metrics is {} bytes", text.len());
    assert!(
        methods
            .iter()
            .all(|m| m == "other" || m.starts_with("/dida.") || m.starts_with("/grpc.health.")),
        "{methods:?}"
    );
    let others = total(&scrape, "dida_rpc_server_calls_total", |l| {
        l.get("method") == Some("other")
    });
    assert!(others >= CALLS as f64, "{others} calls counted as other");
}

/// 1,000 executions submitted under distinct application names (of 120 bytes,
/// and every tenth of 1 KiB) leave the scheduler's `/metrics` under 1 MB, with at
/// most 64 application labels besides `other`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_chosen_application_names_leave_the_schedulers_metrics_bounded() {
    const EXECUTIONS: usize = 1_000;
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_ports(1).unwrap()[0])
        .parse()
        .unwrap();
    let cluster = one_storage_node_and(ComputeSpec {
        workers: 1,
        scheduler_args: vec!["--metrics-listen".into(), metrics.to_string()],
        ..ComputeSpec::default()
    })
    .await;
    let scheduler = SchedulerClient::new(
        lazy_channel(cluster.scheduler_url().unwrap(), Duration::from_secs(30)).unwrap(),
    );
    for batch in (0..EXECUTIONS).collect::<Vec<_>>().chunks(50) {
        let submitted = futures::future::join_all(batch.iter().map(|i| {
            let mut scheduler = scheduler.clone();
            async move {
                scheduler
                    .submit(SubmitRequest {
                        app: format!(
                            "app-{i:06}-{}",
                            "x".repeat(if i % 10 == 0 { 1024 } else { 109 })
                        ),
                        operators: vec!["EchoOperator".into()],
                        input: String::new(),
                    })
                    .await
            }
        }))
        .await;
        for reply in submitted {
            reply.expect("the scheduler accepts the execution");
        }
    }
    let text = eventually(
        Duration::from_secs(120),
        "every execution to end",
        || async {
            let text = metrics_text(metrics).await;
            let ended = total(
                &parse(&text),
                "dida_scheduler_executions_finished_total",
                any,
            );
            (ended >= EXECUTIONS as f64).then_some(text)
        },
    )
    .await;
    let scrape = parse(&text);
    let apps = label_values(&scrape, "dida_scheduler_executions_submitted_total", "app");
    eprintln!(
        "{EXECUTIONS} application names: /metrics is {} bytes, {} app labels",
        text.len(),
        apps.len()
    );
    assert!(text.len() < 1 << 20, "/metrics is {} bytes", text.len());
    assert_eq!(apps.len(), 65, "64 names and `other`: {apps:?}");
    assert!(apps.iter().any(|a| a == "other"), "{apps:?}");
    assert!(
        apps.iter().all(|a| a.len() <= 128),
        "a long name became a label"
    );
}

/// Opens up to `count` TCP connections to `target` from 127.0.0.1 and keeps them,
/// sending nothing; returns them (those the server closed at once included).
async fn idle_connections(target: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        match TcpStream::connect(target).await {
            Ok(stream) => held.push(stream),
            Err(error) => panic!("connection {} to {target} failed: {error}", held.len() + 1),
        }
    }
    held
}

/// Whether the server still holds `stream` open (no EOF or reset read yet).
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.try_read(&mut byte) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
        Err(_) => false,
    }
}

/// Descriptors a process holds open (from `/proc`).
fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// As many idle connections as this process may open (20,000 where the hard limit
/// allows) to the HTTP gateway: it holds a bounded number, closes idle ones after
/// its header timeout, and both `dida run` and an HTTP invocation succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_idle_connections_leave_the_gateway_serving() {
    let descriptors = raise_descriptor_limit();
    let gateway: SocketAddr = format!("127.0.0.1:{}", free_ports(1).unwrap()[0])
        .parse()
        .unwrap();
    let cluster = one_storage_node_and(ComputeSpec {
        workers: 1,
        scheduler_args: vec!["--http-listen".into(), gateway.to_string()],
        ..ComputeSpec::default()
    })
    .await;
    let scheduler_pid = cluster.pids()[1];
    let http = HttpClient::new(Duration::from_secs(30));
    let invoke_url = format!("http://{gateway}/v1/invoke");
    let body = serde_json::json!({"operators": ["EchoOperator"], "input": "hi"});
    eventually(Duration::from_secs(30), "the gateway to answer", || async {
        let reply = http.post_json(&invoke_url, &body).await.ok()?;
        (reply.status == StatusCode::OK).then_some(())
    })
    .await;

    let flood_size = 20_000.min(descriptors as usize - 200);
    if flood_size < 20_000 {
        eprintln!(
            "the descriptor hard limit is {descriptors}: opening {flood_size} connections, \
             not 20,000"
        );
    }
    let started = Instant::now();
    let flood = idle_connections(gateway, flood_size).await;
    let held = flood.iter().filter(|s| still_open(s)).count();
    let descriptors_held = open_descriptors(scheduler_pid);
    eprintln!(
        "{flood_size} idle connections opened in {:?}; {held} still open; the scheduler \
         holds {descriptors_held} descriptors",
        started.elapsed()
    );
    assert!(
        descriptors_held < 4096,
        "the scheduler holds {descriptors_held} descriptors"
    );

    // The gRPC port serves meanwhile: `dida run` succeeds.
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.txt");
    std::fs::write(&app, "operator EchoOperator 0\n").unwrap();
    let run = Command::new(dida())
        .args(["run", "--scheduler", cluster.scheduler_url().unwrap()])
        .args(["--input", "during-flood"])
        .arg(&app)
        .stdin(Stdio::null())
        .output();
    let run = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("`dida run` finished within 30 s")
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // The idle connections the gateway held are closed after its header timeout,
    // so an HTTP invocation on a new connection gets in, the flood still open on
    // the client's side.
    let fresh = HttpClient::new(Duration::from_secs(30));
    let invoked = Instant::now();
    let attempts = std::sync::Mutex::new(Vec::new());
    eventually(
        Duration::from_secs(120),
        "an HTTP invocation on a new connection to succeed",
        || async {
            let tried = Instant::now();
            let reply = fresh.post_json(&invoke_url, &body).await;
            let outcome = match &reply {
                Ok(reply) => reply.status.to_string(),
                Err(error) => error.to_string(),
            };
            attempts.lock().unwrap().push((tried.elapsed(), outcome));
            (reply.ok()?.status == StatusCode::OK).then_some(())
        },
    )
    .await;
    let attempts = attempts.into_inner().unwrap();
    eprintln!(
        "an HTTP invocation on a new connection succeeded {:?} after the flood, at \
         attempt {}; the last attempts: {:?}",
        invoked.elapsed(),
        attempts.len(),
        &attempts[attempts.len().saturating_sub(3)..]
    );
    eventually(
        Duration::from_secs(60),
        "the gateway to close every idle connection",
        || async { (!flood.iter().any(still_open)).then_some(()) },
    )
    .await;
    eprintln!(
        "every idle connection closed {:?} after the flood began",
        started.elapsed()
    );
    drop(flood);
}

/// A client trickling its headers a line a second is cut off after the header
/// timeout (10 s), and one that sends a body's first byte and stops gets 408 after
/// the body timeout (30 s): neither holds a connection for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_request_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    let gateway: SocketAddr = format!("127.0.0.1:{}", free_ports(1).unwrap()[0])
        .parse()
        .unwrap();
    let _cluster = one_storage_node_and(ComputeSpec {
        workers: 1,
        scheduler_args: vec!["--http-listen".into(), gateway.to_string()],
        ..ComputeSpec::default()
    })
    .await;
    eventually(Duration::from_secs(30), "the gateway to listen", || async {
        TcpStream::connect(gateway).await.ok()
    })
    .await;

    let headers = tokio::spawn(async move {
        let started = Instant::now();
        let mut stream = TcpStream::connect(gateway).await.unwrap();
        stream
            .write_all(b"POST /v1/invoke HTTP/1.1\r\n")
            .await
            .unwrap();
        for i in 0..60 {
            let header = format!("x-slow-{i}: 1\r\n");
            if stream.write_all(header.as_bytes()).await.is_err() {
                break;
            }
            let mut byte = [0u8; 1];
            // Anything read (EOF, a reset, an answer) ends the wait; a timeout
            // means the server is still waiting for the headers.
            let read = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut byte));
            if read.await.is_ok() {
                break;
            }
        }
        started.elapsed()
    });
    let body = tokio::spawn(async move {
        let started = Instant::now();
        let mut stream = TcpStream::connect(gateway).await.unwrap();
        stream
            .write_all(
                b"POST /v1/invoke HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                  content-length: 100\r\n\r\n{",
            )
            .await
            .unwrap();
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut reply)).await;
        (
            started.elapsed(),
            String::from_utf8_lossy(&reply).into_owned(),
        )
    });
    let cut_after = headers.await.unwrap();
    let (answered_after, reply) = body.await.unwrap();
    eprintln!("trickled headers cut off after {cut_after:?}; a stalled body answered after {answered_after:?}: {reply:?}");
    assert!(
        cut_after < Duration::from_secs(20),
        "trickled headers held the connection {cut_after:?}"
    );
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(
        answered_after < Duration::from_secs(45),
        "a stalled body held the connection {answered_after:?}"
    );
}

/// Connections from 127.0.0.2 to 127.0.0.9 count as one source: together they get
/// no more than one address's share of a node's connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_loopback_address_counts_as_one_source() {
    raise_descriptor_limit();
    let cluster = one_storage_node().await;
    // The node inherited this process's descriptor limit, so it computes the same.
    let limits = ConnectionLimits::for_this_process();
    let url = &cluster.membership().get("s1").unwrap().url;
    let target: SocketAddr = format!("{}:{}", url.host, url.port).parse().unwrap();
    let mut flood = Vec::new();
    for i in 0..limits.per_address + 400 {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(([127, 0, 0, 2 + (i % 8) as u8], 0).into())
            .unwrap();
        if let Ok(stream) = socket.connect(target).await {
            flood.push(stream);
        }
    }
    let open = eventually(Duration::from_secs(30), "the excess to be closed", || {
        let open = flood.iter().filter(|s| still_open(s)).count();
        async move { (open <= limits.per_address).then_some(open) }
    })
    .await;
    eprintln!(
        "{} connections from 127.0.0.2-9: {open} held (a source's share: {})",
        flood.len(),
        limits.per_address
    );
    assert!(open + 300 < flood.len(), "the excess was not refused");
}

/// A plain HTTP/1.1 request with the headers given (a forged `Host`, an `Origin`),
/// as a browser tricked by another site would send it; returns the status and
/// body.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut builder = hyper::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    if !body.is_empty() {
        builder = builder.header("content-type", "application/json");
    }
    let reply = sender
        .send_request(
            builder
                .body(Full::new(hyper::body::Bytes::from(body.to_string())))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = reply.status().as_u16();
    let body = reply.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Runs `dida <args>` and returns its exit success and stderr, within 30 s.
async fn dida_fails_with(args: &[&str]) -> String {
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(dida())
            .args(args)
            .env_remove("DIDA_CLUSTER_TOKEN")
            .env_remove("DIDA_TLS_DIR")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("dida exited within 30 s")
    .unwrap();
    assert!(!output.status.success(), "dida {args:?} started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `dida dashboard` and every `--metrics-listen` refuse an address other machines
/// can reach without `--insecure`, as the gateway and the nodes' own ports do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_refuses_an_open_address_without_insecure() {
    let ports = free_ports(3).unwrap();
    let error = dida_fails_with(&[
        "dashboard",
        "--listen",
        &format!("0.0.0.0:{}", ports[0]),
        "--storage",
        "s1=http://127.0.0.1:1",
    ])
    .await;
    assert!(
        error.contains("refusing to serve the dashboard") && error.contains("--insecure"),
        "{error}"
    );
    let error = dida_fails_with(&[
        "storage",
        "--id",
        "s1",
        "--url",
        &format!("http://127.0.0.1:{}", ports[1]),
        "--peers",
        &format!("s1=http://127.0.0.1:{}", ports[1]),
        "--metrics-listen",
        &format!("0.0.0.0:{}", ports[2]),
    ])
    .await;
    assert!(
        error.contains("--metrics-listen") && error.contains("--insecure"),
        "{error}"
    );
}

/// Requests to a dashboard that name another host (DNS rebinding) or come from
/// another site's page are refused; its own page's requests are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_refuses_other_hosts_and_origins() {
    let port = free_ports(1).unwrap()[0];
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut dashboard = Command::new(dida())
        .args(["dashboard", "--listen", &addr.to_string()])
        .args(["--storage", "s1=http://127.0.0.1:1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let own = addr.to_string();
    let localhost = format!("localhost:{port}");
    eventually(
        Duration::from_secs(30),
        "the dashboard to answer",
        || async { TcpStream::connect(addr).await.ok() },
    )
    .await;
    let records = "/api/records?key=k";
    let (status, body) = request(addr, "GET", records, &[("host", "evil.example")], "").await;
    assert_eq!(status, 421, "{body}");
    assert!(body.contains("answers requests addressed to"), "{body}");
    let rebound = format!("rebind.example:{port}");
    let (status, _) = request(addr, "GET", records, &[("host", &rebound)], "").await;
    assert_eq!(status, 421);
    let (status, body) = request(
        addr,
        "GET",
        records,
        &[("host", &own), ("origin", "http://evil.example")],
        "",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    for host in [own.as_str(), localhost.as_str()] {
        let origin = format!("http://{host}");
        let (status, body) = request(
            addr,
            "GET",
            "/api/snapshot",
            &[("host", host), ("origin", &origin)],
            "",
        )
        .await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    dashboard.start_kill().unwrap();
}

/// The PuppetMaster's console refuses lines from other sites' pages, and lines from
/// its own page that would read a file outside the script's folder or show a
/// file's content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_puppetmasters_console_refuses_other_origins_and_file_reads() {
    let ports = free_ports(2).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("one.txt");
    std::fs::write(
        &script,
        format!("storage s1 http://127.0.0.1:{} 0\n", ports[0]),
    )
    .unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "top-secret-first-line\n").unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", ports[1]).parse().unwrap();
    let mut pm = Command::new(dida())
        .arg("pm")
        .arg(&script)
        .args(["--dashboard", &addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Everything the PuppetMaster prints (errors on stderr), drained as it comes:
    // a full pipe would stop it.
    let (mut stdout, mut stderr) = (pm.stdout.take().unwrap(), pm.stderr.take().unwrap());
    let printed = tokio::spawn(async move {
        let (mut out, mut err) = (String::new(), String::new());
        let _ = tokio::join!(
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err)
        );
        out + &err
    });
    let own = addr.to_string();
    let origin = format!("http://{own}");
    let line = |text: &str| serde_json::json!({ "line": text }).to_string();
    eventually(
        Duration::from_secs(60),
        "the dashboard to listen",
        || async { TcpStream::connect(addr).await.ok() },
    )
    .await;
    eventually(
        Duration::from_secs(60),
        "the console to run a line",
        || async {
            let headers = [("host", own.as_str()), ("origin", origin.as_str())];
            let (status, _) = request(addr, "POST", "/api/script", &headers, &line("status")).await;
            (status == 200).then_some(())
        },
    )
    .await;

    let (status, body) = request(
        addr,
        "POST",
        "/api/script",
        &[("host", &own), ("origin", "http://evil.example")],
        &line("crash s1"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = request(
        addr,
        "POST",
        "/api/script",
        &[("host", "evil.example:80")],
        &line("crash s1"),
    )
    .await;
    assert_eq!(status, 421);

    // Inside the script's folder, but not an application or data file: refused
    // without its content; outside it: refused before anything is read.
    for (text, why) in [
        (
            "client x secret.txt",
            "not a readable, valid application file",
        ),
        ("populate secret.txt", "not a readable, valid data file"),
        (
            "client x /etc/passwd",
            "only name files inside the script's folder",
        ),
        (
            "populate ../../../../../../etc/passwd",
            "only name files inside",
        ),
    ] {
        let headers = [("host", own.as_str()), ("origin", origin.as_str())];
        let (status, body) = request(addr, "POST", "/api/script", &headers, &line(text)).await;
        assert_eq!(status, 422, "{text}: {body}");
        assert!(body.contains(why), "{text}: {body}");
        assert!(
            !body.contains("top-secret") && !body.contains("root:"),
            "{body}"
        );
    }
    pm.start_kill().unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), printed)
        .await
        .expect("the PuppetMaster's output ended")
        .unwrap();
    assert!(out.contains("not a readable, valid"), "{out}");
    assert!(
        !out.contains("top-secret") && !out.contains("root:"),
        "a file was echoed: {out}"
    );
}
