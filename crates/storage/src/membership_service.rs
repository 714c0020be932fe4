//! The gRPC service `Membership` (`dida cluster members|remove`, `dida storage
//! --join`):
//! a thin adapter handing each request to the node's `reconfig`.

use std::sync::Arc;

use dida_proto::storage::membership_server::Membership;
use dida_proto::storage::{
    JoinReply, JoinRequest, MembersReply, MembersRequest, RemoveMemberReply, RemoveMemberRequest,
};
use tonic::{Request, Response, Status};

use crate::node_core::Node;

/// Implements [`Membership`] over a node.
#[derive(Debug, Clone)]
pub(crate) struct MembershipService {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl Membership for MembershipService {
    async fn members(
        &self,
        _request: Request<MembersRequest>,
    ) -> Result<Response<MembersReply>, Status> {
        Ok(Response::new(self.node.members()))
    }

    async fn remove_member(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Result<Response<RemoveMemberReply>, Status> {
        self.node
            .remove_member(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinReply>, Status> {
        self.node
            .admit(request.into_inner())
            .await
            .map(Response::new)
    }
}
