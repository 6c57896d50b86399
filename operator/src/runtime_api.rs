//! The operator's view of a running job: its control API (DESIGN.md
//! "Runtime contract") and its checkpoint storage, the only two things the
//! operator and the runtime share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use streamjob_runtime::checkpoint::{CheckpointStorage, Layout, SnapshotKind};

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
    /// Deletes savepoint `savepoint` of job `job` from storage `uri`.
    fn dispose_savepoint<'a>(
        &'a self,
        uri: &'a str,
        job: &'a str,
        savepoint: &'a SnapshotRef,
    ) -> BoxFuture<'a, Result<(), String>>;
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
        let job = job.to_string();
        Box::pin(self.on_storage(uri, move |storage| find_latest(storage, &job)))
    }

    fn dispose_savepoint<'a>(
        &'a self,
        uri: &'a str,
        job: &'a str,
        savepoint: &'a SnapshotRef,
    ) -> BoxFuture<'a, Result<(), String>> {
        let (job, savepoint) = (job.to_string(), savepoint.clone());
        Box::pin(self.on_storage(uri, move |storage| {
            dispose_savepoint(storage, &job, &savepoint)
        }))
    }
}

impl HttpRuntime {
    /// Runs `work` on the storage at `uri`. The storage client blocks (and
    /// runs its own runtime for S3): a thread of its own keeps it off the
    /// reconciler's.
    async fn on_storage<T: Send + 'static>(
        &self,
        uri: &str,
        work: impl FnOnce(&CheckpointStorage) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let uri = uri.to_string();
        let storages = Arc::clone(&self.storages);
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let cached = storages.lock().expect("storage cache").get(&uri).cloned();
            let storage = cached.map(Ok).unwrap_or_else(|| {
                CheckpointStorage::from_uri(&uri, std::path::Path::new("/"))
                    .map_err(|e| e.to_string())
            });
            let result = storage.and_then(|storage| {
                let result = work(&storage);
                storages.lock().expect("storage cache").insert(uri, storage);
                result
            });
            let _ = tx.send(result);
        });
        rx.await
            .unwrap_or_else(|_| Err("the storage thread died".into()))
    }
}

/// Deletes a savepoint the operator took, after checking that `savepoint`
/// names this job's savepoint folder in this storage (a storage URI changed
/// since must not delete something else).
pub fn dispose_savepoint(
    storage: &CheckpointStorage,
    job: &str,
    savepoint: &SnapshotRef,
) -> Result<(), String> {
    let dir = Layout::new(job).snapshot_dir(SnapshotKind::Savepoint, savepoint.id);
    let location = storage.location(&dir);
    if location != savepoint.path {
        return Err(format!(
            "{} is not where savepoint {} of job {job} is kept ({location}); left alone",
            savepoint.path, savepoint.id
        ));
    }
    storage.delete_snapshot(&dir).map_err(|e| e.to_string())
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
