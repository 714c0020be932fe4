//! The scheduler's HTTP gateway (`--http-listen`): run applications with any HTTP
//! client, no `dida` binary or gRPC needed.
//!
//! It is a thin JSON layer over what the gRPC services do — the same submit path
//! (`SchedulerService::start`), the same registry — served by the scheduler process
//! itself. The routes and their bodies are described in `docs/openapi.yaml`, which
//! the gateway serves at `GET /v1/openapi.yaml`. Every error is a JSON body
//! `{"error": {"status", "code", "message"}}` with a fitting HTTP status: 400 for a
//! malformed body or application, 404 for an unknown application, operator or
//! execution, 408 for a body that does not arrive in time, 413 for a body over its
//! limit, 503 when the cluster cannot run it now.
//!
//! With a cluster token configured (`--cluster-token`), every request must carry it
//! as `Authorization: Bearer <token>`; without one the gateway listens only on a
//! loopback address unless `--insecure` is given ([`check_exposure`]).
//!
//! Connections are held within the limits every dida listener applies, headers must
//! arrive within 10 s and bodies within 30 s ([`dida_proto::http_server`]), so idle
//! or trickling clients cannot take the process's descriptors.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use dida_core::app::parse_app;
use dida_core::limits::{MAX_INPUT_BYTES, MAX_SCRIPT_FILE_BYTES};
use dida_proto::execution::SubmitRequest;
use dida_proto::{http_server, security};
use dida_storage_client::registry::AppEntry;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::{Code, Status};
use tracing::info;

use crate::apps;
use crate::executions::{ExecutionDetails, ExecutionLogs, DEFAULT_LISTED_EXECUTIONS};
use crate::node::SchedulerState;
use crate::service::SchedulerService;

/// Largest invocation body: the input (at most [`MAX_INPUT_BYTES`]) with room for
/// its JSON escaping and the operator list.
pub const MAX_INVOKE_BODY_BYTES: usize = 2 * MAX_INPUT_BYTES + 64 * 1024;

/// Largest application body: an application file.
pub const MAX_APP_BODY_BYTES: usize = MAX_SCRIPT_FILE_BYTES as usize;

/// The OpenAPI description of the gateway, served at `/v1/openapi.yaml`.
const OPENAPI: &str = include_str!("../../../docs/openapi.yaml");

/// Refuses to serve the gateway on an address other machines can reach unless
/// requests are authenticated (a cluster token) or `--insecure` says so: the
/// gateway runs code on the cluster.
pub(crate) fn check_exposure(host: &str) -> anyhow::Result<()> {
    let security = security::installed();
    if security::is_loopback(host) || security.cluster_token.is_some() || security.insecure {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to serve the HTTP gateway on {host}, which other machines can reach, \
         without authentication: give --cluster-token (clients then send \
         `Authorization: Bearer <token>`), listen on a loopback address, or pass --insecure"
    )
}

/// Serves the gateway on `listener` in a task of its own.
pub(crate) fn serve(
    state: Arc<SchedulerState>,
    listener: TcpListener,
) -> anyhow::Result<JoinHandle<()>> {
    let addr = listener.local_addr()?;
    let app = router(state);
    let limits = dida_proto::connections::ConnectionLimits::for_a_side_port();
    info!(%addr, total = limits.total, per_source = limits.per_address, "HTTP gateway serving");
    Ok(tokio::spawn(http_server::serve(listener, app, limits)))
}

fn router(state: Arc<SchedulerState>) -> Router {
    Router::new()
        .route("/v1/apps", get(list_apps))
        .route(
            "/v1/apps/{name}",
            put(put_app).get(get_app).delete(delete_app),
        )
        .route("/v1/apps/{name}/invoke", post(invoke_app))
        .route("/v1/invoke", post(invoke))
        .route("/v1/executions", get(list_executions))
        .route("/v1/executions/{id}", get(get_execution))
        .route("/v1/executions/{id}/logs", get(get_logs))
        .route("/v1/operators", get(list_operators))
        .route("/v1/workers", get(list_workers))
        .route("/v1/openapi.yaml", get(openapi))
        .fallback(not_found)
        .layer(middleware::from_fn(authenticate))
        .with_state(state)
}

/// An error as the gateway answers it.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        let http = match status.code() {
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::Unavailable | Code::FailedPrecondition | Code::ResourceExhausted => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(http, status.message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_lowercase()
            .replace(' ', "_");
        let body = json!({"error": {
            "status": self.status.as_u16(),
            "code": code,
            "message": self.message,
        }});
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Checks the cluster token, when one is configured.
async fn authenticate(request: Request, next: Next) -> Response {
    let Some(token) = &security::installed().cluster_token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if security::tokens_match(given.as_bytes(), token.as_bytes()) {
        next.run(request).await
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this gateway needs the cluster token: send `Authorization: Bearer <token>`",
        )
        .into_response()
    }
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route {} {}; see /v1/openapi.yaml",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI)
}

/// Reads a request body of at most `limit` bytes: 413 beyond it, told by its
/// `Content-Length` before anything is read when it has one; 408 if it has not all
/// arrived within [`http_server::BODY_READ_TIMEOUT`].
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> ApiResult<Bytes> {
    let too_large = |size: String| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is {size} bytes; the limit is {limit}"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|&n| n > limit as u64) {
        return Err(too_large(declared.to_string()));
    }
    let timeout = http_server::BODY_READ_TIMEOUT;
    tokio::time::timeout(timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {} s", timeout.as_secs()),
            )
        })?
        .map_err(|_| too_large(format!("more than {limit}")))
}

/// Parses a JSON body into `T`, with a 400 saying what is wrong.
fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not the JSON expected: {e}"),
        )
    })
}

#[derive(Debug, Serialize)]
struct AppView {
    name: String,
    operators: Vec<String>,
    registered_unix_ms: u64,
}

fn app_view(name: &str, entry: &AppEntry) -> AppView {
    AppView {
        name: name.to_string(),
        operators: entry.operators.clone(),
        registered_unix_ms: entry.registered_unix_ms,
    }
}

/// `PUT /v1/apps/NAME`: registers (or replaces) an application; the body is an
/// application file. Every operator must be deployed or run by every worker.
async fn put_app(
    State(state): State<Arc<SchedulerState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    apps::check_app_name(&name)?;
    let body = read_body(&headers, body, MAX_APP_BODY_BYTES).await?;
    let text = std::str::from_utf8(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the application file is not UTF-8: {e}"),
        )
    })?;
    let operators = parse_app(&name, text)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let (entry, replaced) = apps::register(&service(&state), &name, operators).await?;
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(app_view(&name, &entry))).into_response())
}

async fn get_app(
    State(state): State<Arc<SchedulerState>>,
    Path(name): Path<String>,
) -> ApiResult<Json<AppView>> {
    let entry = apps::get(&state.registry, &name).await?;
    Ok(Json(app_view(&name, &entry)))
}

async fn delete_app(
    State(state): State<Arc<SchedulerState>>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    apps::remove(&state.registry, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_apps(State(state): State<Arc<SchedulerState>>) -> ApiResult<Json<serde_json::Value>> {
    let apps = apps::list(&state.registry).await?;
    let apps: Vec<AppView> = apps.iter().map(|(n, e)| app_view(n, e)).collect();
    Ok(Json(json!({ "apps": apps })))
}

/// The body of an invocation of a registered application.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppInvocation {
    #[serde(default)]
    input: String,
}

/// The body of `POST /v1/invoke`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Invocation {
    operators: Vec<String>,
    #[serde(default)]
    input: String,
}

/// `?async=true`: answer 202 with the execution id at once.
#[derive(Debug, Default, Deserialize)]
struct InvokeParams {
    #[serde(default, rename = "async")]
    asynchronous: bool,
}

async fn invoke_app(
    State(state): State<Arc<SchedulerState>>,
    Path(name): Path<String>,
    Query(params): Query<InvokeParams>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let body = read_body(&headers, body, MAX_INVOKE_BODY_BYTES).await?;
    let invocation: AppInvocation = parse_json(&body)?;
    let app = apps::get(&state.registry, &name).await?;
    let submit = SubmitRequest {
        app: name.clone(),
        operators: app.operators,
        input: invocation.input,
    };
    run(&state, submit, params.asynchronous).await
}

async fn invoke(
    State(state): State<Arc<SchedulerState>>,
    Query(params): Query<InvokeParams>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let body = read_body(&headers, body, MAX_INVOKE_BODY_BYTES).await?;
    let invocation: Invocation = parse_json(&body)?;
    let submit = SubmitRequest {
        app: "http".to_string(),
        operators: invocation.operators,
        input: invocation.input,
    };
    run(&state, submit, params.asynchronous).await
}

/// Starts an execution; answers 202 at once if `asynchronous`, else its outcome
/// when it ends (every execution ends, by its outcome or its timeout).
async fn run(
    state: &Arc<SchedulerState>,
    submit: SubmitRequest,
    asynchronous: bool,
) -> ApiResult<Response> {
    let service = service(state);
    let (id, mut finished) = service.start(submit).await?;
    let location = format!("/v1/executions/{id}");
    if asynchronous {
        let body = json!({"id": id, "status": "running"});
        return Ok((
            StatusCode::ACCEPTED,
            [(header::LOCATION, location)],
            Json(body),
        )
            .into_response());
    }
    let _ = finished.wait_for(|done| *done).await;
    let details = execution(state, &id)?;
    Ok(([(header::LOCATION, location)], Json(details)).into_response())
}

fn service(state: &Arc<SchedulerState>) -> SchedulerService {
    SchedulerService {
        state: state.clone(),
    }
}

/// Execution `id` as the gateway shows it: id, application, status, times, input,
/// outputs, error, and how each operator ran.
fn execution(state: &SchedulerState, id: &str) -> ApiResult<ExecutionDetails> {
    state
        .execution_details(id)
        .ok_or_else(|| unknown_execution(id))
}

fn unknown_execution(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("unknown execution id {id:?} (or forgotten: the oldest are, past the scheduler's bounds)"),
    )
}

async fn get_execution(
    State(state): State<Arc<SchedulerState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<ExecutionDetails>> {
    Ok(Json(execution(&state, &id)?))
}

async fn get_logs(
    State(state): State<Arc<SchedulerState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<ExecutionLogs>> {
    let logs = state
        .execution_logs(&id)
        .ok_or_else(|| unknown_execution(&id))?;
    Ok(Json(logs))
}

/// `?limit=N` of `GET /v1/executions`.
#[derive(Debug, Default, Deserialize)]
struct ListParams {
    #[serde(default)]
    limit: Option<usize>,
}

async fn list_executions(
    State(state): State<Arc<SchedulerState>>,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<serde_json::Value>> {
    if params.limit == Some(0) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "limit must be at least 1",
        ));
    }
    let executions = state.recent_executions(params.limit.unwrap_or(DEFAULT_LISTED_EXECUTIONS));
    let executions: Vec<serde_json::Value> = executions
        .iter()
        .map(|e| {
            let mut value = serde_json::to_value(e).expect("summaries serialise");
            value["duration_ms"] = json!(e.duration_ms());
            value
        })
        .collect();
    Ok(Json(json!({ "executions": executions })))
}

async fn list_operators(
    State(state): State<Arc<SchedulerState>>,
) -> ApiResult<Json<serde_json::Value>> {
    let (index, local) = state.operator_listing().await?;
    let deployed: Vec<serde_json::Value> = index
        .iter()
        .map(|(name, d)| {
            json!({"name": name, "digest": d.digest, "bytes": d.bytes,
                   "deployed_unix_ms": d.deployed_unix_ms})
        })
        .collect();
    Ok(Json(json!({"deployed": deployed, "local": local})))
}

/// `GET /v1/workers`: every worker the scheduler knows, with its state (`alive`,
/// `leaving`, `gone`) and load, so an operator of the platform sees workers come
/// and go.
async fn list_workers(State(state): State<Arc<SchedulerState>>) -> Json<serde_json::Value> {
    Json(json!({"workers": state.worker_listing()}))
}
