//! The scheduler's `Applications` gRPC service: register, get, list and remove
//! applications (`dida app …`, `dida run NAME`), over [`crate::apps`].

use std::sync::Arc;

use dida_proto::registry::applications_server::Applications;
use dida_proto::registry::{
    GetAppReply, GetAppRequest, ListAppsReply, ListAppsRequest, RegisterAppReply,
    RegisterAppRequest, RemoveAppReply, RemoveAppRequest,
};
use tonic::{Request, Response, Status};

use crate::apps::{self, registered};
use crate::node::SchedulerState;
use crate::service::SchedulerService;

/// Implements [`Applications`] over the scheduler's state.
#[derive(Debug, Clone)]
pub(crate) struct ApplicationsService {
    pub state: Arc<SchedulerState>,
}

#[tonic::async_trait]
impl Applications for ApplicationsService {
    async fn register(
        &self,
        request: Request<RegisterAppRequest>,
    ) -> Result<Response<RegisterAppReply>, Status> {
        let RegisterAppRequest { name, operators } = request.into_inner();
        let service = SchedulerService {
            state: self.state.clone(),
        };
        let (entry, replaced) = apps::register(&service, &name, operators).await?;
        Ok(Response::new(RegisterAppReply {
            app: Some(registered(&name, &entry)),
            replaced,
        }))
    }

    async fn get(&self, request: Request<GetAppRequest>) -> Result<Response<GetAppReply>, Status> {
        let name = request.into_inner().name;
        let entry = apps::get(&self.state.registry, &name).await?;
        Ok(Response::new(GetAppReply {
            app: Some(registered(&name, &entry)),
        }))
    }

    async fn list(
        &self,
        _request: Request<ListAppsRequest>,
    ) -> Result<Response<ListAppsReply>, Status> {
        let apps = apps::list(&self.state.registry).await?;
        Ok(Response::new(ListAppsReply {
            apps: apps.iter().map(|(n, e)| registered(n, e)).collect(),
        }))
    }

    async fn remove(
        &self,
        request: Request<RemoveAppRequest>,
    ) -> Result<Response<RemoveAppReply>, Status> {
        let name = request.into_inner().name;
        let removed = apps::remove(&self.state.registry, &name).await?;
        Ok(Response::new(RemoveAppReply {
            removed: Some(registered(&name, &removed)),
        }))
    }
}
