//! The peer-facing gRPC service (`Replication` in the .proto): a thin adapter that
//! hands each message to the node (which passes it to its protocol), once the
//! caller's certificate (with TLS on) shows it is the member the message claims to
//! come from.

use std::sync::Arc;

use dida_proto::authorize::check_speaks_for;
use dida_proto::storage::replication_server::Replication;
use dida_proto::storage::{
    ConfigAcceptReply, ConfigAcceptRequest, ConfigCommitReply, ConfigCommitRequest,
    ConfigPrepareReply, ConfigPrepareRequest, DigestReply, DigestRequest, FetchKeyReply,
    FetchKeyRequest, HandbackReply, HandbackRequest, ProbeForReply, ProbeForRequest, ProbeReply,
    ProbeRequest, PushReply, PushRequest,
};
use tonic::{Request, Response, Status};

use crate::node_core::Node;

/// Implements [`Replication`] over a node.
#[derive(Debug, Clone)]
pub(crate) struct ReplicationService {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl Replication for ReplicationService {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushReply>, Status> {
        check_speaks_for(&request, &request.get_ref().from)?;
        self.node
            .push(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn sync_digests(
        &self,
        request: Request<DigestRequest>,
    ) -> Result<Response<DigestReply>, Status> {
        check_speaks_for(&request, &request.get_ref().from)?;
        self.node
            .sync_digests(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn probe(&self, request: Request<ProbeRequest>) -> Result<Response<ProbeReply>, Status> {
        check_speaks_for(&request, &request.get_ref().from)?;
        self.node
            .probe(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn probe_for(
        &self,
        request: Request<ProbeForRequest>,
    ) -> Result<Response<ProbeForReply>, Status> {
        check_speaks_for(&request, &request.get_ref().from)?;
        self.node
            .probe_for(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn handback(
        &self,
        request: Request<HandbackRequest>,
    ) -> Result<Response<HandbackReply>, Status> {
        check_speaks_for(&request, &request.get_ref().from)?;
        self.node
            .handback(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn fetch_key(
        &self,
        request: Request<FetchKeyRequest>,
    ) -> Result<Response<FetchKeyReply>, Status> {
        check_speaks_for(&request, &request.get_ref().from)?;
        self.node
            .fetch_key(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn config_prepare(
        &self,
        request: Request<ConfigPrepareRequest>,
    ) -> Result<Response<ConfigPrepareReply>, Status> {
        check_speaks_for(&request, &request.get_ref().from)?;
        self.node
            .config_prepare(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn config_accept(
        &self,
        request: Request<ConfigAcceptRequest>,
    ) -> Result<Response<ConfigAcceptReply>, Status> {
        check_speaks_for(&request, &request.get_ref().from)?;
        self.node
            .config_accept(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn config_commit(
        &self,
        request: Request<ConfigCommitRequest>,
    ) -> Result<Response<ConfigCommitReply>, Status> {
        check_speaks_for(&request, &request.get_ref().from)?;
        self.node
            .config_commit(request.into_inner())
            .await
            .map(Response::new)
    }
}
