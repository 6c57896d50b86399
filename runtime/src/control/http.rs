//! The control API over HTTP (`docs/architecture.md#control-api`): health, readiness, metrics,
//! status, checkpoints, savepoints and stop. It runs on its own thread with
//! a small tokio runtime, apart from the data path.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use streamjob_api::{
    paths, ErrorAnswer, SavepointRef, SavepointTriggered, StateAnswer, StopAnswer, StopRequest,
};

use super::{JobControl, JobState, SavepointRequest, SavepointStatus};

/// A running control server.
pub struct ControlServer {
    pub address: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    stopped: crossbeam_channel::Receiver<()>,
}

impl ControlServer {
    /// Stops accepting requests and waits (up to `grace`) for the ones under
    /// way, so that the answer to `POST /stop` reaches its caller before the
    /// process exits.
    pub fn shutdown(mut self, grace: Duration) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.stopped.recv_timeout(grace);
    }
}

/// The secret that requests which change the job (`POST /savepoints`,
/// `POST /stop`) must present as `Authorization: Bearer <token>`.
#[derive(Clone)]
pub struct ControlToken(Arc<str>);

impl ControlToken {
    /// Reads the token from a file (as a Kubernetes Secret is mounted);
    /// surrounding whitespace is not part of it.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the control token {}: {e}", path.display()))?;
        let token = text.trim();
        if token.len() < 16 {
            return Err(format!(
                "the control token in {} is {} characters long; use at least 16 random ones",
                path.display(),
                token.len()
            ));
        }
        Ok(ControlToken(token.into()))
    }

    /// The token's bytes: the job's pods key their handshake with it.
    pub(crate) fn secret(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Whether the request's `Authorization` header carries the token,
    /// compared in constant time.
    fn admits(&self, headers: &HeaderMap) -> bool {
        use subtle::ConstantTimeEq;
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(self.0.as_bytes())))
    }
}

/// Binds `address` and serves the control API on a background thread. With
/// a token, requests that change the job must present it; reading (health,
/// readiness, metrics, status, checkpoints, a savepoint's state) stays open
/// for probes and scrapers.
pub fn serve(
    address: &str,
    control: Arc<JobControl>,
    token: Option<ControlToken>,
) -> std::io::Result<ControlServer> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
    let (done, stopped) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("control-api".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime for the control API");
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("a bound listener");
                let server =
                    axum::serve(listener, router(control, token)).with_graceful_shutdown(async {
                        let _ = signal.await;
                    });
                if let Err(e) = server.await {
                    tracing::error!(%e, "control API stopped");
                }
            });
            let _ = done.send(());
        })?;
    Ok(ControlServer {
        address: bound,
        shutdown: Some(shutdown),
        stopped,
    })
}

fn router(control: Arc<JobControl>, token: Option<ControlToken>) -> Router {
    let mut changes = Router::new()
        .route(paths::SAVEPOINTS, post(trigger_savepoint))
        .route(paths::STOP, post(stop));
    if let Some(token) = token {
        changes = changes.route_layer(middleware::from_fn(move |request: Request, next: Next| {
            let token = token.clone();
            async move {
                if token.admits(request.headers()) {
                    next.run(request).await
                } else {
                    let mut refused = error(
                        StatusCode::UNAUTHORIZED,
                        "this request changes the job: send Authorization: Bearer <the token of --control-token-file>",
                    );
                    refused.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        header::HeaderValue::from_static("Bearer"),
                    );
                    refused
                }
            }
        }));
    }
    Router::new()
        .route(paths::HEALTHZ, get(|| async { "ok" }))
        .route(paths::READYZ, get(readyz))
        .route(paths::METRICS, get(metrics))
        .route(
            paths::STATUS,
            get(|State(c): State<Arc<JobControl>>| async move { Json(c.status()) }),
        )
        .route(
            paths::CHECKPOINTS,
            get(|State(c): State<Arc<JobControl>>| async move { Json(c.checkpoints()) }),
        )
        .route(&paths::savepoint_route(), get(savepoint_status))
        .merge(super::dashboard::routes())
        .merge(changes)
        .with_state(control)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let answer = ErrorAnswer {
        error: message.into(),
    };
    (status, Json(answer)).into_response()
}

async fn readyz(State(c): State<Arc<JobControl>>) -> Response {
    let state = c.state();
    let code = if state == JobState::Running {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(StateAnswer { state })).into_response()
}

async fn metrics(State(c): State<Arc<JobControl>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        c.metrics.encode(),
    )
        .into_response()
}

/// Asks the coordinator for a savepoint and returns its id.
async fn request(c: &JobControl, then_stop: bool) -> Result<u64, Response> {
    if !c.savepoints_supported() {
        return Err(error(
            StatusCode::CONFLICT,
            "the job has no checkpoints.storage; savepoints need one",
        ));
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    c.request_savepoint(SavepointRequest { then_stop, reply });
    match tokio::time::timeout(Duration::from_secs(30), answer).await {
        Ok(Ok(Ok(id))) => Ok(id),
        Ok(Ok(Err(reason))) => Err(error(StatusCode::CONFLICT, reason)),
        _ => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the job did not take the savepoint request (is it running?)",
        )),
    }
}

/// The body of a POST: it must say it is JSON (`Content-Type:
/// application/json`, which a web page cannot send to another origin
/// without asking first, so a form on some page cannot stop a local job),
/// and be a JSON object or nothing (then `T::default()`).
fn post_body<T: serde::de::DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: &[u8],
    example: &str,
) -> Result<T, (StatusCode, String)> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send Content-Type: application/json (a POST from a web form is refused)".into(),
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let refuse = |what: String| {
        (
            StatusCode::BAD_REQUEST,
            format!("expected {example}: {what}"),
        )
    };
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value @ serde_json::Value::Object(_)) => {
            serde_json::from_value(value).map_err(|e| refuse(e.to_string()))
        }
        Ok(other) => Err(refuse(format!("not a JSON object: {other}"))),
        Err(e) => Err(refuse(e.to_string())),
    }
}

/// `POST /savepoints` takes no options: its body is `{}` or nothing.
#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SavepointOptions {}

async fn trigger_savepoint(
    State(c): State<Arc<JobControl>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err((code, refusal)) = post_body::<SavepointOptions>(&headers, &body, "{} or no body") {
        return error(code, refusal);
    }
    match request(&c, false).await {
        Ok(id) => (StatusCode::ACCEPTED, Json(SavepointTriggered { id })).into_response(),
        Err(response) => response,
    }
}

async fn savepoint_status(State(c): State<Arc<JobControl>>, Path(id): Path<u64>) -> Response {
    match c.savepoint(id) {
        Some(status) => Json(status).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no savepoint {id}")),
    }
}

/// `POST /stop`: with `{"savepoint": true}`, takes a savepoint, commits
/// the output up to it, and stops the job; answers with the savepoint's
/// path. If the savepoint fails, the job keeps running and the answer says
/// why: state is never dropped silently.
async fn stop(
    State(c): State<Arc<JobControl>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // An empty body is a plain stop.
    let wanted: StopRequest = match post_body(&headers, &body, "{\"savepoint\": true|false}") {
        Ok(wanted) => wanted,
        Err((code, refusal)) => return error(code, refusal),
    };
    let state = c.state();
    if matches!(state, JobState::Finished | JobState::Failed) {
        return error(
            StatusCode::CONFLICT,
            format!("the job is not running: it has {}", state_word(state)),
        );
    }
    // One stop at a time: a second one would be told the job keeps
    // running, or take a second savepoint, while the first stops it.
    if !c.claim_stop() {
        return error(
            StatusCode::CONFLICT,
            "the job is already stopping: another stop is under way",
        );
    }
    if !wanted.savepoint {
        c.set_state(JobState::Stopping, None);
        c.stop.store(true, Ordering::SeqCst);
        return Json(StopAnswer { savepoint: None }).into_response();
    }
    let id = match request(&c, true).await {
        Ok(id) => id,
        Err(response) => {
            c.release_stop();
            return response;
        }
    };
    // Wait for the savepoint, however long it takes: the caller (the
    // operator) owns the timeout.
    loop {
        match c.savepoint(id) {
            Some(SavepointStatus::Completed { path }) => {
                let savepoint = Some(SavepointRef { id, path });
                return Json(StopAnswer { savepoint }).into_response();
            }
            Some(SavepointStatus::Failed { error: e }) => {
                c.release_stop();
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("savepoint {id} failed, the job keeps running: {e}"),
                );
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn state_word(state: JobState) -> &'static str {
    match state {
        JobState::Finished => "finished",
        JobState::Failed => "failed",
        JobState::Starting => "not started yet",
        JobState::Running => "running",
        JobState::Restarting => "restarting",
        JobState::Stopping => "stopping",
    }
}
