//! The PuppetMaster's side of the page: everything it prints (script results,
//! errors, node output), the debug reports of workers in debug mode, and the script
//! lines a person types into the page.
//!
//! The feed keeps the last [`FEED_KEPT`] lines, so a page opened late still shows
//! recent history, and broadcasts new ones to every open page. A page that falls
//! behind by more than the broadcast buffer skips lines rather than slowing the
//! PuppetMaster down.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{broadcast, oneshot};

/// How many recent lines a feed keeps for pages opened later.
pub const FEED_KEPT: usize = 500;

/// What kind of line a feed carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedKind {
    /// A result the PuppetMaster printed on stdout (tables, outcomes, events).
    Output,
    /// A diagnostic on stderr (errors, notes, relayed node output).
    Diagnostic,
    /// A worker's debug report, as a JSON object.
    Debug,
    /// A script line typed into the page, echoed before it runs.
    Command,
}

/// One line of the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedLine {
    /// Numbers the lines, so a page can tell which it has shown.
    pub seq: u64,
    /// What it is.
    pub kind: FeedKind,
    /// The line (a JSON object for [`FeedKind::Debug`]).
    pub text: String,
    /// When it was printed, Unix time in milliseconds.
    pub at_unix_ms: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Feed {
    recent: Mutex<(u64, VecDeque<FeedLine>)>,
    tx: broadcast::Sender<FeedLine>,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            recent: Mutex::new((0, VecDeque::new())),
            tx: broadcast::channel(FEED_KEPT).0,
        }
    }
}

impl Feed {
    /// Adds a line and sends it to every open page.
    pub fn push(&self, kind: FeedKind, text: impl Into<String>) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.0 += 1;
        let line = FeedLine {
            seq: recent.0,
            kind,
            text: text.into(),
            at_unix_ms: now_unix_ms(),
        };
        if recent.1.len() == FEED_KEPT {
            recent.1.pop_front();
        }
        recent.1.push_back(line.clone());
        // No page open is not an error.
        let _ = self.tx.send(line);
    }

    /// The lines kept, oldest first, and a receiver of the lines after them.
    pub fn subscribe(&self) -> (Vec<FeedLine>, broadcast::Receiver<FeedLine>) {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        (recent.1.iter().cloned().collect(), self.tx.subscribe())
    }
}

/// A script line typed into the page, for the PuppetMaster to run in turn with the
/// console's lines. The answer says whether it ran; what it printed arrives through
/// the feed.
#[derive(Debug)]
pub struct ScriptRequest {
    /// The line, as typed.
    pub text: String,
    /// `Ok(number)`: it ran as line `number` of the session; `Err(why)`: it was
    /// refused or failed.
    pub reply: oneshot::Sender<Result<usize, String>>,
}

pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_lines_and_numbers_them() {
        let feed = Feed::default();
        for i in 0..FEED_KEPT + 3 {
            feed.push(FeedKind::Output, format!("line {i}"));
        }
        let (recent, _) = feed.subscribe();
        assert_eq!(recent.len(), FEED_KEPT);
        assert_eq!(recent[0].text, "line 3");
        assert_eq!(recent.last().unwrap().seq, (FEED_KEPT + 3) as u64);
    }

    #[tokio::test]
    async fn pages_receive_lines_pushed_after_they_subscribed() {
        let feed = Feed::default();
        feed.push(FeedKind::Output, "before");
        let (recent, mut rx) = feed.subscribe();
        feed.push(FeedKind::Debug, "{}");
        assert_eq!(recent.len(), 1);
        let line = rx.recv().await.unwrap();
        assert_eq!((line.kind, line.text.as_str()), (FeedKind::Debug, "{}"));
    }
}
