//! The crash timeline of a run (`dida faults --timeline FILE`): operations completed
//! and errors per 100 ms of the workload, with the moments a node was killed, its
//! crash detected and replication restored marked — the data of a throughput-over-
//! time plot around each crash.
//!
//! The buckets come from the recorded history (each operation counts in the bucket
//! of its completion time), so the timeline and the checkers see the same run; the
//! marks come from the nemesis (kills) and from `dida_faults::marks` (detection and
//! re-replication). The file is JSON lines: one [`Setup`] line, then [`Bucket`] and
//! [`Mark`] lines in time order. `docs/faults.md` describes the format.

use std::io::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::history::{OpKind, OpResult, Operation};
use crate::report::RunSettings;

/// Width of a bucket.
pub const BUCKET: Duration = Duration::from_millis(100);

/// One line of the timeline file, tagged by `event` like every JSON line dida writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TimelineLine {
    /// What ran; always the first line.
    Setup(Setup),
    /// One bucket of the workload.
    Bucket(Bucket),
    /// One event of a crash.
    Mark(Mark),
}

/// What the run was: its settings, and how to read the times of the other lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setup {
    /// Wall-clock time at which the workload started (`t_ms` 0), in milliseconds
    /// since the Unix epoch.
    pub start_unix_ms: u64,
    /// Width of a bucket, in milliseconds.
    pub bucket_ms: u64,
    /// The storage nodes, by id.
    pub node_ids: Vec<String>,
    /// `--anti-entropy-interval` of the storage nodes, in milliseconds.
    pub anti_entropy_interval_ms: u64,
    /// Period of the polls that look for a crash's detection, in milliseconds.
    pub detection_poll_ms: u64,
    /// Period of the polls that look for the end of re-replication, in milliseconds.
    pub replication_poll_ms: u64,
    /// The settings of the report (`nodes`, `replication_factor`, `write_acks`, …).
    #[serde(flatten)]
    pub settings: RunSettings,
}

/// Counts of one bucket by kind of operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCounts {
    /// Writes.
    pub write: u64,
    /// Compare-and-swaps.
    pub cas: u64,
    /// Reads.
    pub read: u64,
    /// Chain executions.
    pub chain: u64,
}

impl OpCounts {
    fn add(&mut self, kind: &OpKind) {
        match kind {
            OpKind::Write { .. } => self.write += 1,
            OpKind::Cas { .. } => self.cas += 1,
            OpKind::Read => self.read += 1,
            OpKind::Chain { .. } => self.chain += 1,
        }
    }
}

/// The operations that completed in `[t_ms, t_ms + bucket_ms)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Start of the bucket, in milliseconds since the start of the workload.
    pub t_ms: u64,
    /// Operations that completed successfully (see [`is_error`]).
    pub ok: u64,
    /// Operations that ended in an error.
    pub errors: u64,
    /// `ok` by kind of operation.
    pub by_op: OpCounts,
    /// `errors` by kind of operation.
    pub errors_by_op: OpCounts,
}

/// What happened to a node; its name in the file is the kebab-case of the variant
/// (`kill`, `re-replicated`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MarkEvent {
    /// The nemesis sent it SIGKILL.
    Kill,
    /// A live node's view first showed it failed.
    Detected,
    /// Replication was restored (see `dida_faults::marks`).
    ReReplicated,
    /// The nemesis sent it SIGSTOP.
    Pause,
    /// The nemesis sent it SIGCONT.
    Resume,
    /// The nemesis cut links of it (the mark's `by` lists them, `from->to`).
    Partition,
    /// The nemesis healed those links.
    Heal,
    /// The nemesis started the killed node again, and it answered its status.
    Restart,
    /// The nemesis asked the cluster to remove it (`dida cluster remove`).
    Leave,
    /// It handed its records off, was removed and stopped.
    Left,
    /// The nemesis started a new node, which asked the cluster to admit it
    /// (`dida storage --join`).
    Join,
    /// The cluster listed it active: it had caught up and entered every ring.
    Joined,
}

/// The event's name, as in the timeline file (taken from serde, so there is one
/// spelling to keep).
impl std::fmt::Display for MarkEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::report::serde_name(self))
    }
}

/// An event of a fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// When, in milliseconds since the start of the workload.
    pub t_ms: u64,
    /// What happened (not named `event`: that is the tag of the line).
    pub what: MarkEvent,
    /// The node the fault hit.
    pub node: String,
    /// For `detected`: the live node whose view showed the crash first; for
    /// `partition`: the links cut, `from->to`, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl Mark {
    /// A mark at `t_ns` nanoseconds since the start of the workload.
    pub fn at_ns(t_ns: u64, what: MarkEvent, node: &str) -> Self {
        Self {
            t_ms: t_ns / 1_000_000,
            what,
            node: node.to_string(),
            by: None,
        }
    }
}

/// True when an operation ended in an error: it certainly failed, its outcome is
/// unknown (a timeout, a reset, a hung chain), or a chain failed. A CAS whose
/// comparison failed is not an error: the service answered it.
pub fn is_error(op: &Operation) -> bool {
    matches!(
        op.result,
        OpResult::Failed { .. } | OpResult::Unknown { .. } | OpResult::ChainFailed { .. }
    )
}

/// Counts the operations of `history` by the bucket of their completion time.
/// Buckets of width `bucket` start at 0 and cover at least `[0, end_ns)` and every
/// completion, empty buckets included.
pub fn buckets(history: &[Operation], bucket: Duration, end_ns: u64) -> Vec<Bucket> {
    let width = u64::try_from(bucket.as_nanos()).unwrap_or(u64::MAX).max(1);
    let last = history
        .iter()
        .map(|op| op.completed_ns.saturating_add(1))
        .fold(end_ns, u64::max);
    let count = last.div_ceil(width).max(1);
    let mut result: Vec<Bucket> = (0..count)
        .map(|i| Bucket {
            t_ms: i * width / 1_000_000,
            ..Bucket::default()
        })
        .collect();
    for op in history {
        let index = usize::try_from(op.completed_ns / width).unwrap_or(usize::MAX);
        let Some(slot) = result.get_mut(index) else {
            continue;
        };
        let (total, by_op) = if is_error(op) {
            (&mut slot.errors, &mut slot.errors_by_op)
        } else {
            (&mut slot.ok, &mut slot.by_op)
        };
        *total += 1;
        by_op.add(&op.kind);
    }
    result
}

/// Writes the timeline: `setup` first, then buckets and marks in time order (a mark
/// after the bucket it falls in).
pub fn write(
    out: &mut impl Write,
    setup: &Setup,
    buckets: &[Bucket],
    marks: &[Mark],
) -> std::io::Result<()> {
    let mut marks: Vec<&Mark> = marks.iter().collect();
    marks.sort_by_key(|m| m.t_ms);
    let mut pending = marks.into_iter().peekable();
    let mut line = |line: TimelineLine| -> std::io::Result<()> {
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")
    };
    line(TimelineLine::Setup(setup.clone()))?;
    for bucket in buckets {
        while let Some(mark) = pending.next_if(|m| m.t_ms < bucket.t_ms) {
            line(TimelineLine::Mark(mark.clone()))?;
        }
        line(TimelineLine::Bucket(bucket.clone()))?;
    }
    for mark in pending {
        line(TimelineLine::Mark(mark.clone()))?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::fixtures::{self, cas, chain, chain_failed, written};

    /// An operation that completed `completed_ms` into the run.
    fn op(kind: OpKind, result: OpResult, completed_ms: u64) -> Operation {
        let completed_ns = completed_ms * 1_000_000;
        Operation {
            completed_ns,
            ..fixtures::op(0, kind, result)
        }
    }

    fn write_op() -> OpKind {
        fixtures::write("a")
    }

    #[test]
    fn operations_count_in_the_bucket_of_their_completion() {
        let history = vec![
            op(write_op(), written(1), 0),
            op(write_op(), written(1), 99),
            op(OpKind::Read, OpResult::Failed { error: "x".into() }, 100),
            op(cas("a", "b"), OpResult::CasFailed, 250),
            op(chain(&["EchoOperator"]), chain_failed("y"), 250),
            op(write_op(), OpResult::Unknown { error: "z".into() }, 299),
        ];
        let buckets = buckets(&history, BUCKET, 0);
        let t: Vec<u64> = buckets.iter().map(|b| b.t_ms).collect();
        assert_eq!(t, [0, 100, 200]);
        assert_eq!((buckets[0].ok, buckets[0].errors), (2, 0));
        assert_eq!(buckets[0].by_op.write, 2);
        assert_eq!((buckets[1].ok, buckets[1].errors), (0, 1));
        assert_eq!(buckets[1].errors_by_op.read, 1);
        // A failed comparison is an answer, not an error.
        assert_eq!((buckets[2].ok, buckets[2].errors), (1, 2));
        assert_eq!(buckets[2].by_op.cas, 1);
        assert_eq!(buckets[2].errors_by_op.chain, 1);
        assert_eq!(buckets[2].errors_by_op.write, 1);
    }

    #[test]
    fn empty_buckets_are_kept_up_to_the_end_of_the_run() {
        let history = vec![op(write_op(), written(1), 350)];
        let buckets = buckets(&history, BUCKET, 1_000_000_000);
        assert_eq!(buckets.len(), 10);
        assert_eq!(buckets.iter().map(|b| b.ok).sum::<u64>(), 1);
        assert_eq!(buckets[3].ok, 1);
        assert_eq!(buckets[9].t_ms, 900);
        // Completions past the end extend the timeline.
        let late = vec![op(write_op(), written(1), 1_234)];
        assert_eq!(super::buckets(&late, BUCKET, 1_000_000_000).len(), 13);
        assert_eq!(super::buckets(&[], BUCKET, 0).len(), 1);
    }

    #[test]
    fn the_file_is_a_setup_line_then_buckets_and_marks_in_time_order() {
        let setup = Setup {
            start_unix_ms: 1_700_000_000_000,
            bucket_ms: 100,
            node_ids: vec!["s1".into(), "s2".into()],
            anti_entropy_interval_ms: 250,
            detection_poll_ms: 50,
            replication_poll_ms: 100,
            settings: RunSettings {
                nodes: 2,
                replication_factor: 2,
                write_acks: 2,
                ..RunSettings::default()
            },
        };
        let history = vec![op(write_op(), written(1), 150)];
        let buckets = buckets(&history, BUCKET, 300_000_000);
        let mut detected = Mark::at_ns(120_000_000, MarkEvent::Detected, "s2");
        detected.by = Some("s1".into());
        let marks = vec![
            Mark::at_ns(450_000_000, MarkEvent::ReReplicated, "s2"),
            detected,
            Mark::at_ns(100_000_000, MarkEvent::Kill, "s2"),
        ];
        let mut out = Vec::new();
        write(&mut out, &setup, &buckets, &marks).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + 3 + 3, "{text}");
        assert!(
            lines[0].starts_with(r#"{"event":"setup","start_unix_ms":1700000000000,"#),
            "{text}"
        );
        assert!(lines[0].contains(r#""replication_factor":2"#), "{text}");
        assert!(lines[0].contains(r#""write_acks":2"#), "{text}");
        assert_eq!(
            lines[1],
            r#"{"event":"bucket","t_ms":0,"ok":0,"errors":0,"by_op":{"write":0,"cas":0,"read":0,"chain":0},"errors_by_op":{"write":0,"cas":0,"read":0,"chain":0}}"#
        );
        assert!(lines[2].starts_with(r#"{"event":"bucket","t_ms":100,"ok":1,"#));
        assert_eq!(
            lines[3],
            r#"{"event":"mark","t_ms":100,"what":"kill","node":"s2"}"#
        );
        assert_eq!(
            lines[4],
            r#"{"event":"mark","t_ms":120,"what":"detected","node":"s2","by":"s1"}"#
        );
        assert!(lines[5].starts_with(r#"{"event":"bucket","t_ms":200,"#));
        assert_eq!(
            lines[6],
            r#"{"event":"mark","t_ms":450,"what":"re-replicated","node":"s2"}"#
        );
        assert_eq!(MarkEvent::ReReplicated.to_string(), "re-replicated");
        // Every line reads back.
        let parsed: Vec<TimelineLine> = lines
            .iter()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(parsed[0], TimelineLine::Setup(setup));
        assert!(matches!(
            &parsed[6],
            TimelineLine::Mark(Mark {
                what: MarkEvent::ReReplicated,
                ..
            })
        ));
    }
}
