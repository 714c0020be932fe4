//! The nemesis: SIGKILLs storage nodes at random moments of the run, one at a time.
//!
//! SPEC §2.5: storage nodes fail only by crashing and never come back. With
//! replication factor R, up to R − 1 crashes still leave every key a replica, so that
//! is the most the suite injects. Crashes are spread over the run with a pause
//! between them (so the cluster can detect each one and repair before the next), and
//! the last fifth of the run is left without crashes so that recovery shows in the
//! history. Each kill is confirmed: the node must stop answering.
//!
//! The victim is a random live node among those that are, at that moment, the
//! primary of at least one of the workload's keys (any live node if none is): a crash
//! of a node that leads nothing the clients use would test little, and with a few
//! keys on five nodes that would be a frequent draw.

use std::sync::Arc;
use std::time::Duration;

use dida_core::Ring;
use dida_local_cluster::LocalCluster;
use dida_storage_client::StorageClient;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;
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
    /// The workload's keys it was the primary of when it was killed.
    pub led_keys: Vec<String>,
    /// True when the node stopped answering after the kill.
    pub confirmed_dead: bool,
    /// What went wrong, if the kill failed.
    pub error: Option<String>,
}

/// Whom and when to kill.
#[derive(Debug, Clone)]
pub struct NemesisPlan {
    /// Moments of the crashes (see [`crash_times`]).
    pub times: Vec<Duration>,
    /// The keys the workload uses: victims are drawn among their primaries.
    pub keys: Vec<String>,
    /// `--vnodes` of the cluster, to place the keys as the nodes do.
    pub vnodes: u32,
    /// Replication factor of the cluster.
    pub replication_factor: usize,
}

/// The keys of `keys` that each live node leads, by node id, on the ring of the live
/// nodes (the ring the cluster uses once it has detected the crashes).
fn primaries<'a>(
    live: &[String],
    keys: &'a [String],
    vnodes: u32,
    replication_factor: usize,
) -> Vec<(String, Vec<&'a str>)> {
    let ring = Ring::new(live, vnodes, replication_factor);
    let mut led: Vec<(String, Vec<&str>)> = live.iter().map(|n| (n.clone(), Vec::new())).collect();
    for key in keys {
        if let Some(entry) = led.get_mut(ring.primary(key)) {
            entry.1.push(key);
        }
    }
    led
}

/// Kills one live storage node at each moment of `plan` — a random one among the
/// primaries of the workload's keys — and returns the crashes.
///
/// `probe` is a client of the same cluster with a short deadline, used to confirm
/// each kill. Each crash carried out is also sent on `kills`, if given, as soon as
/// it is confirmed (the timeline's watcher follows it from there).
pub async fn run_nemesis(
    cluster: Arc<Mutex<LocalCluster>>,
    probe: StorageClient,
    plan: NemesisPlan,
    clock: RunClock,
    seed: u64,
    kills: Option<UnboundedSender<Crash>>,
) -> Vec<Crash> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut live: Vec<String> = cluster.lock().await.ids().collect();
    let mut crashes = Vec::new();
    for at in plan.times {
        if let Some(wait) = at.checked_sub(clock.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        if live.is_empty() {
            break;
        }
        let led = primaries(&live, &plan.keys, plan.vnodes, plan.replication_factor);
        let leaders: Vec<usize> = (0..led.len()).filter(|&i| !led[i].1.is_empty()).collect();
        let index = if leaders.is_empty() {
            rng.random_range(0..live.len())
        } else {
            leaders[rng.random_range(0..leaders.len())]
        };
        let led_keys: Vec<String> = led[index].1.iter().map(|k| k.to_string()).collect();
        let node = live.remove(index);
        let at_ns = clock.now_ns();
        tracing::info!(%node, at_s = at_ns as f64 / 1e9, led = ?led_keys, "nemesis: SIGKILL");
        let killed = cluster.lock().await.kill(&node).await;
        let crash = match killed {
            Ok(()) => {
                let confirmed_dead = probe.ping(&node).await.is_err();
                if !confirmed_dead {
                    tracing::warn!(%node, "nemesis: the node still answers after SIGKILL");
                }
                let crash = Crash {
                    node,
                    at_ns,
                    led_keys,
                    confirmed_dead,
                    error: None,
                };
                if let Some(kills) = &kills {
                    // The watcher may be gone (a stopped run): nothing to tell then.
                    let _ = kills.send(crash.clone());
                }
                crash
            }
            Err(error) => {
                tracing::warn!(%node, "nemesis: kill failed: {error:#}");
                Crash {
                    node,
                    at_ns,
                    led_keys,
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

    #[test]
    fn every_key_has_exactly_one_primary_among_the_live_nodes() {
        let live: Vec<String> = ["s1", "s2", "s4"].iter().map(|s| s.to_string()).collect();
        let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
        let led = primaries(&live, &keys, 128, 3);
        assert_eq!(led.len(), 3);
        assert_eq!(led.iter().map(|(_, keys)| keys.len()).sum::<usize>(), 20);
        // The same placement as the ring the cluster itself derives.
        let ring = Ring::new(&live, 128, 3);
        for (node, keys) in &led {
            for key in keys {
                assert_eq!(&live[ring.primary(key)], node);
            }
        }
    }
}
