//! The settings of a worker (`dida worker`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use dida_core::limits::{replication_factor, DEFAULT_OPERATOR_FUEL};
use dida_core::script::Role;
use dida_core::Membership;

use crate::command_line::Flags;
use crate::storage::DEFAULT_VNODES;
use crate::values;
use crate::{Flag, RoleSettings, SettingsError};

/// Flags of `dida worker`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct WorkerSettings {
    /// This worker's id (for example w1).
    #[arg(long, env = "DIDA_WORKER_ID", value_parser = values::node_id())]
    pub id: String,
    /// Where this worker serves, for example http://127.0.0.1:4001.
    #[arg(long, env = "DIDA_WORKER_URL", value_parser = values::node_url())]
    pub url: String,
    /// The address to bind, HOST:PORT (default: the host and port of --url). Give
    /// it when peers reach this node by a name or address it cannot bind itself
    /// (a container, a pod, NAT): `--listen 0.0.0.0:4001 --url http://NAME:4001`.
    /// Its port must be --url's.
    #[arg(long, env = "DIDA_WORKER_LISTEN", value_parser = values::listen_addr(),
          value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Milliseconds the worker waits before forwarding a request to the next worker
    /// (0 to 600000).
    #[arg(long, env = "DIDA_WORKER_GOSSIP_DELAY", default_value_t = 0,
          value_parser = values::gossip_delay_ms())]
    pub gossip_delay: u64,
    /// Every storage node: ID=URL,ID=URL,…
    #[arg(long, env = "DIDA_WORKER_STORAGE", value_parser = values::membership())]
    pub storage: String,
    /// The scheduler's URL. The worker registers itself there and renews its lease
    /// for as long as it runs; on SIGTERM or Ctrl-C it leaves: it takes no new
    /// work, finishes what it runs, deregisters and exits.
    #[arg(long, env = "DIDA_WORKER_SCHEDULER", value_parser = values::node_url())]
    pub scheduler: String,
    /// Seconds a leaving worker waits at most for its running executions to finish
    /// before it exits anyway (1 to 3600).
    #[arg(long, env = "DIDA_WORKER_DRAIN_TIMEOUT", default_value_t = 300,
          value_parser = values::deadline_s())]
    pub drain_timeout: u64,
    /// A directory of <ClassName>.wasm operators; they take precedence over the
    /// built-in operators of the same name.
    #[arg(long, env = "DIDA_WORKER_OPERATORS")]
    pub operators: Option<PathBuf>,
    /// The storage cluster's replication factor (default 3, or the number of
    /// storage nodes if fewer).
    #[arg(long, env = "DIDA_WORKER_REPLICATION_FACTOR", value_parser = values::positive::<usize>())]
    pub replication_factor: Option<usize>,
    /// The storage cluster's virtual nodes per node (1 to 4096).
    #[arg(long, env = "DIDA_WORKER_VNODES", default_value_t = DEFAULT_VNODES,
          value_parser = values::vnodes())]
    pub vnodes: u32,
    /// CPU budget of one operator invocation, in fuel units (~1 per instruction).
    #[arg(long, env = "DIDA_WORKER_MAX_FUEL", default_value_t = DEFAULT_OPERATOR_FUEL,
          value_parser = values::positive::<u64>())]
    pub max_fuel: u64,
    /// Memory limit of one operator invocation, in MiB (1 to 4096, WebAssembly's
    /// largest 32-bit memory).
    #[arg(long, env = "DIDA_WORKER_MAX_MEMORY_MB", default_value_t = 64,
          value_parser = values::operator_memory_mb())]
    pub max_memory_mb: usize,
    /// Wall-time limit of one operator invocation, loading the operator included, in
    /// milliseconds (1 to 3600000).
    #[arg(long, env = "DIDA_WORKER_MAX_WALL_MS", default_value_t = 30_000,
          value_parser = values::deadline_ms())]
    pub max_wall_ms: u64,
    /// Operator invocations that may run at once (1 to 1024: each reserves a sandbox
    /// slot of --max-memory-mb).
    #[arg(long, env = "DIDA_WORKER_CONCURRENCY", default_value_t = 64,
          value_parser = values::operator_concurrency())]
    pub concurrency: u32,
    /// How long a read of a version this execution already read or wrote may wait for
    /// gossip to bring it to a replica, in milliseconds (1 to 3600000).
    #[arg(long, env = "DIDA_WORKER_CONSISTENCY_DEADLINE", default_value_t = 10_000,
          value_parser = values::deadline_ms())]
    pub consistency_deadline: u64,
    /// Deadline, in milliseconds, of every call to another node (1 to 3600000).
    #[arg(long, env = "DIDA_WORKER_RPC_DEADLINE", default_value_t = 5000,
          value_parser = values::deadline_ms())]
    pub rpc_deadline: u64,
    /// Debug mode: after each operator, send the records it wrote and the metadata
    /// to this PuppetMaster debug sink (http://HOST:PORT, usually port 10001).
    #[arg(long, env = "DIDA_WORKER_DEBUG_SINK", value_parser = values::node_url())]
    pub debug_sink: Option<String>,
    /// Serve Prometheus metrics (GET /metrics), liveness (GET /healthz) and
    /// readiness (GET /readyz) over HTTP at HOST:PORT (port 0 picks one). See
    /// docs/observability.md. Like every listener, it refuses an address other
    /// machines can reach unless the process has TLS or a cluster token, or
    /// --insecure.
    #[arg(long, env = "DIDA_WORKER_METRICS_LISTEN", value_name = "HOST:PORT")]
    pub metrics_listen: Option<SocketAddr>,
    /// Keep compiled operators in this directory, so each component is compiled
    /// once per machine, not once per start (a Python operator takes seconds to
    /// compile). `off` keeps none. Default: `$XDG_CACHE_HOME/dida/compiled`, else
    /// `$HOME/.cache/dida/compiled`. It must be this user's own and writable by no
    /// one else: whoever writes there runs code in the worker.
    #[arg(long, env = "DIDA_WORKER_COMPILE_CACHE", value_name = "DIR|off")]
    pub compile_cache: Option<String>,
}

impl WorkerSettings {
    /// The settings of worker `id` at `url`, using the storage nodes `storage` and
    /// the scheduler at `scheduler`, every other flag at its default (whatever this
    /// process's environment says).
    pub fn new(id: &str, url: &str, storage: &str, scheduler: &str) -> Result<Self, SettingsError> {
        Self::parse_without_env([
            format!("--id={id}"),
            format!("--url={url}"),
            format!("--storage={storage}"),
            format!("--scheduler={scheduler}"),
        ])
    }

    /// The directory of compiled operators (`--compile-cache`, or its default from
    /// the environment); `None` when it is `off` or no default can be found.
    pub fn compile_cache_dir(&self) -> Option<PathBuf> {
        crate::paths::compile_cache_dir(self.compile_cache.as_deref())
    }

    /// The storage nodes (`--storage`).
    pub fn storage_membership(&self) -> Result<Membership, SettingsError> {
        Membership::parse(&self.storage)
            .map_err(|e| SettingsError::Flag(format!("invalid --storage: {e}")))
    }

    /// The storage cluster's replication factor: `--replication-factor` checked
    /// against the storage nodes, or its default for them.
    pub fn resolved_replication_factor(&self) -> Result<usize, SettingsError> {
        replication_factor(self.replication_factor, self.storage_membership()?.len())
            .map_err(SettingsError::Inconsistent)
    }
}

impl RoleSettings for WorkerSettings {
    const ROLE: Role = Role::Worker;

    fn flags(&self) -> Vec<Flag> {
        Flags::default()
            .value("id", &self.id)
            .value("url", &self.url)
            .optional("listen", self.listen.as_ref())
            .value("gossip-delay", self.gossip_delay)
            .value("storage", &self.storage)
            .value("scheduler", &self.scheduler)
            .value("drain-timeout", self.drain_timeout)
            .optional("operators", self.operators.as_ref().map(|d| d.display()))
            .optional("replication-factor", self.replication_factor)
            .value("vnodes", self.vnodes)
            .value("max-fuel", self.max_fuel)
            .value("max-memory-mb", self.max_memory_mb)
            .value("max-wall-ms", self.max_wall_ms)
            .value("concurrency", self.concurrency)
            .value("consistency-deadline", self.consistency_deadline)
            .value("rpc-deadline", self.rpc_deadline)
            .optional("debug-sink", self.debug_sink.as_ref())
            .optional("metrics-listen", self.metrics_listen)
            .optional("compile-cache", self.compile_cache.as_ref())
            .build()
    }

    fn check(&self) -> Result<(), SettingsError> {
        self.listen_addr()?;
        self.resolved_replication_factor().map(|_| ())
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
    use dida_core::limits::{MAX_OPERATOR_CONCURRENCY, MAX_OPERATOR_MEMORY_MB};

    use super::*;
    use crate::command_line::tests::{check_bounds, check_definition, parse_with};

    const STORAGE: &str = "s1=http://127.0.0.1:7001,s2=http://127.0.0.1:7002";

    #[test]
    fn every_flag_is_written_back_and_has_its_variable() {
        let full = WorkerSettings {
            id: "w1".into(),
            url: "http://127.0.0.1:4001".into(),
            listen: Some("0.0.0.0:4001".into()),
            gossip_delay: 3,
            storage: STORAGE.into(),
            scheduler: "http://127.0.0.1:3000".into(),
            drain_timeout: 17,
            operators: Some("/opt/operators".into()),
            replication_factor: Some(2),
            vnodes: 32,
            max_fuel: 1000,
            max_memory_mb: 32,
            max_wall_ms: 1000,
            concurrency: 8,
            consistency_deadline: 99,
            rpc_deadline: 98,
            debug_sink: Some("http://127.0.0.1:10001".into()),
            metrics_listen: Some("127.0.0.1:14001".parse().unwrap()),
            compile_cache: Some("/var/cache/dida".into()),
        };
        check_definition(&[full]);
    }

    #[test]
    fn operator_limits_are_their_constants() {
        let base = WorkerSettings::new(
            "w1",
            "http://127.0.0.1:4001",
            STORAGE,
            "http://127.0.0.1:3000",
        )
        .unwrap();
        let cases = [
            ("max-memory-mb", MAX_OPERATOR_MEMORY_MB as u64),
            ("concurrency", u64::from(MAX_OPERATOR_CONCURRENCY)),
        ];
        check_bounds(&base, &cases);
        for (flag, _) in cases {
            let refused = parse_with(&base, flag, 0);
            assert!(matches!(refused, Err(SettingsError::Flag(_))), "--{flag}=0");
        }
        let mut too_many = base.clone();
        too_many.replication_factor = Some(3);
        assert!(matches!(
            too_many.check(),
            Err(SettingsError::Inconsistent(_))
        ));
    }
}
