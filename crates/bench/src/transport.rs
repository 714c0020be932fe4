//! `dida bench storage --transport plaintext,tls`: what mutual TLS costs, measured in
//! one run.
//!
//! A process has one identity (`dida_proto::security`), so each transport is
//! measured by a child `dida bench storage` of its own, on a fresh local cluster: the
//! plaintext one as is, the TLS one with `--tls-dir` pointing at certificates made
//! for the run by `dida certs` (its nodes inherit the directory). The children
//! report in JSON; this process then prints every workload's throughput and latency
//! under each transport, and its throughput over plaintext's.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use dida_local_cluster::current_dida;
use serde_json::{json, Value};

/// How the benchmark's nodes and clients talk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Transport {
    /// gRPC over cleartext HTTP/2.
    Plaintext,
    /// gRPC over mutual TLS, with certificates made for the run.
    Tls,
}

impl Transport {
    /// The transport's name on the command line and in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Tls => "tls",
        }
    }
}

/// A child's measurements, by workload and concurrency.
type Measurements = BTreeMap<(String, usize), Measured>;

/// One measurement a child reported.
#[derive(Debug, Clone)]
struct Measured {
    ops_per_sec: f64,
    p50_us: u64,
    p99_us: u64,
    errors: u64,
}

/// Measures every transport in `transports` in a child process each, with this
/// process's own `bench storage` arguments, and prints them side by side.
pub(crate) async fn compare(
    transports: &[Transport],
    nodes: usize,
    json: bool,
) -> anyhow::Result<()> {
    let dida = current_dida()?;
    let forwarded = forwarded_arguments()?;
    let mut results: Vec<(Transport, Measurements)> = Vec::new();
    for &transport in transports {
        let certs = tempfile::Builder::new()
            .prefix("dida-bench-certs-")
            .tempdir()
            .context("cannot create a directory for the run's certificates")?;
        let mut command = tokio::process::Command::new(&dida);
        // The child's identity is only what it is given here.
        command
            .env_remove("DIDA_TLS_DIR")
            .env_remove("DIDA_CLUSTER_TOKEN");
        command.args(["bench", "storage"]).args(&forwarded);
        command.args(["--transport", transport.name(), "--json"]);
        // Redis is the same in both runs: measure it (if at all) in the first only.
        if !results.is_empty() && !forwarded.iter().any(|a| a == "--no-redis") {
            command.arg("--no-redis");
        }
        if transport == Transport::Tls {
            let dir = certs.path().join("tls");
            make_certificates(&dida, &dir, nodes).await?;
            command.arg("--tls-dir").arg(&dir);
        }
        let output = command
            .output()
            .await
            .with_context(|| format!("cannot run the {} benchmark", transport.name()))?;
        if !output.status.success() {
            bail!(
                "the {} benchmark failed: {}",
                transport.name(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        if json {
            // Every line of the child, tagged with its transport.
            for line in stdout.lines() {
                if let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(line) {
                    fields.insert("transport".into(), json!(transport.name()));
                    println!("{}", Value::Object(fields));
                }
            }
        }
        results.push((transport, measurements(&stdout)));
    }
    print_costs(&results, json);
    Ok(())
}

/// This process's `bench storage` arguments without those the children get their
/// own value of (`--transport`, `--json`, and the TLS identity).
fn forwarded_arguments() -> anyhow::Result<Vec<String>> {
    let all: Vec<String> = std::env::args().collect();
    let start = all
        .windows(2)
        .position(|w| w[0] == "bench" && w[1] == "storage")
        .context("not run as `dida bench storage`")?
        + 2;
    let mut forwarded = Vec::new();
    let mut rest = all[start..].iter();
    while let Some(arg) = rest.next() {
        let with_value = ["--transport", "--tls-dir", "--tls-name"];
        if with_value.contains(&arg.as_str()) {
            rest.next();
        } else if with_value.iter().any(|f| arg.starts_with(&format!("{f}="))) || arg == "--json" {
            continue;
        } else {
            forwarded.push(arg.clone());
        }
    }
    Ok(forwarded)
}

/// `dida certs` for a local cluster of `nodes` storage nodes and the benchmark's
/// client.
async fn make_certificates(
    dida: &std::path::Path,
    dir: &std::path::Path,
    nodes: usize,
) -> anyhow::Result<()> {
    let storage: Vec<String> = (1..=nodes).map(|i| format!("s{i}")).collect();
    let output = tokio::process::Command::new(dida)
        .arg("certs")
        .arg("--out")
        .arg(dir)
        .args(["--storage", &storage.join(",")])
        .output()
        .await
        .context("cannot run dida certs")?;
    if !output.status.success() {
        bail!(
            "dida certs failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The dida measurements (not Redis's) of a child's JSON report, by workload and
/// concurrency.
fn measurements(report: &str) -> Measurements {
    report
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v["kind"] == "measurement")
        .filter_map(|v| {
            let workload = v["workload"].as_str()?.to_string();
            if workload.starts_with("redis") {
                return None;
            }
            let measured = Measured {
                ops_per_sec: v["ops_per_sec"].as_f64()?,
                p50_us: v["p50_us"].as_u64()?,
                p99_us: v["p99_us"].as_u64()?,
                errors: v["errors"].as_u64().unwrap_or(0),
            };
            Some(((workload, v["concurrency"].as_u64()? as usize), measured))
        })
        .collect()
}

/// Prints each transport's measurements and its throughput over the first
/// transport's.
fn print_costs(results: &[(Transport, Measurements)], json: bool) {
    let Some((base, base_rows)) = results.first() else {
        return;
    };
    if !json {
        println!(
            "transport: ops/s of each transport over {}'s (each on a fresh local cluster)",
            base.name()
        );
        println!(
            "{:<10} {:<10} {:>11} {:>10} {:>9} {:>9} {:>7} {:>9}",
            "workload",
            "transport",
            "concurrency",
            "ops/s",
            "p50 (µs)",
            "p99 (µs)",
            "errors",
            "vs base"
        );
    }
    for (transport, rows) in results {
        for ((workload, concurrency), row) in rows {
            let vs_base = base_rows
                .get(&(workload.clone(), *concurrency))
                .filter(|b| b.ops_per_sec > 0.0)
                .map(|b| row.ops_per_sec / b.ops_per_sec);
            if json {
                let line = json!({
                    "kind": "transport",
                    "transport": transport.name(),
                    "base": base.name(),
                    "workload": workload,
                    "concurrency": concurrency,
                    "ops_per_sec": row.ops_per_sec,
                    "p50_us": row.p50_us,
                    "p99_us": row.p99_us,
                    "errors": row.errors,
                    "vs_base": vs_base,
                });
                println!("{line}");
            } else {
                println!(
                    "{:<10} {:<10} {:>11} {:>10.0} {:>9} {:>9} {:>7} {:>9}",
                    workload,
                    transport.name(),
                    concurrency,
                    row.ops_per_sec,
                    row.p50_us,
                    row.p99_us,
                    row.errors,
                    vs_base.map_or("-".to_string(), |r| format!("{r:.2}×"))
                );
            }
        }
    }
}
