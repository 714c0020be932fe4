//! `--config FILE`: a subcommand's settings from a TOML file, as well as from flags
//! and `DIDA_…` environment variables.
//!
//! A file's keys are the long flags of the subcommand it is given to, without the
//! dashes (`replication-factor = 3`; `replication_factor` is read the same), its
//! values TOML strings, integers, booleans (for switches such as `insecure`) or
//! arrays of strings (for lists such as `peers`, joined with commas). A setting is
//! taken from, in order: the command line, its environment variable, the file,
//! its default. The file is applied by making its values the flags' defaults
//! before clap parses, so that order is clap's own and every value goes through
//! the same parser as the flag; a key no flag has, or a value of the wrong type,
//! is refused before anything runs, with one line that names the file and the
//! setting (exit status 2).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::builder::Resettable;
use clap::{Arg, ArgAction, Command, Id};

use crate::exit::UsageError;

/// The environment variable of `--config`.
pub const CONFIG_ENV: &str = "DIDA_CONFIG";

/// The `--config` flag, taken by every subcommand that runs a node or talks to a
/// cluster.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// Read settings from this TOML file: its keys are this command's long flags
    /// (`replication-factor = 3`, `peers = ["s1=http://…", …]`, `insecure =
    /// true`). A flag on the command line beats its DIDA_… variable, which beats
    /// the file, which beats the default. An unknown key or a value of the wrong
    /// type is refused.
    #[arg(long, env = CONFIG_ENV, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl ConfigArgs {
    /// The settings file, if one was given.
    pub fn file(&self) -> Option<&Path> {
        self.config.as_deref()
    }
}

/// `command` with the settings of the file `args` (the process's arguments, the
/// binary first) or `DIDA_CONFIG` name made the defaults of the flags of the
/// subcommand being run. Without a file, `command` is returned as it is.
pub fn apply(command: Command, args: &[OsString]) -> Result<Command, UsageError> {
    let Some(name) = subcommand_name(&command, args) else {
        return Ok(command);
    };
    let Some(sub) = command
        .find_subcommand(&name)
        .filter(|sub| sub.get_arguments().any(|arg| arg.get_id() == "config"))
    else {
        return Ok(command);
    };
    let Some(path) = config_path(args) else {
        return Ok(command);
    };
    let settings = read(&path)?;
    let mut defaults = Vec::new();
    for (key, value) in &settings {
        let flag = key.replace('_', "-");
        let arg = sub
            .get_arguments()
            .find(|arg| arg.get_long() == Some(flag.as_str()) && flag != "config")
            .ok_or_else(|| {
                refused(
                    &path,
                    format!(
                        "unknown setting `{key}` for `dida {name}` (the settings are its \
                         long flags, as `replication-factor`; see `dida {name} --help`)"
                    ),
                )
            })?;
        let text = as_text(arg, value).map_err(|why| refused(&path, format!("`{key}` {why}")))?;
        check_value(arg, &text)
            .map_err(|why| refused(&path, format!("`{key}` = {value}: {why}")))?;
        defaults.push((arg.get_id().clone(), text));
    }
    Ok(command.mut_subcommand(&name, |mut sub| {
        for (id, text) in defaults {
            // A required flag the file gives is no longer required on the command
            // line; a flag given on the command line still overrides it.
            sub = sub.mut_arg(id, |arg| {
                arg.default_value(text)
                    .required(false)
                    .required_unless_present(NONE)
            });
        }
        sub
    }))
}

/// The name of the subcommand `args` runs: the first argument that is not an
/// option (skipping the value of the hidden top-level `--log-format`).
fn subcommand_name(command: &Command, args: &[OsString]) -> Option<String> {
    let mut rest = args.iter().skip(1).filter_map(|arg| arg.to_str());
    while let Some(arg) = rest.next() {
        if arg == "--log-format" {
            rest.next();
        } else if !arg.starts_with('-') {
            let sub = command.find_subcommand(arg)?;
            return Some(sub.get_name().to_string());
        }
    }
    None
}

/// The file `--config FILE` or `--config=FILE` names among `args`, else
/// `DIDA_CONFIG`.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--config" {
            return rest.next().map(PathBuf::from);
        }
        if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(CONFIG_ENV)
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
}

/// The file's settings: a TOML table of one level.
fn read(path: &Path) -> Result<toml::Table, UsageError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| refused(path, format!("cannot read it: {e}")))?;
    text.parse::<toml::Table>().map_err(|e| {
        let line = e
            .span()
            .map(|span| text[..span.start].lines().count().max(1));
        let place = line.map(|l| format!("line {l}: ")).unwrap_or_default();
        refused(
            path,
            format!("{place}not valid TOML: {}", e.message().trim()),
        )
    })
}

/// `value` written as the flag `arg` takes it on the command line, or why it
/// cannot be.
fn as_text(arg: &Arg, value: &toml::Value) -> Result<String, String> {
    let switch = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
    match value {
        toml::Value::Boolean(b) if switch => Ok(b.to_string()),
        _ if switch => Err(format!("must be true or false, not {}", describe(value))),
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                toml::Value::String(s) => Ok(s.as_str()),
                other => Err(format!(
                    "must be a list of strings, but holds {}",
                    describe(other)
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|items| items.join(",")),
        other => Err(format!(
            "must be a string or an integer, not {}",
            describe(other)
        )),
    }
}

/// What kind of TOML value `value` is, for an error.
fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("the string {s:?}"),
        toml::Value::Integer(i) => format!("the integer {i}"),
        toml::Value::Float(f) => format!("the float {f}"),
        toml::Value::Boolean(b) => format!("the boolean {b}"),
        toml::Value::Datetime(d) => format!("the date {d}"),
        toml::Value::Array(_) => "a list".to_string(),
        toml::Value::Table(_) => "a table".to_string(),
    }
}

/// What empties a list of other flags of a clap [`Arg`] (its `requires`, …).
const NONE: Resettable<Id> = Resettable::Reset;

/// Runs `text` through the flag's own parser and possible values, so a file's
/// value is held to the same form and bounds as the flag's: a command holding
/// the flag alone (its ties to other flags and its variable removed) parses
/// `--flag=text`.
fn check_value(arg: &Arg, text: &str) -> Result<(), String> {
    let Some(long) = arg.get_long() else {
        return Ok(());
    };
    let alone = arg
        .clone()
        .required(false)
        .required_unless_present(NONE)
        .requires(NONE)
        .conflicts_with(NONE)
        .env(Resettable::<clap::builder::OsStr>::Reset)
        .global(false);
    Command::new("dida")
        .no_binary_name(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(alone)
        .try_get_matches_from([OsString::from(format!("--{long}={text}"))])
        .map(|_| ())
        .map_err(|e| {
            let rendered = e.to_string();
            let first = rendered.lines().next().unwrap_or_default();
            first.trim_start_matches("error: ").to_string()
        })
}

fn refused(path: &Path, why: String) -> UsageError {
    UsageError(format!("settings file {}: {why}", path.display()))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    /// Parses `dida storage --config FILE extra…` with `text` as the file.
    fn storage(text: &str, extra: &[&str]) -> Result<dida_settings::StorageSettings, String> {
        let file = file(text);
        let path = file.path().to_str().unwrap().to_string();
        let mut argv = vec!["dida", "storage", "--config", &path];
        argv.extend(extra);
        let argv = args(&argv);
        let command = apply(crate::Cli::command(), &argv).map_err(|e| e.to_string())?;
        let matches = command
            .mut_args(|arg| arg.env(None))
            .mut_subcommand("storage", |sub| sub.mut_args(|arg| arg.env(None)))
            .try_get_matches_from(argv)
            .map_err(|e| e.to_string())?;
        use clap::FromArgMatches;
        match crate::Cli::from_arg_matches(&matches)
            .map_err(|e| e.to_string())?
            .command
        {
            crate::Command::Storage(c) => Ok(c.args),
            other => panic!("{other:?}"),
        }
    }

    const NODE: &str = r#"
        id = "s1"
        url = "http://dida-storage-0.dida:7001"
        listen = "0.0.0.0:7001"
        peers = ["s1=http://dida-storage-0.dida:7001", "s2=http://dida-storage-1.dida:7001"]
        replication_factor = 2
        write-acks = 2
    "#;

    #[test]
    fn a_file_gives_every_setting_and_the_command_line_overrides_it() {
        let settings = storage(NODE, &[]).unwrap();
        assert_eq!(settings.id, "s1");
        assert_eq!(settings.listen.as_deref(), Some("0.0.0.0:7001"));
        assert_eq!(settings.replication_factor, Some(2));
        assert_eq!(settings.write_acks, 2);
        assert_eq!(
            settings.peers.as_deref(),
            Some("s1=http://dida-storage-0.dida:7001,s2=http://dida-storage-1.dida:7001")
        );
        let settings = storage(NODE, &["--write-acks", "1", "--id=s2"]).unwrap();
        assert_eq!((settings.write_acks, settings.id.as_str()), (1, "s2"));
    }

    #[test]
    fn unknown_keys_wrong_types_and_bad_values_are_refused_naming_file_and_setting() {
        for (text, expected) in [
            (
                "id = \"s1\"\nreplicas = 3",
                "unknown setting `replicas` for `dida storage`",
            ),
            (
                "vnodes = \"many\"",
                "`vnodes` = \"many\": --vnodes must be from 1 to 4096",
            ),
            (
                "vnodes = 1.5",
                "`vnodes` must be a string or an integer, not the float 1.5",
            ),
            (
                "insecure = \"yes\"",
                "`insecure` must be true or false, not the string \"yes\"",
            ),
            (
                "peers = [1, 2]",
                "`peers` must be a list of strings, but holds the integer 1",
            ),
            (
                "fsync = \"sometimes\"",
                "`fsync` = \"sometimes\": invalid value 'sometimes'",
            ),
            (
                "max-versions = 0",
                "`max-versions` = 0: --max-versions must be from 1",
            ),
            ("id = ", "line 1: not valid TOML"),
        ] {
            let refused = storage(text, &[]).unwrap_err();
            assert!(refused.starts_with("settings file /"), "{refused}");
            assert!(refused.contains(expected), "{text:?}: {refused}");
            assert_eq!(refused.lines().count(), 1, "{refused}");
        }
    }

    /// Every flag of every subcommand that takes a file can be checked alone
    /// (none is tied to another in a way the check cannot undo).
    #[test]
    fn every_flag_can_be_checked_alone() {
        let mut command = crate::Cli::command();
        command.build();
        for sub in command.get_subcommands() {
            if !sub.get_arguments().any(|arg| arg.get_id() == "config") {
                continue;
            }
            for arg in sub.get_arguments() {
                if matches!(arg.get_action(), ArgAction::Help | ArgAction::Version) {
                    continue;
                }
                let switch = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
                let _ = check_value(arg, if switch { "true" } else { "1" });
            }
        }
    }

    #[test]
    fn a_missing_file_is_refused_and_no_file_changes_nothing() {
        let argv = args(&["dida", "storage", "--config", "/nonexistent/dida.toml"]);
        let refused = apply(crate::Cli::command(), &argv).unwrap_err().to_string();
        assert!(
            refused.contains("/nonexistent/dida.toml: cannot read it"),
            "{refused}"
        );
        let argv = args(&["dida", "--log-format", "json", "certs", "--out", "x"]);
        assert!(
            apply(crate::Cli::command(), &argv).is_ok(),
            "certs takes no --config"
        );
    }
}
