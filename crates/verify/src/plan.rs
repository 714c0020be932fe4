//! The fault plan shared by both back-ends: which faults a run injects
//! ([`NemesisKind`], one meaning per variant whichever back-end runs it), what each
//! injected fault was ([`Fault`]), and the one interface through which a back-end
//! injects them ([`Injector`]).
//!
//! Adding a fault kind means one variant of [`NemesisKind`] and, if it needs an
//! action the trait lacks (as removing and adding a member did, for elastic
//! membership: [`Injector::leave`], [`Injector::join`]), one method of [`Injector`]
//! implemented by each back-end.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// Which faults a run injects (`--nemesis` of `dida sim` and `dida faults`).
///
/// A kind means the same thing on both back-ends; the real-process suite refuses
/// the simulator's own kinds before the run starts ([`NemesisKind::simulator_only`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum NemesisKind {
    /// Crashes (SIGKILL): fail-stop, SPEC §2.5, the course's only fault.
    #[default]
    Kill,
    /// Pauses (SIGSTOP, then SIGCONT): a node that stops answering for a while (a
    /// long GC pause, a descheduled VM) and then carries on as if nothing happened.
    Pause,
    /// Partitions: the target isolated from every peer, cut from some of them, or
    /// only the connections one side makes cut (asymmetric), then healed.
    Partition,
    /// Crashes, each followed by a start of the node with the same flags after the
    /// fault's length, as a new incarnation (fail-recover: a reboot, a process
    /// supervisor).
    Restart,
    /// Each fault drawn among [`Self::Kill`], [`Self::Pause`], [`Self::Partition`]
    /// and [`Self::Restart`] — on both back-ends (the real-process suite left restart
    /// out before the two shared this type).
    Mixed,
    /// One member decommissioned (`dida cluster remove`: it leaves every ring,
    /// hands its records off and stops) at a drawn moment, among crashes, pauses,
    /// partitions and restarts drawn as [`Self::Mixed`] draws them.
    Leave,
    /// New storage nodes join the running cluster (`dida storage --join`: admitted
    /// as joining, caught up, then active), each at a drawn moment, among crashes,
    /// pauses, partitions and restarts drawn as [`Self::Mixed`] draws them: half of
    /// the run's faults, rounded up, are joins ([`joins_of`]). A joined node is a
    /// member like the others from then on, which later faults may hit.
    Join,
    /// Every node restarted in turn, one at a time, each left to answer and settle
    /// before the next: a rolling upgrade. Outside the simulator's default rotation.
    RollingRestart,
    /// A member's forged declarations: every running node is handed a probe, from
    /// another member, whose view declares every node failed (the all-declare-all
    /// case of issue 23). Beyond any fault budget by design; nothing crashes, so no
    /// acknowledged write may be lost. Simulator only, outside its default rotation.
    DeclareAll,
    /// A storm of false suspicions, as under CPU starvation: two to all nodes paused
    /// at staggered moments for 2.5–5 s, about once to twice the time it takes to
    /// declare a silent node. Beyond the fault budget by design; nothing crashes, so
    /// no acknowledged write may be lost. Simulator only, outside its default
    /// rotation.
    Storm,
}

impl NemesisKind {
    /// Every kind, in the order the simulator's seeds take them by default.
    pub const ROTATION: [NemesisKind; 7] = [
        Self::Kill,
        Self::Pause,
        Self::Partition,
        Self::Restart,
        Self::Mixed,
        Self::Leave,
        Self::Join,
    ];

    /// The simulator's kinds outside the default rotation, run only when asked for:
    /// each exceeds every fault budget.
    pub const BEYOND_BUDGET: [NemesisKind; 2] = [Self::DeclareAll, Self::Storm];

    /// The kinds a [`Self::Mixed`] fault is drawn from.
    pub const MIXED: [NemesisKind; 4] = [Self::Kill, Self::Pause, Self::Partition, Self::Restart];

    /// The kind seed `seed` exercises when none is asked for: the rotation in turn.
    pub fn of_seed(seed: u64) -> Self {
        Self::ROTATION[(seed % Self::ROTATION.len() as u64) as usize]
    }

    /// Whether the kind kills no process, so that every acknowledged write must
    /// survive however many nodes it gets declared failed: a declaration never
    /// costs a node its data.
    pub fn keeps_every_process(self) -> bool {
        matches!(self, Self::DeclareAll | Self::Storm)
    }

    /// Whether only the simulator can inject this kind: the forged declarations
    /// and storms beyond every budget reach into the nodes' protocol state.
    pub fn simulator_only(self) -> bool {
        self.keeps_every_process()
    }

    /// Every kind, for listings and parsing.
    pub const ALL: [NemesisKind; 10] = [
        Self::Kill,
        Self::Pause,
        Self::Partition,
        Self::Restart,
        Self::Mixed,
        Self::Leave,
        Self::Join,
        Self::RollingRestart,
        Self::DeclareAll,
        Self::Storm,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Pause => "pause",
            Self::Partition => "partition",
            Self::Restart => "restart",
            Self::Mixed => "mixed",
            Self::Leave => "leave",
            Self::Join => "join",
            Self::RollingRestart => "rolling-restart",
            Self::DeclareAll => "declare-all",
            Self::Storm => "storm",
        }
    }
}

impl fmt::Display for NemesisKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for NemesisKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|kind| kind.name()).collect();
                format!(
                    "unknown nemesis {text:?}: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// What one fault did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// Links cut, then healed.
    Partition,
    /// SIGKILL, then started again with the same command line.
    Restart,
    /// A forged probe, from another member, declaring every node failed, handed to
    /// the target (the simulator's `declare-all`).
    Declare,
    /// A decommission: the target asked to leave the cluster, which it does once
    /// it has handed its records off.
    Leave,
    /// A new node started and admitted to the cluster, which it joins once it has
    /// caught up (its target is the new node's id, one the cluster never used).
    Join,
}

/// The shape of a partition (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionShape {
    /// The target cut from every peer, both ways.
    Isolate,
    /// The target cut from one or two peers, both ways.
    Cut,
    /// Only the connections one side makes to the other cut.
    OneWay,
}

/// One injected fault and what became of its target.
///
/// Serialized with the field names of the crashes of earlier reports (`node`,
/// `at_ns`), which the evaluation report reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// Kill, pause or partition.
    pub kind: FaultKind,
    /// The target node.
    pub node: String,
    /// For a partition: its shape.
    pub shape: Option<PartitionShape>,
    /// For a partition: the links cut, as `[from, to]` pairs — the connections
    /// `from` makes to `to` were silenced (both directions of their bytes).
    pub cuts: Vec<[String; 2]>,
    /// Start (the kill, SIGSTOP or cut), in nanoseconds since the start of the run.
    pub at_ns: u64,
    /// End (SIGCONT, heal, or the restarted node answering), for a pause, partition
    /// or restart.
    pub end_ns: Option<u64>,
    /// The workload's keys the target was the primary of when the fault started.
    pub led_keys: Vec<String>,
    /// True when the fault was confirmed: a killed node stopped answering, a paused
    /// one did not answer while paused, every link of a partition was cut.
    pub confirmed: bool,
    /// The survivors that list the target as failed at the end of the run.
    pub declared_failed_by: Vec<String>,
    /// The other nodes that listed the target as failed just before the fault
    /// ended (a restart or a pause): with rejoin, a node declared failed comes
    /// back, so the end of the run alone does not tell.
    #[serde(default)]
    pub declared_during: Vec<String>,
    /// Whether the target's own status said it was fenced at the end of the run
    /// (none for a killed node, or one that did not answer).
    pub fenced: Option<bool>,
    /// True when the target is lost (killed, or declared failed: see
    /// `dida_faults::survey`) at the end of the run.
    pub lost: bool,
    /// What went wrong, if the fault could not be injected.
    pub error: Option<String>,
}

impl Fault {
    /// The links a partition cut, each as `from->to`, for reports and timelines.
    pub fn cut_links(&self) -> Vec<String> {
        self.cuts
            .iter()
            .map(|[from, to]| format!("{from}->{to}"))
            .collect()
    }

    /// A fault not injected because `lost` nodes were lost already, `budget` being
    /// the most the run allows (R − 1, or A − 1 with `--write-acks` A ≥ 2).
    pub fn skipped(
        kind: FaultKind,
        node: String,
        at_ns: u64,
        lost: &[&str],
        budget: usize,
    ) -> Self {
        let mut fault = Self::new(kind, node, at_ns, Vec::new());
        fault.error = Some(format!(
            "skipped: {} nodes already lost ({}), the most the fault budget allows ({budget})",
            lost.len(),
            lost.join(", ")
        ));
        fault
    }

    /// A fault of `kind` on `node` starting at `at_ns`, not yet confirmed.
    pub fn new(kind: FaultKind, node: String, at_ns: u64, led_keys: Vec<String>) -> Self {
        Self {
            kind,
            node,
            shape: None,
            cuts: Vec::new(),
            at_ns,
            end_ns: None,
            led_keys,
            confirmed: false,
            declared_failed_by: Vec::new(),
            declared_during: Vec::new(),
            fenced: None,
            lost: false,
            error: None,
        }
    }
}

/// A fault that could not be injected, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} {node}: {reason}")]
pub struct InjectError {
    /// What was tried: `kill`, `pause`, `resume`, `cut the link to`, `restart`, ….
    pub action: &'static str,
    /// The node it was tried on (for a cut: `from->to`).
    pub node: String,
    /// What the back-end said.
    pub reason: String,
}

/// How a back-end injects faults into the storage nodes it runs, by node id, and
/// tells what they cost: the simulator into its simulated processes and network
/// (`dida_sim::cluster`), the real-process suite into processes and proxies on this
/// machine (`dida_faults::processes`). [`crate::nemesis`] decides what to inject and
/// when; this is only the doing and the looking.
pub trait Injector: Send + Sync {
    /// The storage nodes, by id, in membership order.
    fn ids(&self) -> Vec<String>;

    /// Crashes `node` at once (SIGKILL) and confirms it answers nothing any more.
    fn kill(&self, node: &str) -> impl Future<Output = Result<(), InjectError>> + Send;

    /// Stops `node` (SIGSTOP) and confirms it answers nothing: it keeps its state
    /// but runs nothing until resumed.
    fn pause(&self, node: &str) -> impl Future<Output = Result<(), InjectError>> + Send;

    /// Lets a paused `node` run on (SIGCONT).
    fn resume(&self, node: &str) -> impl Future<Output = Result<(), InjectError>> + Send;

    /// Silences the connections `from` makes to `to` (both directions of their
    /// bytes), until [`Injector::heal`].
    fn cut(&self, from: &str, to: &str) -> impl Future<Output = Result<(), InjectError>> + Send;

    /// Restores every link cut.
    fn heal(&self) -> impl Future<Output = ()> + Send;

    /// Asks the cluster to remove `node` (`dida cluster remove`, through another
    /// member) and waits until it has handed its records off, been removed and
    /// stopped.
    fn leave(&self, node: &str) -> impl Future<Output = Result<(), InjectError>> + Send;

    /// Starts a new storage node `node` (an id the cluster never used, chosen by
    /// the nemesis so that the plan's ids are the same on every back-end) at a new
    /// address, with the flags of the others, which asks live members to admit it
    /// (`dida storage --join`); waits until the cluster's configuration lists it
    /// active, that is until it has caught up and entered every ring. From then on
    /// it is a member like the others: [`Injector::ids`]' later faults may hit it.
    fn join(&self, node: &str) -> impl Future<Output = Result<(), InjectError>> + Send;

    /// Starts a killed `node` again with the same flags, at a higher incarnation,
    /// and waits until it answers: with every record it held (`keep_data`, as on a
    /// data directory) or empty.
    fn restart(
        &self,
        node: &str,
        keep_data: bool,
    ) -> impl Future<Output = Result<(), InjectError>> + Send;

    /// The nodes lost now, which spend the fault budget: killed, silent, or out of
    /// the ring (declared failed, fenced, or rejoining and so holding less than its
    /// share) as the cluster itself says.
    fn lost(&self) -> impl Future<Output = BTreeSet<String>> + Send;

    /// The other nodes that list `node` as failed now.
    fn declared_by(&self, node: &str) -> impl Future<Output = Vec<String>> + Send;

    /// Records what the nemesis does, in the back-end's log (the simulator's trace,
    /// whose fingerprint must then cover it; `tracing` for real processes).
    fn note(&self, what: fmt::Arguments<'_>);
}

/// When and how long a run's faults may be: with the seed and the kind, all that
/// [`plan`] needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Length of the workload. Faults start between 10 % and 80 % of it, and every
    /// fault (but a kill) ends before its last fifth, so that recovery shows in the
    /// history.
    pub duration: Duration,
    /// How many faults (a rolling restart plans one per node instead).
    pub faults: usize,
    /// Storage nodes in the cluster.
    pub nodes: usize,
    /// Shortest and longest pause, partition or restarted node's time down (before
    /// it is cut short to end in time).
    pub lengths: (Duration, Duration),
}

/// Whom a planned fault hits: a node known in advance, or a draw resolved when the
/// fault starts, among the nodes then in service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The node at this index of the membership (a rolling restart's).
    Node(usize),
    /// A node leading at least one of the workload's keys (on the ring of the nodes
    /// in service; any of them if none leads one), chosen by this draw: a fault of
    /// a primary is the case fences and hand-offs exist for.
    Leader(u64),
    /// Any node in service, chosen by this draw.
    Any(u64),
}

/// One fault of a plan: everything about it that can be drawn before the run. What
/// depends on the cluster at that moment (which nodes are lost, which lead the
/// workload's keys) is resolved by the nemesis from the draws kept here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedFault {
    /// When it starts, from the start of the workload.
    pub at: Duration,
    /// How long a pause or partition lasts, or a restarted node stays down.
    pub length: Duration,
    /// What it does (a `mixed` plan's kinds are drawn here).
    pub kind: FaultKind,
    /// Whom it hits.
    pub target: Target,
    /// For a partition: its shape.
    pub shape: PartitionShape,
    /// For a partition: the draw of the peers cut, and of a one-way cut's direction.
    pub cut_draw: u64,
    /// For a restart: whether the node comes back on its data (where the back-end
    /// keeps any) rather than empty.
    pub keep_data: bool,
}

/// The faults a run of `kind` injects, as a pure function of the seed: the same
/// seed and schedule give the same plan on either back-end. The kinds that exceed
/// every fault budget ([`NemesisKind::keeps_every_process`]) are the simulator's own
/// and plan only their moments ([`fault_times`]).
pub fn plan(seed: u64, kind: NemesisKind, schedule: &Schedule) -> Vec<PlannedFault> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7321);
    if kind == NemesisKind::RollingRestart {
        return rolling_times(schedule.duration, schedule.nodes)
            .into_iter()
            .enumerate()
            .map(|(node, at)| PlannedFault {
                at,
                length: Duration::ZERO,
                kind: FaultKind::Restart,
                target: Target::Node(node),
                shape: PartitionShape::Isolate,
                cut_draw: 0,
                keep_data: false,
            })
            .collect();
    }
    let times = fault_times(schedule.duration, schedule.faults, &mut rng);
    let lengths = fault_lengths(&times, schedule.duration, schedule.lengths, &mut rng);
    let mut faults: Vec<PlannedFault> = times
        .into_iter()
        .zip(lengths)
        .map(|(at, length)| {
            let kind = match kind {
                NemesisKind::Kill => FaultKind::Kill,
                NemesisKind::Pause => FaultKind::Pause,
                NemesisKind::Partition => FaultKind::Partition,
                NemesisKind::Restart => FaultKind::Restart,
                _ => [
                    FaultKind::Kill,
                    FaultKind::Pause,
                    FaultKind::Partition,
                    FaultKind::Restart,
                ][rng.random_range(0..4)],
            };
            let draw = rng.random::<u64>();
            PlannedFault {
                at,
                length,
                kind,
                target: if rng.random_bool(0.5) {
                    Target::Leader(draw)
                } else {
                    Target::Any(draw)
                },
                shape: [
                    PartitionShape::Isolate,
                    PartitionShape::Cut,
                    PartitionShape::OneWay,
                ][rng.random_range(0..3)],
                cut_draw: rng.random(),
                keep_data: rng.random_bool(0.5),
            }
        })
        .collect();
    if kind == NemesisKind::Leave && !faults.is_empty() {
        // Drawn last, so that the other faults are those `mixed` draws.
        let leaving = rng.random_range(0..faults.len());
        faults[leaving].kind = FaultKind::Leave;
    }
    if kind == NemesisKind::Join {
        // Drawn last too: which of the faults `mixed` drew become joins.
        let mut slots: Vec<usize> = (0..faults.len()).collect();
        for _ in 0..joins_of(faults.len()) {
            let slot = slots.swap_remove(rng.random_range(0..slots.len()));
            faults[slot].kind = FaultKind::Join;
        }
    }
    faults
}

/// How many of a `join` run's `faults` faults are joins: half, rounded up, so at
/// least one whenever there is a fault, and two in a run of three or four (the
/// second join then grows a cluster that already grew once). A join costs none of
/// the fault budget — it loses no node, and the newcomer holds nothing anyone
/// depends on until it has caught up — so the other half keep every fault the
/// budget allows: with `dida faults`' `--crashes 2` (at most R − 1), one join
/// and one crash, pause, partition or restart.
pub fn joins_of(faults: usize) -> usize {
    faults.div_ceil(2)
}

/// The moments of `faults` faults in a run of `duration`: the window from 10 % to
/// 80 % of the run cut into one slot per fault, each fault at a random moment of
/// the middle 60 % of its slot — random, never simultaneous, and at least 40 % of
/// a slot apart, so the cluster can detect and repair each before the next.
pub fn fault_times(duration: Duration, faults: usize, rng: &mut StdRng) -> Vec<Duration> {
    let slot = duration.mul_f64(0.7) / u32::try_from(faults.max(1)).unwrap_or(u32::MAX);
    (0..faults)
        .map(|i| {
            let slot_start = duration / 10 + slot * u32::try_from(i).unwrap_or(u32::MAX);
            slot_start + slot.mul_f64(rng.random_range(0.2..0.8))
        })
        .collect()
}

/// How long each fault starting at `times` lasts: a random length in `lengths`, cut
/// short to end before the next fault starts (leaving the cluster up to a second,
/// half the gap at most, to declare and spread what this one cost) and before the
/// last fifth of the run.
fn fault_lengths(
    times: &[Duration],
    duration: Duration,
    lengths: (Duration, Duration),
    rng: &mut StdRng,
) -> Vec<Duration> {
    let quiet = duration.mul_f64(0.8);
    let (shortest, longest) = (lengths.0.min(lengths.1), lengths.0.max(lengths.1));
    times
        .iter()
        .enumerate()
        .map(|(i, &start)| {
            let drawn = rng.random_range(shortest..=longest);
            let end = times.get(i + 1).map_or(quiet, |&next| {
                next.saturating_sub((next.saturating_sub(start) / 2).min(Duration::from_secs(1)))
            });
            drawn.min(end.min(quiet).saturating_sub(start))
        })
        .collect()
}

/// A rolling restart's moments for `nodes` nodes: the window from 10 % to 80 % of
/// the run cut into one slot per node, each restart in the middle of its slot (or
/// once the previous node settled, if later).
fn rolling_times(duration: Duration, nodes: usize) -> Vec<Duration> {
    let slot = duration.mul_f64(0.7) / u32::try_from(nodes.max(1)).unwrap_or(u32::MAX);
    (0..nodes)
        .map(|i| duration / 10 + slot.mul_f64(i as f64 + 0.5))
        .collect()
}

/// The links a partition of `target` cuts, as `[from, to]` pairs, from its shape
/// and draw: every link both ways for an isolation; otherwise one or two of the
/// `live_peers` (never all: that would be an isolation), both ways for a cut, one
/// way for a one-way cut. With no live peer, only an isolation makes sense.
pub fn partition_cuts(
    target: &str,
    peers: &[String],
    live_peers: &[String],
    shape: PartitionShape,
    draw: u64,
) -> (PartitionShape, Vec<[String; 2]>) {
    let pair = |from: &str, to: &str| [from.to_string(), to.to_string()];
    if shape == PartitionShape::Isolate || live_peers.is_empty() {
        let cuts = peers
            .iter()
            .flat_map(|peer| [pair(target, peer), pair(peer, target)])
            .collect();
        return (PartitionShape::Isolate, cuts);
    }
    let mut rng = StdRng::seed_from_u64(draw);
    let most = 2.min(live_peers.len().saturating_sub(1)).max(1);
    let first = rng.random_range(0..live_peers.len());
    let outward = rng.random_bool(0.5);
    let cuts = (0..rng.random_range(1..=most))
        .map(|i| &live_peers[(first + i) % live_peers.len()])
        .flat_map(|peer| match shape {
            PartitionShape::OneWay if outward => vec![pair(target, peer)],
            PartitionShape::OneWay => vec![pair(peer, target)],
            _ => vec![pair(target, peer), pair(peer, target)],
        })
        .collect();
    (shape, cuts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(faults: usize) -> Schedule {
        Schedule {
            duration: Duration::from_secs(20),
            faults,
            nodes: 5,
            lengths: (Duration::from_secs(1), Duration::from_secs(9)),
        }
    }

    #[test]
    fn a_plan_is_a_function_of_the_seed() {
        for kind in NemesisKind::ROTATION {
            let plan = plan(7, kind, &schedule(3));
            assert_eq!(plan, super::plan(7, kind, &schedule(3)));
            assert_eq!(plan.len(), 3);
            assert_ne!(plan, super::plan(8, kind, &schedule(3)), "{kind}");
        }
        let kinds: BTreeSet<String> = (0..20)
            .flat_map(|seed| plan(seed, NemesisKind::Mixed, &schedule(3)))
            .map(|fault| format!("{:?}", fault.kind))
            .collect();
        assert_eq!(kinds.len(), 4, "mixed draws all four: {kinds:?}");
    }

    #[test]
    fn a_join_run_plans_half_its_faults_as_joins_and_the_rest_as_mixed() {
        for seed in 0..100 {
            let faults = 1 + (seed as usize % 4);
            let joining = plan(seed, NemesisKind::Join, &schedule(faults));
            let joins = joining.iter().filter(|f| f.kind == FaultKind::Join).count();
            assert_eq!(joins, joins_of(faults), "seed {seed}: {joining:?}");
            assert!(joins >= 1);
            // The faults that are not joins are those `mixed` draws, as for a leave.
            let mixed = plan(seed, NemesisKind::Mixed, &schedule(faults));
            for (join_run, mixed_run) in joining.iter().zip(&mixed) {
                assert_eq!(
                    (join_run.at, join_run.target),
                    (mixed_run.at, mixed_run.target)
                );
                if join_run.kind != FaultKind::Join {
                    assert_eq!(join_run.kind, mixed_run.kind, "seed {seed}");
                }
            }
        }
        assert_eq!(joins_of(0), 0);
    }

    #[test]
    fn faults_are_spread_and_end_before_the_next_and_the_quiet_fifth() {
        for (seed, faults) in (0..50).zip((1..=4).cycle()) {
            let plan = plan(seed, NemesisKind::Pause, &schedule(faults));
            let slot = Duration::from_secs(14) / faults as u32;
            assert!(plan[0].at >= Duration::from_secs(2));
            for pair in plan.windows(2) {
                assert!(pair[1].at > pair[0].at + slot.mul_f64(0.39), "{plan:?}");
                assert!(pair[0].at + pair[0].length < pair[1].at, "{plan:?}");
            }
            for fault in &plan {
                assert!(
                    fault.at + fault.length <= Duration::from_secs(16),
                    "{plan:?}"
                );
            }
        }
        // Close faults leave half the time between them; far ones at most a second.
        let mut rng = StdRng::seed_from_u64(1);
        let fixed = (Duration::from_secs(5), Duration::from_secs(5));
        let close = [Duration::from_secs(2), Duration::from_millis(2600)];
        let lengths = fault_lengths(&close, Duration::from_secs(10), fixed, &mut rng);
        assert_eq!(lengths[0], Duration::from_millis(300));
        let far = [Duration::from_secs(1), Duration::from_secs(30)];
        let lengths = fault_lengths(&far, Duration::from_secs(60), fixed, &mut rng);
        assert_eq!(lengths[0], Duration::from_secs(5));
    }

    #[test]
    fn a_rolling_restart_restarts_every_node_in_turn() {
        let plan = plan(1, NemesisKind::RollingRestart, &schedule(2));
        let seconds: Vec<f64> = plan.iter().map(|f| f.at.as_secs_f64()).collect();
        assert_eq!(seconds, [3.4, 6.2, 9.0, 11.8, 14.6]);
        for (index, fault) in plan.iter().enumerate() {
            assert_eq!(
                (fault.kind, fault.target),
                (FaultKind::Restart, Target::Node(index))
            );
        }
    }

    #[test]
    fn partitions_cut_the_target_from_some_or_all_peers() {
        let peers: Vec<String> = ["s1", "s2", "s4", "s5"].map(String::from).to_vec();
        let shapes = [
            PartitionShape::Isolate,
            PartitionShape::Cut,
            PartitionShape::OneWay,
        ];
        for draw in 0..100 {
            for shape in shapes {
                let (drawn, cuts) = partition_cuts("s3", &peers, &peers, shape, draw);
                assert_eq!(drawn, shape);
                assert!(cuts
                    .iter()
                    .all(|[from, to]| from != to && (from == "s3" || to == "s3")));
                let others: BTreeSet<&String> = cuts
                    .iter()
                    .map(|[from, to]| if from == "s3" { to } else { from })
                    .collect();
                let outward = cuts.iter().filter(|[from, _]| from == "s3").count();
                match shape {
                    PartitionShape::Isolate => assert_eq!(cuts.len(), 8),
                    PartitionShape::Cut => {
                        assert!((1..=2).contains(&others.len()));
                        assert_eq!(cuts.len(), 2 * others.len());
                    }
                    PartitionShape::OneWay => {
                        assert!((1..=2).contains(&others.len()));
                        assert!(outward == 0 || outward == cuts.len(), "{cuts:?}");
                    }
                }
            }
        }
        // With no live peer left, only an isolation makes sense.
        let (shape, _) = partition_cuts("s3", &peers, &[], PartitionShape::Cut, 1);
        assert_eq!(shape, PartitionShape::Isolate);
    }

    #[test]
    fn nemesis_names_parse_and_print_back() {
        for kind in NemesisKind::ALL {
            assert_eq!(kind.name().parse::<NemesisKind>(), Ok(kind));
            // The report's settings name it as the command line does.
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        }
        assert!("crash".parse::<NemesisKind>().is_err());
    }
}
