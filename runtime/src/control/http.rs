//! The control API over HTTP (`docs/architecture.md#control-api`): health, readiness, metrics,
//! status, checkpoints, savepoints and stop. It runs on its own thread with
//! a small tokio runtime, apart from the data path.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
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

/// Binds `address` and serves the control API on a background thread.
pub fn serve(address: &str, control: Arc<JobControl>) -> std::io::Result<ControlServer> {
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
                let server = axum::serve(listener, router(control)).with_graceful_shutdown(async {
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

fn router(control: Arc<JobControl>) -> Router {
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
        .route(paths::SAVEPOINTS, post(trigger_savepoint))
        .route(&paths::savepoint_route(), get(savepoint_status))
        .route(paths::STOP, post(stop))
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

async fn trigger_savepoint(State(c): State<Arc<JobControl>>) -> Response {
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
async fn stop(State(c): State<Arc<JobControl>>, body: axum::body::Bytes) -> Response {
    // An empty body is a plain stop.
    let wanted: StopRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StopRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(w) => w,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("expected {{\"savepoint\": true|false}}: {e}"),
                )
            }
        }
    };
    if !wanted.savepoint {
        c.set_state(JobState::Stopping, None);
        c.stop.store(true, Ordering::SeqCst);
        return Json(StopAnswer { savepoint: None }).into_response();
    }
    let id = match request(&c, true).await {
        Ok(id) => id,
        Err(response) => return response,
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
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("savepoint {id} failed, the job keeps running: {e}"),
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
