//! `status`, `listServer`, `listGlobal` and `populate`: the PuppetMaster asks the
//! nodes itself, all at once and each with a deadline, and prints the answers as
//! tables (or events). A node that does not answer in time is shown as failed; no
//! command ever waits on it longer than the deadline.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use dida_core::datafile::read_data_file;
use dida_core::events::Event;
use dida_core::script::Role;
use dida_core::{Membership, Record, Standing};
use dida_proto::convert::storage_state;
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::worker_client::WorkerClient;
use dida_proto::execution::{SchedulerStatusRequest, WorkerStatusRequest};
use dida_proto::transport::lazy_channel;
use dida_storage_client::cluster::MembersView;
use dida_storage_client::StorageClient;
use futures::future::join_all;
use serde_json::{json, Value};

use crate::cluster::{Cluster, Node, NodeState};
use crate::error::CommandError;
use crate::output::{table, Printer};

/// `status`: asks every node for its status and prints one row (event) per node.
pub async fn status(cluster: &Cluster, deadline: Duration, printer: &Printer) {
    status_of(cluster, cluster.nodes(), deadline, printer).await;
}

/// Asks `nodes` (of `cluster`) for their status and prints one row (event) per
/// node: `status` for every node, `restart` for the node it restarted.
///
/// The `incarnation` column shows which life of a storage node answers (it grows
/// at every restart and rejoin); `-` for other roles. When the nodes have metrics
/// addresses (`--metrics-port-offset`), a `metrics` column shows them (and the
/// JSON details carry them as `metrics`).
///
/// Workers come and go (issue 25), so when the scheduler is among `nodes` its word
/// on each worker stands ([`with_scheduler_view`]): a worker it lists `leaving` or
/// `gone` is shown so, and a worker that registered by itself (not started by this
/// session) gets a row of its own. A node whose process ended without the
/// session's doing carries how it ended (`process_exit`, its PCS's words).
pub async fn status_of(cluster: &Cluster, nodes: &[Node], deadline: Duration, printer: &Printer) {
    let storage = cluster.storage_client().ok();
    let (answers, exits, configuration) = tokio::join!(
        join_all(
            nodes
                .iter()
                .map(|node| node_status(node, storage.as_ref(), deadline)),
        ),
        process_exits(cluster, deadline),
        configuration(cluster, deadline),
    );
    let mut rows: Vec<StatusRow> = nodes
        .iter()
        .zip(answers)
        .map(|(node, (state, mut details))| {
            let running = matches!(node.state, NodeState::Running(_) | NodeState::Leaving(_));
            if let (true, Some(how)) = (running, exits.get(&node.decl.id)) {
                details["process_exit"] = json!(how);
            }
            // A storage node removeStorage made leave, as the session knows it;
            // the cluster's configuration, when it answers, has the last word.
            let state = match node.state {
                NodeState::Leaving(_) if node.decl.role == Role::Storage => "leaving",
                _ => state,
            };
            StatusRow {
                node: node.decl.id.clone(),
                role: node.decl.role,
                url: node.decl.url.to_string(),
                metrics: node.metrics.clone(),
                state: state.to_string(),
                details,
            }
        })
        .collect();
    with_scheduler_view(&mut rows);
    with_configuration(&mut rows, configuration.as_ref());
    if configuration.is_none() {
        // No node answered `Members`: the views still list who departed.
        if let Some(client) = &storage {
            if tokio::time::timeout(deadline, client.refresh_view())
                .await
                .is_ok()
            {
                with_departed(&mut rows, &client.departed());
            }
        }
    }
    let with_metrics = rows.iter().any(|r| r.metrics.is_some());
    let mut header = vec![
        "node".to_string(),
        "role".into(),
        "state".into(),
        "incarnation".into(),
        "url".into(),
    ];
    if with_metrics {
        header.push("metrics".into());
    }
    header.push("details".into());
    let mut table_rows = vec![header];
    for row in rows {
        let event = Event::Status {
            node: row.node.clone(),
            role: row.role.to_string(),
            state: row.state.clone(),
            details: row.details.clone(),
        };
        printer.event(&event, String::new);
        let incarnation = row
            .details
            .get("incarnation")
            .map_or_else(|| "-".to_string(), |i| i.to_string());
        let mut cells = vec![
            row.node,
            row.role.to_string(),
            row.state,
            incarnation,
            row.url,
        ];
        if with_metrics {
            cells.push(row.metrics.unwrap_or_else(|| "-".into()));
        }
        cells.push(summary(&row.details));
        table_rows.push(cells);
    }
    printer.text(|| {
        let mut text = table(&table_rows);
        match &configuration {
            Some(view) => text.push_str(&format!(
                "\nstorage cluster {}, configuration epoch {} (as {} knows it)",
                view.config.cluster_id, view.config.epoch, view.answered_by
            )),
            None if nodes.iter().any(|n| n.decl.role == Role::Storage) => {
                text.push_str("\nstorage configuration: no storage node answered")
            }
            None => {}
        }
        text
    });
}

/// The storage cluster's configuration (who is a member, leaving or removed, and
/// the epoch), as the highest epoch the session's running and leaving storage
/// nodes know; `None` if none answered within `deadline`.
async fn configuration(cluster: &Cluster, deadline: Duration) -> Option<MembersView> {
    let seeds: Vec<String> = cluster
        .nodes()
        .iter()
        .filter(|n| n.decl.role == Role::Storage)
        .filter(|n| matches!(n.state, NodeState::Running(_) | NodeState::Leaving(_)))
        .map(|n| format!("{}={}", n.decl.id, n.decl.url))
        .collect();
    let seeds = Membership::parse(&seeds.join(",")).ok()?;
    let reply = dida_storage_client::cluster::members(&seeds, None, deadline)
        .await
        .ok()?;
    MembersView::of(&reply).ok()
}

/// Applies the storage cluster's configuration to the storage rows: a member
/// leaving (handing its records off) or removed is shown so — a removed node no
/// longer answers, and is gone, not failed — and every storage row carries its
/// `standing` and the `config_epoch`. Without an answer, the session's own word
/// stands (a node `removeStorage` made leave, or whose removal it saw end).
fn with_configuration(rows: &mut [StatusRow], view: Option<&MembersView>) {
    for row in rows.iter_mut().filter(|r| r.role == Role::Storage) {
        let Some(view) = view else { continue };
        let Some(standing) = view.standing(&row.node) else {
            continue;
        };
        match standing {
            Standing::Active => {}
            Standing::Joining => row.state = "joining".into(),
            Standing::Leaving => row.state = "leaving".into(),
            Standing::Removed => row.state = "removed".into(),
        }
        if let Some(details) = row.details.as_object_mut() {
            details.insert("standing".into(), json!(standing.name()));
            details.insert("config_epoch".into(), json!(view.config.epoch));
        }
    }
}

/// Applies the storage nodes' views when the configuration itself could not be
/// had: a member they list as departed is `leaving` while it still answers (it
/// hands its records off) and `removed` once it does not — not failed.
fn with_departed(rows: &mut [StatusRow], departed: &[String]) {
    for row in rows
        .iter_mut()
        .filter(|r| r.role == Role::Storage && departed.contains(&r.node))
    {
        row.state = if matches!(row.state.as_str(), "failed" | "removed") {
            "removed".into()
        } else {
            "leaving".into()
        };
        row.details["departed"] = json!(true);
    }
}

/// One row of `status`.
#[derive(Debug, Clone, PartialEq)]
struct StatusRow {
    node: String,
    role: Role,
    url: String,
    metrics: Option<String>,
    state: String,
    details: Value,
}

/// Applies the scheduler's view of the workers to `rows`, when the scheduler's row
/// is among them and it answered (its details list `worker_states` and
/// `worker_urls`): a worker it lists `leaving` or `gone` takes that state (the
/// scheduler's word decides whether it gets work, whether or not the worker still
/// answers), and every worker it lists that has no row gets one, marked
/// `registered` (it joined by itself, not through this session).
fn with_scheduler_view(rows: &mut Vec<StatusRow>) {
    let Some(scheduler) = rows.iter().find(|r| r.role == Role::Scheduler) else {
        return;
    };
    let Some(states) = scheduler
        .details
        .get("worker_states")
        .and_then(Value::as_object)
    else {
        return;
    };
    let states = states.clone();
    let urls = scheduler
        .details
        .get("worker_urls")
        .cloned()
        .unwrap_or(Value::Null);
    let loads = scheduler
        .details
        .get("worker_loads")
        .cloned()
        .unwrap_or(Value::Null);
    for (id, state) in &states {
        let Some(state) = state.as_str() else {
            continue;
        };
        match rows
            .iter_mut()
            .find(|r| r.node == *id && r.role == Role::Worker)
        {
            Some(row) => {
                if matches!(state, "leaving" | "gone") {
                    row.state = state.to_string();
                }
            }
            None => rows.push(StatusRow {
                node: id.clone(),
                role: Role::Worker,
                url: urls
                    .get(id)
                    .and_then(Value::as_str)
                    .unwrap_or("-")
                    .to_string(),
                metrics: None,
                state: state.to_string(),
                details: json!({
                    "registered": true,
                    "load": loads.get(id).cloned().unwrap_or(Value::Null),
                }),
            }),
        }
    }
}

/// How the processes of the session's nodes ended, by node id, for those whose PCS
/// (asked within `deadline`) says they are not running; a PCS that does not answer
/// in time says nothing.
async fn process_exits(cluster: &Cluster, deadline: Duration) -> HashMap<String, String> {
    let listings = join_all(
        cluster
            .pcs()
            .iter()
            .map(|pcs| tokio::time::timeout(deadline, pcs.list_nodes())),
    )
    .await;
    listings
        .into_iter()
        .filter_map(|listing| listing.ok()?.ok())
        .flatten()
        .filter(|p| !p.running && !p.exit.is_empty())
        .map(|p| (p.node_id, p.exit))
        .collect()
}

/// One node's state (`alive`, `joining` — (re)started and catching up, `fenced` —
/// declared failed by its peers, serving
/// nothing — or `failed`) and details.
async fn node_status(
    node: &Node,
    storage: Option<&StorageClient>,
    deadline: Duration,
) -> (&'static str, Value) {
    let mut process = match node.state {
        NodeState::Declared => return ("failed", json!({ "error": "not started yet" })),
        NodeState::FailedToStart => return ("failed", json!({ "error": "could not start" })),
        NodeState::Running(pid) => json!({ "pid": pid }),
        NodeState::Crashed(pid) => json!({ "pid": pid, "crashed": true }),
        NodeState::Stopped(pid) => json!({ "pid": pid, "stopped": true }),
        NodeState::Leaving(pid) => json!({ "pid": pid, "leaving": true }),
        NodeState::Removed(pid) => {
            return ("removed", json!({ "pid": pid, "removed": true }));
        }
    };
    if node.restarts > 0 {
        process["restarts"] = json!(node.restarts);
    }
    if let Some(metrics) = &node.metrics {
        process["metrics"] = json!(metrics);
    }
    let url = node.decl.url.to_string();
    let answer: Result<Value, String> = match node.decl.role {
        Role::Storage => match storage {
            Some(client) => client
                .status(&node.decl.id)
                .await
                .map(|s| {
                    json!({
                        "replica": s.replica,
                        "members": s.members.len(),
                        "keys": s.keys,
                        "records": s.records,
                        "replication_factor": s.replication_factor,
                        "max_versions": s.max_versions,
                        "write_acks": s.write_acks,
                        "gossip_delay_ms": s.gossip_delay_ms,
                        "presumed_failed": s.failed,
                        "suspected": s.suspected,
                        "fenced": s.fenced,
                        "incarnation": s.incarnation,
                        "liveness": storage_state(&s),
                    })
                })
                .map_err(|e| e.to_string()),
            None => Err("no storage client".into()),
        },
        Role::Worker => match lazy_channel(&url, deadline) {
            Ok(channel) => WorkerClient::new(channel)
                .status(WorkerStatusRequest {})
                .await
                .map(|r| {
                    let r = r.into_inner();
                    json!({
                        "running": r.running,
                        "completed": r.completed,
                        "failed": r.failed,
                        "gossip_delay_ms": r.gossip_delay_ms,
                        "presumed_failed_storage": r.failed_storage,
                    })
                })
                .map_err(|s| s.message().to_string()),
            Err(error) => Err(error.to_string()),
        },
        Role::Scheduler => match lazy_channel(&url, deadline) {
            Ok(channel) => SchedulerClient::new(channel)
                .status(SchedulerStatusRequest {})
                .await
                .map(|r| {
                    let r = r.into_inner();
                    let loads: serde_json::Map<String, Value> = r
                        .workers
                        .iter()
                        .map(|w| (w.worker_id.clone(), json!(w.load)))
                        .collect();
                    // Registered workers come and go (leases): whether each takes
                    // work, drains, or is gone.
                    let states: serde_json::Map<String, Value> = r
                        .workers
                        .iter()
                        .map(|w| (w.worker_id.clone(), json!(w.state)))
                        .collect();
                    let urls: serde_json::Map<String, Value> = r
                        .workers
                        .iter()
                        .map(|w| (w.worker_id.clone(), json!(w.url)))
                        .collect();
                    json!({
                        "executions_submitted": r.executions_submitted,
                        "executions_finished": r.executions_finished,
                        "executions_running": r.executions_running,
                        "worker_loads": loads,
                        "worker_states": states,
                        "worker_urls": urls,
                        "presumed_failed_storage": r.failed_storage,
                    })
                })
                .map_err(|s| s.message().to_string()),
            Err(error) => Err(error.to_string()),
        },
    };
    let mut details = process;
    match answer {
        Ok(Value::Object(fields)) => {
            // A storage node the others declared failed answers status but serves
            // nothing else, and a restarted one catches up before it serves: each
            // is shown as such, not as alive.
            let state = match fields.get("liveness").and_then(Value::as_str) {
                Some("fenced") => "fenced",
                Some("joining") => "joining",
                _ => "alive",
            };
            if let Some(details) = details.as_object_mut() {
                details.extend(fields);
            }
            (state, details)
        }
        Ok(_) => ("alive", details),
        Err(error) => {
            details["error"] = json!(format!("did not answer: {error}"));
            ("failed", details)
        }
    }
}

/// The details of a status as `key=value` pairs for the table (but the metrics
/// address, which has a column of its own, and the workers' URLs, which their own
/// rows show).
fn summary(details: &Value) -> String {
    match details {
        Value::Object(fields) => fields
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "metrics" | "worker_urls"))
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// `listServer` (one id) and `listGlobal` (every storage node that has not crashed):
/// every record of each node, one row (event) per record.
pub async fn list(
    cluster: &Cluster,
    ids: &[String],
    printer: &Printer,
) -> Result<(), CommandError> {
    let client = cluster.storage_client()?;
    let answers = join_all(ids.iter().map(|id| client.list(id))).await;
    let mut rows = vec![vec![
        "server".to_string(),
        "key".into(),
        "version".into(),
        "value".into(),
    ]];
    let mut failed = Vec::new();
    for (id, answer) in ids.iter().zip(answers) {
        match answer {
            Ok(mut records) => {
                records.sort_by(|a: &Record, b: &Record| {
                    a.key.cmp(&b.key).then(a.version.cmp(&b.version))
                });
                for record in &records {
                    printer.event(&Event::record(id, record), String::new);
                    rows.push(vec![
                        id.clone(),
                        record.key.clone(),
                        record.version.to_string(),
                        dida_core::record::shown_value(&record.key, &record.value).into_owned(),
                    ]);
                }
            }
            Err(error) => {
                let event = Event::Status {
                    node: id.clone(),
                    role: "storage".into(),
                    state: "failed".into(),
                    details: json!({ "error": format!("did not answer: {error}") }),
                };
                printer.event(&event, String::new);
                failed.push(format!("{id} (failed: {error})"));
            }
        }
    }
    printer.text(|| {
        let mut text = table(&rows);
        if rows.len() == 1 {
            text.push_str("\n(no records)");
        }
        for failure in &failed {
            text.push_str(&format!("\n{failure}"));
        }
        text
    });
    Ok(())
}

/// `populate`: checks the whole file, then writes its records in file order (so a
/// key written twice ends with the later value). Stops at the first failed write.
pub async fn populate(
    cluster: &Cluster,
    file: &Path,
    printer: &Printer,
) -> Result<(), CommandError> {
    let pairs = read_data_file(file)?;
    let client = cluster.storage_client()?;
    for (index, (key, value)) in pairs.iter().enumerate() {
        client
            .write(key, value)
            .await
            .map_err(|source| CommandError::PopulateStopped {
                number: index + 1,
                total: pairs.len(),
                key: key.clone(),
                source,
            })?;
    }
    printer.text(|| format!("populated {} records from {}", pairs.len(), file.display()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use dida_core::ClusterConfig;

    use super::*;

    fn row(node: &str, role: Role, state: &str, details: Value) -> StatusRow {
        StatusRow {
            node: node.into(),
            role,
            url: format!("http://127.0.0.1:1/{node}"),
            metrics: None,
            state: state.into(),
            details,
        }
    }

    #[test]
    fn the_schedulers_word_on_leaving_and_gone_workers_stands_and_strangers_get_rows() {
        let scheduler = row(
            "sched",
            Role::Scheduler,
            "alive",
            json!({
                "worker_states": {"w1": "leaving", "w2": "alive", "w3": "gone", "w9": "alive"},
                "worker_urls": {"w9": "http://10.0.0.9:4009"},
                "worker_loads": {"w9": 2},
            }),
        );
        let mut rows = vec![
            scheduler,
            row("w1", Role::Worker, "alive", json!({})),
            row("w2", Role::Worker, "alive", json!({})),
            row("w3", Role::Worker, "failed", json!({})),
            row("s1", Role::Storage, "alive", json!({})),
        ];
        with_scheduler_view(&mut rows);
        let states: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.node.as_str(), r.state.as_str()))
            .collect();
        assert_eq!(
            states,
            [
                ("sched", "alive"),
                ("w1", "leaving"),
                ("w2", "alive"),
                ("w3", "gone"),
                ("s1", "alive"),
                ("w9", "alive"),
            ]
        );
        let stranger = &rows[5];
        assert_eq!(stranger.url, "http://10.0.0.9:4009");
        assert_eq!(stranger.details, json!({"registered": true, "load": 2}));
    }

    #[test]
    fn without_the_schedulers_answer_rows_stay_as_the_nodes_said() {
        let mut rows = vec![
            row(
                "sched",
                Role::Scheduler,
                "failed",
                json!({"error": "did not answer"}),
            ),
            row("w1", Role::Worker, "alive", json!({})),
        ];
        let before = rows.clone();
        with_scheduler_view(&mut rows);
        assert_eq!(rows, before);
        let mut alone = vec![row("w1", Role::Worker, "alive", json!({}))];
        with_scheduler_view(&mut alone);
        assert_eq!(alone[0].state, "alive");
    }

    #[test]
    fn the_clusters_configuration_shows_leaving_and_removed_storage_nodes_with_the_epoch() {
        use dida_core::cluster::derived_cluster_id;
        use dida_proto::convert::config_to_wire;
        use dida_proto::storage::MembersReply;

        let membership = Membership::parse(
            "s1=http://127.0.0.1:1,s2=http://127.0.0.1:2,s3=http://127.0.0.1:3,s4=http://127.0.0.1:4",
        )
        .unwrap();
        let config = ClusterConfig::initial(derived_cluster_id(&membership), &membership)
            .begin_leave("s4", 3)
            .unwrap();
        let leaving = MembersView::of(&MembersReply {
            id: "s1".into(),
            config: Some(config_to_wire(&config)),
            view: vec![],
        })
        .unwrap();
        let removed = MembersView::of(&MembersReply {
            id: "s1".into(),
            config: Some(config_to_wire(&config.finish_leave("s4").unwrap())),
            view: vec![],
        })
        .unwrap();
        let fresh = || {
            vec![
                row("s1", Role::Storage, "alive", json!({"pid": 1})),
                row(
                    "s4",
                    Role::Storage,
                    "failed",
                    json!({"error": "did not answer"}),
                ),
                row("w1", Role::Worker, "alive", json!({})),
            ]
        };
        let mut rows = fresh();
        with_configuration(&mut rows, Some(&leaving));
        assert_eq!(rows[0].state, "alive");
        assert_eq!(rows[0].details["standing"], "active");
        assert_eq!(rows[1].state, "leaving");
        assert_eq!(rows[1].details["config_epoch"], 1);
        assert_eq!(rows[2].details, json!({}), "workers are not members");
        let mut rows = fresh();
        with_configuration(&mut rows, Some(&removed));
        assert_eq!(rows[1].state, "removed", "gone, not failed");
        assert_eq!(rows[1].details["config_epoch"], 2);
        let mut rows = fresh();
        with_configuration(&mut rows, None);
        assert_eq!(rows, fresh(), "without an answer the rows stand");
    }

    #[test]
    fn without_the_configuration_the_views_departed_members_are_leaving_or_removed() {
        let mut rows = vec![
            row("s1", Role::Storage, "alive", json!({})),
            row("s3", Role::Storage, "alive", json!({})),
            row(
                "s4",
                Role::Storage,
                "failed",
                json!({"error": "did not answer"}),
            ),
            row("w1", Role::Worker, "alive", json!({})),
        ];
        with_departed(&mut rows, &["s3".to_string(), "s4".to_string()]);
        let states: Vec<&str> = rows.iter().map(|r| r.state.as_str()).collect();
        assert_eq!(states, ["alive", "leaving", "removed", "alive"]);
        assert_eq!(rows[2].details["departed"], true);
        assert!(rows[0].details.get("departed").is_none());
    }

    #[test]
    fn the_table_leaves_out_what_has_a_column_or_a_row_of_its_own() {
        let details = json!({"pid": 7, "metrics": "127.0.0.1:9", "worker_urls": {"w1": "x"}});
        assert_eq!(summary(&details), "pid=7");
    }
}
