//! The peer-facing gRPC service: hands each message to the node's handler
//! (`peer_handlers`).

use std::sync::Arc;

use dida_proto::storage::replication_server::Replication;
use dida_proto::storage::{
    DigestReply, DigestRequest, FetchKeyReply, FetchKeyRequest, HandbackReply, HandbackRequest,
    ProbeForReply, ProbeForRequest, ProbeReply, ProbeRequest, PushReply, PushRequest,
};
use tonic::{Request, Response, Status};

use crate::state::Node;

/// Implements [`Replication`] over a node.
#[derive(Debug, Clone)]
pub(crate) struct ReplicationService {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl Replication for ReplicationService {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushReply>, Status> {
        self.node
            .push(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn sync_digests(
        &self,
        request: Request<DigestRequest>,
    ) -> Result<Response<DigestReply>, Status> {
        self.node
            .sync_digests(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn probe(&self, request: Request<ProbeRequest>) -> Result<Response<ProbeReply>, Status> {
        self.node
            .probe(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn probe_for(
        &self,
        request: Request<ProbeForRequest>,
    ) -> Result<Response<ProbeForReply>, Status> {
        self.node
            .probe_for(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn handback(
        &self,
        request: Request<HandbackRequest>,
    ) -> Result<Response<HandbackReply>, Status> {
        self.node
            .handback(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn fetch_key(
        &self,
        request: Request<FetchKeyRequest>,
    ) -> Result<Response<FetchKeyReply>, Status> {
        self.node
            .fetch_key(request.into_inner())
            .await
            .map(Response::new)
    }
}
