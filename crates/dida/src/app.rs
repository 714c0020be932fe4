//! `dida app register|list|show|remove`: name chains of operators in a running
//! cluster (the registered applications of docs/http.md), so that `dida run NAME`
//! and `POST /v1/apps/NAME/invoke` run them; and how `dida run` finds what to run.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use dida_core::app::{check_operator_name, read_app_file};
use dida_core::events::{rfc3339_utc, Event};
use dida_core::membership::NodeUrl;
use dida_proto::registry::applications_client::ApplicationsClient;
use dida_proto::registry::{
    GetAppRequest, ListAppsRequest, RegisterAppRequest, RegisteredApp, RemoveAppRequest,
};
use dida_proto::transport::{lazy_channel_for_waits, NodeChannel};

use crate::client::SchedulerAddress;
use crate::exit::CallFailed;

/// Flags of `dida app`.
#[derive(Debug, Args)]
pub struct AppArgs {
    #[command(flatten)]
    scheduler: SchedulerAddress,
    /// Print results as JSON (one `app` event per line).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AppCommand,
}

#[derive(Debug, Subcommand)]
enum AppCommand {
    /// Register an application under a name (replacing what the name held): every
    /// operator must be deployed or run by every worker, and stays so (removing an
    /// operator a registered application uses is refused).
    Register {
        /// The application's name: letters, digits, '-', '_' or '.'.
        name: String,
        /// The application file (`operator <ClassName> <position>` per line).
        #[arg(required_unless_present = "operators", conflicts_with = "operators")]
        file: Option<std::path::PathBuf>,
        /// The operators of the chain, in order, instead of a file.
        #[arg(long, value_delimiter = ',', value_name = "A,B,…")]
        operators: Vec<String>,
    },
    /// List the registered applications.
    List,
    /// Show one registered application.
    Show {
        /// The application's name.
        name: String,
    },
    /// Unregister an application (its operators stay deployed).
    Remove {
        /// The application's name.
        name: String,
    },
}

/// Deadline of a registration: it may ask every worker which operators it runs.
const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// Deadline of connecting to the scheduler.
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);

/// A client of the scheduler's `Applications` service at `url`.
pub(crate) fn applications(url: &str) -> anyhow::Result<ApplicationsClient<NodeChannel>> {
    let url = NodeUrl::parse(url).context("invalid --scheduler")?;
    let channel = lazy_channel_for_waits(&url.to_string(), CONNECT_DEADLINE, CALL_DEADLINE)?;
    Ok(ApplicationsClient::new(channel))
}

/// Runs `dida app`.
pub async fn run(args: AppArgs) -> anyhow::Result<()> {
    let mut client = applications(&args.scheduler.url)?;
    let (change, apps) = match args.command {
        AppCommand::Register {
            name,
            file,
            operators,
        } => {
            let operators = match file {
                Some(file) => read_app_file(&file)?,
                None => checked_operators(operators)?,
            };
            let reply = client
                .register(RegisterAppRequest {
                    name: name.clone(),
                    operators,
                })
                .await
                .map_err(|s| CallFailed::new(format!("cannot register application {name}"), s))?
                .into_inner();
            let change = if reply.replaced {
                "replaced"
            } else {
                "registered"
            };
            (change, reply.app.into_iter().collect())
        }
        AppCommand::List => {
            let reply = client
                .list(ListAppsRequest {})
                .await
                .map_err(|s| CallFailed::new("cannot list the applications", s))?
                .into_inner();
            ("listed", reply.apps)
        }
        AppCommand::Show { name } => ("listed", vec![get(&mut client, &name).await?]),
        AppCommand::Remove { name } => {
            let reply = client
                .remove(RemoveAppRequest { name: name.clone() })
                .await
                .map_err(|s| CallFailed::new(format!("cannot remove application {name}"), s))?
                .into_inner();
            ("removed", reply.removed.into_iter().collect())
        }
    };
    print(change, &apps, args.json);
    Ok(())
}

/// Application `name` as registered with the scheduler of `client`.
async fn get(
    client: &mut ApplicationsClient<NodeChannel>,
    name: &str,
) -> anyhow::Result<RegisteredApp> {
    let reply = client
        .get(GetAppRequest {
            name: name.to_string(),
        })
        .await
        .map_err(|s| CallFailed::new(format!("cannot find application {name}"), s))?
        .into_inner();
    reply
        .app
        .with_context(|| format!("the scheduler answered no application for {name}"))
}

/// Checks the names of `--operators`.
fn checked_operators(operators: Vec<String>) -> anyhow::Result<Vec<String>> {
    for name in &operators {
        check_operator_name(name).map_err(|e| anyhow::anyhow!("--operators: {name:?}: {e}"))?;
    }
    anyhow::ensure!(!operators.is_empty(), "--operators names no operator");
    Ok(operators)
}

/// What `dida run` runs: the label executions list it under, and its operators.
///
/// `--operators A,B` runs those; otherwise `app` is an application file if one
/// exists at that path, else the name of a registered application (asked of the
/// scheduler at `scheduler`).
pub(crate) async fn resolve(
    scheduler: &str,
    app: Option<&str>,
    operators: Vec<String>,
) -> anyhow::Result<(String, Vec<String>)> {
    let Some(app) = app else {
        let operators = checked_operators(operators)?;
        return Ok((operators.join(","), operators));
    };
    let path = Path::new(app);
    let could_be_a_name = !app.starts_with('.')
        && app
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if path.exists() || !could_be_a_name {
        return Ok((app.to_string(), read_app_file(path)?));
    }
    let mut client = applications(scheduler)?;
    match get(&mut client, app).await {
        Ok(registered) => Ok((registered.name, registered.operators)),
        Err(error)
            if error
                .downcast_ref::<CallFailed>()
                .is_some_and(|e| e.status.code() == tonic::Code::NotFound) =>
        {
            anyhow::bail!(
                "{app:?} is neither an application file nor a registered application \
                 (dida app list shows those; dida app register {app} FILE adds one)"
            )
        }
        Err(error) => Err(error),
    }
}

/// Prints `apps` as a table, or as `app` events with `json`.
fn print(change: &str, apps: &[RegisteredApp], json: bool) {
    if json {
        for app in apps {
            let event = Event::App {
                change: change.to_string(),
                name: app.name.clone(),
                operators: app.operators.clone(),
                registered_unix_ms: app.registered_unix_ms,
            };
            println!("{}", event.to_json_line());
        }
        return;
    }
    if change != "listed" {
        for app in apps {
            println!("{change} {}: {}", app.name, app.operators.join(" -> "));
        }
        return;
    }
    println!("{:<24} {:<24} OPERATORS", "NAME", "REGISTERED");
    for app in apps {
        println!(
            "{:<24} {:<24} {}",
            app.name,
            rfc3339_utc(app.registered_unix_ms),
            app.operators.join(" -> ")
        );
    }
}
