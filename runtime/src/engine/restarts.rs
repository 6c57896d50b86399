//! Restarts after a failure: the job runs again from its newest snapshot,
//! as its restart strategy allows, and a process of a deployment that ran
//! before resumes where that deployment got to.

use std::thread;

use super::{run, JobError, RestoreFrom, RunOptions, RunSummary};
use crate::checkpoint::{CheckpointStorage, Layout};
use crate::spec::JobSpec;

/// Runs the job, and after a failure restarts it from its latest checkpoint
/// as its restart strategy allows.
pub fn run_with_restarts(spec: &JobSpec, opts: &RunOptions) -> Result<RunSummary, JobError> {
    let mut opts = opts.clone();
    // Snapshots this process completes get ids from here on: a restart
    // resumes from one of them, or from where the process started.
    let layout = Layout::new(&spec.name);
    let storage = match &spec.checkpoints {
        Some(c) => Some(CheckpointStorage::from_uri(&c.storage, &opts.base_dir)?),
        None => None,
    };
    // Under a supervisor the deployment's first process sets it, for every
    // process of the deployment (see `RunOptions::deployment`).
    let since = match (&storage, &opts.deployment) {
        (Some(storage), Some(deployment)) => {
            let own = storage.last_id(&layout)? + 1;
            Some(deployment_start(storage, &layout, deployment, own)?)
        }
        (Some(storage), None) => Some(storage.last_id(&layout)? + 1),
        (None, _) => None,
    };
    let started_from = opts.restore.clone();
    let recovery = since.map(|since| RestoreFrom::Recovery {
        since,
        started_from: started_from.clone().map(Box::new),
    });
    if opts.deployment.is_some() {
        opts.restore = recovery.clone().or(opts.restore);
    }
    let mut attempt = 0;
    loop {
        let error = match run(spec, &opts) {
            Ok(mut summary) => {
                summary.restarts = attempt;
                return Ok(summary);
            }
            Err(e) => e,
        };
        attempt += 1;
        // One pod cannot start over alone: the job's pods restart together
        // (today: by their supervisor, as a failed job).
        if opts.pods.as_ref().is_some_and(|p| p.count() > 1) {
            return Err(error);
        }
        let delay = spec
            .restart_strategy
            .as_ref()
            .and_then(|r| r.delay(attempt));
        let (Some(delay), true) = (delay, error.is_retryable()) else {
            return Err(error);
        };
        // Only to say where the restart resumes; `run` decides the same way.
        let resumes_from = match (&storage, since) {
            (Some(storage), Some(since)) => {
                opts.restore = recovery.clone();
                match storage.newest(&layout) {
                    Ok(Some((_, id))) if id >= since => "the latest checkpoint",
                    Ok(_) if started_from.is_some() => "where it started",
                    Ok(_) => "the start (no checkpoint yet)",
                    Err(_) => "the latest checkpoint, once its storage answers",
                }
            }
            _ => "the start (no checkpoints)",
        };
        if let Some(control) = &opts.control {
            control.restarting(error.to_string());
        }
        crate::notice!(
            "job {} failed: {error}; restart {attempt} in {delay:?} from {resumes_from}",
            spec.name
        );
        thread::sleep(delay);
    }
}

/// The first snapshot id of `deployment`: recorded by its first process
/// (as `since`), read back by every later one.
fn deployment_start(
    storage: &CheckpointStorage,
    layout: &Layout,
    deployment: &str,
    since: u64,
) -> Result<u64, JobError> {
    let key = layout.deployment_marker(deployment);
    let recorded = storage.get(&key)?.and_then(|bytes| {
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()?
            .get("since")?
            .as_u64()
    });
    if let Some(since) = recorded {
        crate::notice!("deployment {deployment} started before: resuming from its newest snapshot (ids from {since})");
        return Ok(since);
    }
    storage.write(
        &key,
        serde_json::json!({ "since": since }).to_string().as_bytes(),
    )?;
    Ok(since)
}
