//! A cluster as users run one against a scheduler: storage nodes, a scheduler
//! serving its HTTP gateway, and workers started only when asked (so a test can
//! act before any worker runs), all real processes on loopback; `dida` commands
//! and HTTP calls against it.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use dida_bench::http_client::{HttpClient, HttpResponse, Method, StatusCode};
use dida_local_cluster::{free_ports, ClusterSpec, LocalCluster};
use dida_proto::execution::worker_client::WorkerClient;
use dida_proto::storage::PingRequest;
use dida_proto::transport::lazy_channel;
use serde_json::{json, Value};

use super::{dida, eventually};

/// Kills a node process when dropped, so a failing test leaves nothing running.
pub struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Storage nodes, a scheduler with its gateway, and the workers it knows (not
/// started until [`Cluster::start_workers`]).
pub struct LiveCluster {
    pub storage: LocalCluster,
    pub scheduler_url: String,
    pub gateway: String,
    workers: Vec<(String, String)>,
    processes: Vec<Node>,
    pub http: HttpClient,
}

impl LiveCluster {
    /// Three storage nodes and a scheduler of `workers` workers, none running yet.
    pub async fn start(workers: usize) -> Self {
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
        let ports = free_ports(workers + 2).unwrap();
        let scheduler_url = format!("http://127.0.0.1:{}", ports[0]);
        let gateway = format!("127.0.0.1:{}", ports[1]);
        let workers: Vec<(String, String)> = (0..workers)
            .map(|i| {
                (
                    format!("w{}", i + 1),
                    format!("http://127.0.0.1:{}", ports[i + 2]),
                )
            })
            .collect();
        let membership = workers
            .iter()
            .map(|(id, url)| format!("{id}={url}"))
            .collect::<Vec<_>>()
            .join(",");
        let scheduler = Command::new(dida())
            .env("RUST_LOG", "warn")
            .args([
                "scheduler",
                "--url",
                &scheduler_url,
                "--workers",
                &membership,
            ])
            .args(["--storage", storage.peers(), "--replication-factor", "3"])
            .args(["--http-listen", &gateway])
            .spawn()
            .unwrap();
        let cluster = Self {
            storage,
            scheduler_url,
            gateway: format!("http://{gateway}"),
            workers,
            processes: vec![Node(scheduler)],
            http: HttpClient::new(Duration::from_secs(60)),
        };
        let openapi = format!("{}/v1/openapi.yaml", cluster.gateway);
        eventually(Duration::from_secs(30), "the gateway to answer", || async {
            cluster
                .http
                .get(&openapi)
                .await
                .ok()
                .filter(|r| r.status == StatusCode::OK)
        })
        .await;
        cluster
    }

    /// Starts every worker and waits until each answers.
    pub async fn start_workers(&mut self) {
        for (id, url) in &self.workers {
            let worker = Command::new(dida())
                .env("RUST_LOG", "warn")
                .args(["worker", "--id", id, "--url", url])
                .args([
                    "--storage",
                    self.storage.peers(),
                    "--scheduler",
                    &self.scheduler_url,
                ])
                .args(["--replication-factor", "3"])
                .spawn()
                .unwrap();
            self.processes.push(Node(worker));
        }
        for (id, url) in &self.workers {
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
    }

    /// The scheduler's process id (to read its memory in /proc).
    pub fn scheduler_pid(&self) -> u32 {
        self.processes[0].0.id()
    }

    /// Kills every worker (SIGKILL).
    pub fn kill_workers(&mut self) {
        self.processes.truncate(1);
    }

    /// Runs `dida <args>` against this cluster's scheduler.
    pub fn dida(&self, args: &[&str]) -> Output {
        Command::new(dida())
            .args(args)
            .env("DIDA_SCHEDULER", &self.scheduler_url)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> HttpResponse {
        self.try_post(path, body).await.unwrap()
    }

    /// [`Self::post`], returning a failed exchange instead of failing the test.
    pub async fn try_post(&self, path: &str, body: Value) -> anyhow::Result<HttpResponse> {
        self.http
            .post_json(&format!("{}{path}", self.gateway), &body)
            .await
    }

    pub async fn put_text(&self, path: &str, text: &str) -> HttpResponse {
        self.http
            .send(
                Method::PUT,
                &format!("{}{path}", self.gateway),
                Some(("text/plain", text.as_bytes().to_vec())),
            )
            .await
            .unwrap()
    }

    /// Registers application `name` (`PUT /v1/apps/NAME`), which must be new.
    pub async fn register_app(&self, name: &str, app_file: &str) {
        let registered = self.put_text(&format!("/v1/apps/{name}"), app_file).await;
        assert_eq!(
            registered.status,
            StatusCode::CREATED,
            "{}",
            registered.body
        );
    }

    /// Invokes application `name` with `input`, waiting for the end; returns the
    /// execution, which must have succeeded.
    pub async fn invoke_app(&self, name: &str, input: &str) -> Value {
        let invoked = self
            .post(
                &format!("/v1/apps/{name}/invoke"),
                json!({ "input": input }),
            )
            .await;
        assert_eq!(invoked.status, StatusCode::OK, "{}", invoked.body);
        let execution = invoked.json().unwrap();
        assert_eq!(execution["status"], "succeeded", "{execution}");
        execution
    }

    pub async fn get(&self, path: &str) -> HttpResponse {
        self.http
            .get(&format!("{}{path}", self.gateway))
            .await
            .unwrap()
    }
}

/// A command's stdout, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A command's stderr, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
