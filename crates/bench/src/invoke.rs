//! `dida bench invoke`: what one invocation of an operator costs in each language
//! the platform builds operators in, beside the worker ping, in one run.
//!
//! Each operator (by default the built-in Rust `IncrementOperator`; `--operator
//! LABEL=FILE` adds the same operator built from Python or JavaScript) goes through
//! what a worker does with it, in this process's own wasmtime runtime with the
//! worker's default limits, against a real storage node on loopback:
//!
//! 1. **compile**: compiling the component, cold, into an empty compile cache (what
//!    a worker pays on an operator's first use, or `dida build` ahead of it), and
//!    the size of the compiled artifact;
//! 2. **load**: a fresh runtime loading it from that cache (what a restarted worker
//!    pays);
//! 3. **first**: the first invocation after loading — the instance pool's slot
//!    and the memory image touched for the first time;
//! 4. **warm**: `--invocations` more, back to back: median and p99 of the whole
//!    invocation, the median of instantiating alone, and the linear memory each
//!    instance grew to.
//!
//! The operator reads and writes one key, so every invocation includes two storage
//! round trips; the worker **ping** (an empty gRPC call to a worker of the same
//! cluster) shows what one round trip costs here. Warm invocations are compared
//! with the Rust one (the target: within 10×) and with the ping.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use dida_local_cluster::{current_dida, ClusterSpec, ComputeSpec, LocalCluster};
use dida_proto::execution::worker_client::WorkerClient;
use dida_proto::storage::PingRequest;
use dida_proto::transport::lazy_channel;
use dida_storage_client::StorageClient;
use dida_worker::consistency::{ConsistencySettings, ExecutionStorage};
use dida_worker::runtime::{InvocationCost, OperatorPre, OperatorRuntime};
use dida_worker::SandboxLimits;
use hdrhistogram::Histogram;

use crate::closed_loop::new_histogram;
use crate::lines::{self, InvokeLine, InvokePing, InvokeRow};

/// The operator every language implements alike (SPEC's `IncrementOperator`).
const OPERATOR: &str = "IncrementOperator";

/// The target of the issue: a warm invocation within this many times the Rust one.
const TARGET_RATIO: f64 = 10.0;

/// Deadline of each ping.
const PING_DEADLINE: Duration = Duration::from_secs(5);

/// Flags of `dida bench invoke`.
#[derive(Debug, Args)]
pub(crate) struct InvokeBenchArgs {
    /// Another build of IncrementOperator to measure, as LABEL=FILE (for example
    /// Python=operators/python/samples/IncrementOperator/build/IncrementOperator.wasm).
    /// The built-in Rust one is always measured first, as `Rust`.
    #[arg(long = "operator", value_name = "LABEL=FILE")]
    operators: Vec<String>,
    /// Warm invocations of each operator (and pings).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..=100_000))]
    invocations: u64,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `dida bench invoke`.
pub(crate) async fn run(args: InvokeBenchArgs) -> anyhow::Result<()> {
    let mut operators = vec![(
        "Rust".to_string(),
        dida_operators::find_builtin(OPERATOR)
            .with_context(|| format!("no built-in {OPERATOR}"))?
            .wasm
            .to_vec(),
    )];
    for spec in &args.operators {
        let (label, file) = spec
            .split_once('=')
            .with_context(|| format!("--operator {spec}: give LABEL=FILE"))?;
        let file = PathBuf::from(file);
        let wasm = dida_worker::registry::read_operator_file(&file)
            .with_context(|| format!("--operator {spec}"))?;
        operators.push((label.to_string(), wasm));
    }
    let binary = current_dida()?;
    let mut cluster = LocalCluster::start(
        &binary,
        ClusterSpec {
            nodes: 1,
            replication_factor: 1,
            ..ClusterSpec::default()
        },
    )
    .await?;
    cluster
        .start_compute(
            &binary,
            ComputeSpec {
                workers: 1,
                ..ComputeSpec::default()
            },
        )
        .await?;
    let result = measure(&cluster, &operators, args.invocations, args.json).await;
    cluster.kill_all().await?;
    result
}

async fn measure(
    cluster: &LocalCluster,
    operators: &[(String, Vec<u8>)],
    invocations: u64,
    json: bool,
) -> anyhow::Result<()> {
    let storage = Arc::new(cluster.client()?);
    let (_, worker_url) = cluster
        .all_workers()?
        .into_iter()
        .next()
        .context("the cluster has no worker")?;
    let ping = ping(&worker_url, invocations).await?;
    let mut rows = Vec::new();
    for (label, wasm) in operators {
        let row = measure_operator(label, wasm, &storage, invocations)
            .await
            .with_context(|| format!("measuring the {label} {OPERATOR}"))?;
        rows.push(row);
    }
    print(&rows, &ping, json);
    Ok(())
}

/// `invocations` worker pings, back to back.
async fn ping(url: &str, invocations: u64) -> anyhow::Result<InvokePing> {
    let mut worker = WorkerClient::new(lazy_channel(url, PING_DEADLINE)?);
    let mut latency = new_histogram()?;
    for _ in 0..invocations {
        let started = Instant::now();
        worker
            .ping(PingRequest {})
            .await
            .context("the worker ping failed")?;
        record(&mut latency, started.elapsed());
    }
    Ok(InvokePing {
        p50_us: latency.value_at_quantile(0.5),
        p99_us: latency.value_at_quantile(0.99),
    })
}

async fn measure_operator(
    label: &str,
    wasm: &[u8],
    storage: &Arc<StorageClient>,
    invocations: u64,
) -> anyhow::Result<InvokeRow> {
    let cache = tempfile::tempdir().context("cannot make a compile cache directory")?;
    let runtime = || -> anyhow::Result<OperatorRuntime> {
        Ok(OperatorRuntime::new(SandboxLimits::default())?.with_compiled_cache(cache.path()))
    };
    let started = Instant::now();
    runtime()?.compile(wasm)?;
    let compile = started.elapsed();
    let artifact_bytes = std::fs::read_dir(cache.path())?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.metadata().ok())
        .map(|metadata| metadata.len())
        .sum();
    let runtime = runtime()?;
    let started = Instant::now();
    let operator = runtime.compile(wasm)?;
    let load = started.elapsed();

    let (first, _) = invoke(&runtime, &operator, storage).await?;
    let mut latency = new_histogram()?;
    let mut instantiation = new_histogram()?;
    let mut memory_bytes = 0;
    for _ in 0..invocations {
        let (took, cost) = invoke(&runtime, &operator, storage).await?;
        record(&mut latency, took);
        if let Some(instantiating) = cost.instantiation {
            record(&mut instantiation, instantiating);
        }
        memory_bytes = memory_bytes.max(cost.memory_bytes);
    }
    Ok(InvokeRow {
        label: label.to_string(),
        component_bytes: wasm.len() as u64,
        artifact_bytes,
        compile_ms: compile.as_secs_f64() * 1e3,
        load_ms: load.as_secs_f64() * 1e3,
        first_us: first.as_micros() as u64,
        warm_p50_us: latency.value_at_quantile(0.5),
        warm_p99_us: latency.value_at_quantile(0.99),
        instantiate_p50_us: instantiation.value_at_quantile(0.5),
        memory_bytes,
    })
}

/// One invocation of `operator`, as a worker's hop makes it: how long it took and
/// what it cost. Its output must be a count.
async fn invoke(
    runtime: &OperatorRuntime,
    operator: &OperatorPre,
    storage: &Arc<StorageClient>,
) -> anyhow::Result<(Duration, InvocationCost)> {
    let proxy = ExecutionStorage::new(
        Arc::clone(storage),
        BTreeMap::new(),
        ConsistencySettings::default(),
    );
    let started = Instant::now();
    let (result, cost) = runtime
        .invoke_alone_measured(operator, OPERATOR, proxy, "bench")
        .await;
    let took = started.elapsed();
    let output = result.map_err(|e| anyhow::anyhow!("the invocation failed: {e}"))?;
    if output.trim().parse::<u64>().is_err() {
        bail!("{OPERATOR} returned {output:?}, not a count");
    }
    Ok((took, cost))
}

fn record(histogram: &mut Histogram<u64>, took: Duration) {
    histogram.saturating_record((took.as_micros() as u64).max(1));
}

/// The rows, the ping, and the verdict on the target.
fn print(rows: &[InvokeRow], ping: &InvokePing, json: bool) {
    if json {
        lines::print_json(&InvokeLine::Ping(ping.clone()));
        for row in rows {
            lines::print_json(&InvokeLine::Row(row.clone()));
        }
        return;
    }
    println!("{OPERATOR} per language (in-process worker runtime, one storage node on loopback)\n");
    print!("{}", table(rows, ping));
    println!();
    for verdict in verdicts(rows) {
        println!("{verdict}");
    }
}

/// The rows as a Markdown table, the ping last; ratios to the first row (Rust) and
/// to the ping. `dida bench report` shows the same table.
pub(crate) fn table(rows: &[InvokeRow], ping: &InvokePing) -> String {
    let rust_p50 = rows.first().map_or(1, |row| row.warm_p50_us.max(1));
    let mut out = String::from(
        "| operator | component | compiled | compile | load | first | warm p50 | warm p99 | instantiate p50 | memory | warm ÷ Rust | warm ÷ ping |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        out.push_str(&format!(
            "| {} | {:.1} MB | {:.1} MB | {:.0} ms | {:.1} ms | {:.2} ms | {} µs | {} µs | {} µs | {:.1} MiB | {:.1}× | {:.1}× |\n",
            row.label,
            row.component_bytes as f64 / 1e6,
            row.artifact_bytes as f64 / 1e6,
            row.compile_ms,
            row.load_ms,
            row.first_us as f64 / 1e3,
            row.warm_p50_us,
            row.warm_p99_us,
            row.instantiate_p50_us,
            row.memory_bytes as f64 / (1024.0 * 1024.0),
            row.warm_p50_us as f64 / rust_p50 as f64,
            row.warm_p50_us as f64 / ping.p50_us.max(1) as f64,
        ));
    }
    out.push_str(&format!(
        "| worker ping (baseline) | | | | | | {} µs | {} µs | | | | 1.0× |\n",
        ping.p50_us, ping.p99_us
    ));
    out
}

/// The verdict on the target for every row but the first (Rust).
pub(crate) fn verdicts(rows: &[InvokeRow]) -> Vec<String> {
    let rust_p50 = rows.first().map_or(1, |row| row.warm_p50_us.max(1));
    rows.iter()
        .skip(1)
        .map(|row| {
            let ratio = row.warm_p50_us as f64 / rust_p50 as f64;
            format!(
                "{}: warm invocation {ratio:.1}× the Rust one (target ≤ {TARGET_RATIO}×): {}",
                row.label,
                if ratio <= TARGET_RATIO {
                    "met"
                } else {
                    "NOT met"
                }
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: &str, warm_p50_us: u64) -> InvokeRow {
        InvokeRow {
            label: label.into(),
            component_bytes: 2_000_000,
            artifact_bytes: 4_000_000,
            compile_ms: 1500.0,
            load_ms: 3.0,
            first_us: 900,
            warm_p50_us,
            warm_p99_us: warm_p50_us * 2,
            instantiate_p50_us: 10,
            memory_bytes: 3 << 20,
        }
    }

    #[test]
    fn rows_compare_with_rust_and_the_ping() {
        let ping = InvokePing {
            p50_us: 50,
            p99_us: 90,
        };
        let rows = [row("Rust", 100), row("Python", 2500)];
        let table = table(&rows, &ping);
        assert!(
            table.contains("| Python | 2.0 MB | 4.0 MB | 1500 ms | 3.0 ms | 0.90 ms | 2500 µs | 5000 µs | 10 µs | 3.0 MiB | 25.0× | 50.0× |"),
            "{table}"
        );
        assert!(
            table.contains("| worker ping (baseline) | | | | | | 50 µs | 90 µs |"),
            "{table}"
        );
        assert_eq!(
            verdicts(&rows),
            ["Python: warm invocation 25.0× the Rust one (target ≤ 10×): NOT met"]
        );
    }
}
