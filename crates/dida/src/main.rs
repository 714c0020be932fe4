//! `dida`: every role of the platform in one binary.
//!
//! This crate only wires the role crates to the command line: each subcommand parses
//! its flags into the role's configuration and runs it.

mod app;
mod build_operator;
mod certs;
mod client;
mod cluster;
mod compile;
mod config_file;
mod conventions;
mod dashboard;
mod env_flags;
mod executions;
mod exit;
mod faults;
mod js_operator;
mod kv;
mod logging;
mod metrics_args;
mod operator;
mod pcs;
mod puppetmaster;
mod python_operator;
mod scaffold;
mod scheduler;
mod security;
mod sim;
mod storage;
mod toolchains;
mod up;
mod worker;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// The version every subcommand's `--version` prints: the crate's, and the commit
/// it was built from (`build.rs`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("DIDA_COMMIT"),
    ")"
);

/// dida: a distributed function-as-a-service platform.
#[derive(Debug, Parser)]
#[command(name = "dida", version = VERSION, propagate_version = true, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// `--log-format` before the subcommand (`dida --log-format json worker …`), as
    /// it was always accepted; hidden so that it does not show in every
    /// subcommand's help (the subcommands that log take it themselves).
    #[arg(long, hide = true, value_enum, env = logging::LOG_FORMAT_ENV)]
    log_format: Option<logging::LogFormat>,
}

/// The flags of a subcommand that runs a node or talks to a cluster: its own, then
/// how it authenticates and how it logs, and the file its settings may also come
/// from (`--config`). Only these subcommands list them in
/// `--help`; the local ones (`new`, `certs`, `completions`, `sim`) take neither.
#[derive(Debug, clap::Args)]
struct Connected<T: clap::Args> {
    #[command(flatten)]
    args: T,
    #[command(flatten)]
    security: security::SecurityArgs,
    #[command(flatten)]
    log: logging::LogArgs,
    #[command(flatten)]
    config: config_file::ConfigArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a storage node.
    Storage(Connected<dida_settings::StorageSettings>),
    /// Run a worker.
    Worker(Connected<dida_settings::WorkerSettings>),
    /// Run the scheduler.
    Scheduler(Connected<dida_settings::SchedulerSettings>),
    /// Run an application and print its outcome.
    Run(Connected<client::RunArgs>),
    /// Fetch the outcome of an execution, and how each of its operators ran.
    Status(Connected<client::StatusArgs>),
    /// List the recent executions: id, application, status, submitted, duration.
    Executions(Connected<executions::ExecutionsArgs>),
    /// Print the log lines of an execution's operators.
    Logs(Connected<executions::LogsArgs>),
    /// Read, write and inspect the storage service from the command line.
    Kv(Connected<kv::KvArgs>),
    /// List a storage cluster's members and decommission storage nodes.
    Cluster(Connected<cluster::ClusterArgs>),
    /// Serve a web dashboard of a running cluster: nodes, ring, records, executions.
    Dashboard(Connected<dashboard::DashboardArgs>),
    /// Measure the platform against a transport baseline.
    Bench(Connected<dida_bench::BenchArgs>),
    /// Run the fault-injection suite: a workload while storage nodes are SIGKILLed.
    Faults(Connected<faults::FaultsArgs>),
    /// Simulate a storage cluster deterministically under seeded faults, and check it.
    Sim(sim::SimArgs),
    /// Run a PCS: start and kill dida nodes on this machine for a PuppetMaster.
    Pcs(Connected<pcs::PcsArgs>),
    /// Run the PuppetMaster: start a cluster, run a script or a console, crash nodes.
    #[command(alias = "pm")]
    Puppetmaster(Connected<puppetmaster::PuppetmasterArgs>),
    /// Make a development CA and a certificate per node and client, for mutual TLS.
    Certs(certs::CertsArgs),
    /// Deploy operators to a running cluster, list and remove them.
    Operator(Connected<operator::OperatorArgs>),
    /// Register applications (named chains of operators), list and remove them.
    App(Connected<app::AppArgs>),
    /// Bring a whole cluster up on this machine (storage, workers, scheduler, HTTP
    /// gateway, dashboard) until Ctrl-C, for developing operators and applications.
    Up(Connected<up::UpArgs>),
    /// Write a new operator, in Rust, Python or JavaScript, that builds anywhere (see docs/operators.md).
    New(scaffold::NewArgs),
    /// Build the operator in a directory into a WebAssembly component and print its path.
    Build(build_operator::BuildArgs),
    /// Print the shell completion script of dida for SHELL.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages of dida and of every subcommand (dida.1, dida-storage.1,
    /// dida-bench-idle.1, …) into a directory, for `man -l` or a MANPATH.
    Man {
        /// The directory to write them to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
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
        use dida_settings::RoleSettings;
        match self {
            Command::Storage(c) => c.args.id(),
            Command::Worker(c) => c.args.id(),
            Command::Scheduler(c) => c.args.id(),
            Command::Pcs(_) => "pcs",
            _ => "client",
        }
    }

    /// The authentication, log and settings-file flags of a subcommand that takes
    /// them.
    fn connection(
        &self,
    ) -> Option<(
        &security::SecurityArgs,
        &logging::LogArgs,
        &config_file::ConfigArgs,
    )> {
        macro_rules! of {
            ($($variant:ident),*) => {
                match self {
                    $(Command::$variant(c) => Some((&c.security, &c.log, &c.config)),)*
                    Command::Sim(_)
                    | Command::Certs(_)
                    | Command::New(_)
                    | Command::Build(_)
                    | Command::Completions { .. }
                    | Command::Man { .. }
                    | Command::CompileOperator(_) => None,
                }
            };
        }
        of!(
            Storage,
            Worker,
            Scheduler,
            Run,
            Status,
            Executions,
            Logs,
            Kv,
            Cluster,
            Dashboard,
            Bench,
            Faults,
            Pcs,
            Puppetmaster,
            Operator,
            App,
            Up
        )
    }
}

fn main() -> ExitCode {
    conventions::exit_quietly_on_broken_pipe();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let command = config_file::apply(env_flags::with_env_variables(Cli::command()), &args)
        .unwrap_or_else(|e| conventions::exit_on_settings_file_error(&e));
    let matches = command
        .try_get_matches_from(&args)
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
        Command::Up(_) => "warn",
        Command::Kv(_)
        | Command::Cluster(_)
        | Command::Bench(_)
        | Command::Run(_)
        | Command::Status(_)
        | Command::Operator(_)
        | Command::App(_)
        | Command::Executions(_)
        | Command::Logs(_)
        | Command::Puppetmaster(_) => "warn",
        Command::Faults(_) => "warn,dida_faults=info",
        Command::Certs(_)
        | Command::New(_)
        | Command::Build(_)
        | Command::Completions { .. }
        | Command::Man { .. } => "warn",
        // Simulated nodes would log every suspicion of every seed.
        Command::Sim(_) => "off",
        // The compiler child's stderr is the reason its parent reports.
        Command::CompileOperator(_) => "off",
    };
    let connection = cli.command.connection();
    let log_format = connection
        .and_then(|(_, log, _)| log.log_format)
        .or(cli.log_format)
        .unwrap_or_default();
    logging::init(default_log, log_format);
    // The nodes this process starts (a PuppetMaster's, a PCS's, a local cluster's)
    // log in the same format: they read it from the environment they inherit. No
    // other thread runs yet, so changing the environment is sound.
    std::env::set_var(logging::LOG_FORMAT_ENV, log_format.as_str());
    // `dida certs` makes identities; it needs none of its own (nor do the local
    // `new`, `completions`, `compile-operator` and the in-memory simulator).
    if let Some(file) = connection.and_then(|(_, _, config)| config.file()) {
        tracing::info!(file = %file.display(), "settings read from a file as well");
    }
    if let Some((security, _, _)) = connection {
        if let Err(error) = security.install(cli.command.tls_name()) {
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
            Command::Storage(c) => storage::run(c.args).await,
            Command::Worker(c) => worker::run(c.args).await,
            Command::Scheduler(c) => scheduler::run(c.args).await,
            Command::Run(c) => client::run(c.args).await,
            Command::Status(c) => client::status(c.args).await,
            Command::Executions(c) => executions::list(c.args).await,
            Command::Logs(c) => executions::logs(c.args).await,
            Command::Kv(c) => kv::run(c.args).await,
            Command::Cluster(c) => cluster::run(c.args).await,
            Command::Dashboard(c) => dashboard::run(c.args).await,
            Command::Bench(c) => dida_bench::run(c.args).await,
            Command::Faults(c) => faults::run(c.args).await,
            Command::Pcs(c) => pcs::run(c.args).await,
            Command::Puppetmaster(c) => puppetmaster::run(c.args).await,
            Command::Certs(args) => certs::run(args),
            Command::Operator(c) => operator::run(c.args).await,
            Command::App(c) => app::run(c.args).await,
            Command::Up(c) => up::run(c.args).await,
            Command::New(args) => scaffold::run(args),
            Command::Build(args) => build_operator::run(args),
            Command::CompileOperator(args) => compile::run(args),
            Command::Completions { shell } => {
                conventions::print_completions(shell, Cli::command());
                Ok(())
            }
            Command::Man { out } => conventions::write_man_pages(&out, Cli::command()),
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
