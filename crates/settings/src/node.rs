//! The settings of a node of any role, for those that handle every role alike: the
//! PCS, which checks a start request by parsing it, and the processes it starts.

use std::ffi::OsString;

use dida_core::script::Role;

use crate::{
    Flag, RoleSettings, SchedulerSettings, SettingsError, StorageSettings, WorkerSettings,
};

/// The settings of one node, whichever its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeSettings {
    /// A storage node's.
    Storage(StorageSettings),
    /// A worker's.
    Worker(WorkerSettings),
    /// The scheduler's.
    Scheduler(SchedulerSettings),
}

impl NodeSettings {
    /// Parses `args` (the flags after `dida <role>`) with `role`'s definition, as
    /// its process would, and checks them (see [`RoleSettings::parse`]).
    pub fn parse<I, T>(role: Role, args: I) -> Result<Self, SettingsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Ok(match role {
            Role::Storage => Self::Storage(StorageSettings::parse(args)?),
            Role::Worker => Self::Worker(WorkerSettings::parse(args)?),
            Role::Scheduler => Self::Scheduler(SchedulerSettings::parse(args)?),
        })
    }

    /// The node's role.
    pub fn role(&self) -> Role {
        match self {
            Self::Storage(_) => Role::Storage,
            Self::Worker(_) => Role::Worker,
            Self::Scheduler(_) => Role::Scheduler,
        }
    }

    /// The node's id.
    pub fn id(&self) -> &str {
        match self {
            Self::Storage(s) => s.id(),
            Self::Worker(s) => s.id(),
            Self::Scheduler(s) => s.id(),
        }
    }

    /// The node's URL, as given.
    pub fn url(&self) -> &str {
        match self {
            Self::Storage(s) => s.url(),
            Self::Worker(s) => s.url(),
            Self::Scheduler(s) => s.url(),
        }
    }

    /// Every setting as a flag (see [`RoleSettings::flags`]).
    pub fn flags(&self) -> Vec<Flag> {
        match self {
            Self::Storage(s) => s.flags(),
            Self::Worker(s) => s.flags(),
            Self::Scheduler(s) => s.flags(),
        }
    }

    /// The arguments after the binary: `<role> --flag=value …`.
    pub fn to_args(&self) -> Vec<String> {
        match self {
            Self::Storage(s) => s.to_args(),
            Self::Worker(s) => s.to_args(),
            Self::Scheduler(s) => s.to_args(),
        }
    }
}

impl From<StorageSettings> for NodeSettings {
    fn from(settings: StorageSettings) -> Self {
        Self::Storage(settings)
    }
}

impl From<WorkerSettings> for NodeSettings {
    fn from(settings: WorkerSettings) -> Self {
        Self::Worker(settings)
    }
}

impl From<SchedulerSettings> for NodeSettings {
    fn from(settings: SchedulerSettings) -> Self {
        Self::Scheduler(settings)
    }
}
