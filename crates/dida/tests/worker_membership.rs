//! Workers come and go (issue 25): real `dida` processes on loopback. A scheduler
//! started without `--workers` gets workers that register themselves; workers added
//! under a steady stream of executions take work and lose none; a worker asked to
//! leave (SIGTERM) finishes what it runs while new work goes elsewhere; a SIGKILLed
//! worker is dropped when its lease ends; an id held by a live worker is refused;
//! over mutual TLS a worker's certificate may register only its own id.

mod support;

use std::collections::BTreeMap;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dida_local_cluster::{free_ports, LocalCluster};
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::{
    ExecutionOutcome, RegisterWorkerRequest, RunRequest, SchedulerStatusRequest, SubmitRequest,
    WorkerLoad,
};
use dida_proto::transport::{lazy_channel_for_waits, NodeChannel};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{dida, eventually, one_storage_node, outcome};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The workers' lease (`--worker-lease-ms`, its default).
const LEASE: Duration = Duration::from_millis(3000);

/// A node process, SIGKILLed when dropped so a failing test leaves nothing running.
struct Process(Child);

impl Process {
    fn pid(&self) -> Pid {
        Pid::from_raw(self.0.id() as i32)
    }

    /// Its exit status once it has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().expect("waiting for a node process")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Platform {
    storage: LocalCluster,
    scheduler_url: String,
    scheduler: SchedulerClient<NodeChannel>,
    _scheduler_process: Process,
}

impl Platform {
    /// One storage node and a scheduler given no `--workers`.
    async fn start() -> Self {
        let storage = one_storage_node().await;
        let port = free_ports(1).unwrap()[0];
        let scheduler_url = format!("http://127.0.0.1:{port}");
        let process = Command::new(dida())
            .env("RUST_LOG", "warn")
            .args(["scheduler", "--url", &scheduler_url])
            .arg(format!("--worker-lease-ms={}", LEASE.as_millis()))
            .args(["--storage", storage.peers(), "--replication-factor", "1"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let channel = lazy_channel_for_waits(
            &scheduler_url,
            Duration::from_secs(2),
            Duration::from_secs(60),
        )
        .unwrap();
        let platform = Self {
            storage,
            scheduler_url,
            scheduler: SchedulerClient::new(channel),
            _scheduler_process: Process(process),
        };
        eventually(Duration::from_secs(30), "the scheduler to answer", || {
            platform.try_workers()
        })
        .await;
        platform
    }

    /// Starts worker `id` on a free port, pointed at the scheduler (and nothing
    /// else: it registers itself). Returns the process and its URL.
    fn worker(&self, id: &str) -> (Process, String) {
        let url = format!("http://127.0.0.1:{}", free_ports(1).unwrap()[0]);
        (self.worker_at(id, &url, Stdio::null()), url)
    }

    fn worker_at(&self, id: &str, url: &str, stderr: Stdio) -> Process {
        let child = Command::new(dida())
            .env("RUST_LOG", "warn")
            .args(["worker", "--id", id, "--url", url])
            .args([
                "--storage",
                self.storage.peers(),
                "--replication-factor",
                "1",
            ])
            .args(["--scheduler", &self.scheduler_url])
            .arg(format!(
                "--operators={}",
                dida_operators::fixtures_dir().display()
            ))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Process(child)
    }

    async fn try_workers(&self) -> Option<BTreeMap<String, WorkerLoad>> {
        let status = self
            .scheduler
            .clone()
            .status(SchedulerStatusRequest {})
            .await
            .ok()?
            .into_inner();
        Some(
            status
                .workers
                .into_iter()
                .map(|w| (w.worker_id.clone(), w))
                .collect(),
        )
    }

    /// The workers the scheduler lists, by id.
    async fn workers(&self) -> BTreeMap<String, WorkerLoad> {
        self.try_workers().await.expect("scheduler status")
    }

    /// Waits (up to `limit`) until the scheduler shows worker `id` in `state`.
    async fn until_state(&self, id: &str, state: &str, limit: Duration) {
        eventually(limit, &format!("worker {id} to be {state}"), || async {
            let workers = self.try_workers().await?;
            (workers.get(id)?.state == state).then_some(())
        })
        .await;
    }

    /// Runs `operators` on `input` and waits for the outcome.
    async fn run(&self, operators: &[&str], input: &str) -> ExecutionOutcome {
        run(&self.scheduler, operators, input).await
    }

    /// Submits `operators` on `input` without waiting; returns the execution id.
    async fn submit(&self, operators: &[&str], input: &str) -> String {
        self.scheduler
            .clone()
            .submit(submit(operators, input))
            .await
            .expect("submit")
            .into_inner()
            .execution_id
    }
}

fn submit(operators: &[&str], input: &str) -> SubmitRequest {
    SubmitRequest {
        app: "membership.txt".into(),
        operators: operators.iter().map(|s| s.to_string()).collect(),
        input: input.into(),
    }
}

async fn run(
    scheduler: &SchedulerClient<NodeChannel>,
    operators: &[&str],
    input: &str,
) -> ExecutionOutcome {
    let reply = scheduler
        .clone()
        .run(RunRequest {
            submit: Some(submit(operators, input)),
            wait_ms: 30_000,
        })
        .await
        .unwrap_or_else(|status| panic!("run {input}: {status}"))
        .into_inner();
    assert!(reply.finished, "{input} did not finish within 30 s");
    reply.outcome.expect("a finished execution has an outcome")
}

/// The workers that ran the operators of `outcome`, in chain order.
fn ran_on(outcome: &ExecutionOutcome) -> Vec<String> {
    outcome.runs.iter().map(|r| r.worker_id.clone()).collect()
}

/// Submits two-operator executions back to back from `clients` concurrent clients
/// until `stop`, each waiting for its outcome; returns every outcome.
fn steady_stream(
    scheduler: SchedulerClient<NodeChannel>,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<ExecutionOutcome>> {
    tokio::spawn(async move {
        let loops = (0..clients).map(|client| {
            let scheduler = scheduler.clone();
            let stop = stop.clone();
            async move {
                let mut outcomes = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let input = format!("stream-{client}-{n}");
                    outcomes.push(run(&scheduler, &["EchoOperator", "EchoOperator"], &input).await);
                    n += 1;
                }
                outcomes
            }
        });
        futures::future::join_all(loops)
            .await
            .into_iter()
            .flatten()
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_register_take_work_leave_and_are_dropped() {
    let platform = Platform::start().await;
    assert!(
        platform.workers().await.is_empty(),
        "no --workers: no worker"
    );

    // 1. A worker started with only --scheduler registers itself and runs an
    //    application.
    let started = Instant::now();
    let (mut w1, _) = platform.worker("w1");
    platform
        .until_state("w1", "alive", Duration::from_secs(60))
        .await;
    let first = platform.run(&["EchoOperator"], "hello").await;
    assert_eq!(first.error, None);
    assert_eq!(first.outputs, ["hello"]);
    assert_eq!(ran_on(&first), ["w1"]);
    eprintln!(
        "w1 registered and ran an execution {:?} after its start",
        started.elapsed()
    );

    // 2. Under a steady stream, two workers join: executions land on them and none
    //    is lost.
    let stop = Arc::new(AtomicBool::new(false));
    let stream = steady_stream(platform.scheduler.clone(), 4, stop.clone());
    let (_w2, _) = platform.worker("w2");
    let (mut w3, _) = platform.worker("w3");
    let joined = Instant::now();
    eventually(
        Duration::from_secs(60),
        "w2 and w3 to take executions",
        || async {
            let workers = platform.try_workers().await?;
            let took = |id: &str| workers.get(id).is_some_and(|w| w.assigned > 0);
            (took("w2") && took("w3")).then_some(())
        },
    )
    .await;
    eprintln!(
        "w2 and w3 took work {:?} after they were started",
        joined.elapsed()
    );
    // Let the stream run over all three for a while (measured in executions).
    let before = platform.workers().await["w1"].assigned;
    eventually(Duration::from_secs(60), "more executions", || async {
        let workers = platform.try_workers().await?;
        (workers["w1"].assigned >= before + 20).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = stream.await.unwrap();
    let failed: Vec<&ExecutionOutcome> = outcomes.iter().filter(|o| o.error.is_some()).collect();
    assert!(failed.is_empty(), "executions failed: {failed:?}");
    let mut per_worker = BTreeMap::<String, usize>::new();
    for worker in outcomes.iter().flat_map(ran_on) {
        *per_worker.entry(worker).or_default() += 1;
    }
    eprintln!(
        "{} executions under the stream, none lost; operators per worker: {per_worker:?}",
        outcomes.len()
    );
    assert!(per_worker.contains_key("w2") && per_worker.contains_key("w3"));

    // 3. w3 is asked to leave (SIGTERM) while executions hold operators on it: it
    //    is shown leaving, gets no new work, finishes what it holds, then exits.
    let held: Vec<String> = futures::future::join_all((0..6).map(|i| {
        let platform = &platform;
        async move {
            platform
                .submit(&["AwaitKeyOperator", "EchoOperator"], &format!("held-{i}"))
                .await
        }
    }))
    .await;
    let w3_load = platform.workers().await["w3"].load;
    assert!(w3_load > 0, "w3 holds operators of the held executions");
    kill(w3.pid(), Signal::SIGTERM).unwrap();
    platform
        .until_state("w3", "leaving", Duration::from_secs(10))
        .await;
    for i in 0..6 {
        let outcome = platform
            .run(&["EchoOperator"], &format!("after-leave-{i}"))
            .await;
        assert_eq!(outcome.error, None);
        assert_ne!(ran_on(&outcome), ["w3"], "no new work on a leaving worker");
    }
    assert_eq!(w3.exited(), None, "w3 drains before it exits");
    let client = platform.storage.client().unwrap();
    for i in 0..6 {
        client
            .write(&format!("held-{i}-go"), "released")
            .await
            .unwrap();
    }
    let mut on_w3 = 0;
    for id in &held {
        let outcome = outcome(&platform.scheduler, id).await;
        assert_eq!(outcome.error, None, "{id}");
        assert_eq!(outcome.outputs.last().map(String::as_str), Some("released"));
        on_w3 += ran_on(&outcome).iter().filter(|w| *w == "w3").count();
    }
    assert!(on_w3 > 0, "the leaving worker ran its operators");
    let exit = eventually(Duration::from_secs(30), "w3 to exit", || {
        std::future::ready(w3.exited())
    })
    .await;
    assert!(exit.success(), "a drained worker exits cleanly: {exit}");
    platform
        .until_state("w3", "gone", Duration::from_secs(5))
        .await;

    // 4. A SIGKILLed worker is dropped when its lease ends; work goes on without it.
    kill(w1.pid(), Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    let _ = w1.0.wait();
    platform
        .until_state("w1", "gone", LEASE + Duration::from_secs(5))
        .await;
    let dropped = killed.elapsed();
    eprintln!("SIGKILLed w1 dropped {dropped:?} after the kill (lease {LEASE:?})");
    // Its last renewal came at most a third of a lease before the kill.
    assert!(
        LEASE / 2 <= dropped && dropped <= LEASE + Duration::from_secs(1),
        "{dropped:?}"
    );
    for i in 0..4 {
        let outcome = platform
            .run(&["EchoOperator"], &format!("after-kill-{i}"))
            .await;
        assert_eq!(outcome.error, None);
        assert_eq!(ran_on(&outcome), ["w2"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_held_by_a_live_worker_is_refused() {
    let platform = Platform::start().await;
    let (_w1, _) = platform.worker("w1");
    platform
        .until_state("w1", "alive", Duration::from_secs(60))
        .await;
    let other = format!("http://127.0.0.1:{}", free_ports(1).unwrap()[0]);
    let mut hijacker = platform.worker_at("w1", &other, Stdio::piped());
    let exit = eventually(Duration::from_secs(60), "the second w1 to exit", || {
        std::future::ready(hijacker.exited())
    })
    .await;
    assert!(!exit.success(), "refused: {exit}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(hijacker.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("is held by the live worker"),
        "a clear refusal: {stderr}"
    );
    // The live holder keeps its id and its work.
    let workers = platform.workers().await;
    assert_eq!(workers["w1"].state, "alive");
    assert_ne!(workers["w1"].url, other);
    assert_eq!(
        ran_on(&platform.run(&["EchoOperator"], "mine").await),
        ["w1"]
    );
}

/// A channel to `url` over TLS, trusting the CA of `dir` (made by `dida certs`) and
/// presenting the certificate of `name` from it. Built by hand: this test binary
/// installs no identity of its own (its other tests speak plain gRPC).
fn tls_channel(url: &str, dir: &std::path::Path, name: &str) -> Channel {
    let read = |file: String| std::fs::read(dir.join(file)).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem".into())))
        .identity(Identity::from_pem(
            read(format!("{name}.pem")),
            read(format!("{name}.key")),
        ));
    Endpoint::from_shared(url.replace("http://", "https://"))
        .unwrap()
        .timeout(Duration::from_secs(5))
        .tls_config(tls)
        .unwrap()
        .connect_lazy()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_worker_registers_only_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    let made = Command::new(dida())
        .args(["certs", "--out"])
        .arg(dir.path())
        .args(["--storage", "s1", "--workers", "w1,w2"])
        .status()
        .unwrap();
    assert!(made.success());
    let url = format!("http://127.0.0.1:{}", free_ports(1).unwrap()[0]);
    let _scheduler = Process(
        Command::new(dida())
            .env("RUST_LOG", "warn")
            .env("DIDA_TLS_DIR", dir.path())
            .args(["scheduler", "--url", &url])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let register = |name: &str, worker_id: &str| {
        let mut client = SchedulerClient::new(tls_channel(&url, dir.path(), name));
        let request = RegisterWorkerRequest {
            worker_id: worker_id.into(),
            url: "http://127.0.0.1:4001".into(),
            leaving: false,
        };
        async move { client.register_worker(request).await }
    };
    // w1's own certificate registers w1 (once the scheduler serves).
    eventually(
        Duration::from_secs(30),
        "w1 to register over TLS",
        || async { register("w1", "w1").await.ok() },
    )
    .await;
    // w2's certificate may not speak for w1, nor a client's register anyone.
    let forged = register("w2", "w1").await.unwrap_err();
    assert_eq!(forged.code(), tonic::Code::PermissionDenied, "{forged}");
    assert!(forged.message().contains("may not speak for"), "{forged}");
    let client = register("client", "w9").await.unwrap_err();
    assert_eq!(client.code(), tonic::Code::PermissionDenied, "{client}");
}
