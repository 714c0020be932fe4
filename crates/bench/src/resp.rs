//! `dida bench resp`: Redis's own load generator, `redis-benchmark`, against a
//! storage node's RESP port and against a `redis-server`, in the same run with the
//! same flags, command for command — how the stores users would pick instead are
//! compared.
//!
//! For each pipeline depth (`-P`), both targets are measured back to back (Redis
//! first), so that both see the same machine. dida runs as a real cluster of
//! `dida storage` processes (three by default, every key on three replicas,
//! `--write-acks 1`), and `redis-benchmark` connects to the first node only, as a
//! client of one address does: that node serves the reads of the keys it holds and
//! forwards the writes of the keys it does not lead.
//!
//! The targets of issue 28 are printed beside the numbers: reads at least 1.0×
//! Redis GET, writes at least 0.6× Redis SET, p99 at most 3× p50, and writes at
//! least 0.8× reads.

use std::process::Stdio;

use anyhow::{bail, Context};
use clap::Args;
use dida_local_cluster::{current_dida, ClusterSpec, LocalCluster};
use tokio::process::Command;

use crate::evaluate::parse_redis_benchmark;
use crate::lines::RespRow;

/// Reads against Redis GET: the target.
pub(crate) const READ_TARGET: f64 = 1.0;
/// Writes against Redis SET: the target.
pub(crate) const WRITE_TARGET: f64 = 0.6;
/// Writes against reads, in dida: the target.
pub(crate) const WRITE_READ_TARGET: f64 = 0.8;
/// p99 against p50: the most.
pub(crate) const TAIL_TARGET: f64 = 3.0;

/// Flags of `dida bench resp`.
#[derive(Debug, Args)]
pub(crate) struct RespBenchArgs {
    /// Connections (`redis-benchmark -c`).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    clients: u32,
    /// Pipeline depths to measure (`redis-benchmark -P`), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pipelines: Vec<u32>,
    /// Requests of each command at each depth (`redis-benchmark -n`).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1000..=100_000_000))]
    requests: u64,
    /// Keys the requests spread over (`redis-benchmark -r`).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    keys: u64,
    /// Bytes of each value (`redis-benchmark -d`).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    value_bytes: u32,
    /// Storage nodes of the dida cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    nodes: u64,
    /// `--write-acks` of the dida cluster.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=9))]
    write_acks: u64,
    /// Measure dida alone, without a `redis-server`.
    #[arg(long)]
    no_redis: bool,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `dida bench resp`.
pub(crate) async fn run(args: RespBenchArgs) -> anyhow::Result<()> {
    if !on_path("redis-benchmark") {
        bail!(
            "redis-benchmark is not on PATH: install it with {}",
            crate::redis::INSTALL_HINT
        );
    }
    let redis = if args.no_redis {
        None
    } else {
        let server = crate::redis::RedisServer::start(std::time::Duration::from_secs(10))
            .await?
            .with_context(|| {
                format!(
                    "redis-server is not on PATH: install it with {}, or give --no-redis",
                    crate::redis::INSTALL_HINT
                )
            })?;
        Some(server)
    };
    let nodes = args.nodes as usize;
    let spec = ClusterSpec {
        nodes,
        replication_factor: nodes.min(3),
        write_acks: args.write_acks as usize,
        resp: true,
        ..ClusterSpec::default()
    };
    let cluster = LocalCluster::start(&current_dida()?, spec)
        .await
        .context("cannot start the dida cluster")?;
    cluster
        .client()?
        .wait_until_all_alive(std::time::Duration::from_secs(30))
        .await
        .context("the dida cluster did not settle")?;
    let dida_port = cluster.resp_addr("s1")?.port();

    let mut rows = Vec::new();
    for &pipeline in &args.pipelines {
        let mut targets = Vec::new();
        if let Some(server) = &redis {
            targets.push(("redis", server.port()));
        }
        targets.push(("dida", dida_port));
        for (target, port) in targets {
            tracing::info!(target, pipeline, "redis-benchmark");
            let csv = redis_benchmark(&args, port, pipeline).await?;
            for row in parse_redis_benchmark(&csv)
                .with_context(|| format!("redis-benchmark against {target} printed {csv:?}"))?
            {
                rows.push(RespRow {
                    target: target.to_string(),
                    pipeline,
                    clients: args.clients,
                    command: row.test,
                    rps: row.rps,
                    p50_ms: row.p50_ms,
                    p99_ms: row.p99_ms,
                });
            }
        }
    }
    if let Some(server) = redis {
        server.stop().await?;
    }
    drop(cluster);

    if args.json {
        for row in &rows {
            println!("{}", serde_json::to_string(row)?);
        }
    } else {
        print!("{}", table(&rows));
    }
    Ok(())
}

/// Runs `redis-benchmark` against `port` at depth `pipeline`: GET and SET, CSV.
async fn redis_benchmark(args: &RespBenchArgs, port: u16, pipeline: u32) -> anyhow::Result<String> {
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", &args.clients.to_string()])
        .args(["-n", &args.requests.to_string()])
        .args(["-r", &args.keys.to_string()])
        .args(["-d", &args.value_bytes.to_string()])
        .args(["-P", &pipeline.to_string()])
        .args(["-t", "set,get", "--csv"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("cannot run redis-benchmark")?;
    if !output.status.success() {
        bail!(
            "redis-benchmark -p {port} -P {pipeline} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// The row of `rows` for `target`, `pipeline` and `command`.
pub(crate) fn find<'a>(
    rows: &'a [RespRow],
    target: &str,
    pipeline: u32,
    command: &str,
) -> Option<&'a RespRow> {
    rows.iter()
        .find(|r| r.target == target && r.pipeline == pipeline && r.command == command)
}

/// The Markdown table of `rows`: dida and Redis side by side per depth and
/// command, with the ratios the targets are about.
pub(crate) fn table(rows: &[RespRow]) -> String {
    let mut pipelines: Vec<u32> = rows.iter().map(|r| r.pipeline).collect();
    pipelines.sort_unstable();
    pipelines.dedup();
    let ms = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.3}"));
    let mut out = format!(
        "| -P | command | Redis ops/s | Redis p50 / p99 (ms) | dida ops/s | dida p50 / p99 (ms) | dida ÷ Redis | target | dida p99 ÷ p50 (≤ {TAIL_TARGET}) |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for &pipeline in &pipelines {
        for command in ["GET", "SET"] {
            let Some(dida) = find(rows, "dida", pipeline, command) else {
                continue;
            };
            let redis = find(rows, "redis", pipeline, command);
            let target = if command == "GET" {
                READ_TARGET
            } else {
                WRITE_TARGET
            };
            let tail = match (dida.p50_ms, dida.p99_ms) {
                (Some(p50), Some(p99)) if p50 > 0.0 => format!("{:.1}", p99 / p50),
                _ => "–".to_string(),
            };
            out.push_str(&format!(
                "| {pipeline} | {command} | {} | {} / {} | {:.0} | {} / {} | {} | ≥ {target} | {tail} |\n",
                redis.map_or("–".to_string(), |r| format!("{:.0}", r.rps)),
                ms(redis.and_then(|r| r.p50_ms)),
                ms(redis.and_then(|r| r.p99_ms)),
                dida.rps,
                ms(dida.p50_ms),
                ms(dida.p99_ms),
                redis.map_or("–".to_string(), |r| format!("{:.2}×", dida.rps / r.rps)),
            ));
        }
        if let (Some(get), Some(set)) = (
            find(rows, "dida", pipeline, "GET"),
            find(rows, "dida", pipeline, "SET"),
        ) {
            out.push_str(&format!(
                "| {pipeline} | dida SET ÷ GET | | | {:.2}× | | | ≥ {WRITE_READ_TARGET} | |\n",
                set.rps / get.rps
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: &str, pipeline: u32, command: &str, rps: f64) -> RespRow {
        RespRow {
            target: target.into(),
            pipeline,
            clients: 64,
            command: command.into(),
            rps,
            p50_ms: Some(1.0),
            p99_ms: Some(2.5),
        }
    }

    #[test]
    fn the_table_sets_dida_beside_redis_with_the_ratios() {
        let rows = [
            row("redis", 1, "GET", 100_000.0),
            row("redis", 1, "SET", 100_000.0),
            row("dida", 1, "GET", 50_000.0),
            row("dida", 1, "SET", 40_000.0),
        ];
        let table = table(&rows);
        assert!(
            table.contains(
                "| 1 | GET | 100000 | 1.000 / 2.500 | 50000 | 1.000 / 2.500 | 0.50× | ≥ 1 | 2.5 |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| 1 | dida SET ÷ GET | | | 0.80× |"),
            "{table}"
        );
    }
}
