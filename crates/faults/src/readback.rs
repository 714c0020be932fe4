//! Reading back what the serving storage nodes hold, for the checkers of
//! [`dida_verify::lost_writes`], once the cluster has stopped changing.

use std::time::{Duration, Instant};

use dida_storage_client::StorageClient;
use dida_verify::lost_writes::{node_contents, Snapshot};

/// Lists every record of every node in `live`.
pub async fn snapshot(client: &StorageClient, live: &[String]) -> Snapshot {
    let mut result = Snapshot::default();
    for node in live {
        match client.list(node).await {
            Ok(records) => {
                result.nodes.insert(node.clone(), node_contents(records));
            }
            Err(error) => {
                result.unreadable.insert(node.clone(), error.to_string());
            }
        }
    }
    result
}

/// Takes snapshots every `settle` until two in a row are equal (the cluster has
/// converged: nothing moves any more) or `limit` has passed. Returns the last
/// snapshot, whether it converged, and how long it took.
pub async fn wait_for_convergence(
    client: &StorageClient,
    live: &[String],
    settle: Duration,
    limit: Duration,
) -> (Snapshot, bool, Duration) {
    let started = Instant::now();
    let mut previous = snapshot(client, live).await;
    loop {
        tokio::time::sleep(settle).await;
        let current = snapshot(client, live).await;
        let stable = current == previous && current.unreadable.is_empty();
        if stable || started.elapsed() >= limit {
            return (current, stable, started.elapsed());
        }
        previous = current;
    }
}
