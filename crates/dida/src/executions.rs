//! `dida executions` and `dida logs`: inspect the executions the scheduler keeps —
//! the recent ones with their status and duration, and the log lines of one. Output
//! goes through `conventions` (a closed pipe ends the command quietly).

use std::fmt::Write as _;
use std::time::Duration;

use clap::Args;
use dida_core::events::{rfc3339_utc, Event};
use dida_proto::execution::{ExecutionLogsRequest, ListExecutionsRequest, LogLine};
use dida_scheduler::executions::level_name;

use crate::client::{scheduler, SchedulerAddress};
use crate::conventions::{print_bytes, print_line};
use crate::exit::CallFailed;

/// Flags of `dida executions`.
#[derive(Debug, Args)]
pub struct ExecutionsArgs {
    #[command(flatten)]
    scheduler: SchedulerAddress,
    /// List at most this many, newest first (1 to 1000).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: u32,
    /// Print one `execution` event per line, as JSON.
    #[arg(long)]
    json: bool,
}

/// Flags of `dida logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    scheduler: SchedulerAddress,
    /// The execution id (`dida run --async` and `dida executions` print it).
    id: String,
    /// Print one `log` event per line, as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `dida executions`.
pub async fn list(args: ExecutionsArgs) -> anyhow::Result<()> {
    let reply = scheduler(&args.scheduler.url, Duration::ZERO)?
        .list_executions(ListExecutionsRequest { limit: args.limit })
        .await
        .map_err(|s| {
            CallFailed::new(
                format!("cannot list the executions of {}", args.scheduler.url),
                s,
            )
        })?
        .into_inner();
    let events: Vec<Event> = reply
        .executions
        .into_iter()
        .map(|e| Event::Execution {
            duration_ms: e
                .ended_unix_ms
                .map(|end| end.saturating_sub(e.submitted_unix_ms)),
            submitted: rfc3339_utc(e.submitted_unix_ms),
            id: e.execution_id,
            app: e.app,
            status: e.status,
        })
        .collect();
    if args.json {
        for event in &events {
            print_line(&event.to_json_line());
        }
    } else {
        print_bytes(execution_table(&events).as_bytes());
    }
    Ok(())
}

/// The table `dida executions` prints: id, application, status, submitted, duration.
fn execution_table(events: &[Event]) -> String {
    let mut rows = vec![[
        "ID".to_string(),
        "APP".to_string(),
        "STATUS".to_string(),
        "SUBMITTED".to_string(),
        "DURATION".to_string(),
    ]];
    for event in events {
        if let Event::Execution {
            id,
            app,
            status,
            submitted,
            duration_ms,
        } = event
        {
            rows.push([
                id.clone(),
                app.clone(),
                status.clone(),
                submitted.clone(),
                duration_ms.map_or_else(|| "-".to_string(), |ms| format!("{ms} ms")),
            ]);
        }
    }
    let widths: Vec<usize> = (0..5)
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut table = String::new();
    for row in &rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        table.push_str(line.trim_end());
        table.push('\n');
    }
    table
}

/// Runs `dida logs`.
pub async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let reply = scheduler(&args.scheduler.url, Duration::ZERO)?
        .execution_logs(ExecutionLogsRequest {
            execution_id: args.id.clone(),
        })
        .await
        .map_err(|s| CallFailed::new(format!("cannot fetch the logs of {}", args.id), s))?
        .into_inner();
    for line in &reply.lines {
        if args.json {
            print_line(&log_event(&args.id, line).to_json_line());
        } else {
            print_line(&format!(
                "[{}] {} {}: {}",
                line.order,
                line.operator,
                level_name(line.level),
                line.text
            ));
        }
    }
    if !reply.finished {
        eprintln!(
            "execution {} is still running: its operators' lines arrive with its outcome",
            args.id
        );
    }
    Ok(())
}

fn log_event(id: &str, line: &LogLine) -> Event {
    Event::Log {
        id: id.to_string(),
        order: line.order,
        operator: line.operator.clone(),
        level: level_name(line.level).to_string(),
        text: line.text.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_its_columns_and_marks_running_executions() {
        let events = [
            Event::Execution {
                id: "b-2".into(),
                app: "long-application.txt".into(),
                status: "running".into(),
                submitted: rfc3339_utc(0),
                duration_ms: None,
            },
            Event::Execution {
                id: "b-1".into(),
                app: "a.txt".into(),
                status: "succeeded".into(),
                submitted: rfc3339_utc(1000),
                duration_ms: Some(12),
            },
        ];
        let table = execution_table(&events);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines,
            [
                "ID   APP                   STATUS     SUBMITTED                 DURATION",
                "b-2  long-application.txt  running    1970-01-01T00:00:00.000Z  -",
                "b-1  a.txt                 succeeded  1970-01-01T00:00:01.000Z  12 ms",
            ]
        );
    }
}
