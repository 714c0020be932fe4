//! The dashboard's routes: the page (HTML, script and style compiled into the
//! binary), the latest snapshot, a server-sent event stream of snapshots and feed
//! lines, the records browser and the script console.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::feed::{Feed, FeedKind, FeedLine, ScriptRequest};
use crate::snapshot::Snapshot;
use crate::topology::Topology;
use crate::{origin, records};

/// How long the page waits for a script line to run before it answers "still
/// running" (its output keeps arriving through the feed).
const SCRIPT_ANSWER_LIMIT: Duration = Duration::from_secs(30);

/// What every route reads.
#[derive(Clone)]
pub(crate) struct AppState {
    /// The latest snapshot of the cluster.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// The nodes watched (the records browser reads them).
    pub topology: watch::Receiver<Topology>,
    /// The PuppetMaster's feed, if a PuppetMaster runs the page.
    pub feed: Option<Arc<Feed>>,
    /// Where typed script lines go, if a PuppetMaster runs the page.
    pub script: Option<mpsc::Sender<ScriptRequest>>,
}

/// Every route of the dashboard over `state`, answering only requests addressed
/// to `listen` from its own page (see [`crate::origin`]).
pub(crate) fn router(state: AppState, listen: SocketAddr) -> Router {
    Router::new()
        .route(
            "/",
            get(|| {
                asset(
                    "text/html; charset=utf-8",
                    include_str!("../assets/index.html"),
                )
            }),
        )
        .route(
            "/app.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../assets/app.js"),
                )
            }),
        )
        .route(
            "/style.css",
            get(|| {
                asset(
                    "text/css; charset=utf-8",
                    include_str!("../assets/style.css"),
                )
            }),
        )
        .route("/api/snapshot", get(snapshot))
        .route("/api/events", get(events))
        .route("/api/records", get(lookup))
        .route("/api/script", post(script))
        .with_state(state)
        .layer(middleware::from_fn_with_state(listen, origin::check))
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn snapshot(State(state): State<AppState>) -> Response {
    let snapshot = state.snapshots.borrow().clone();
    Json(json!({ "snapshot": *snapshot, "console": state.script.is_some() })).into_response()
}

/// Every new snapshot (`snapshot` events) and, beside a PuppetMaster, its feed
/// (`feed` events: the lines kept, then each new one).
async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (kept, lines) = match &state.feed {
        Some(feed) => {
            let (kept, rx) = feed.subscribe();
            (kept, Some(rx))
        }
        None => (Vec::new(), None),
    };
    let mut snapshots = state.snapshots.clone();
    snapshots.mark_changed();
    let hello = Event::default().event("hello").data(
        json!({ "console": state.script.is_some(), "feed": state.feed.is_some() }).to_string(),
    );
    let start = futures::stream::iter(
        std::iter::once(hello)
            .chain(kept.iter().map(feed_event))
            .map(Ok)
            .collect::<Vec<_>>(),
    );
    let updates = futures::stream::unfold(
        (snapshots, lines),
        |(mut snapshots, mut lines)| async move {
            loop {
                let next = tokio::select! {
                    changed = snapshots.changed() => match changed {
                        Ok(()) => {
                            let snapshot = snapshots.borrow_and_update().clone();
                            Some(Event::default().event("snapshot").json_data(&*snapshot).unwrap_or_default())
                        }
                        Err(_) => return None,
                    },
                    line = next_line(&mut lines) => match line {
                        Some(line) => Some(feed_event(&line)),
                        None => {
                            lines = None;
                            None
                        }
                    },
                };
                if let Some(event) = next {
                    return Some((Ok(event), (snapshots, lines)));
                }
            }
        },
    );
    Sse::new(futures::StreamExt::chain(start, updates)).keep_alive(KeepAlive::default())
}

/// The next feed line; pending forever without a feed, or once it closed. A page
/// that fell behind skips what it missed.
async fn next_line(lines: &mut Option<broadcast::Receiver<FeedLine>>) -> Option<FeedLine> {
    let Some(rx) = lines else {
        return std::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(line) => return Some(line),
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

fn feed_event(line: &FeedLine) -> Event {
    Event::default()
        .event("feed")
        .json_data(line)
        .unwrap_or_default()
}

#[derive(Deserialize)]
struct KeyQuery {
    key: String,
}

async fn lookup(State(state): State<AppState>, Query(query): Query<KeyQuery>) -> Response {
    let topology = state.topology.borrow().clone();
    let snapshot = state.snapshots.borrow().clone();
    match records::lookup(&topology, &snapshot, &query.key).await {
        Ok(view) => Json(view).into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response(),
    }
}

#[derive(Deserialize)]
struct ScriptBody {
    line: String,
}

/// Runs a script line through the PuppetMaster; answers whether it ran.
async fn script(State(state): State<AppState>, Json(body): Json<ScriptBody>) -> Response {
    let refuse =
        |status: StatusCode, error: &str| (status, Json(json!({ "error": error }))).into_response();
    let Some(script) = state.script else {
        return refuse(
            StatusCode::CONFLICT,
            "this dashboard has no console: run it with `dida pm --dashboard ADDR`",
        );
    };
    if let Some(feed) = &state.feed {
        feed.push(FeedKind::Command, body.line.clone());
    }
    let (reply, answer) = oneshot::channel();
    if script
        .send(ScriptRequest {
            text: body.line,
            reply,
        })
        .await
        .is_err()
    {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the PuppetMaster's console has ended",
        );
    }
    match tokio::time::timeout(SCRIPT_ANSWER_LIMIT, answer).await {
        Ok(Ok(Ok(number))) => Json(json!({ "ok": true, "line": number })).into_response(),
        Ok(Ok(Err(error))) => refuse(StatusCode::UNPROCESSABLE_ENTITY, &error),
        Ok(Err(_)) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the PuppetMaster's console has ended",
        ),
        Err(_) => Json(json!({ "ok": true, "running": true })).into_response(),
    }
}
