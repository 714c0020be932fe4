//! What the PCSs say of the processes the session started, for the dashboard: a
//! node killed outside the console (`kill -9`, the OOM killer, a crash of its own)
//! is no longer `running` on the page because the PuppetMaster last left it so.
//!
//! Every [`POLL`], each PCS is asked for its nodes (within [`CALL_LIMIT`]); a node
//! the session believes running whose process has ended is shown as
//! `exited: <how>` (for example `exited: was killed (signal: 9 (SIGKILL))`, the
//! PCS's words) until its PCS reports it running again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dida_dashboard::Topology;
use dida_pcs::PcsClient;
use tokio::sync::watch;

/// How often the PCSs are asked.
const POLL: Duration = Duration::from_secs(1);
/// The longest one PCS may take to answer before its nodes are left as they were.
const CALL_LIMIT: Duration = Duration::from_secs(2);

/// The nodes whose process ended without the session's doing, with how it ended.
pub type Exited = Arc<Mutex<BTreeMap<String, String>>>;

/// The process column of a node the session left `running`, given what the PCSs
/// said: `exited: …` once its process ended on its own; of a worker it asked to
/// leave, `left: …` once its process ended.
pub fn shown_process(id: &str, session_view: &str, exited: &Exited) -> String {
    let ended = exited.lock().ok().and_then(|e| e.get(id).cloned());
    match ended {
        Some(how) if session_view == "running" => format!("exited: {how}"),
        // A worker asked to leave is expected to end: `left: …` tells that apart
        // from a process that ended on its own, until the session records it
        // stopped.
        Some(how) if session_view == "leaving" => format!("left: {how}"),
        _ => session_view.to_string(),
    }
}

/// Starts polling `pcs`, recording ended processes in `exited` and correcting the
/// published topology at once; the task ends when the dashboard is gone.
pub fn start(pcs: Vec<PcsClient>, exited: Exited, topology: watch::Sender<Topology>) {
    tokio::spawn(async move {
        while !topology.is_closed() {
            for client in &pcs {
                let Ok(Ok(nodes)) = tokio::time::timeout(CALL_LIMIT, client.list_nodes()).await
                else {
                    continue;
                };
                if let Ok(mut exited) = exited.lock() {
                    for node in nodes {
                        if node.running {
                            exited.remove(&node.node_id);
                        } else if !node.exit.is_empty() {
                            exited.insert(node.node_id, node.exit);
                        }
                    }
                }
            }
            topology.send_if_modified(|shown| {
                let mut changed = false;
                for known in &mut shown.known {
                    let process = shown_process(&known.id, &known.process, &exited);
                    changed |= process != known.process;
                    known.process = process;
                }
                changed
            });
            tokio::time::sleep(POLL).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_node_the_session_left_running_shows_its_process_exited() {
        let exited = Exited::default();
        exited
            .lock()
            .unwrap()
            .insert("w2".into(), "was killed".into());
        assert_eq!(
            shown_process("w2", "running", &exited),
            "exited: was killed"
        );
        // A worker asked to leave is expected to end: said apart from the above.
        assert_eq!(shown_process("w2", "leaving", &exited), "left: was killed");
        // The session's own doings stand: it crashed or stopped the node itself.
        assert_eq!(shown_process("w2", "crashed", &exited), "crashed");
        assert_eq!(shown_process("w1", "running", &exited), "running");
    }
}
