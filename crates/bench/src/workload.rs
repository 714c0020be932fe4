//! The storage workloads: which keys each one uses and what one request is.
//!
//! Every workload sends all its requests to the same target node, so that the no-op
//! RPC to that node (the `ping` workload) is a fair baseline: same connection, same
//! server process, same share of the machine. Keys are chosen through the client's
//! ring so that the target serves them itself, without forwarding:
//! - `read`: keys the target replicates, read from the target;
//! - `write`: keys whose primary is the target;
//! - `cas`: one key per task whose primary is the target, so each task is its key's
//!   only writer and every compare-and-swap should succeed.
//!
//! Beside them run the Redis workloads (`redis-get`, `redis-set`, in `crate::redis`),
//! the outside baseline for `read` and `write`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use dida_storage_client::StorageClient;
use futures::{StreamExt, TryStreamExt};

use crate::closed_loop::Operation;
use crate::redis::RedisWorkload;

/// How many preparation requests are in flight at once; only the set-up uses it.
const PREPARE_IN_FLIGHT: usize = 32;

/// The workloads, in the order they run at each concurrency: the baselines first, so
/// every other row can be compared with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workload {
    /// A no-op RPC to the target: the transport baseline.
    Ping,
    /// A Redis command: the outside baseline, measured when the run has a Redis.
    Redis(RedisWorkload),
    /// Reads of keys the target replicates.
    Read,
    /// Writes of keys whose primary is the target.
    Write,
    /// Compare-and-swap increments of keys whose primary is the target.
    Cas,
}

impl Workload {
    /// Every workload, baselines first.
    pub const ALL: [Workload; 6] = [
        Workload::Ping,
        Workload::Redis(RedisWorkload::Get),
        Workload::Redis(RedisWorkload::Set),
        Workload::Read,
        Workload::Write,
        Workload::Cas,
    ];

    /// The name shown in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Ping => "ping",
            Workload::Redis(command) => command.name(),
            Workload::Read => "read",
            Workload::Write => "write",
            Workload::Cas => "cas",
        }
    }

    /// The Redis workload doing the same job, which the report compares this one
    /// with ("vs redis"): GET for reads, SET for writes. CAS has none (Redis would
    /// need a script or a transaction, which is a different cost).
    pub fn redis_baseline(self) -> Option<RedisWorkload> {
        match self {
            Workload::Read => Some(RedisWorkload::Get),
            Workload::Write => Some(RedisWorkload::Set),
            Workload::Ping | Workload::Redis(_) | Workload::Cas => None,
        }
    }
}

/// The first `count` keys `{prefix}0`, `{prefix}1`, … that satisfy `wanted`.
///
/// Fails instead of searching forever when too few candidates qualify (a target that
/// owns almost nothing on the ring).
pub(crate) fn select_keys(
    prefix: &str,
    count: usize,
    wanted: impl Fn(&str) -> bool,
) -> anyhow::Result<Vec<String>> {
    let limit = count.saturating_mul(1000).max(100_000);
    let keys: Vec<String> = (0..limit)
        .map(|i| format!("{prefix}{i}"))
        .filter(|key| wanted(key))
        .take(count)
        .collect();
    if keys.len() < count {
        bail!(
            "only {} of the first {limit} keys {prefix}N qualify; {count} are needed",
            keys.len()
        );
    }
    Ok(keys)
}

/// Writes `value` to every key (through each key's primary).
pub(crate) async fn populate(
    client: &StorageClient,
    keys: &[String],
    value: &str,
) -> anyhow::Result<()> {
    futures::stream::iter(keys)
        .map(|key| async move {
            client
                .write(key, value)
                .await
                .with_context(|| format!("cannot write {key}"))
        })
        .buffer_unordered(PREPARE_IN_FLIGHT)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Waits until `node` holds every key, so the read workload never measures a miss.
/// Writes are acknowledged by the primary and reach the other replicas by gossip, so
/// a replica may lag a little behind the populating writes.
pub(crate) async fn wait_until_present(
    client: &StorageClient,
    node: &str,
    keys: &[String],
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    futures::stream::iter(keys)
        .map(|key| async move {
            loop {
                let record = client
                    .read_from(node, key, None)
                    .await
                    .with_context(|| format!("cannot read {key} from {node}"))?;
                if record.is_some() {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    bail!("{key} has not reached {node} within {limit:?}");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .buffer_unordered(PREPARE_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// The `ping` workload: a no-op RPC to the target, i.e. the cost of the transport
/// alone (serialisation, HTTP/2, loopback, scheduling) that every other request pays
/// too.
pub(crate) struct Ping {
    client: Arc<StorageClient>,
    node: String,
}

impl Operation for Ping {
    async fn call(&mut self) -> anyhow::Result<()> {
        Ok(self.client.ping(&self.node).await?)
    }
}

/// `concurrency` tasks' worth of the `ping` workload.
pub(crate) fn ping_ops(client: &Arc<StorageClient>, node: &str, concurrency: usize) -> Vec<Ping> {
    (0..concurrency)
        .map(|_| Ping {
            client: Arc::clone(client),
            node: node.to_string(),
        })
        .collect()
}

/// The `read` workload: each task reads the keys in turn from the target, starting
/// at its own offset so the tasks spread over the keys.
pub(crate) struct Read {
    client: Arc<StorageClient>,
    node: String,
    keys: Arc<[String]>,
    next: usize,
}

impl Operation for Read {
    async fn call(&mut self) -> anyhow::Result<()> {
        let key = &self.keys[self.next % self.keys.len()];
        self.next = self.next.wrapping_add(1);
        match self.client.read_from(&self.node, key, None).await? {
            Some(_) => Ok(()),
            None => bail!("{key} is missing on {}", self.node),
        }
    }
}

/// `concurrency` tasks' worth of the `read` workload over `keys` (already populated).
pub(crate) fn read_ops(
    client: &Arc<StorageClient>,
    node: &str,
    keys: &Arc<[String]>,
    concurrency: usize,
) -> Vec<Read> {
    (0..concurrency)
        .map(|task| Read {
            client: Arc::clone(client),
            node: node.to_string(),
            keys: Arc::clone(keys),
            next: task * keys.len() / concurrency,
        })
        .collect()
}

/// The `write` workload: each task writes the keys in turn, starting at its own
/// offset. The client sends each write to the key's primary, which is the target.
pub(crate) struct Write {
    client: Arc<StorageClient>,
    keys: Arc<[String]>,
    value: Arc<str>,
    next: usize,
}

impl Operation for Write {
    async fn call(&mut self) -> anyhow::Result<()> {
        let key = &self.keys[self.next % self.keys.len()];
        self.next = self.next.wrapping_add(1);
        self.client.write(key, &self.value).await?;
        Ok(())
    }
}

/// `concurrency` tasks' worth of the `write` workload over `keys`.
pub(crate) fn write_ops(
    client: &Arc<StorageClient>,
    keys: &Arc<[String]>,
    value: &Arc<str>,
    concurrency: usize,
) -> Vec<Write> {
    (0..concurrency)
        .map(|task| Write {
            client: Arc::clone(client),
            keys: Arc::clone(keys),
            value: Arc::clone(value),
            next: task * keys.len() / concurrency,
        })
        .collect()
}

/// The `cas` workload: the task owns `key` and increments it with compare-and-swap
/// from the value it last wrote. Nobody else writes the key, so a failed comparison
/// means a lost or duplicated update: it is counted as an error and the task re-reads
/// the key from the target (its primary) to carry on from the real value.
pub(crate) struct Cas {
    client: Arc<StorageClient>,
    node: String,
    key: String,
    counter: u64,
}

impl Cas {
    /// Sets the counter to the key's newest value on its primary.
    async fn resync(&mut self) -> anyhow::Result<()> {
        let record = self
            .client
            .read_from(&self.node, &self.key, None)
            .await
            .with_context(|| format!("cannot re-read {} from {}", self.key, self.node))?
            .with_context(|| format!("{} is missing on {}", self.key, self.node))?;
        self.counter = record
            .value
            .parse()
            .with_context(|| format!("{} holds {:?}, not a counter", self.key, record.value))?;
        Ok(())
    }
}

impl Operation for Cas {
    async fn call(&mut self) -> anyhow::Result<()> {
        let old = self.counter.to_string();
        let new = (self.counter + 1).to_string();
        let failure = match self.client.update_if_value_is(&self.key, &old, &new).await {
            Ok(Some(_)) => {
                self.counter += 1;
                return Ok(());
            }
            Ok(None) => anyhow::anyhow!("CAS on {} failed: its value was not {old}", self.key),
            Err(error) => anyhow::Error::new(error).context(format!("CAS on {} failed", self.key)),
        };
        // Whether or not the failed call took effect, carry on from the stored value.
        match self.resync().await {
            Ok(()) => Err(failure),
            Err(resync) => Err(failure.context(format!("and then {resync:#}"))),
        }
    }
}

/// One `cas` task per key; each key must already hold `"0"`.
pub(crate) fn cas_ops(client: &Arc<StorageClient>, node: &str, keys: &[String]) -> Vec<Cas> {
    keys.iter()
        .map(|key| Cas {
            client: Arc::clone(client),
            node: node.to_string(),
            key: key.clone(),
            counter: 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selected_keys_are_the_first_that_qualify() {
        let keys = select_keys("k/", 3, |key| key.ends_with('5')).unwrap();
        assert_eq!(keys, ["k/5", "k/15", "k/25"]);
    }

    #[test]
    fn selection_fails_when_too_few_keys_qualify() {
        let error = select_keys("k/", 2, |key| key == "k/7").unwrap_err();
        assert!(error.to_string().contains("only 1 of the first"), "{error}");
    }

    #[test]
    fn workloads_run_baselines_first() {
        assert_eq!(Workload::ALL[0], Workload::Ping);
        let names: Vec<_> = Workload::ALL.iter().map(|w| w.name()).collect();
        assert_eq!(
            names,
            ["ping", "redis-get", "redis-set", "read", "write", "cas"]
        );
    }

    #[test]
    fn reads_compare_with_get_and_writes_with_set() {
        let pairs: Vec<_> = Workload::ALL
            .iter()
            .filter_map(|w| Some((w.name(), w.redis_baseline()?.name())))
            .collect();
        assert_eq!(pairs, [("read", "redis-get"), ("write", "redis-set")]);
    }
}
