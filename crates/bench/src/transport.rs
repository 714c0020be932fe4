//! `dida bench storage --transport plaintext,tls`: what mutual TLS costs, measured in
//! one run.
//!
//! A process has one identity (`dida_proto::security`), so each transport is
//! measured by a child `dida bench storage` of its own, on a fresh local cluster: the
//! plaintext one as is, the TLS one with `--tls-dir` pointing at certificates made
//! for the run by `dida certs` (its nodes inherit the directory). The children
//! report in JSON; this process then prints every workload's throughput and latency
//! under each transport, and its throughput over plaintext's, as the durability
//! comparison does (`storage::print_mode_costs`).

use anyhow::{bail, Context};
use dida_local_cluster::current_dida;
use serde_json::{json, Value};

use crate::lines::{self, BenchLine, Comparison};
use crate::report::Printer;
use crate::storage::{print_mode_costs, ModeRow};

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

/// Measures every transport in `transports` in a child process each, with this
/// process's own `bench storage` arguments, and prints them side by side.
pub(crate) async fn compare(
    transports: &[Transport],
    nodes: usize,
    json: bool,
) -> anyhow::Result<()> {
    let dida = current_dida()?;
    let forwarded = forwarded_arguments()?;
    let mut results: Vec<(&str, Vec<ModeRow>)> = Vec::new();
    for &transport in transports {
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
        // The certificates live (and are removed) with this run of the transport.
        let _certs = if transport == Transport::Tls {
            let certs = tempfile::Builder::new()
                .prefix("dida-bench-certs-")
                .tempdir()
                .context("cannot create a directory for the run's certificates")?;
            let dir = certs.path().join("tls");
            make_certificates(&dida, &dir, nodes).await?;
            command.arg("--tls-dir").arg(&dir);
            Some(certs)
        } else {
            None
        };
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
        let rows = measurements(&stdout).with_context(|| {
            format!(
                "the {} benchmark printed an unreadable line",
                transport.name()
            )
        })?;
        results.push((transport.name(), rows));
    }
    print_mode_costs(Printer { json }, Comparison::Transport, &results);
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

/// The measurements of a child's JSON report, in its order.
fn measurements(report: &str) -> anyhow::Result<Vec<ModeRow>> {
    Ok(lines::parse_lines::<BenchLine>(report)?
        .into_iter()
        .filter_map(|line| match line {
            BenchLine::Measurement(row) => Some(ModeRow {
                workload: row.workload,
                concurrency: row.concurrency,
                ops_per_sec: row.ops_per_sec,
                p50_us: row.p50_us,
                p99_us: row.p99_us,
                errors: row.errors,
            }),
            _ => None,
        })
        .collect())
}
