//! The REST API (axum), shaped like Flink's where it has the same thing, the dashboard's
//! files, `/metrics` and `/openapi.json`. Every error is JSON ([`api::ErrorResponse`]); with
//! a token, every request but the dashboard's static files must carry
//! `Authorization: Bearer <token>` (compared in constant time). Requests a web page of
//! another site makes (an `Origin` that is not the server's) are refused, and a server
//! without a token answers only requests addressed to a loopback name (no DNS rebinding).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::api::{self, ErrorResponse};
use crate::jobs::{JobError, JobManager, Trigger};

/// Largest request body accepted (bytes): a SQL script is far smaller.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

#[derive(Clone)]
struct AppState {
    jobs: JobManager,
    token: Option<Arc<str>>,
}

/// An error answered as JSON.
struct ApiError {
    status: StatusCode,
    message: String,
    line: Option<usize>,
    column: Option<usize>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

impl From<JobError> for ApiError {
    fn from(error: JobError) -> Self {
        let status = match &error {
            JobError::Sql(weir_sql::SqlError::User(_)) | JobError::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            JobError::NotFound(_) => StatusCode::NOT_FOUND,
            JobError::Conflict(_) => StatusCode::CONFLICT,
            JobError::Sql(weir_sql::SqlError::Engine(_)) | JobError::Io { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let location = match &error {
            JobError::Sql(weir_sql::SqlError::User(user)) => user.location,
            _ => None,
        };
        ApiError {
            status,
            message: error.to_string(),
            line: location.map(|l| l.line as usize),
            column: location.map(|l| l.column as usize),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse {
            errors: vec![self.message],
            status: self.status.as_u16(),
            line: self.line,
            column: self.column,
        };
        (self.status, json_body(&body)).into_response()
    }
}

/// `value` as a JSON response body.
fn json_body(value: &impl serde::Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(text) => ([(CONTENT_TYPE, "application/json")], text).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the answer: {error}"),
        )
            .into_response(),
    }
}

/// A JSON request body, or a 400/413 naming what is wrong with it.
fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let message = match status {
            StatusCode::PAYLOAD_TOO_LARGE => {
                format!("the request body is larger than {MAX_BODY_BYTES} bytes")
            }
            _ => format!("cannot read the request body: {rejection}"),
        };
        ApiError::new(status, message)
    })?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON body: {e}")))
}

type ApiResult = Result<Response, ApiError>;

/// The HTTP application: REST API, metrics, OpenAPI description and dashboard.
pub fn router(jobs: JobManager, token: Option<String>) -> Router {
    let state = AppState {
        jobs,
        token: token.map(Arc::from),
    };
    Router::new()
        .route("/jobs", get(list_jobs).post(submit_job))
        .route("/jobs/{id}", get(job_details).patch(cancel_job))
        .route("/jobs/{id}/plan", get(job_plan))
        .route("/jobs/{id}/checkpoints", get(job_checkpoints))
        .route("/jobs/{id}/exceptions", get(job_exceptions))
        .route("/jobs/{id}/stop", post(stop_job))
        .route("/jobs/{id}/resume", post(resume_job))
        .route("/jobs/{id}/savepoints/{trigger}", get(savepoint_status))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .merge(crate::dashboard::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Refuses what [`refusal`] refuses; answers every error as JSON (axum's own rejections are
/// text).
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(refused) = refusal(&state, &request) {
        return refused.into_response();
    }
    // Refused from its declared length, before it is received.
    let declared =
        (request.headers().get(CONTENT_LENGTH)).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|bytes| bytes > MAX_BODY_BYTES as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        )
        .into_response();
    }
    let response = next.run(request).await;
    let is_json = (response.headers().get(CONTENT_TYPE))
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match text.is_empty() {
        true => status.canonical_reason().unwrap_or("error").to_string(),
        false => text,
    };
    ApiError::new(status, message).into_response()
}

/// Why a request is refused before it is served: a foreign `Origin` (403), a non-loopback
/// `Host` on a server without a token (403), a missing or wrong token (401; the dashboard's
/// static files hold no data and are served without it, the page asks for it).
fn refusal(state: &AppState, request: &Request) -> Option<ApiError> {
    let header = |name| (request.headers().get(name)).and_then(|v: &HeaderValue| v.to_str().ok());
    let host = header(HOST).unwrap_or("");
    if let Some(origin) = header(ORIGIN) {
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if origin_host != host {
            return Some(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("a request from the web page of {origin} is refused (cross-origin)"),
            ));
        }
    }
    let Some(token) = &state.token else {
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let loopback = name.eq_ignore_ascii_case("localhost")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        return (!loopback).then(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                format!("a server without a token answers only loopback names, not '{host}'"),
            )
        });
    };
    if request.method() == Method::GET && crate::dashboard::is_static(request.uri().path()) {
        return None;
    }
    let given = header(AUTHORIZATION)
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        return None;
    }
    Some(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "this server needs a token: send 'Authorization: Bearer <token>' (weir --token or WEIR_TOKEN)",
    ))
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("nothing at {}: see /openapi.json", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed on {}: see /openapi.json",
            uri.path()
        ),
    )
}

async fn list_jobs(State(state): State<AppState>) -> Response {
    json_body(&api::JobsOverview {
        jobs: state.jobs.list(),
    })
}

async fn submit_job(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let request: api::SubmitRequest = parse_body(body)?;
    let jobs = state.jobs.clone();
    // Planning runs DataFusion: off the I/O thread.
    let id = tokio::task::spawn_blocking(move || jobs.submit(request))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok((
        StatusCode::ACCEPTED,
        json_body(&api::SubmitResponse { jobid: id }),
    )
        .into_response())
}

async fn job_details(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    Ok(json_body(&state.jobs.details(&id)?))
}

async fn job_plan(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    Ok(json_body(&state.jobs.plan(&id)?))
}

async fn job_checkpoints(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    Ok(json_body(&state.jobs.checkpoints(&id)?))
}

async fn job_exceptions(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    Ok(json_body(&state.jobs.exceptions(&id)?))
}

/// `PATCH /jobs/:jobid?mode=cancel` (Flink's; `mode` defaults to cancel).
async fn cancel_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let mode = (query.iter())
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("mode="));
    if let Some(mode) = mode.filter(|m| *m != "cancel") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("mode '{mode}' is not supported: PATCH cancels (mode=cancel); to stop with a savepoint POST /jobs/{id}/stop"),
        ));
    }
    state.jobs.cancel(&id)?;
    Ok((StatusCode::ACCEPTED, json_body(&serde_json::json!({}))).into_response())
}

async fn stop_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let request: api::StopRequest = match &body {
        Ok(bytes) if bytes.is_empty() => api::StopRequest::default(),
        _ => parse_body(body)?,
    };
    let trigger = state.jobs.stop(&id, request)?;
    Ok((
        StatusCode::ACCEPTED,
        json_body(&api::TriggerResponse {
            request_id: trigger,
        }),
    )
        .into_response())
}

async fn savepoint_status(
    State(state): State<AppState>,
    Path((id, trigger)): Path<(String, String)>,
) -> ApiResult {
    let info = match state.jobs.savepoint(&id, &trigger)? {
        Trigger::InProgress => api::SavepointInfo {
            status: api::QueueStatus {
                id: "IN_PROGRESS".into(),
            },
            operation: None,
        },
        Trigger::Completed(result) => api::SavepointInfo {
            status: api::QueueStatus {
                id: "COMPLETED".into(),
            },
            operation: Some(match result {
                Ok(path) => api::SavepointOperation {
                    location: Some(path.display().to_string()),
                    failure_cause: None,
                },
                Err(cause) => api::SavepointOperation {
                    location: None,
                    failure_cause: Some(cause),
                },
            }),
        },
    };
    Ok(json_body(&info))
}

async fn resume_job(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let id = state.jobs.resume(&id)?;
    Ok((
        StatusCode::ACCEPTED,
        json_body(&api::SubmitResponse { jobid: id }),
    )
        .into_response())
}

async fn metrics(State(state): State<AppState>) -> Response {
    crate::metrics::metrics_response(&state.jobs.running_metrics()).into_response()
}

async fn openapi() -> Response {
    ([(CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
