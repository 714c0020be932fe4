//! The client-facing gRPC service of a storage node (SPEC §2.2–2.3).
//!
//! Any node accepts any request. A write or conditional update is executed by the key's
//! primary — here if this node is the primary, otherwise forwarded to it once — so all
//! writes of a key are totally ordered by the primary's store. A read is answered
//! locally by a replica of the key, or forwarded to the key's replicas otherwise.

use std::sync::Arc;

use dida_core::limits::{check_key, check_value};
use dida_core::Version;
use dida_proto::acked;
use dida_proto::convert::{record_to_wire, version_from_wire, version_to_wire};
use dida_proto::storage::storage_answer::Answer;
use dida_proto::storage::storage_call::Call;
use dida_proto::storage::storage_server::Storage;
use dida_proto::storage::{
    ListRecordsReply, ListRecordsRequest, Member, PingReply, PingRequest, ReadReply, ReadRequest,
    StatusReply, StatusRequest, StorageAnswer, StorageCall, UpdateIfValueIsReply,
    UpdateIfValueIsRequest, ViewReply, ViewRequest, WriteReply, WriteRequest,
};
use dida_proto::transport::is_connect_failure;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::state::NodeState;

/// Implements [`Storage`] over a node's state.
#[derive(Debug, Clone)]
pub(crate) struct StorageApi {
    pub state: Arc<NodeState>,
    /// Fires when the node stops: ends the clients' `Calls` streams.
    pub stop: watch::Receiver<()>,
}

fn invalid(error: impl std::fmt::Display) -> Status {
    Status::invalid_argument(error.to_string())
}

impl StorageApi {
    /// The error for a request forwarded to a node that is not the key's primary.
    /// Right after a crash this happens while the two nodes' views differ, so it is
    /// `ABORTED`: nothing was applied and the caller may retry. If it persists, the
    /// nodes were started with different memberships.
    fn not_primary(&self, key: &str, primary: usize) -> Status {
        Status::aborted(format!(
            "node {} received a forwarded request for key {key:?} but is not its primary \
             ({} is): the nodes' views differ (a crash not yet detected everywhere — retry), \
             or they were given different --peers; nothing was applied",
            self.state.id(),
            self.state.id_of(primary)
        ))
    }

    /// Wraps a failed call to peer `index` with who it was. A forward that could not
    /// even connect certainly had no effect: it becomes `ABORTED` (retry once the
    /// crash is detected), unlike a failure mid-call whose outcome is unknown.
    fn peer_failed(&self, index: usize, what: &str, status: Status) -> Status {
        let code = if is_connect_failure(&status) {
            tonic::Code::Aborted
        } else {
            status.code()
        };
        Status::new(
            code,
            format!(
                "{what} via {} ({}) failed: {}",
                self.state.id_of(index),
                self.state.url_of(index),
                status.message()
            ),
        )
    }
}

impl StorageApi {
    /// Answers one request of a `Calls` stream exactly as the unary call would.
    async fn answer(&self, call: StorageCall) -> StorageAnswer {
        let StorageCall { seq, call } = call;
        let answered = match call {
            Some(Call::Read(request)) => self
                .read(Request::new(request))
                .await
                .map(|reply| Answer::Read(reply.into_inner())),
            Some(Call::Write(request)) => self
                .write(Request::new(request))
                .await
                .map(|reply| Answer::Write(reply.into_inner())),
            Some(Call::UpdateIfValueIs(request)) => self
                .update_if_value_is(Request::new(request))
                .await
                .map(|reply| Answer::UpdateIfValueIs(reply.into_inner())),
            None => Err(Status::invalid_argument("a call without a request")),
        };
        match answered {
            Ok(answer) => StorageAnswer {
                seq,
                error: None,
                code: tonic::Code::Ok as i32,
                answer: Some(answer),
            },
            Err(status) => StorageAnswer {
                seq,
                error: Some(status.message().to_string()),
                code: status.code() as i32,
                answer: None,
            },
        }
    }

    /// Asks the other replicas of the key for the read, returning the first answer
    /// that holds a record (`None` if none does or none answers).
    async fn read_elsewhere(
        &self,
        request: &ReadRequest,
        ring: &dida_core::Ring,
    ) -> Option<ReadReply> {
        for &replica in ring.replicas(&request.key) {
            if replica == self.state.me {
                continue;
            }
            let forwarded = ReadRequest {
                forwarded: true,
                ..request.clone()
            };
            if let Ok(reply) = self.state.peers.storage(replica).read(forwarded).await {
                let reply = reply.into_inner();
                if reply.record.is_some() {
                    return Some(reply);
                }
            }
        }
        None
    }
}

#[tonic::async_trait]
impl Storage for StorageApi {
    async fn read(&self, request: Request<ReadRequest>) -> Result<Response<ReadReply>, Status> {
        self.state.check_serving()?;
        let request = request.into_inner();
        check_key(&request.key).map_err(invalid)?;
        let state = &self.state;
        let ring = state.ring();
        if request.forwarded || ring.replicas(&request.key).contains(&state.me) {
            let version: Option<Version> = request.version.map(version_from_wire);
            let record = state.store.read(&request.key, version);
            let newer_versions_held = match (&record, version) {
                (None, Some(wanted)) => state.store.newer_versions_held(&request.key, wanted),
                _ => 0,
            };
            // A replica that joined the key's preference list after a crash may not
            // have received the key from anti-entropy yet: rather than answer "no
            // such key", it asks the key's other replicas.
            let joined_after_a_crash = !state
                .view
                .initial_ring()
                .replicas(&request.key)
                .contains(&state.me);
            if record.is_none() && !request.forwarded && joined_after_a_crash {
                if let Some(reply) = self.read_elsewhere(&request, &ring).await {
                    return Ok(Response::new(reply));
                }
            }
            return Ok(Response::new(ReadReply {
                record: record.as_ref().map(record_to_wire),
                served_by: state.id().to_string(),
                newer_versions_held: newer_versions_held as u32,
                max_versions: state.store.max_versions() as u32,
            }));
        }
        let mut last_error = None;
        for &replica in ring.replicas(&request.key) {
            let forwarded = ReadRequest {
                forwarded: true,
                ..request.clone()
            };
            match state.peers.storage(replica).read(forwarded).await {
                Ok(reply) => return Ok(reply),
                Err(status) => {
                    last_error = Some(self.peer_failed(replica, "read forwarded", status))
                }
            }
        }
        Err(last_error.expect("every key has at least one replica"))
    }

    async fn write(&self, request: Request<WriteRequest>) -> Result<Response<WriteReply>, Status> {
        self.state.check_serving()?;
        let request = request.into_inner();
        check_key(&request.key).map_err(invalid)?;
        check_value(&request.value).map_err(invalid)?;
        let state = &self.state;
        let primary = state.ring().primary(&request.key);
        if primary == state.me {
            let record = state.execute_write(&request.key, &request.value).await?;
            return Ok(Response::new(WriteReply {
                version: Some(version_to_wire(record.version)),
                primary: state.id().to_string(),
            }));
        }
        if request.forwarded {
            return Err(self.not_primary(&request.key, primary));
        }
        let forwarded = WriteRequest {
            forwarded: true,
            ..request
        };
        state
            .peers
            .storage(primary)
            .write(forwarded)
            .await
            .map_err(|s| self.peer_failed(primary, "write forwarded to primary", s))
    }

    async fn update_if_value_is(
        &self,
        request: Request<UpdateIfValueIsRequest>,
    ) -> Result<Response<UpdateIfValueIsReply>, Status> {
        self.state.check_serving()?;
        let request = request.into_inner();
        check_key(&request.key).map_err(invalid)?;
        check_value(&request.old_value).map_err(invalid)?;
        check_value(&request.new_value).map_err(invalid)?;
        let state = &self.state;
        let primary = state.ring().primary(&request.key);
        if primary == state.me {
            let record = state
                .execute_cas(&request.key, &request.old_value, &request.new_value)
                .await?;
            return Ok(Response::new(UpdateIfValueIsReply {
                version: record.map(|r| version_to_wire(r.version)),
                primary: state.id().to_string(),
            }));
        }
        if request.forwarded {
            return Err(self.not_primary(&request.key, primary));
        }
        let forwarded = UpdateIfValueIsRequest {
            forwarded: true,
            ..request
        };
        state
            .peers
            .storage(primary)
            .update_if_value_is(forwarded)
            .await
            .map_err(|s| self.peer_failed(primary, "conditional update forwarded to primary", s))
    }

    async fn list_records(
        &self,
        _request: Request<ListRecordsRequest>,
    ) -> Result<Response<ListRecordsReply>, Status> {
        self.state.check_serving()?;
        let records = self.state.store.records();
        Ok(Response::new(ListRecordsReply {
            records: records.iter().map(record_to_wire).collect(),
        }))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        let state = &self.state;
        let config = &state.config;
        let (keys, records) = state.store.counts();
        let view = state.view.current();
        Ok(Response::new(StatusReply {
            id: state.id().to_string(),
            url: state.url_of(state.me),
            replica: state.replica,
            members: config
                .membership
                .members()
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
            max_versions: state.store.max_versions() as u32,
            write_acks: config.write_acks as u32,
            gossip_delay_ms: config.gossip_delay.as_millis() as u64,
            vnodes: view.ring.vnodes(),
            replication: Some(state.stats.snapshot()),
            failed: state.failed_ids(),
            view_epoch: view.epoch,
            fenced: state.is_fenced(),
            suspected: state
                .suspected
                .lock()
                .expect("suspects lock poisoned")
                .iter()
                .map(|&n| state.id_of(n).to_string())
                .collect(),
        }))
    }

    async fn ping(&self, _request: Request<PingRequest>) -> Result<Response<PingReply>, Status> {
        self.state.check_serving()?;
        Ok(Response::new(PingReply {}))
    }

    type CallsStream = ReceiverStream<Result<StorageAnswer, Status>>;

    /// Serves a client's stream of reads, writes and conditional updates: each is
    /// handled as its unary call would be, concurrently, and answered when done.
    async fn calls(
        &self,
        request: Request<Streaming<StorageCall>>,
    ) -> Result<Response<Self::CallsStream>, Status> {
        let api = self.clone();
        let answers =
            acked::serve_concurrently(request.into_inner(), self.stop.clone(), move |call| {
                let api = api.clone();
                async move { api.answer(call).await }
            });
        Ok(Response::new(answers))
    }

    async fn view(&self, _request: Request<ViewRequest>) -> Result<Response<ViewReply>, Status> {
        self.state.check_serving()?;
        Ok(Response::new(ViewReply {
            failed: self.state.failed_ids(),
            epoch: self.state.view.current().epoch,
        }))
    }
}
