//! Machine-readable output: the JSON events of SPEC §6.3, one object per line.
//!
//! Field names are part of the platform's interface (scripts and tests parse them), so
//! they are defined once, here, for every command that prints them.

use serde::Serialize;

use crate::{Record, Version};

/// One line of `--json` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// The outcome of an application execution.
    Client {
        /// Execution id.
        id: String,
        /// The client's input.
        input: String,
        /// The application (file) that ran.
        app: String,
        /// `ok` or `error`.
        status: String,
        /// Outputs of the operators that completed, in chain order.
        outputs: Vec<String>,
        /// Why the execution failed (null when it succeeded).
        error: Option<String>,
    },
    /// A record held by a storage node (`listServer`, `listGlobal`, `kv read`, `kv list`).
    Record {
        /// The storage node holding it.
        server: String,
        /// The key.
        key: String,
        /// Its version.
        version: Version,
        /// Its value.
        value: String,
    },
    /// A node's state as seen by the one asking.
    Status {
        /// Node id.
        node: String,
        /// `scheduler`, `worker` or `storage`.
        role: String,
        /// `alive` if it answered, `failed` otherwise.
        state: String,
        /// Role-specific details (counts, settings), or the error when it failed.
        details: serde_json::Value,
    },
    /// A write was acknowledged.
    Write {
        /// The key written.
        key: String,
        /// The version the primary gave it.
        version: Version,
    },
    /// A conditional update was executed (`version` is null when it did not apply).
    Cas {
        /// The key.
        key: String,
        /// Whether the comparison held and the new value was written.
        applied: bool,
        /// The new version, when applied.
        version: Option<Version>,
    },
    /// A command failed.
    Error {
        /// Line of the script or data file, when there is one.
        line: Option<usize>,
        /// The command that failed.
        command: String,
        /// Why.
        message: String,
    },
}

impl Event {
    /// The `record` event of a record held by `server`.
    pub fn record(server: &str, record: &Record) -> Self {
        Self::Record {
            server: server.to_string(),
            key: record.key.clone(),
            version: record.version,
            value: record.value.clone(),
        }
    }

    /// The event as one line of JSON.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("events always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_event_has_the_spec_field_names() {
        let record = Record {
            key: "23".into(),
            version: Version::new(2, 1),
            value: "success".into(),
        };
        assert_eq!(
            Event::record("s1", &record).to_json_line(),
            r#"{"event":"record","server":"s1","key":"23","version":{"number":2,"replica":1},"value":"success"}"#
        );
        let error = Event::Error {
            line: Some(3),
            command: "populate".into(),
            message: "bad".into(),
        };
        assert_eq!(
            error.to_json_line(),
            r#"{"event":"error","line":3,"command":"populate","message":"bad"}"#
        );
        let client = Event::Client {
            id: "e-1".into(),
            input: "23".into(),
            app: "app.txt".into(),
            status: "ok".into(),
            outputs: vec!["12".into(), "end".into()],
            error: None,
        };
        assert_eq!(
            client.to_json_line(),
            r#"{"event":"client","id":"e-1","input":"23","app":"app.txt","status":"ok","outputs":["12","end"],"error":null}"#
        );
    }
}
