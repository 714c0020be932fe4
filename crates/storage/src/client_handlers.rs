//! What a node does with a client's read, write or conditional update (SPEC
//! §2.2–2.3), whichever way it arrived (gRPC, a `Calls` stream, the simulator).
//!
//! Any node accepts any request. A write or conditional update is executed by the
//! key's primary — here if this node is the primary, otherwise forwarded to it once —
//! so all writes of a key are totally ordered by the primary's store. A read is
//! answered locally by a replica of the key, or forwarded to the key's replicas
//! otherwise.

use dida_core::limits::{check_key, check_value};
use dida_core::{Ring, Version};
use dida_proto::convert::{record_to_wire, version_from_wire, version_to_wire};
use dida_proto::storage::{
    ReadReply, ReadRequest, UpdateIfValueIsReply, UpdateIfValueIsRequest, WriteReply, WriteRequest,
};
use dida_proto::transport::is_connect_failure;
use tonic::Status;

use crate::state::Node;

fn invalid(error: impl std::fmt::Display) -> Status {
    Status::invalid_argument(error.to_string())
}

impl Node {
    /// Reads a key here if this node replicates it, else from its replicas.
    pub async fn read(&self, request: ReadRequest) -> Result<ReadReply, Status> {
        let state = &self.peering;
        state.check_serving()?;
        check_key(&request.key).map_err(invalid)?;
        let ring = state.ring();
        if request.forwarded || ring.replicas(&request.key).contains(&state.me) {
            let version: Option<Version> = request.version.map(version_from_wire);
            let record = self.store.read(&request.key, version);
            let newer_versions_held = match (&record, version) {
                (None, Some(wanted)) => self.store.newer_versions_held(&request.key, wanted),
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
                    return Ok(reply);
                }
            }
            return Ok(ReadReply {
                record: record.as_ref().map(record_to_wire),
                served_by: state.id().to_string(),
                newer_versions_held: newer_versions_held as u32,
                max_versions: self.store.max_versions() as u32,
            });
        }
        let mut last_error = None;
        for &replica in ring.replicas(&request.key) {
            let forwarded = ReadRequest {
                forwarded: true,
                ..request.clone()
            };
            match state.transport.read(replica, forwarded).await {
                Ok(reply) => return Ok(reply),
                Err(status) => {
                    last_error = Some(self.peer_failed(replica, "read forwarded", status))
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            Status::unavailable(format!(
                "node {} has no storage node in its ring yet (the cluster is starting, or every \
                 node is rejoining): no replica to read key {:?} from",
                state.id(),
                request.key
            ))
        }))
    }

    /// Writes a key: executed here if this node is its primary, else forwarded
    /// (once) to the primary.
    pub async fn write(&self, request: WriteRequest) -> Result<WriteReply, Status> {
        let state = &self.peering;
        state.check_serving()?;
        check_key(&request.key).map_err(invalid)?;
        check_value(&request.value).map_err(invalid)?;
        let Some(primary) = state.ring().primary(&request.key) else {
            return Err(self.not_primary(&request.key, None));
        };
        if primary == state.me {
            let record = self.execute_write(&request.key, &request.value).await?;
            return Ok(WriteReply {
                version: Some(version_to_wire(record.version)),
                primary: state.id().to_string(),
            });
        }
        if request.forwarded {
            return Err(self.not_primary(&request.key, Some(primary)));
        }
        let forwarded = WriteRequest {
            forwarded: true,
            ..request
        };
        state
            .transport
            .write(primary, forwarded)
            .await
            .map_err(|s| self.peer_failed(primary, "write forwarded to primary", s))
    }

    /// Compare-and-swap of a key, executed by its primary like a write.
    pub async fn update_if_value_is(
        &self,
        request: UpdateIfValueIsRequest,
    ) -> Result<UpdateIfValueIsReply, Status> {
        let state = &self.peering;
        state.check_serving()?;
        check_key(&request.key).map_err(invalid)?;
        check_value(&request.old_value).map_err(invalid)?;
        check_value(&request.new_value).map_err(invalid)?;
        let Some(primary) = state.ring().primary(&request.key) else {
            return Err(self.not_primary(&request.key, None));
        };
        if primary == state.me {
            let record = self
                .execute_cas(&request.key, &request.old_value, &request.new_value)
                .await?;
            return Ok(UpdateIfValueIsReply {
                version: record.map(|r| version_to_wire(r.version)),
                primary: state.id().to_string(),
            });
        }
        if request.forwarded {
            return Err(self.not_primary(&request.key, Some(primary)));
        }
        let forwarded = UpdateIfValueIsRequest {
            forwarded: true,
            ..request
        };
        state
            .transport
            .update_if_value_is(primary, forwarded)
            .await
            .map_err(|s| self.peer_failed(primary, "conditional update forwarded to primary", s))
    }

    /// Asks the other replicas of the key for the read, returning the first answer
    /// that holds a record (`None` if none does or none answers).
    async fn read_elsewhere(&self, request: &ReadRequest, ring: &Ring) -> Option<ReadReply> {
        let state = &self.peering;
        for &replica in ring.replicas(&request.key) {
            if replica == state.me {
                continue;
            }
            let forwarded = ReadRequest {
                forwarded: true,
                ..request.clone()
            };
            if let Ok(reply) = state.transport.read(replica, forwarded).await {
                if reply.record.is_some() {
                    return Some(reply);
                }
            }
        }
        None
    }

    /// Wraps a failed call to peer `index` with who it was. A forward that could not
    /// even connect certainly had no effect: it becomes `ABORTED` (retry once the
    /// crash is detected), unlike a failure mid-call whose outcome is unknown.
    fn peer_failed(&self, index: usize, what: &str, status: Status) -> Status {
        let state = &self.peering;
        let code = if is_connect_failure(&status) {
            tonic::Code::Aborted
        } else {
            status.code()
        };
        Status::new(
            code,
            format!(
                "{what} via {} ({}) failed: {}",
                state.id_of(index),
                state.url_of(index),
                status.message()
            ),
        )
    }
}
