//! A hostile client against the deploy path (issue 23), on real processes on
//! loopback: a component built to be expensive to compile, writes to dida's own
//! `_dida/…` keys, and deploys over a built-in operator. None of them may cost the
//! scheduler more than the documented bounds or change what the cluster runs.

use std::time::{Duration, Instant};

mod support;
use support::live::{stderr, stdout, LiveCluster as Cluster};

/// Unsigned LEB128, the integer encoding of the WebAssembly binary format.
fn leb(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A section: its id, its size, its bytes.
fn section(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![id];
    out.extend(leb(payload.len()));
    out.extend(payload);
    out
}

/// A vector: its length, then its items.
fn vector(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = leb(items.len());
    items.iter().for_each(|item| out.extend(item));
    out
}

/// A component that is small and valid but expensive to compile: one core module of
/// `functions` functions, each with `locals` `i32` locals and `ifs` `if`/`else`
/// blocks that each set a different local. Compiling it is quadratic in a function's
/// size (every local is live across every block): one such function of 2000 locals
/// and 200 KB took a compiler 16 s and 950 MB.
fn compile_bomb(functions: usize, locals: usize, ifs: usize) -> Vec<u8> {
    let mut body = vector(&[[leb(locals), vec![0x7f]].concat()]);
    for i in 0..ifs {
        body.push(0x20); // local.get
        body.extend(leb(i % locals));
        body.extend([0x04, 0x40, 0x41, 0x01, 0x21]); // if; i32.const 1; local.set
        body.extend(leb(i * 31 % locals));
        body.extend([0x05, 0x41, 0x02, 0x21]); // else; i32.const 2; local.set
        body.extend(leb((i * 17 + 3) % locals));
        body.push(0x0b); // end
    }
    body.push(0x0b);
    let body = [leb(body.len()), body].concat();
    let types = section(1, &vector(&[vec![0x60, 0, 0]])); // () -> ()
    let funcs = section(3, &vector(&vec![leb(0); functions]));
    let code = section(10, &vector(&vec![body; functions]));
    let module = [b"\0asm\x01\0\0\0".to_vec(), types, funcs, code].concat();
    // A component (layer 1) holding the module as its only section.
    [b"\0asm\x0d\0\x01\0".to_vec(), section(1, &module)].concat()
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

/// What the scheduler may grow by while refusing compile bombs.
const RSS_BOUND_KIB: u64 = 300 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_bomb_is_refused_within_the_budget() {
    let cluster = Cluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    // 16 functions of ~200 KB: a compiler without a budget needs gigabytes.
    let bomb = dir.path().join("Bomb.wasm");
    std::fs::write(&bomb, compile_bomb(16, 2000, 25_000)).unwrap();
    let echo = dir.path().join("Hello.wasm");
    let builtin = dida_operators::find_builtin("EchoOperator").expect("a built-in");
    std::fs::write(&echo, builtin.wasm).unwrap();

    // A first, legitimate deploy: the scheduler has made its validation runtime.
    let deployed = cluster.dida(&["operator", "deploy", echo.to_str().unwrap()]);
    assert!(deployed.status.success(), "{}", stderr(&deployed));
    let pid = cluster.scheduler_pid();
    let before = rss_kib(pid);

    for attempt in 0..3 {
        let started = Instant::now();
        let refused = cluster.dida(&["operator", "deploy", bomb.to_str().unwrap()]);
        let took = started.elapsed();
        assert!(!refused.status.success(), "the bomb was deployed");
        let message = stderr(&refused);
        assert!(
            message.contains("went over the budget of untrusted compilation"),
            "attempt {attempt}: {message}"
        );
        // The budget of a 3.2 MB component is 27 s of wall time (15 s, and 3 s per
        // MiB); a loaded test machine gets slack.
        assert!(took < Duration::from_secs(60), "refused after {took:?}");
        let grown = rss_kib(pid).saturating_sub(before);
        eprintln!(
            "attempt {attempt}: refused after {took:?}, scheduler grew {grown} KiB: {message}"
        );
        assert!(
            grown <= RSS_BOUND_KIB,
            "the scheduler grew by {grown} KiB, over the bound of {RSS_BOUND_KIB} KiB"
        );
    }

    // An obvious bomb is refused from its structure, before anything compiles it.
    let obvious = dir.path().join("Obvious.wasm");
    std::fs::write(&obvious, compile_bomb(1, 20_000, 25_000)).unwrap();
    let refused = cluster.dida(&["operator", "deploy", obvious.to_str().unwrap()]);
    assert!(!refused.status.success(), "the obvious bomb was deployed");
    assert!(
        stderr(&refused).contains("locals times bytes may be at most"),
        "{}",
        stderr(&refused)
    );

    // Nothing was stored, and a legitimate deploy still works.
    let list = cluster.dida(&["operator", "list"]);
    assert!(!stdout(&list).contains("Bomb"), "{}", stdout(&list));
    let deployed = cluster.dida(&["operator", "deploy", echo.to_str().unwrap()]);
    assert!(deployed.status.success(), "{}", stderr(&deployed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_keys_and_built_in_operators_cannot_be_changed_by_clients() {
    let mut cluster = Cluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let kv = |args: &[&str]| {
        let mut all = vec!["kv", "--peers", cluster.storage.peers()];
        all.extend(args);
        cluster.dida(&all)
    };
    for args in [
        &["write", "_dida/operators", "x"][..],
        &["write", "_dida/apps", "{}"],
        &["write", "_dida/blob/0/0", "x"],
        &["cas", "_dida/operators", "", "x"],
    ] {
        let refused = kv(args);
        assert!(!refused.status.success(), "{args:?} was accepted");
        let message = stderr(&refused);
        assert!(
            message.contains("is reserved") && message.contains("only the scheduler"),
            "{args:?}: {message}"
        );
    }
    // Other keys, and reading reserved ones, are untouched.
    let written = kv(&["write", "user/_dida/operators", "fine"]);
    assert!(written.status.success(), "{}", stderr(&written));

    // Deploys still work: the index was never overwritten.
    let hello = dir.path().join("Hello.wasm");
    let echo = dida_operators::find_builtin("EchoOperator").expect("a built-in");
    std::fs::write(&hello, echo.wasm).unwrap();
    let deployed = cluster.dida(&["operator", "deploy", hello.to_str().unwrap()]);
    assert!(deployed.status.success(), "{}", stderr(&deployed));
    let index = kv(&["read", "_dida/operators"]);
    assert!(
        index.status.success(),
        "reading stays open: {}",
        stderr(&index)
    );
    let list = cluster.dida(&["operator", "list"]);
    assert!(stdout(&list).contains("Hello"), "{}", stdout(&list));

    // A built-in's name can be neither deployed over nor removed.
    for args in [
        &[
            "operator",
            "deploy",
            "--name",
            "EchoOperator",
            hello.to_str().unwrap(),
        ][..],
        &["operator", "remove", "EchoOperator"],
    ] {
        let refused = cluster.dida(args);
        assert!(!refused.status.success(), "{args:?} was accepted");
        assert!(
            stderr(&refused).contains("EchoOperator is a built-in operator"),
            "{args:?}: {}",
            stderr(&refused)
        );
    }

    // The deployed operator runs on a worker that compiles it (in its own budgeted
    // child), and the built-in is still the built-in.
    cluster.start_workers().await;
    let app = dir.path().join("app.txt");
    std::fs::write(&app, "operator Hello 0\noperator EchoOperator 1\n").unwrap();
    let run = cluster.dida(&["run", "--input", "hi", app.to_str().unwrap()]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(stdout(&run).contains("[1] hi"), "{}", stdout(&run));
}

/// Kills the process when dropped, so a failing test leaves nothing running.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_cluster_token_only_the_scheduler_changes_reserved_keys() {
    use dida_local_cluster::{free_ports, ClusterSpec, LocalCluster};
    use dida_proto::reserved::RESERVED_WRITER_HEADER;
    use dida_proto::storage::storage_client::StorageClient;
    use dida_proto::storage::WriteRequest;
    use dida_proto::transport::lazy_channel_with_headers;

    const TOKEN: (&str, &str) = ("DIDA_CLUSTER_TOKEN", "deploy-s3cret");
    let storage = LocalCluster::start(
        support::dida(),
        ClusterSpec {
            nodes: 3,
            replication_factor: 3,
            env: vec![(TOKEN.0.into(), TOKEN.1.into())],
            ..ClusterSpec::default()
        },
    )
    .await
    .unwrap();
    let ports = free_ports(2).unwrap();
    let scheduler_url = format!("http://127.0.0.1:{}", ports[0]);
    let _scheduler = Killed(
        std::process::Command::new(support::dida())
            .env("RUST_LOG", "warn")
            .env(TOKEN.0, TOKEN.1)
            .args(["scheduler", "--url", &scheduler_url])
            .args(["--workers", &format!("w1=http://127.0.0.1:{}", ports[1])])
            .args(["--storage", storage.peers(), "--replication-factor", "3"])
            .spawn()
            .unwrap(),
    );
    let dida = |args: &[&str]| {
        std::process::Command::new(support::dida())
            .env(TOKEN.0, TOKEN.1)
            .env("DIDA_SCHEDULER", &scheduler_url)
            .args(args)
            .output()
            .unwrap()
    };

    // The scheduler deploys (its calls carry the token and say they are its own).
    let dir = tempfile::tempdir().unwrap();
    let hello = dir.path().join("Hello.wasm");
    let echo = dida_operators::find_builtin("EchoOperator").expect("a built-in");
    std::fs::write(&hello, echo.wasm).unwrap();
    let deployed = support::eventually(Duration::from_secs(30), "a deploy", || async {
        let deployed = dida(&["operator", "deploy", hello.to_str().unwrap()]);
        deployed.status.success().then_some(deployed)
    })
    .await;
    assert!(
        stdout(&deployed).contains("deployed Hello"),
        "{}",
        stdout(&deployed)
    );

    // A client holding the token is still not the scheduler.
    let refused = dida(&[
        "kv",
        "--peers",
        storage.peers(),
        "write",
        "_dida/operators",
        "x",
    ]);
    assert!(!refused.status.success(), "a client overwrote the index");
    assert!(
        stderr(&refused).contains("this call is not the scheduler's"),
        "{}",
        stderr(&refused)
    );

    // A forged call claiming to be the scheduler, without the token, is refused.
    let s1 = storage.membership().get("s1").unwrap().url.to_string();
    let channel = lazy_channel_with_headers(
        &s1,
        Duration::from_secs(5),
        Duration::from_secs(5),
        &[(RESERVED_WRITER_HEADER, "scheduler")],
    )
    .unwrap();
    let forged = StorageClient::new(channel)
        .write(WriteRequest {
            key: "_dida/operators".into(),
            value: "{}".into(),
            ..WriteRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(forged.code(), tonic::Code::PermissionDenied, "{forged:?}");
    assert!(
        forged
            .message()
            .contains("does not carry the cluster token"),
        "{}",
        forged.message()
    );
    let list = dida(&["operator", "list"]);
    assert!(stdout(&list).contains("Hello"), "{}", stdout(&list));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_application_registrations_are_refused_and_change_nothing() {
    use dida_proto::registry::applications_client::ApplicationsClient;
    use dida_proto::registry::{ListAppsRequest, RegisterAppRequest};
    use tonic::Code;

    let mut cluster = Cluster::start(1).await;
    cluster.start_workers().await;
    let channel =
        dida_proto::transport::lazy_channel(&cluster.scheduler_url, Duration::from_secs(30))
            .unwrap();
    let mut client = ApplicationsClient::new(channel);
    let echo = || vec!["EchoOperator".to_string()];
    let forged = [
        (
            "",
            echo(),
            Code::InvalidArgument,
            "invalid application name",
        ),
        (
            "../etc",
            echo(),
            Code::InvalidArgument,
            "invalid application name",
        ),
        (
            ".hidden",
            echo(),
            Code::InvalidArgument,
            "invalid application name",
        ),
        (
            &"a".repeat(129),
            echo(),
            Code::InvalidArgument,
            "invalid application name",
        ),
        ("empty", vec![], Code::InvalidArgument, "no operator"),
        (
            "long",
            vec!["EchoOperator".to_string(); dida_core::limits::MAX_CHAIN_OPERATORS + 1],
            Code::InvalidArgument,
            "the limit is",
        ),
        (
            "bad",
            vec!["not-a-class".to_string()],
            Code::InvalidArgument,
            "not-a-class",
        ),
        (
            "unknown",
            vec!["NoSuchOperator".to_string()],
            Code::NotFound,
            "NoSuchOperator",
        ),
        // 8 MiB of names: over the message limit, refused before it is decoded.
        ("huge", vec!["A".repeat(100); 80_000], Code::OutOfRange, ""),
    ];
    for (name, operators, code, message) in forged {
        let shown = &name[..name.len().min(12)];
        let Err(refused) = client
            .register(RegisterAppRequest {
                name: name.to_string(),
                operators,
            })
            .await
        else {
            panic!("the forged registration {shown:?} was accepted");
        };
        assert!(
            refused.code() == code
                || (message.is_empty() && refused.code() == Code::ResourceExhausted),
            "{shown}: {refused:?}"
        );
        assert!(refused.message().contains(message), "{shown}: {refused:?}");
    }
    let listed = client.list(ListAppsRequest {}).await.unwrap().into_inner();
    assert!(listed.apps.is_empty(), "{listed:?}");

    // A real registration still works, and the scheduler still serves.
    client
        .register(RegisterAppRequest {
            name: "echo".into(),
            operators: echo(),
        })
        .await
        .unwrap();
    let run = cluster.dida(&["run", "echo", "--input", "hi"]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(stdout(&run).contains("[0] hi"), "{}", stdout(&run));
}
