//! Applications as users run them (SPEC §3–5), against real processes on loopback:
//! 5 `dida storage` nodes, a `dida scheduler` and `dida worker`s, driven through
//! `dida run` and the scheduler's gRPC API.
//!
//! Nothing here sleeps and hopes: a test that needs an execution to stand still
//! between two operators holds it with the `AwaitKeyOperator` fixture (which waits for
//! storage key `<input>-go`), and every "eventually" is a poll with a deadline.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dida_core::Version;
use dida_local_cluster::{ClusterSpec, ComputeSpec, LocalCluster};
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::worker_client::WorkerClient;
use dida_proto::execution::{
    ExecutionOutcome, RunRequest, SchedulerStatusReply, SchedulerStatusRequest, SubmitRequest,
    WorkerStatusReply, WorkerStatusRequest,
};
use dida_proto::transport::lazy_channel;
use dida_proto::transport::NodeChannel;
use dida_storage_client::StorageClient;

mod support;
use support::{dida, eventually, stderr, stdout};

/// The submit of `operators` (in chain order) with `input`.
fn submit_request(operators: &[&str], input: &str) -> SubmitRequest {
    SubmitRequest {
        app: format!("test-app({})", operators.join(",")),
        operators: operators.iter().map(|s| s.to_string()).collect(),
        input: input.to_string(),
    }
}

/// A storage cluster plus a scheduler and workers, and a client of the scheduler.
struct Platform {
    cluster: LocalCluster,
    scheduler: SchedulerClient<NodeChannel>,
}

impl Platform {
    async fn start(spec: ClusterSpec, compute: ComputeSpec) -> Self {
        let mut cluster = LocalCluster::start(dida(), spec).await.unwrap();
        cluster.start_compute(dida(), compute).await.unwrap();
        // Outcome calls wait up to a few seconds on the scheduler; the deadline covers it.
        let channel = lazy_channel(cluster.scheduler_url().unwrap(), Duration::from_secs(20))
            .expect("scheduler channel");
        Self {
            cluster,
            scheduler: SchedulerClient::new(channel),
        }
    }

    fn storage(&self) -> StorageClient {
        self.cluster.client().unwrap()
    }

    fn scheduler_url(&self) -> &str {
        self.cluster.scheduler_url().unwrap()
    }

    /// Submits `operators` (in chain order) with `input`; returns the execution id.
    async fn submit(&self, operators: &[&str], input: &str) -> Result<String, tonic::Status> {
        self.scheduler
            .clone()
            .submit(submit_request(operators, input))
            .await
            .map(|reply| reply.into_inner().execution_id)
    }

    /// One `Run` call: submits, and waits on the scheduler up to `wait_ms` (0: until
    /// the end). Returns whether it ended and the outcome (only the id if not).
    async fn run_call(
        &self,
        operators: &[&str],
        input: &str,
        wait_ms: u32,
    ) -> (bool, ExecutionOutcome) {
        let reply = self
            .scheduler
            .clone()
            .run(RunRequest {
                submit: Some(submit_request(operators, input)),
                wait_ms,
            })
            .await
            .unwrap_or_else(|s| panic!("run {operators:?} refused: {}", s.message()))
            .into_inner();
        (
            reply.finished,
            reply.outcome.expect("a run reply carries an outcome"),
        )
    }

    /// Waits (up to 60 s) for the outcome of execution `id`.
    async fn outcome(&self, id: &str) -> ExecutionOutcome {
        support::outcome(&self.scheduler, id).await
    }

    /// Submits and waits for the outcome, in one `Run` call.
    async fn run(&self, operators: &[&str], input: &str) -> ExecutionOutcome {
        let (finished, outcome) = self.run_call(operators, input, 0).await;
        assert!(finished, "Run answered before the end: {outcome:?}");
        outcome
    }

    async fn status(&self) -> SchedulerStatusReply {
        self.scheduler
            .clone()
            .status(SchedulerStatusRequest {})
            .await
            .expect("scheduler status")
            .into_inner()
    }

    /// Waits until the scheduler counts no operator on any worker.
    async fn idle(&self) {
        eventually(Duration::from_secs(30), "every load back to 0", || async {
            let status = self.status().await;
            status.workers.iter().all(|w| w.load == 0).then_some(())
        })
        .await;
    }

    /// `Status` of every worker, `w1` first.
    async fn worker_statuses(&self) -> Vec<WorkerStatusReply> {
        let mut statuses = Vec::new();
        for member in self.cluster.workers().unwrap().members() {
            let channel = lazy_channel(&member.url.to_string(), Duration::from_secs(5)).unwrap();
            let status = WorkerClient::new(channel)
                .status(WorkerStatusRequest {})
                .await
                .expect("worker status")
                .into_inner();
            statuses.push(status);
        }
        statuses
    }

    /// Runs `dida run --scheduler URL --input INPUT [--json] APP`.
    async fn dida_run(&self, app: &Path, input: &str, json: bool) -> Output {
        let mut command = tokio::process::Command::new(dida());
        command.args(["run", "--scheduler", self.scheduler_url(), "--input", input]);
        if json {
            command.arg("--json");
        }
        command
            .arg(app)
            .env_remove("DIDA_SCHEDULER")
            .output()
            .await
            .expect("run dida run")
    }
}

/// Writes an application file into `dir`.
fn app_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Splits a `ReadOperator` / `WriteOperator` output `value@N.R`.
fn value_at(output: &str) -> (&str, Version) {
    let (value, version) = output
        .rsplit_once('@')
        .unwrap_or_else(|| panic!("{output:?} is not value@version"));
    (value, version.parse().expect("a N.R version"))
}

/// Waits until every replica of `key` holds exactly `version` as its newest version,
/// and returns the value they hold.
async fn converged(storage: &StorageClient, key: &str, version: Version) -> String {
    eventually(
        Duration::from_secs(30),
        &format!("every replica of {key} to hold {version} as newest"),
        || async {
            let mut value = None;
            for replica in storage.replicas(key) {
                let record = storage.read_from(replica, key, None).await.ok()??;
                if record.version != version {
                    return None;
                }
                value = Some(record.value);
            }
            value
        },
    )
    .await
}

/// Overwrites `key` in the background, as fast as it goes, until stopped or `limit`
/// writes are done; the task returns how many it made.
fn keep_overwriting(
    storage: StorageClient,
    key: &'static str,
    limit: usize,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<usize>) {
    let stop = Arc::new(AtomicBool::new(false));
    let task = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut written = 0;
            while written < limit && !stop.load(Ordering::Relaxed) {
                storage
                    .write(key, &format!("concurrent-{written}"))
                    .await
                    .expect("concurrent overwrite");
                written += 1;
            }
            written
        })
    };
    (stop, task)
}

// ---------------------------------------------------------------------------
// 1. The course's example
// ---------------------------------------------------------------------------

/// The classic course flow: populate `13,1 14,x 23,11 24,y`, run `AddOperator 0,
/// UpdateAndChainOperator 1` on input 23 with `dida run --json`: the outputs are
/// `["12","end"]` and, once gossip has done its work, every replica of key 23 holds
/// `success` as its newest version (3: the populate, AddOperator's write, the CAS that
/// applied; the second CAS must not apply).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn course_flow_add_then_update_and_chain() {
    let platform = Platform::start(
        ClusterSpec {
            anti_entropy_interval_ms: 200,
            ..ClusterSpec::default()
        },
        ComputeSpec {
            workers: 2,
            ..ComputeSpec::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let data = app_file(dir.path(), "data.txt", "13,1\n14,x\n23,11\n24,y\n");
    let populated = tokio::process::Command::new(dida())
        .args(["kv", "--peers", platform.cluster.peers(), "populate"])
        .arg(&data)
        .output()
        .await
        .unwrap();
    assert!(populated.status.success(), "{}", stderr(&populated));

    // Lines in any order, with a comment and a blank line (SPEC §3.1).
    let app = app_file(
        dir.path(),
        "app.txt",
        "# the course's example\noperator UpdateAndChainOperator 1\n\noperator AddOperator 0\n",
    );
    let run = platform.dida_run(&app, "23", true).await;
    assert!(run.status.success(), "dida run failed: {}", stderr(&run));
    let event: serde_json::Value = serde_json::from_str(stdout(&run).trim())
        .unwrap_or_else(|e| panic!("{e}: {:?}", stdout(&run)));
    assert_eq!(event["event"], "client");
    assert_eq!(event["status"], "ok");
    assert_eq!(event["input"], "23");
    assert_eq!(event["outputs"], serde_json::json!(["12", "end"]));
    assert!(event["error"].is_null());
    assert!(!event["id"].as_str().unwrap().is_empty());

    let storage = platform.storage();
    let replicas = storage.replicas("23");
    assert_eq!(replicas.len(), 3);
    let primary = storage.primary("23");
    let newest = storage
        .read_from(primary, "23", None)
        .await
        .unwrap()
        .expect("key 23 exists");
    assert_eq!(newest.value, "success");
    assert_eq!(
        newest.version.number, 3,
        "populate, AddOperator's write and one applied CAS"
    );
    assert_eq!(converged(&storage, "23", newest.version).await, "success");
    // AddOperator only reads key input+1.
    let key24 = storage
        .read_from(storage.primary("24"), "24", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((key24.value.as_str(), key24.version.number), ("y", 1));
}

// ---------------------------------------------------------------------------
// 2. Consistency seen by an application (SPEC §4)
// ---------------------------------------------------------------------------

/// Versions each storage replica keeps in the consistency test: more than the
/// overwrites of the first two scenarios (so nothing they pinned is discarded), fewer
/// than those of the third (so its pinned version is).
const CONSISTENCY_MAX_VERSIONS: usize = 40;

/// The three guarantees of SPEC §4 on one platform (3 workers, so the pins travel
/// from worker to worker in the request), one scenario after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_within_an_execution_are_consistent() {
    let platform = Platform::start(
        ClusterSpec {
            max_versions: CONSISTENCY_MAX_VERSIONS,
            ..ClusterSpec::default()
        },
        ComputeSpec {
            workers: 3,
            operators_dir: Some(dida_operators::fixtures_dir().to_path_buf()),
            ..ComputeSpec::default()
        },
    )
    .await;
    downstream_reads_see_the_version_written_upstream(&platform).await;
    platform.idle().await;
    two_reads_of_a_key_see_the_same_version(&platform).await;
    platform.idle().await;
    a_garbage_collected_pinned_version_stops_the_execution(&platform).await;
}

/// An operator that reads a key an upstream operator wrote reads exactly that
/// version, although another client overwrote the key 10 times in between and keeps
/// overwriting it while the reads run; and the two reads agree.
async fn downstream_reads_see_the_version_written_upstream(platform: &Platform) {
    let storage = platform.storage();
    let chain = [
        "WriteOperator",
        "AwaitKeyOperator",
        "ReadOperator",
        "ReadOperator",
    ];
    let id = platform.submit(&chain, "rw").await.unwrap();

    // The execution is held by AwaitKeyOperator once WriteOperator's write is there.
    let written = format!("written-by-{id}");
    let primary = storage.primary("rw").to_string();
    eventually(Duration::from_secs(30), "WriteOperator's write", || async {
        let record = storage.read_from(&primary, "rw", None).await.ok()??;
        (record.value == written).then_some(())
    })
    .await;
    for i in 0..10 {
        storage
            .write("rw", &format!("overwrite-{i}"))
            .await
            .unwrap();
    }
    let (stop, writer) = keep_overwriting(platform.storage(), "rw", 20);
    storage.write("rw-go", "go").await.unwrap();
    let outcome = platform.outcome(&id).await;
    stop.store(true, Ordering::Relaxed);
    let concurrent = writer.await.unwrap();

    assert_eq!(outcome.error, None, "{outcome:?}");
    assert_eq!(outcome.outputs.len(), 4, "{outcome:?}");
    let (value, pinned) = value_at(&outcome.outputs[0]);
    assert_eq!(value, written);
    assert_eq!(outcome.outputs[1], "go");
    assert_eq!(
        outcome.outputs[2], outcome.outputs[0],
        "the read after the write must see the written version"
    );
    assert_eq!(
        outcome.outputs[3], outcome.outputs[2],
        "both reads must see the same version"
    );
    let newest = storage
        .read_from(&primary, "rw", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        newest.version.number,
        pinned.number + 10 + concurrent as u64,
        "the key was overwritten meanwhile"
    );
}

/// Two operators of one execution that read the same key (nobody in the execution
/// writes it) read the same version, while another client overwrites the key between
/// and during the two reads.
async fn two_reads_of_a_key_see_the_same_version(platform: &Platform) {
    let storage = platform.storage();
    let initial = storage.write("rr", "initial").await.unwrap();
    // Every replica holds it, so the first read cannot find the key missing.
    converged(&storage, "rr", initial).await;

    let chain = ["ReadOperator", "AwaitKeyOperator", "ReadOperator"];
    let id = platform.submit(&chain, "rr").await.unwrap();
    // The first ReadOperator is done once the scheduler has its confirmation: 2 of the
    // 3 operators remain (the platform was idle before).
    eventually(Duration::from_secs(30), "the first read", || async {
        let status = platform.status().await;
        let load: u64 = status.workers.iter().map(|w| w.load).sum();
        (load == 2).then_some(())
    })
    .await;
    for i in 0..10 {
        storage
            .write("rr", &format!("overwrite-{i}"))
            .await
            .unwrap();
    }
    let (stop, writer) = keep_overwriting(platform.storage(), "rr", 20);
    storage.write("rr-go", "go").await.unwrap();
    let outcome = platform.outcome(&id).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    assert_eq!(outcome.error, None, "{outcome:?}");
    assert_eq!(
        outcome.outputs,
        [
            format!("initial@{initial}"),
            "go".to_string(),
            format!("initial@{initial}")
        ],
        "the second read must see the version the first one read"
    );
}

/// A version the execution pinned, then discarded by every replica (overwritten
/// `max_versions` times while the execution is held), stops the execution with an
/// error saying it was garbage-collected; the operators before keep their outputs.
async fn a_garbage_collected_pinned_version_stops_the_execution(platform: &Platform) {
    let storage = platform.storage();
    let chain = ["WriteOperator", "AwaitKeyOperator", "ReadOperator"];
    let id = platform.submit(&chain, "gc").await.unwrap();
    let written = format!("written-by-{id}");
    let primary = storage.primary("gc").to_string();
    eventually(Duration::from_secs(30), "WriteOperator's write", || async {
        let record = storage.read_from(&primary, "gc", None).await.ok()??;
        (record.value == written).then_some(())
    })
    .await;
    let mut last = None;
    for i in 0..CONSISTENCY_MAX_VERSIONS {
        last = Some(
            storage
                .write("gc", &format!("overwrite-{i}"))
                .await
                .unwrap(),
        );
    }
    // Every replica has the newest versions, hence has discarded the pinned one.
    converged(&storage, "gc", last.unwrap()).await;
    storage.write("gc-go", "go").await.unwrap();
    let outcome = platform.outcome(&id).await;

    let error = outcome.error.clone().expect("the execution must fail");
    assert!(error.contains("garbage-collected"), "{error}");
    assert!(error.contains("\"gc\""), "the error names the key: {error}");
    assert_eq!(outcome.failed_operator.as_deref(), Some("ReadOperator"));
    assert_eq!(outcome.failed_order, Some(2));
    assert_eq!(outcome.outputs.len(), 2, "{outcome:?}");
    assert_eq!(value_at(&outcome.outputs[0]).0, written);
}

// ---------------------------------------------------------------------------
// 3. Scheduling (SPEC §5)
// ---------------------------------------------------------------------------

/// 30 executions of the same two-operator chain submitted at once to 3 workers: the
/// scheduler spreads the 60 operators evenly (assigned and load differ by at most one
/// between workers), and once every execution has finished every load is back to 0.
/// The executions are held by AwaitKeyOperator while the spread is checked, so no
/// completion can skew the counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_executions_spread_evenly_and_loads_return_to_zero() {
    const EXECUTIONS: usize = 30;
    let platform = Arc::new(
        Platform::start(
            ClusterSpec::default(),
            ComputeSpec {
                workers: 3,
                operators_dir: Some(dida_operators::fixtures_dir().to_path_buf()),
                ..ComputeSpec::default()
            },
        )
        .await,
    );
    let submits: Vec<_> = (0..EXECUTIONS)
        .map(|_| {
            let platform = platform.clone();
            tokio::spawn(async move {
                platform
                    .submit(&["AwaitKeyOperator", "EchoOperator"], "sched")
                    .await
                    .expect("submit")
            })
        })
        .collect();
    let mut ids = Vec::new();
    for submit in submits {
        ids.push(submit.await.unwrap());
    }

    let status = platform.status().await;
    let assigned: Vec<u64> = status.workers.iter().map(|w| w.assigned).collect();
    let loads: Vec<u64> = status.workers.iter().map(|w| w.load).collect();
    assert_eq!(status.workers.len(), 3);
    assert_eq!(assigned.iter().sum::<u64>(), 2 * EXECUTIONS as u64);
    let spread = |v: &[u64]| v.iter().max().unwrap() - v.iter().min().unwrap();
    assert!(spread(&assigned) <= 1, "assigned {assigned:?}");
    assert_eq!(loads, assigned, "nothing has completed yet");
    assert_eq!(status.executions_running, EXECUTIONS as u64);

    platform.storage().write("sched-go", "go").await.unwrap();
    for id in &ids {
        let outcome = platform.outcome(id).await;
        assert_eq!(outcome.error, None, "{outcome:?}");
        assert_eq!(outcome.outputs, ["go", "go"]);
    }
    let status = eventually(Duration::from_secs(30), "every load back to 0", || async {
        let status = platform.status().await;
        status.workers.iter().all(|w| w.load == 0).then_some(status)
    })
    .await;
    assert_eq!(status.executions_finished, EXECUTIONS as u64);
    assert_eq!(status.executions_running, 0);
    // Every worker ran its share: the confirmations match the assignments.
    let completed: Vec<u64> = platform
        .worker_statuses()
        .await
        .iter()
        .map(|w| w.completed)
        .collect();
    assert_eq!(completed, assigned);
}

/// `Run` submits and answers with the outcome when the execution ends, in one call;
/// when the wait it asked for runs out first, it answers `finished: false` with the
/// execution id, and `Outcome` fetches the end later. Loads return to zero either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_answers_at_the_end_or_with_the_id_when_its_wait_runs_out() {
    let platform = Platform::start(
        ClusterSpec::default(),
        ComputeSpec {
            workers: 2,
            operators_dir: Some(dida_operators::fixtures_dir().to_path_buf()),
            ..ComputeSpec::default()
        },
    )
    .await;
    let outcome = platform
        .run(&["EchoOperator", "EchoOperator"], "twice")
        .await;
    assert_eq!(outcome.error, None, "{outcome:?}");
    assert_eq!(outcome.outputs, ["twice", "twice"]);

    // Held by AwaitKeyOperator until `held-go` is written: the wait runs out first.
    let (finished, pending) = platform.run_call(&["AwaitKeyOperator"], "held", 200).await;
    assert!(!finished, "{pending:?}");
    assert!(
        !pending.execution_id.is_empty(),
        "the reply names the execution"
    );
    assert!(pending.outputs.is_empty() && pending.error.is_none());
    platform.storage().write("held-go", "go").await.unwrap();
    let outcome = platform.outcome(&pending.execution_id).await;
    assert_eq!(outcome.error, None, "{outcome:?}");
    assert_eq!(outcome.outputs, ["go"]);
    platform.idle().await;
}

// ---------------------------------------------------------------------------
// 4. The sandbox (SPEC §3.4)
// ---------------------------------------------------------------------------

/// On one worker, each misbehaving operator fails only its own execution with a
/// message naming the cause, and the next execution on that worker succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_operators_fail_only_their_execution() {
    let platform = Platform::start(
        ClusterSpec::default(),
        ComputeSpec {
            workers: 1,
            operators_dir: Some(dida_operators::fixtures_dir().to_path_buf()),
            // The loop must run out of fuel well before the wall-time limit even on
            // a loaded machine: 20 M instructions take tens of milliseconds alone,
            // and the wall limit is 100 times that.
            worker_args: [
                "--max-fuel",
                "20000000",
                "--max-memory-mb",
                "16",
                "--max-wall-ms",
                "2000",
            ]
            .map(String::from)
            .to_vec(),
            ..ComputeSpec::default()
        },
    )
    .await;
    let cases = [
        // An infinite loop runs out of fuel.
        ("LoopOperator", "CPU limit"),
        ("MemoryBombOperator", "memory limit"),
        ("TrapOperator", "TrapOperator panicked on purpose"),
        ("FailOperator", "operator failed on purpose"),
        // Waits for a key nobody writes: the wall-time limit stops it.
        ("AwaitKeyOperator", "wall-time limit"),
    ];
    for (index, (operator, cause)) in cases.into_iter().enumerate() {
        let started = Instant::now();
        let outcome = platform
            .run(&["EchoOperator", operator, "EchoOperator"], "never")
            .await;
        let error = outcome
            .error
            .clone()
            .unwrap_or_else(|| panic!("{operator} must fail its execution: {outcome:?}"));
        println!("{operator}: failed in {:?}: {error}", started.elapsed());
        assert!(error.contains(cause), "{operator}: {error}");
        assert!(error.contains(operator), "names the operator: {error}");
        assert_eq!(outcome.failed_operator.as_deref(), Some(operator));
        assert_eq!(outcome.failed_order, Some(1));
        assert_eq!(
            outcome.outputs,
            ["never"],
            "the first operator's output stays"
        );
        assert_eq!(outcome.unrun_from, 2);

        // The worker is still there and runs the next execution.
        let next = platform
            .run(&["EchoOperator"], &format!("after-{operator}"))
            .await;
        assert_eq!(next.error, None, "after {operator}: {next:?}");
        assert_eq!(next.outputs, [format!("after-{operator}")]);

        let worker = &platform.worker_statuses().await[0];
        assert_eq!(worker.failed, index as u64 + 1);
    }
    let status = eventually(Duration::from_secs(30), "the load back to 0", || async {
        let status = platform.status().await;
        (status.workers[0].load == 0).then_some(status)
    })
    .await;
    // The third operator of each failed chain never ran and was released.
    assert_eq!(status.workers[0].assigned, 5 * (3 + 1));
}

// ---------------------------------------------------------------------------
// 5. Bad input (SPEC §3.1)
// ---------------------------------------------------------------------------

/// An application naming an operator no worker has is refused before anything runs,
/// with a message naming the operator; a malformed application file is refused by
/// `dida run` naming the file and the line, and nothing is submitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_applications_are_refused_before_anything_runs() {
    let platform = Platform::start(
        ClusterSpec::default(),
        ComputeSpec {
            workers: 1,
            ..ComputeSpec::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();

    let unknown = app_file(
        dir.path(),
        "unknown.txt",
        "operator WriteOperator 0\noperator NoSuchOperator 1\n",
    );
    let run = platform.dida_run(&unknown, "bad-input", false).await;
    assert!(!run.status.success());
    let error = stderr(&run);
    assert!(error.contains("NoSuchOperator"), "{error}");
    assert!(error.contains("unknown operator"), "{error}");
    let refused = platform
        .submit(&["NoSuchOperator"], "bad-input")
        .await
        .expect_err("an unknown operator must be refused");
    assert_eq!(refused.code(), tonic::Code::NotFound);
    assert!(refused.message().contains("NoSuchOperator"), "{refused:?}");

    let malformed = app_file(
        dir.path(),
        "malformed.txt",
        "operator WriteOperator 0\n\nfrobnicate ReadOperator 1\n",
    );
    let run = platform.dida_run(&malformed, "bad-input", false).await;
    assert!(!run.status.success());
    let error = stderr(&run);
    assert!(
        error.contains(&format!("{}:3:", malformed.display())),
        "names file and line: {error}"
    );
    assert!(error.contains("frobnicate"), "{error}");

    let gap = app_file(
        dir.path(),
        "gap.txt",
        "operator WriteOperator 0\noperator ReadOperator 2\n",
    );
    let run = platform.dida_run(&gap, "bad-input", false).await;
    assert!(!run.status.success());
    let error = stderr(&run);
    assert!(error.contains(&gap.display().to_string()), "{error}");
    assert!(error.contains("1 is missing"), "{error}");

    // Nothing ran: no execution, no assignment, no write of WriteOperator.
    let status = platform.status().await;
    assert_eq!(status.executions_submitted, 0);
    assert!(status.workers.iter().all(|w| w.assigned == 0), "{status:?}");
    assert!(platform
        .worker_statuses()
        .await
        .iter()
        .all(|w| w.completed + w.failed + w.running == 0));
    assert_eq!(
        platform.storage().read("bad-input", None).await.unwrap(),
        None
    );

    // The same platform still runs a good application.
    let good = app_file(dir.path(), "good.txt", "operator EchoOperator 0\n");
    let run = platform.dida_run(&good, "fine", true).await;
    assert!(run.status.success(), "{}", stderr(&run));
    let event: serde_json::Value = serde_json::from_str(stdout(&run).trim()).unwrap();
    assert_eq!(event["outputs"], serde_json::json!(["fine"]));
}

// ---------------------------------------------------------------------------
// 6. Hot reload of operators (SPEC §3.4)
// ---------------------------------------------------------------------------

/// A `<Name>.wasm` added to a worker's operators directory becomes runnable, and
/// replacing it — in place or by renaming a new file over it — changes what runs,
/// without restarting the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_operator_files_are_picked_up_without_restart() {
    let operators = tempfile::tempdir().unwrap();
    let platform = Platform::start(
        ClusterSpec::default(),
        ComputeSpec {
            workers: 1,
            operators_dir: Some(operators.path().to_path_buf()),
            ..ComputeSpec::default()
        },
    )
    .await;
    let file = operators.path().join("HotOperator.wasm");
    let builtin = |name| dida_operators::find_builtin(name).unwrap().wasm;

    let refused = platform.submit(&["HotOperator"], "x").await.unwrap_err();
    assert!(refused.message().contains("HotOperator"), "{refused:?}");

    // A new file: the scheduler caches operator lists briefly, so poll the submit.
    std::fs::write(&file, builtin("EchoOperator")).unwrap();
    let id = eventually(
        Duration::from_secs(30),
        "HotOperator to be known",
        || async { platform.submit(&["HotOperator"], "hello").await.ok() },
    )
    .await;
    let outcome = platform.outcome(&id).await;
    assert_eq!(outcome.error, None, "{outcome:?}");
    assert_eq!(outcome.outputs, ["hello"], "HotOperator is EchoOperator");

    // Overwritten in place (same inode): now it is ReadOperator.
    let version = platform
        .storage()
        .write("hot-key", "hot-value")
        .await
        .unwrap();
    std::fs::write(&file, builtin("ReadOperator")).unwrap();
    let outcome = platform.run(&["HotOperator"], "hot-key").await;
    assert_eq!(outcome.error, None, "{outcome:?}");
    assert_eq!(outcome.outputs, [format!("hot-value@{version}")]);

    // Replaced by rename, as deployment tools do: now it is FailOperator.
    let staged = operators.path().join("staging.tmp");
    std::fs::copy(
        dida_operators::fixtures_dir().join("FailOperator.wasm"),
        &staged,
    )
    .unwrap();
    std::fs::rename(&staged, &file).unwrap();
    let outcome = platform.run(&["HotOperator"], "x").await;
    let error = outcome.error.expect("HotOperator is now FailOperator");
    assert!(error.contains("operator failed on purpose"), "{error}");

    // One worker process served all three versions.
    let worker = &platform.worker_statuses().await[0];
    assert_eq!((worker.completed, worker.failed), (2, 1));
}
