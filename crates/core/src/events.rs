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
    /// The scheduler accepted an execution; its `client` event follows when it ends
    /// (`dida run --async`, a PuppetMaster `client` line).
    Submitted {
        /// The script line that issued it (null outside a PuppetMaster script).
        line: Option<usize>,
        /// Execution id.
        id: String,
        /// The client's input.
        input: String,
        /// The application file, as written.
        app: String,
    },
    /// An execution that has not ended yet (`dida status` without `--wait`).
    Running {
        /// Execution id.
        id: String,
    },
    /// An execution in a listing (`dida executions`).
    Execution {
        /// Execution id.
        id: String,
        /// The application (file) that runs or ran.
        app: String,
        /// `running`, `succeeded`, `failed` or `timed_out`.
        status: String,
        /// When the scheduler accepted it, RFC 3339 in UTC.
        submitted: String,
        /// From submit to outcome, in milliseconds (null while it runs).
        duration_ms: Option<u64>,
    },
    /// How one operator of an execution ran (`dida status`, after the `client` event).
    Operator {
        /// Execution id.
        id: String,
        /// Position in the chain.
        order: u32,
        /// Class name.
        operator: String,
        /// The worker that ran it.
        worker: String,
        /// When the worker began loading it, RFC 3339 in UTC.
        started: String,
        /// Loading and running it, in microseconds.
        duration_us: u64,
        /// Fuel units it used.
        fuel_used: u64,
        /// The linear memory its instance grew to, in bytes.
        memory_bytes: u64,
        /// Instantiating it, in microseconds (part of `duration_us`).
        instantiate_us: u64,
        /// `ok` or `error`.
        status: String,
        /// Why it failed (null when it succeeded).
        error: Option<String>,
    },
    /// A line an operator logged or printed (`dida logs`).
    Log {
        /// Execution id.
        id: String,
        /// Position of the operator in the chain.
        order: u32,
        /// Its class name.
        operator: String,
        /// `trace`, `debug`, `info`, `warn`, `error`, `stdout` or `stderr`.
        level: String,
        /// The line.
        text: String,
    },
    /// An operator was deployed to the cluster (`dida operator deploy`).
    Deployed {
        /// What was deployed.
        operator: OperatorInfo,
        /// The digest of the operator it replaced under the same name, if any.
        replaced_digest: Option<String>,
    },
    /// A registered application (`dida app register|list|remove`); `change` says
    /// what happened to it: `registered`, `replaced`, `listed` or `removed`.
    App {
        /// What happened to it.
        change: String,
        /// Its name.
        name: String,
        /// Its operators, in chain order.
        operators: Vec<String>,
        /// When it was registered, milliseconds since the Unix epoch.
        registered_unix_ms: u64,
    },
    /// A deployed operator was removed (`dida operator remove`).
    Removed {
        /// What was removed.
        operator: OperatorInfo,
    },
    /// An operator the cluster can run (`dida operator list`). Named apart from
    /// `operator`, which says how one operator of an execution ran.
    Listed {
        /// `deployed` (stored by the scheduler) or `workers` (built into them).
        source: String,
        /// The operator; only its name for one built into the workers.
        operator: OperatorInfo,
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

/// An operator as `dida operator` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperatorInfo {
    /// The class name applications use.
    pub name: String,
    /// SHA-256 of its component, in hexadecimal (absent for built-in ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Size of its component (absent for built-in ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// When it was deployed, Unix milliseconds (absent for built-in ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployed_unix_ms: Option<u64>,
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

/// A Unix time in milliseconds as RFC 3339 in UTC, to the millisecond:
/// `2026-11-30T19:40:01.123Z`.
pub fn rfc3339_utc(unix_ms: u64) -> String {
    let (days, ms_of_day) = (unix_ms / 86_400_000, unix_ms % 86_400_000);
    // Civil date from days since 1970-01-01 (H. Hinnant's `civil_from_days`).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, ms) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_utc(1_796_153_401_123), "2026-12-01T19:30:01.123Z");
        assert_eq!(rfc3339_utc(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

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
        let submitted = Event::Submitted {
            line: Some(4),
            id: "e-2".into(),
            input: "23".into(),
            app: "app.txt".into(),
        };
        assert_eq!(
            submitted.to_json_line(),
            r#"{"event":"submitted","line":4,"id":"e-2","input":"23","app":"app.txt"}"#
        );
        assert_eq!(
            Event::Running { id: "e-2".into() }.to_json_line(),
            r#"{"event":"running","id":"e-2"}"#
        );
        let listed = Event::Listed {
            source: "workers".into(),
            operator: OperatorInfo {
                name: "EchoOperator".into(),
                digest: None,
                bytes: None,
                deployed_unix_ms: None,
            },
        };
        assert_eq!(
            listed.to_json_line(),
            r#"{"event":"listed","source":"workers","operator":{"name":"EchoOperator"}}"#
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
