//! The storage workload: concurrent clients doing random writes, compare-and-swaps
//! and reads on a small set of keys, recording every operation.
//!
//! The key set is small so that keys are contended: several clients write and CAS
//! the same key at the same time, which is what gives the linearizability checker
//! something to check. Every value written is unique in the run (`c<client>-<seq>`),
//! so the checkers can tell every write apart by its value alone.
//!
//! A CAS expects the value this client last saw for the key (its own last write, or a
//! read), so under contention some succeed and some fail, both of which the checker
//! must justify. Each client pauses briefly between operations (longer after an
//! error, like a real client backing off), which keeps the history small enough to
//! check exhaustively.
//!
//! The workload is generic over [`KeyValue`], so the simulator and the real-process
//! suite run the same clients: only what a call goes through differs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::history::{ClientId, OpKind, OpResult, Operation, RunClock};
use crate::kv::{KeyValue, KvError};

/// What every storage client of a run shares.
#[derive(Debug, Clone)]
pub struct StorageWorkload {
    /// The contended keys.
    pub keys: Arc<Vec<String>>,
    /// Clients stop invoking operations once the run clock passes this.
    pub duration: Duration,
    /// Longest an operation may take (the client library's own retries included)
    /// before it is recorded as unknown.
    pub op_deadline: Duration,
    /// Longest pause between two operations of one client (uniform from zero).
    pub max_think: Duration,
    /// Pause after an operation that failed or timed out.
    pub error_backoff: Duration,
}

/// The keys of a run: `k0`, `k1`, ….
pub fn storage_keys(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("k{i}")).collect()
}

/// Runs one storage client until the workload's duration has passed and returns its
/// operations (with `id` 0; the suite numbers them once all are merged).
///
/// Never hangs: each call is bounded by `op_deadline`, after which it is recorded as
/// unknown.
pub async fn run_storage_client<K: KeyValue>(
    client_id: ClientId,
    client: K,
    workload: StorageWorkload,
    clock: RunClock,
    seed: u64,
) -> Vec<Operation> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut known: HashMap<String, String> = HashMap::new();
    let mut history = Vec::new();
    let mut seq: u64 = 0;
    while clock.elapsed() < workload.duration {
        let Some(key) = pick(&mut rng, &workload.keys).cloned() else {
            break;
        };
        seq += 1;
        let fresh = format!("c{client_id}-{seq}");
        let roll = rng.random_range(0..100u32);
        let kind = match known.get(&key) {
            Some(old) if roll < 35 => OpKind::Cas {
                old: old.clone(),
                new: fresh,
            },
            _ if roll < 70 => OpKind::Write { value: fresh },
            _ => OpKind::Read,
        };
        let invoked_ns = clock.now_ns();
        let result = invoke(&client, &key, &kind, workload.op_deadline).await;
        let completed_ns = clock.now_ns();
        learn(&mut known, &key, &kind, &result);
        let failed = matches!(result, OpResult::Failed { .. } | OpResult::Unknown { .. });
        history.push(Operation {
            id: 0,
            client: client_id,
            key,
            kind,
            invoked_ns,
            completed_ns,
            result,
        });
        let pause = if failed {
            workload.error_backoff
        } else {
            workload.max_think.mul_f64(rng.random_range(0.0..1.0))
        };
        tokio::time::sleep(pause).await;
    }
    history
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> Option<&'a T> {
    if items.is_empty() {
        None
    } else {
        items.get(rng.random_range(0..items.len()))
    }
}

/// Performs one operation, bounded by `deadline`, and turns what happened into a
/// result: a call that certainly had no effect is [`OpResult::Failed`], one that may
/// have is [`OpResult::Unknown`], as is one without an answer by the deadline.
async fn invoke<K: KeyValue>(client: &K, key: &str, kind: &OpKind, deadline: Duration) -> OpResult {
    let timed_out = || OpResult::Unknown {
        error: format!("no answer within {deadline:?}"),
    };
    let failed = |error: KvError| match error {
        KvError::NotApplied(error) => OpResult::Failed { error },
        KvError::MayHaveApplied(error) => OpResult::Unknown { error },
    };
    match kind {
        OpKind::Write { value } => {
            match tokio::time::timeout(deadline, client.write(key, value)).await {
                Ok(Ok(version)) => OpResult::Written { version },
                Ok(Err(error)) => failed(error),
                Err(_) => timed_out(),
            }
        }
        OpKind::Cas { old, new } => {
            match tokio::time::timeout(deadline, client.cas(key, old, new)).await {
                Ok(Ok(Some(version))) => OpResult::Written { version },
                Ok(Ok(None)) => OpResult::CasFailed,
                Ok(Err(error)) => failed(error),
                Err(_) => timed_out(),
            }
        }
        OpKind::Read => match tokio::time::timeout(deadline, client.read(key)).await {
            Ok(Ok(record)) => OpResult::ReadValue {
                value: record.as_ref().map(|(value, _)| value.clone()),
                version: record.map(|(_, version)| version),
            },
            // A read changes nothing: whatever went wrong, it did not take effect.
            Ok(Err(error)) => OpResult::Failed {
                error: error.to_string(),
            },
            Err(_) => OpResult::Failed {
                error: format!("no answer within {deadline:?}"),
            },
        },
        OpKind::Chain { .. } => OpResult::Failed {
            error: "chains are not storage operations".to_string(),
        },
    }
}

/// Updates what this client believes each key holds, the `old` of its next CAS.
fn learn(known: &mut HashMap<String, String>, key: &str, kind: &OpKind, result: &OpResult) {
    let value = match (kind, result) {
        (OpKind::Write { value }, OpResult::Written { .. }) => Some(value.clone()),
        (OpKind::Cas { new, .. }, OpResult::Written { .. }) => Some(new.clone()),
        (OpKind::Read, OpResult::ReadValue { value, .. }) => value.clone(),
        _ => None,
    };
    if let Some(value) = value {
        known.insert(key.to_string(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dida_core::Version;

    #[test]
    fn clients_learn_what_they_wrote_and_read() {
        let mut known = HashMap::new();
        learn(
            &mut known,
            "k",
            &OpKind::Write { value: "a".into() },
            &OpResult::Written {
                version: Version::new(1, 1),
            },
        );
        assert_eq!(known["k"], "a");
        learn(
            &mut known,
            "k",
            &OpKind::Write { value: "b".into() },
            &OpResult::Unknown { error: "x".into() },
        );
        assert_eq!(known["k"], "a", "an unknown write teaches nothing");
        learn(
            &mut known,
            "k",
            &OpKind::Read,
            &OpResult::ReadValue {
                value: Some("z".into()),
                version: Some(Version::new(4, 2)),
            },
        );
        assert_eq!(known["k"], "z");
    }

    #[test]
    fn keys_are_named_in_order() {
        assert_eq!(storage_keys(3), ["k0", "k1", "k2"]);
    }
}
