//! Which role may call which RPC, enforced on every server in one place.
//!
//! [`policy`] is the table; [`AuthorizeLayer`] applies it to every request a dida
//! server receives, before any handler runs. With mutual TLS, the caller's role is
//! the one its certificate states (checked against the cluster's CA by the TLS
//! handshake) and a call from a role the table does not list is refused with
//! `PERMISSION_DENIED`. Without TLS, calls between nodes must carry the cluster
//! token — the explicit one or this user's cookie, [`crate::security::Security::node_token`]
//! (`UNAUTHENTICATED` otherwise) — and client calls need nothing.
//!
//! The table, by service:
//! - `Replication` (push, probe, digests, fetch, handback): storage nodes only;
//! - `Worker/HandOff` (an execution handed to a worker): the scheduler and workers;
//! - `Scheduler/OperatorsCompleted`, `Scheduler/ReportOutcomes`,
//!   `Scheduler/RegisterWorker` and `Scheduler/DeregisterWorker`: workers only;
//! - `DebugSink/Report`: nodes only;
//! - `ProcessCreation` (start, kill, restart nodes): clients (the PuppetMaster);
//! - `Membership/RemoveMember` (decommission a storage node): clients, and
//!   without TLS only those holding the cluster token;
//! - `Membership/Join` (admit a new storage node): storage nodes only;
//! - everything else (the storage API, submit, outcome, status, ping): any
//!   authenticated caller.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

use crate::security::{self, identity_of_certificate, tokens_match, Role, CLUSTER_TOKEN_HEADER};

/// Who may call an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The roles allowed, with TLS on.
    pub callers: &'static [Role],
    /// Whether it is a call between nodes, which carries the cluster token when TLS
    /// is off.
    pub between_nodes: bool,
}

const ANYONE: Policy = Policy {
    callers: &Role::ALL,
    between_nodes: false,
};

/// The policy of the RPC at `path` (`/package.Service/Method`).
pub fn policy(path: &str) -> Policy {
    let nodes = |callers| Policy {
        callers,
        between_nodes: true,
    };
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path, ""));
    match (service, method) {
        ("dida.storage.v1.Replication", _) => nodes(&[Role::Storage]),
        ("dida.storage.v1.Membership", "RemoveMember") => nodes(&[Role::Client]),
        ("dida.storage.v1.Membership", "Join") => nodes(&[Role::Storage]),
        ("dida.execution.v1.Worker", "HandOff") => nodes(&[Role::Scheduler, Role::Worker]),
        (
            "dida.execution.v1.Scheduler",
            "OperatorsCompleted" | "ReportOutcomes" | "RegisterWorker" | "DeregisterWorker",
        ) => nodes(&[Role::Worker]),
        ("dida.control.v1.DebugSink", _) => {
            nodes(&[Role::Storage, Role::Worker, Role::Scheduler, Role::Pcs])
        }
        ("dida.control.v1.ProcessCreation", _) => Policy {
            callers: &[Role::Client],
            between_nodes: false,
        },
        _ => ANYONE,
    }
}

/// The identity a TLS caller's certificate states, verified by the handshake and
/// authorised by [`policy`]. [`AuthorizeLayer`] records it in the request's
/// extensions, so handlers read it without parsing the certificate again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The caller's role.
    pub role: Role,
    /// The caller's name (a node's id).
    pub name: String,
}

/// Checks one request against [`policy`] and this process's security; with TLS,
/// returns the caller it authorised.
fn check<B>(request: &http::Request<B>) -> Result<Option<Caller>, Status> {
    let security = security::installed();
    let path = request.uri().path();
    let policy = policy(path);
    if security.tls.is_some() {
        let caller = caller(request).ok_or_else(|| {
            Status::unauthenticated(format!(
                "{path} needs a client certificate naming a dida role (see `dida certs`)"
            ))
        })?;
        let role = caller.role;
        if !policy.callers.contains(&role) {
            return Err(Status::permission_denied(format!(
                "a {role} may not call {path}: only {}",
                policy
                    .callers
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        return Ok(Some(caller));
    }
    if let (Some(expected), true) = (security.node_token(), policy.between_nodes) {
        let given = request
            .headers()
            .get(CLUSTER_TOKEN_HEADER)
            .map(|v| v.as_bytes());
        return match given {
            Some(given) if tokens_match(given, expected.as_bytes()) => Ok(None),
            Some(_) => Err(Status::unauthenticated(format!(
                "{path} is a call between nodes and carries the wrong cluster token"
            ))),
            None => Err(Status::unauthenticated(format!(
                "{path} is a call between nodes and needs the cluster token \
                 (--cluster-token, or this user's token file ~/.dida/cluster-token)"
            ))),
        };
    }
    Ok(None)
}

/// The identity in the caller's certificate, which the TLS handshake verified.
fn caller<B>(request: &http::Request<B>) -> Option<Caller> {
    // Every dida server accepts `LimitedConnection`s, whose information is TCP's.
    let info = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()?;
    let certs = info.peer_certs()?;
    let (role, name) = identity_of_certificate(certs.first()?.as_ref())?;
    Some(Caller { role, name })
}

/// With TLS on, checks that a node's message speaks for the node whose certificate
/// made the call: `claimed` (a message's `from`) must be the certificate's name.
/// Authorisation by role says a storage node sent a push; this says which one, so a
/// member cannot forge another member's pushes, probes or failure declarations.
/// Without TLS there is no certificate to check against, and the claim stands.
pub fn check_speaks_for<T>(request: &tonic::Request<T>, claimed: &str) -> Result<(), Status> {
    if security::installed().tls.is_none() {
        return Ok(());
    }
    let Caller { name, .. } = request
        .extensions()
        .get::<Caller>()
        .ok_or_else(|| Status::unauthenticated("no client certificate naming a dida role"))?;
    if name != claimed {
        return Err(Status::permission_denied(format!(
            "the certificate of {name} may not speak for {claimed:?}"
        )));
    }
    Ok(())
}

/// Applies [`policy`] to every request of a server (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthorizeLayer;

impl<S> tower::Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize { inner }
    }
}

/// The service [`AuthorizeLayer`] wraps around a server's routes.
#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for Authorize<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match check(&request) {
            Ok(caller) => {
                if let Some(caller) = caller {
                    request.extensions_mut().insert(caller);
                }
                Box::pin(self.inner.call(request))
            }
            Err(status) => {
                tracing::warn!(
                    path = request.uri().path(),
                    code = ?status.code(),
                    reason = status.message(),
                    "refused a call"
                );
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_roles_reach_internal_calls() {
        let push = policy("/dida.storage.v1.Replication/Push");
        assert_eq!(push.callers, &[Role::Storage]);
        assert!(push.between_nodes);
        let hand_off = policy("/dida.execution.v1.Worker/HandOff");
        assert!(!hand_off.callers.contains(&Role::Client));
        let report = policy("/dida.execution.v1.Scheduler/ReportOutcomes");
        assert_eq!(report.callers, &[Role::Worker]);
        for membership in ["RegisterWorker", "DeregisterWorker"] {
            let path = format!("/dida.execution.v1.Scheduler/{membership}");
            let only_workers = Policy {
                callers: &[Role::Worker],
                between_nodes: true,
            };
            assert_eq!(policy(&path), only_workers, "{path}");
        }
        let submit = policy("/dida.execution.v1.Scheduler/Submit");
        assert!(submit.callers.contains(&Role::Client) && !submit.between_nodes);
        // Inspecting executions is a client's business, like fetching an outcome.
        for method in ["ListExecutions", "ExecutionLogs", "Outcome"] {
            let inspect = policy(&format!("/dida.execution.v1.Scheduler/{method}"));
            assert!(inspect.callers.contains(&Role::Client) && !inspect.between_nodes);
        }
        let write = policy("/dida.storage.v1.Storage/Write");
        assert!(write.callers.contains(&Role::Client) && !write.between_nodes);
        let start = policy("/dida.control.v1.ProcessCreation/StartNode");
        assert_eq!(start.callers, &[Role::Client]);
        // Decommissioning is an operator's, with the token when TLS is off; the
        // votes on it are the storage nodes' own; listing members is anyone's.
        let remove = policy("/dida.storage.v1.Membership/RemoveMember");
        assert_eq!(remove.callers, &[Role::Client]);
        assert!(remove.between_nodes);
        for vote in ["ConfigPrepare", "ConfigAccept", "ConfigCommit"] {
            let vote = policy(&format!("/dida.storage.v1.Replication/{vote}"));
            assert_eq!(vote.callers, &[Role::Storage]);
        }
        assert_eq!(policy("/dida.storage.v1.Membership/Members"), ANYONE);
    }
}
