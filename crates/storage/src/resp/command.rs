//! What a client asked for: a parsed command's arguments turned into a
//! [`Command`], or the error reply Redis would give for them. Plain functions, so
//! every refusal is tested without a connection.

use dida_core::Version;

use super::reply::Reply;

/// A command dida serves over RESP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `PING [message]`.
    Ping(Option<Vec<u8>>),
    /// `ECHO message`.
    Echo(Vec<u8>),
    /// `HELLO [protover [AUTH user password] [SETNAME name]]`.
    Hello {
        /// The protocol asked for (2 or 3), if any.
        protocol: Option<i64>,
        /// Credentials given with it.
        auth: Option<Credentials>,
        /// The connection's new name.
        name: Option<String>,
    },
    /// `AUTH [user] password`.
    Auth(Credentials),
    /// `SELECT db`: only database 0 exists.
    Select(i64),
    /// `QUIT`: answer OK, then close.
    Quit,
    /// `INFO [section…]`.
    Info,
    /// `COMMAND`, `COMMAND COUNT`, `COMMAND DOCS …`, `COMMAND INFO name…`.
    Table(TableQuery),
    /// `CLIENT SETNAME|GETNAME|ID|SETINFO|INFO`.
    Client(ClientCommand),
    /// `CONFIG GET parameter…`: the few Redis parameters that describe dida too
    /// (`save`, `appendonly`, which `redis-benchmark` asks for); others are left out
    /// of the answer, as Redis leaves out parameters it does not have.
    ConfigGet(Vec<String>),
    /// `GET key`.
    Get(String),
    /// `SET key value`, or `DIDA.SET key value`, which answers the new version
    /// instead of `OK`.
    Set {
        /// The key.
        key: String,
        /// Its new value.
        value: String,
        /// Answer the new version (`DIDA.SET`).
        versioned: bool,
    },
    /// `MGET key…`.
    MGet(Vec<String>),
    /// `EXISTS key…`: how many of the keys have a value.
    Exists(Vec<String>),
    /// `DIDA.CAS key expected new`: compare-and-swap, answering the new version or
    /// null when the value was not `expected`.
    Cas {
        /// The key.
        key: String,
        /// The value the newest version must hold.
        expected: String,
        /// The value to write if it does.
        value: String,
    },
    /// `DIDA.GET key [version]`: the value and version of the newest version of
    /// `key`, or of exactly `version`.
    GetVersioned {
        /// The key.
        key: String,
        /// The version wanted, if not the newest.
        version: Option<Version>,
    },
}

/// Credentials given with `AUTH` or `HELLO … AUTH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user named, if any; dida knows only `default`.
    pub user: Option<String>,
    /// The password: the cluster token.
    pub password: Vec<u8>,
}

/// What `COMMAND` was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableQuery {
    /// `COMMAND`: every command.
    All,
    /// `COMMAND COUNT`.
    Count,
    /// `COMMAND DOCS …`: dida serves no documentation over RESP.
    Docs,
    /// `COMMAND INFO name…`.
    Info(Vec<String>),
}

/// What `CLIENT` was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    /// `CLIENT SETNAME name`.
    SetName(String),
    /// `CLIENT GETNAME`.
    GetName,
    /// `CLIENT ID`.
    Id,
    /// `CLIENT SETINFO attribute value`: accepted and ignored.
    SetInfo,
    /// `CLIENT INFO`.
    Info,
}

/// Which keys a command reads or writes, so a pipeline can run commands on
/// different keys concurrently and keep each key's commands in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access<'a> {
    /// Touches no key; changes or reads only the connection (`PING`, `AUTH`).
    Connection,
    /// Reads these keys.
    Reads(&'a [String]),
    /// Reads one key.
    Read(&'a str),
    /// Writes one key.
    Write(&'a str),
}

/// One row of the command table: name, arity as Redis counts it (negative: at
/// least that many), and whether it writes. Defined once: parsing checks arity
/// against it and `COMMAND` lists it.
struct Entry {
    name: &'static str,
    arity: i64,
    write: bool,
}

#[rustfmt::skip]
const TABLE: &[Entry] = &[
    Entry { name: "ping", arity: -1, write: false },
    Entry { name: "echo", arity: 2, write: false },
    Entry { name: "hello", arity: -1, write: false },
    Entry { name: "auth", arity: -2, write: false },
    Entry { name: "select", arity: 2, write: false },
    Entry { name: "quit", arity: -1, write: false },
    Entry { name: "info", arity: -1, write: false },
    Entry { name: "command", arity: -1, write: false },
    Entry { name: "client", arity: -2, write: false },
    Entry { name: "config", arity: -2, write: false },
    Entry { name: "get", arity: 2, write: false },
    Entry { name: "set", arity: -3, write: true },
    Entry { name: "mget", arity: -2, write: false },
    Entry { name: "exists", arity: -2, write: false },
    Entry { name: "dida.set", arity: 3, write: true },
    Entry { name: "dida.cas", arity: 4, write: true },
    Entry { name: "dida.get", arity: -2, write: false },
];

/// Commands Redis has that dida deliberately does not serve, with why: each gets
/// an error naming the reason rather than "unknown command".
const REFUSED: &[(&str, &str)] = &[
    (
        "keys",
        "it would list a whole node in one reply; use `dida kv list`, which pages",
    ),
    (
        "scan",
        "use `dida kv list`, which pages through a node's records",
    ),
    (
        "flushall",
        "dida keeps every acknowledged write; it has no command that drops data",
    ),
    (
        "flushdb",
        "dida keeps every acknowledged write; it has no command that drops data",
    ),
    ("del", "deleting keys is not implemented yet"),
    ("unlink", "deleting keys is not implemented yet"),
    ("expire", "dida keys do not expire"),
    ("pexpire", "dida keys do not expire"),
    ("setex", "dida keys do not expire"),
    ("psetex", "dida keys do not expire"),
    (
        "incr",
        "use DIDA.CAS to update a value from the one you read",
    ),
    (
        "decr",
        "use DIDA.CAS to update a value from the one you read",
    ),
    (
        "mset",
        "writes are one key at a time: send SETs in a pipeline",
    ),
    (
        "multi",
        "dida has no multi-key transactions; DIDA.CAS updates one key atomically",
    ),
    (
        "watch",
        "dida has no multi-key transactions; DIDA.CAS updates one key atomically",
    ),
    ("subscribe", "dida has no publish/subscribe"),
    ("publish", "dida has no publish/subscribe"),
    ("debug", "it is not served over the network"),
    (
        "shutdown",
        "stop a node with its process manager or the PuppetMaster",
    ),
];

/// Parses one command's `arguments` (its name first) into a [`Command`], or the
/// error reply for them.
pub fn parse(arguments: &[&[u8]]) -> Result<Command, Reply> {
    let Some((name, rest)) = arguments.split_first() else {
        return Err(Reply::error("ERR", "empty command"));
    };
    let lower = String::from_utf8_lossy(name).to_ascii_lowercase();
    let Some(entry) = TABLE.iter().find(|entry| entry.name == lower) else {
        if let Some((_, why)) = REFUSED.iter().find(|(refused, _)| *refused == lower) {
            return Err(Reply::error(
                "ERR",
                format!("'{lower}' is not supported by dida: {why}"),
            ));
        }
        return Err(unknown_command(&lower, rest));
    };
    let count = arguments.len() as i64;
    if (entry.arity >= 0 && count != entry.arity) || count < -entry.arity {
        return Err(Reply::error(
            "ERR",
            format!("wrong number of arguments for '{lower}' command"),
        ));
    }
    let text = |bytes: &[u8]| text(bytes);
    Ok(match entry.name {
        "ping" => match rest {
            [] => Command::Ping(None),
            [message] => Command::Ping(Some(message.to_vec())),
            _ => return Err(arity_error("ping")),
        },
        "echo" => Command::Echo(rest[0].to_vec()),
        "hello" => parse_hello(rest)?,
        "auth" => match rest {
            [password] => Command::Auth(Credentials {
                user: None,
                password: password.to_vec(),
            }),
            [user, password] => Command::Auth(Credentials {
                user: Some(text(user)?),
                password: password.to_vec(),
            }),
            _ => return Err(Reply::error("ERR", "syntax error")),
        },
        "select" => Command::Select(integer(rest[0])?),
        "quit" => Command::Quit,
        "info" => Command::Info,
        "command" => Command::Table(parse_table_query(rest)?),
        "client" => Command::Client(parse_client(rest)?),
        "config" => match subcommand(rest).as_str() {
            "get" if rest.len() >= 2 => Command::ConfigGet(
                rest[1..]
                    .iter()
                    .map(|name| String::from_utf8_lossy(name).to_ascii_lowercase())
                    .collect(),
            ),
            other => {
                return Err(Reply::error(
                    "ERR",
                    format!(
                        "'config {other}' is not supported by dida: it has no Redis parameters"
                    ),
                ))
            }
        },
        "get" => Command::Get(text(rest[0])?),
        "set" => parse_set(rest)?,
        "mget" => Command::MGet(rest.iter().map(|k| text(k)).collect::<Result<_, _>>()?),
        "exists" => Command::Exists(rest.iter().map(|k| text(k)).collect::<Result<_, _>>()?),
        "dida.set" => Command::Set {
            key: text(rest[0])?,
            value: text(rest[1])?,
            versioned: true,
        },
        "dida.cas" => Command::Cas {
            key: text(rest[0])?,
            expected: text(rest[1])?,
            value: text(rest[2])?,
        },
        "dida.get" => match rest {
            [key] => Command::GetVersioned {
                key: text(key)?,
                version: None,
            },
            [key, version] => Command::GetVersioned {
                key: text(key)?,
                version: Some(text(version)?.parse().map_err(|e| Reply::error("ERR", e))?),
            },
            _ => return Err(arity_error("dida.get")),
        },
        _ => unreachable!("every table entry is parsed above"),
    })
}

impl Command {
    /// The keys the command touches (see [`Access`]).
    pub fn access(&self) -> Access<'_> {
        match self {
            Command::Get(key) | Command::GetVersioned { key, .. } => Access::Read(key),
            Command::MGet(keys) | Command::Exists(keys) => Access::Reads(keys),
            Command::Set { key, .. } | Command::Cas { key, .. } => Access::Write(key),
            _ => Access::Connection,
        }
    }
}

/// The `COMMAND` reply: each command's name, arity, flags, first key, last key
/// and key step, as clients that route by key expect.
pub fn table(query: &TableQuery) -> Reply {
    let describe = |entry: &Entry| {
        let keyed = !matches!(
            entry.name,
            "ping"
                | "echo"
                | "hello"
                | "auth"
                | "select"
                | "quit"
                | "info"
                | "command"
                | "client"
                | "config"
        );
        let flags = if entry.write { "write" } else { "readonly" };
        Reply::Array(vec![
            Reply::text(entry.name),
            Reply::Integer(entry.arity),
            Reply::Array(vec![Reply::Status(flags)]),
            Reply::Integer(keyed as i64),
            Reply::Integer(if !keyed {
                0
            } else if entry.arity < 0 && matches!(entry.name, "mget" | "exists") {
                -1
            } else {
                1
            }),
            Reply::Integer(keyed as i64),
        ])
    };
    match query {
        TableQuery::All => Reply::Array(TABLE.iter().map(describe).collect()),
        TableQuery::Count => Reply::Integer(TABLE.len() as i64),
        TableQuery::Docs => Reply::Map(Vec::new()),
        TableQuery::Info(names) => Reply::Array(
            names
                .iter()
                .map(|name| {
                    let lower = name.to_ascii_lowercase();
                    TABLE
                        .iter()
                        .find(|entry| entry.name == lower)
                        .map_or(Reply::Null, describe)
                })
                .collect(),
        ),
    }
}

fn text(bytes: &[u8]) -> Result<String, Reply> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        Reply::error(
            "ERR",
            "dida keys and values are UTF-8 text; this argument is not",
        )
    })
}

fn integer(bytes: &[u8]) -> Result<i64, Reply> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Reply::error("ERR", "value is not an integer or out of range"))
}

fn subcommand(rest: &[&[u8]]) -> String {
    rest.first()
        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
        .unwrap_or_default()
}

fn arity_error(name: &str) -> Reply {
    Reply::error(
        "ERR",
        format!("wrong number of arguments for '{name}' command"),
    )
}

fn unknown_command(name: &str, rest: &[&[u8]]) -> Reply {
    let shown: String = name.chars().take(128).collect();
    let args: Vec<String> = rest
        .iter()
        .take(4)
        .map(|a| format!("'{}'", String::from_utf8_lossy(&a[..a.len().min(64)])))
        .collect();
    Reply::error(
        "ERR",
        format!(
            "unknown command '{shown}', with args beginning with: {}",
            args.join(" ")
        ),
    )
}

fn parse_hello(rest: &[&[u8]]) -> Result<Command, Reply> {
    let Some((version, mut options)) = rest.split_first() else {
        return Ok(Command::Hello {
            protocol: None,
            auth: None,
            name: None,
        });
    };
    let protocol = Some(integer(version).map_err(|_| {
        Reply::error(
            "NOPROTO",
            "Protocol version is not an integer or out of range",
        )
    })?);
    let (mut auth, mut name) = (None, None);
    while let Some((option, after)) = options.split_first() {
        match (
            String::from_utf8_lossy(option)
                .to_ascii_lowercase()
                .as_str(),
            after,
        ) {
            ("auth", [user, password, more @ ..]) => {
                auth = Some(Credentials {
                    user: Some(text(user)?),
                    password: password.to_vec(),
                });
                options = more;
            }
            ("setname", [client, more @ ..]) => {
                name = Some(text(client)?);
                options = more;
            }
            (other, _) => {
                return Err(Reply::error(
                    "ERR",
                    format!("syntax error in HELLO option '{other}'"),
                ))
            }
        }
    }
    Ok(Command::Hello {
        protocol,
        auth,
        name,
    })
}

fn parse_table_query(rest: &[&[u8]]) -> Result<TableQuery, Reply> {
    Ok(match subcommand(rest).as_str() {
        "" => TableQuery::All,
        "count" => TableQuery::Count,
        "docs" => TableQuery::Docs,
        "info" => TableQuery::Info(
            rest[1..]
                .iter()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect(),
        ),
        other => {
            return Err(Reply::error(
                "ERR",
                format!("unknown subcommand 'command {other}'"),
            ))
        }
    })
}

fn parse_client(rest: &[&[u8]]) -> Result<ClientCommand, Reply> {
    Ok(match (subcommand(rest).as_str(), &rest[1..]) {
        ("setname", [name]) => {
            let name = text(name)?;
            if name.bytes().any(|b| !(b'!'..=b'~').contains(&b)) {
                return Err(Reply::error(
                    "ERR",
                    "Client names cannot contain spaces, newlines or special characters.",
                ));
            }
            ClientCommand::SetName(name)
        }
        ("getname", []) => ClientCommand::GetName,
        ("id", []) => ClientCommand::Id,
        ("setinfo", [_, _]) => ClientCommand::SetInfo,
        ("info", []) => ClientCommand::Info,
        (other, _) => {
            return Err(Reply::error(
                "ERR",
                format!("unknown subcommand or wrong number of arguments for 'client {other}'"),
            ))
        }
    })
}

fn parse_set(rest: &[&[u8]]) -> Result<Command, Reply> {
    let [key, value, options @ ..] = rest else {
        return Err(arity_error("set"));
    };
    if let Some(option) = options.first() {
        let option = String::from_utf8_lossy(option).to_ascii_uppercase();
        let why = match option.as_str() {
            "EX" | "PX" | "EXAT" | "PXAT" | "KEEPTTL" => "dida keys do not expire",
            "NX" | "XX" => "a conditional SET is not implemented yet; DIDA.CAS swaps a value",
            "GET" => "SET … GET is not implemented; GET then DIDA.CAS instead",
            _ => return Err(Reply::error("ERR", "syntax error")),
        };
        return Err(Reply::error(
            "ERR",
            format!("SET … {option} is not supported by dida: {why}"),
        ));
    }
    Ok(Command::Set {
        key: text(key)?,
        value: text(value)?,
        versioned: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> Result<Command, Reply> {
        let words: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        parse(&words)
    }

    fn error_of(line: &str) -> String {
        match parsed(line) {
            Err(Reply::Error(message)) => message,
            other => panic!("{line:?} should be refused: {other:?}"),
        }
    }

    #[test]
    fn parses_the_commands_clients_send() {
        assert_eq!(parsed("get k"), Ok(Command::Get("k".into())));
        assert_eq!(
            parsed("SET k v"),
            Ok(Command::Set {
                key: "k".into(),
                value: "v".into(),
                versioned: false,
            })
        );
        assert_eq!(
            parsed("mget a b"),
            Ok(Command::MGet(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            parsed("DIDA.GET k 3.1"),
            Ok(Command::GetVersioned {
                key: "k".into(),
                version: Some(Version {
                    number: 3,
                    replica: 1
                })
            })
        );
        assert_eq!(
            parsed("HELLO 3 AUTH default secret SETNAME me"),
            Ok(Command::Hello {
                protocol: Some(3),
                auth: Some(Credentials {
                    user: Some("default".into()),
                    password: b"secret".to_vec()
                }),
                name: Some("me".into()),
            })
        );
        assert_eq!(
            parsed("CONFIG GET Save appendonly"),
            Ok(Command::ConfigGet(vec!["save".into(), "appendonly".into()]))
        );
        assert_eq!(
            parsed("client setinfo lib-name redis-py"),
            Ok(Command::Client(ClientCommand::SetInfo))
        );
    }

    #[test]
    fn refuses_with_the_reason() {
        assert!(error_of("get").contains("wrong number of arguments for 'get'"));
        assert!(error_of("get a b").contains("wrong number of arguments"));
        assert!(error_of("dida.cas k v").contains("wrong number of arguments"));
        assert!(error_of("nosuch a").starts_with("ERR unknown command 'nosuch'"));
        assert!(error_of("FLUSHALL").contains("no command that drops data"));
        assert!(error_of("keys *").contains("dida kv list"));
        assert!(error_of("set k v EX 10").contains("do not expire"));
        assert!(error_of("set k v NX").contains("not implemented yet"));
        assert!(error_of("set k v BOGUS").contains("syntax error"));
        assert!(error_of("dida.get k nonsense").starts_with("ERR"));
        assert!(error_of("hello x").starts_with("NOPROTO"));
        assert!(error_of("client kill").contains("client kill"));
        let not_utf8: [&[u8]; 2] = [b"get", &[0xff, 0xfe]];
        assert!(matches!(parse(&not_utf8), Err(Reply::Error(m)) if m.contains("UTF-8")));
    }

    #[test]
    fn the_table_lists_every_command_with_its_arity() {
        let Reply::Array(rows) = table(&TableQuery::All) else {
            panic!("an array")
        };
        assert_eq!(rows.len(), TABLE.len());
        assert_eq!(
            table(&TableQuery::Count),
            Reply::Integer(TABLE.len() as i64)
        );
        assert_eq!(
            table(&TableQuery::Info(vec!["nosuch".into()])),
            Reply::Array(vec![Reply::Null])
        );
    }
}
