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
use dida_proto::convert::{config_from_wire, liveness_from_wire};
use dida_proto::storage::membership_client::MembershipClient;
use dida_proto::storage::{
    Liveness as WireLiveness, MembersReply, MembersRequest, RemoveMemberRequest,
};
use dida_proto::transport::{is_connect_failure, lazy_channel, NodeChannel};
use serde_json::json;

use crate::conventions::print_line;

/// How long one `Members` call may take.
const MEMBERS_DEADLINE: Duration = Duration::from_secs(5);
/// How long a `RemoveMember` call may take: the nodes' own proposal deadline (10 s)
/// and some.
const REMOVE_DEADLINE: Duration = Duration::from_secs(15);

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

fn client(url: &str, deadline: Duration) -> anyhow::Result<MembershipClient<NodeChannel>> {
    Ok(MembershipClient::new(
        lazy_channel(url, deadline).with_context(|| format!("bad node URL {url}"))?,
    ))
}

/// The configuration as the seeds know it: the answer with the highest epoch
/// among those that answer (skipping `except`), so a node that is behind does not
/// hide a change.
async fn members(seeds: &Membership, except: Option<&str>) -> anyhow::Result<MembersReply> {
    let mut best: Option<MembersReply> = None;
    let mut errors = Vec::new();
    for seed in seeds
        .members()
        .iter()
        .filter(|m| Some(m.id.as_str()) != except)
    {
        let answer = client(&seed.url.to_string(), MEMBERS_DEADLINE)?
            .members(MembersRequest {})
            .await;
        match answer {
            Ok(reply) => {
                let reply = reply.into_inner();
                let epoch = |r: &MembersReply| r.config.as_ref().map_or(0, |c| c.epoch);
                if best.as_ref().is_none_or(|b| epoch(&reply) > epoch(b)) {
                    best = Some(reply);
                }
            }
            Err(status) => errors.push(format!("{} ({}): {}", seed.id, seed.url, status.message())),
        }
    }
    best.ok_or_else(|| {
        anyhow::anyhow!("no storage node of --peers answered: {}", errors.join("; "))
    })
}

/// One member's row: id, URL, state, standing, liveness and incarnation.
struct Row {
    id: String,
    url: String,
    state: &'static str,
    standing: Standing,
    liveness: &'static str,
    incarnation: u64,
}

fn rows(reply: &MembersReply) -> anyhow::Result<(String, u64, Vec<Row>)> {
    let config = config_from_wire(
        reply
            .config
            .clone()
            .context("the node sent no configuration")?,
    )
    .map_err(|why| anyhow::anyhow!("the node sent a malformed configuration: {why}"))?;
    let rows = config
        .members
        .iter()
        .map(|member| {
            let seen = reply.view.iter().find(|v| v.id == member.id);
            let liveness = seen
                .and_then(|v| WireLiveness::try_from(v.liveness).ok())
                .map_or("unknown", |l| liveness_from_wire(l).name());
            let state = match member.standing {
                Standing::Active => liveness,
                other => other.name(),
            };
            Row {
                id: member.id.clone(),
                url: member.url.clone(),
                state,
                standing: member.standing,
                liveness,
                incarnation: seen.map_or(0, |v| v.incarnation),
            }
        })
        .collect();
    Ok((config.cluster_id, config.epoch, rows))
}

fn print_members(reply: &MembersReply, as_json: bool) -> anyhow::Result<()> {
    let (cluster_id, epoch, rows) = rows(reply)?;
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
                "cluster_id": cluster_id, "epoch": epoch, "answered_by": reply.id,
                "members": members,
            })
            .to_string(),
        );
        return Ok(());
    }
    print_line(&format!(
        "cluster {cluster_id}, epoch {epoch} (as {} knows it)",
        reply.id
    ));
    for row in &rows {
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
    // Ask a node other than the one leaving if there is one: its answer does not
    // depend on the leaving node staying up.
    let mut order: Vec<_> = seeds.members().iter().filter(|m| m.id != id).collect();
    order.extend(seeds.members().iter().filter(|m| m.id == id));
    let request = RemoveMemberRequest {
        id: id.to_string(),
        cluster_id: cluster_id.unwrap_or_default(),
    };
    let mut unreachable = Vec::new();
    let mut decided = None;
    for seed in order {
        match client(&seed.url.to_string(), REMOVE_DEADLINE)?
            .remove_member(request.clone())
            .await
        {
            Ok(reply) => {
                decided = Some(reply.into_inner());
                break;
            }
            Err(status) if is_connect_failure(&status) => {
                unreachable.push(format!("{} ({})", seed.id, seed.url));
            }
            Err(status) => bail!("{} refused: {}", seed.id, status.message()),
        }
    }
    let Some(decided) = decided else {
        bail!(
            "no storage node of --peers is reachable: {}",
            unreachable.join(", ")
        );
    };
    let epoch = decided.config.map_or(0, |c| c.epoch);
    report(as_json, id, "leaving", epoch);
    if no_wait {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        if let Ok(reply) = members(seeds, Some(id)).await {
            let (_, epoch, rows) = rows(&reply)?;
            if rows
                .iter()
                .any(|r| r.id == id && r.standing == Standing::Removed)
            {
                report(as_json, id, "removed", epoch);
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
