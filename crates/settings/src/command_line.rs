//! What every role's settings share: parsing a command line (the process's own, or
//! a remote request's) and writing one back, in the `--flag=value` form.

use std::ffi::OsString;
use std::fmt::Display;

use clap::{Args, FromArgMatches};
use dida_core::listen::{check_advertised, ListenAddr};
use dida_core::membership::NodeUrl;
use dida_core::script::Role;

use crate::SettingsError;

/// One flag of a command line: its name without `--`, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// The flag's long name, as on the command line without `--`.
    pub name: &'static str,
    /// Its value, as it is written after `=`.
    pub value: String,
}

impl Flag {
    /// The flag as one argument, `--name=value`: no value can then be read as
    /// another flag, whatever it starts with.
    pub fn to_arg(&self) -> String {
        format!("--{}={}", self.name, self.value)
    }
}

/// The settings of one node role: parsed with the role's one definition, checked
/// as a whole, written back as flags.
pub trait RoleSettings: Args + FromArgMatches + Sized {
    /// The role whose flags these are.
    const ROLE: Role;

    /// Every setting as a flag, in the order of the definition; a setting with no
    /// value (an optional flag not given) is left out. Parsing the result gives
    /// these settings back, so a command line built from them is complete: the
    /// environment of the process that runs it changes nothing it sets.
    fn flags(&self) -> Vec<Flag>;

    /// Checks the settings that depend on one another (`--write-acks` against the
    /// replication factor, the replication factor against the membership, `--url`
    /// against `--listen`), which no single flag's parser can.
    fn check(&self) -> Result<(), SettingsError>;

    /// The node's id.
    fn id(&self) -> &str;

    /// The node's URL, as given: where its peers and clients call it.
    fn url(&self) -> &str;

    /// `--listen`, as given: where the node binds, if not at its URL.
    fn listen(&self) -> Option<&str>;

    /// The address the node binds: `--listen`, or the host and port of `--url`.
    fn listen_addr(&self) -> Result<ListenAddr, SettingsError> {
        let url = NodeUrl::parse(self.url())
            .map_err(|e| SettingsError::Flag(format!("invalid --url: {e}")))?;
        match self.listen() {
            None => Ok(ListenAddr::of_url(&url)),
            Some(listen) => {
                let listen = ListenAddr::parse(listen)
                    .map_err(|e| SettingsError::Flag(format!("invalid --listen: {e}")))?;
                check_advertised(&listen, &url).map_err(SettingsError::Inconsistent)?;
                Ok(listen)
            }
        }
    }

    /// The role's flags as a clap command named `dida <role>`, taking no binary
    /// name (the arguments start with the first flag).
    fn command() -> clap::Command {
        Self::augment_args(clap::Command::new(Self::ROLE.as_str()).no_binary_name(true))
    }

    /// Parses `args` (the flags after `dida <role>`) as the role's process would,
    /// `DIDA_<ROLE>_<FLAG>` variables of this process's environment included, then
    /// [`check`](Self::check)s them.
    fn parse<I, T>(args: I) -> Result<Self, SettingsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        parse_with(Self::command(), args)
    }

    /// Parses `args` as [`parse`](Self::parse) does but ignoring the environment:
    /// what these flags mean wherever they are sent. The PuppetMaster fills a
    /// role's defaults this way, not from its own environment.
    fn parse_without_env<I, T>(args: I) -> Result<Self, SettingsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        parse_with(Self::command().mut_args(|arg| arg.env(None)), args)
    }

    /// These settings once every value has passed the flag's own parser and the
    /// whole has passed [`check`](Self::check): for settings filled in code (the
    /// PuppetMaster's, local-cluster's), whose fields skipped the parsers and their
    /// bounds, so that they are refused here exactly as the node would refuse them.
    fn validated(self) -> Result<Self, SettingsError> {
        Self::parse_without_env(self.flags().iter().map(Flag::to_arg))
    }

    /// The arguments after the binary that run this node: `<role> --flag=value …`.
    fn to_args(&self) -> Vec<String> {
        std::iter::once(Self::ROLE.as_str().to_string())
            .chain(self.flags().iter().map(Flag::to_arg))
            .collect()
    }
}

fn parse_with<S, I, T>(command: clap::Command, args: I) -> Result<S, SettingsError>
where
    S: RoleSettings,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command
        .try_get_matches_from(args)
        .map_err(|e| SettingsError::from_clap(&e))?;
    let settings = S::from_arg_matches(&matches).map_err(|e| SettingsError::from_clap(&e))?;
    settings.check()?;
    Ok(settings)
}

/// Builds the flags of [`RoleSettings::flags`], one setting at a time.
#[derive(Debug, Default)]
pub(crate) struct Flags(Vec<Flag>);

impl Flags {
    /// Adds `--name=value`.
    pub fn value(mut self, name: &'static str, value: impl Display) -> Self {
        self.0.push(Flag {
            name,
            value: value.to_string(),
        });
        self
    }

    /// Adds `--name=value` if there is a value.
    pub fn optional(self, name: &'static str, value: Option<impl Display>) -> Self {
        match value {
            Some(value) => self.value(name, value),
            None => self,
        }
    }

    /// The flags added.
    pub fn build(self) -> Vec<Flag> {
        self.0
    }
}

/// Checks shared by every role's tests: the definition and [`RoleSettings::flags`]
/// agree, and every flag has its environment variable.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `fulls` give every flag a value other than its default (flags that
    /// exclude each other in different settings): then every flag of the
    /// definition must be among the flags of one of them, parsing each one's flags
    /// must give it back, and every flag must read `DIDA_<ROLE>_<FLAG>`.
    pub fn check_definition<S: RoleSettings + PartialEq + std::fmt::Debug>(fulls: &[S]) {
        let flags: Vec<Flag> = fulls.iter().flat_map(|full| full.flags()).collect();
        let role = S::ROLE.as_str().to_uppercase();
        for arg in S::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            assert!(
                flags.iter().any(|f| f.name == long),
                "--{long} is not written by flags()"
            );
            let expected = format!("DIDA_{role}_{}", long.replace('-', "_").to_uppercase());
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(expected.as_str()),
                "--{long}"
            );
        }
        for full in fulls {
            let args = full.to_args();
            assert_eq!(args[0], S::ROLE.as_str());
            let parsed = S::parse_without_env(&args[1..]).unwrap();
            assert_eq!(&parsed, full);
        }
    }

    /// `base`'s flags with `--flag=value` in place of its own, parsed.
    pub fn parse_with<S: RoleSettings>(
        base: &S,
        flag: &str,
        value: u64,
    ) -> Result<S, SettingsError> {
        let mut args: Vec<String> = base
            .flags()
            .iter()
            .filter(|f| f.name != flag)
            .map(Flag::to_arg)
            .collect();
        args.push(format!("--{flag}={value}"));
        S::parse_without_env(args)
    }

    /// Each `(flag, bound)` of `cases` is the most `base`'s definition accepts: the
    /// bound parses, one more is refused as a flag error that names the flag.
    pub fn check_bounds<S: RoleSettings + std::fmt::Debug>(base: &S, cases: &[(&str, u64)]) {
        for &(flag, bound) in cases {
            assert!(parse_with(base, flag, bound).is_ok(), "--{flag}={bound}");
            match parse_with(base, flag, bound + 1) {
                Err(refused @ SettingsError::Flag(_)) => assert!(
                    refused.to_string().contains(&format!("--{flag}")),
                    "{refused}"
                ),
                other => panic!("--{flag}={} gave {other:?}", bound + 1),
            }
        }
    }
}
