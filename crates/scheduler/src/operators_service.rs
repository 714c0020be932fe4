//! The scheduler's `Operators` gRPC service: deploy, list and remove operators
//! (`dida operator …`), over [`crate::registry::ClusterRegistry`].

use std::sync::Arc;

use dida_proto::registry::operators_server::Operators;
use dida_proto::registry::{
    DeployReply, DeployRequest, DeployedOperator, ListOperatorsReply, ListOperatorsRequest,
    RemoveReply, RemoveRequest,
};
use dida_storage_client::registry::Deployment;
use tonic::{Request, Response, Status};

use crate::node::SchedulerState;

/// Implements [`Operators`] over the scheduler's state.
#[derive(Debug, Clone)]
pub(crate) struct OperatorsService {
    pub state: Arc<SchedulerState>,
}

/// A deployment as the wire carries it.
pub(crate) fn deployed(name: &str, deployment: &Deployment) -> DeployedOperator {
    DeployedOperator {
        name: name.to_string(),
        digest: deployment.digest.clone(),
        bytes: deployment.bytes,
        deployed_unix_ms: deployment.deployed_unix_ms,
    }
}

#[tonic::async_trait]
impl Operators for OperatorsService {
    async fn deploy(
        &self,
        request: Request<DeployRequest>,
    ) -> Result<Response<DeployReply>, Status> {
        let DeployRequest { name, component } = request.into_inner();
        let (deployment, replaced_digest) = self.state.registry.deploy(&name, component).await?;
        Ok(Response::new(DeployReply {
            deployed: Some(deployed(&name, &deployment)),
            replaced_digest,
        }))
    }

    async fn list(
        &self,
        _request: Request<ListOperatorsRequest>,
    ) -> Result<Response<ListOperatorsReply>, Status> {
        let (index, local) = self.state.operator_listing().await?;
        Ok(Response::new(ListOperatorsReply {
            deployed: index.iter().map(|(n, d)| deployed(n, d)).collect(),
            local,
        }))
    }

    async fn remove(
        &self,
        request: Request<RemoveRequest>,
    ) -> Result<Response<RemoveReply>, Status> {
        let name = request.into_inner().name;
        let removed = self.state.registry.remove(&name).await?;
        Ok(Response::new(RemoveReply {
            removed: Some(deployed(&name, &removed)),
        }))
    }
}
