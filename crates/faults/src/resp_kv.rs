//! Clients that speak RESP as the workload's key-value store (`dida faults
//! --client resp`): the same history, linearizability and lost-write checks as
//! with the gRPC client, through the storage nodes' Redis-protocol endpoint and a
//! real Redis client library (`redis`).
//!
//! Each client talks to one node's RESP port (the client's number picks it) and
//! moves to the next node when a call fails, as a Redis user's client pointed at
//! several addresses would: the node forwards what it does not lead. Writes use
//! `DIDA.SET` (a `SET` that answers the new version), conditional updates
//! `DIDA.CAS`, reads `DIDA.GET`.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use dida_core::Version;
use dida_verify::kv::{KeyValue, KvError};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, Value};

/// One workload client over RESP.
pub struct RespKv {
    nodes: Vec<SocketAddr>,
    deadline: Duration,
    /// The node in use and its connection, once made.
    current: Mutex<(usize, Option<MultiplexedConnection>)>,
}

impl std::fmt::Debug for RespKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RespKv")
            .field("nodes", &self.nodes)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl RespKv {
    /// A client of the RESP endpoints `nodes`, starting at `nodes[first % len]`,
    /// each call bounded by `deadline`.
    pub fn new(nodes: Vec<SocketAddr>, first: usize, deadline: Duration) -> Self {
        let start = first % nodes.len().max(1);
        Self {
            nodes,
            deadline,
            current: Mutex::new((start, None)),
        }
    }

    /// The connection to the node in use, made if needed; `NotApplied` when it
    /// cannot be made (nothing was sent).
    async fn connection(&self) -> Result<MultiplexedConnection, KvError> {
        let (index, existing) = self.current.lock().expect("client lock poisoned").clone();
        if let Some(connection) = existing {
            return Ok(connection);
        }
        let addr = self.nodes[index];
        let client = redis::Client::open(format!("redis://{addr}/"))
            .map_err(|e| KvError::NotApplied(format!("bad address {addr}: {e}")))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.deadline))
            .set_response_timeout(None);
        let connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| {
                self.move_on(index);
                KvError::NotApplied(format!("cannot connect to {addr}: {e}"))
            })?;
        let mut current = self.current.lock().expect("client lock poisoned");
        if current.0 == index {
            current.1 = Some(connection.clone());
        }
        Ok(connection)
    }

    /// Drops the connection to node `index` and moves to the next node.
    fn move_on(&self, index: usize) {
        let mut current = self.current.lock().expect("client lock poisoned");
        if current.0 == index {
            *current = ((index + 1) % self.nodes.len(), None);
        }
    }

    /// Sends `command`, within the deadline.
    async fn call(&self, command: redis::Cmd) -> Result<Value, KvError> {
        let mut connection = self.connection().await?;
        let index = self.current.lock().expect("client lock poisoned").0;
        match tokio::time::timeout(self.deadline, command.query_async(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                let classified = classify(&error);
                if !is_refusal(&error) {
                    self.move_on(index);
                }
                Err(classified)
            }
            Err(_) => {
                self.move_on(index);
                Err(KvError::MayHaveApplied(format!(
                    "{} did not answer within {:?}",
                    self.nodes[index], self.deadline
                )))
            }
        }
    }
}

/// Error replies whose code says nothing was applied: a bad argument (`ERR`), a
/// reserved key (`NOPERM`), a node that does not lead the key or has no ring
/// (`ABORTED`), authentication (`NOAUTH`, `WRONGPASS`).
const NOT_APPLIED_CODES: [&str; 5] = ["ERR", "NOPERM", "ABORTED", "NOAUTH", "WRONGPASS"];

/// Whether `error` is an error reply from a node that answered (the connection is
/// fine).
fn is_refusal(error: &RedisError) -> bool {
    error.code().is_some()
}

/// Whether a failed call may have taken effect: error replies by their code
/// (`UNAVAILABLE` and `DEADLINE_EXCEEDED` may have been applied, as with gRPC), a
/// refused connection certainly not, a dropped one or a timeout maybe.
fn classify(error: &RedisError) -> KvError {
    let text = error.to_string();
    match error.code() {
        Some(code) if NOT_APPLIED_CODES.contains(&code) => KvError::NotApplied(text),
        Some(_) => KvError::MayHaveApplied(text),
        None if error.is_connection_refusal() => KvError::NotApplied(text),
        None => KvError::MayHaveApplied(text),
    }
}

fn version(value: &Value) -> Result<Version, KvError> {
    let text: String = redis::from_redis_value_ref(value)
        .map_err(|e| KvError::MayHaveApplied(format!("not a version: {e}")))?;
    text.parse()
        .map_err(|e| KvError::MayHaveApplied(format!("not a version: {e}")))
}

impl KeyValue for RespKv {
    async fn write(&self, key: &str, value: &str) -> Result<Version, KvError> {
        let reply = self
            .call(redis::cmd("DIDA.SET").arg(key).arg(value).clone())
            .await?;
        version(&reply)
    }

    async fn cas(&self, key: &str, old: &str, new: &str) -> Result<Option<Version>, KvError> {
        let reply = self
            .call(redis::cmd("DIDA.CAS").arg(key).arg(old).arg(new).clone())
            .await?;
        match reply {
            Value::Nil => Ok(None),
            other => version(&other).map(Some),
        }
    }

    async fn read(&self, key: &str) -> Result<Option<(String, Version)>, KvError> {
        let reply = self.call(redis::cmd("DIDA.GET").arg(key).clone()).await?;
        if reply == Value::Nil {
            return Ok(None);
        }
        let (value, at): (String, String) = redis::from_redis_value_ref(&reply)
            .map_err(|e| KvError::NotApplied(format!("DIDA.GET answered {reply:?}: {e}")))?;
        let at = at
            .parse()
            .map_err(|e| KvError::NotApplied(format!("DIDA.GET answered a bad version: {e}")))?;
        Ok(Some((value, at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(line: &str) -> RedisError {
        let bytes = format!("-{line}\r\n");
        match redis::parse_redis_value(bytes.as_bytes()) {
            Ok(Value::ServerError(error)) => error.into(),
            other => panic!("not an error reply: {other:?}"),
        }
    }

    #[test]
    fn error_replies_are_classified_by_their_code() {
        for refused in ["ABORTED not the primary", "ERR bad key", "NOPERM reserved"] {
            assert!(matches!(
                classify(&server_error(refused)),
                KvError::NotApplied(_)
            ));
        }
        for unknown in ["UNAVAILABLE too few acks", "DEADLINE_EXCEEDED slow"] {
            assert!(matches!(
                classify(&server_error(unknown)),
                KvError::MayHaveApplied(_)
            ));
        }
    }
}
