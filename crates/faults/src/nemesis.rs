//! The nemesis: SIGKILLs storage nodes at random moments of the run, one at a time.
//!
//! SPEC §2.5: storage nodes fail only by crashing and never come back. With
//! replication factor R, up to R − 1 crashes still leave every key a replica, so that
//! is the most the suite injects. Crashes are spread over the run with a pause
//! between them (so the cluster can detect each one and repair before the next), and
//! the last fifth of the run is left without crashes so that recovery shows in the
//! history. Each kill is confirmed: the node must stop answering.

use std::sync::Arc;
use std::time::Duration;

use dida_local_cluster::LocalCluster;
use dida_storage_client::StorageClient;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::history::RunClock;

/// When the crashes happen, as offsets from the start of the run.
///
/// The window from 10 % to 80 % of the run is cut into one slot per crash, and each
/// crash falls at a random moment in the middle 60 % of its slot: crashes are random,
/// never simultaneous, and at least 40 % of a slot apart.
pub fn crash_times(duration: Duration, crashes: usize, rng: &mut StdRng) -> Vec<Duration> {
    if crashes == 0 {
        return Vec::new();
    }
    let window_start = duration.mul_f64(0.1);
    let slot = duration.mul_f64(0.7) / u32::try_from(crashes).unwrap_or(u32::MAX);
    (0..crashes)
        .map(|i| {
            let slot_start = window_start + slot * u32::try_from(i).unwrap_or(u32::MAX);
            slot_start + slot.mul_f64(rng.random_range(0.2..0.8))
        })
        .collect()
}

/// One injected crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crash {
    /// The storage node killed.
    pub node: String,
    /// When, in nanoseconds since the start of the run.
    pub at_ns: u64,
    /// True when the node stopped answering after the kill.
    pub confirmed_dead: bool,
    /// What went wrong, if the kill failed.
    pub error: Option<String>,
}

/// Kills one random live storage node at each of `times`, and returns the crashes.
///
/// `probe` is a client of the same cluster with a short deadline, used to confirm
/// each kill.
pub async fn run_nemesis(
    cluster: Arc<Mutex<LocalCluster>>,
    probe: StorageClient,
    times: Vec<Duration>,
    clock: RunClock,
    seed: u64,
) -> Vec<Crash> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut live: Vec<String> = cluster.lock().await.ids().collect();
    let mut crashes = Vec::new();
    for at in times {
        if let Some(wait) = at.checked_sub(clock.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        if live.is_empty() {
            break;
        }
        let node = live.remove(rng.random_range(0..live.len()));
        let at_ns = clock.now_ns();
        tracing::info!(%node, at_s = at_ns as f64 / 1e9, "nemesis: SIGKILL");
        let killed = cluster.lock().await.kill(&node).await;
        let crash = match killed {
            Ok(()) => {
                let confirmed_dead = probe.ping(&node).await.is_err();
                if !confirmed_dead {
                    tracing::warn!(%node, "nemesis: the node still answers after SIGKILL");
                }
                Crash {
                    node,
                    at_ns,
                    confirmed_dead,
                    error: None,
                }
            }
            Err(error) => {
                tracing::warn!(%node, "nemesis: kill failed: {error:#}");
                Crash {
                    node,
                    at_ns,
                    confirmed_dead: false,
                    error: Some(format!("{error:#}")),
                }
            }
        };
        crashes.push(crash);
    }
    crashes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crashes_are_spread_over_the_run_with_pauses_between_them() {
        let mut rng = StdRng::seed_from_u64(1);
        for crashes in 1..=4 {
            let duration = Duration::from_secs(20);
            let times = crash_times(duration, crashes, &mut rng);
            assert_eq!(times.len(), crashes);
            let slot = duration.mul_f64(0.7) / crashes as u32;
            for pair in times.windows(2) {
                assert!(pair[1] > pair[0] + slot.mul_f64(0.39), "{times:?}");
            }
            assert!(times[0] >= duration.mul_f64(0.1));
            assert!(*times.last().unwrap() <= duration.mul_f64(0.8));
        }
        assert!(crash_times(Duration::from_secs(5), 0, &mut rng).is_empty());
    }
}
