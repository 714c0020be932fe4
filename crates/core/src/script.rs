//! The PuppetMaster's script language (SPEC §6.2), parsed one line at a time.
//!
//! The same parser serves script files, `--step` and the interactive console, so a
//! line means the same thing wherever it is typed. Parsing is purely syntactic: the
//! command name, its arity and the form of every argument (node ids, `http://HOST:PORT`
//! URLs, numbers). What depends on the session — whether a node id is already taken,
//! whether a file exists, whether a node was already crashed — is checked by the
//! PuppetMaster when it runs the line, with the same line number.
//!
//! Besides the commands of the SPEC, the language has these extensions: `await`,
//! which blocks until every client issued so far has its outcome (the deterministic
//! alternative to guessing a `wait` long enough before a `listGlobal`); `restart`,
//! which starts a crashed storage node again with its original flags (the
//! fail-recover counterpart of `crash`, for exercising rejoin); and `addWorker` and
//! `removeWorker`, which grow and shrink the workers of a running cluster (issue 25:
//! elastic clusters) — the setup block's `worker` lines fix the workers only at
//! start; and `addStorage` and `removeStorage`, which grow and shrink the storage
//! nodes of a running cluster — a node added joins the cluster's configuration and
//! catches up the ranges it gains; a node removed hands its records off, is removed
//! from the configuration and exits by itself.

use std::fmt;
use std::path::PathBuf;

use crate::limits::{check_input, MAX_GOSSIP_DELAY_MS};
use crate::membership::{check_node_id, NodeUrl};
use crate::textfile::strip_bom;

/// Longest `wait` accepted, in milliseconds (one hour): a longer pause is a typo.
pub const MAX_WAIT_MS: u64 = 3_600_000;

/// The role of a node a script starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// `dida scheduler`.
    Scheduler,
    /// `dida storage`.
    Storage,
    /// `dida worker`.
    Worker,
}

impl Role {
    /// The role's name, as in `dida <role>` and in JSON events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduler => "scheduler",
            Self::Storage => "storage",
            Self::Worker => "worker",
        }
    }

    /// The role called `name` (`scheduler`, `storage` or `worker`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "scheduler" => Some(Self::Scheduler),
            "storage" => Some(Self::Storage),
            "worker" => Some(Self::Worker),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node declared by a setup line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDecl {
    /// Its role.
    pub role: Role,
    /// Its id.
    pub id: String,
    /// Where it serves.
    pub url: NodeUrl,
    /// Its gossip delay in milliseconds (always 0 for the scheduler, which has none).
    pub gossip_delay_ms: u64,
}

/// One command of the language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `debug`: workers send what they output to the PuppetMaster.
    Debug,
    /// `scheduler`, `storage` or `worker`: a node of the setup block.
    Node(NodeDecl),
    /// `client <input> <app_file>`: run an application.
    Client {
        /// The input string.
        input: String,
        /// The application file, as written (relative to the script's folder).
        app: PathBuf,
    },
    /// `populate <data_file>`: write every `key,value` line of the file.
    Populate {
        /// The data file, as written (relative to the script's folder).
        data: PathBuf,
    },
    /// `status`: every node reports its status.
    Status,
    /// `listServer <id>`: every record of one storage node.
    ListServer {
        /// The storage node.
        id: String,
    },
    /// `listGlobal`: every record of every live storage node.
    ListGlobal,
    /// `crash <id>`: SIGKILL a storage node.
    Crash {
        /// The storage node.
        id: String,
    },
    /// `restart <id>` (extension): start a storage node again with its original
    /// flags, SIGKILLing it first if it still runs.
    Restart {
        /// The storage node.
        id: String,
    },
    /// `wait <ms>`: pause the script.
    Wait {
        /// How long, in milliseconds.
        ms: u64,
    },
    /// `await` (extension): block until every client issued so far has finished.
    Await,
    /// `addWorker <id> <url> <gossip_delay>` (extension): start a worker on the
    /// running cluster; it registers itself with the scheduler.
    AddWorker(NodeDecl),
    /// `removeWorker <id>` (extension): ask a worker to leave; it finishes what it
    /// runs, takes no new work, deregisters and exits.
    RemoveWorker {
        /// The worker.
        id: String,
    },
    /// `addStorage <id> <url> <gossip_delay>` (extension): start a storage node
    /// that asks the running cluster to admit it (`dida storage --join`); it
    /// catches up the ranges it gains, then the cluster lists it active. Declared
    /// like a setup-block `storage` line, so that it runs with the same settings.
    AddStorage(NodeDecl),
    /// `removeStorage <id>` (extension): ask the storage cluster to remove a
    /// member; it hands its records to their new replicas, is removed and exits.
    RemoveStorage {
        /// The storage node.
        id: String,
    },
}

impl Command {
    /// The command's name as written in scripts.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Node(node) => node.role.as_str(),
            Self::Client { .. } => "client",
            Self::Populate { .. } => "populate",
            Self::Status => "status",
            Self::ListServer { .. } => "listServer",
            Self::ListGlobal => "listGlobal",
            Self::Crash { .. } => "crash",
            Self::Restart { .. } => "restart",
            Self::Wait { .. } => "wait",
            Self::Await => "await",
            Self::AddWorker(_) => "addWorker",
            Self::RemoveWorker { .. } => "removeWorker",
            Self::AddStorage(_) => "addStorage",
            Self::RemoveStorage { .. } => "removeStorage",
        }
    }
}

/// How one command is written, for `help`, completion and error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandHelp {
    /// The command's name.
    pub name: &'static str,
    /// Its arguments, as in `<id> <url>`.
    pub args: &'static str,
    /// What it does.
    pub summary: &'static str,
}

impl CommandHelp {
    /// `name args`, the way the command is written.
    pub fn usage(&self) -> String {
        if self.args.is_empty() {
            self.name.to_string()
        } else {
            format!("{} {}", self.name, self.args)
        }
    }

    fn arity(&self) -> usize {
        self.args.split_whitespace().count()
    }
}

/// Every command of the language, in the order of SPEC §6.2.
pub const COMMANDS: &[CommandHelp] = &[
    CommandHelp {
        name: "debug",
        args: "",
        summary: "workers send the records and metadata they output to the PuppetMaster (before the setup lines)",
    },
    CommandHelp {
        name: "scheduler",
        args: "<id> <url>",
        summary: "declare the scheduler (setup block)",
    },
    CommandHelp {
        name: "storage",
        args: "<id> <url> <gossip_delay>",
        summary: "declare a storage node (setup block)",
    },
    CommandHelp {
        name: "worker",
        args: "<id> <url> <gossip_delay>",
        summary: "declare a worker (setup block)",
    },
    CommandHelp {
        name: "client",
        args: "<input> <app_file>",
        summary: "run the application in app_file with input string input (returns at once)",
    },
    CommandHelp {
        name: "populate",
        args: "<data_file>",
        summary: "write every key,value line of data_file",
    },
    CommandHelp {
        name: "status",
        args: "",
        summary: "every node reports its status",
    },
    CommandHelp {
        name: "listServer",
        args: "<id>",
        summary: "list every record held by storage node id",
    },
    CommandHelp {
        name: "listGlobal",
        args: "",
        summary: "list every record held by every live storage node",
    },
    CommandHelp {
        name: "crash",
        args: "<id>",
        summary: "kill storage node id (SIGKILL: a real fail-stop crash)",
    },
    CommandHelp {
        name: "restart",
        args: "<id>",
        summary: "start storage node id again with its original flags, SIGKILLing it first if it runs (extension)",
    },
    CommandHelp {
        name: "wait",
        args: "<ms>",
        summary: "pause the script for ms milliseconds",
    },
    CommandHelp {
        name: "await",
        args: "",
        summary: "block until every client issued so far has its outcome (extension)",
    },
    CommandHelp {
        name: "addWorker",
        args: "<id> <url> <gossip_delay>",
        summary: "start a worker on the running cluster; returns once the scheduler places work on it (extension)",
    },
    CommandHelp {
        name: "removeWorker",
        args: "<id>",
        summary: "ask worker id to leave: it takes no new work, finishes what it runs, then exits; returns once it is leaving (extension)",
    },
    CommandHelp {
        name: "addStorage",
        args: "<id> <url> <gossip_delay>",
        summary: "start a storage node that joins the running cluster; returns once the cluster lists it active (extension)",
    },
    CommandHelp {
        name: "removeStorage",
        args: "<id>",
        summary: "ask the storage cluster to remove storage node id: it hands its records off, is removed, then exits; returns once the change is decided (extension)",
    },
];

/// Why a line was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct ScriptError {
    /// 1-based line number.
    pub line: usize,
    /// The command the line names (its first word), or empty.
    pub command: String,
    /// What is wrong.
    pub message: String,
}

/// A parsed line: its number and command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number in the script (or in the console session).
    pub number: usize,
    /// The command.
    pub command: Command,
}

/// Parses one line. Blank lines and lines starting with `#` yield `Ok(None)`.
pub fn parse_line(number: usize, text: &str) -> Result<Option<Command>, ScriptError> {
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let name = words[0];
    let args = &words[1..];
    let err = |message: String| ScriptError {
        line: number,
        command: name.to_string(),
        message,
    };
    let Some(help) = COMMANDS.iter().find(|c| c.name == name) else {
        let hint = COMMANDS
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
            .map_or_else(
                || "`help` lists the commands".to_string(),
                |c| format!("did you mean `{}`?", c.name),
            );
        return Err(err(format!("unknown command {name:?}; {hint}")));
    };
    if args.len() != help.arity() {
        return Err(err(format!(
            "`{name}` takes {} argument{} ({}), found {}",
            help.arity(),
            if help.arity() == 1 { "" } else { "s" },
            if help.args.is_empty() {
                "none".to_string()
            } else {
                format!("usage: {}", help.usage())
            },
            args.len()
        )));
    }
    let node = |role: Role| -> Result<NodeDecl, ScriptError> {
        let id = node_id(args[0]).map_err(&err)?;
        let url = NodeUrl::parse(args[1]).map_err(|e| err(e.to_string()))?;
        let gossip_delay_ms = match args.get(2) {
            Some(delay) => {
                milliseconds(delay, "gossip_delay", MAX_GOSSIP_DELAY_MS).map_err(&err)?
            }
            None => 0,
        };
        Ok(NodeDecl {
            role,
            id,
            url,
            gossip_delay_ms,
        })
    };
    let command = match name {
        "debug" => Command::Debug,
        "scheduler" => Command::Node(node(Role::Scheduler)?),
        "storage" => Command::Node(node(Role::Storage)?),
        "worker" => Command::Node(node(Role::Worker)?),
        "client" => {
            check_input(args[0]).map_err(|e| err(e.to_string()))?;
            Command::Client {
                input: args[0].to_string(),
                app: PathBuf::from(args[1]),
            }
        }
        "populate" => Command::Populate {
            data: PathBuf::from(args[0]),
        },
        "status" => Command::Status,
        "listServer" => Command::ListServer {
            id: node_id(args[0]).map_err(err)?,
        },
        "listGlobal" => Command::ListGlobal,
        "crash" => Command::Crash {
            id: node_id(args[0]).map_err(err)?,
        },
        "restart" => Command::Restart {
            id: node_id(args[0]).map_err(err)?,
        },
        "wait" => Command::Wait {
            ms: milliseconds(args[0], "ms", MAX_WAIT_MS).map_err(err)?,
        },
        "await" => Command::Await,
        "addWorker" => Command::AddWorker(node(Role::Worker)?),
        "removeWorker" => Command::RemoveWorker {
            id: node_id(args[0]).map_err(err)?,
        },
        "addStorage" => Command::AddStorage(node(Role::Storage)?),
        "removeStorage" => Command::RemoveStorage {
            id: node_id(args[0]).map_err(err)?,
        },
        other => unreachable!("{other} is in COMMANDS but has no parser"),
    };
    Ok(Some(command))
}

/// Parses a whole script: every valid line, and an error for every invalid one (so
/// all mistakes are reported at once, each with its line number). A leading byte
/// order mark is dropped, so the first command is recognised.
pub fn parse_script(text: &str) -> (Vec<Line>, Vec<ScriptError>) {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in strip_bom(text).lines().enumerate() {
        match parse_line(index + 1, raw) {
            Ok(Some(command)) => lines.push(Line {
                number: index + 1,
                command,
            }),
            Ok(None) => {}
            Err(error) => errors.push(error),
        }
    }
    (lines, errors)
}

fn node_id(id: &str) -> Result<String, String> {
    check_node_id(id).map_err(|e| e.to_string())?;
    Ok(id.to_string())
}

fn milliseconds(text: &str, what: &str, max: u64) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        Ok(n) => Err(format!("{what} {n} is too large (at most {max})")),
        Err(_) => Err(format!(
            "{what} must be a non-negative whole number of milliseconds, found {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> NodeUrl {
        NodeUrl::parse(text).unwrap()
    }

    #[test]
    fn accepts_the_course_script_exactly_as_written() {
        let script = "debug\n\
            scheduler sched1 http://localhost:3000\n\
            storage s1 http://localhost:3001 0\n\
            worker w1 http://localhost:4001 100\n\
            \n\
            # a comment\n\
            populate data.txt\n\
            client 23 app.txt\n\
            status\n\
            listServer s1\n\
            listGlobal\n\
            crash s1\n\
            restart s1\n\
            wait 500\n\
            await\n\
            addWorker w2 http://localhost:4002 50\n\
            removeWorker w1\r\n\
            addStorage s4 http://localhost:3004 20\n\
            removeStorage s1\n";
        let (lines, errors) = parse_script(script);
        assert!(errors.is_empty(), "{errors:?}");
        let commands: Vec<_> = lines.iter().map(|l| l.command.clone()).collect();
        assert_eq!(
            commands,
            vec![
                Command::Debug,
                Command::Node(NodeDecl {
                    role: Role::Scheduler,
                    id: "sched1".into(),
                    url: url("http://localhost:3000"),
                    gossip_delay_ms: 0,
                }),
                Command::Node(NodeDecl {
                    role: Role::Storage,
                    id: "s1".into(),
                    url: url("http://localhost:3001"),
                    gossip_delay_ms: 0,
                }),
                Command::Node(NodeDecl {
                    role: Role::Worker,
                    id: "w1".into(),
                    url: url("http://localhost:4001"),
                    gossip_delay_ms: 100,
                }),
                Command::Populate {
                    data: "data.txt".into()
                },
                Command::Client {
                    input: "23".into(),
                    app: "app.txt".into()
                },
                Command::Status,
                Command::ListServer { id: "s1".into() },
                Command::ListGlobal,
                Command::Crash { id: "s1".into() },
                Command::Restart { id: "s1".into() },
                Command::Wait { ms: 500 },
                Command::Await,
                Command::AddWorker(NodeDecl {
                    role: Role::Worker,
                    id: "w2".into(),
                    url: url("http://localhost:4002"),
                    gossip_delay_ms: 50,
                }),
                Command::RemoveWorker { id: "w1".into() },
                Command::AddStorage(NodeDecl {
                    role: Role::Storage,
                    id: "s4".into(),
                    url: url("http://localhost:3004"),
                    gossip_delay_ms: 20,
                }),
                Command::RemoveStorage { id: "s1".into() },
            ]
        );
        assert_eq!(lines[1].number, 2);
        assert_eq!(lines[4].number, 7, "blank and comment lines keep numbering");
    }

    #[test]
    fn refuses_every_malformed_line_with_its_number() {
        let cases: &[(&str, &str)] = &[
            ("frobnicate", "unknown command \"frobnicate\""),
            ("listserver s1", "did you mean `listServer`?"),
            ("Status", "did you mean `status`?"),
            ("status now", "`status` takes 0 arguments"),
            ("debug on", "`debug` takes 0 arguments"),
            ("listGlobal s1", "`listGlobal` takes 0 arguments"),
            ("await 3", "`await` takes 0 arguments"),
            ("storage s1 http://localhost:3001", "takes 3 arguments"),
            ("storage s1 http://localhost:3001 0 9", "takes 3 arguments"),
            ("worker w1", "takes 3 arguments"),
            ("scheduler sched", "takes 2 arguments"),
            ("scheduler a http://localhost:1 0", "takes 2 arguments"),
            ("client 23", "usage: client <input> <app_file>"),
            ("client 23 app.txt extra", "takes 2 arguments"),
            ("populate", "takes 1 argument "),
            ("listServer", "takes 1 argument "),
            ("crash", "takes 1 argument "),
            ("crash s1 s2", "takes 1 argument "),
            ("wait", "takes 1 argument "),
            ("wait soon", "must be a non-negative whole number"),
            ("wait -5", "must be a non-negative whole number"),
            ("wait 99999999999", "too large"),
            ("storage s1 localhost:3001 0", "must start with http://"),
            (
                "storage s1 ftp://localhost:3001 0",
                "must start with http://",
            ),
            ("storage s1 http://localhost 0", "must name a port"),
            (
                "storage s1 http://localhost:99999 0",
                "port must be a number",
            ),
            ("storage s1 http://localhost:0 0", "port must be a number"),
            ("worker w1 http://:4001 0", "host is missing"),
            (
                "storage s1 http://localhost:3001 fast",
                "gossip_delay must be",
            ),
            (
                "storage s1 http://localhost:3001 -1",
                "gossip_delay must be",
            ),
            (
                "storage s/1 http://localhost:3001 0",
                "node id \"s/1\" is invalid",
            ),
            ("crash ../x", "node id \"../x\" is invalid"),
            ("restart", "takes 1 argument (usage: restart <id>)"),
            ("restart s1 s2", "takes 1 argument "),
            ("restart ../x", "node id \"../x\" is invalid"),
            ("restart s;rm", "is invalid"),
            ("Restart s1", "did you mean `restart`?"),
            ("listServer s;rm", "is invalid"),
            (
                "addWorker w2 http://localhost:4002",
                "`addWorker` takes 3 arguments (usage: addWorker <id> <url> <gossip_delay>), found 2",
            ),
            ("addWorker", "takes 3 arguments"),
            ("addWorker w2 http://localhost:4002 0 9", "takes 3 arguments"),
            ("addWorker w2 localhost:4002 0", "must start with http://"),
            ("addWorker w2 http://localhost 0", "must name a port"),
            ("addWorker w2 http://localhost:4002 soon", "gossip_delay must be"),
            ("addWorker w2 http://localhost:4002 9999999999", "too large"),
            ("addWorker w/2 http://localhost:4002 0", "node id \"w/2\" is invalid"),
            ("addworker w2 http://localhost:4002 0", "did you mean `addWorker`?"),
            ("AddWorker w2 http://localhost:4002 0", "did you mean `addWorker`?"),
            (
                "removeWorker",
                "`removeWorker` takes 1 argument (usage: removeWorker <id>), found 0",
            ),
            ("removeWorker w1 w2", "takes 1 argument "),
            (
                "addStorage s4 http://localhost:3004",
                "`addStorage` takes 3 arguments (usage: addStorage <id> <url> <gossip_delay>), found 2",
            ),
            ("addStorage s4 localhost:3004 0", "must start with http://"),
            ("addStorage s4 http://localhost 0", "must name a port"),
            ("addStorage s4 http://localhost:3004 soon", "gossip_delay must be"),
            ("addStorage s/4 http://localhost:3004 0", "node id \"s/4\" is invalid"),
            ("addstorage s4 http://localhost:3004 0", "did you mean `addStorage`?"),
            ("removeWorker ../w1", "node id \"../w1\" is invalid"),
            ("removeworker w1", "did you mean `removeWorker`?"),
            (
                "removeStorage",
                "`removeStorage` takes 1 argument (usage: removeStorage <id>), found 0",
            ),
            ("removeStorage s1 s2", "takes 1 argument "),
            ("removeStorage ../s1", "node id \"../s1\" is invalid"),
            ("removeStorage s;rm", "is invalid"),
            ("removestorage s1", "did you mean `removeStorage`?"),
            ("RemoveStorage s1", "did you mean `removeStorage`?"),
        ];
        for (text, expected) in cases {
            let error = parse_line(7, text).unwrap_err();
            assert_eq!(error.line, 7, "{text}");
            assert_eq!(error.command, text.split_whitespace().next().unwrap());
            assert!(
                error.message.contains(expected),
                "{text:?}: {:?} does not contain {expected:?}",
                error.message
            );
            assert!(error.to_string().starts_with("line 7: "));
        }
    }

    #[test]
    fn a_script_reports_every_bad_line_and_keeps_the_good_ones() {
        let (lines, errors) = parse_script("status\nbogus\nwait x\nlistGlobal\n");
        assert_eq!(
            lines.iter().map(|l| l.number).collect::<Vec<_>>(),
            vec![1, 4]
        );
        assert_eq!(
            errors.iter().map(|e| e.line).collect::<Vec<_>>(),
            vec![2, 3]
        );
    }

    #[test]
    fn a_leading_bom_is_dropped_and_oversized_inputs_are_refused() {
        let (lines, errors) = parse_script("\u{feff}status\r\nlistGlobal\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(lines[0].command, Command::Status);
        let long = "i".repeat(crate::limits::MAX_INPUT_BYTES + 1);
        let error = parse_line(4, &format!("client {long} app.txt")).unwrap_err();
        assert!(error.message.contains("the input is"), "{}", error.message);
    }

    #[test]
    fn blank_and_comment_lines_are_nothing() {
        assert_eq!(parse_line(1, "   "), Ok(None));
        assert_eq!(parse_line(1, "# storage s1"), Ok(None));
    }

    #[test]
    fn every_command_has_a_parser_and_roles_round_trip() {
        for help in COMMANDS {
            let args: Vec<&str> = help
                .args
                .split_whitespace()
                .map(|a| match a {
                    "<url>" => "http://127.0.0.1:1",
                    "<gossip_delay>" | "<ms>" => "1",
                    _ => "x",
                })
                .collect();
            let line = format!("{} {}", help.name, args.join(" "));
            let command = parse_line(1, &line).unwrap().unwrap();
            assert_eq!(command.name(), help.name);
        }
        for role in [Role::Scheduler, Role::Storage, Role::Worker] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("sh"), None);
    }
}
