//! `dida operator deploy|list|remove`: manage the operators deployed to a running
//! cluster, through its scheduler.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use dida_core::app::check_operator_name;
use dida_core::events::{rfc3339_utc, Event, OperatorInfo};
use dida_core::membership::NodeUrl;
use dida_proto::registry::operators_client::OperatorsClient;
use dida_proto::registry::{DeployRequest, DeployedOperator, ListOperatorsRequest, RemoveRequest};
use dida_proto::transport::{lazy_channel_for_waits, NodeChannel, MAX_MESSAGE_BYTES};

use crate::client::SchedulerAddress;
use crate::exit::CallFailed;

/// Flags of `dida operator`.
#[derive(Debug, Args)]
pub struct OperatorArgs {
    #[command(flatten)]
    scheduler: SchedulerAddress,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: OperatorCommand,
}

#[derive(Debug, Subcommand)]
enum OperatorCommand {
    /// Validate a WebAssembly component and deploy it to the cluster: executions
    /// submitted from now on run it under its class name.
    Deploy {
        /// The component (`cargo build --release --target wasm32-wasip2` makes
        /// `target/wasm32-wasip2/release/<ClassName>.wasm`).
        file: PathBuf,
        /// The class name applications use for it; by default the file name without
        /// `.wasm`.
        #[arg(long)]
        name: Option<String>,
    },
    /// List the deployed operators, and those every worker runs from its own files
    /// or built-ins.
    List,
    /// Stop deploying an operator: executions submitted from now on use a worker's
    /// own file or built-in of that name, if any (executions already submitted are
    /// unaffected).
    Remove {
        /// The class name.
        name: String,
    },
}

/// Deadline of a call: a deploy validates the component, compiling it within the
/// budget of the largest one, and stores it.
fn call_deadline() -> Duration {
    dida_worker::bounded::CompileBudget::largest().wall_time + Duration::from_secs(60)
}

/// Deadline of connecting to the scheduler.
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);

/// Runs `dida operator`.
pub async fn run(args: OperatorArgs) -> anyhow::Result<()> {
    let url = NodeUrl::parse(&args.scheduler.url).context("invalid --scheduler")?;
    let channel = lazy_channel_for_waits(&url.to_string(), CONNECT_DEADLINE, call_deadline())?;
    let mut client = OperatorsClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    match args.command {
        OperatorCommand::Deploy { file, name } => deploy(&mut client, &file, name, args.json).await,
        OperatorCommand::List => list(&mut client, args.json).await,
        OperatorCommand::Remove { name } => {
            let removed = client
                .remove(RemoveRequest { name: name.clone() })
                .await
                .map_err(|s| CallFailed::new(format!("cannot remove operator {name}"), s))?
                .into_inner()
                .removed
                .unwrap_or_default();
            if args.json {
                let event = Event::Removed {
                    operator: info(&removed),
                };
                println!("{}", event.to_json_line());
            } else {
                println!(
                    "removed {} (was sha256 {})",
                    removed.name,
                    short(&removed.digest)
                );
            }
            Ok(())
        }
    }
}

async fn deploy(
    client: &mut OperatorsClient<NodeChannel>,
    file: &Path,
    name: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let name = match name {
        Some(name) => name,
        None => file
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
            .with_context(|| format!("{} has no file name; give --name", file.display()))?,
    };
    check_operator_name(&name).map_err(anyhow::Error::msg)?;
    let component = dida_worker::registry::read_operator_file(file)
        .with_context(|| file.display().to_string())?;
    let reply = client
        .deploy(DeployRequest {
            name: name.clone(),
            component,
        })
        .await
        .map_err(|s| CallFailed::new(format!("cannot deploy {} as {name}", file.display()), s))?
        .into_inner();
    let deployed = reply.deployed.unwrap_or_default();
    if json {
        let event = Event::Deployed {
            operator: info(&deployed),
            replaced_digest: reply.replaced_digest.clone(),
        };
        println!("{}", event.to_json_line());
    } else {
        let replaced = match &reply.replaced_digest {
            Some(old) if *old == deployed.digest => " (unchanged)".to_string(),
            Some(old) => format!(" (replaces sha256 {})", short(old)),
            None => String::new(),
        };
        println!(
            "deployed {} sha256 {} ({} bytes){replaced}",
            deployed.name,
            short(&deployed.digest),
            deployed.bytes
        );
    }
    Ok(())
}

async fn list(client: &mut OperatorsClient<NodeChannel>, json: bool) -> anyhow::Result<()> {
    let reply = client
        .list(ListOperatorsRequest {})
        .await
        .map_err(|s| CallFailed::new("cannot list operators", s))?
        .into_inner();
    if json {
        let deployed = reply.deployed.iter().map(|d| ("deployed", info(d)));
        let local = reply.local.iter().map(|name| {
            let operator = OperatorInfo {
                name: name.clone(),
                digest: None,
                bytes: None,
                deployed_unix_ms: None,
            };
            ("workers", operator)
        });
        for (source, operator) in deployed.chain(local) {
            let event = Event::Listed {
                source: source.to_string(),
                operator,
            };
            println!("{}", event.to_json_line());
        }
        return Ok(());
    }
    println!(
        "{:<32} {:<9} {:<14} {:>10}  DEPLOYED",
        "NAME", "SOURCE", "SHA256", "BYTES"
    );
    for d in &reply.deployed {
        println!(
            "{:<32} {:<9} {:<14} {:>10}  {}",
            d.name,
            "deployed",
            short(&d.digest),
            d.bytes,
            rfc3339_utc(d.deployed_unix_ms)
        );
    }
    for name in &reply.local {
        println!("{name:<32} {:<9} {:<14} {:>10}  -", "workers", "-", "-");
    }
    Ok(())
}

/// A deployed operator as the `deployed`, `removed` and `listed` events show it.
fn info(d: &DeployedOperator) -> OperatorInfo {
    OperatorInfo {
        name: d.name.clone(),
        digest: Some(d.digest.clone()),
        bytes: Some(d.bytes),
        deployed_unix_ms: Some(d.deployed_unix_ms),
    }
}

/// The first 12 hexadecimal digits of a digest: enough to tell versions apart.
fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}
