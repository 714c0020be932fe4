//! Log set-up: everything goes through `tracing` to stderr; `RUST_LOG` overrides the
//! role's default level, `--log-format` (or `DIDA_LOG_FORMAT`) picks text for people
//! or JSON lines for machines (see docs/observability.md).

use std::io::IsTerminal;

use clap::Args;
use tracing_subscriber::EnvFilter;

/// The environment variable of `--log-format`, which the nodes a process starts
/// inherit.
pub const LOG_FORMAT_ENV: &str = "DIDA_LOG_FORMAT";

/// `--log-format`, taken by the commands that run nodes or talk to a cluster (the
/// local ones — `new`, `certs`, `completions`, `sim` — log nothing worth a format).
#[derive(Debug, Args)]
pub struct LogArgs {
    /// How to write log lines on stderr: `text` for people, `json` (one object per
    /// line, with the spans' fields such as the execution id) for machines.
    /// [default: text]
    #[arg(long, global = true, value_enum, env = LOG_FORMAT_ENV)]
    pub log_format: Option<LogFormat>,
}

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event, prefixed by the spans it happened in.
    #[default]
    Text,
    /// One JSON object per line, with the event's fields, its current span and every
    /// parent span, so the logs of all nodes can be joined on an execution id.
    Json,
}

impl LogFormat {
    /// Its name on the command line and in `DIDA_LOG_FORMAT`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Installs the global subscriber writing `format`, `default` being the filter used
/// when `RUST_LOG` is not set.
pub fn init(default: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}
