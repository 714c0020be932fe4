//! Helpers shared by the integration tests (each test file includes this module
//! with `mod support;`). Each test binary uses its own subset of them, hence the
//! `dead_code` allowance.
#![allow(dead_code)]

pub mod live;
pub mod prom;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use dida_local_cluster::{ClusterSpec, ComputeSpec, DataDirs, LocalCluster};
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::{ExecutionOutcome, OutcomeRequest};
use dida_proto::transport::NodeChannel;

/// The `dida` binary cargo built for these tests.
pub fn dida() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_dida"))
}

/// The PuppetMaster examples (scripts, and their `apps/` and `data/` folders).
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/puppetmaster")
}

/// Copies the examples' `apps/` and `data/` folders into `dir`, so a script
/// written there finds them where the example scripts do.
pub fn copy_example_files(dir: &Path) {
    for sub in ["apps", "data"] {
        std::fs::create_dir(dir.join(sub)).unwrap();
        for entry in std::fs::read_dir(examples().join(sub)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(sub).join(entry.file_name())).unwrap();
        }
    }
}

/// A finished command's standard output, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A finished command's standard error, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// One storage node (replication factor 1) and nothing else.
pub async fn one_storage_node() -> LocalCluster {
    let spec = ClusterSpec {
        nodes: 1,
        replication_factor: 1,
        ..ClusterSpec::default()
    };
    LocalCluster::start(dida(), spec).await.unwrap()
}

/// The smallest whole platform: [`one_storage_node`], and the scheduler and
/// workers `compute` asks for. For tests about the compute side, where storage
/// only needs to be there.
pub async fn one_storage_node_and(compute: ComputeSpec) -> LocalCluster {
    let mut cluster = one_storage_node().await;
    cluster.start_compute(dida(), compute).await.unwrap();
    cluster
}

/// `nodes` storage nodes, R = 3, `--write-acks 2`, each with a data directory under
/// `root` synced before every acknowledgement.
pub async fn durable_cluster(nodes: usize, root: &Path) -> LocalCluster {
    LocalCluster::start(
        dida(),
        ClusterSpec {
            nodes,
            replication_factor: 3,
            write_acks: 2,
            data: Some(DataDirs {
                root: root.to_path_buf(),
                fsync: "always".into(),
            }),
            ..ClusterSpec::default()
        },
    )
    .await
    .expect("the durable cluster starts")
}

/// This user's cluster token, as every dida process of the user reads it: what a
/// test holds to send calls between nodes as a member would.
pub fn member_token() -> String {
    let path = dida_proto::cookie::default_path().unwrap();
    dida_proto::cookie::load_or_create(&path).unwrap()
}

/// Of the keys the nodes `ids` hold, how many are not held by exactly their
/// `replication_factor` replicas in `client`'s ring (invariant H2), and how many
/// keys they hold; `None` if a node could not be listed.
pub async fn misplaced_keys(
    client: &dida_storage_client::StorageClient,
    ids: &[&str],
    replication_factor: usize,
) -> Option<(usize, usize)> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut holders: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for &id in ids {
        for record in client.list(id).await.ok()? {
            holders.entry(record.key).or_default().insert(id);
        }
    }
    let misplaced = holders
        .iter()
        .filter(|(key, held_by)| {
            let replicas: BTreeSet<&str> = client.replicas(key).into_iter().collect();
            **held_by != replicas || replicas.len() != replication_factor
        })
        .count();
    Some((misplaced, holders.len()))
}

/// Polls `check` every 25 ms until it returns `Some`, failing the test after `limit`:
/// the tests wait for a condition, never for a guessed amount of time.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits (up to 60 s) for the outcome of execution `id`, as `dida run` does.
pub async fn outcome(scheduler: &SchedulerClient<NodeChannel>, id: &str) -> ExecutionOutcome {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reply = scheduler
            .clone()
            .outcome(OutcomeRequest {
                execution_id: id.to_string(),
                wait_ms: 5_000,
            })
            .await
            .expect("outcome call")
            .into_inner();
        if reply.finished {
            return reply.outcome.expect("a finished execution has an outcome");
        }
        assert!(
            Instant::now() < deadline,
            "execution {id} did not finish in 60 s"
        );
    }
}

/// The load the membership tests run through their changes: two writers of
/// fresh keys (`during-W-N`) and a compare-and-swap counter (key `counter`,
/// which must hold a number), until [`Load::stop`].
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acknowledged: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    writers: Vec<tokio::task::JoinHandle<(std::collections::BTreeMap<String, String>, usize)>>,
    counter: tokio::task::JoinHandle<(u64, u64)>,
}

/// What a [`Load`] did.
pub struct LoadOutcome {
    /// The writes acknowledged, key to value.
    pub acknowledged: std::collections::BTreeMap<String, String>,
    /// Writes that failed: a failed write may still have been applied, so its
    /// key may exist.
    pub failed: usize,
    /// Increments of the counter acknowledged.
    pub increments: u64,
    /// Increments whose outcome is unknown (the call failed after it may have
    /// been applied).
    pub unknown: u64,
}

impl Load {
    /// Starts the writers and the counter on `client`.
    pub fn start(client: &std::sync::Arc<dida_storage_client::StorageClient>) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let writers = (0..2)
            .map(|w| {
                let (client, stop, count) = (client.clone(), stop.clone(), acknowledged.clone());
                tokio::spawn(async move {
                    let (mut acknowledged, mut failed) = (std::collections::BTreeMap::new(), 0);
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let (key, value) = (format!("during-{w}-{n}"), format!("value {w} {n}"));
                        if client.write(&key, &value).await.is_ok() {
                            acknowledged.insert(key, value);
                            count.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failed += 1;
                        }
                        n += 1;
                    }
                    (acknowledged, failed)
                })
            })
            .collect();
        let counter = {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut increments, mut unknown) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let Ok(Some(current)) = client.read("counter", None).await else {
                        continue;
                    };
                    let next = (current.value.parse::<u64>().unwrap() + 1).to_string();
                    match client
                        .update_if_value_is("counter", &current.value, &next)
                        .await
                    {
                        Ok(Some(_)) => increments += 1,
                        Ok(None) => {}
                        Err(_) => unknown += 1,
                    }
                }
                (increments, unknown)
            })
        };
        Self {
            stop,
            acknowledged,
            writers,
            counter,
        }
    }

    /// Writes acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.acknowledged.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the load and returns what it did.
    pub async fn stop(self) -> LoadOutcome {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut acknowledged, mut failed) = (std::collections::BTreeMap::new(), 0);
        for writer in self.writers {
            let (written, failures) = writer.await.unwrap();
            acknowledged.extend(written);
            failed += failures;
        }
        let (increments, unknown) = self.counter.await.unwrap();
        LoadOutcome {
            acknowledged,
            failed,
            increments,
            unknown,
        }
    }
}

/// Runs `dida cluster ARGS --peers PEERS` to its end.
pub async fn dida_cluster(peers: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(dida())
        .arg("cluster")
        .args(args)
        .args(["--peers", peers])
        .output()
        .await
        .expect("dida cluster runs")
}

/// `dida cluster members --json`: the cluster's configuration and states.
pub async fn cluster_members(peers: &str) -> serde_json::Value {
    let output = dida_cluster(peers, &["members", "--json"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_str(stdout(&output).trim()).expect("one JSON object")
}

/// The state `members` (from [`cluster_members`]) gives node `id`; empty if it
/// lists no such node.
pub fn member_state(members: &serde_json::Value, id: &str) -> String {
    members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .map(|m| m["state"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Variables the outer `cargo test` sets (or passes on) that would redirect or
/// reconfigure the scaffold's own builds: flags, a forced target or target
/// directory, wrappers, profile overrides, and the outer package's identity.
const SCRUBBED: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_BUILD_DIR",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_TARGET_TMPDIR",
];

/// Takes from `command` the variables of [`SCRUBBED`] and every `CARGO_PROFILE_…`,
/// so that a cargo it runs (itself, or through `dida build`) builds as it would on a
/// user's machine.
pub fn as_on_a_users_machine(command: &mut std::process::Command) {
    for var in SCRUBBED {
        command.env_remove(var);
    }
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("CARGO_PROFILE_") {
            command.env_remove(&var);
        }
    }
}

/// The target directory the tests build operator crates in, kept between runs (and
/// between tests) so that a rerun builds incrementally.
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffold-target")
}

/// Runs `command`, failing the test with its output when it fails; its stdout.
pub fn run_ok(command: &mut std::process::Command) -> String {
    let output = command.output().expect("start the command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}
