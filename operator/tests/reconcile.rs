//! The controller against an in-memory API server (kube-fake-client): the
//! exact objects, statuses and events on every lifecycle path. The runtime
//! is a fake whose answers each test sets; it also notes what the status
//! said when each request reached it, which shows the status is written
//! before the operator acts.

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{env, replicas, restore_args, Cluster, PodState};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::Api;
use kube::Client;
use kube_fake_client::interceptor;
use streamjob_api::JobState;
use streamjob_operator::controller::FINALIZER;
use streamjob_operator::crd::{
    DesiredState, Phase, RestoreKind, SnapshotRef, StreamJob, UpgradeStep,
};
use streamjob_operator::lifecycle::RuntimeStatus;
use streamjob_operator::runtime_api::{Endpoint, RuntimeApi};

const CONTROL_URL: &str = "http://visit-counter-0.visit-counter.default.svc:8081";

fn checkpoint(id: u64) -> SnapshotRef {
    SnapshotRef {
        id,
        path: format!("s3://streamjob-checkpoints/jobs/default/visit-counter/checkpoints/chk-{id}"),
        time: None,
    }
}

fn savepoint(id: u64) -> SnapshotRef {
    SnapshotRef {
        id,
        path: format!("s3://streamjob-checkpoints/jobs/default/visit-counter/savepoints/sp-{id}"),
        time: None,
    }
}

/// A runtime whose answers the test sets.
#[derive(Default)]
struct FakeRuntime {
    state: Mutex<RuntimeState>,
    /// To read the job's status when a request arrives.
    client: OnceLock<Client>,
}

#[derive(Default)]
struct RuntimeState {
    /// What `/status` answers (`None`: no answer).
    status: Option<RuntimeStatus>,
    /// Answers to the next stop-with-savepoint requests.
    stops: VecDeque<Result<SnapshotRef, String>>,
    savepoints: VecDeque<Result<SnapshotRef, String>>,
    /// The newest snapshot in storage.
    latest: Option<SnapshotRef>,
    /// Requests, each with the job's phase and upgrade step at that moment.
    calls: Vec<String>,
}

impl FakeRuntime {
    fn new() -> Arc<Self> {
        Arc::new(FakeRuntime::default())
    }

    /// The job runs, its checkpoint `id` the newest.
    fn running(&self, id: u64) {
        let mut s = self.state.lock().unwrap();
        s.status = Some(RuntimeStatus {
            state: JobState::Running,
            last_checkpoint: Some(checkpoint(id)),
            last_savepoint: None,
        });
        s.latest = Some(checkpoint(id));
    }

    fn down(&self) {
        self.state.lock().unwrap().status = None;
    }

    fn answer_stop(&self, outcome: Result<SnapshotRef, String>) {
        self.state.lock().unwrap().stops.push_back(outcome);
    }

    fn answer_savepoint(&self, outcome: Result<SnapshotRef, String>) {
        self.state.lock().unwrap().savepoints.push_back(outcome);
    }

    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap().calls)
    }

    /// Records a request; every one must come with the job's own token,
    /// as its Secret holds it.
    async fn note(&self, request: &str, endpoint: &Endpoint) {
        assert_eq!(endpoint.url, CONTROL_URL);
        let client = self.client.get().expect("a client").clone();
        let secret = Api::<Secret>::namespaced(client.clone(), "default")
            .get("visit-counter-control")
            .await
            .expect("the job's token Secret");
        assert_eq!(
            secret.data.unwrap()["token"].0,
            endpoint.token.as_bytes(),
            "{request} without the job's token"
        );
        self.record(request).await;
    }

    /// Records a request with the job's phase and upgrade step.
    async fn record(&self, request: &str) {
        let client = self.client.get().expect("a client").clone();
        let job = Api::<StreamJob>::namespaced(client, "default")
            .get("visit-counter")
            .await
            .unwrap();
        let status = job.status.unwrap_or_default();
        let step = status
            .upgrade
            .map(|u| u.step.to_string())
            .unwrap_or_default();
        self.state
            .lock()
            .unwrap()
            .calls
            .push(format!("{request} ({} {step})", status.phase));
    }
}

impl RuntimeApi for FakeRuntime {
    fn status<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Option<RuntimeStatus>> {
        assert_eq!(url, CONTROL_URL);
        Box::pin(async move { self.state.lock().unwrap().status.clone() })
    }

    fn stop_with_savepoint<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<SnapshotRef, String>> {
        Box::pin(async move {
            self.note("stop", endpoint).await;
            let mut s = self.state.lock().unwrap();
            let outcome = s.stops.pop_front().expect("an answer for the stop");
            if let Ok(savepoint) = &outcome {
                s.status = Some(RuntimeStatus {
                    state: JobState::Finished,
                    last_checkpoint: s.status.as_ref().and_then(|r| r.last_checkpoint.clone()),
                    last_savepoint: Some(savepoint.clone()),
                });
                s.latest = Some(savepoint.clone());
            }
            outcome
        })
    }

    fn savepoint<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<SnapshotRef, String>> {
        Box::pin(async move {
            self.note("savepoint", endpoint).await;
            let mut s = self.state.lock().unwrap();
            s.savepoints
                .pop_front()
                .expect("an answer for the savepoint")
        })
    }

    fn latest_checkpoint<'a>(
        &'a self,
        uri: &'a str,
        job: &'a str,
    ) -> BoxFuture<'a, Result<Option<SnapshotRef>, String>> {
        assert_eq!(
            (uri, job),
            ("s3://streamjob-checkpoints/jobs/default", "visit-counter")
        );
        Box::pin(async move { Ok(self.state.lock().unwrap().latest.clone()) })
    }

    fn dispose_savepoint<'a>(
        &'a self,
        uri: &'a str,
        job: &'a str,
        savepoint: &'a SnapshotRef,
    ) -> BoxFuture<'a, Result<(), String>> {
        assert_eq!(
            (uri, job),
            ("s3://streamjob-checkpoints/jobs/default", "visit-counter")
        );
        Box::pin(async move {
            let call = format!("dispose {}", savepoint.id);
            self.record(&call).await;
            Ok(())
        })
    }
}

/// The example job in a fresh cluster, with its finalizer in place.
async fn created() -> (Cluster, Arc<FakeRuntime>) {
    created_with(interceptor::Funcs::new()).await
}

async fn created_with(funcs: interceptor::Funcs) -> (Cluster, Arc<FakeRuntime>) {
    created_as(common::example_job(), funcs).await
}

async fn created_as(mut job: StreamJob, funcs: interceptor::Funcs) -> (Cluster, Arc<FakeRuntime>) {
    // The finalizer is already there: kube adds it with a JSON patch that
    // tests `/metadata/finalizers` for null, which the API server accepts
    // for an absent field and kube-fake-client does not.
    job.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let runtime = FakeRuntime::new();
    let cluster = Cluster::with_interceptors(job, runtime.clone(), funcs).await;
    assert!(runtime.client.set(cluster.client.clone()).is_ok());
    (cluster, runtime)
}

/// Created, deployed, and running with checkpoint 3 complete.
async fn running() -> (Cluster, Arc<FakeRuntime>) {
    let (cluster, runtime) = created().await;
    cluster.reconcile().await.unwrap();
    cluster.set_pod(PodState::Ready).await;
    runtime.running(3);
    cluster.advance(30);
    cluster.reconcile().await.unwrap();
    assert_eq!(cluster.status().await.phase, Phase::Running);
    cluster.new_events().await;
    (cluster, runtime)
}

#[tokio::test]
async fn create_applies_the_objects_then_reports_running() {
    let (cluster, runtime) = created().await;
    cluster.reconcile().await.unwrap();

    let job = cluster.job().await;
    let status = job.status.clone().unwrap();
    assert_eq!(status.phase, Phase::Deploying);
    assert_eq!(status.observed_generation, job.metadata.generation);
    let deployment = status.deployment.clone().unwrap();
    assert_eq!(deployment.restore, RestoreKind::None);
    assert_eq!(
        deployment.id,
        format!(
            "{}-g{}",
            cluster.now().timestamp_millis(),
            job.metadata.generation.unwrap()
        )
    );
    let ready = &status.conditions[0];
    assert_eq!(
        (
            ready.type_.as_str(),
            ready.status.as_str(),
            ready.reason.as_str()
        ),
        ("Ready", "False", "Deploying")
    );
    assert_eq!(
        cluster.new_events().await,
        [(
            "Normal".into(),
            "Deploying".into(),
            "deploying with empty state".into()
        )]
    );

    // The owned objects, each pointing back at the job.
    let set = cluster.stateful_set().await;
    let owner = &set.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        (
            "StreamJob",
            "visit-counter",
            job.metadata.uid.as_deref().unwrap()
        )
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(replicas(&set), 1);
    assert!(restore_args(&set).is_empty());
    assert_eq!(
        env(&set, "STREAMJOB_DEPLOYMENT").as_deref(),
        Some(deployment.id.as_str())
    );
    assert_eq!(
        env(&set, "AWS_ENDPOINT_URL").as_deref(),
        Some("http://minio.storage.svc:9000")
    );
    let job_file = cluster.config_map().await.data.unwrap()["job.yaml"].clone();
    let pipeline: streamjob_spec::JobSpec = serde_yaml::from_str(&job_file).unwrap();
    assert_eq!(
        (pipeline.name.as_str(), pipeline.parallelism),
        ("visit-counter", 2)
    );
    let service = cluster.service().await;
    assert_eq!(
        service.spec.unwrap().cluster_ip.as_deref(),
        Some("None"),
        "headless"
    );

    // The pod comes up and the job runs.
    cluster.set_pod(PodState::Ready).await;
    runtime.running(3);
    cluster.advance(30);
    cluster.reconcile().await.unwrap();
    let status = cluster.status().await;
    assert_eq!(status.phase, Phase::Running);
    assert_eq!(status.last_checkpoint, Some(checkpoint(3)));
    assert_eq!(status.error, None);
    assert_eq!(
        (
            status.conditions[0].status.as_str(),
            status.conditions[0].reason.as_str()
        ),
        ("True", "Running")
    );
    assert!(cluster.new_events().await.is_empty());
    assert!(runtime.calls().is_empty());

    // Nothing changes, nothing happens.
    let before = cluster.stateful_set().await;
    cluster.advance(10);
    cluster.reconcile().await.unwrap();
    assert_eq!(cluster.stateful_set().await.spec, before.spec);
    assert!(cluster.new_events().await.is_empty());
}

/// Each StreamJob gets a random control token in a Secret it owns, made
/// once: later reconciles (and rollouts) keep it, the pods mount it, and
/// the operator's own calls carry it (`FakeRuntime::note` checks each).
#[tokio::test]
async fn the_control_token_is_made_once_owned_and_mounted() {
    let (cluster, _runtime) = running().await;
    let secrets = Api::<Secret>::namespaced(cluster.client.clone(), "default");
    let secret = secrets.get("visit-counter-control").await.unwrap();
    let token = secret.data.as_ref().unwrap()["token"].0.clone();
    assert_eq!(token.len(), 64);
    assert!(token.iter().all(u8::is_ascii_hexdigit));
    let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("StreamJob", "visit-counter")
    );
    cluster.advance(60);
    cluster.reconcile().await.unwrap();
    let again = secrets.get("visit-counter-control").await.unwrap();
    assert_eq!(again.data.unwrap()["token"].0, token);

    let set = cluster.stateful_set().await;
    let pod = set.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let volume = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "control-token")
        .unwrap();
    let source = volume.secret.as_ref().unwrap();
    assert_eq!(
        (source.secret_name.as_deref(), source.default_mode),
        (Some("visit-counter-control"), Some(0o440))
    );
    let args = pod.containers[0].args.clone().unwrap();
    assert_eq!(
        args[4..6],
        ["--control-token-file", "/var/run/streamjob/control/token"]
    );
}

/// Started with `--control-clients`, the operator gives each job a
/// NetworkPolicy that admits only those peers, only on the control port.
#[tokio::test]
async fn control_clients_make_a_network_policy_per_job() {
    let (mut cluster, runtime) = running().await;
    let operator_pods: NetworkPolicyPeer = serde_json::from_value(serde_json::json!({
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "streamjob-system"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "streamjob-operator"}}
    }))
    .unwrap();
    let policies = Api::<NetworkPolicy>::namespaced(cluster.client.clone(), "default");
    assert!(policies
        .get_opt("visit-counter-control")
        .await
        .unwrap()
        .is_none());
    cluster.restart_operator_admitting(runtime.clone(), vec![operator_pods.clone()]);
    cluster.advance(30);
    cluster.reconcile().await.unwrap();
    let policy = policies.get("visit-counter-control").await.unwrap();
    let spec = policy.spec.unwrap();
    assert_eq!(
        spec.pod_selector.unwrap().match_labels.unwrap()["streamjob.io/job"],
        "visit-counter"
    );
    assert_eq!(spec.policy_types.unwrap(), ["Ingress"]);
    let rules = spec.ingress.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].from.as_deref(), Some(&[operator_pods][..]));
    let ports = rules[0].ports.as_ref().unwrap();
    assert_eq!(
        (
            ports.len(),
            ports[0].port.clone(),
            ports[0].protocol.as_deref()
        ),
        (1, Some(IntOrString::Int(8081)), Some("TCP"))
    );
    let owner = &policy.metadata.owner_references.unwrap()[0];
    assert_eq!(owner.name, "visit-counter");
}

#[tokio::test]
async fn a_spec_change_rolls_out_through_a_savepoint_recorded_first() {
    let (cluster, runtime) = running().await;
    let old_set = cluster.stateful_set().await;
    cluster.edit(|spec| spec.parallelism = 4).await;
    runtime.answer_stop(Ok(savepoint(5)));
    cluster.reconcile().await.unwrap();

    // The stop reached the runtime with the upgrade already in the status.
    assert_eq!(runtime.calls(), ["stop (Upgrading stopping)"]);
    let status = cluster.status().await;
    let upgrade = status.upgrade.clone().unwrap();
    assert_eq!(upgrade.savepoint_path, Some(savepoint(5).path));
    assert_eq!(status.last_savepoint, Some(savepoint(5)));
    assert_eq!(status.savepoint_history, [savepoint(5)]);
    // Nothing redeployed before the path was written.
    assert_eq!(cluster.stateful_set().await.spec, old_set.spec);
    let events = cluster.new_events().await;
    assert_eq!(
        events,
        [
            (
                "Normal".into(),
                "UpgradeStarted".into(),
                format!(
                    "spec generation {} changed: stopping the job with a savepoint",
                    upgrade.target_generation
                )
            ),
            (
                "Normal".into(),
                "SavepointCompleted".into(),
                format!("savepoint 5 at {}", savepoint(5).path)
            ),
        ]
    );

    // The redeploy, from that savepoint, with the new spec.
    cluster.set_pod(PodState::Absent).await;
    runtime.down();
    cluster.reconcile().await.unwrap();
    let set = cluster.stateful_set().await;
    assert_eq!(restore_args(&set), ["--from-savepoint", &savepoint(5).path]);
    let job_file = cluster.config_map().await.data.unwrap()["job.yaml"].clone();
    assert!(job_file.contains("parallelism: 4"), "{job_file}");
    let status = cluster.status().await;
    assert_eq!(status.phase, Phase::Deploying);
    assert_eq!(status.upgrade, None);
    let deployment = status.deployment.unwrap();
    assert_eq!(
        (deployment.restore, deployment.savepoint_path),
        (RestoreKind::Savepoint, Some(savepoint(5).path))
    );
    assert_ne!(
        env(&set, "STREAMJOB_DEPLOYMENT"),
        env(&old_set, "STREAMJOB_DEPLOYMENT"),
        "a new rollout"
    );
    assert_eq!(cluster.new_reasons().await, ["Redeploying"]);

    cluster.set_pod(PodState::Ready).await;
    runtime.running(6);
    cluster.reconcile().await.unwrap();
    assert_eq!(cluster.status().await.phase, Phase::Running);
}

#[tokio::test]
async fn a_savepoint_that_times_out_keeps_the_old_spec_running_and_is_retried() {
    let (cluster, runtime) = running().await;
    let old_set = cluster.stateful_set().await;
    cluster.edit(|spec| spec.parallelism = 4).await;
    runtime.answer_stop(Err("timed out after 300 s".into()));
    cluster.reconcile().await.unwrap();
    assert_eq!(runtime.calls(), ["stop (Upgrading stopping)"]);

    let status = cluster.status().await;
    assert_eq!(status.phase, Phase::Upgrading);
    assert_eq!(status.upgrade.unwrap().step, UpgradeStep::SavepointFailed);
    let error = status.error.unwrap();
    assert!(
        error.contains("failed: timed out after 300 s. The job keeps running the old spec"),
        "{error}"
    );
    let events = cluster.new_events().await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].1, "UpgradeStarted");
    assert_eq!(
        events[1],
        ("Warning".into(), "SavepointFailed".into(), error.clone())
    );
    // Never a stateless start: the old pods stay as they were.
    assert_eq!(cluster.stateful_set().await.spec, old_set.spec);

    // Before the retry time: nothing.
    cluster.advance(30);
    cluster.reconcile().await.unwrap();
    assert!(runtime.calls().is_empty());
    assert!(cluster.new_events().await.is_empty());

    // Then the savepoint is tried again, and this time it works.
    cluster.advance(31);
    runtime.answer_stop(Ok(savepoint(6)));
    cluster.reconcile().await.unwrap();
    assert_eq!(runtime.calls(), ["stop (Upgrading stopping)"]);
    assert_eq!(
        cluster.new_reasons().await,
        ["UpgradeRetrying", "SavepointCompleted"]
    );
    cluster.reconcile().await.unwrap();
    let set = cluster.stateful_set().await;
    assert_eq!(restore_args(&set), ["--from-savepoint", &savepoint(6).path]);
    assert_eq!(cluster.status().await.error, None);
}

#[tokio::test]
async fn suspend_stops_with_a_savepoint_and_resume_starts_from_it() {
    let (cluster, runtime) = running().await;
    cluster
        .edit(|spec| spec.state = DesiredState::Suspended)
        .await;
    runtime.answer_stop(Ok(savepoint(4)));
    cluster.reconcile().await.unwrap();
    assert_eq!(runtime.calls(), ["stop (Upgrading suspending)"]);
    assert_eq!(
        cluster.new_reasons().await,
        ["Suspending", "SavepointCompleted"]
    );

    cluster.reconcile().await.unwrap();
    assert_eq!(replicas(&cluster.stateful_set().await), 0);
    let status = cluster.status().await;
    assert_eq!(status.phase, Phase::Suspended);
    assert_eq!(status.upgrade, None);
    assert_eq!(
        cluster.new_events().await,
        [(
            "Normal".into(),
            "Suspended".into(),
            format!(
                "pods removed; resuming starts from savepoint {}",
                savepoint(4).path
            )
        )]
    );
    cluster.set_pod(PodState::Absent).await;
    runtime.down();

    // Suspended stays suspended.
    cluster.advance(600);
    cluster.reconcile().await.unwrap();
    assert_eq!(cluster.status().await.phase, Phase::Suspended);
    assert!(cluster.new_events().await.is_empty());

    cluster
        .edit(|spec| spec.state = DesiredState::Running)
        .await;
    cluster.reconcile().await.unwrap();
    let set = cluster.stateful_set().await;
    assert_eq!(replicas(&set), 1);
    assert_eq!(restore_args(&set), ["--from-savepoint", &savepoint(4).path]);
    assert_eq!(
        cluster.new_events().await,
        [(
            "Normal".into(),
            "Resuming".into(),
            format!("starting from savepoint {}", savepoint(4).path)
        )]
    );
}

#[tokio::test]
async fn a_crash_looping_pod_is_redeployed_from_the_latest_checkpoint_after_a_backoff() {
    let (cluster, runtime) = running().await;
    let old_set = cluster.stateful_set().await;
    cluster.set_pod(PodState::CrashLooping).await;
    runtime.down();
    cluster.reconcile().await.unwrap();

    let status = cluster.status().await;
    assert_eq!(status.phase, Phase::Recovering);
    let reason = "CrashLoopBackOff after 4 restarts: back-off 1m20s restarting failed container";
    assert_eq!(status.error.as_deref(), Some(reason));
    assert_eq!(
        cluster.new_events().await,
        [(
            "Warning".into(),
            "JobFailed".into(),
            format!("{reason}; recovering from the latest checkpoint in 10 s (attempt 1 of 5)")
        )]
    );
    assert_eq!(
        cluster.stateful_set().await.spec,
        old_set.spec,
        "the backoff first"
    );

    cluster.advance(10);
    cluster.reconcile().await.unwrap();
    let set = cluster.stateful_set().await;
    assert_eq!(restore_args(&set), ["--from-latest-checkpoint"]);
    assert_ne!(
        env(&set, "STREAMJOB_DEPLOYMENT"),
        env(&old_set, "STREAMJOB_DEPLOYMENT")
    );
    let status = cluster.status().await;
    assert_eq!(status.restarts, 1);
    assert_eq!(
        status.deployment.unwrap().restore,
        RestoreKind::LatestCheckpoint
    );
    assert_eq!(
        cluster.new_events().await,
        [(
            "Normal".into(),
            "Recovering".into(),
            format!(
                "redeploying from checkpoint 3 ({}) (attempt 1 of 5)",
                checkpoint(3).path
            )
        )]
    );
    // Prometheus counts them per job, across the pods' lives.
    let text = cluster.ctx.metrics.encode();
    for reason in ["JobFailed", "Recovering"] {
        let series = format!(
            "streamjob_operator_events_total{{streamjob_namespace=\"{}\",streamjob=\"{}\",reason=\"{reason}\"}} 1\n",
            cluster.ns, cluster.name
        );
        assert!(text.contains(&series), "{series} not in:\n{text}");
    }

    cluster.set_pod(PodState::Ready).await;
    runtime.running(4);
    cluster.reconcile().await.unwrap();
    let status = cluster.status().await;
    assert_eq!((status.phase, status.error), (Phase::Running, None));
}

#[tokio::test]
async fn a_manual_savepoint_is_taken_once_per_nonce() {
    let (cluster, runtime) = running().await;
    cluster
        .edit(|spec| spec.savepoint_trigger_nonce = Some(1))
        .await;
    runtime.answer_savepoint(Ok(savepoint(4)));
    cluster.reconcile().await.unwrap();
    assert_eq!(runtime.calls(), ["savepoint (Running )"]);
    assert_eq!(
        cluster.new_reasons().await,
        ["SavepointTriggered", "SavepointCompleted"]
    );
    assert_eq!(cluster.status().await.savepoint_history, [savepoint(4)]);
    cluster.reconcile().await.unwrap();
    assert!(runtime.calls().is_empty(), "not again for the same nonce");
}

#[tokio::test]
async fn savepoints_beyond_the_retained_ones_are_deleted_after_the_status_drops_them() {
    let (cluster, runtime) = running().await;
    cluster.edit(|spec| spec.savepoints.retained = 2).await;
    for (nonce, id) in [(1, 4), (2, 5), (3, 6)] {
        cluster
            .edit(|spec| spec.savepoint_trigger_nonce = Some(nonce))
            .await;
        runtime.answer_savepoint(Ok(savepoint(id)));
        cluster.reconcile().await.unwrap();
    }
    // The third savepoint pushes the first out; the status no longer lists
    // it when the deletion is asked for.
    assert_eq!(
        runtime.calls(),
        [
            "savepoint (Running )",
            "savepoint (Running )",
            "savepoint (Running )",
            "dispose 4 (Running )"
        ]
    );
    let status = cluster.status().await;
    assert_eq!(status.savepoint_history, [savepoint(5), savepoint(6)]);
    let events = cluster.new_events().await;
    assert_eq!(
        events.last().unwrap(),
        &(
            "Normal".into(),
            "SavepointDisposed".into(),
            format!(
                "savepoint 4 at {} deleted: beyond the 2 kept (savepoints.retained)",
                savepoint(4).path
            )
        )
    );
}

#[tokio::test]
async fn an_operator_restarted_after_recording_the_savepoint_redeploys_without_a_second_stop() {
    // The first StatefulSet write after the savepoint fails, as if the
    // operator died right after writing the status.
    let fail = Arc::new(AtomicBool::new(false));
    let funcs = {
        let fail = fail.clone();
        interceptor::Funcs::new().patch(move |ctx| {
            let is_set = ctx.patch.get("kind").and_then(|k| k.as_str()) == Some("StatefulSet");
            if is_set && fail.swap(false, Ordering::SeqCst) {
                return Err(kube_fake_client::Error::Internal("operator killed".into()));
            }
            Ok(None)
        })
    };
    let (mut cluster, runtime) = created_with(funcs).await;
    cluster.reconcile().await.unwrap();
    cluster.set_pod(PodState::Ready).await;
    runtime.running(3);
    cluster.reconcile().await.unwrap();
    cluster.new_events().await;

    cluster.edit(|spec| spec.parallelism = 4).await;
    runtime.answer_stop(Ok(savepoint(5)));
    cluster.reconcile().await.unwrap();
    assert_eq!(runtime.calls(), ["stop (Upgrading stopping)"]);
    assert_eq!(
        cluster.new_reasons().await,
        ["UpgradeStarted", "SavepointCompleted"]
    );
    fail.store(true, Ordering::SeqCst);
    assert!(cluster.reconcile().await.is_err(), "the operator died");
    assert_eq!(cluster.new_reasons().await, ["Redeploying"]);
    let set = cluster.stateful_set().await;
    assert!(restore_args(&set).is_empty(), "not redeployed yet");

    // A new operator process finds the path in the status and redeploys.
    cluster.restart_operator(runtime.clone());
    cluster.reconcile().await.unwrap();
    assert!(runtime.calls().is_empty(), "no second stop");
    let set = cluster.stateful_set().await;
    assert_eq!(restore_args(&set), ["--from-savepoint", &savepoint(5).path]);
    let job_file = cluster.config_map().await.data.unwrap()["job.yaml"].clone();
    assert!(job_file.contains("parallelism: 4"), "{job_file}");
    assert!(cluster.new_events().await.is_empty());
}

#[tokio::test]
async fn an_operator_restarted_during_the_stop_takes_the_savepoint_the_job_reports() {
    let (mut cluster, runtime) = running().await;
    cluster.edit(|spec| spec.parallelism = 4).await;
    // The stop is asked for, and the operator dies before the answer: the
    // runtime stopped with savepoint 5, the status says only "stopping".
    runtime.answer_stop(Err("connection reset".into()));
    cluster.reconcile().await.unwrap();
    let mut status = cluster.status().await;
    let mut upgrade = status.upgrade.clone().unwrap();
    upgrade.step = UpgradeStep::Stopping;
    status.upgrade = Some(upgrade);
    status.error = None;
    status.phase = Phase::Upgrading;
    Api::<StreamJob>::namespaced(cluster.client.clone(), "default")
        .patch_status(
            "visit-counter",
            &Default::default(),
            &kube::api::Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await
        .unwrap();
    runtime.calls();
    cluster.new_events().await;
    runtime.state.lock().unwrap().status = Some(RuntimeStatus {
        state: JobState::Finished,
        last_checkpoint: Some(checkpoint(4)),
        last_savepoint: Some(SnapshotRef {
            time: Some(cluster.now().to_rfc3339()),
            ..savepoint(5)
        }),
    });

    cluster.restart_operator(runtime.clone());
    cluster.reconcile().await.unwrap();
    assert!(
        runtime.calls().is_empty(),
        "a stopped job is not asked again"
    );
    assert_eq!(
        cluster.new_events().await,
        [(
            "Normal".into(),
            "SavepointCompleted".into(),
            format!(
                "the job stopped with savepoint 5 at {} (found after the operator restarted)",
                savepoint(5).path
            )
        )]
    );
    cluster.reconcile().await.unwrap();
    let set = cluster.stateful_set().await;
    assert_eq!(restore_args(&set), ["--from-savepoint", &savepoint(5).path]);
}

/// The example job with `savepoints.onDelete`, deleted (its finalizer
/// holding it).
async fn being_deleted() -> (Cluster, Arc<FakeRuntime>) {
    let mut job = common::example_job();
    job.spec.savepoints.on_delete = true;
    job.metadata.finalizers = Some(vec![FINALIZER.into()]);
    job.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    let runtime = FakeRuntime::new();
    let cluster = Cluster::new(job, runtime.clone()).await;
    assert!(runtime.client.set(cluster.client.clone()).is_ok());
    (cluster, runtime)
}

#[tokio::test]
async fn deletion_takes_a_last_savepoint_then_lets_go() {
    let (cluster, runtime) = being_deleted().await;
    runtime.running(3);
    runtime.answer_stop(Ok(savepoint(4)));

    cluster.reconcile().await.unwrap();
    assert_eq!(runtime.calls(), ["stop (Created )"]);
    assert_eq!(
        cluster.new_events().await,
        [(
            "Normal".into(),
            "SavepointCompleted".into(),
            format!("savepoint 4 at {} before deletion", savepoint(4).path)
        )]
    );
    assert!(!cluster.job_exists().await, "the finalizer is gone");
}

#[tokio::test]
async fn deletion_is_not_held_up_by_a_failed_savepoint() {
    let (cluster, runtime) = being_deleted().await;
    runtime.answer_stop(Err("the control API does not answer".into()));

    cluster.reconcile().await.unwrap();
    let events = cluster.new_events().await;
    assert_eq!(
        events,
        [(
            "Warning".into(),
            "SavepointFailed".into(),
            "no savepoint before deletion (the control API does not answer); the latest \
             checkpoint stays in storage"
                .into()
        )]
    );
    assert!(!cluster.job_exists().await);
}

#[tokio::test]
async fn reconciles_are_counted_and_served_on_metrics_with_healthz() {
    let (cluster, _runtime) = running().await;
    let text = cluster.ctx.metrics.encode();
    assert!(
        text.contains("streamjob_operator_reconciles_total 2\n"),
        "{text}"
    );
    assert!(
        text.contains("streamjob_operator_reconcile_duration_seconds_count 2\n"),
        "{text}"
    );
    assert!(
        text.contains("streamjob_operator_reconcile_errors_total 0\n"),
        "{text}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = tokio::spawn(streamjob_operator::metrics::serve(
        format!("127.0.0.1:{port}"),
        cluster.ctx.metrics.clone(),
    ));
    let get = |path: &'static str| async move {
        for _ in 0..50 {
            if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}{path}")).await {
                return response.text().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("nothing answers on port {port}");
    };
    assert_eq!(get("/healthz").await, "ok");
    assert!(get("/metrics")
        .await
        .contains("streamjob_operator_reconciles_total 2\n"));
    server.abort();
}

/// `--pods` and `--peers` as the StatefulSet gives them for `pods` pods.
fn pod_args(pods: u32) -> Vec<String> {
    let peers: Vec<String> = (0..pods)
        .map(|i| format!("visit-counter-{i}.visit-counter.default.svc:8082"))
        .collect();
    vec![
        "--pods".into(),
        pods.to_string(),
        "--peers".into(),
        peers.join(","),
    ]
}

/// A job over two pods: both pods of the StatefulSet, running only once
/// both are ready; a crash loop of pod 1 alone is a failure of the job,
/// recovered from the latest checkpoint on both; `pods: 3` is a savepoint
/// upgrade to three replicas; more pods than workers is never rolled out.
#[tokio::test]
async fn a_job_over_pods_runs_recovers_and_rescales_as_one() {
    let mut job = common::example_job();
    job.spec.parallelism = 4;
    job.spec.pods = 2;
    let (cluster, runtime) = created_as(job, interceptor::Funcs::new()).await;
    cluster.reconcile().await.unwrap();
    let set = cluster.stateful_set().await;
    assert_eq!(replicas(&set), 2);
    assert_eq!(restore_args(&set), pod_args(2));

    // Running once every pod is ready, not before.
    cluster.set_pod_at(0, PodState::Ready).await;
    cluster.set_pod_at(1, PodState::Starting).await;
    runtime.running(3);
    cluster.reconcile().await.unwrap();
    assert_eq!(cluster.status().await.phase, Phase::Deploying);
    cluster.set_pod_at(1, PodState::Ready).await;
    cluster.reconcile().await.unwrap();
    assert_eq!(cluster.status().await.phase, Phase::Running);
    assert_eq!(cluster.new_reasons().await, ["Deploying"]);

    // Pod 1 crash-loops: the job recovers, on both pods.
    let old_set = cluster.stateful_set().await;
    cluster.set_pod_at(1, PodState::CrashLooping).await;
    runtime.down();
    cluster.reconcile().await.unwrap();
    let status = cluster.status().await;
    assert_eq!(status.phase, Phase::Recovering);
    let reason = "pod visit-counter-1: CrashLoopBackOff after 4 restarts: back-off 1m20s \
                  restarting failed container";
    assert_eq!(status.error.as_deref(), Some(reason));
    assert_eq!(cluster.new_reasons().await, ["JobFailed"]);
    cluster.advance(10);
    cluster.reconcile().await.unwrap();
    let set = cluster.stateful_set().await;
    assert_eq!(replicas(&set), 2);
    assert_eq!(restore_args(&set)[0], "--from-latest-checkpoint");
    assert_eq!(restore_args(&set)[1..], pod_args(2));
    assert_ne!(
        env(&set, "STREAMJOB_DEPLOYMENT"),
        env(&old_set, "STREAMJOB_DEPLOYMENT"),
        "both pods replaced"
    );
    assert_eq!(cluster.new_reasons().await, ["Recovering"]);
    // The pods of the rollout before, the healthy one too, are deleted at
    // once for the StatefulSet to make them again (it updates OnDelete).
    assert_eq!(cluster.pods().await, Vec::<u32>::new());
    for pod in 0..2 {
        cluster.set_pod_at(pod, PodState::Ready).await;
    }
    runtime.running(4);
    cluster.reconcile().await.unwrap();
    assert_eq!(cluster.status().await.phase, Phase::Running);

    // More pods than workers: refused, naming the field; nothing changes.
    cluster.edit(|spec| spec.pods = 5).await;
    cluster.reconcile().await.unwrap();
    let status = cluster.status().await;
    let error = "spec.pods: 5 pods need at least 5 workers, and parallelism is 4: raise \
                 parallelism or use fewer pods";
    assert_eq!(status.error.as_deref(), Some(error));
    assert_eq!(cluster.new_reasons().await, ["InvalidSpec"]);
    assert_eq!(replicas(&cluster.stateful_set().await), 2);
    assert_eq!(runtime.calls(), Vec::<String>::new());

    // Three pods: stop with a savepoint, redeploy three from it.
    cluster.edit(|spec| spec.pods = 3).await;
    runtime.answer_stop(Ok(savepoint(5)));
    cluster.reconcile().await.unwrap();
    assert_eq!(runtime.calls(), ["stop (Upgrading stopping)"]);
    // Stopped with the savepoint, the pods wait to be replaced.
    assert_eq!(cluster.pods().await, [0, 1]);
    runtime.down();
    cluster.reconcile().await.unwrap();
    assert_eq!(cluster.pods().await, Vec::<u32>::new());
    let set = cluster.stateful_set().await;
    assert_eq!(replicas(&set), 3);
    assert_eq!(
        restore_args(&set)[..2],
        ["--from-savepoint", &savepoint(5).path]
    );
    assert_eq!(restore_args(&set)[2..], pod_args(3));
    assert_eq!(
        cluster.new_reasons().await,
        ["UpgradeStarted", "SavepointCompleted", "Redeploying"]
    );
    for pod in 0..3 {
        cluster.set_pod_at(pod, PodState::Ready).await;
    }
    runtime.running(6);
    cluster.reconcile().await.unwrap();
    let status = cluster.status().await;
    assert_eq!((status.phase, status.error), (Phase::Running, None));
}

/// A StatefulSet made before its pods were managed in parallel cannot be
/// changed to it (the API server refuses, as the interceptor here does):
/// it is deleted with its pods orphaned, and made again, and the new one
/// adopts the running pod.
#[tokio::test]
async fn a_stateful_set_with_ordered_pods_is_replaced_and_its_pods_kept() {
    // The pod management of the StatefulSet the API server holds, and how
    // it was deleted (whether its pods went with it).
    let policy: Arc<Mutex<Option<String>>> = Arc::default();
    let deleted: Arc<Mutex<Vec<bool>>> = Arc::default();
    let funcs = {
        let (policy, deleted) = (policy.clone(), deleted.clone());
        let policy_on_delete = policy.clone();
        interceptor::Funcs::new()
            .patch(move |ctx| {
                if ctx.patch.get("kind").and_then(|k| k.as_str()) != Some("StatefulSet") {
                    return Ok(None);
                }
                let wanted = ctx.patch["spec"]["podManagementPolicy"]
                    .as_str()
                    .unwrap_or("OrderedReady")
                    .to_string();
                let mut held = policy.lock().unwrap();
                match held.as_ref() {
                    Some(current) if *current != wanted => {
                        Err(kube_fake_client::Error::InvalidRequest(
                            "spec: Forbidden: updates to statefulset spec for fields other than \
                         'replicas', 'ordinals', 'template', 'updateStrategy' … are forbidden"
                                .into(),
                        ))
                    }
                    _ => {
                        *held = Some(wanted);
                        Ok(None)
                    }
                }
            })
            .delete(move |ctx| {
                if ctx.name == "visit-counter" {
                    *policy_on_delete.lock().unwrap() = None;
                    deleted.lock().unwrap().push(ctx.cascade);
                }
                Ok(None)
            })
    };
    let (cluster, runtime) = created_with(funcs).await;
    cluster.reconcile().await.unwrap();
    cluster.set_pod(PodState::Ready).await;
    runtime.running(3);
    cluster.reconcile().await.unwrap();
    assert_eq!(cluster.status().await.phase, Phase::Running);
    // As an operator before parallel pod management left it.
    let sets = Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(
        cluster.client.clone(),
        &cluster.ns,
    );
    let mut old = cluster.stateful_set().await;
    old.spec.as_mut().unwrap().pod_management_policy = None;
    old.spec.as_mut().unwrap().update_strategy = None;
    sets.replace(&cluster.name, &Default::default(), &old)
        .await
        .unwrap();
    *policy.lock().unwrap() = Some("OrderedReady".into());

    cluster.reconcile().await.unwrap();
    assert_eq!(
        *deleted.lock().unwrap(),
        [false],
        "deleted once, pods orphaned"
    );
    let set = cluster.stateful_set().await;
    let spec = set.spec.as_ref().unwrap();
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    assert_eq!(
        spec.update_strategy.as_ref().unwrap().type_.as_deref(),
        Some("OnDelete")
    );
    assert_eq!(cluster.pods().await, [0], "the pod runs on");
    assert_eq!(cluster.status().await.phase, Phase::Running);
    cluster.reconcile().await.unwrap();
    assert_eq!(deleted.lock().unwrap().len(), 1, "replaced once");
}
