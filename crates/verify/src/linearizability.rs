//! A linearizability checker for one register with write, compare-and-swap and read.
//!
//! SPEC §2.2 promises that all writes and conditional updates of a key are totally
//! ordered, and a client sees each one take effect somewhere between its invocation
//! and its reply. That is linearizability of each key as a register, and it is checked
//! here from the recorded history alone, key by key (linearizability is compositional,
//! so checking every key on its own is checking the whole store).
//!
//! The algorithm is Wing & Gong's search as improved by Lowe ("Testing for
//! linearizability", 2017) and used by Porcupine and Knossos: the history becomes a
//! list of call and return events ordered by time; the search walks the list, tries to
//! linearize an operation at its call (the register model must accept it in the
//! current state), and backtracks when it meets the return of an operation it has not
//! linearized yet. A cache of the (set of linearized operations, register state) pairs
//! already explored keeps it from exploring the same configuration twice, which makes
//! the usual, lightly concurrent histories linear to check.
//!
//! Operations whose outcome is unknown (timeouts, connection resets) may or may not
//! have taken effect: they have no return event (return time +∞), so the search may
//! linearize them anywhere after their call, or never — an operation never
//! linearized is one that took effect after everything else, which nothing observed.
//! As soon as every operation with a known outcome is linearized the history is
//! accepted.
//!
//! The search is exponential in the worst case (it is NP-complete in general), so it
//! is bounded by a number of steps and a wall-clock limit; hitting either gives
//! [`Verdict::Inconclusive`] rather than a hang.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::history::{OpKind, OpResult, Operation};
use crate::report::KeyLinearizability;

/// The outcome of a CAS as far as its client knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CasOutcome {
    /// The comparison held and `new` was written.
    Swapped,
    /// The comparison failed; nothing was written.
    NotSwapped,
    /// Unknown: the CAS may have swapped or not (its event must have no return time).
    Unknown,
}

/// An operation on the register, with what it returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RegisterOp {
    /// Sets the register to `value`.
    Write {
        /// The value written.
        value: String,
    },
    /// Sets the register to `new` if it holds `old` (an empty register never matches).
    Cas {
        /// Expected value.
        old: String,
        /// Value written on success.
        new: String,
        /// What the client saw.
        outcome: CasOutcome,
    },
    /// Returned the register's value (`None`: empty).
    Read {
        /// The value returned.
        value: Option<String>,
    },
}

/// One operation of a single register's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterEvent {
    /// The operation's id in the whole history, used in reports.
    pub id: u64,
    /// Invocation time (any monotonic unit shared by all events).
    pub invoked: u64,
    /// Return time; `None` when the outcome is unknown (the operation may take effect
    /// at any time after its invocation, or never).
    pub returned: Option<u64>,
    /// The operation and its result.
    pub op: RegisterOp,
}

/// Bounds on the search, so a pathological history yields "inconclusive" instead of
/// running for hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchLimits {
    /// Linearization attempts (model steps) at most.
    pub max_steps: u64,
    /// Wall-clock time at most.
    pub max_time: Duration,
}

impl Default for SearchLimits {
    fn default() -> Self {
        Self {
            max_steps: 5_000_000,
            max_time: Duration::from_secs(30),
        }
    }
}

/// The checker's answer for one register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Some total order of the operations respects real time and the register's
    /// semantics.
    Linearizable,
    /// No such order exists.
    NotLinearizable {
        /// The operation whose return could not be justified at the deepest point the
        /// search reached: every order must place it, and none can.
        blocked_op: u64,
        /// The most operations the search managed to linearize before getting stuck.
        longest_prefix: usize,
    },
    /// The search hit its bounds before deciding.
    Inconclusive {
        /// Which bound, and how far the search got.
        reason: String,
    },
}

impl Verdict {
    /// True only for a proven violation.
    pub fn is_violation(&self) -> bool {
        matches!(self, Verdict::NotLinearizable { .. })
    }
}

/// Register state: `None` is the empty register, otherwise an interned value id.
type State = Option<u32>;

/// An operation with its values interned, as the search steps it.
#[derive(Debug, Clone, Copy)]
enum Step {
    Write(u32),
    Cas {
        old: u32,
        new: u32,
        swapped: bool,
    },
    /// A CAS of unknown outcome: linearized only where it swaps (where it would not,
    /// it is a no-op, the same as never linearizing it).
    CasUnknown {
        old: u32,
        new: u32,
    },
    Read(State),
}

impl Step {
    /// The register model: the state after the operation, or `None` if the operation
    /// cannot have returned what it did in `state`.
    fn apply(self, state: State) -> Option<State> {
        match self {
            Step::Write(v) => Some(Some(v)),
            Step::Cas { old, new, swapped } => match (state == Some(old), swapped) {
                (true, true) => Some(Some(new)),
                (false, false) => Some(state),
                _ => None,
            },
            Step::CasUnknown { old, new } => (state == Some(old)).then_some(Some(new)),
            Step::Read(value) => (state == value).then_some(state),
        }
    }
}

/// A node of the event list: the call or the return of operation `op`.
#[derive(Debug, Clone, Copy)]
struct Node {
    op: usize,
    is_call: bool,
    prev: usize,
    next: usize,
}

/// Index of the list's head sentinel; `NIL` ends the list.
const HEAD: usize = 0;
const NIL: usize = usize::MAX;

/// A fixed-size bit set of linearized operations, hashable for the cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Bits(Box<[u64]>);

impl Bits {
    fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(64)].into_boxed_slice())
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Checks that `events` (the history of one register, initially empty) is
/// linearizable, within `limits`.
///
/// Reads whose outcome is unknown constrain nothing and are ignored, as is a CAS
/// marked [`CasOutcome::Unknown`] with a return time (its return time is taken as
/// +∞).
pub fn check_register(events: &[RegisterEvent], limits: SearchLimits) -> Verdict {
    let mut values: HashMap<String, u32> = HashMap::new();
    let mut intern = |v: &str| -> u32 {
        let next = u32::try_from(values.len()).unwrap_or(u32::MAX);
        *values.entry(v.to_string()).or_insert(next)
    };
    // (id, invoked, returned, step)
    let mut ops: Vec<(u64, u64, Option<u64>, Step)> = Vec::with_capacity(events.len());
    for event in events {
        let step = match &event.op {
            RegisterOp::Write { value } => Step::Write(intern(value)),
            RegisterOp::Cas { old, new, outcome } => {
                let (old, new) = (intern(old), intern(new));
                match outcome {
                    CasOutcome::Unknown => Step::CasUnknown { old, new },
                    known => Step::Cas {
                        old,
                        new,
                        swapped: *known == CasOutcome::Swapped,
                    },
                }
            }
            RegisterOp::Read { .. } if event.returned.is_none() => continue,
            RegisterOp::Read { value } => Step::Read(value.as_deref().map(&mut intern)),
        };
        // An unknown CAS returns at +∞ as far as ordering is concerned.
        let returned = event
            .returned
            .filter(|_| !matches!(step, Step::CasUnknown { .. }));
        ops.push((event.id, event.invoked, returned, step));
    }
    Search::new(&ops).run(limits)
}

/// The state of one search.
struct Search {
    ids: Vec<u64>,
    steps: Vec<Step>,
    /// The event list: `nodes[0]` is the head sentinel.
    nodes: Vec<Node>,
    /// For each operation, the index of its call node and of its return node.
    call_node: Vec<usize>,
    return_node: Vec<Option<usize>>,
    /// Operations with a known outcome not yet linearized.
    definite_left: usize,
}

impl Search {
    fn new(ops: &[(u64, u64, Option<u64>, Step)]) -> Self {
        // Events sorted by time; at equal times calls come first, so operations that
        // touch in time count as concurrent (never a false violation).
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (index, (_, invoked, returned, _)) in ops.iter().enumerate() {
            events.push((*invoked, true, index));
            if let Some(returned) = returned {
                events.push(((*returned).max(*invoked), false, index));
            }
        }
        events.sort_by_key(|&(time, is_call, index)| (time, !is_call, index));
        let mut nodes = Vec::with_capacity(events.len() + 1);
        nodes.push(Node {
            op: usize::MAX,
            is_call: false,
            prev: NIL,
            next: 1,
        });
        let mut call_node = vec![0; ops.len()];
        let mut return_node = vec![None; ops.len()];
        for (index, &(_, is_call, op)) in (1..).zip(&events) {
            nodes.push(Node {
                op,
                is_call,
                prev: index - 1,
                next: index + 1,
            });
            if is_call {
                call_node[op] = index;
            } else {
                return_node[op] = Some(index);
            }
        }
        // The last node (the head itself, when there are no events) ends the list.
        if let Some(last) = nodes.last_mut() {
            last.next = NIL;
        }
        Self {
            ids: ops.iter().map(|op| op.0).collect(),
            steps: ops.iter().map(|op| op.3).collect(),
            nodes,
            call_node,
            definite_left: return_node.iter().filter(|r| r.is_some()).count(),
            return_node,
        }
    }

    fn unlink(&mut self, index: usize) {
        let Node { prev, next, .. } = self.nodes[index];
        self.nodes[prev].next = next;
        if next != NIL {
            self.nodes[next].prev = prev;
        }
    }

    fn relink(&mut self, index: usize) {
        let Node { prev, next, .. } = self.nodes[index];
        self.nodes[prev].next = index;
        if next != NIL {
            self.nodes[next].prev = index;
        }
    }

    /// Removes operation `op`'s events from the list (it is linearized).
    fn lift(&mut self, op: usize) {
        self.unlink(self.call_node[op]);
        if let Some(ret) = self.return_node[op] {
            self.unlink(ret);
            self.definite_left -= 1;
        }
    }

    /// Puts operation `op`'s events back (undoing the last [`Self::lift`]).
    fn unlift(&mut self, op: usize) {
        if let Some(ret) = self.return_node[op] {
            self.relink(ret);
            self.definite_left += 1;
        }
        self.relink(self.call_node[op]);
    }

    fn run(mut self, limits: SearchLimits) -> Verdict {
        let started = Instant::now();
        let mut linearized = Bits::new(self.steps.len());
        let mut state: State = None;
        let mut cache: HashSet<(Bits, State)> = HashSet::new();
        // Linearized operations, in order, each with the state before it.
        let mut stack: Vec<(usize, State)> = Vec::new();
        let mut entry = self.nodes[HEAD].next;
        let mut steps: u64 = 0;
        let mut deepest = (0usize, None::<u64>);
        loop {
            if self.definite_left == 0 {
                return Verdict::Linearizable;
            }
            steps += 1;
            if steps > limits.max_steps
                || (steps.is_multiple_of(4096) && started.elapsed() > limits.max_time)
            {
                return Verdict::Inconclusive {
                    reason: format!(
                        "search stopped after {steps} steps and {:.1?} (limits: {} steps, \
                         {:?}) with {} of {} operations linearized at best",
                        started.elapsed(),
                        limits.max_steps,
                        limits.max_time,
                        deepest.0,
                        self.steps.len()
                    ),
                };
            }
            match (entry != NIL).then(|| self.nodes[entry]) {
                Some(node) if node.is_call => {
                    if let Some(next_state) = self.steps[node.op].apply(state) {
                        let mut next_set = linearized.clone();
                        next_set.set(node.op);
                        if cache.insert((next_set.clone(), next_state)) {
                            stack.push((node.op, state));
                            linearized = next_set;
                            state = next_state;
                            self.lift(node.op);
                            entry = self.nodes[HEAD].next;
                            continue;
                        }
                    }
                    entry = node.next;
                }
                // A return of an operation not linearized yet (or the end of the
                // list): this branch is dead, undo the last linearization.
                other => {
                    if stack.len() >= deepest.0 {
                        deepest = (stack.len(), other.map(|n| self.ids[n.op]));
                    }
                    let Some((op, previous)) = stack.pop() else {
                        return Verdict::NotLinearizable {
                            blocked_op: deepest.1.unwrap_or_default(),
                            longest_prefix: deepest.0,
                        };
                    };
                    self.unlift(op);
                    linearized.clear(op);
                    state = previous;
                    entry = self.nodes[self.call_node[op]].next;
                }
            }
        }
    }
}

/// The register history of one key: its writes and CAS, definite failures left out
/// (they did not execute), unknown outcomes with no return time. Reads are left out
/// on purpose: SPEC §2.2 lets any replica serve a read, so a read may be stale, and
/// only writes and CAS are promised a total order. Operations in `as_unknown` (lost
/// writes, with `--write-acks 1`) are treated as of unknown outcome.
pub fn register_events(
    history: &[Operation],
    key: &str,
    as_unknown: &HashSet<u64>,
) -> Vec<RegisterEvent> {
    history
        .iter()
        .filter(|op| op.key == key)
        .filter_map(|op| {
            let unknown = op.is_unknown() || as_unknown.contains(&op.id);
            let returned = (!unknown).then_some(op.completed_ns);
            let register_op = match (&op.kind, &op.result) {
                (_, OpResult::Failed { .. }) => return None,
                (OpKind::Write { value }, _) => RegisterOp::Write {
                    value: value.clone(),
                },
                (OpKind::Cas { old, new }, result) => RegisterOp::Cas {
                    old: old.clone(),
                    new: new.clone(),
                    outcome: match result {
                        _ if unknown => CasOutcome::Unknown,
                        OpResult::Written { .. } => CasOutcome::Swapped,
                        _ => CasOutcome::NotSwapped,
                    },
                },
                _ => return None,
            };
            Some(RegisterEvent {
                id: op.id,
                invoked: op.invoked_ns,
                returned,
                op: register_op,
            })
        })
        .collect()
}

/// Checker (2) for one key: the register history of `key` in `history`, checked
/// within `limits`; when it is not linearizable and some of its writes are in
/// `lost_ops` (lost with `--write-acks 1`), checked again with those as of unknown
/// outcome, so a loss the run allows is told from an ordering bug.
pub fn check_key(
    history: &[Operation],
    key: &str,
    lost_ops: &HashSet<u64>,
    limits: SearchLimits,
) -> KeyLinearizability {
    let started = Instant::now();
    let events = register_events(history, key, &HashSet::new());
    let unknown = events.iter().filter(|e| e.returned.is_none()).count();
    let operations = events.len();
    let verdict = check_register(&events, limits);
    let verdict_allowing_lost_writes = (verdict.is_violation()
        && events.iter().any(|e| lost_ops.contains(&e.id)))
    .then(|| check_register(&register_events(history, key, lost_ops), limits));
    KeyLinearizability {
        key: key.to_string(),
        operations,
        unknown,
        verdict,
        verdict_allowing_lost_writes,
        check_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::fixtures::{cas as cas_op, op, write as write_op, written};
    use dida_core::Version;

    #[test]
    fn register_events_skip_reads_and_definite_failures() {
        let read = OpResult::ReadValue {
            value: Some("a".into()),
            version: Some(Version::new(1, 1)),
        };
        let history = vec![
            op(0, write_op("a"), written(1)),
            op(1, write_op("b"), OpResult::Failed { error: "x".into() }),
            op(2, OpKind::Read, read),
            op(3, cas_op("a", "c"), OpResult::Unknown { error: "y".into() }),
            op(4, cas_op("x", "d"), OpResult::CasFailed),
        ];
        let events = register_events(&history, "k0", &HashSet::new());
        let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
        assert_eq!(ids, [0, 3, 4]);
        assert_eq!(events[1].returned, None);
        assert!(matches!(
            events[1].op,
            RegisterOp::Cas {
                outcome: CasOutcome::Unknown,
                ..
            }
        ));
        assert!(matches!(
            events[2].op,
            RegisterOp::Cas {
                outcome: CasOutcome::NotSwapped,
                ..
            }
        ));
        // A lost write is treated as unknown when asked.
        let events = register_events(&history, "k0", &HashSet::from([0]));
        assert_eq!(events[0].returned, None);
    }

    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    fn event(id: u64, invoked: u64, returned: Option<u64>, op: RegisterOp) -> RegisterEvent {
        RegisterEvent {
            id,
            invoked,
            returned,
            op,
        }
    }

    fn write(id: u64, value: &str, invoked: u64, returned: u64) -> RegisterEvent {
        let value = value.into();
        event(id, invoked, Some(returned), RegisterOp::Write { value })
    }

    fn unknown_write(id: u64, value: &str, invoked: u64) -> RegisterEvent {
        let value = value.into();
        event(id, invoked, None, RegisterOp::Write { value })
    }

    fn cas(
        id: u64,
        old: &str,
        new: &str,
        outcome: CasOutcome,
        invoked: u64,
        returned: Option<u64>,
    ) -> RegisterEvent {
        let (old, new) = (old.into(), new.into());
        event(id, invoked, returned, RegisterOp::Cas { old, new, outcome })
    }

    fn read(id: u64, value: Option<&str>, invoked: u64, returned: u64) -> RegisterEvent {
        let value = value.map(Into::into);
        event(id, invoked, Some(returned), RegisterOp::Read { value })
    }

    fn check(events: &[RegisterEvent]) -> Verdict {
        check_register(events, SearchLimits::default())
    }

    use CasOutcome::{NotSwapped, Swapped, Unknown};

    #[test]
    fn the_empty_history_is_linearizable() {
        assert_eq!(check(&[]), Verdict::Linearizable);
    }

    #[test]
    fn a_sequential_history_following_the_register_is_linearizable() {
        let history = [
            write(0, "a", 0, 1),
            cas(1, "a", "b", Swapped, 2, Some(3)),
            cas(2, "a", "c", NotSwapped, 4, Some(5)),
            read(3, Some("b"), 6, 7),
            write(4, "d", 8, 9),
            cas(5, "d", "e", Swapped, 10, Some(11)),
        ];
        assert_eq!(check(&history), Verdict::Linearizable);
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // b's write is invoked before a's, but they overlap, and the CAS shows a's
        // write came second.
        let history = [
            write(0, "b", 0, 10),
            write(1, "a", 1, 9),
            cas(2, "b", "c", Swapped, 11, Some(12)),
        ];
        assert_eq!(check(&history), Verdict::Linearizable);
    }

    #[test]
    fn a_cas_cannot_succeed_from_a_value_already_overwritten() {
        let history = [
            write(0, "a", 0, 1),
            write(1, "b", 2, 3),
            cas(2, "a", "c", Swapped, 4, Some(5)),
        ];
        assert!(matches!(
            check(&history),
            Verdict::NotLinearizable { blocked_op: 2, .. }
        ));
    }

    #[test]
    fn two_cas_cannot_both_succeed_from_the_same_old_value() {
        let history = [
            write(0, "a", 0, 1),
            cas(1, "a", "b", Swapped, 2, Some(5)),
            cas(2, "a", "c", Swapped, 3, Some(6)),
        ];
        assert!(check(&history).is_violation());
    }

    #[test]
    fn a_write_cannot_take_effect_before_an_operation_that_completed_before_it_was_invoked() {
        // The CAS needs "b", but the write of "b" was invoked after the CAS returned.
        let history = [
            write(0, "a", 0, 1),
            cas(1, "b", "c", Swapped, 2, Some(3)),
            write(2, "b", 4, 5),
        ];
        assert!(check(&history).is_violation());
        // Had the write overlapped the CAS, it could have come first.
        let overlapping = [
            write(0, "a", 0, 1),
            cas(1, "b", "c", Swapped, 2, Some(4)),
            write(2, "b", 3, 5),
        ];
        assert_eq!(check(&overlapping), Verdict::Linearizable);
    }

    #[test]
    fn a_stale_read_is_not_linearizable() {
        let history = [
            write(0, "a", 0, 1),
            write(1, "b", 2, 3),
            read(2, Some("a"), 4, 5),
        ];
        assert!(check(&history).is_violation());
    }

    #[test]
    fn a_cas_on_an_empty_register_never_succeeds() {
        let history = [cas(0, "a", "b", Swapped, 0, Some(1))];
        assert!(check(&history).is_violation());
        let failed = [cas(0, "a", "b", NotSwapped, 0, Some(1))];
        assert_eq!(check(&failed), Verdict::Linearizable);
    }

    #[test]
    fn a_failed_cas_needs_the_register_to_hold_another_value() {
        let history = [
            write(0, "a", 0, 1),
            cas(1, "a", "b", NotSwapped, 2, Some(3)),
        ];
        assert!(check(&history).is_violation());
        // A concurrent write explains the failure.
        let explained = [
            write(0, "a", 0, 1),
            write(1, "c", 1, 4),
            cas(2, "a", "b", NotSwapped, 2, Some(3)),
        ];
        assert_eq!(check(&explained), Verdict::Linearizable);
    }

    #[test]
    fn an_unknown_write_may_have_taken_effect() {
        let history = [
            write(0, "a", 0, 1),
            unknown_write(1, "b", 2),
            cas(2, "b", "c", Swapped, 10, Some(11)),
        ];
        assert_eq!(check(&history), Verdict::Linearizable);
    }

    #[test]
    fn an_unknown_write_may_not_have_taken_effect() {
        let history = [
            write(0, "a", 0, 1),
            unknown_write(1, "b", 2),
            cas(2, "a", "c", Swapped, 10, Some(11)),
            read(3, Some("c"), 12, 13),
        ];
        assert_eq!(check(&history), Verdict::Linearizable);
    }

    #[test]
    fn an_unknown_write_may_take_effect_late() {
        // Observed long after the writer gave up, then overwritten.
        let history = [
            write(0, "a", 0, 1),
            unknown_write(1, "b", 2),
            read(2, Some("a"), 10, 11),
            read(3, Some("b"), 20, 21),
        ];
        assert_eq!(check(&history), Verdict::Linearizable);
    }

    #[test]
    fn an_unknown_write_cannot_take_effect_before_it_was_invoked() {
        let history = [
            write(0, "a", 0, 1),
            cas(1, "b", "c", Swapped, 2, Some(3)),
            unknown_write(2, "b", 4),
        ];
        assert!(matches!(
            check(&history),
            Verdict::NotLinearizable { blocked_op: 1, .. }
        ));
    }

    #[test]
    fn an_unknown_cas_may_or_may_not_have_swapped() {
        let swapped = [
            write(0, "a", 0, 1),
            cas(1, "a", "b", Unknown, 2, None),
            read(2, Some("b"), 10, 11),
        ];
        assert_eq!(check(&swapped), Verdict::Linearizable);
        let not_swapped = [
            write(0, "a", 0, 1),
            cas(1, "a", "b", Unknown, 2, None),
            read(2, Some("a"), 10, 11),
        ];
        assert_eq!(check(&not_swapped), Verdict::Linearizable);
        // But it can only swap from the value it names.
        let impossible = [
            write(0, "x", 0, 1),
            cas(1, "a", "b", Unknown, 2, None),
            read(2, Some("b"), 10, 11),
        ];
        assert!(check(&impossible).is_violation());
    }

    #[test]
    fn unknown_reads_are_ignored() {
        let history = [
            write(0, "a", 0, 1),
            event(
                1,
                2,
                None,
                RegisterOp::Read {
                    value: Some("nonsense".into()),
                },
            ),
        ];
        assert_eq!(check(&history), Verdict::Linearizable);
    }

    /// Many concurrent unknown writes and a CAS that no order can justify: the
    /// search must try every subset of the writes before it could say so.
    fn hopeless_history() -> Vec<RegisterEvent> {
        let mut history: Vec<RegisterEvent> = (0..40)
            .map(|i| unknown_write(i, &format!("v{i}"), i))
            .collect();
        history.push(cas(100, "never-written", "x", Swapped, 50, Some(60)));
        history
    }

    #[test]
    fn a_hopeless_search_is_inconclusive_instead_of_hanging() {
        let limits = SearchLimits {
            max_steps: 10_000,
            max_time: Duration::from_secs(5),
        };
        let started = Instant::now();
        let verdict = check_register(&hopeless_history(), limits);
        assert!(
            matches!(verdict, Verdict::Inconclusive { .. }),
            "{verdict:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_time_limit_also_bounds_the_search() {
        let limits = SearchLimits {
            max_steps: u64::MAX,
            max_time: Duration::from_millis(200),
        };
        let started = Instant::now();
        let verdict = check_register(&hopeless_history(), limits);
        assert!(
            matches!(verdict, Verdict::Inconclusive { .. }),
            "{verdict:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    /// A random execution of a register: each operation takes effect at a point in
    /// time, and its interval is stretched randomly around that point, so the history
    /// is linearizable by construction. Some operations are made unknown.
    fn random_linearizable_history(rng: &mut StdRng, len: usize) -> Vec<RegisterEvent> {
        let mut current: Option<String> = None;
        let mut history = Vec::with_capacity(len);
        for i in 0..len {
            let point = 100 * i as u64 + 1000;
            let invoked = point - rng.random_range(0..400u64);
            let returned = point + rng.random_range(0..400u64);
            let unknown = rng.random_range(0..20) == 0;
            let op = match rng.random_range(0..3) {
                0 => {
                    let value = format!("w{i}");
                    current = Some(value.clone());
                    RegisterOp::Write { value }
                }
                1 => {
                    let old = if rng.random_bool(0.6) {
                        current.clone().unwrap_or_else(|| "none".into())
                    } else {
                        format!("w{}", rng.random_range(0..=i))
                    };
                    let new = format!("c{i}");
                    let swapped = current.as_deref() == Some(old.as_str());
                    if swapped {
                        current = Some(new.clone());
                    }
                    RegisterOp::Cas {
                        old,
                        new,
                        outcome: if unknown {
                            Unknown
                        } else if swapped {
                            Swapped
                        } else {
                            NotSwapped
                        },
                    }
                }
                _ => RegisterOp::Read {
                    value: current.clone(),
                },
            };
            let returned = (!unknown || matches!(op, RegisterOp::Read { .. })).then_some(returned);
            history.push(event(i as u64, invoked, returned, op));
        }
        history
    }

    #[test]
    fn random_linearizable_histories_are_accepted() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let history = random_linearizable_history(&mut rng, 60);
            assert_eq!(check(&history), Verdict::Linearizable, "{history:#?}");
        }
    }

    #[test]
    fn a_long_lightly_concurrent_history_is_checked_quickly() {
        let mut rng = StdRng::seed_from_u64(11);
        let history = random_linearizable_history(&mut rng, 5_000);
        let started = Instant::now();
        assert_eq!(check(&history), Verdict::Linearizable);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_corrupted_random_history_is_rejected() {
        // Take a linearizable history and add, long after it, a read of the first
        // value ever written, which later writes overwrote.
        let mut rng = StdRng::seed_from_u64(3);
        let mut history = random_linearizable_history(&mut rng, 200);
        assert_eq!(check(&history), Verdict::Linearizable);
        let first = history
            .iter()
            .find_map(|e| match &e.op {
                RegisterOp::Write { value } => Some(value.clone()),
                _ => None,
            })
            .unwrap();
        history.push(read(1_000, Some(&first), 1_000_000, 1_000_001));
        assert!(check(&history).is_violation());
    }
}
