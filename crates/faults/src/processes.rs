//! The real-process back-end of [`dida_verify::plan::Injector`]: storage nodes run
//! as processes of this machine ([`LocalCluster`]), faults are signals (SIGKILL,
//! SIGSTOP, SIGCONT), proxy links cut and healed, and restarts with the original
//! command line.

use std::time::Duration;

use dida_local_cluster::LocalCluster;
use dida_verify::plan::{InjectError, Injector};
use tokio::sync::Mutex;

/// How long a restarted node gets to answer its status before the restart counts as
/// failed (it starts in well under a second; this covers a loaded machine).
const RESTART_LIMIT: Duration = Duration::from_secs(10);

/// The cluster a run faults.
#[derive(Debug)]
pub struct Processes {
    /// The processes and their proxies.
    cluster: Mutex<LocalCluster>,
    /// Whether the nodes keep their records in data directories: then a restart
    /// starts a node on its data, else empty (the suite's default).
    keeps_data: bool,
}

impl Processes {
    /// Faults `cluster`, whose nodes keep their data on disk when `keeps_data`.
    pub fn new(cluster: LocalCluster, keeps_data: bool) -> Self {
        Self {
            cluster: Mutex::new(cluster),
            keeps_data,
        }
    }

    /// The storage node ids.
    pub async fn ids(&self) -> Vec<String> {
        self.cluster.lock().await.ids().collect()
    }

    /// Whether `node`'s process is stopped (SIGSTOP took effect), to confirm a pause.
    pub async fn is_stopped(&self, node: &str) -> anyhow::Result<bool> {
        self.cluster.lock().await.is_stopped(node)
    }

    /// Whether `node`'s process runs.
    pub async fn is_running(&self, node: &str) -> anyhow::Result<bool> {
        self.cluster.lock().await.is_running(node)
    }
}

/// `InjectError` from what the local cluster said.
fn failed(action: &'static str, node: &str, error: anyhow::Error) -> InjectError {
    InjectError {
        action,
        node: node.to_string(),
        reason: format!("{error:#}"),
    }
}

impl Injector for Processes {
    async fn kill(&self, node: &str) -> Result<(), InjectError> {
        let mut cluster = self.cluster.lock().await;
        cluster
            .kill(node)
            .await
            .map_err(|e| failed("kill", node, e))
    }

    async fn pause(&self, node: &str) -> Result<(), InjectError> {
        let cluster = self.cluster.lock().await;
        cluster.pause(node).map_err(|e| failed("pause", node, e))
    }

    async fn resume(&self, node: &str) -> Result<(), InjectError> {
        let cluster = self.cluster.lock().await;
        cluster.resume(node).map_err(|e| failed("resume", node, e))
    }

    async fn cut(&self, from: &str, to: &str) -> Result<(), InjectError> {
        let cluster = self.cluster.lock().await;
        cluster
            .cut(from, to)
            .map_err(|e| failed("cut the link", &format!("{from}->{to}"), e))
    }

    async fn heal(&self) {
        self.cluster.lock().await.heal_all();
    }

    async fn restart(&self, node: &str, keep_data: bool) -> Result<(), InjectError> {
        let mut cluster = self.cluster.lock().await;
        if keep_data && !self.keeps_data {
            return Err(InjectError {
                action: "restart",
                node: node.to_string(),
                reason: "on its data: the cluster keeps no data directories".to_string(),
            });
        }
        if !keep_data && self.keeps_data {
            cluster
                .delete_data(node)
                .map_err(|e| failed("empty the data of", node, e))?;
        }
        cluster
            .restart(node, RESTART_LIMIT)
            .await
            .map_err(|e| failed("restart", node, e))
    }
}
