//! Lifeguard's local health (Dadgar et al., 2018, §4.1): a node that sees signs of
//! its own slowness waits longer before it suspects or declares others.
//!
//! A node starved of CPU (a loaded or paused host, a long garbage collection in a
//! neighbour process) times its probes out although its peers are fine, and then
//! suspects — and with a majority declares — healthy nodes: a false declaration
//! costs its target a fence and a rejoin. Such a node sees it: its direct probes
//! time out while the same peers answer the helpers of an indirect probe, its timer
//! ticks run late, or it learns that the others declared *it* failed (it had to
//! start over, SWIM's refutation). Each sign raises a score, bounded by
//! [`MAX_SCORE`]; a period of clean probing lowers it by one. The probe timeout and
//! the suspicion timeout are multiplied by `1 + score`, so a slow node gives its
//! peers the time its own slowness takes, and a healthy one (score 0) detects as
//! fast as before.

use std::time::Duration;

/// The highest score: timeouts stretch to at most nine times their setting.
pub(crate) const MAX_SCORE: u32 = 8;

/// What one probe period showed of this node's own health.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Signs {
    /// The period's tick ran late (by more than half a period): the process was
    /// not scheduled in time.
    pub late_tick: bool,
    /// Peers that missed this node's direct probe yet answered another node's
    /// (indirect) probe: this node, not they, was slow.
    pub missed_but_alive: usize,
    /// The others declared this node failed (it fenced itself): it could not
    /// answer in time.
    pub declared: bool,
    /// Direct probes answered in time this period.
    pub answered: usize,
    /// Direct probes that timed out this period (whatever the indirect probes said).
    pub missed: usize,
}

/// This node's local-health score.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalHealth {
    score: u32,
}

impl LocalHealth {
    /// The score now, from 0 (healthy) to [`MAX_SCORE`].
    pub fn score(&self) -> u32 {
        self.score
    }

    /// Takes one period's signs: each kind of sign seen raises the score by one;
    /// a period with no sign and some probe answered in time lowers it by one
    /// (Lifeguard lowers it at each successful probe). A probe that missed without
    /// a sign says nothing of this node — the peer may have crashed — so it
    /// neither raises the score nor keeps it from falling: otherwise a single
    /// crashed peer would hold a healthy node's timeouts stretched until declared.
    pub fn observe(&mut self, signs: &Signs) {
        let raised = u32::from(signs.late_tick)
            + u32::from(signs.missed_but_alive > 0)
            + u32::from(signs.declared);
        if raised > 0 {
            self.score = (self.score + raised).min(MAX_SCORE);
        } else if signs.answered > 0 {
            self.score = self.score.saturating_sub(1);
        }
    }

    /// `timeout` stretched by this node's health: `timeout × (1 + score)`.
    pub fn scale(&self, timeout: Duration) -> Duration {
        timeout * (1 + self.score)
    }
}

/// Whether a tick meant for `deadline` that woke at `woke` ran late: by more than
/// half of `interval`. (A round that overran the interval is not lateness: the
/// next deadline is set after it ends.)
pub(crate) fn tick_late(
    deadline: tokio::time::Instant,
    woke: tokio::time::Instant,
    interval: Duration,
) -> bool {
    woke.saturating_duration_since(deadline) > interval / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn clean() -> Signs {
        Signs {
            answered: 3,
            ..Signs::default()
        }
    }

    #[test]
    fn each_sign_raises_the_score_and_clean_periods_lower_it() {
        let mut health = LocalHealth::default();
        health.observe(&Signs {
            late_tick: true,
            ..clean()
        });
        assert_eq!(health.score(), 1);
        health.observe(&Signs {
            late_tick: true,
            missed_but_alive: 2,
            declared: true,
            ..clean()
        });
        assert_eq!(health.score(), 4, "one per kind of sign, not per peer");
        health.observe(&clean());
        assert_eq!(health.score(), 3);
        for _ in 0..10 {
            health.observe(&clean());
        }
        assert_eq!(health.score(), 0, "never below zero");
    }

    #[test]
    fn the_score_is_bounded() {
        let mut health = LocalHealth::default();
        for _ in 0..20 {
            health.observe(&Signs {
                late_tick: true,
                missed_but_alive: 1,
                declared: true,
                ..Signs::default()
            });
        }
        assert_eq!(health.score(), MAX_SCORE);
        assert_eq!(health.scale(500 * MS), 4500 * MS);
    }

    #[test]
    fn a_period_without_an_answer_does_not_lower_the_score_nor_a_plain_miss_raise_it() {
        let mut health = LocalHealth::default();
        health.observe(&Signs {
            declared: true,
            late_tick: true,
            ..Signs::default()
        });
        health.observe(&Signs::default());
        health.observe(&Signs {
            missed: 3,
            ..Signs::default()
        });
        assert_eq!(health.score(), 2);
        assert_eq!(health.scale(1500 * MS), 4500 * MS);
        // A peer that missed both probes may have crashed: no sign, and the
        // others' answers still count.
        health.observe(&Signs {
            answered: 2,
            missed: 1,
            ..Signs::default()
        });
        assert_eq!(health.score(), 1);
    }

    #[test]
    fn a_tick_is_late_past_half_an_interval() {
        let t0 = tokio::time::Instant::now();
        let interval = 250 * MS;
        assert!(!tick_late(t0, t0, interval));
        assert!(!tick_late(t0, t0 + 125 * MS, interval));
        assert!(tick_late(t0, t0 + 126 * MS, interval));
        assert!(!tick_late(t0 + MS, t0, interval), "early is not late");
    }
}
