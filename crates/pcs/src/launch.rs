//! What the PCS agrees to start: a start request is turned into a [`Launch`] only if
//! it names a `dida` role and every flag belongs to that role and has a valid value.
//!
//! Validation is by allowlist, per role and per flag, with a typed check of each
//! value; the command line is then built as `dida <role> --id=ID --url=URL
//! --flag=value …` (the `--flag=value` form means no value can ever be read as
//! another flag) and run without a shell. So a request can choose which node to run
//! and how to configure it, and nothing else.

use std::path::Path;

use dida_core::membership::{check_node_id, NodeUrl};
use dida_core::script::Role;
use dida_core::Membership;
use dida_proto::control::{Flag, StartNodeRequest};

/// Log levels a node may be started with (its `RUST_LOG`).
pub const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

/// How the value of a flag is checked.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A whole number from `min` to `max`.
    Number { min: u64, max: u64 },
    /// A membership list `ID=URL,…`.
    Membership,
    /// A node URL `http://HOST:PORT`.
    Url,
    /// An absolute path to an existing directory.
    Directory,
    /// A listening address `HOST:PORT`.
    HostPort,
}

const MS: Kind = Kind::Number {
    min: 0,
    max: 86_400_000,
};
const POSITIVE_MS: Kind = Kind::Number {
    min: 1,
    max: 86_400_000,
};
const SMALL: Kind = Kind::Number { min: 1, max: 1024 };

/// The flags each role accepts (names as on the command line, without `--`).
fn allowed(role: Role) -> &'static [(&'static str, Kind)] {
    match role {
        Role::Storage => &[
            ("metrics-listen", Kind::HostPort),
            ("gossip-delay", MS),
            ("peers", Kind::Membership),
            ("replication-factor", SMALL),
            ("max-versions", SMALL),
            ("write-acks", SMALL),
            ("vnodes", Kind::Number { min: 1, max: 4096 }),
            ("anti-entropy-interval", POSITIVE_MS),
            ("rpc-deadline", POSITIVE_MS),
            ("ack-timeout", POSITIVE_MS),
            ("probe-interval", POSITIVE_MS),
            ("probe-timeout", POSITIVE_MS),
            ("suspicion-timeout", POSITIVE_MS),
        ],
        Role::Worker => &[
            ("metrics-listen", Kind::HostPort),
            ("gossip-delay", MS),
            ("storage", Kind::Membership),
            ("scheduler", Kind::Url),
            ("operators", Kind::Directory),
            ("debug-sink", Kind::Url),
            ("replication-factor", SMALL),
            ("vnodes", Kind::Number { min: 1, max: 4096 }),
            (
                "max-fuel",
                Kind::Number {
                    min: 1,
                    max: u64::MAX,
                },
            ),
            (
                "max-memory-mb",
                Kind::Number {
                    min: 1,
                    max: 65_536,
                },
            ),
            ("max-wall-ms", POSITIVE_MS),
            (
                "concurrency",
                Kind::Number {
                    min: 1,
                    max: 65_536,
                },
            ),
            ("consistency-deadline", POSITIVE_MS),
            ("rpc-deadline", POSITIVE_MS),
        ],
        Role::Scheduler => &[
            ("metrics-listen", Kind::HostPort),
            ("workers", Kind::Membership),
            ("storage", Kind::Membership),
            ("replication-factor", SMALL),
            (
                "execution-timeout",
                Kind::Number {
                    min: 1,
                    max: 86_400,
                },
            ),
            ("rpc-deadline", POSITIVE_MS),
            ("http-listen", Kind::HostPort),
        ],
    }
}

/// A start request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The role to run.
    pub role: Role,
    /// The node's id.
    pub id: String,
    /// Where it will serve.
    pub url: NodeUrl,
    /// The arguments after the binary: `<role> --id=… --url=… --flag=value…`.
    pub args: Vec<String>,
    /// The node's `RUST_LOG`.
    pub log_level: String,
}

/// Why a start request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Refused(pub String);

impl Launch {
    /// Validates `request`; see the module documentation.
    pub fn from_request(request: &StartNodeRequest) -> Result<Self, Refused> {
        let role = Role::parse(&request.role).ok_or_else(|| {
            Refused(format!(
                "the PCS starts only dida roles (scheduler, storage, worker), not {:?}",
                request.role
            ))
        })?;
        check_node_id(&request.node_id).map_err(|e| Refused(e.to_string()))?;
        let url = NodeUrl::parse(&request.url).map_err(|e| Refused(e.to_string()))?;
        let log_level = match request.log_level.as_str() {
            "" => "warn".to_string(),
            level if LOG_LEVELS.contains(&level) => level.to_string(),
            other => {
                return Err(Refused(format!(
                    "log level {other:?} is not one of {}",
                    LOG_LEVELS.join(", ")
                )))
            }
        };
        let mut args = vec![
            role.as_str().to_string(),
            format!("--id={}", request.node_id),
            format!("--url={url}"),
        ];
        let mut seen: Vec<&str> = Vec::new();
        for Flag { name, value } in &request.flags {
            let Some((_, kind)) = allowed(role).iter().find(|(n, _)| n == name) else {
                return Err(Refused(format!(
                    "flag --{name} is not a flag the PCS passes to a {role} (allowed: {})",
                    allowed(role)
                        .iter()
                        .map(|(n, _)| format!("--{n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            if seen.contains(&name.as_str()) {
                return Err(Refused(format!("flag --{name} is given twice")));
            }
            seen.push(name);
            check_value(*kind, value).map_err(|why| Refused(format!("--{name}: {why}")))?;
            args.push(format!("--{name}={value}"));
        }
        Ok(Self {
            role,
            id: request.node_id.clone(),
            url,
            args,
            log_level,
        })
    }
}

fn check_value(kind: Kind, value: &str) -> Result<(), String> {
    match kind {
        Kind::Number { min, max } => match value.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(()),
            _ => Err(format!(
                "{value:?} is not a whole number from {min} to {max}"
            )),
        },
        Kind::Membership => Membership::parse(value)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Kind::Url => NodeUrl::parse(value).map(|_| ()).map_err(|e| e.to_string()),
        Kind::HostPort => NodeUrl::parse(&format!("http://{value}"))
            .map(|_| ())
            .map_err(|_| format!("{value:?} is not HOST:PORT")),
        Kind::Directory => {
            let path = Path::new(value);
            if !path.is_absolute() {
                Err(format!("{value:?} is not an absolute path"))
            } else if !path.is_dir() {
                Err(format!("{value:?} is not a directory on this machine"))
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(role: &str, flags: &[(&str, &str)]) -> StartNodeRequest {
        StartNodeRequest {
            role: role.into(),
            node_id: "s1".into(),
            url: "http://127.0.0.1:7001".into(),
            flags: flags
                .iter()
                .map(|(n, v)| Flag {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            log_level: String::new(),
        }
    }

    #[test]
    fn builds_the_command_line_of_a_valid_request() {
        let launch = Launch::from_request(&request(
            "storage",
            &[
                ("gossip-delay", "100"),
                ("peers", "s1=http://127.0.0.1:7001"),
            ],
        ))
        .unwrap();
        assert_eq!(launch.role, Role::Storage);
        assert_eq!(launch.log_level, "warn");
        assert_eq!(
            launch.args,
            [
                "storage",
                "--id=s1",
                "--url=http://127.0.0.1:7001",
                "--gossip-delay=100",
                "--peers=s1=http://127.0.0.1:7001"
            ]
        );
    }

    #[test]
    fn the_scheduler_may_serve_its_http_gateway() {
        let launch =
            Launch::from_request(&request("scheduler", &[("http-listen", "127.0.0.1:8080")]))
                .unwrap();
        assert!(
            launch
                .args
                .contains(&"--http-listen=127.0.0.1:8080".to_string()),
            "{:?}",
            launch.args
        );
    }

    #[test]
    fn refuses_anything_but_a_dida_role() {
        for role in [
            "sh",
            "bash",
            "/bin/sh",
            "kv",
            "bench",
            "pcs",
            "puppetmaster",
            "",
        ] {
            let refused = Launch::from_request(&request(role, &[])).unwrap_err();
            assert!(refused.0.contains("only dida roles"), "{role}: {refused}");
        }
    }

    #[test]
    fn refuses_foreign_flags_and_bad_values() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                "storage",
                &[("operators", "/tmp")],
                "not a flag the PCS passes",
            ),
            ("storage", &[("exec", "sh")], "not a flag the PCS passes"),
            ("scheduler", &[("gossip-delay", "1")], "not a flag"),
            ("storage", &[("gossip-delay", "-1")], "not a whole number"),
            (
                "storage",
                &[("gossip-delay", "1; rm -rf /")],
                "not a whole number",
            ),
            ("storage", &[("replication-factor", "0")], "from 1 to 1024"),
            ("storage", &[("peers", "--help")], "not of the form"),
            ("worker", &[("scheduler", "ftp://x:1")], "http://"),
            (
                "scheduler",
                &[("http-listen", "0.0.0.0:80 --insecure")],
                "is not HOST:PORT",
            ),
            (
                "worker",
                &[("operators", "relative/dir")],
                "not an absolute path",
            ),
            (
                "worker",
                &[("operators", "/nonexistent/dida")],
                "not a directory",
            ),
            (
                "storage",
                &[("gossip-delay", "1"), ("gossip-delay", "2")],
                "given twice",
            ),
        ];
        for (role, flags, expected) in cases {
            let refused = Launch::from_request(&request(role, flags)).unwrap_err();
            assert!(refused.0.contains(expected), "{flags:?}: {refused}");
        }
        let mut bad_id = request("storage", &[]);
        bad_id.node_id = "../x y".into();
        assert!(Launch::from_request(&bad_id).is_err());
        let mut bad_url = request("storage", &[]);
        bad_url.url = "127.0.0.1:1".into();
        assert!(Launch::from_request(&bad_url).is_err());
        let mut bad_level = request("storage", &[]);
        bad_level.log_level = "info,evil=trace".into();
        assert!(Launch::from_request(&bad_level).is_err());
    }
}
