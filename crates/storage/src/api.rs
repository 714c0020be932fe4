//! The client-facing gRPC service of a storage node (SPEC §2.2–2.3): reads, writes
//! and conditional updates go to the node, which routes them (`routing`), unary or
//! on a `Calls` stream; listing, status, ping and view are answered here. Writes and
//! conditional updates of dida's own keys (`_dida/…`) are refused here unless the
//! call may change them (`dida_proto::reserved`).

use std::sync::Arc;

use dida_proto::acked;
use dida_proto::convert::liveness_to_wire;
use dida_proto::reserved::ReservedKeys;
use dida_proto::storage::storage_call_reply::Answer;
use dida_proto::storage::storage_call_request::Call;
use dida_proto::storage::storage_server::Storage;
use dida_proto::storage::{
    ListRecordsReply, ListRecordsRequest, Member, PingReply, PingRequest, ReadReply, ReadRequest,
    StatusReply, StatusRequest, StorageCallReply, StorageCallRequest, UpdateIfValueIsReply,
    UpdateIfValueIsRequest, ViewReply, ViewRequest, WriteReply, WriteRequest,
};
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::listing::Listings;
use crate::node_core::Node;

/// Implements [`Storage`] over a node.
#[derive(Debug, Clone)]
pub(crate) struct StorageApi {
    pub node: Arc<Node>,
    /// Fires when the node stops: ends the clients' `Calls` streams and listings.
    pub stop: watch::Receiver<()>,
    /// The slots that bound concurrent listings.
    pub listings: Listings,
}

impl StorageApi {
    /// Answers one request of a `Calls` stream exactly as the unary call would;
    /// `reserved` says what the stream may do with dida's own keys.
    async fn answer(&self, call: StorageCallRequest, reserved: &ReservedKeys) -> StorageCallReply {
        let StorageCallRequest { seq, call } = call;
        let answered = match call {
            Some(Call::Read(request)) => self.node.read(request).await.map(Answer::Read),
            Some(Call::Write(request)) => match reserved.check_write(&request.key) {
                Ok(()) => self.node.write(request).await.map(Answer::Write),
                Err(refused) => Err(refused),
            },
            Some(Call::UpdateIfValueIs(request)) => match reserved.check_write(&request.key) {
                Ok(()) => self
                    .node
                    .update_if_value_is(request)
                    .await
                    .map(Answer::UpdateIfValueIs),
                Err(refused) => Err(refused),
            },
            None => Err(Status::invalid_argument("a call without a request")),
        };
        match answered {
            Ok(answer) => StorageCallReply {
                seq,
                error: None,
                code: tonic::Code::Ok as i32,
                answer: Some(answer),
            },
            Err(status) => StorageCallReply {
                seq,
                error: Some(status.message().to_string()),
                code: status.code() as i32,
                answer: None,
            },
        }
    }
}

#[tonic::async_trait]
impl Storage for StorageApi {
    async fn read(&self, request: Request<ReadRequest>) -> Result<Response<ReadReply>, Status> {
        self.node
            .read(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn write(&self, request: Request<WriteRequest>) -> Result<Response<WriteReply>, Status> {
        ReservedKeys::of(&request).check_write(&request.get_ref().key)?;
        self.node
            .write(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn update_if_value_is(
        &self,
        request: Request<UpdateIfValueIsRequest>,
    ) -> Result<Response<UpdateIfValueIsReply>, Status> {
        ReservedKeys::of(&request).check_write(&request.get_ref().key)?;
        self.node
            .update_if_value_is(request.into_inner())
            .await
            .map(Response::new)
    }

    type ListRecordsStream = ReceiverStream<Result<ListRecordsReply, Status>>;

    async fn list_records(
        &self,
        _request: Request<ListRecordsRequest>,
    ) -> Result<Response<Self::ListRecordsStream>, Status> {
        let pages = self
            .listings
            .start(self.node.clone(), self.stop.clone())
            .await?;
        Ok(Response::new(pages))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        let node = &self.node;
        let state = &node.peering;
        let config = &state.config();
        let (keys, records) = node.store.counts();
        let view = state.view().current();
        Ok(Response::new(StatusReply {
            id: state.id().to_string(),
            url: state.url_of(state.me()),
            replica: node.replica,
            members: state
                .roster()
                .iter()
                .map(|m| Member {
                    id: m.id.clone(),
                    url: m.url.to_string(),
                    replica: m.replica,
                })
                .collect(),
            keys,
            records,
            replication_factor: view.ring.replication_factor() as u32,
            max_versions: node.store.max_versions() as u32,
            write_acks: config.write_acks as u32,
            gossip_delay_ms: config.gossip_delay.as_millis() as u64,
            vnodes: view.ring.vnodes(),
            replication: Some(state.stats().snapshot()),
            failed: state.failed_ids(),
            view_epoch: view.epoch,
            fenced: state.is_fenced(),
            incarnation: state.incarnation(),
            view: state.states_to_wire(&view.members),
            liveness: liveness_to_wire(view.members.get(state.me()).liveness) as i32,
            suspected: node
                .detection
                .suspected()
                .iter()
                .map(|&n| state.id_of(n).to_string())
                .collect(),
        }))
    }

    async fn ping(&self, _request: Request<PingRequest>) -> Result<Response<PingReply>, Status> {
        self.node.peering.check_serving()?;
        Ok(Response::new(PingReply {}))
    }

    type CallsStream = ReceiverStream<Result<StorageCallReply, Status>>;

    /// Serves a client's stream of reads, writes and conditional updates: each is
    /// handled as its unary call would be, concurrently, and answered when done.
    async fn calls(
        &self,
        request: Request<Streaming<StorageCallRequest>>,
    ) -> Result<Response<Self::CallsStream>, Status> {
        let api = self.clone();
        let reserved = Arc::new(ReservedKeys::of(&request));
        let answers =
            acked::serve_concurrently(request.into_inner(), self.stop.clone(), move |call| {
                let api = api.clone();
                let reserved = reserved.clone();
                async move { api.answer(call, &reserved).await }
            });
        Ok(Response::new(answers))
    }

    async fn view(&self, _request: Request<ViewRequest>) -> Result<Response<ViewReply>, Status> {
        let state = &self.node.peering;
        state.check_serving()?;
        let view = state.view().current();
        Ok(Response::new(ViewReply {
            failed: state.out_of_ring_ids(),
            epoch: view.epoch,
            members: state.states_to_wire(&view.members),
            departed: view
                .departed
                .iter()
                .map(|&n| state.id_of(n).to_string())
                .collect(),
            config: Some(dida_proto::convert::config_to_wire(
                &state.cluster().decided(),
            )),
        }))
    }
}
