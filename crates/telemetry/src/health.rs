//! The standard gRPC health service (`grpc.health.v1.Health`) on a node's own port,
//! kept in step with the node's readiness check.

use std::time::Duration;

use tokio::task::JoinHandle;
use tonic_health::ServingStatus;

use crate::ReadinessCheck;

/// The health service every node adds to its gRPC router.
pub type HealthServer =
    tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>;

/// How often the health service re-reads the node's readiness.
const REFRESH: Duration = Duration::from_millis(250);

/// The health service, and the task that keeps its status (for the whole server,
/// the empty service name) `SERVING` while `ready` holds and `NOT_SERVING` while it
/// does not. Tie the task to the node's server so it stops with it.
pub fn health_service(ready: ReadinessCheck) -> (HealthServer, JoinHandle<()>) {
    let reporter = tonic_health::server::HealthReporter::new();
    let service = HealthServer::new(tonic_health::server::HealthService::from_health_reporter(
        reporter.clone(),
    ));
    let task = tokio::spawn(async move {
        let mut last = None;
        loop {
            let status = match ready() {
                Ok(()) => ServingStatus::Serving,
                Err(_) => ServingStatus::NotServing,
            };
            if last != Some(status) {
                reporter.set_service_status("", status).await;
                last = Some(status);
            }
            tokio::time::sleep(REFRESH).await;
        }
    });
    (service, task)
}
