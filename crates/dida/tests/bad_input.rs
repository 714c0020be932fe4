//! Bad input from users and hostile clients, against real processes (issue 12): each
//! gets a clear error, quickly, and leaves the nodes serving.
//!
//! - `dida kv`: a data file with a UTF-8 BOM, invalid UTF-8, binary content and
//!   `/dev/zero`; a compare-and-swap that does not swap exits with status 3;
//! - flags out of range (`--vnodes`, `--replication-factor`, deadlines) are refused
//!   before a node starts;
//! - the scheduler refuses an oversized input at submit; a chain whose request grows
//!   past the per-hop limit fails at once (not after the 300 s execution timeout);
//!   an operator file that is a FIFO fails its execution fast, and the worker goes on.
//!
//! Nothing here sleeps and hopes: every wait is a call that answers, bounded by a
//! deadline far below the timeouts it proves are not reached.

use std::process::Output;
use std::time::{Duration, Instant};

use dida_core::limits::{MAX_CHAIN_REQUEST_BYTES, MAX_INPUT_BYTES};
use dida_local_cluster::{ClusterSpec, ComputeSpec, LocalCluster};
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::{ExecutionOutcome, RunRequest, SubmitRequest};
use dida_proto::transport::NodeChannel;
use dida_proto::transport::{lazy_channel, MAX_MESSAGE_BYTES};
use tonic::Code;

mod support;
use support::{dida, stderr, stdout};

async fn run_dida(args: &[&str]) -> Output {
    let command = tokio::process::Command::new(dida()).args(args).output();
    // A refusal is immediate; the bound only turns a hang into a failure.
    tokio::time::timeout(Duration::from_secs(60), command)
        .await
        .unwrap_or_else(|_| panic!("dida {args:?} did not exit within 60 s"))
        .expect("run dida")
}

async fn kv(cluster: &LocalCluster, args: &[&str]) -> Output {
    let mut all = vec!["kv", "--peers", cluster.peers()];
    all.extend_from_slice(args);
    run_dida(&all).await
}

fn small_cluster() -> ClusterSpec {
    ClusterSpec {
        nodes: 3,
        ..ClusterSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_files_are_read_strictly_and_a_failed_cas_exits_with_3() {
    let cluster = LocalCluster::start(dida(), small_cluster()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    };

    // A BOM (as Windows editors write) is not part of the first key.
    let bom = path("bom.txt", b"\xEF\xBB\xBF13,1\r\n14,2\r\n");
    let populated = kv(&cluster, &["populate", &bom]).await;
    assert!(populated.status.success(), "{}", stderr(&populated));
    let read = kv(&cluster, &["read", "13"]).await;
    assert!(read.status.success(), "{}", stderr(&read));
    assert!(stdout(&read).contains(" 1"), "{}", stdout(&read));

    // Invalid UTF-8 and binary content: named by line and byte offset, nothing written.
    for (name, bytes, expected) in [
        (
            "utf8.txt",
            &b"a,1\nb,\xFF\n"[..],
            "utf8.txt:2: invalid UTF-8 at byte offset 6",
        ),
        (
            "binary.txt",
            &b"c,1\n\x00\x01\x02"[..],
            "binary.txt:2: binary content (a NUL byte at byte offset 4)",
        ),
    ] {
        let file = path(name, bytes);
        let refused = kv(&cluster, &["populate", &file]).await;
        assert_eq!(refused.status.code(), Some(1));
        assert!(stderr(&refused).contains(expected), "{}", stderr(&refused));
    }
    let unwritten = kv(&cluster, &["read", "a"]).await;
    assert!(
        !unwritten.status.success(),
        "nothing of a refused file is written"
    );

    // An endless device is refused at once, after reading one line at most.
    let started = Instant::now();
    let zero = kv(&cluster, &["populate", "/dev/zero"]).await;
    assert_eq!(zero.status.code(), Some(1));
    assert!(
        stderr(&zero).contains("/dev/zero:1: binary content"),
        "{}",
        stderr(&zero)
    );
    println!("/dev/zero refused in {:?}", started.elapsed());

    // Compare-and-swap: 0 when it swapped, 3 when the value was not the expected one.
    let swapped = kv(&cluster, &["cas", "13", "1", "2"]).await;
    assert_eq!(swapped.status.code(), Some(0), "{}", stderr(&swapped));
    let lost = kv(&cluster, &["--json", "cas", "13", "1", "3"]).await;
    assert_eq!(lost.status.code(), Some(3), "{}", stderr(&lost));
    let event: serde_json::Value = serde_json::from_str(stdout(&lost).trim()).unwrap();
    assert_eq!(event["applied"], false);
    assert!(
        stderr(&lost).is_empty(),
        "a lost race is not an error: {}",
        stderr(&lost)
    );
    let help = run_dida(&["kv", "--peers", cluster.peers(), "cas", "--help"]).await;
    assert!(
        stdout(&help).contains("3 when the value was not"),
        "{}",
        stdout(&help)
    );
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_out_of_range_are_refused_before_anything_starts() {
    let peers = "s1=http://127.0.0.1:1,s2=http://127.0.0.1:2";
    let storage = |extra: &[&str]| {
        let mut args = strings(&[
            "storage",
            "--id",
            "s1",
            "--url",
            "http://127.0.0.1:1",
            "--peers",
            peers,
        ]);
        args.extend(strings(extra));
        args
    };
    let kv = |extra: &[&str]| {
        let mut args = strings(&["kv", "--peers", peers]);
        args.extend(strings(extra));
        args
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            storage(&["--replication-factor", "2", "--vnodes", "50000000"]),
            "--vnodes must be from 1 to 4096",
        ),
        (
            storage(&["--replication-factor", "2", "--vnodes", "0"]),
            "--vnodes must be from 1 to 4096",
        ),
        (
            storage(&["--replication-factor", "3"]),
            "--replication-factor must be from 1 to the number of storage nodes (2), got 3",
        ),
        (
            storage(&["--replication-factor", "2", "--rpc-deadline", "0"]),
            "--rpc-deadline must be from 1 to",
        ),
        (
            kv(&["--replication-factor", "0", "read", "a"]),
            "--replication-factor must be from 1",
        ),
        (
            kv(&["--replication-factor", "2", "--deadline", "0", "read", "a"]),
            "--deadline must be from 1 to 3600000",
        ),
        (
            kv(&[
                "--replication-factor",
                "2",
                "--vnodes",
                "99999",
                "read",
                "a",
            ]),
            "--vnodes must be from 1 to 4096",
        ),
        (
            strings(&[
                "scheduler",
                "--url",
                "http://127.0.0.1:1",
                "--workers",
                "w1=http://127.0.0.1:2",
                "--execution-timeout",
                "0",
            ]),
            "--execution-timeout must be from 1 to 3600 seconds",
        ),
        (
            strings(&[
                "worker",
                "--id",
                "w1",
                "--url",
                "http://127.0.0.1:1",
                "--storage",
                peers,
                "--scheduler",
                "http://127.0.0.1:2",
                "--replication-factor",
                "2",
                "--max-wall-ms",
                "0",
            ]),
            "--max-wall-ms must be from 1 to",
        ),
        (
            strings(&[
                "run",
                "--scheduler",
                "http://127.0.0.1:1",
                "--input",
                "x",
                "--timeout",
                "0",
                "app.txt",
            ]),
            "--timeout must be from 1 to 3600 seconds",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = run_dida(&args).await;
        // A role's flag out of its bounds, or two that contradict each other, is
        // refused by the role's settings (dida-settings), a usage error (2); the
        // rest fail as the command runs (1).
        let by_parser = ["storage", "worker", "scheduler"].contains(&args[0]);
        assert_eq!(
            output.status.code(),
            Some(if by_parser { 2 } else { 1 }),
            "dida {args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(expected),
            "dida {args:?}: {}",
            stderr(&output)
        );
    }
}

/// A storage cluster, a scheduler and one worker whose operators directory holds a
/// FIFO named like an operator.
struct Platform {
    _cluster: LocalCluster,
    scheduler: SchedulerClient<NodeChannel>,
    _operators: tempfile::TempDir,
}

impl Platform {
    async fn start() -> Self {
        let operators = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(
            &operators.path().join("FifoOperator.wasm"),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .unwrap();
        let mut cluster = LocalCluster::start(dida(), small_cluster()).await.unwrap();
        cluster
            .start_compute(
                dida(),
                ComputeSpec {
                    workers: 1,
                    operators_dir: Some(operators.path().to_path_buf()),
                    worker_args: strings(&["--max-wall-ms", "5000"]),
                    ..ComputeSpec::default()
                },
            )
            .await
            .unwrap();
        let channel = lazy_channel(cluster.scheduler_url().unwrap(), Duration::from_secs(120))
            .expect("scheduler channel");
        Self {
            _cluster: cluster,
            scheduler: SchedulerClient::new(channel)
                .max_encoding_message_size(MAX_MESSAGE_BYTES)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            _operators: operators,
        }
    }

    fn submit(operators: &[&str], input: String) -> SubmitRequest {
        SubmitRequest {
            app: "bad-input".into(),
            operators: strings(operators),
            input,
        }
    }

    /// One `Run` call, bounded well below the scheduler's 300 s execution timeout.
    async fn run(&self, operators: &[&str], input: String) -> ExecutionOutcome {
        let mut scheduler = self.scheduler.clone();
        let call = scheduler.run(RunRequest {
            submit: Some(Self::submit(operators, input)),
            wait_ms: 0,
        });
        let reply = tokio::time::timeout(Duration::from_secs(100), call)
            .await
            .expect("the outcome must come long before the execution timeout")
            .unwrap_or_else(|s| panic!("run {operators:?} refused: {}", s.message()))
            .into_inner();
        assert!(reply.finished);
        reply.outcome.expect("a finished run has an outcome")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_executions_and_fifo_operators_fail_at_once() {
    let platform = Platform::start().await;

    // 10 MiB of input: refused at submit, saying why.
    let refused = platform
        .scheduler
        .clone()
        .submit(Platform::submit(&["EchoOperator"], "x".repeat(10 << 20)))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Code::InvalidArgument,
        "{}",
        refused.message()
    );
    assert!(
        refused
            .message()
            .contains("the input is 10485760 bytes long; the limit is 1048576"),
        "{}",
        refused.message()
    );

    // An operator file that is a FIFO: its execution fails fast, naming the reason.
    let started = Instant::now();
    let fifo = platform.run(&["FifoOperator"], "in".into()).await;
    let error = fifo.error.expect("a FIFO cannot be an operator");
    assert!(error.contains("it is a FIFO (named pipe)"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // The worker goes on serving.
    let echo = platform.run(&["EchoOperator"], "after".into()).await;
    assert_eq!(echo.error, None, "{:?}", echo.error);
    assert_eq!(echo.outputs, ["after"]);

    // EchoOperator passes its 1 MiB input on: each hop adds 1 MiB to the request,
    // which passes the per-hop limit at position 16. The execution fails there, at
    // once, with the error in its outcome.
    let hops = MAX_CHAIN_REQUEST_BYTES / MAX_INPUT_BYTES + 4;
    let chain = vec!["EchoOperator"; hops];
    let started = Instant::now();
    let grown = platform.run(&chain, "g".repeat(MAX_INPUT_BYTES)).await;
    let error = grown.error.expect("the request outgrows the hop limit");
    assert!(
        error.contains(&format!(
            "over the limit of {MAX_CHAIN_REQUEST_BYTES} bytes per hop"
        )),
        "{}",
        &error[..error.len().min(500)]
    );
    assert_eq!(grown.failed_operator.as_deref(), Some("EchoOperator"));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    println!("the oversized chain failed in {:?}", started.elapsed());
}
