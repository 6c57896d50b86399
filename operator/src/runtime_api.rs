//! The operator's view of a running job: its control API (the wire types
//! of `streamjob-api`) and its checkpoint storage (`streamjob-storage`),
//! the only two things the operator and the runtime share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use streamjob_api::{
    paths, ErrorAnswer, JobStatus, SavepointStatus, SavepointTriggered, StopAnswer, StopRequest,
};
use streamjob_storage::{Layout, SnapshotKind, SnapshotStore};

use crate::crd::SnapshotRef;
use crate::lifecycle::RuntimeStatus;

/// A job's control API: where it is, and the token its requests that change
/// the job must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub token: String,
}

/// Calls on a job's runtime; a trait so that tests can point the controller
/// at processes of their own.
pub trait RuntimeApi: Send + Sync {
    /// `GET /status`; `None` when the runtime does not answer.
    fn status<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Option<RuntimeStatus>>;
    /// `POST /stop {"savepoint": true}`: the savepoint, or why there is none.
    fn stop_with_savepoint<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<SnapshotRef, String>>;
    /// `POST /savepoints`, then `GET /savepoints/{id}` until it ends.
    fn savepoint<'a>(
        &'a self,
        endpoint: &'a Endpoint,
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
    storages: Arc<Mutex<HashMap<String, SnapshotStore>>>,
}

impl HttpRuntime {
    /// Sends a request and reads the JSON answer; a non-2xx answer is an
    /// error with the runtime's reason.
    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<T, String> {
        let response = request.timeout(timeout).send().await.map_err(|e| {
            if e.is_timeout() {
                format!("timed out after {} s", timeout.as_secs())
            } else {
                format!("the control API does not answer: {e}")
            }
        })?;
        let code = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if !code.is_success() {
            let reason = serde_json::from_slice::<ErrorAnswer>(&body)
                .map_or_else(|_| "no reason given".into(), |e| e.error);
            return Err(format!("{code}: {reason}"));
        }
        serde_json::from_slice(&body)
            .map_err(|e| format!("unexpected answer from the runtime: {e}"))
    }
}

impl RuntimeApi for HttpRuntime {
    fn status<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Option<RuntimeStatus>> {
        Box::pin(async move {
            let status: JobStatus = self
                .call(
                    self.http.get(format!("{url}{}", paths::STATUS)),
                    Duration::from_secs(5),
                )
                .await
                .ok()?;
            Some(RuntimeStatus::from(status))
        })
    }

    fn stop_with_savepoint<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<SnapshotRef, String>> {
        Box::pin(async move {
            let request = self
                .http
                .post(format!("{}{}", endpoint.url, paths::STOP))
                .bearer_auth(&endpoint.token)
                .json(&StopRequest { savepoint: true });
            let answer: StopAnswer = self.call(request, timeout).await?;
            let savepoint = answer
                .savepoint
                .ok_or("/stop answered without a savepoint")?;
            Ok(SnapshotRef {
                id: savepoint.id,
                path: savepoint.path,
                time: None,
            })
        })
    }

    fn savepoint<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<SnapshotRef, String>> {
        Box::pin(async move {
            let url = &endpoint.url;
            let deadline = tokio::time::Instant::now() + timeout;
            let SavepointTriggered { id } = self
                .call(
                    // The API takes only JSON objects posted as JSON.
                    self.http
                        .post(format!("{url}{}", paths::SAVEPOINTS))
                        .bearer_auth(&endpoint.token)
                        .json(&serde_json::json!({})),
                    Duration::from_secs(40),
                )
                .await?;
            while tokio::time::Instant::now() < deadline {
                let status = self
                    .call(
                        self.http.get(format!("{url}{}", paths::savepoint(id))),
                        Duration::from_secs(5),
                    )
                    .await?;
                match status {
                    SavepointStatus::Completed { path } => {
                        return Ok(SnapshotRef {
                            id,
                            path,
                            time: None,
                        })
                    }
                    SavepointStatus::Failed { error } => return Err(error),
                    SavepointStatus::InProgress => {
                        tokio::time::sleep(Duration::from_millis(500)).await
                    }
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
        work: impl FnOnce(&SnapshotStore) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let uri = uri.to_string();
        let storages = Arc::clone(&self.storages);
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let cached = storages.lock().expect("storage cache").get(&uri).cloned();
            let storage = cached.map(Ok).unwrap_or_else(|| {
                SnapshotStore::from_uri(&uri, std::path::Path::new("/")).map_err(|e| e.to_string())
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
    storage: &SnapshotStore,
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
pub fn find_latest(storage: &SnapshotStore, job: &str) -> Result<Option<SnapshotRef>, String> {
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

/// The runtime's `/status` JSON, as the lifecycle reads it; `None` when
/// it is not a status (no `state`).
pub fn runtime_status(json: &serde_json::Value) -> Option<RuntimeStatus> {
    serde_json::from_value::<JobStatus>(json.clone())
        .ok()
        .map(RuntimeStatus::from)
}
