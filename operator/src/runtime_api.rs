//! The operator's view of a running job: its control API (DESIGN.md
//! "Runtime contract") and its checkpoint storage, the only two things the
//! operator and the runtime share.

use std::time::Duration;

use futures::future::BoxFuture;
use streamjob_runtime::checkpoint::{CheckpointStorage, Layout};

use crate::crd::SnapshotRef;
use crate::lifecycle::RuntimeStatus;

/// Calls on a job's runtime; a trait so that tests can point the controller
/// at processes of their own.
pub trait RuntimeApi: Send + Sync {
    /// `GET /status`; `None` when the runtime does not answer.
    fn status<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Option<RuntimeStatus>>;
    /// `POST /stop {"savepoint": true}`: the savepoint, or why there is none.
    fn stop_with_savepoint<'a>(
        &'a self,
        url: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<SnapshotRef, String>>;
    /// `POST /savepoints`, then `GET /savepoints/{id}` until it ends.
    fn savepoint<'a>(
        &'a self,
        url: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<SnapshotRef, String>>;
    /// The newest completed snapshot of job `job` in storage `uri`.
    fn latest_checkpoint<'a>(
        &'a self,
        uri: &'a str,
        job: &'a str,
    ) -> BoxFuture<'a, Option<SnapshotRef>>;
}

/// The real thing: HTTP to the pod, and the storage read with the runtime's
/// own code.
#[derive(Default)]
pub struct HttpRuntime {
    http: reqwest::Client,
}

async fn error_text(response: reqwest::Response) -> String {
    let code = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let message = body
        .get("error")
        .and_then(|e| e.as_str())
        .unwrap_or("no reason given");
    format!("{code}: {message}")
}

impl RuntimeApi for HttpRuntime {
    fn status<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Option<RuntimeStatus>> {
        Box::pin(async move {
            let response = self
                .http
                .get(format!("{url}/status"))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .ok()?;
            let json: serde_json::Value = response.json().await.ok()?;
            crate::controller::runtime_status(&json)
        })
    }

    fn stop_with_savepoint<'a>(
        &'a self,
        url: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<SnapshotRef, String>> {
        Box::pin(async move {
            let response = self
                .http
                .post(format!("{url}/stop"))
                .json(&serde_json::json!({ "savepoint": true }))
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| {
                    if e.is_timeout() {
                        format!("timed out after {} s", timeout.as_secs())
                    } else {
                        format!("the control API at {url} does not answer: {e}")
                    }
                })?;
            if !response.status().is_success() {
                return Err(error_text(response).await);
            }
            let json: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
            serde_json::from_value(json["savepoint"].clone())
                .map_err(|e| format!("unexpected answer from /stop: {e}"))
        })
    }

    fn savepoint<'a>(
        &'a self,
        url: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<SnapshotRef, String>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let response = self
                .http
                .post(format!("{url}/savepoints"))
                .timeout(Duration::from_secs(40))
                .send()
                .await
                .map_err(|e| format!("the control API at {url} does not answer: {e}"))?;
            if !response.status().is_success() {
                return Err(error_text(response).await);
            }
            let json: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
            let id = json["id"].as_u64().ok_or("no savepoint id in the answer")?;
            while tokio::time::Instant::now() < deadline {
                let status: serde_json::Value = self
                    .http
                    .get(format!("{url}/savepoints/{id}"))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                match status["state"].as_str() {
                    Some("completed") => {
                        return Ok(SnapshotRef {
                            id,
                            path: status["path"].as_str().unwrap_or_default().into(),
                            time: None,
                        })
                    }
                    Some("failed") => {
                        return Err(status["error"].as_str().unwrap_or("failed").into())
                    }
                    _ => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
            Err(format!(
                "savepoint {id} timed out after {} s",
                timeout.as_secs()
            ))
        })
    }

    fn latest_checkpoint<'a>(
        &'a self,
        uri: &'a str,
        job: &'a str,
    ) -> BoxFuture<'a, Option<SnapshotRef>> {
        let (uri, job) = (uri.to_string(), job.to_string());
        Box::pin(async move {
            // The storage client blocks (and runs its own runtime for S3):
            // a thread of its own keeps it off the reconciler's.
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                let _ = tx.send(find_latest(&uri, &job));
            });
            match rx.await {
                Ok(Ok(latest)) => latest,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot list checkpoints");
                    None
                }
                Err(_) => None,
            }
        })
    }
}

/// The newest completed checkpoint (or later savepoint) of `job` in `uri`.
pub fn find_latest(uri: &str, job: &str) -> Result<Option<SnapshotRef>, String> {
    let storage =
        CheckpointStorage::from_uri(uri, std::path::Path::new("/")).map_err(|e| e.to_string())?;
    let layout = Layout::new(job);
    Ok(storage
        .newest(&layout)
        .map_err(|e| e.to_string())?
        .map(|(kind, id)| SnapshotRef {
            id,
            path: storage.location(&layout.snapshot_dir(kind, id)),
            time: None,
        }))
}
