//! A local cluster of durable `dida storage` processes: each node with a data
//! directory of its own under one root, all of them killable at once and
//! restartable on the same ports and directories. `dida bench storage
//! --durability` measures it, and the restart test (`crates/dida/tests/
//! durable_restart.rs`) crashes and restarts it.
//!
//! Kept apart from `dida-local-cluster`, whose nodes live in memory and never come
//! back: restarting is what this one is for.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use dida_core::Membership;
use dida_local_cluster::free_ports;
use dida_storage_client::{ClientConfig, StorageClient};
use tokio::process::{Child, Command};

/// What the durable cluster runs with.
#[derive(Debug, Clone)]
pub struct DurableSpec {
    /// Storage nodes.
    pub nodes: usize,
    /// `--replication-factor` of every node.
    pub replication_factor: usize,
    /// `--write-acks` of every node.
    pub write_acks: usize,
    /// `--gossip-delay` of every node, in milliseconds.
    pub gossip_delay_ms: u64,
    /// `--fsync` of every node: always, batch or never.
    pub fsync: String,
    /// The directory holding each node's data directory, `<root>/<id>`.
    pub root: PathBuf,
}

/// Running durable storage processes; dropping it kills them.
#[derive(Debug)]
pub struct DurableCluster {
    binary: PathBuf,
    spec: DurableSpec,
    membership: Membership,
    peers: String,
    children: Vec<Option<Child>>,
}

impl DurableCluster {
    /// Starts `spec.nodes` nodes of the `dida` binary at `binary` on free loopback
    /// ports and waits (up to 30 s) until each answers a status request.
    pub async fn start(binary: &Path, spec: DurableSpec) -> anyhow::Result<Self> {
        let peers = free_ports(spec.nodes)?
            .iter()
            .enumerate()
            .map(|(i, port)| format!("s{}=http://127.0.0.1:{port}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            binary: binary.to_path_buf(),
            membership: Membership::parse(&peers)?,
            peers,
            children: (0..spec.nodes).map(|_| None).collect(),
            spec,
        };
        cluster.start_all(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// The cluster's membership.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// A client of the cluster, with its replication factor.
    pub fn client(&self) -> anyhow::Result<StorageClient> {
        Ok(StorageClient::new(
            self.membership.clone(),
            ClientConfig {
                replication_factor: self.spec.replication_factor,
                ..ClientConfig::default()
            },
        )?)
    }

    /// SIGKILLs every node at once (all signals sent before any is reaped) and
    /// reaps them.
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

    /// SIGKILLs node `id` and reaps it.
    pub async fn kill(&mut self, id: &str) -> anyhow::Result<()> {
        let index = self.membership.index_of(id)?;
        if let Some(mut child) = self.children[index].take() {
            child
                .kill()
                .await
                .with_context(|| format!("cannot SIGKILL {id}"))?;
        }
        Ok(())
    }

    /// Deletes the data directory of node `id` (which must not be running): the
    /// node's disk was lost, and it comes back as a replacement.
    pub fn delete_data(&self, id: &str) -> anyhow::Result<()> {
        let dir = self.spec.root.join(id);
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot delete {}", dir.display()))
    }

    /// Starts every node that is not running, on its old port and data directory,
    /// and waits up to `limit` until each answers.
    pub async fn start_all(&mut self, limit: Duration) -> anyhow::Result<()> {
        for i in 0..self.spec.nodes {
            if self.children[i].is_none() {
                self.children[i] = Some(self.spawn(i)?);
            }
        }
        self.wait_until_ready(limit).await
    }

    fn spawn(&self, index: usize) -> anyhow::Result<Child> {
        let member = &self.membership.members()[index];
        let data_dir = self.spec.root.join(&member.id);
        let mut command = Command::new(&self.binary);
        command
            .args([
                "storage",
                "--id",
                &member.id,
                "--url",
                &member.url.to_string(),
            ])
            .args(["--peers", &self.peers])
            .arg("--replication-factor")
            .arg(self.spec.replication_factor.to_string())
            .arg("--write-acks")
            .arg(self.spec.write_acks.to_string())
            .arg("--gossip-delay")
            .arg(self.spec.gossip_delay_ms.to_string())
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--fsync", &self.spec.fsync])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_string()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        command
            .spawn()
            .with_context(|| format!("cannot start durable storage node {}", member.id))
    }

    async fn wait_until_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let client = self.client()?;
        for (member, child) in self.membership.members().iter().zip(&mut self.children) {
            loop {
                if client.status(&member.id).await.is_ok() {
                    break;
                }
                if let Some(child) = child {
                    if let Some(status) = child.try_wait()? {
                        bail!(
                            "storage node {} exited during start-up: {status}",
                            member.id
                        );
                    }
                }
                if Instant::now() > deadline {
                    bail!("storage node {} did not answer within {limit:?}", member.id);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // Each node joins (catches up) before it serves as a primary.
        client
            .wait_until_all_alive(deadline.saturating_duration_since(Instant::now()))
            .await?;
        Ok(())
    }
}
