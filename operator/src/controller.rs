//! The controller: for each StreamJob it observes (StatefulSet, pod, the
//! runtime's control API, checkpoint storage), asks `lifecycle::decide` what
//! to do, writes the status, records the events, and only then acts.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, ContainerStatus, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use crate::crd::{StorageScope, StreamJob, StreamJobStatus};
use crate::lifecycle::{self, Action, EventType, Observed, Plan, PodHealth};
use crate::resources::{self, Restore, Scale};
use crate::runtime_api::{Endpoint, RuntimeApi};

/// Server-side apply's field manager: one for every write of the operator.
pub const FIELD_MANAGER: &str = "streamjob-operator";
pub const FINALIZER: &str = "streamjob.io/finalizer";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(Box<kube::runtime::finalizer::Error<Error>>),
    #[error("the StreamJob has no namespace")]
    NoNamespace,
    #[error("{0}")]
    InvalidSpec(String),
    /// A status the operator cannot have written (edited by hand).
    #[error("{0}")]
    BadStatus(String),
    /// Storage that cannot be read: no decision is taken on a guess.
    #[error("checkpoint storage: {0}")]
    Storage(String),
    /// The job's control token cannot be had.
    #[error("control token: {0}")]
    Token(String),
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// Who records the events (a Recorder is made per event, see `publish`).
    pub reporter: Reporter,
    pub runtime: Arc<dyn RuntimeApi>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The time decisions are taken at (tests move it on by hand).
    pub clock: Arc<dyn Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync>,
    /// Who may reach the jobs' control port: with some, each job gets a
    /// NetworkPolicy admitting only them (`resources::network_policy`).
    pub control_clients: Option<Vec<NetworkPolicyPeer>>,
}

impl Context {
    pub fn new(client: Client, runtime: Arc<dyn RuntimeApi>) -> Self {
        Context {
            reporter: Reporter {
                controller: FIELD_MANAGER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
            client,
            runtime,
            metrics: Arc::default(),
            clock: Arc::new(chrono::Utc::now),
            control_clients: None,
        }
    }
}

/// Runs the controller until the process stops.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    let (jobs, sets) = match &namespace {
        Some(ns) => (
            Api::<StreamJob>::namespaced(ctx.client.clone(), ns),
            Api::<StatefulSet>::namespaced(ctx.client.clone(), ns),
        ),
        None => (
            Api::<StreamJob>::all(ctx.client.clone()),
            Api::<StatefulSet>::all(ctx.client.clone()),
        ),
    };
    Controller::new(jobs, watcher::Config::default())
        .owns(sets, watcher::Config::default())
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(_job: Arc<StreamJob>, error: &Error, ctx: Arc<Context>) -> Requeue {
    tracing::warn!(%error, "reconcile failed");
    ctx.metrics.reconcile_errors.inc();
    Requeue::requeue(std::time::Duration::from_secs(15))
}

pub async fn reconcile(job: Arc<StreamJob>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let started = std::time::Instant::now();
    ctx.metrics.reconciles.inc();
    let ns = job.namespace().ok_or(Error::NoNamespace)?;
    let jobs: Api<StreamJob> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&jobs, FINALIZER, job, |event| async {
        match event {
            Finalizer::Apply(job) => apply(&job, &ctx).await,
            Finalizer::Cleanup(job) => cleanup(&job, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .reconcile_seconds
        .observe(started.elapsed().as_secs_f64());
    result
}

/// One reconcile of a live StreamJob: decide, write the status, act. An
/// action whose outcome matters (a savepoint) is followed by a second
/// decision on that outcome, whose status is written before anything else.
async fn apply(job: &StreamJob, ctx: &Context) -> Result<Requeue, Error> {
    let observed = observe(job, ctx).await?;
    let plan = lifecycle::decide(job, &observed);
    let job = commit(job, &plan, ctx).await?;
    let requeue = plan.requeue;
    // The objects follow the deployment the status records, at every
    // reconcile: a write that failed after the status was written (the
    // operator died, the API server refused) is made by the next one.
    apply_deployment(&job, ctx).await?;
    let follow_up = match plan.action {
        // Done by `apply_deployment`, from the status just written.
        Action::None | Action::Deploy(_) | Action::Undeploy => None,
        Action::StopWithSavepoint => {
            let endpoint = endpoint(&job, ctx).await?;
            let outcome = ctx
                .runtime
                .stop_with_savepoint(&endpoint, savepoint_timeout(&job))
                .await;
            Some(lifecycle::stopped(&job, &observed, outcome))
        }
        Action::TriggerSavepoint => {
            let endpoint = endpoint(&job, ctx).await?;
            let outcome = ctx
                .runtime
                .savepoint(&endpoint, savepoint_timeout(&job))
                .await;
            Some(lifecycle::savepoint_taken(&job, &observed, outcome))
        }
    };
    if let Some(plan) = follow_up {
        commit(&job, &plan, ctx).await?;
        // The recorded savepoint is acted on at once.
        return Ok(Requeue::requeue(std::time::Duration::from_millis(100)));
    }
    Ok(Requeue::requeue(requeue))
}

/// Deletes the savepoints that left the history (the status no longer
/// lists them). One that cannot be deleted is reported with its path, for
/// deletion by hand; it never blocks the job.
async fn dispose(job: &StreamJob, savepoints: &[crate::crd::SnapshotRef], ctx: &Context) {
    let Some(checkpoints) = &job.spec.checkpoints else {
        return;
    };
    let scoped = |scope| resources::scoped_storage(&checkpoints.storage, job, scope);
    for savepoint in savepoints {
        // Taken in the namespace's folder, or in the job's by a rollout
        // from before there were namespace folders.
        let in_namespace = scoped(StorageScope::Namespace);
        let uri = match savepoint.path.starts_with(&format!("{in_namespace}/")) {
            true => in_namespace,
            false => scoped(StorageScope::Job),
        };
        let outcome = ctx
            .runtime
            .dispose_savepoint(&uri, &job.name_any(), savepoint)
            .await;
        let (kind, reason, note) = match outcome {
            Ok(()) => (
                KubeEventType::Normal,
                "SavepointDisposed",
                format!(
                    "savepoint {} at {} deleted: beyond the {} kept (savepoints.retained)",
                    savepoint.id, savepoint.path, job.spec.savepoints.retained
                ),
            ),
            Err(e) => (
                KubeEventType::Warning,
                "SavepointDisposalFailed",
                format!(
                    "savepoint {} at {} left the history but could not be deleted ({e}); delete it by hand",
                    savepoint.id, savepoint.path
                ),
            ),
        };
        publish(ctx, job, kind, reason, note).await;
    }
}

fn savepoint_timeout(job: &StreamJob) -> std::time::Duration {
    job.spec.savepoints.timeout.as_std()
}

/// Deletion: an optional last savepoint, then the finalizer goes (owned
/// objects are garbage-collected through their owner references). A failed
/// savepoint is reported and does not block the deletion: the latest
/// checkpoint stays in storage, and a finalizer that never lets go is worse.
async fn cleanup(job: &StreamJob, ctx: &Context) -> Result<Requeue, Error> {
    if job.spec.savepoints.on_delete {
        let outcome = match endpoint(job, ctx).await {
            Ok(endpoint) => {
                ctx.runtime
                    .stop_with_savepoint(&endpoint, savepoint_timeout(job))
                    .await
            }
            Err(e) => Err(e.to_string()),
        };
        let (kind, reason, note) = match outcome {
            Ok(sp) => (
                KubeEventType::Normal,
                "SavepointCompleted",
                format!("savepoint {} at {} before deletion", sp.id, sp.path),
            ),
            Err(e) => (
                KubeEventType::Warning,
                "SavepointFailed",
                format!(
                    "no savepoint before deletion ({e}); the latest checkpoint stays in storage"
                ),
            ),
        };
        publish(ctx, job, kind, reason, note).await;
    }
    Ok(Requeue::await_change())
}

/// Writes the plan's status and events, then deletes the savepoints the
/// status no longer lists; returns the job as it now stands.
async fn commit(job: &StreamJob, plan: &Plan, ctx: &Context) -> Result<StreamJob, Error> {
    let ns = job.namespace().ok_or(Error::NoNamespace)?;
    let jobs: Api<StreamJob> = Api::namespaced(ctx.client.clone(), &ns);
    let mut job = job.clone();
    if job.status.as_ref() != Some(&plan.status) {
        let patch = serde_json::json!({
            "apiVersion": "streamjob.io/v1alpha1",
            "kind": "StreamJob",
            "status": with_conditions(plan.status.clone(), job.metadata.generation, (ctx.clock)()),
        });
        job = jobs
            .patch_status(
                &job.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
    }
    for event in &plan.events {
        ctx.metrics.event(&ns, &job.name_any(), event.reason);
        let kind = match event.kind {
            EventType::Normal => KubeEventType::Normal,
            EventType::Warning => KubeEventType::Warning,
        };
        publish(ctx, &job, kind, event.reason, event.note.clone()).await;
    }
    dispose(&job, &plan.dispose, ctx).await;
    Ok(job)
}

/// The `Ready` condition follows the phase.
fn with_conditions(
    mut status: StreamJobStatus,
    generation: Option<i64>,
    now: chrono::DateTime<chrono::Utc>,
) -> StreamJobStatus {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    let ready = status.phase == crate::crd::Phase::Running;
    let condition = Condition {
        type_: "Ready".into(),
        status: if ready { "True" } else { "False" }.into(),
        reason: status.phase.to_string(),
        message: status.error.clone().unwrap_or_default(),
        observed_generation: generation,
        last_transition_time: Time(
            k8s_openapi::jiff::Timestamp::from_millisecond(now.timestamp_millis())
                .expect("a time within jiff's range"),
        ),
    };
    match status.conditions.iter_mut().find(|c| c.type_ == "Ready") {
        Some(old) if old.status == condition.status => {
            old.reason = condition.reason;
            old.message = condition.message;
            old.observed_generation = generation;
        }
        Some(old) => *old = condition,
        None => status.conditions.push(condition),
    }
    status
}

async fn publish(ctx: &Context, job: &StreamJob, kind: KubeEventType, reason: &str, note: String) {
    let event = KubeEvent {
        type_: kind,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    // kube's Recorder folds events of the same reason into one series and
    // keeps the first note, so a second upgrade's `SavepointCompleted` would
    // show the first one's path. The lifecycle emits an event per
    // transition, never per poll: one Recorder per event, no folding.
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    // An event that cannot be written must not stop the reconcile.
    if let Err(e) = recorder.publish(&event, &job.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "cannot record event");
    }
}

/// Applies the job's objects as its status records them: the ConfigMap
/// and Service, then the StatefulSet, from the spec recorded as deployed,
/// started as the deployment says, scaled to zero while suspended. Nothing
/// before the first deployment. Server-side apply of unchanged objects
/// changes nothing.
async fn apply_deployment(job: &StreamJob, ctx: &Context) -> Result<(), Error> {
    let Some(status) = &job.status else {
        return Ok(());
    };
    let Some(deployment) = &status.deployment else {
        return Ok(());
    };
    let restore = Restore::of(deployment).map_err(Error::BadStatus)?;
    let ns = job.namespace().ok_or(Error::NoNamespace)?;
    let deployed = deployed_job(job)?;
    let scale = match status.phase {
        crate::crd::Phase::Suspended => Scale::Stopped,
        _ => Scale::Running,
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let name = job.name_any();
    Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns)
        .patch(
            &resources::config_map_name(job),
            &params,
            &Patch::Apply(&resources::config_map(&deployed)),
        )
        .await?;
    Api::<Service>::namespaced(ctx.client.clone(), &ns)
        .patch(
            &name,
            &params,
            &Patch::Apply(&resources::service(&deployed)),
        )
        .await?;
    // The pods mount the token: it exists before they do.
    control_token(job, ctx).await?;
    if let Some(clients) = &ctx.control_clients {
        Api::<NetworkPolicy>::namespaced(ctx.client.clone(), &ns)
            .patch(
                &resources::control_name(job),
                &params,
                &Patch::Apply(&resources::network_policy(&deployed, clients)),
            )
            .await?;
    }
    let set = resources::stateful_set(&deployed, &restore, scale).map_err(Error::InvalidSpec)?;
    let sets = Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns);
    let existing = sets.get_opt(&name).await?;
    let policy = existing.map(|s| {
        // The API server's default.
        s.spec
            .and_then(|s| s.pod_management_policy)
            .unwrap_or_else(|| "OrderedReady".into())
    });
    if policy.is_some_and(|p| p != resources::POD_MANAGEMENT) {
        // Made by an operator before pods were managed in parallel, and
        // the field cannot change: replaced, its pods left running until
        // the new one adopts them (they are its pods by name and labels).
        tracing::info!(job = %name, "replacing the StatefulSet to manage its pods in parallel");
        sets.delete(&name, &DeleteParams::orphan()).await?;
    }
    sets.patch(&name, &params, &Patch::Apply(&set)).await?;
    replace_outdated_pods(&deployed, ctx).await
}

/// The label selector of the job's pods.
fn job_selector(job: &StreamJob) -> String {
    format!("{}={}", resources::JOB_LABEL, job.name_any())
}

/// Deletes the pods of rollouts before the recorded one, all at once: the
/// StatefulSet (`OnDelete`) makes them again from the new template.
async fn replace_outdated_pods(job: &StreamJob, ctx: &Context) -> Result<(), Error> {
    let ns = job.namespace().ok_or(Error::NoNamespace)?;
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    for pod in pods
        .list(&ListParams::default().labels(&job_selector(job)))
        .await?
    {
        if pod.metadata.deletion_timestamp.is_none() && resources::outdated(job, &pod) {
            tracing::info!(pod = %pod.name_any(), "deleting a pod of an earlier rollout");
            match pods.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                // Gone meanwhile.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// The job's control API as the operator calls it.
async fn endpoint(job: &StreamJob, ctx: &Context) -> Result<Endpoint, Error> {
    Ok(Endpoint {
        url: resources::control_url(job),
        token: control_token(job, ctx).await?,
    })
}

/// The job's control token, from its Secret; made the first time (32
/// random bytes, hex) and never rewritten, so running pods keep theirs.
async fn control_token(job: &StreamJob, ctx: &Context) -> Result<String, Error> {
    let ns = job.namespace().ok_or(Error::NoNamespace)?;
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &ns);
    let name = resources::control_name(job);
    let stored = match secrets.get_opt(&name).await? {
        Some(secret) => secret,
        None => {
            let token = new_token().map_err(|e| Error::Token(format!("no randomness: {e}")))?;
            match secrets
                .create(
                    &PostParams::default(),
                    &resources::token_secret(job, &token),
                )
                .await
            {
                Ok(_) => return Ok(token),
                // Made meanwhile (another reconcile): that one counts.
                Err(kube::Error::Api(e)) if e.code == 409 => secrets.get(&name).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    stored
        .data
        .as_ref()
        .and_then(|d| d.get(resources::TOKEN_KEY))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .filter(|t| t.trim().len() >= 16)
        .ok_or_else(|| {
            Error::Token(format!(
                "Secret {name} holds no usable {:?} (16 characters or more): delete it, and the operator makes a new one with the next rollout",
                resources::TOKEN_KEY
            ))
        })
}

/// 32 bytes from the kernel's random source, as hex.
fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The job with the spec its status records as deployed (a recovery keeps
/// the old spec while an upgrade waits for its savepoint).
fn deployed_job(job: &StreamJob) -> Result<StreamJob, Error> {
    let mut deployed = job.clone();
    let recorded = job
        .status
        .as_ref()
        .and_then(|s| s.last_reconciled_spec.as_deref());
    if let Some(spec) = recorded {
        // Never the new spec in its place: that would skip its upgrade.
        deployed.spec = serde_json::from_str(spec).map_err(|e| {
            Error::BadStatus(format!("status.lastReconciledSpec cannot be read: {e}"))
        })?;
    }
    Ok(deployed)
}

/// What the decision needs to know, read from the cluster, the runtime and
/// the storage.
async fn observe(job: &StreamJob, ctx: &Context) -> Result<Observed, Error> {
    let ns = job.namespace().ok_or(Error::NoNamespace)?;
    let name = job.name_any();
    let set = Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&name)
        .await?;
    let replicas = set.map(|s| s.spec.and_then(|s| s.replicas).unwrap_or(1));
    // The StatefulSet's pods have fixed names; pod 0 is looked at even at
    // zero replicas, while it terminates. One list, however many pods.
    let listed = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default().labels(&job_selector(job)))
        .await?;
    let each = (0..replicas.unwrap_or(0).max(1))
        .map(|index| {
            let pod_name = format!("{name}-{index}");
            let health = listed
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(pod_name.as_str()))
                .map_or(PodHealth::Absent, pod_health);
            (pod_name, health)
        })
        .collect();
    let pod = PodHealth::of_pods(each);
    let runtime = if pod == PodHealth::Absent {
        None
    } else {
        ctx.runtime.status(&resources::control_url(job)).await
    };
    let latest_checkpoint = match &job.spec.checkpoints {
        Some(checkpoints) => {
            let scope = resources::deployed_scope(job);
            let uri = resources::scoped_storage(&checkpoints.storage, job, scope);
            ctx.runtime
                .latest_checkpoint(&uri, &name)
                .await
                .map_err(Error::Storage)?
        }
        None => None,
    };
    Ok(Observed {
        now: (ctx.clock)(),
        replicas,
        pod,
        runtime,
        latest_checkpoint,
    })
}

/// A pod is failing when its container waits in CrashLoopBackOff: one exit
/// is the kubelet's to restart (the restarted process resumes from its
/// rollout's checkpoint), repeated ones are the operator's. Ready when its
/// readiness probe passes.
/// How the container last ended, as the kubelet reports it: the reason
/// (`OOMKilled`, `Error`), the exit code and, when the process said why,
/// the last line it wrote (the container's termination message falls back
/// to the end of its log). A process killed for memory cannot say so
/// itself: the advice is added here.
fn last_exit(c: &ContainerStatus) -> Option<String> {
    let ended = c.last_state.as_ref()?.terminated.as_ref()?;
    let reason = ended.reason.as_deref().unwrap_or("Error");
    let mut text = format!("last exit: {reason}, exit code {}", ended.exit_code);
    if reason == "OOMKilled" {
        text.push_str(
            " (out of memory: raise spec.resources.limits.memory or lower spec.parallelism)",
        );
    }
    let said = ended.message.as_deref().unwrap_or_default();
    if let Some(line) = said.lines().map(str::trim).rfind(|l| !l.is_empty()) {
        const MAX_CHARS: usize = 300;
        text.push_str(": ");
        text.extend(line.chars().take(MAX_CHARS));
        if line.chars().count() > MAX_CHARS {
            text.push('…');
        }
    }
    Some(text)
}

pub fn pod_health(pod: &Pod) -> PodHealth {
    let Some(status) = &pod.status else {
        return PodHealth::Starting;
    };
    for c in status.container_statuses.iter().flatten() {
        if let Some(waiting) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            if waiting.reason.as_deref() == Some("CrashLoopBackOff") {
                let mut reason = format!(
                    "CrashLoopBackOff after {} restarts: {}",
                    c.restart_count,
                    waiting.message.clone().unwrap_or_default()
                );
                if let Some(exit) = last_exit(c) {
                    reason.push_str("; ");
                    reason.push_str(&exit);
                }
                return PodHealth::Failing { reason };
            }
        }
    }
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if ready {
        PodHealth::Ready
    } else {
        PodHealth::Starting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crash_looping(last_state: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "counter-0"},
            "status": {"containerStatuses": [{
                "name": "streamjob", "image": "streamjob", "imageID": "", "ready": false,
                "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                "lastState": last_state,
            }]}
        }))
        .unwrap()
    }

    fn failing_reason(pod: &Pod) -> String {
        match pod_health(pod) {
            PodHealth::Failing { reason } => reason,
            other => panic!("not failing: {other:?}"),
        }
    }

    /// A process killed for memory cannot say why; one that failed said it
    /// last: the status and event carry either, not only "CrashLoopBackOff".
    #[test]
    fn a_crash_loop_says_how_the_container_last_ended() {
        let oom = crash_looping(serde_json::json!({"terminated": {
            "reason": "OOMKilled", "exitCode": 137
        }}));
        assert_eq!(
            failing_reason(&oom),
            "CrashLoopBackOff after 3 restarts: back-off 40s; last exit: OOMKilled, exit code 137 \
             (out of memory: raise spec.resources.limits.memory or lower spec.parallelism)"
        );
        let failed = crash_looping(serde_json::json!({"terminated": {
            "reason": "Error", "exitCode": 1,
            "message": "INFO started\nstreamjob: job counter failed: could not start thread worker-9\n\n"
        }}));
        assert_eq!(
            failing_reason(&failed),
            "CrashLoopBackOff after 3 restarts: back-off 40s; last exit: Error, exit code 1: \
             streamjob: job counter failed: could not start thread worker-9"
        );
        let long = crash_looping(serde_json::json!({"terminated": {
            "exitCode": 2, "message": "x".repeat(1000)
        }}));
        assert_eq!(
            failing_reason(&long),
            format!(
                "CrashLoopBackOff after 3 restarts: back-off 40s; last exit: Error, exit code 2: {}…",
                "x".repeat(300)
            )
        );
        let first = crash_looping(serde_json::json!({}));
        assert_eq!(
            failing_reason(&first),
            "CrashLoopBackOff after 3 restarts: back-off 40s"
        );
    }
}
