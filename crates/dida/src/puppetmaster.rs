//! `dida puppetmaster` (alias `dida pm`): flags of the PuppetMaster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use std::time::Duration;

use dida_core::limits::check_write_acks;
use dida_core::membership::NodeUrl;
use dida_pcs::auth::TOKEN_ENV;
use dida_pcs::launch::LOG_LEVELS;
use dida_puppetmaster::{Mode, PmConfig, Printer};
use dida_settings::values;

/// Flags of `dida puppetmaster`.
#[derive(Debug, Args)]
pub struct PuppetmasterArgs {
    /// The script to run (SPEC §6.2 language); without one, an interactive console.
    script: Option<PathBuf>,
    /// Run the script one line per key press (Enter: run, c: run the rest, q: stop).
    #[arg(
        long,
        requires = "script",
        conflicts_with = "batch",
        env = "DIDA_PUPPETMASTER_STEP"
    )]
    step: bool,
    /// Run the script, wait for every client it issued, stop the nodes and exit
    /// (status 1 if a line was invalid or a node could not start).
    #[arg(long, requires = "script", env = "DIDA_PUPPETMASTER_BATCH")]
    batch: bool,
    /// Stop running the script at its first failed line.
    #[arg(long, env = "DIDA_PUPPETMASTER_STOP_ON_ERROR")]
    stop_on_error: bool,
    /// Print one JSON event per line on stdout (SPEC §6.3).
    #[arg(long, env = "DIDA_PUPPETMASTER_JSON")]
    json: bool,
    /// PCSs to start nodes with, URL,URL,… (each node goes to the PCS of its URL's
    /// host). Without any, the PuppetMaster runs a PCS of its own, in-process.
    #[arg(long, value_delimiter = ',', env = "DIDA_PUPPETMASTER_PCS")]
    pcs: Vec<String>,
    /// The token the PCSs require.
    #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
    token: Option<String>,
    /// Replication factor of the storage cluster (given to every node; capped at the
    /// number of storage nodes the script declares).
    #[arg(long, default_value_t = dida_core::limits::DEFAULT_REPLICATION_FACTOR, env = "DIDA_PUPPETMASTER_REPLICATION_FACTOR", value_parser = values::positive::<usize>())]
    replication_factor: usize,
    /// Versions of each key a storage node keeps.
    #[arg(long, default_value_t = dida_settings::DEFAULT_MAX_VERSIONS, env = "DIDA_PUPPETMASTER_MAX_VERSIONS", value_parser = values::max_versions())]
    max_versions: usize,
    /// Replicas holding a write before it is acknowledged.
    #[arg(long, default_value_t = dida_settings::DEFAULT_WRITE_ACKS, env = "DIDA_PUPPETMASTER_WRITE_ACKS", value_parser = values::positive::<usize>())]
    write_acks: usize,
    /// A directory of <ClassName>.wasm operators for every worker (it must exist on
    /// every worker's machine); by default the built-in sample operators.
    #[arg(long, env = "DIDA_PUPPETMASTER_OPERATORS")]
    operators: Option<PathBuf>,
    /// RUST_LOG of the nodes (their lines are relayed to stderr, prefixed with the
    /// node id): error, warn, info, debug or trace.
    #[arg(long, default_value = "warn", env = "DIDA_PUPPETMASTER_NODE_LOG")]
    node_log: String,
    /// Where the debug sink listens once a script says `debug`.
    #[arg(
        long,
        default_value = "127.0.0.1:10001",
        env = "DIDA_PUPPETMASTER_DEBUG_LISTEN"
    )]
    debug_listen: SocketAddr,
    /// The debug sink's URL as workers reach it (when they run on other machines).
    #[arg(long, env = "DIDA_PUPPETMASTER_DEBUG_URL")]
    debug_url: Option<String>,
    /// Seconds a client may wait for its outcome (1 to 3600).
    #[arg(long, default_value_t = 300, env = "DIDA_PUPPETMASTER_CLIENT_TIMEOUT", value_parser = values::deadline_s())]
    client_timeout: u64,
    /// Deadline, in milliseconds, of each call to a node (status, listings, populate).
    #[arg(long, default_value_t = 2000, env = "DIDA_PUPPETMASTER_RPC_DEADLINE", value_parser = values::deadline_ms())]
    rpc_deadline: u64,
    /// The scheduler serves its HTTP gateway on this address (HOST:PORT), for
    /// applications invoked with any HTTP client; see docs/http.md.
    #[arg(long, env = "DIDA_PUPPETMASTER_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
    /// Give every node a metrics address (--metrics-listen): its own host, at its
    /// port plus N (a node on :7001 serves /metrics on :17001 with 10000). The
    /// addresses are printed as nodes start; see docs/observability.md.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..), env = "DIDA_PUPPETMASTER_METRICS_PORT_OFFSET")]
    metrics_port_offset: Option<u16>,
    /// Give every storage node a Redis-protocol address (--resp-listen): its own
    /// host, at its port plus N (a node on :7001 speaks RESP on :7021 with 20).
    /// See docs/resp.md.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..), env = "DIDA_PUPPETMASTER_RESP_PORT_OFFSET")]
    resp_port_offset: Option<u16>,
    /// Serve the session's web dashboard on this address (HOST:PORT): the nodes,
    /// ring, records, executions and charts live, the PuppetMaster's output and
    /// debug stream, and a console that runs script lines. See
    /// docs/observability.md.
    #[arg(long, value_name = "ADDR", env = "DIDA_PUPPETMASTER_DASHBOARD")]
    dashboard: Option<SocketAddr>,
}

impl PuppetmasterArgs {
    fn into_config(self) -> anyhow::Result<(PmConfig, Mode, bool)> {
        let binary = std::env::current_exe().context("cannot locate the running dida binary")?;
        let mut config = PmConfig::new(binary);
        for url in &self.pcs {
            NodeUrl::parse(url).with_context(|| format!("invalid --pcs {url}"))?;
        }
        if let Some(url) = &self.debug_url {
            NodeUrl::parse(url).context("invalid --debug-url")?;
        }
        check_write_acks(self.write_acks, self.replication_factor).map_err(anyhow::Error::msg)?;
        if !LOG_LEVELS.contains(&self.node_log.as_str()) {
            bail!("--node-log must be one of {}", LOG_LEVELS.join(", "));
        }
        config.pcs = self.pcs;
        config.token = self.token.filter(|t| !t.is_empty());
        config.replication_factor = self.replication_factor;
        config.max_versions = self.max_versions;
        config.write_acks = self.write_acks;
        config.operators = match self.operators {
            Some(dir) => Some(
                std::path::absolute(&dir)
                    .with_context(|| format!("invalid --operators {}", dir.display()))?,
            ),
            None => None,
        };
        config.node_log = self.node_log;
        config.debug_listen = self.debug_listen;
        config.debug_url = self.debug_url;
        config.client_timeout = Duration::from_secs(self.client_timeout);
        config.rpc_deadline = Duration::from_millis(self.rpc_deadline);
        config.http_listen = self.http_listen;
        config.metrics_port_offset = self.metrics_port_offset;
        config.resp_port_offset = self.resp_port_offset;
        config.dashboard = self.dashboard;
        let mode = Mode {
            script: self.script,
            step: self.step,
            batch: self.batch,
            stop_on_error: self.stop_on_error,
        };
        Ok((config, mode, self.json))
    }
}

/// Runs the PuppetMaster; in batch mode, fails when a line was invalid or a node
/// could not start.
pub async fn run(args: PuppetmasterArgs) -> anyhow::Result<()> {
    let (config, mode, json) = args.into_config()?;
    let batch = mode.batch;
    let printer = Arc::new(Printer::stdio(json));
    let summary = dida_puppetmaster::run(config, mode, printer).await?;
    if batch && !summary.is_clean() {
        bail!(
            "the script had {} failed line(s) and {} node(s) that could not start",
            summary.errors,
            summary.start_failures
        );
    }
    Ok(())
}
