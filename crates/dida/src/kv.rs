//! `dida kv`: the storage service from the command line.
//!
//! A thin shell around [`dida_storage_client::StorageClient`]: it routes like any
//! client, prints readable lines (or, with `--json`, the events of SPEC §6.3), and
//! reports every failure with the node it concerns.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use dida_core::datafile::read_data_file;
use dida_core::events::Event;
use dida_core::limits::{check_deadline_ms, check_vnodes, replication_factor};
use dida_core::{Membership, Record, Version};
use dida_proto::convert::{storage_state, view_summary};
use dida_storage_client::{ClientConfig, StorageClient};

use crate::conventions::print_line;
use crate::exit::{CasNotSwapped, KeyMissing};

/// Flags of `dida kv`.
#[derive(Debug, Args)]
pub struct KvArgs {
    /// Every storage node: ID=URL,ID=URL,…
    #[arg(long, env = "DIDA_PEERS")]
    peers: String,
    /// Replication factor the nodes were started with (1 to the number of peers;
    /// default 3, or the number of peers if fewer).
    #[arg(long)]
    replication_factor: Option<usize>,
    /// Virtual nodes per storage node the nodes were started with (1 to 4096).
    #[arg(long, default_value_t = 128)]
    vnodes: u32,
    /// Deadline of every call, in milliseconds (1 to 3600000).
    #[arg(long, default_value_t = 5000)]
    deadline: u64,
    /// Print one JSON event per line instead of text (errors too, as `error`
    /// events); accepted before or after the subcommand.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: KvCommand,
}

#[derive(Debug, Subcommand)]
enum KvCommand {
    /// Read the newest version of KEY (or exactly --version) from one of its replicas.
    // `--version` here is a record's version, not the program's.
    #[command(disable_version_flag = true)]
    Read {
        /// The key to read.
        key: String,
        /// Exact version to read, as NUMBER.REPLICA (for example 3.1).
        #[arg(long)]
        version: Option<Version>,
        /// Ask this node instead of a replica chosen by the client.
        #[arg(long)]
        server: Option<String>,
    },
    /// Write VALUE to KEY.
    Write {
        /// The key to write.
        key: String,
        /// Its new value.
        value: String,
    },
    /// Write NEW to KEY only if its newest value is OLD (compare-and-swap); exits
    /// with status 3 when the value was not OLD (nothing written).
    #[command(
        after_help = "Exit status: 0 when NEW was written, 3 when the value was not \
        OLD and nothing was written, 1 on an error, 2 on a usage error."
    )]
    Cas {
        /// The key to update.
        key: String,
        /// The value the key must have for the update to happen.
        old: String,
        /// The value to write.
        new: String,
    },
    /// Write every key,value line of FILE (checked whole before anything is written).
    Populate {
        /// A data file: one `key,value` per line.
        file: PathBuf,
    },
    /// List every record of one node (--server) or of every node.
    List {
        /// The storage node to list (its id); every node without it.
        #[arg(long)]
        server: Option<String>,
    },
    /// Show the status of one node (--server) or of every node.
    Status {
        /// The storage node to ask (its id); every node without it.
        #[arg(long)]
        server: Option<String>,
    },
}

/// Runs one `dida kv` command.
pub async fn run(args: KvArgs) -> anyhow::Result<()> {
    let membership = Membership::parse(&args.peers).context("invalid --peers")?;
    let replication_factor = replication_factor(args.replication_factor, membership.len())
        .map_err(anyhow::Error::msg)?;
    check_vnodes(args.vnodes).map_err(anyhow::Error::msg)?;
    let deadline = check_deadline_ms("--deadline", args.deadline).map_err(anyhow::Error::msg)?;
    let client = StorageClient::new(
        membership,
        ClientConfig {
            replication_factor,
            vnodes: args.vnodes,
            deadline,
            ..ClientConfig::default()
        },
    )?;
    let out = Printer { json: args.json };
    match args.command {
        KvCommand::Read {
            key,
            version,
            server,
        } => {
            let (served_by, record) = match server {
                Some(server) => {
                    let record = client.read_from(&server, &key, version).await?;
                    (server, record)
                }
                None => client.read_with_server(&key, version).await?,
            };
            match record {
                Some(record) => out.record(&served_by, &record),
                None => {
                    return Err(KeyMissing {
                        server: served_by,
                        key,
                        version,
                    }
                    .into())
                }
            }
        }
        KvCommand::Write { key, value } => {
            let version = client.write(&key, &value).await?;
            out.event(
                Event::Write {
                    key: key.clone(),
                    version,
                },
                || format!("{key} written at version {version}"),
            );
        }
        KvCommand::Cas { key, old, new } => {
            let version = client.update_if_value_is(&key, &old, &new).await?;
            let applied = version.is_some();
            out.event(
                Event::Cas {
                    key: key.clone(),
                    applied,
                    version,
                },
                || match version {
                    Some(v) => format!("{key}: {old} -> {new} at version {v}"),
                    None => format!("{key}: not updated (its value is not {old:?})"),
                },
            );
            if !applied {
                // The result is printed; the exit status tells a lost race apart.
                return Err(CasNotSwapped { key, expected: old }.into());
            }
        }
        KvCommand::Populate { file } => populate(&client, &file, &out).await?,
        KvCommand::List { server } => {
            let mut failed = Vec::new();
            let mut last_error = None;
            for id in selected_nodes(&client, server)? {
                let listed = client
                    .list_pages(&id, |page| page.iter().for_each(|r| out.record(&id, r)))
                    .await;
                if let Err(error) = listed {
                    out.error("list", &error.to_string());
                    failed.push(id);
                    last_error = Some(error);
                }
            }
            if let Some(error) = last_error {
                // The last failure stays the typed cause (an unreachable node
                // exits as such).
                return Err(anyhow::Error::new(error)
                    .context(format!("could not list {}", failed.join(", "))));
            }
        }
        KvCommand::Status { server } => {
            // A node removed from the cluster (`dida cluster remove`) stopped on
            // purpose: it is "removed", not "failed", when it does not answer.
            client.refresh_view().await;
            let departed = client.departed();
            for id in selected_nodes(&client, server)? {
                let (state, details) = match client.status(&id).await {
                    Ok(s) => (
                        storage_state(&s),
                        serde_json::json!({
                            "url": s.url, "replica": s.replica, "keys": s.keys,
                            "records": s.records, "replication_factor": s.replication_factor,
                            "max_versions": s.max_versions, "write_acks": s.write_acks,
                            "gossip_delay_ms": s.gossip_delay_ms, "vnodes": s.vnodes,
                            "presumed_failed": s.failed, "suspected": s.suspected,
                            "fenced": s.fenced,
                            "incarnation": s.incarnation,
                            "view": view_summary(&s.view),
                            "replication": s.replication.map(|r| serde_json::json!({
                                "push_messages_sent": r.push_messages_sent,
                                "records_pushed": r.records_pushed,
                                "push_bytes_sent": r.push_bytes_sent,
                                "push_failures": r.push_failures,
                                "anti_entropy_rounds": r.anti_entropy_rounds,
                                "anti_entropy_bytes_sent": r.anti_entropy_bytes_sent,
                                "anti_entropy_bytes_received": r.anti_entropy_bytes_received,
                                "records_repaired": r.records_repaired,
                                "handoff_records_sent": r.handoff_records_sent,
                                "handoff_bytes_sent": r.handoff_bytes_sent,
                                "records_dropped": r.records_dropped,
                                "bytes_dropped": r.bytes_dropped,
                            })),
                        }),
                    ),
                    Err(error) if departed.contains(&id) => {
                        ("removed", serde_json::json!({ "error": error.to_string() }))
                    }
                    Err(error) => ("failed", serde_json::json!({ "error": error.to_string() })),
                };
                out.event(
                    Event::Status {
                        node: id.clone(),
                        role: "storage".into(),
                        state: state.into(),
                        details: details.clone(),
                    },
                    || format!("{id:<8} storage  {state:<6} {details}"),
                );
            }
        }
    }
    Ok(())
}

/// The nodes a `list`/`status` concerns: the one named, or all.
fn selected_nodes(client: &StorageClient, server: Option<String>) -> anyhow::Result<Vec<String>> {
    match server {
        Some(id) => {
            client.membership().index_of(&id)?;
            Ok(vec![id])
        }
        None => Ok(client.membership().ids().map(String::from).collect()),
    }
}

/// Validates the whole file, then writes it line by line. On a failure, the lines
/// before it stay written (and are reported), the rest are not attempted.
async fn populate(
    client: &StorageClient,
    file: &std::path::Path,
    out: &Printer,
) -> anyhow::Result<()> {
    let pairs = read_data_file(file)?;
    for (index, (key, value)) in pairs.iter().enumerate() {
        if let Err(error) = client.write(key, value).await {
            let this_one = if error.may_have_applied() {
                ", and this one may have been"
            } else {
                ""
            };
            return Err(anyhow::Error::new(error).context(format!(
                "populate stopped at record {} of {} (key {key:?}); the {index} records \
                 before it were written and are kept{this_one}",
                index + 1,
                pairs.len()
            )));
        }
    }
    out.text(|| format!("populated {} records from {}", pairs.len(), file.display()));
    Ok(())
}

/// Prints results as text or as JSON events.
struct Printer {
    json: bool,
}

impl Printer {
    fn record(&self, server: &str, record: &Record) {
        self.event(Event::record(server, record), || {
            format!(
                "{server:<8} {:<24} {:>8} {}",
                record.key,
                record.version.to_string(),
                dida_core::record::shown_value(&record.key, &record.value)
            )
        });
    }

    fn event(&self, event: Event, text: impl FnOnce() -> String) {
        if self.json {
            print_line(&event.to_json_line());
        } else {
            print_line(&text());
        }
    }

    fn text(&self, text: impl FnOnce() -> String) {
        if !self.json {
            print_line(&text());
        }
    }

    fn error(&self, command: &str, message: &str) {
        if self.json {
            let event = Event::Error {
                line: None,
                command: command.to_string(),
                message: message.to_string(),
            };
            print_line(&event.to_json_line());
        } else {
            eprintln!("error: {message}");
        }
    }
}
