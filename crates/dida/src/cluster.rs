//! `dida cluster`: an operator's view of a storage cluster's membership, and
//! decommissioning a storage node (`members`, `remove`).
//!
//! Both ask the storage nodes named by `--peers` — a seed list: any reachable
//! member will do — through the `Membership` service. The change itself is decided
//! by the storage nodes (docs/protocols.md, "Reconfiguration"); this command only
//! asks and then watches.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use dida_core::{Membership, Standing};
use dida_storage_client::cluster::{self, ClusterCallError, MembersView, MEMBERS_DEADLINE};
use serde_json::json;

use crate::conventions::print_line;

/// Flags of `dida cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Print JSON instead of text; accepted before or after the subcommand.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: ClusterCommand,
}

/// The storage nodes a `dida cluster` command asks.
#[derive(Debug, Args)]
struct Seeds {
    /// Storage nodes to ask, ID=URL,ID=URL,… (any reachable member will do).
    #[arg(long, env = "DIDA_PEERS")]
    peers: String,
}

impl Seeds {
    fn parse(&self) -> anyhow::Result<Membership> {
        Membership::parse(&self.peers).context("invalid --peers")
    }
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// List the members with their state (alive, joining, failed, leaving,
    /// removed) and the configuration's epoch.
    Members {
        #[command(flatten)]
        seeds: Seeds,
    },
    /// Decommission storage node ID: it leaves every ring, hands its records to
    /// their new replicas, is removed and stops. Waits until it is removed unless
    /// --no-wait.
    Remove {
        /// The storage node to remove.
        id: String,
        #[command(flatten)]
        seeds: Seeds,
        /// Refuse unless the cluster is the one of this id (see `dida cluster members`).
        #[arg(long)]
        cluster_id: Option<String>,
        /// Return once the change is decided, without waiting for the handoff.
        #[arg(long)]
        no_wait: bool,
        /// Seconds to wait for the node to be removed (1 to 86400).
        #[arg(long, default_value_t = 300,
              value_parser = clap::value_parser!(u64).range(1..=86_400))]
        timeout: u64,
    },
}

/// Runs `dida cluster`.
pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Members { seeds } => {
            let reply = members(&seeds.parse()?, None).await?;
            print_members(&reply, args.json)
        }
        ClusterCommand::Remove {
            id,
            seeds,
            cluster_id,
            no_wait,
            timeout,
        } => {
            remove(
                &seeds.parse()?,
                &id,
                cluster_id,
                no_wait,
                timeout,
                args.json,
            )
            .await
        }
    }
}

/// The configuration as the seeds know it, checked (see
/// [`dida_storage_client::cluster::members`]).
async fn members(seeds: &Membership, except: Option<&str>) -> anyhow::Result<MembersView> {
    let reply = cluster::members(seeds, except, MEMBERS_DEADLINE)
        .await
        .context("asking --peers for the cluster's configuration")?;
    Ok(MembersView::of(&reply)?)
}

fn print_members(view: &MembersView, as_json: bool) -> anyhow::Result<()> {
    let (cluster_id, epoch, rows) = (&view.config.cluster_id, view.config.epoch, &view.rows);
    if as_json {
        let members: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "id": r.id, "url": r.url, "state": r.state,
                    "standing": r.standing.name(), "liveness": r.liveness,
                    "incarnation": r.incarnation,
                })
            })
            .collect();
        print_line(
            &json!({
                "cluster_id": cluster_id, "epoch": epoch, "answered_by": view.answered_by,
                "members": members,
            })
            .to_string(),
        );
        return Ok(());
    }
    print_line(&format!(
        "cluster {cluster_id}, epoch {epoch} (as {} knows it)",
        view.answered_by
    ));
    for row in rows {
        print_line(&format!("{:<12} {:<8} {}", row.id, row.state, row.url));
    }
    Ok(())
}

async fn remove(
    seeds: &Membership,
    id: &str,
    cluster_id: Option<String>,
    no_wait: bool,
    timeout: u64,
    as_json: bool,
) -> anyhow::Result<()> {
    // A node other than the one leaving is asked first: its answer does not
    // depend on the leaving node staying up.
    let decided = cluster::remove_member(seeds, id, cluster_id.as_deref().unwrap_or_default())
        .await
        .map_err(|error| match error {
            ClusterCallError::Unreachable(which) => {
                anyhow::anyhow!("no storage node of --peers is reachable: {which}")
            }
            other => anyhow::Error::new(other),
        })?;
    let epoch = decided.config.map_or(0, |c| c.epoch);
    report(as_json, id, "leaving", epoch);
    if no_wait {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        if let Ok(view) = members(seeds, Some(id)).await {
            if view.standing(id) == Some(Standing::Removed) {
                report(as_json, id, "removed", view.config.epoch);
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "{id} is still leaving after {timeout} s (it hands its records off first); \
                 `dida cluster members` shows its progress"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn report(as_json: bool, id: &str, state: &str, epoch: u64) {
    if as_json {
        print_line(&json!({"id": id, "state": state, "epoch": epoch}).to_string());
    } else {
        print_line(&format!("{id} is {state} (epoch {epoch})"));
    }
}
