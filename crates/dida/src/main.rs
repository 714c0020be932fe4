//! `dida`: every role of the platform in one binary.
//!
//! This crate only wires the role crates to the command line: each subcommand parses
//! its flags into the role's configuration and runs it.

mod certs;
mod client;
mod compile;
mod conventions;
mod dashboard;
mod executions;
mod exit;
mod faults;
mod kv;
mod logging;
mod metrics_args;
mod operator;
mod pcs;
mod puppetmaster;
mod scaffold;
mod scheduler;
mod security;
mod sim;
mod storage;
mod worker;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// dida: a distributed function-as-a-service platform.
#[derive(Debug, Parser)]
#[command(name = "dida", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    security: security::SecurityArgs,
    /// How to write log lines on stderr: `text` for people, `json` (one object per
    /// line, with the spans' fields such as the execution id) for machines.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = logging::LogFormat::Text,
        env = "DIDA_LOG_FORMAT"
    )]
    log_format: logging::LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a storage node.
    Storage(storage::StorageArgs),
    /// Run a worker.
    Worker(worker::WorkerArgs),
    /// Run the scheduler.
    Scheduler(scheduler::SchedulerArgs),
    /// Run an application and print its outcome.
    Run(client::RunArgs),
    /// Fetch the outcome of an execution, and how each of its operators ran.
    Status(client::StatusArgs),
    /// List the recent executions: id, application, status, submitted, duration.
    Executions(executions::ExecutionsArgs),
    /// Print the log lines of an execution's operators.
    Logs(executions::LogsArgs),
    /// Read, write and inspect the storage service from the command line.
    Kv(kv::KvArgs),
    /// Serve a web dashboard of a running cluster: nodes, ring, records, executions.
    Dashboard(dashboard::DashboardArgs),
    /// Measure the platform against a transport baseline.
    Bench(dida_bench::BenchArgs),
    /// Run the fault-injection suite: a workload while storage nodes are SIGKILLed.
    Faults(faults::FaultsArgs),
    /// Simulate a storage cluster deterministically under seeded faults, and check it.
    Sim(sim::SimArgs),
    /// Run a PCS: start and kill dida nodes on this machine for a PuppetMaster.
    Pcs(pcs::PcsArgs),
    /// Run the PuppetMaster: start a cluster, run a script or a console, crash nodes.
    #[command(alias = "pm")]
    Puppetmaster(puppetmaster::PuppetmasterArgs),
    /// Make a development CA and a certificate per node and client, for mutual TLS.
    Certs(certs::CertsArgs),
    /// Deploy operators to a running cluster, list and remove them.
    Operator(operator::OperatorArgs),
    /// Write a new operator crate that builds anywhere (see docs/operators.md).
    New(scaffold::NewArgs),
    /// Print the shell completion script of dida for SHELL.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Compile one untrusted operator within a budget, for the scheduler or a
    /// worker that started this process (internal, see `dida_worker::bounded`).
    #[command(hide = true, name = dida_worker::bounded::COMPILE_SUBCOMMAND)]
    CompileOperator(compile::CompileArgs),
}

impl Command {
    /// The certificate this process presents by default: a node's own id, else its
    /// role's usual name (see `dida certs`).
    fn tls_name(&self) -> &str {
        match self {
            Command::Storage(args) => args.id(),
            Command::Worker(args) => args.id(),
            Command::Scheduler(args) => args.id(),
            Command::Pcs(_) => "pcs",
            _ => "client",
        }
    }
}

fn main() -> ExitCode {
    conventions::exit_quietly_on_broken_pipe();
    let matches = Cli::command()
        .try_get_matches()
        .unwrap_or_else(|e| conventions::exit_on_usage_error(e));
    let json = conventions::wants_json(&matches);
    let command_path = conventions::command_path(&matches);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let default_log = match cli.command {
        Command::Storage(_)
        | Command::Worker(_)
        | Command::Scheduler(_)
        | Command::Pcs(_)
        | Command::Dashboard(_) => "info",
        Command::Kv(_)
        | Command::Bench(_)
        | Command::Run(_)
        | Command::Status(_)
        | Command::Operator(_)
        | Command::Executions(_)
        | Command::Logs(_)
        | Command::Puppetmaster(_) => "warn",
        Command::Faults(_) => "warn,dida_faults=info",
        Command::Certs(_) | Command::New(_) | Command::Completions { .. } => "warn",
        // Simulated nodes would log every suspicion of every seed.
        Command::Sim(_) => "off",
        // The compiler child's stderr is the reason its parent reports.
        Command::CompileOperator(_) => "off",
    };
    logging::init(default_log, cli.log_format);
    // The nodes this process starts (a PuppetMaster's, a PCS's, a local cluster's)
    // log in the same format: they read it from the environment they inherit. No
    // other thread runs yet, so changing the environment is sound.
    std::env::set_var("DIDA_LOG_FORMAT", cli.log_format.as_str());
    // `dida certs` makes identities; it needs none of its own (nor do the local
    // `new`, `completions`, `compile-operator` and the in-memory simulator).
    if !matches!(
        cli.command,
        Command::Certs(_)
            | Command::New(_)
            | Command::Completions { .. }
            | Command::CompileOperator(_)
            | Command::Sim(_)
    ) {
        let tls_name = cli.command.tls_name().to_string();
        if let Err(error) = cli.security.install(&tls_name) {
            conventions::report_error(json, &command_path, &error);
            return exit::Exit::of(&error).into();
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return exit::Exit::Failure.into();
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            // Each seed runs on a runtime of its own, so on a blocking thread.
            Command::Sim(args) => match tokio::task::spawn_blocking(move || sim::run(args)).await {
                Ok(result) => result,
                Err(error) => Err(anyhow::anyhow!("the simulator panicked: {error}")),
            },
            Command::Storage(args) => storage::run(args).await,
            Command::Worker(args) => worker::run(args).await,
            Command::Scheduler(args) => scheduler::run(args).await,
            Command::Run(args) => client::run(args).await,
            Command::Status(args) => client::status(args).await,
            Command::Executions(args) => executions::list(args).await,
            Command::Logs(args) => executions::logs(args).await,
            Command::Kv(args) => kv::run(args).await,
            Command::Dashboard(args) => dashboard::run(args).await,
            Command::Bench(args) => dida_bench::run(args).await,
            Command::Faults(args) => faults::run(args).await,
            Command::Pcs(args) => pcs::run(args).await,
            Command::Puppetmaster(args) => puppetmaster::run(args).await,
            Command::Certs(args) => certs::run(args),
            Command::Operator(args) => operator::run(args).await,
            Command::New(args) => scaffold::run(args),
            Command::CompileOperator(args) => compile::run(args),
            Command::Completions { shell } => {
                conventions::print_completions(shell, Cli::command());
                Ok(())
            }
        }
    });
    // The exit status says which outcome it was (see `exit` and the README's
    // table), chosen by the error's type.
    match result {
        Ok(()) => exit::Exit::Success.into(),
        Err(error) => {
            let exit = exit::Exit::of(&error);
            if exit.reports_error() {
                conventions::report_error(json, &command_path, &error);
            }
            exit.into()
        }
    }
}
