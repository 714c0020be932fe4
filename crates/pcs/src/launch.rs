//! What the PCS agrees to start: a start request is turned into a [`Launch`] only if
//! it names a `dida` role, every flag is one remote callers may set for that role,
//! and the role's own settings definition (`dida_settings`, the one `dida <role>`
//! parses at start-up) accepts the command line.
//!
//! So the PCS holds no bounds of its own: a value the node would refuse at start-up
//! is refused here, with the node's message. What it keeps is a list, per role, of
//! the flags a remote caller may set (not `--data-dir`, `--fsync` or `--dial`, which
//! name this machine's files and addresses). The command line is then written from
//! the parsed settings as `dida <role> --flag=value …` (the `--flag=value` form
//! means no value can ever be read as another flag) and run without a shell. So a
//! request can choose which node to run and how to configure it, and nothing else.

use std::path::Path;

use dida_core::membership::NodeUrl;
use dida_core::script::Role;
use dida_proto::control::{Flag, StartNodeRequest};
use dida_settings::NodeSettings;

/// Log levels a node may be started with (its `RUST_LOG`).
pub const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

/// The flags of each role a remote caller may set (names as on the command line,
/// without `--`); `--id` and `--url` come from the request's own fields.
fn remote_flags(role: Role) -> &'static [&'static str] {
    match role {
        Role::Storage => &[
            "metrics-listen",
            "resp-listen",
            "gossip-delay",
            "peers",
            "join",
            "cluster-id",
            "replication-factor",
            "max-versions",
            "write-acks",
            "vnodes",
            "anti-entropy-interval",
            "rpc-deadline",
            "ack-timeout",
            "probe-interval",
            "probe-fanout",
            "probe-timeout",
            "suspicion-timeout",
        ],
        Role::Worker => &[
            "metrics-listen",
            "gossip-delay",
            "storage",
            "scheduler",
            "drain-timeout",
            "operators",
            "debug-sink",
            "replication-factor",
            "vnodes",
            "max-fuel",
            "max-memory-mb",
            "max-wall-ms",
            "concurrency",
            "consistency-deadline",
            "rpc-deadline",
        ],
        Role::Scheduler => &[
            "metrics-listen",
            "workers",
            "worker-lease-ms",
            "storage",
            "replication-factor",
            "execution-timeout",
            "rpc-deadline",
            "max-retained-mb",
            "http-listen",
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
    /// The arguments after the binary: `<role> --id=… --url=… --flag=value…`,
    /// written from the parsed settings.
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
            format!("--id={}", request.node_id),
            format!("--url={}", request.url),
        ];
        let mut seen: Vec<&str> = Vec::new();
        for Flag { name, value } in &request.flags {
            if !remote_flags(role).contains(&name.as_str()) {
                return Err(Refused(format!(
                    "flag --{name} is not a flag the PCS passes to a {role} (allowed: {})",
                    remote_flags(role)
                        .iter()
                        .map(|n| format!("--{n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            if seen.contains(&name.as_str()) {
                return Err(Refused(format!("flag --{name} is given twice")));
            }
            seen.push(name);
            args.push(format!("--{name}={value}"));
        }
        let settings = NodeSettings::parse(role, args).map_err(|e| Refused(e.to_string()))?;
        if let NodeSettings::Worker(worker) = &settings {
            if let Some(dir) = &worker.operators {
                check_directory(dir).map_err(|why| Refused(format!("--operators: {why}")))?;
            }
        }
        let url = NodeUrl::parse(settings.url()).map_err(|e| Refused(e.to_string()))?;
        Ok(Self {
            role,
            id: settings.id().to_string(),
            url,
            args: settings.to_args(),
            log_level,
        })
    }
}

/// A worker's `--operators` must name a directory of this machine by an absolute
/// path: a relative one would depend on where the PCS was started.
fn check_directory(path: &Path) -> Result<(), String> {
    if !path.is_absolute() {
        Err(format!("{} is not an absolute path", path.display()))
    } else if !path.is_dir() {
        Err(format!(
            "{} is not a directory on this machine",
            path.display()
        ))
    } else {
        Ok(())
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

    const PEERS: &str = "s1=http://127.0.0.1:7001";

    #[test]
    fn builds_the_command_line_of_a_valid_request() {
        let launch = Launch::from_request(&request(
            "storage",
            &[("gossip-delay", "100"), ("peers", PEERS)],
        ))
        .unwrap();
        assert_eq!(launch.role, Role::Storage);
        assert_eq!(launch.log_level, "warn");
        assert_eq!(
            launch.args[..3],
            ["storage", "--id=s1", "--url=http://127.0.0.1:7001"]
        );
        for expected in ["--gossip-delay=100", "--peers=s1=http://127.0.0.1:7001"] {
            assert!(
                launch.args.contains(&expected.to_string()),
                "{:?}",
                launch.args
            );
        }
        // The whole command line is written from the settings, in --flag=value form.
        assert!(launch.args[1..]
            .iter()
            .all(|a| a.starts_with("--") && a.contains('=')));
    }

    #[test]
    fn a_storage_node_may_join_a_running_cluster_instead_of_starting_one() {
        let seeds = "http://127.0.0.1:7002,http://127.0.0.1:7003";
        let launch = Launch::from_request(&request("storage", &[("join", seeds)])).unwrap();
        assert!(
            launch.args.contains(&format!("--join={seeds}")),
            "{:?}",
            launch.args
        );
        let both = Launch::from_request(&request("storage", &[("join", seeds), ("peers", PEERS)]))
            .unwrap_err();
        assert!(both.0.contains("cannot be used with"), "{both}");
        let bad =
            Launch::from_request(&request("storage", &[("join", "127.0.0.1:7002")])).unwrap_err();
        assert!(bad.0.contains("http://"), "{bad}");
    }

    #[test]
    fn the_scheduler_may_serve_its_http_gateway() {
        let launch = Launch::from_request(&request(
            "scheduler",
            &[
                ("workers", "w1=http://127.0.0.1:4001"),
                ("http-listen", "127.0.0.1:8080"),
            ],
        ))
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
    fn the_bounds_are_the_nodes_own() {
        use dida_core::limits::{MAX_DEADLINE_MS, MAX_GOSSIP_DELAY_MS, MAX_VERSIONS, MAX_VNODES};
        for (flag, bound) in [
            ("rpc-deadline", MAX_DEADLINE_MS),
            ("suspicion-timeout", MAX_DEADLINE_MS),
            ("gossip-delay", MAX_GOSSIP_DELAY_MS),
            ("vnodes", u64::from(MAX_VNODES)),
            ("max-versions", MAX_VERSIONS as u64),
        ] {
            let with = |value: u64| {
                Launch::from_request(&request(
                    "storage",
                    &[("peers", PEERS), (flag, &value.to_string())],
                ))
            };
            assert!(with(bound).is_ok(), "--{flag}={bound}");
            let refused = with(bound + 1).unwrap_err();
            assert!(refused.0.contains(&format!("--{flag}")), "{refused}");
        }
        let refused = Launch::from_request(&request(
            "storage",
            &[("peers", PEERS), ("write-acks", "2")],
        ))
        .unwrap_err();
        assert!(
            refused.0.contains("--write-acks must be from 1"),
            "{refused}"
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
            (
                "storage",
                &[("peers", PEERS), ("gossip-delay", "-1")],
                "--gossip-delay",
            ),
            (
                "storage",
                &[("peers", PEERS), ("gossip-delay", "1; rm -rf /")],
                "--gossip-delay",
            ),
            (
                "storage",
                &[("peers", PEERS), ("replication-factor", "0")],
                "--replication-factor",
            ),
            ("storage", &[("peers", "--help")], "not of the form"),
            ("storage", &[], "--peers"),
            (
                "worker",
                &[("storage", PEERS), ("scheduler", "ftp://x:1")],
                "http://",
            ),
            (
                "scheduler",
                &[("workers", PEERS), ("http-listen", "0.0.0.0:80 --insecure")],
                "is not HOST:PORT",
            ),
            (
                "worker",
                &[
                    ("storage", PEERS),
                    ("scheduler", "http://127.0.0.1:3000"),
                    ("operators", "relative/dir"),
                ],
                "not an absolute path",
            ),
            (
                "worker",
                &[
                    ("storage", PEERS),
                    ("scheduler", "http://127.0.0.1:3000"),
                    ("operators", "/nonexistent/dida"),
                ],
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
        let mut bad_id = request("storage", &[("peers", PEERS)]);
        bad_id.node_id = "../x y".into();
        assert!(Launch::from_request(&bad_id).is_err());
        let mut bad_url = request("storage", &[("peers", PEERS)]);
        bad_url.url = "127.0.0.1:1".into();
        assert!(Launch::from_request(&bad_url).is_err());
        let mut bad_level = request("storage", &[("peers", PEERS)]);
        bad_level.log_level = "info,evil=trace".into();
        assert!(Launch::from_request(&bad_level).is_err());
    }
}
