//! The operator's view of a running job: its control API (DESIGN.md
//! "Runtime contract") and its checkpoint storage, the only two things the
//! operator and the runtime share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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
    /// The newest completed snapshot of job `job` in storage `uri`, or why
    /// the storage cannot be read.
    fn latest_checkpoint<'a>(
        &'a self,
        uri: &'a str,
        job: &'a str,
    ) -> BoxFuture<'a, Result<Option<SnapshotRef>, String>>;
}

/// The real thing: HTTP to the pod, and the storage read with the runtime's
/// own code.
#[derive(Default)]
pub struct HttpRuntime {
    http: reqwest::Client,
    /// Storage clients by URI: making one (an S3 client, its credentials)
    /// at every reconcile would be slow.
    storages: Arc<Mutex<HashMap<String, CheckpointStorage>>>,
}

impl HttpRuntime {
    /// Sends a request and reads the JSON answer; a non-2xx answer is an
    /// error with the runtime's reason.
    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<serde_json::Value, String> {
        let response = request.timeout(timeout).send().await.map_err(|e| {
            if e.is_timeout() {
                format!("timed out after {} s", timeout.as_secs())
            } else {
                format!("the control API does not answer: {e}")
            }
        })?;
        let code = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if !code.is_success() {
            let reason = body["error"].as_str().unwrap_or("no reason given");
            return Err(format!("{code}: {reason}"));
        }
        Ok(body)
    }
}

impl RuntimeApi for HttpRuntime {
    fn status<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Option<RuntimeStatus>> {
        Box::pin(async move {
            let json = self
                .call(
                    self.http.get(format!("{url}/status")),
                    Duration::from_secs(5),
                )
                .await
                .ok()?;
            runtime_status(&json)
        })
    }

    fn stop_with_savepoint<'a>(
        &'a self,
        url: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<SnapshotRef, String>> {
        Box::pin(async move {
            let request = self
                .http
                .post(format!("{url}/stop"))
                .json(&serde_json::json!({ "savepoint": true }));
            let json = self.call(request, timeout).await?;
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
            let json = self
                .call(
                    self.http.post(format!("{url}/savepoints")),
                    Duration::from_secs(40),
                )
                .await?;
            let id = json["id"].as_u64().ok_or("no savepoint id in the answer")?;
            while tokio::time::Instant::now() < deadline {
                let status = self
                    .call(
                        self.http.get(format!("{url}/savepoints/{id}")),
                        Duration::from_secs(5),
                    )
                    .await?;
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
    ) -> BoxFuture<'a, Result<Option<SnapshotRef>, String>> {
        let (uri, job) = (uri.to_string(), job.to_string());
        let storages = Arc::clone(&self.storages);
        Box::pin(async move {
            // The storage client blocks (and runs its own runtime for S3):
            // a thread of its own keeps it off the reconciler's.
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                let storage = storages
                    .lock()
                    .expect("storage cache")
                    .get(&uri)
                    .cloned()
                    .map(Ok)
                    .unwrap_or_else(|| {
                        CheckpointStorage::from_uri(&uri, std::path::Path::new("/"))
                            .map_err(|e| e.to_string())
                    });
                let result = storage.and_then(|storage| {
                    let latest = find_latest(&storage, &job);
                    storages.lock().expect("storage cache").insert(uri, storage);
                    latest
                });
                let _ = tx.send(result);
            });
            rx.await
                .unwrap_or_else(|_| Err("the storage lookup died".into()))
        })
    }
}

/// The newest completed checkpoint (or later savepoint) of `job`.
pub fn find_latest(storage: &CheckpointStorage, job: &str) -> Result<Option<SnapshotRef>, String> {
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

/// The runtime's `/status` JSON, as the lifecycle reads it.
pub fn runtime_status(json: &serde_json::Value) -> Option<RuntimeStatus> {
    let state = json.get("state")?.as_str()?.to_string();
    let snapshot = |field: &str| {
        json.get(field)
            .and_then(|c| serde_json::from_value::<SnapshotRef>(c.clone()).ok())
    };
    Some(RuntimeStatus {
        state,
        last_checkpoint: snapshot("lastCheckpoint"),
        last_savepoint: snapshot("lastSavepoint"),
    })
}
