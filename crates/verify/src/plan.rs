//! The fault plan shared by both back-ends: which faults a run injects
//! ([`NemesisKind`], one meaning per variant whichever back-end runs it), what each
//! injected fault was ([`Fault`]), and the one interface through which a back-end
//! injects them ([`Injector`]).
//!
//! Adding a fault kind means one variant of [`NemesisKind`] and, if it needs an
//! action the trait lacks (joining or removing a member, for elastic membership),
//! one method of [`Injector`] implemented by each back-end.

use std::fmt;
use std::future::Future;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which faults a run injects (`--nemesis` of `dida sim` and `dida faults`).
///
/// A kind means the same thing on both back-ends; a back-end that cannot inject a
/// kind refuses it before the run starts ([`NemesisKind::supported_by`]).
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
    /// Every node restarted in turn, one at a time, each left to answer and settle
    /// before the next: a rolling upgrade. Real-process suite only.
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

/// The two back-ends that run a [`NemesisKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `dida sim`: the deterministic simulator.
    Simulator,
    /// `dida faults`: real processes on this machine.
    Processes,
}

impl NemesisKind {
    /// Every kind, in the order the simulator's seeds take them by default.
    pub const ROTATION: [NemesisKind; 5] = [
        Self::Kill,
        Self::Pause,
        Self::Partition,
        Self::Restart,
        Self::Mixed,
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

    /// Whether `backend` can inject this kind.
    pub fn supported_by(self, backend: Backend) -> bool {
        match self {
            Self::RollingRestart => backend == Backend::Processes,
            Self::DeclareAll | Self::Storm => backend == Backend::Simulator,
            _ => true,
        }
    }

    /// Every kind, for listings and parsing.
    pub const ALL: [NemesisKind; 8] = [
        Self::Kill,
        Self::Pause,
        Self::Partition,
        Self::Restart,
        Self::Mixed,
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
    /// the most the run allows (R − 1).
    pub fn skipped(
        kind: FaultKind,
        node: String,
        at_ns: u64,
        lost: &[&str],
        budget: usize,
    ) -> Self {
        let mut fault = Self::new(kind, node, at_ns, Vec::new());
        fault.error = Some(format!(
            "skipped: {} nodes already lost ({}), the most R - 1 = {budget} allows",
            lost.len(),
            lost.join(", ")
        ));
        fault
    }

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

/// How a back-end injects faults into the storage nodes it runs, by node id: the
/// simulator into its simulated processes and network (`dida_sim::cluster`), the
/// real-process suite into processes and proxies on this machine
/// (`dida_faults::processes`). The nemeses decide what to inject and when; this is
/// only the doing.
pub trait Injector: Send + Sync {
    /// Crashes `node` at once (SIGKILL): it answers nothing from now on.
    fn kill(&self, node: &str) -> impl Future<Output = Result<(), InjectError>> + Send;

    /// Stops `node` (SIGSTOP): it keeps its state but runs nothing until resumed.
    fn pause(&self, node: &str) -> impl Future<Output = Result<(), InjectError>> + Send;

    /// Lets a paused `node` run on (SIGCONT).
    fn resume(&self, node: &str) -> impl Future<Output = Result<(), InjectError>> + Send;

    /// Silences the connections `from` makes to `to` (both directions of their
    /// bytes), until [`Injector::heal`].
    fn cut(&self, from: &str, to: &str) -> impl Future<Output = Result<(), InjectError>> + Send;

    /// Restores every link cut.
    fn heal(&self) -> impl Future<Output = ()> + Send;

    /// Starts a killed `node` again with the same flags, at a higher incarnation:
    /// with every record it held (`keep_data`, as on a data directory) or empty.
    fn restart(
        &self,
        node: &str,
        keep_data: bool,
    ) -> impl Future<Output = Result<(), InjectError>> + Send;
}
