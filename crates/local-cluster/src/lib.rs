//! A cluster of real `dida` processes on loopback.
//!
//! Benchmarks and integration tests need the real thing — separate processes talking
//! over real sockets, killable with SIGKILL — without any set-up by hand. A
//! [`LocalCluster`] picks free loopback ports, starts one `dida storage` process per
//! node (and, on request, a `dida scheduler` and `dida worker`s that use them), waits
//! until every node answers, and kills them all when dropped, so no test leaves a
//! process behind.
//!
//! For the fault suite a cluster can also **pause** a storage node (SIGSTOP, then
//! SIGCONT) and, when started with [`ClusterSpec::partitionable`], **partition** the
//! nodes: each node then reaches each peer through its own [`proxy::Link`] (one per
//! ordered pair, passed with `dida storage --dial`), which [`LocalCluster::cut`] and
//! [`LocalCluster::heal`] silence and restore. Clients still reach the nodes directly.
//!
//! A storage node can also be **restarted** ([`LocalCluster::restart`]): SIGKILLed if
//! it still runs, then started again with exactly the command line it was first
//! started with — the same id, port, membership and `--dial` links, so it is reachable
//! at the same URL through the same proxies and comes back as the same member.
//!
//! And a storage node can **join** the running cluster ([`LocalCluster::join`]):
//! one of the [`ClusterSpec::spare`] nodes, whose ports (and proxy links) were
//! chosen at start, is started with `dida storage --join`.

pub mod proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use dida_core::{Membership, Standing};
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::worker_client::WorkerClient;
use dida_proto::storage::PingRequest;
use dida_proto::transport::lazy_channel;
use dida_storage_client::{cluster, ClientConfig, StorageClient};
use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use dida_settings::{
    Fsync, RoleSettings, SchedulerSettings, SettingsError, StorageSettings, WorkerSettings,
};

use crate::proxy::Link;

/// The flag giving a node its metrics address, as [`LocalCluster`] writes it.
const METRICS_LISTEN: &str = "--metrics-listen=";

/// The flag giving a node its RESP address, as [`LocalCluster`] writes it.
const RESP_LISTEN: &str = "--resp-listen=";

/// Settings of every node of a local cluster.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Number of storage nodes, named `s1`, `s2`, …
    pub nodes: usize,
    /// `--replication-factor`.
    pub replication_factor: usize,
    /// `--max-versions`.
    pub max_versions: usize,
    /// `--write-acks`.
    pub write_acks: usize,
    /// `--gossip-delay` of each node, in milliseconds (`s1` first); nodes beyond the
    /// list use 0.
    pub gossip_delays_ms: Vec<u64>,
    /// `--anti-entropy-interval` in milliseconds.
    pub anti_entropy_interval_ms: u64,
    /// Extra environment for the processes, e.g. `RUST_LOG`.
    pub env: Vec<(String, String)>,
    /// Route every node-to-node connection through a [`Link`] of this cluster, so
    /// that [`LocalCluster::cut`] can partition the nodes. Off by default: the links
    /// cost a relay hop on every replication message.
    pub partitionable: bool,
    /// Keep each node's records on disk (`--data-dir <root>/<id>`, `--fsync`), so a
    /// node killed and started again recovers them. `None`: in memory only.
    pub data: Option<DataDirs>,
    /// Give every node `--metrics-listen` on a free loopback port (see
    /// [`LocalCluster::metrics_addr`]).
    pub metrics: bool,
    /// Give every node of the first membership `--resp-listen` on a free loopback
    /// port (see [`LocalCluster::resp_addr`]).
    pub resp: bool,
    /// Storage nodes that may join the running cluster later
    /// ([`LocalCluster::join`]), named after the first ones (`s6`, `s7`, … after
    /// five). Their ports are chosen at start, and with [`Self::partitionable`] the
    /// links to and from them too, so that the nodes started now dial them
    /// through their links (`--dial` may name a node that joins later) and
    /// [`LocalCluster::cut`] can partition them like the others.
    pub spare: usize,
}

/// Where a durable cluster's nodes keep their data, and how they sync it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDirs {
    /// The directory holding each node's data directory, `<root>/<id>`.
    pub root: PathBuf,
    /// `--fsync` of every node: `always`, `batch` or `never`.
    pub fsync: String,
}

impl ClusterSpec {
    /// Checks the spec's settings as every storage node will check its own (the
    /// bounds and rules of `dida_settings`), before any process starts.
    pub fn check(&self) -> Result<(), SettingsError> {
        let peers = (1..=self.nodes)
            .map(|i| format!("s{i}=http://127.0.0.1:{i}"))
            .collect::<Vec<_>>()
            .join(",");
        for index in 0..self.nodes {
            storage_settings(self, &peers, index, None, None)?;
        }
        Ok(())
    }
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            nodes: 5,
            replication_factor: 3,
            max_versions: 5,
            write_acks: 1,
            gossip_delays_ms: Vec::new(),
            anti_entropy_interval_ms: 1000,
            env: Vec::new(),
            partitionable: false,
            data: None,
            metrics: false,
            resp: false,
            spare: 0,
        }
    }
}

/// A running local cluster. Dropping it SIGKILLs every node still running.
#[derive(Debug)]
pub struct LocalCluster {
    spec: ClusterSpec,
    membership: Membership,
    peers: String,
    /// The `dida` binary every node runs.
    binary: PathBuf,
    /// Each storage node's arguments (after the binary), by index, built once at
    /// start (at its join for a spare node, empty until then) so that a restart
    /// runs exactly the same command line.
    storage_args: Vec<Vec<String>>,
    /// Each storage node's process, by index: the first nodes, then the spare
    /// ones (`None` until they join).
    children: Vec<Option<Child>>,
    /// The spare nodes ([`ClusterSpec::spare`]) as `(id, url)`, by index past the
    /// first nodes.
    spares: Vec<(String, String)>,
    /// The metrics address of each spare node, chosen at start.
    spare_metrics: Vec<Option<SocketAddr>>,
    /// The spare nodes started so far, by index, in the order they joined (the
    /// order the cluster's configuration lists them in).
    joined: Vec<usize>,
    compute: Option<Compute>,
    /// With [`ClusterSpec::partitionable`]: the link node `from` dials node `to`
    /// through, by (from, to) index.
    links: BTreeMap<(usize, usize), Link>,
}

/// Settings of the compute half started by [`LocalCluster::start_compute`].
#[derive(Debug, Clone, Default)]
pub struct ComputeSpec {
    /// Number of workers, named `w1`, `w2`, …
    pub workers: usize,
    /// `--gossip-delay` of each worker in milliseconds (`w1` first); workers beyond
    /// the list use 0.
    pub worker_gossip_delays_ms: Vec<u64>,
    /// `--operators` of every worker (user operators taking precedence over built-ins).
    pub operators_dir: Option<PathBuf>,
    /// Further flags given to every worker, e.g. `["--max-wall-ms", "2000"]`.
    pub worker_args: Vec<String>,
    /// Further flags given to the scheduler, e.g. `["--http-listen", "127.0.0.1:8080"]`.
    pub scheduler_args: Vec<String>,
}

/// The scheduler and workers of a cluster, with their processes.
#[derive(Debug)]
struct Compute {
    scheduler_url: String,
    scheduler_args: Vec<String>,
    workers: Membership,
    scheduler: Child,
    worker_children: Vec<Child>,
    /// What every worker is started with, for workers added later.
    spec: ComputeSpec,
    /// Workers added by [`LocalCluster::add_worker`]: id, URL, process (`None`
    /// once reaped).
    added: Vec<AddedWorker>,
}

/// A worker started on a running cluster by [`LocalCluster::add_worker`].
#[derive(Debug)]
struct AddedWorker {
    id: String,
    url: String,
    child: Child,
}

impl LocalCluster {
    /// Starts `spec.nodes` storage processes of the `dida` binary at `binary` and waits
    /// (up to 30 s) until every one answers a ping.
    pub async fn start(binary: &Path, spec: ClusterSpec) -> anyhow::Result<Self> {
        if spec.nodes == 0 {
            bail!("a cluster needs at least one node");
        }
        spec.check()?;
        // The nodes' ports (the spare ones' too) stay reserved until the proxies
        // are up, so that no proxy (bound to a free port itself) takes the port of
        // a node not started yet.
        let total = spec.nodes + spec.spare;
        let reserved = reserve_ports(total)?;
        let ports = ports_of(&reserved)?;
        let url = |index: usize| format!("http://127.0.0.1:{}", ports[index]);
        let peers = (0..spec.nodes)
            .map(|i| format!("s{}={}", i + 1, url(i)))
            .collect::<Vec<_>>()
            .join(",");
        let membership = Membership::parse(&peers)?;
        let spares = (spec.nodes..total)
            .map(|i| (format!("s{}", i + 1), url(i)))
            .collect();
        let mut links = BTreeMap::new();
        if spec.partitionable {
            for (to, port) in ports.iter().enumerate() {
                let destination = SocketAddr::from(([127, 0, 0, 1], *port));
                for from in (0..total).filter(|&from| from != to) {
                    let link = Link::start(destination)
                        .await
                        .context("cannot start the partition proxies")?;
                    links.insert((from, to), link);
                }
            }
        }
        let mut metrics_ports: Vec<Option<SocketAddr>> = match spec.metrics {
            true => free_ports(total)?
                .into_iter()
                .map(|port| Some(SocketAddr::from(([127, 0, 0, 1], port))))
                .collect(),
            false => vec![None; total],
        };
        let spare_metrics = metrics_ports.split_off(spec.nodes);
        let resp_ports: Vec<Option<SocketAddr>> = match spec.resp {
            true => free_ports(spec.nodes)?
                .into_iter()
                .map(|port| Some(SocketAddr::from(([127, 0, 0, 1], port))))
                .collect(),
            false => vec![None; spec.nodes],
        };
        let storage_args = metrics_ports
            .into_iter()
            .zip(resp_ports)
            .enumerate()
            .map(|(index, (metrics, resp))| {
                storage_settings(&spec, &peers, index, dial(&links, index), metrics).map(
                    |mut settings| {
                        settings.resp_listen = resp;
                        settings.to_args()
                    },
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut cluster = Self {
            spec,
            membership,
            peers,
            binary: binary.to_path_buf(),
            storage_args,
            children: Vec::new(),
            spares,
            spare_metrics,
            joined: Vec::new(),
            compute: None,
            links,
        };
        drop(reserved);
        for i in 0..cluster.spec.nodes {
            let child = cluster.spawn_node(i)?;
            cluster.children.push(Some(child));
        }
        cluster.children.resize_with(total, || None);
        cluster.storage_args.resize_with(total, Vec::new);
        cluster.wait_until_ready(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// Starts a `dida scheduler` and `spec.workers` `dida worker` processes using this
    /// cluster's storage, and waits (up to 60 s: workers compile their operators on
    /// start) until each answers a ping.
    pub async fn start_compute(&mut self, binary: &Path, spec: ComputeSpec) -> anyhow::Result<()> {
        if spec.workers == 0 {
            bail!("the compute half needs at least one worker");
        }
        if self.compute.is_some() {
            bail!("this cluster already runs a scheduler and workers");
        }
        let ports = free_ports(spec.workers + 1)?;
        let scheduler_url = format!("http://127.0.0.1:{}", ports[0]);
        let workers = ports[1..]
            .iter()
            .enumerate()
            .map(|(i, port)| format!("w{}=http://127.0.0.1:{port}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        // The scheduler follows the storage view, and keeps deployed operators and
        // registered applications in the storage cluster.
        let scheduler_settings = SchedulerSettings::parse_without_env(
            [
                format!("--url={scheduler_url}"),
                format!("--workers={workers}"),
                format!("--storage={}", self.peers),
                format!("--replication-factor={}", self.spec.replication_factor),
            ]
            .into_iter()
            .chain(spec.scheduler_args.iter().cloned()),
        )
        .context("invalid scheduler settings")?;
        let scheduler = node_command(binary, &self.spec.env)
            .args(scheduler_settings.to_args())
            .spawn()
            .with_context(|| format!("cannot start {} scheduler", binary.display()))?;
        let membership = Membership::parse(&workers)?;
        let mut worker_children = Vec::new();
        for (index, member) in membership.members().iter().enumerate() {
            let delay = spec
                .worker_gossip_delays_ms
                .get(index)
                .copied()
                .unwrap_or(0);
            let child = self.spawn_worker(
                binary,
                &spec,
                &scheduler_url,
                &member.id,
                &member.url.to_string(),
                delay,
            )?;
            worker_children.push(child);
        }
        let mut compute = Compute {
            scheduler_url,
            scheduler_args: spec.scheduler_args.clone(),
            workers: membership,
            scheduler,
            worker_children,
            spec,
            added: Vec::new(),
        };
        let ready = compute.wait_until_ready(Duration::from_secs(60)).await;
        self.compute = Some(compute);
        ready
    }

    /// Starts `dida worker` `id` with `spec`'s worker flags, using this cluster's
    /// storage and the scheduler at `scheduler_url`.
    fn spawn_worker(
        &self,
        binary: &Path,
        spec: &ComputeSpec,
        scheduler_url: &str,
        id: &str,
        url: &str,
        gossip_delay_ms: u64,
    ) -> anyhow::Result<Child> {
        let mut args = vec![
            format!("--id={id}"),
            format!("--url={url}"),
            format!("--gossip-delay={gossip_delay_ms}"),
            format!("--storage={}", self.peers),
            format!("--scheduler={scheduler_url}"),
            format!("--replication-factor={}", self.spec.replication_factor),
        ];
        if let Some(dir) = &spec.operators_dir {
            args.push(format!("--operators={}", dir.display()));
        }
        args.extend(spec.worker_args.iter().cloned());
        let settings = WorkerSettings::parse_without_env(args)
            .with_context(|| format!("invalid settings of worker {id}"))?;
        node_command(binary, &self.spec.env)
            .args(settings.to_args())
            .spawn()
            .with_context(|| format!("cannot start {} worker for {id}", binary.display()))
    }

    /// Starts worker `id` on a free loopback port while the cluster runs (after
    /// [`LocalCluster::start_compute`], with the same worker flags), the way a
    /// worker joins a running cluster: it is in no `--workers` list, it registers
    /// itself with the scheduler and holds a lease. Waits (up to `limit`) until it
    /// answers a ping; whether the scheduler places work on it yet is the caller's
    /// to check (the scheduler's status lists it `alive`). Returns its URL.
    pub async fn add_worker(&mut self, id: &str, limit: Duration) -> anyhow::Result<String> {
        let compute = self.compute()?;
        let taken = compute.workers.get(id).is_ok() || compute.added.iter().any(|w| w.id == id);
        ensure!(!taken, "worker {id} already exists in this cluster");
        let url = format!("http://127.0.0.1:{}", free_ports(1)?[0]);
        let (spec, scheduler_url) = (compute.spec.clone(), compute.scheduler_url.clone());
        let mut child = self.spawn_worker(&self.binary, &spec, &scheduler_url, id, &url, 0)?;
        let worker = WorkerClient::new(lazy_channel(&url, Duration::from_secs(2))?);
        let deadline = Instant::now() + limit;
        let ready = wait_for(&format!("worker {id}"), &mut child, deadline, || {
            let mut worker = worker.clone();
            async move { worker.ping(PingRequest {}).await.is_ok() }
        })
        .await;
        if let Some(compute) = self.compute.as_mut() {
            compute.added.push(AddedWorker {
                id: id.to_string(),
                url: url.clone(),
                child,
            });
        }
        ready.map(|()| url)
    }

    /// Asks worker `id` to leave with SIGTERM, as an operator would: it tells the
    /// scheduler it is leaving (no new work goes to it), finishes what it runs,
    /// deregisters and exits. See [`LocalCluster::wait_worker_exit`].
    pub fn leave_worker(&self, id: &str) -> anyhow::Result<()> {
        let pid = self.worker_pid(id)?;
        let pid = i32::try_from(pid).with_context(|| format!("bad process id {pid}"))?;
        send_signal(Pid::from_raw(pid), Signal::SIGTERM)
            .with_context(|| format!("cannot send SIGTERM to worker {id}"))
    }

    /// Waits (up to `limit`) for worker `id`'s process to exit and reaps it;
    /// returns how it ended.
    pub async fn wait_worker_exit(
        &mut self,
        id: &str,
        limit: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let child = self.worker_child(id)?;
        tokio::time::timeout(limit, child.wait())
            .await
            .with_context(|| format!("worker {id} did not exit within {limit:?}"))?
            .with_context(|| format!("cannot reap worker {id}"))
    }

    /// The process id of worker `id`, while it runs.
    pub fn worker_pid(&self, id: &str) -> anyhow::Result<u32> {
        let compute = self.compute()?;
        let child = match compute.added.iter().find(|w| w.id == id) {
            Some(added) => &added.child,
            None => &compute.worker_children[compute.workers.index_of(id)?],
        };
        child
            .id()
            .with_context(|| format!("worker {id} is not running"))
    }

    fn worker_child(&mut self, id: &str) -> anyhow::Result<&mut Child> {
        let compute = self
            .compute
            .as_mut()
            .context("no scheduler and workers: call start_compute first")?;
        if let Some(index) = compute.added.iter().position(|w| w.id == id) {
            return Ok(&mut compute.added[index].child);
        }
        let index = compute.workers.index_of(id)?;
        Ok(&mut compute.worker_children[index])
    }

    /// Every worker: those started with the cluster (`w1`, …), then those added by
    /// [`LocalCluster::add_worker`], as `(id, url)`.
    pub fn all_workers(&self) -> anyhow::Result<Vec<(String, String)>> {
        let compute = self.compute()?;
        Ok(compute
            .workers
            .members()
            .iter()
            .map(|m| (m.id.clone(), m.url.to_string()))
            .chain(compute.added.iter().map(|w| (w.id.clone(), w.url.clone())))
            .collect())
    }

    /// The scheduler's URL (after [`LocalCluster::start_compute`]).
    pub fn scheduler_url(&self) -> anyhow::Result<&str> {
        Ok(&self.compute()?.scheduler_url)
    }

    /// The further flags the scheduler was started with (after
    /// [`LocalCluster::start_compute`]).
    pub fn scheduler_args(&self) -> anyhow::Result<&[String]> {
        Ok(&self.compute()?.scheduler_args)
    }

    /// The workers' membership, `w1` first (after [`LocalCluster::start_compute`]).
    pub fn workers(&self) -> anyhow::Result<&Membership> {
        Ok(&self.compute()?.workers)
    }

    fn compute(&self) -> anyhow::Result<&Compute> {
        self.compute
            .as_ref()
            .context("no scheduler and workers: call start_compute first")
    }

    fn spawn_node(&self, index: usize) -> anyhow::Result<Child> {
        node_command(&self.binary, &self.spec.env)
            .args(&self.storage_args[index])
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} storage for {}",
                    self.binary.display(),
                    self.id_at(index)
                )
            })
    }

    async fn wait_until_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let client = self.client()?;
        let deadline = Instant::now() + limit;
        let started = (0..self.spec.nodes).chain(self.joined.clone());
        for index in started.collect::<Vec<_>>() {
            self.wait_for_node(&client, index, deadline, limit).await?;
        }
        // Every node joins before it serves as a primary: the cluster is ready once
        // each counts every other alive.
        let left = deadline.saturating_duration_since(Instant::now());
        client
            .wait_until_all_alive(left)
            .await
            .context("the storage nodes answer but did not all join")?;
        Ok(())
    }

    /// Polls node `index`'s status until the node itself answers, failing if its
    /// process exits or `deadline` passes (`limit` is only for the message).
    async fn wait_for_node(
        &mut self,
        client: &StorageClient,
        index: usize,
        deadline: Instant,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let id = self.id_at(index);
        loop {
            // The node itself must answer: another process on its port (it
            // lost a race for the port) would answer a ping too.
            match client.status(&id).await {
                Ok(status) if status.id == id => return Ok(()),
                Ok(status) => bail!(
                    "storage node {id}'s address is served by {} ({}), not by {id}",
                    status.id,
                    status.url
                ),
                Err(_) => {}
            }
            if let Some(child) = self.children[index].as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("storage node {id} exited during start-up: {status}");
                }
            }
            if Instant::now() > deadline {
                bail!("storage node {id} did not answer within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Where storage node `id` serves `/metrics`, `/healthz` and `/readyz`, when the
    /// cluster was started with [`ClusterSpec::metrics`].
    pub fn metrics_addr(&self, id: &str) -> anyhow::Result<SocketAddr> {
        let args = self.storage_args(id)?;
        let addr = args
            .iter()
            .find_map(|arg| arg.strip_prefix(METRICS_LISTEN))
            .with_context(|| format!("{id} serves no metrics (ClusterSpec::metrics is off)"))?;
        addr.parse()
            .with_context(|| format!("bad metrics address {addr:?}"))
    }

    /// Where storage node `id` speaks the Redis protocol, when the cluster was
    /// started with [`ClusterSpec::resp`].
    pub fn resp_addr(&self, id: &str) -> anyhow::Result<SocketAddr> {
        let args = self.storage_args(id)?;
        let addr = args
            .iter()
            .find_map(|arg| arg.strip_prefix(RESP_LISTEN))
            .with_context(|| format!("{id} serves no RESP (ClusterSpec::resp is off)"))?;
        addr.parse()
            .with_context(|| format!("bad RESP address {addr:?}"))
    }

    /// The command line storage node `id` runs (after the binary): the same on
    /// every (re)start.
    pub fn storage_args(&self, id: &str) -> anyhow::Result<&[String]> {
        Ok(&self.storage_args[self.index_of(id)?])
    }

    /// Restarts storage node `id`: SIGKILLs it if it still runs (a crash, not a
    /// shutdown), starts it again with its original command line (same port,
    /// membership and proxy links), and waits up to `limit` until it answers its
    /// status itself. It then rejoins (catches up, then serves) on its own;
    /// [`StorageClient::wait_until_all_alive`] waits for that.
    pub async fn restart(&mut self, id: &str, limit: Duration) -> anyhow::Result<()> {
        let index = self.index_of(id)?;
        if let Some(mut child) = self.children[index].take() {
            child
                .kill()
                .await
                .with_context(|| format!("cannot kill {id} before restarting it"))?;
        }
        let child = self.spawn_node(index)?;
        self.children[index] = Some(child);
        tracing::info!(node = %id, "local cluster: storage node restarted");
        let client = self.client()?;
        self.wait_for_node(&client, index, Instant::now() + limit, limit)
            .await
            .with_context(|| format!("restarted storage node {id} did not come back"))
    }

    /// SIGKILLs every storage node at once — every signal sent before any process is
    /// reaped, as a power cut would — and reaps them.
    pub async fn kill_all(&mut self) -> anyhow::Result<()> {
        for child in self.children.iter_mut().flatten() {
            child
                .start_kill()
                .context("cannot SIGKILL a storage node")?;
        }
        for slot in &mut self.children {
            if let Some(mut child) = slot.take() {
                child.wait().await.context("cannot reap a storage node")?;
            }
        }
        Ok(())
    }

    /// Starts every storage node that is not running, with its original command
    /// line, and waits up to `limit` until every node answers and counts every other
    /// alive.
    pub async fn start_stopped(&mut self, limit: Duration) -> anyhow::Result<()> {
        let started = (0..self.spec.nodes).chain(self.joined.clone());
        for index in started.collect::<Vec<_>>() {
            if self.children[index].is_none() {
                self.children[index] = Some(self.spawn_node(index)?);
            }
        }
        self.wait_until_ready(limit).await
    }

    /// Deletes the data directory of storage node `id`, which must not be running:
    /// its disk was lost, and it comes back empty, as a replacement.
    pub fn delete_data(&self, id: &str) -> anyhow::Result<()> {
        let index = self.index_of(id)?;
        ensure!(self.children[index].is_none(), "{id} still runs");
        let data = self
            .spec
            .data
            .as_ref()
            .context("the cluster keeps no data directories")?;
        let dir = data.root.join(id);
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot delete {}", dir.display()))
    }

    /// Whether storage node `id`'s process runs (it was not killed, or was restarted).
    pub fn is_running(&self, id: &str) -> anyhow::Result<bool> {
        Ok(self.children[self.index_of(id)?].is_some())
    }

    /// The `--peers` value describing this cluster.
    pub fn peers(&self) -> &str {
        &self.peers
    }

    /// Starts spare node `id` ([`ClusterSpec::spare`]) with `dida storage --join`
    /// and the seeds `seeds` (URLs of running members), with the flags of the
    /// others and its links, and waits up to `limit` until it answers its status
    /// itself: it answers once the cluster admitted it, and then catches up and
    /// turns active on its own (the caller waits for that, asking the cluster).
    /// Its command line is kept: a restart asks the same seeds again.
    pub async fn join(
        &mut self,
        id: &str,
        seeds: &[String],
        limit: Duration,
    ) -> anyhow::Result<()> {
        let index = self.index_of(id)?;
        ensure!(
            index >= self.spec.nodes,
            "{id} is one of the first storage nodes, not a spare one"
        );
        ensure!(
            !self.joined.contains(&index),
            "spare storage node {id} was started already"
        );
        let spare = index - self.spec.nodes;
        let url = self.spares[spare].1.clone();
        let settings = StorageSettings::joining(id, &url, seeds)?;
        let metrics = self.spare_metrics[spare];
        let settings = with_spec(
            settings,
            &self.spec,
            index,
            dial(&self.links, index),
            metrics,
        )?;
        self.storage_args[index] = settings.to_args();
        let child = self.spawn_node(index)?;
        self.children[index] = Some(child);
        self.joined.push(index);
        tracing::info!(node = %id, "local cluster: storage node joining");
        let client = self.client()?;
        self.wait_for_node(&client, index, Instant::now() + limit, limit)
            .await
            .with_context(|| format!("joining storage node {id} did not answer"))
    }

    /// Waits up to `limit` until the cluster lists storage node `id` active and
    /// alive — a node that joined has then caught up, entered the ring and
    /// finished its join — failing early if its process exits.
    pub async fn wait_active(&mut self, id: &str, limit: Duration) -> anyhow::Result<()> {
        let index = self.index_of(id)?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(child) = self.children[index].as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("storage node {id} exited: {status}");
                }
            }
            if self.is_active(id).await? {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("storage node {id} was not active within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the cluster, asked now, lists storage node `id` active and alive
    /// (false when no node answers within 2 s).
    pub async fn is_active(&self, id: &str) -> anyhow::Result<bool> {
        let members = self.members()?;
        let Ok(reply) = cluster::members(&members, Some(id), Duration::from_secs(2)).await else {
            return Ok(false);
        };
        Ok(cluster::MembersView::of(&reply).is_ok_and(|view| {
            view.rows
                .iter()
                .any(|r| r.id == id && r.standing == Standing::Active && r.state == "alive")
        }))
    }

    /// Every storage node started so far, in the order the cluster's
    /// configuration lists them: the first ones (`--peers`), then those that
    /// joined ([`LocalCluster::join`]), in the order they did.
    pub fn members(&self) -> anyhow::Result<Membership> {
        let first = self
            .membership
            .members()
            .iter()
            .map(|m| (m.id.clone(), m.url.to_string()));
        let joined = self.joined.iter().map(|&index| {
            let (id, url) = &self.spares[index - self.spec.nodes];
            (id.clone(), url.clone())
        });
        Ok(Membership::in_order(first.chain(joined))?)
    }

    /// The id of storage node `index`: a first node's, or a spare one's.
    fn id_at(&self, index: usize) -> String {
        match index.checked_sub(self.spec.nodes) {
            Some(spare) => self.spares[spare].0.clone(),
            None => self.membership.members()[index].id.clone(),
        }
    }

    /// The index of storage node `id`: a first node's, or a spare one's (after
    /// the first nodes).
    fn index_of(&self, id: &str) -> anyhow::Result<usize> {
        if let Ok(index) = self.membership.index_of(id) {
            return Ok(index);
        }
        self.spares
            .iter()
            .position(|(spare, _)| spare == id)
            .map(|spare| self.spec.nodes + spare)
            .with_context(|| format!("no storage node {id} in this cluster, spare or not"))
    }

    /// The cluster's membership.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// Node ids, `s1` first.
    pub fn ids(&self) -> impl Iterator<Item = String> {
        (1..=self.spec.nodes).map(|i| format!("s{i}"))
    }

    /// A routing client configured like the nodes, of every node started so far
    /// ([`LocalCluster::members`]).
    pub fn client(&self) -> anyhow::Result<StorageClient> {
        Ok(StorageClient::new(
            self.members()?,
            ClientConfig {
                replication_factor: self.spec.replication_factor,
                deadline: Duration::from_secs(5),
                ..ClientConfig::default()
            },
        )?)
    }

    /// SIGKILLs node `id` (a fail-stop crash) and reaps it.
    pub async fn kill(&mut self, id: &str) -> anyhow::Result<()> {
        let index = self.index_of(id)?;
        let Some(mut child) = self.children[index].take() else {
            bail!("storage node {id} is not running");
        };
        child
            .kill()
            .await
            .with_context(|| format!("cannot kill {id}"))?;
        Ok(())
    }

    /// How storage node `id`'s process ended, once it has ended on its own (a
    /// node removed from the cluster stops by itself); `None` while it runs.
    pub fn try_wait(&mut self, id: &str) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let index = self.index_of(id)?;
        let child = self.children[index]
            .as_mut()
            .with_context(|| format!("storage node {id} was not started or was killed"))?;
        child
            .try_wait()
            .with_context(|| format!("cannot wait for {id}"))
    }

    /// Stops node `id` with SIGSTOP: the process keeps its sockets (the kernel still
    /// accepts connections and buffers bytes) but answers nothing — a long GC pause,
    /// a swapped-out or descheduled VM — until [`LocalCluster::resume`].
    pub fn pause(&self, id: &str) -> anyhow::Result<()> {
        self.signal(id, Signal::SIGSTOP)
    }

    /// Lets node `id` run again with SIGCONT after [`LocalCluster::pause`].
    pub fn resume(&self, id: &str) -> anyhow::Result<()> {
        self.signal(id, Signal::SIGCONT)
    }

    /// Whether node `id` is stopped now (SIGSTOP takes effect asynchronously: each
    /// thread stops when it is next scheduled, so a just-paused node may still answer
    /// for a few milliseconds). Read from `/proc/<pid>/stat`, so Linux only.
    pub fn is_stopped(&self, id: &str) -> anyhow::Result<bool> {
        let pid = self.pid(id)?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("cannot read the state of {id} (process {pid})"))?;
        // `pid (comm) state …`: the command may hold spaces and parentheses, the
        // state follows the last `)`.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .with_context(|| format!("unexpected /proc/{pid}/stat: {stat:?}"))?;
        Ok(state == "T")
    }

    /// The process id of storage node `id`, while it runs (it changes on restart).
    pub fn pid(&self, id: &str) -> anyhow::Result<u32> {
        let index = self.index_of(id)?;
        self.children[index]
            .as_ref()
            .and_then(Child::id)
            .with_context(|| format!("storage node {id} is not running"))
    }

    fn signal(&self, id: &str, signal: Signal) -> anyhow::Result<()> {
        let pid = self.pid(id)?;
        let pid = i32::try_from(pid).with_context(|| format!("bad process id {pid}"))?;
        send_signal(Pid::from_raw(pid), signal)
            .with_context(|| format!("cannot send {signal} to {id}"))
    }

    /// Cuts the connections node `from` makes to node `to` (both directions of
    /// their bytes), silently, until [`LocalCluster::heal`]; the connections `to`
    /// makes to `from` are not affected. Needs [`ClusterSpec::partitionable`].
    pub fn cut(&self, from: &str, to: &str) -> anyhow::Result<()> {
        self.link(from, to)?.cut();
        Ok(())
    }

    /// Restores what [`LocalCluster::cut`] cut.
    pub fn heal(&self, from: &str, to: &str) -> anyhow::Result<()> {
        self.link(from, to)?.heal();
        Ok(())
    }

    /// Heals every cut link.
    pub fn heal_all(&self) {
        for link in self.links.values() {
            link.heal();
        }
    }

    fn link(&self, from: &str, to: &str) -> anyhow::Result<&Link> {
        let key = (self.index_of(from)?, self.index_of(to)?);
        self.links.get(&key).with_context(|| {
            if self.spec.partitionable {
                format!("no link from {from} to {to}")
            } else {
                "the cluster was not started partitionable".to_string()
            }
        })
    }

    /// Process ids of the nodes still running (storage, then scheduler and workers).
    pub fn pids(&self) -> Vec<u32> {
        let compute = self.compute.iter().flat_map(|c| {
            std::iter::once(&c.scheduler)
                .chain(&c.worker_children)
                .chain(c.added.iter().map(|w| &w.child))
        });
        self.children
            .iter()
            .flatten()
            .chain(compute)
            .filter_map(Child::id)
            .collect()
    }
}

impl Compute {
    async fn wait_until_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let rpc_deadline = Duration::from_secs(2);
        let scheduler = SchedulerClient::new(lazy_channel(&self.scheduler_url, rpc_deadline)?);
        wait_for("scheduler", &mut self.scheduler, deadline, || {
            let mut scheduler = scheduler.clone();
            async move { scheduler.ping(PingRequest {}).await.is_ok() }
        })
        .await?;
        for (member, child) in self.workers.members().iter().zip(&mut self.worker_children) {
            let worker = WorkerClient::new(lazy_channel(&member.url.to_string(), rpc_deadline)?);
            wait_for(&format!("worker {}", member.id), child, deadline, || {
                let mut worker = worker.clone();
                async move { worker.ping(PingRequest {}).await.is_ok() }
            })
            .await?;
        }
        Ok(())
    }
}

/// Polls `answers` until it is true, failing if `child` exits or `deadline` passes.
async fn wait_for<F, Fut>(
    what: &str,
    child: &mut Child,
    deadline: Instant,
    mut answers: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if answers().await {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited during start-up: {status}");
        }
        if Instant::now() > deadline {
            bail!("{what} did not answer in time");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The settings of storage node `index` (`s1` first) of a cluster `spec` whose
/// nodes are `peers`: the spec's settings, and with [`ClusterSpec::partitionable`]
/// the links it dials its peers through (`dial`), validated as the node will
/// validate them.
fn storage_settings(
    spec: &ClusterSpec,
    peers: &str,
    index: usize,
    dial: Option<String>,
    metrics_listen: Option<SocketAddr>,
) -> Result<StorageSettings, SettingsError> {
    let id = format!("s{}", index + 1);
    let membership =
        Membership::parse(peers).map_err(|e| SettingsError::Flag(format!("--peers: {e}")))?;
    let url = membership
        .get(&id)
        .map_err(|e| SettingsError::Flag(e.to_string()))?
        .url
        .to_string();
    let settings = StorageSettings::new(&id, &url, peers)?;
    with_spec(settings, spec, index, dial, metrics_listen)
}

/// `settings` with the flags `spec` gives storage node `index` (its gossip delay,
/// the cluster's placement, acknowledgement and repair settings, its data
/// directory), its `--dial` links and metrics address, validated as the node will
/// validate them: what the first nodes and the spare ones share.
fn with_spec(
    mut settings: StorageSettings,
    spec: &ClusterSpec,
    index: usize,
    dial: Option<String>,
    metrics_listen: Option<SocketAddr>,
) -> Result<StorageSettings, SettingsError> {
    let id = settings.id.clone();
    settings.gossip_delay = spec.gossip_delays_ms.get(index).copied().unwrap_or(0);
    settings.replication_factor = Some(spec.replication_factor);
    settings.max_versions = spec.max_versions;
    settings.write_acks = spec.write_acks;
    settings.anti_entropy_interval = spec.anti_entropy_interval_ms;
    settings.dial = dial;
    if let Some(data) = &spec.data {
        settings.data_dir = Some(data.root.join(&id));
        settings.fsync = Some(match data.fsync.as_str() {
            "always" => Fsync::Always,
            "batch" => Fsync::Batch,
            "never" => Fsync::Never,
            other => {
                return Err(SettingsError::Flag(format!(
                    "--fsync {other:?}: expected always, batch or never"
                )))
            }
        });
    }
    settings.metrics_listen = metrics_listen;
    settings.validated()
}

/// The `--dial` of storage node `index` with [`ClusterSpec::partitionable`]: the
/// link it reaches each peer through.
fn dial(links: &BTreeMap<(usize, usize), Link>, index: usize) -> Option<String> {
    let dial: Vec<String> = links
        .iter()
        .filter(|((from, _), _)| *from == index)
        .map(|((_, to), link)| format!("s{}=http://{}", to + 1, link.addr()))
        .collect();
    (!dial.is_empty()).then(|| dial.join(","))
}

/// A `dida` node process: quiet unless `RUST_LOG` asks for more, its stdout
/// discarded, its logs on our stderr, killed when its handle is dropped.
fn node_command(binary: &Path, env: &[(String, String)]) -> Command {
    let mut command = Command::new(binary);
    command
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_string()),
        )
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command
}

/// Reserves `count` distinct free TCP ports on 127.0.0.1.
///
/// The ports are found by binding them and released before the nodes bind them, so
/// another process could in principle take one in between; the nodes then fail to
/// start with a clear "port in use" error rather than misbehaving. They are drawn
/// below Linux's ephemeral range (32768 and up), which every outgoing connection
/// takes its local port from — a port of that range released here may be handed
/// to a connection of a running node before the new node binds it — and never
/// twice in one process, so tests running side by side do not share one.
pub fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    ports_of(&reserve_ports(count)?)
}

/// The ports [`free_ports`] draws from: below the ephemeral range, above the
/// well-known and most registered services.
const FREE_PORTS: std::ops::Range<u16> = 20_000..32_768;

/// Binds `count` distinct free loopback ports and keeps them bound until the
/// listeners are dropped.
fn reserve_ports(count: usize) -> anyhow::Result<Vec<TcpListener>> {
    static HANDED_OUT: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .map_err(|_| anyhow::anyhow!("the port registry is poisoned"))?;
    let span = u64::from(FREE_PORTS.end - FREE_PORTS.start);
    let mut draw = {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.finish()
    };
    let mut listeners = Vec::with_capacity(count);
    let mut tries = 0;
    while listeners.len() < count {
        tries += 1;
        if tries > 20 * span {
            bail!("cannot reserve {count} loopback ports: too few free ones below 32768");
        }
        // A 64-bit LCG (Knuth's MMIX constants): enough to spread the draws.
        draw = draw
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let port = FREE_PORTS.start + ((draw >> 33) % span) as u16;
        if handed_out.contains(&port) {
            continue;
        }
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            handed_out.insert(port);
            listeners.push(listener);
        }
    }
    Ok(listeners)
}

/// The ports of `listeners`.
fn ports_of(listeners: &[TcpListener]) -> anyhow::Result<Vec<u16>> {
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Path of the `dida` binary next to the running executable (for benchmarks started
/// by `dida` itself, this is the running executable).
pub fn current_dida() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot locate the running dida binary")
}
