//! The client of a PCS, as the PuppetMaster and the tests use it: every call carries
//! the token (when there is one), has a deadline, and fails with an error that names
//! the PCS.

use std::time::Duration;

use anyhow::Context;
use dida_proto::control::process_creation_client::ProcessCreationClient;
use dida_proto::control::{
    KillNodeRequest, ListNodesRequest, NodeProcess, OutputReply, OutputRequest, RestartNodeReply,
    RestartNodeRequest, StartNodeRequest, StopAllRequest, StopNodeReply, StopNodeRequest,
};
use dida_proto::storage::PingRequest;
use dida_proto::transport::{lazy_channel_with_headers, NodeChannel};
use tonic::Streaming;

use crate::auth::TOKEN_HEADER;

/// Deadline of PCS calls: a start waits for the node to listen (30 s by default on
/// the PCS), so it is longer than a node call's.
pub const PCS_DEADLINE: Duration = Duration::from_secs(45);

type Grpc = ProcessCreationClient<NodeChannel>;

/// A connection to one PCS.
#[derive(Debug, Clone)]
pub struct PcsClient {
    url: String,
    grpc: Grpc,
}

impl PcsClient {
    /// A client of the PCS at `url` (`http://HOST:PORT`); connects on first use.
    pub fn new(url: &str, token: Option<&str>) -> anyhow::Result<Self> {
        let headers: Vec<_> = token.map(|t| (TOKEN_HEADER, t)).into_iter().collect();
        let channel = lazy_channel_with_headers(url, PCS_DEADLINE, PCS_DEADLINE, &headers)
            .with_context(|| format!("bad PCS URL or token for {url:?}"))?;
        Ok(Self {
            url: url.to_string(),
            grpc: ProcessCreationClient::new(channel),
        })
    }

    /// The PCS's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn fail(&self, what: &str, status: tonic::Status) -> anyhow::Error {
        anyhow::anyhow!("PCS {}: {what}: {}", self.url, status.message())
    }

    /// Starts a node; returns its pid once it listens.
    pub async fn start_node(&self, request: StartNodeRequest) -> anyhow::Result<u32> {
        let id = request.node_id.clone();
        Ok(self
            .grpc
            .clone()
            .start_node(request)
            .await
            .map_err(|s| self.fail(&format!("cannot start {id}"), s))?
            .into_inner()
            .pid)
    }

    /// SIGKILLs a node; returns its pid.
    pub async fn kill_node(&self, id: &str) -> anyhow::Result<u32> {
        Ok(self
            .grpc
            .clone()
            .kill_node(KillNodeRequest {
                node_id: id.to_string(),
            })
            .await
            .map_err(|s| self.fail(&format!("cannot kill {id}"), s))?
            .into_inner()
            .pid)
    }

    /// Stops a node gracefully: SIGTERM, and SIGKILL only if it still runs after
    /// `grace` (at most a minute); answers once it is reaped, saying how it ended.
    pub async fn stop_node(&self, id: &str, grace: Duration) -> anyhow::Result<StopNodeReply> {
        let grace_ms = u32::try_from(grace.as_millis()).unwrap_or(u32::MAX);
        let mut request = tonic::Request::new(StopNodeRequest {
            node_id: id.to_string(),
            grace_ms,
        });
        // The call lasts as long as the grace period, plus the time to reap.
        request.set_timeout(PCS_DEADLINE + grace);
        Ok(self
            .grpc
            .clone()
            .stop_node(request)
            .await
            .map_err(|s| self.fail(&format!("cannot stop {id}"), s))?
            .into_inner())
    }

    /// Starts a node the PCS started before again, with its original command line
    /// (SIGKILLing it first if it still runs); answers once it listens, with the new
    /// pid and the pid killed (0 if it was not running).
    pub async fn restart_node(&self, id: &str) -> anyhow::Result<RestartNodeReply> {
        Ok(self
            .grpc
            .clone()
            .restart_node(RestartNodeRequest {
                node_id: id.to_string(),
            })
            .await
            .map_err(|s| self.fail(&format!("cannot restart {id}"), s))?
            .into_inner())
    }

    /// Every node the PCS started.
    pub async fn list_nodes(&self) -> anyhow::Result<Vec<NodeProcess>> {
        Ok(self
            .grpc
            .clone()
            .list_nodes(ListNodesRequest {})
            .await
            .map_err(|s| self.fail("cannot list its nodes", s))?
            .into_inner()
            .nodes)
    }

    /// Kills every node the PCS started that still runs; returns their pids.
    pub async fn stop_all(&self) -> anyhow::Result<Vec<u32>> {
        Ok(self
            .grpc
            .clone()
            .stop_all(StopAllRequest {})
            .await
            .map_err(|s| self.fail("cannot stop its nodes", s))?
            .into_inner()
            .pids)
    }

    /// The stream of every line the PCS's nodes print from now on.
    pub async fn output(&self) -> anyhow::Result<Streaming<OutputReply>> {
        Ok(self
            .grpc
            .clone()
            .output(OutputRequest {})
            .await
            .map_err(|s| self.fail("cannot follow its output", s))?
            .into_inner())
    }

    /// Checks that the PCS answers (and accepts our token).
    pub async fn ping(&self) -> anyhow::Result<()> {
        self.grpc
            .clone()
            .ping(PingRequest {})
            .await
            .map_err(|s| self.fail("does not answer", s))?;
        Ok(())
    }
}
