//! `dida pm --dashboard ADDR`: the session's web dashboard. It follows the nodes
//! the session declares and starts, mirrors everything the PuppetMaster prints
//! (debug reports included) and hands the script lines typed into the page to the
//! console, which runs them in turn with the terminal's.

use std::net::SocketAddr;
use std::sync::Arc;

use dida_dashboard::{DashboardConfig, DashboardHandle, Feed, ScriptRequest, Topology};
use tokio::sync::{mpsc, watch};

use crate::output::Printer;
use crate::session::Session;

/// How many typed lines may wait for the console (a page waits for each answer, so
/// only several open pages fill it).
const WAITING_LINES: usize = 16;

/// Starts the dashboard on `listen`; returns it and the lines typed into it.
pub async fn start(
    listen: SocketAddr,
    session: &mut Session,
    printer: &Printer,
) -> anyhow::Result<(DashboardHandle, mpsc::Receiver<ScriptRequest>)> {
    let feed = Arc::new(Feed::default());
    printer.mirror_to(feed.clone());
    let (topology_tx, topology) = watch::channel(Topology::default());
    session.publish_topology(topology_tx);
    let (lines_tx, lines) = mpsc::channel(WAITING_LINES);
    let handle = dida_dashboard::start(DashboardConfig {
        listen,
        topology,
        feed: Some(feed),
        script: Some(lines_tx),
    })
    .await?;
    printer.note(&format!(
        "dashboard: http://{}/ (script lines typed there run here)",
        handle.local_addr()
    ));
    if !listen.ip().is_loopback() {
        printer.note(&format!(
            "warning: the dashboard listens on {listen}: anyone who can reach it can run \
             script lines (crash nodes, list records); keep it on loopback or behind an \
             authenticating proxy"
        ));
    }
    Ok((handle, lines))
}
