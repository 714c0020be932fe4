//! The simulator's back-end of [`dida_verify::kv::KeyValue`]: each call goes to a
//! node drawn at random (as behind a load balancer: a node that just resumed from a
//! pause gets its share at once, and a node that joins from the moment it runs) through the in-memory network, and its error is
//! mapped to "not applied" or "may have been applied" by its kind.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dida_core::Version;
use dida_proto::convert::version_from_wire;
use dida_proto::storage::{ReadRequest, UpdateIfValueIsRequest, WriteRequest};
use dida_proto::transport::is_connect_failure;
use dida_storage::Node;
use dida_verify::kv::{KeyValue, KvError};
use rand::rngs::StdRng;
use rand::RngExt;
use tonic::{Code, Status};

use crate::network::{Call, Network, Sender};
use crate::trace::Trace;

/// Simulated client `me` of the cluster.
#[derive(Debug, Clone)]
pub struct SimKv {
    /// The network the calls go through.
    pub network: Arc<Network>,
    /// This client's number (for the trace and the network's sender).
    pub me: usize,
    /// How long a call waits for an answer.
    pub deadline: Duration,
    /// The run's seeded generator, which draws the node of each call.
    pub rng: Arc<Mutex<StdRng>>,
    /// The run's trace.
    pub trace: Arc<Trace>,
}

impl SimKv {
    async fn send<Req, Rep, H, Fut>(
        &self,
        what: &'static str,
        request: Req,
        handle: H,
    ) -> Result<Rep, KvError>
    where
        Req: Clone + Send + 'static,
        Rep: Send + 'static,
        H: Fn(Arc<Node>, Req) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = Result<Rep, Status>> + Send + 'static,
    {
        let target = {
            let mut rng = self.rng.lock().expect("rng lock poisoned");
            rng.random_range(0..self.network.len())
        };
        let call = Call {
            what,
            deadline: self.deadline,
            idempotent: false,
        };
        let answer = self
            .network
            .call(Sender::Client(self.me), target, call, request, handle)
            .await;
        answer.map_err(|status| {
            self.trace.event(format_args!(
                "client{} {what}: {:?} {}",
                self.me,
                status.code(),
                status.message()
            ));
            kv_error(&status)
        })
    }
}

impl KeyValue for SimKv {
    async fn write(&self, key: &str, value: &str) -> Result<Version, KvError> {
        let request = WriteRequest {
            key: key.to_string(),
            value: value.to_string(),
            forwarded: false,
        };
        let reply = self
            .send("client-write", request, |node: Arc<Node>, r| async move {
                node.write(r).await
            })
            .await?;
        reply
            .version
            .map(version_from_wire)
            .ok_or_else(|| KvError::MayHaveApplied("a write acknowledged without a version".into()))
    }

    async fn cas(&self, key: &str, old: &str, new: &str) -> Result<Option<Version>, KvError> {
        let request = UpdateIfValueIsRequest {
            key: key.to_string(),
            old_value: old.to_string(),
            new_value: new.to_string(),
            forwarded: false,
        };
        let reply = self
            .send("client-cas", request, |node: Arc<Node>, r| async move {
                node.update_if_value_is(r).await
            })
            .await?;
        Ok(reply.version.map(version_from_wire))
    }

    async fn read(&self, key: &str) -> Result<Option<(String, Version)>, KvError> {
        let request = ReadRequest {
            key: key.to_string(),
            version: None,
            forwarded: false,
        };
        let reply = self
            .send("client-read", request, |node: Arc<Node>, r| async move {
                node.read(r).await
            })
            .await?;
        let Some(record) = reply.record else {
            return Ok(None);
        };
        let version = record.version.ok_or_else(|| {
            KvError::NotApplied(format!("a record of {key:?} read without a version"))
        })?;
        Ok(Some((record.value, version_from_wire(version))))
    }
}

/// Whether a failed call may have taken effect, by its kind: a connection never
/// made (the network's refusal carries an I/O error of kind `ConnectionRefused`, as
/// a real one does), or a node's refusal with `ABORTED`, `INVALID_ARGUMENT`,
/// `FAILED_PRECONDITION` or `NOT_FOUND`, wrote nothing; anything else (a deadline,
/// `UNAVAILABLE`, which is also a write applied but acknowledged by too few
/// replicas) may have been applied.
fn kv_error(status: &Status) -> KvError {
    let text = format!("{:?}: {}", status.code(), status.message());
    let not_applied = is_connect_failure(status)
        || matches!(
            status.code(),
            Code::Aborted | Code::InvalidArgument | Code::FailedPrecondition | Code::NotFound
        );
    if not_applied {
        KvError::NotApplied(text)
    } else {
        KvError::MayHaveApplied(text)
    }
}
