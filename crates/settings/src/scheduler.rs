//! The settings of the scheduler (`dida scheduler`).

use std::net::SocketAddr;

use clap::Args;
use dida_core::limits::{replication_factor, DEFAULT_RETAINED_BYTES};
use dida_core::script::Role;
use dida_core::Membership;

use crate::command_line::Flags;
use crate::values;
use crate::{Flag, RoleSettings, SettingsError};

const MIB: usize = 1024 * 1024;

/// The default of `--worker-lease-ms`: a worker that falls silent stops getting
/// work within 3 s, and renewing every second (a third of it) costs one small call
/// per worker per second.
pub const DEFAULT_WORKER_LEASE_MS: u64 = 3000;

/// The shortest `--worker-lease-ms`: workers renew every third of it, so a shorter
/// lease would have each of them call the scheduler more than 30 times a second.
pub const MIN_WORKER_LEASE_MS: u64 = 100;

/// Flags of `dida scheduler`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct SchedulerSettings {
    /// The scheduler's id.
    #[arg(long, env = "DIDA_SCHEDULER_ID", default_value = "scheduler", value_parser = values::node_id())]
    pub id: String,
    /// Where the scheduler serves, for example http://127.0.0.1:3000.
    #[arg(long, env = "DIDA_SCHEDULER_URL", value_parser = values::node_url())]
    pub url: String,
    /// The address to bind, HOST:PORT (default: the host and port of --url). Give
    /// it when peers reach this node by a name or address it cannot bind itself
    /// (a container, a pod, NAT): `--listen 0.0.0.0:3000 --url http://NAME:3000`.
    /// Its port must be --url's.
    #[arg(long, env = "DIDA_SCHEDULER_LISTEN", value_parser = values::listen_addr(),
          value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Static workers: ID=URL,ID=URL,… They are members for as long as the
    /// scheduler runs. Optional: workers started with --scheduler pointing here
    /// register themselves and hold a lease (--worker-lease-ms).
    #[arg(long, env = "DIDA_SCHEDULER_WORKERS", value_parser = values::membership())]
    pub workers: Option<String>,
    /// Milliseconds a worker's registration holds without renewal (100 to 3600000):
    /// a worker silent for that long gets no more work. Workers renew every third
    /// of it.
    #[arg(long, env = "DIDA_SCHEDULER_WORKER_LEASE_MS", default_value_t = DEFAULT_WORKER_LEASE_MS,
          value_parser = values::deadline_ms())]
    pub worker_lease_ms: u64,
    /// Seconds after which an execution with no outcome is failed (1 to 3600).
    #[arg(long, env = "DIDA_SCHEDULER_EXECUTION_TIMEOUT", default_value_t = 300,
          value_parser = values::deadline_s())]
    pub execution_timeout: u64,
    /// Deadline, in milliseconds, of every call to a worker (1 to 3600000).
    #[arg(long, env = "DIDA_SCHEDULER_RPC_DEADLINE", default_value_t = 5000,
          value_parser = values::deadline_ms())]
    pub rpc_deadline: u64,
    /// Every storage node, ID=URL,…: the scheduler then follows which of them
    /// crashed and shows it in its status (it does not otherwise use storage).
    #[arg(long, env = "DIDA_SCHEDULER_STORAGE", value_parser = values::membership())]
    pub storage: Option<String>,
    /// The storage cluster's replication factor (with --storage; default 3, or the
    /// number of storage nodes if fewer).
    #[arg(long, env = "DIDA_SCHEDULER_REPLICATION_FACTOR", requires = "storage",
          value_parser = values::positive::<usize>())]
    pub replication_factor: Option<usize>,
    /// MiB of outcomes (and of running executions' inputs) kept for clients to
    /// fetch (1 to 65536); beyond it the oldest outcomes are forgotten, and submits
    /// are refused while running executions hold it all. See docs/limits.md.
    #[arg(long, env = "DIDA_SCHEDULER_MAX_RETAINED_MB", default_value_t = DEFAULT_RETAINED_BYTES / MIB,
          value_parser = values::retained_mb())]
    pub max_retained_mb: usize,
    /// Serve the HTTP gateway (JSON: register and invoke applications, inspect
    /// executions and operators; see docs/http.md) on this address, for example
    /// 127.0.0.1:8080.
    #[arg(long, env = "DIDA_SCHEDULER_HTTP_LISTEN", value_parser = values::host_port())]
    pub http_listen: Option<String>,
    /// Serve Prometheus metrics (GET /metrics), liveness (GET /healthz) and
    /// readiness (GET /readyz) over HTTP at HOST:PORT (port 0 picks one). See
    /// docs/observability.md. Like every listener, it refuses an address other
    /// machines can reach unless the process has TLS or a cluster token, or
    /// --insecure.
    #[arg(long, env = "DIDA_SCHEDULER_METRICS_LISTEN", value_name = "HOST:PORT")]
    pub metrics_listen: Option<SocketAddr>,
    /// Keep the operators it compiles to validate a deploy in this directory, and
    /// validate a component found there (compiled before by this machine's `dida
    /// build` or workers) without compiling it again. `off` keeps none. Default, as
    /// for workers: `$XDG_CACHE_HOME/dida/compiled`, else `$HOME/.cache/dida/compiled`;
    /// it must be this user's own and writable by no one else.
    #[arg(long, env = "DIDA_SCHEDULER_COMPILE_CACHE", value_name = "DIR|off")]
    pub compile_cache: Option<String>,
}

impl SchedulerSettings {
    /// The directory of compiled operators (`--compile-cache`, or its default from
    /// the environment); `None` when it is `off` or no default can be found.
    pub fn compile_cache_dir(&self) -> Option<std::path::PathBuf> {
        crate::paths::compile_cache_dir(self.compile_cache.as_deref())
    }

    /// The settings of the scheduler `id` at `url` with the static workers
    /// `workers`, every other flag at its default (whatever this process's
    /// environment says).
    pub fn new(id: &str, url: &str, workers: &str) -> Result<Self, SettingsError> {
        Self::parse_without_env([
            format!("--id={id}"),
            format!("--url={url}"),
            format!("--workers={workers}"),
        ])
    }

    /// The bytes of `--max-retained-mb`.
    pub fn max_retained_bytes(&self) -> usize {
        self.max_retained_mb * MIB
    }

    /// The static workers (`--workers`), if any.
    pub fn worker_membership(&self) -> Result<Option<Membership>, SettingsError> {
        self.workers
            .as_deref()
            .map(Membership::parse)
            .transpose()
            .map_err(|e| SettingsError::Flag(format!("invalid --workers: {e}")))
    }

    /// The storage nodes the scheduler follows and their replication factor, if
    /// `--storage` is given.
    pub fn storage_membership(&self) -> Result<Option<(Membership, usize)>, SettingsError> {
        let Some(storage) = &self.storage else {
            return Ok(None);
        };
        let membership = Membership::parse(storage)
            .map_err(|e| SettingsError::Flag(format!("invalid --storage: {e}")))?;
        let factor = replication_factor(self.replication_factor, membership.len())
            .map_err(SettingsError::Inconsistent)?;
        Ok(Some((membership, factor)))
    }
}

impl RoleSettings for SchedulerSettings {
    const ROLE: Role = Role::Scheduler;

    fn flags(&self) -> Vec<Flag> {
        Flags::default()
            .value("id", &self.id)
            .value("url", &self.url)
            .optional("listen", self.listen.as_ref())
            .optional("workers", self.workers.as_ref())
            .value("worker-lease-ms", self.worker_lease_ms)
            .value("execution-timeout", self.execution_timeout)
            .value("rpc-deadline", self.rpc_deadline)
            .optional("storage", self.storage.as_ref())
            .optional("replication-factor", self.replication_factor)
            .value("max-retained-mb", self.max_retained_mb)
            .optional("http-listen", self.http_listen.as_ref())
            .optional("metrics-listen", self.metrics_listen)
            .optional("compile-cache", self.compile_cache.as_ref())
            .build()
    }

    fn check(&self) -> Result<(), SettingsError> {
        self.listen_addr()?;
        if self.worker_lease_ms < MIN_WORKER_LEASE_MS {
            return Err(SettingsError::Flag(format!(
                "--worker-lease-ms {} is too short: at least {MIN_WORKER_LEASE_MS} (workers \
                 renew every third of it)",
                self.worker_lease_ms
            )));
        }
        self.worker_membership()?;
        self.storage_membership().map(|_| ())
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn url(&self) -> &str {
        &self.url
    }

    fn listen(&self) -> Option<&str> {
        self.listen.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use dida_core::limits::{MAX_DEADLINE_MS, MAX_RETAINED_MB};

    use super::*;
    use crate::command_line::tests::{check_bounds, check_definition};

    const WORKERS: &str = "w1=http://127.0.0.1:4001";

    #[test]
    fn every_flag_is_written_back_and_has_its_variable() {
        let full = SchedulerSettings {
            id: "sched".into(),
            url: "http://127.0.0.1:3000".into(),
            listen: Some("0.0.0.0:3000".into()),
            workers: Some(WORKERS.into()),
            worker_lease_ms: 1500,
            execution_timeout: 60,
            rpc_deadline: 700,
            storage: Some("s1=http://127.0.0.1:7001,s2=http://127.0.0.1:7002".into()),
            replication_factor: Some(2),
            max_retained_mb: 10,
            http_listen: Some("127.0.0.1:8080".into()),
            metrics_listen: Some("127.0.0.1:13000".parse().unwrap()),
            compile_cache: Some("/var/cache/dida".into()),
        };
        check_definition(&[full]);
    }

    #[test]
    fn bounds_are_their_constants() {
        let base = SchedulerSettings::new("sched", "http://127.0.0.1:3000", WORKERS).unwrap();
        check_bounds(
            &base,
            &[
                ("execution-timeout", MAX_DEADLINE_MS / 1000),
                ("rpc-deadline", MAX_DEADLINE_MS),
                ("worker-lease-ms", MAX_DEADLINE_MS),
                ("max-retained-mb", MAX_RETAINED_MB as u64),
            ],
        );
        let refused = SchedulerSettings::parse_without_env([
            "--url=http://127.0.0.1:3000",
            "--workers=w1=http://127.0.0.1:4001",
            "--http-listen=0.0.0.0:80 --insecure",
        ])
        .unwrap_err();
        assert!(
            refused.to_string().contains("is not HOST:PORT"),
            "{refused}"
        );
    }

    #[test]
    fn workers_are_optional() {
        let alone = SchedulerSettings::parse_without_env(["--url=http://127.0.0.1:3000"]).unwrap();
        assert_eq!(alone.workers, None);
        assert_eq!(alone.worker_membership().unwrap(), None);
        assert_eq!(alone.worker_lease_ms, DEFAULT_WORKER_LEASE_MS);
        assert!(!alone.to_args().iter().any(|a| a.starts_with("--workers")));
        let mut short = alone.clone();
        short.worker_lease_ms = MIN_WORKER_LEASE_MS - 1;
        let refused = short.check().unwrap_err();
        assert!(
            refused.to_string().contains("--worker-lease-ms"),
            "{refused}"
        );
    }
}
