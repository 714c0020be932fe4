//! One execution followed across every node's JSON logs by its id (issue 14): real
//! `dida` processes on loopback — storage nodes, a scheduler and two workers started
//! with `DIDA_LOG_FORMAT=json` — run a chain of two operators on two workers; then the
//! scheduler's and each worker's stderr, parsed line by line as JSON, must carry the
//! execution id (and, on the workers, the position of the operator they ran).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dida_local_cluster::{free_ports, ClusterSpec, LocalCluster};
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::worker_client::WorkerClient;
use dida_proto::execution::{RunRequest, SubmitRequest};
use dida_proto::storage::PingRequest;
use dida_proto::transport::lazy_channel;
use serde_json::Value;

mod support;
use support::{dida, eventually};

/// A node process logging JSON lines into a file; killed when dropped.
struct LoggingNode {
    child: Child,
    log: PathBuf,
}

impl LoggingNode {
    /// Starts `dida <args>` with JSON logs at `info`, its stderr going to `log`.
    fn spawn(args: &[&str], log: PathBuf) -> Self {
        let stderr = File::create(&log).expect("create the node's log file");
        let child = Command::new(dida())
            .args(args)
            .env("DIDA_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start a dida node");
        Self { child, log }
    }

    /// Every line logged so far, each parsed as JSON (a line that is not JSON fails
    /// the test: `--log-format json` promises one object per line).
    fn lines(&self) -> Vec<Value> {
        read_json_lines(&self.log)
    }
}

impl Drop for LoggingNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The complete lines of `path`, each parsed as a JSON object.
fn read_json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read a node's log file");
    // The last line may still be being written: only complete lines count.
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: not a JSON line ({e}): {line}", path.display()));
            assert!(
                value.is_object(),
                "{}: not an object: {line}",
                path.display()
            );
            value
        })
        .collect()
}

/// The innermost span of `line` whose `execution` field is `id`, if any: the
/// current span or one of its parents.
fn span_of<'a>(line: &'a Value, id: &str) -> Option<&'a Value> {
    let current = line.get("span").into_iter();
    let parents = line
        .get("spans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .rev();
    current
        .chain(parents)
        .find(|span| span.get("execution").and_then(Value::as_str) == Some(id))
}

/// The message of a log line.
fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_is_followed_across_every_nodes_json_logs() {
    let storage = LocalCluster::start(
        dida(),
        ClusterSpec {
            nodes: 3,
            replication_factor: 3,
            ..ClusterSpec::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(3).unwrap();
    let scheduler_url = format!("http://127.0.0.1:{}", ports[0]);
    let workers: Vec<(String, String)> = (1..=2)
        .map(|i| (format!("w{i}"), format!("http://127.0.0.1:{}", ports[i])))
        .collect();
    let membership = workers
        .iter()
        .map(|(id, url)| format!("{id}={url}"))
        .collect::<Vec<_>>()
        .join(",");
    let scheduler = LoggingNode::spawn(
        &[
            "scheduler",
            "--url",
            &scheduler_url,
            "--workers",
            &membership,
            "--storage",
            storage.peers(),
            "--replication-factor",
            "3",
        ],
        dir.path().join("scheduler.log"),
    );
    let mut worker_nodes = Vec::new();
    for (id, url) in &workers {
        worker_nodes.push((
            id.clone(),
            LoggingNode::spawn(
                &[
                    "worker",
                    "--id",
                    id,
                    "--url",
                    url,
                    "--storage",
                    storage.peers(),
                    "--scheduler",
                    &scheduler_url,
                    "--replication-factor",
                    "3",
                ],
                dir.path().join(format!("{id}.log")),
            ),
        ));
    }
    for (id, url) in &workers {
        let client = WorkerClient::new(lazy_channel(url, Duration::from_secs(2)).unwrap());
        eventually(
            Duration::from_secs(30),
            &format!("worker {id} to answer"),
            || {
                let mut client = client.clone();
                async move { client.ping(PingRequest {}).await.ok() }
            },
        )
        .await;
    }

    // Two operators on a fresh scheduler go to w1 then w2 (the least loaded, ties
    // rotating); the runs in the outcome say where each actually ran.
    let scheduler_client =
        SchedulerClient::new(lazy_channel(&scheduler_url, Duration::from_secs(30)).unwrap());
    let outcome = eventually(
        Duration::from_secs(30),
        "the scheduler to run the chain",
        || {
            let mut client = scheduler_client.clone();
            async move {
                let reply = client
                    .run(RunRequest {
                        submit: Some(SubmitRequest {
                            app: "traced.txt".into(),
                            operators: vec!["EchoOperator".into(), "EchoOperator".into()],
                            input: "followed".into(),
                        }),
                        wait_ms: 0,
                    })
                    .await
                    .ok()?
                    .into_inner();
                reply.outcome.filter(|_| reply.finished)
            }
        },
    )
    .await;
    assert_eq!(outcome.error, None, "{outcome:?}");
    let id = outcome.execution_id.clone();
    assert_eq!(outcome.runs.len(), 2, "{outcome:?}");
    let ran_on: Vec<(String, u32)> = outcome
        .runs
        .iter()
        .map(|run| (run.worker_id.clone(), run.order))
        .collect();
    assert_ne!(
        ran_on[0].0, ran_on[1].0,
        "the hops ran on one worker: {ran_on:?}"
    );

    // The scheduler logs the submit and the end inside the execution's span.
    eventually(
        Duration::from_secs(10),
        "the scheduler's JSON lines about the execution",
        || async {
            let lines = scheduler.lines();
            let ours: Vec<&Value> = lines.iter().filter(|l| span_of(l, &id).is_some()).collect();
            let logged = |text: &str| ours.iter().any(|l| message(l) == text);
            (logged("execution submitted") && logged("execution finished")).then(|| {
                for line in &ours {
                    let span = span_of(line, &id).unwrap();
                    assert_eq!(span["app"], "traced.txt", "{line}");
                }
                let finished = ours
                    .iter()
                    .find(|l| message(l) == "execution finished")
                    .unwrap();
                assert_eq!(finished["fields"]["outcome"], "succeeded", "{finished}");
                assert_eq!(finished["level"], "INFO", "{finished}");
            })
        },
    )
    .await;

    // Every worker that ran a hop logged it in a span with the id and its position.
    for (worker_id, order) in &ran_on {
        let node = &worker_nodes
            .iter()
            .find(|(id, _)| id == worker_id)
            .unwrap_or_else(|| panic!("no worker {worker_id}"))
            .1;
        eventually(
            Duration::from_secs(10),
            &format!("worker {worker_id}'s JSON lines about position {order}"),
            || async {
                node.lines().into_iter().find(|line| {
                    message(line) == "operator finished"
                        && span_of(line, &id).is_some_and(|span| {
                            span["position"] == *order
                                && span["operator"] == "EchoOperator"
                                && span["name"] == "operator"
                        })
                        && line["fields"]["outcome"] == "succeeded"
                })
            },
        )
        .await;
    }
}
