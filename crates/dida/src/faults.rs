//! `dida faults`: the fault-injection suite (crate `dida-faults`) from the command
//! line. It starts its own local cluster of this same binary, so one command runs it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use dida_faults::SuiteConfig;
use dida_local_cluster::current_dida;
use dida_verify::plan::NemesisKind;

/// Flags of `dida faults`.
#[derive(Debug, Args)]
pub struct FaultsArgs {
    /// Seconds the workload runs (fractions allowed).
    #[arg(long, default_value = "20", value_parser = parse_seconds)]
    duration: Duration,
    /// Concurrent storage clients (writes, CAS, reads).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Concurrent chain clients (executions through the scheduler); 0 for none.
    #[arg(long, default_value_t = 2)]
    chain_clients: usize,
    /// Keys the storage clients share (few keys: more contention).
    #[arg(long, default_value_t = 5)]
    keys: usize,
    /// `--write-acks` of the storage nodes: 1 is the course's mode, where a crash may
    /// lose acknowledged writes; with 2 or more none may be lost.
    #[arg(long, default_value_t = 2)]
    write_acks: usize,
    /// Faults injected during the run, one at a time (at most R - 1 = 2: each may
    /// cost the cluster one storage node). A rolling restart ignores it: it restarts
    /// every node once.
    #[arg(long, default_value_t = 2)]
    crashes: usize,
    /// Which faults: kill (SIGKILL), pause (SIGSTOP, then SIGCONT), partition (links
    /// between storage nodes cut silently, then healed), mixed (each fault drawn
    /// among kill, pause, partition and restart), restart (SIGKILL, then the node started again with the same
    /// flags after a time in --fault-ms), leave (one node decommissioned, as
    /// `dida cluster remove` does, among faults drawn as mixed draws them), join
    /// (half of the faults, rounded up, new nodes started with `dida storage
    /// --join`, among faults drawn as mixed draws them) or rolling-restart (every
    /// node restarted in turn, each left to answer and settle before the next).
    #[arg(long, default_value = "kill", value_parser = parse_nemesis)]
    nemesis: NemesisKind,
    /// How long a pause or partition lasts (or a restarted node stays down), MIN-MAX
    /// milliseconds (a random length in
    /// between, cut short to end before the next fault and the last fifth of the run).
    /// The default straddles the time the storage nodes take to declare a silent
    /// peer failed (2.3 to 3.5 s with their default probe and suspicion timeouts):
    /// shorter faults are survived, longer ones get the node declared failed.
    #[arg(long, default_value = "1000-5000", value_parser = parse_millis_range)]
    fault_ms: (Duration, Duration),
    /// `--gossip-delay` of every storage node, in milliseconds: how long a write
    /// acknowledged with `--write-acks 1` lives on its primary alone.
    #[arg(long, default_value_t = 0)]
    gossip_delay: u64,
    /// Seed of every random choice (operations, keys, crash moments, victims); by
    /// default one is drawn and printed, so a run can be repeated.
    #[arg(long)]
    seed: Option<u64>,
    /// Start the storage nodes with a deliberate bug: a write acknowledged before
    /// the other --write-acks replicas hold it. The run must then fail its
    /// lost-writes check; this shows that it can.
    #[arg(long)]
    break_acks: bool,
    /// How the storage clients reach the cluster: grpc (the client library, at
    /// each key's primary) or resp (a Redis client library at the nodes'
    /// --resp-listen ports, each client at one node that forwards what it does
    /// not lead; see docs/resp.md).
    #[arg(long, value_enum, default_value_t = ClientProtocol::Grpc)]
    client: ClientProtocol,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Also write the whole history to this file, one JSON operation per line.
    #[arg(long)]
    history: Option<PathBuf>,
    /// Also write a crash timeline to this file, as JSON lines: operations and errors
    /// per 100 ms, and when each crash was injected, detected and repaired.
    #[arg(long)]
    timeline: Option<PathBuf>,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0) {
        return Err(format!(
            "the duration must be from 0 to 86400 seconds, not {text}"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_nemesis(text: &str) -> Result<NemesisKind, String> {
    let kind: NemesisKind = text.parse()?;
    if !kind.simulator_only() {
        Ok(kind)
    } else {
        Err(format!(
            "--nemesis {kind} is the simulator's only (`dida sim --nemesis {kind}`)"
        ))
    }
}

fn parse_millis_range(text: &str) -> Result<(Duration, Duration), String> {
    let bad = || format!("{text:?} is not MIN-MAX milliseconds (e.g. 500-3500)");
    let (min, max) = text.split_once('-').ok_or_else(bad)?;
    let min: u64 = min.trim().parse().map_err(|_| bad())?;
    let max: u64 = max.trim().parse().map_err(|_| bad())?;
    if min == 0 || min > max || max > 3_600_000 {
        return Err(format!(
            "--fault-ms needs 0 < MIN <= MAX <= 3600000, not {text}"
        ));
    }
    Ok((Duration::from_millis(min), Duration::from_millis(max)))
}

/// Runs `dida faults`: prints the report, and fails when a checker that must hold
/// did not.
pub async fn run(args: FaultsArgs) -> anyhow::Result<()> {
    let binary = current_dida()?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let mut config = SuiteConfig::new(binary);
    config.duration = args.duration;
    config.clients = args.clients;
    config.protocol = match args.client {
        ClientProtocol::Grpc => dida_faults::suite::StorageProtocol::Grpc,
        ClientProtocol::Resp => dida_faults::suite::StorageProtocol::Resp,
    };
    config.chain_clients = args.chain_clients;
    config.keys = args.keys;
    config.write_acks = args.write_acks;
    config.crashes = args.crashes;
    config.nemesis = args.nemesis;
    config.fault_lengths = args.fault_ms;
    config.gossip_delay = Duration::from_millis(args.gossip_delay);
    config.seed = seed;
    config.break_acks = args.break_acks;
    config.history_path = args.history;
    config.timeline_path = args.timeline;
    tracing::info!(seed, "faults: starting (repeat with --seed {seed})");
    let (report, _history) = dida_faults::run(config)
        .await
        .context("the fault-injection run could not be carried out")?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if !report.passed {
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| c.status == dida_verify::report::CheckStatus::Failed)
            .map(|c| c.name.as_str())
            .collect();
        bail!("checks failed: {}", failed.join("; "));
    }
    Ok(())
}

/// `--client`: the protocol the storage workload speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ClientProtocol {
    /// dida's gRPC client library.
    Grpc,
    /// The Redis protocol, through a Redis client library.
    Resp,
}
