//! The PCS's gRPC service: validates each request, then acts on the children.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use dida_proto::control::process_creation_server::ProcessCreation;
use dida_proto::control::{
    KillNodeReply, KillNodeRequest, ListNodesReply, ListNodesRequest, OutputReply, OutputRequest,
    RestartNodeReply, RestartNodeRequest, StartNodeReply, StartNodeRequest, StopAllReply,
    StopAllRequest, StopNodeReply, StopNodeRequest,
};
use dida_proto::storage::{PingReply, PingRequest};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::children::{ChildError, Children};
use crate::launch::Launch;

/// Longest grace period a `StopNode` may ask for.
pub const MAX_STOP_GRACE: Duration = Duration::from_secs(60);

/// Implements [`ProcessCreation`] over the PCS's children.
#[derive(Debug, Clone)]
pub(crate) struct PcsService {
    pub children: Arc<Children>,
}

fn to_status(error: ChildError) -> Status {
    let message = error.to_string();
    match error {
        ChildError::AlreadyRunning(_) => Status::already_exists(message),
        ChildError::Unknown(_) => Status::not_found(message),
        ChildError::NotRunning(..) | ChildError::PortInUse { .. } => {
            Status::failed_precondition(message)
        }
        ChildError::Spawn { .. } | ChildError::ExitedEarly { .. } => Status::internal(message),
        ChildError::NotListening { .. } => Status::deadline_exceeded(message),
        ChildError::TooManyNodes { .. } => Status::resource_exhausted(message),
    }
}

#[tonic::async_trait]
impl ProcessCreation for PcsService {
    async fn start_node(
        &self,
        request: Request<StartNodeRequest>,
    ) -> Result<Response<StartNodeReply>, Status> {
        let peer = request.remote_addr();
        let request = request.into_inner();
        let launch = Launch::from_request(&request).map_err(|refused| {
            warn!(?peer, role = %request.role, node = %request.node_id, "refused: {refused}");
            Status::invalid_argument(refused.0)
        })?;
        info!(?peer, node = %launch.id, args = ?launch.args, "starting a node");
        let pid = self.children.start(launch).await.map_err(to_status)?;
        Ok(Response::new(StartNodeReply { pid }))
    }

    async fn kill_node(
        &self,
        request: Request<KillNodeRequest>,
    ) -> Result<Response<KillNodeReply>, Status> {
        let id = request.into_inner().node_id;
        let pid = self.children.kill(&id).await.map_err(to_status)?;
        Ok(Response::new(KillNodeReply { pid }))
    }

    async fn stop_node(
        &self,
        request: Request<StopNodeRequest>,
    ) -> Result<Response<StopNodeReply>, Status> {
        let request = request.into_inner();
        let grace = Duration::from_millis(u64::from(request.grace_ms));
        if grace.is_zero() || grace > MAX_STOP_GRACE {
            return Err(Status::invalid_argument(format!(
                "grace_ms must be from 1 to {}",
                MAX_STOP_GRACE.as_millis()
            )));
        }
        let stopped = self
            .children
            .stop(&request.node_id, grace)
            .await
            .map_err(to_status)?;
        Ok(Response::new(StopNodeReply {
            pid: stopped.pid,
            forced: stopped.forced,
            exit: stopped.exit,
        }))
    }

    async fn restart_node(
        &self,
        request: Request<RestartNodeRequest>,
    ) -> Result<Response<RestartNodeReply>, Status> {
        let peer = request.remote_addr();
        let id = request.into_inner().node_id;
        info!(?peer, node = %id, "restarting a node");
        let (pid, killed) = self.children.restart(&id).await.map_err(to_status)?;
        Ok(Response::new(RestartNodeReply {
            pid,
            killed_pid: killed.unwrap_or(0),
        }))
    }

    async fn list_nodes(
        &self,
        _request: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesReply>, Status> {
        Ok(Response::new(ListNodesReply {
            nodes: self.children.list(),
        }))
    }

    async fn stop_all(
        &self,
        _request: Request<StopAllRequest>,
    ) -> Result<Response<StopAllReply>, Status> {
        let pids = self.children.stop_all().await;
        Ok(Response::new(StopAllReply { pids }))
    }

    type OutputStream = Pin<Box<dyn Stream<Item = Result<OutputReply, Status>> + Send>>;

    /// Streams every line from now on. A subscriber too slow to keep up is told how
    /// many lines it missed instead of slowing the nodes down.
    async fn output(
        &self,
        _request: Request<OutputRequest>,
    ) -> Result<Response<Self::OutputStream>, Status> {
        let lines = self.children.subscribe();
        let stream = futures::stream::unfold(lines, |mut lines| async move {
            let item = match lines.recv().await {
                Ok(line) => line,
                Err(RecvError::Lagged(missed)) => OutputReply {
                    node_id: "pcs".into(),
                    stream: "pcs".into(),
                    line: format!("{missed} lines of node output were dropped (slow reader)"),
                },
                Err(RecvError::Closed) => return None,
            };
            Some((Ok(item), lines))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn ping(&self, _request: Request<PingRequest>) -> Result<Response<PingReply>, Status> {
        Ok(Response::new(PingReply {}))
    }
}
