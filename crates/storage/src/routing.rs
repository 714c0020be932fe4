//! What a node does with a client's read, write or conditional update (SPEC
//! §2.2–2.3), whichever way it arrived (gRPC, a `Calls` stream, the simulator).
//!
//! Any node accepts any request. A write or conditional update is executed by the
//! key's primary — here if this node is the primary, otherwise forwarded to it once —
//! so all writes of a key are totally ordered by the primary's store. A read is
//! answered locally by a replica of the key, or forwarded to the key's replicas
//! otherwise.
//!
//! Where a request goes is decided by plain functions ([`reads_here`],
//! [`route_write`], [`forward_failure_code`]); executing a write is `write_path`'s.

use dida_core::limits::{check_key, check_value};
use dida_core::{Ring, Version};
use dida_proto::convert::{record_to_wire, version_from_wire, version_to_wire};
use dida_proto::storage::{
    ReadReply, ReadRequest, UpdateIfValueIsReply, UpdateIfValueIsRequest, WriteReply, WriteRequest,
};
use dida_proto::transport::is_connect_failure;
use tonic::Status;

use crate::peering::Peering;
use crate::store::MultiVersionStore;
use crate::write_path::WritePath;

fn invalid(error: impl std::fmt::Display) -> Status {
    Status::invalid_argument(error.to_string())
}

/// Where a write or conditional update goes, as a node with the key's `primary`
/// (in its view) decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteRoute {
    /// This node leads the key: it executes the request.
    Execute,
    /// Another node leads it: forwarded there, once.
    Forward(usize),
    /// Refused, nothing applied: no node leads the key in this node's view
    /// (`None`), or the request was already forwarded once and this node does not
    /// lead it either — the two nodes' views differ.
    NotPrimary(Option<usize>),
}

/// Where node `me` sends a write of a key whose primary it takes to be `primary`;
/// `forwarded` if another node already forwarded it here.
pub(crate) fn route_write(primary: Option<usize>, me: usize, forwarded: bool) -> WriteRoute {
    match primary {
        None => WriteRoute::NotPrimary(None),
        Some(primary) if primary == me => WriteRoute::Execute,
        Some(primary) if forwarded => WriteRoute::NotPrimary(Some(primary)),
        Some(primary) => WriteRoute::Forward(primary),
    }
}

/// Where a read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadRoute {
    /// This node replicates the key in its view: answered from its store.
    Here,
    /// Another node replicates it: forwarded to the key's replicas in turn.
    Forward,
    /// Forwarded here by a node whose view counts this one a replica, but this
    /// node's own view does not (it is joining, or views differ for a moment):
    /// refused, and the forwarder asks the next replica. Its store may hold what a
    /// replica must not serve — versions its last incarnation never got
    /// acknowledged, not yet set aside while it catches up (the simulator found
    /// one served this way: storm seed 188, a read after the write that replaced
    /// it).
    NotReplica,
}

/// Where a read of a key is served: here only if this node `replicates` it in its
/// own view; forwarded once, never twice.
pub(crate) fn route_read(forwarded: bool, replicates: bool) -> ReadRoute {
    match (replicates, forwarded) {
        (true, _) => ReadRoute::Here,
        (false, false) => ReadRoute::Forward,
        (false, true) => ReadRoute::NotReplica,
    }
}

/// The code a forwarded call's failure is told with. A forward that could not
/// even connect certainly had no effect: `ABORTED` (retry once the crash is
/// detected), unlike a failure mid-call, whose code (and unknown outcome) stays.
pub(crate) fn forward_failure_code(status: &Status) -> tonic::Code {
    if is_connect_failure(status) {
        tonic::Code::Aborted
    } else {
        status.code()
    }
}

/// Reads a key here if this node replicates it, else from its replicas.
pub(crate) async fn read(
    state: &Peering,
    store: &MultiVersionStore,
    request: ReadRequest,
) -> Result<ReadReply, Status> {
    state.check_serving()?;
    check_key(&request.key).map_err(invalid)?;
    let ring = state.ring();
    let route = route_read(
        request.forwarded,
        ring.replicas(&request.key).contains(&state.me()),
    );
    if route == ReadRoute::NotReplica {
        return Err(Status::aborted(format!(
            "node {} received a forwarded read of key {:?} but does not replicate it in \
             its view (it is rejoining, or views differ for a moment); read another replica",
            state.id(),
            request.key
        )));
    }
    if route == ReadRoute::Here {
        let version: Option<Version> = request.version.map(version_from_wire);
        let record = store.read(&request.key, version);
        let newer_versions_held = match (&record, version) {
            (None, Some(wanted)) => store.newer_versions_held(&request.key, wanted),
            _ => 0,
        };
        // A replica that joined the key's preference list after a crash may not
        // have received the key from anti-entropy yet: rather than answer "no
        // such key", it asks the key's other replicas.
        let joined_after_a_crash = !state
            .view()
            .initial_ring()
            .replicas(&request.key)
            .contains(&state.me());
        if record.is_none() && !request.forwarded && joined_after_a_crash {
            if let Some(reply) = read_elsewhere(state, &request, &ring).await {
                return Ok(reply);
            }
        }
        return Ok(ReadReply {
            record: record.as_ref().map(record_to_wire),
            served_by: state.id().to_string(),
            newer_versions_held: newer_versions_held as u32,
            max_versions: store.max_versions() as u32,
        });
    }
    let mut last_error = None;
    for &replica in ring.replicas(&request.key) {
        let forwarded = ReadRequest {
            forwarded: true,
            ..request.clone()
        };
        match state.transport().read(replica, forwarded).await {
            Ok(reply) => return Ok(reply),
            Err(status) => last_error = Some(peer_failed(state, replica, "read forwarded", status)),
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

/// Writes a key: executed here if this node is its primary, else forwarded (once)
/// to the primary.
pub(crate) async fn write(
    state: &Peering,
    write_path: &WritePath,
    request: WriteRequest,
) -> Result<WriteReply, Status> {
    state.check_serving()?;
    check_key(&request.key).map_err(invalid)?;
    check_value(&request.value).map_err(invalid)?;
    let primary = state.ring().primary(&request.key);
    match route_write(primary, state.me(), request.forwarded) {
        WriteRoute::Execute => {
            let record = write_path
                .execute_write(&request.key, &request.value)
                .await?;
            Ok(WriteReply {
                version: Some(version_to_wire(record.version)),
                primary: state.id().to_string(),
            })
        }
        WriteRoute::NotPrimary(primary) => Err(write_path.not_primary(&request.key, primary)),
        WriteRoute::Forward(primary) => {
            let forwarded = WriteRequest {
                forwarded: true,
                ..request
            };
            state
                .transport()
                .write(primary, forwarded)
                .await
                .map_err(|s| peer_failed(state, primary, "write forwarded to primary", s))
        }
    }
}

/// Compare-and-swap of a key, executed by its primary like a write.
pub(crate) async fn update_if_value_is(
    state: &Peering,
    write_path: &WritePath,
    request: UpdateIfValueIsRequest,
) -> Result<UpdateIfValueIsReply, Status> {
    state.check_serving()?;
    check_key(&request.key).map_err(invalid)?;
    check_value(&request.old_value).map_err(invalid)?;
    check_value(&request.new_value).map_err(invalid)?;
    let primary = state.ring().primary(&request.key);
    match route_write(primary, state.me(), request.forwarded) {
        WriteRoute::Execute => {
            let record = write_path
                .execute_cas(&request.key, &request.old_value, &request.new_value)
                .await?;
            Ok(UpdateIfValueIsReply {
                version: record.map(|r| version_to_wire(r.version)),
                primary: state.id().to_string(),
            })
        }
        WriteRoute::NotPrimary(primary) => Err(write_path.not_primary(&request.key, primary)),
        WriteRoute::Forward(primary) => {
            let forwarded = UpdateIfValueIsRequest {
                forwarded: true,
                ..request
            };
            state
                .transport()
                .update_if_value_is(primary, forwarded)
                .await
                .map_err(|s| {
                    peer_failed(state, primary, "conditional update forwarded to primary", s)
                })
        }
    }
}

/// Asks the other replicas of the key for the read, returning the first answer
/// that holds a record (`None` if none does or none answers).
async fn read_elsewhere(state: &Peering, request: &ReadRequest, ring: &Ring) -> Option<ReadReply> {
    for &replica in ring.replicas(&request.key) {
        if replica == state.me() {
            continue;
        }
        let forwarded = ReadRequest {
            forwarded: true,
            ..request.clone()
        };
        if let Ok(reply) = state.transport().read(replica, forwarded).await {
            if reply.record.is_some() {
                return Some(reply);
            }
        }
    }
    None
}

/// Wraps a failed call to peer `index` with who it was, coded by
/// [`forward_failure_code`].
fn peer_failed(state: &Peering, index: usize, what: &str, status: Status) -> Status {
    Status::new(
        forward_failure_code(&status),
        format!(
            "{what} via {} ({}) failed: {}",
            state.id_of(index),
            state.url_of(index),
            status.message()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_is_executed_by_its_primary_and_forwarded_at_most_once() {
        assert_eq!(route_write(Some(0), 0, false), WriteRoute::Execute);
        assert_eq!(route_write(Some(0), 0, true), WriteRoute::Execute);
        assert_eq!(route_write(Some(2), 0, false), WriteRoute::Forward(2));
        assert_eq!(
            route_write(Some(2), 0, true),
            WriteRoute::NotPrimary(Some(2))
        );
        assert_eq!(route_write(None, 0, false), WriteRoute::NotPrimary(None));
    }

    #[test]
    fn a_read_is_served_by_a_replica_in_its_own_view_only() {
        assert_eq!(route_read(false, true), ReadRoute::Here);
        assert_eq!(route_read(true, true), ReadRoute::Here);
        assert_eq!(route_read(false, false), ReadRoute::Forward);
        assert_eq!(route_read(true, false), ReadRoute::NotReplica);
    }

    #[test]
    fn a_forward_that_never_connected_is_aborted_other_failures_keep_their_code() {
        let mut refused = Status::unavailable("the forward could not connect");
        refused.set_source(std::sync::Arc::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(forward_failure_code(&refused), tonic::Code::Aborted);
        let unreachable = Status::unavailable("the peer is overloaded");
        assert_eq!(forward_failure_code(&unreachable), tonic::Code::Unavailable);
        let timed_out = Status::deadline_exceeded("deadline has elapsed");
        assert_eq!(
            forward_failure_code(&timed_out),
            tonic::Code::DeadlineExceeded
        );
    }
}
