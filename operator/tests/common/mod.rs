//! A cluster for the controller's tests: kube-fake-client's in-memory API
//! server (server-side apply, the status subresource, events), a clock the
//! test moves on, and the pod's state set by the test in the kubelet's place.
//! The test drives the reconciles itself, one at a time, as the controller's
//! watch would trigger them.

// Each test binary uses some of these.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerState, ContainerStateWaiting, ContainerStatus, Pod, PodCondition,
    PodStatus, Service,
};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use kube_fake_client::{interceptor, ClientBuilder};
use streamjob_operator::controller::{self, Context, Error};
use streamjob_operator::crd::{StreamJob, StreamJobSpec, StreamJobStatus};
use streamjob_operator::resources::JOB_LABEL;
use streamjob_operator::runtime_api::RuntimeApi;

/// The example manifest from examples/ (visit-counter in `default`).
pub fn example_job() -> StreamJob {
    let text = include_str!("../../../examples/streamjob-visit-counter.yaml");
    serde_yaml::from_str(text).expect("the example parses")
}

/// kube-fake-client learns which kinds have a status subresource from a
/// default object of the kind; the real StreamJob has no default (its
/// pipeline is required), so a stand-in of the same group, version and kind.
mod status_subresource {
    #[derive(
        kube::CustomResource,
        Clone,
        Debug,
        Default,
        serde::Serialize,
        serde::Deserialize,
        schemars::JsonSchema,
    )]
    #[kube(
        group = "streamjob.io",
        version = "v1alpha1",
        kind = "StreamJob",
        namespaced,
        derive = "Default"
    )]
    pub struct Spec {}
}

/// What the test's kubelet shows of the job's pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    Absent,
    /// Running, not ready.
    Starting,
    Ready,
    CrashLooping,
}

pub struct Cluster {
    pub client: Client,
    pub ctx: Arc<Context>,
    pub name: String,
    pub ns: String,
    now: Arc<Mutex<DateTime<Utc>>>,
    events_seen: Mutex<usize>,
}

/// One event as `kubectl get events` shows it: type, reason, note.
pub type Seen = (String, String, String);

impl Cluster {
    /// An API server holding `job`, and an operator using `runtime`.
    pub async fn new(job: StreamJob, runtime: Arc<dyn RuntimeApi>) -> Self {
        Self::with_interceptors(job, runtime, interceptor::Funcs::new()).await
    }

    pub async fn with_interceptors(
        job: StreamJob,
        runtime: Arc<dyn RuntimeApi>,
        funcs: interceptor::Funcs,
    ) -> Self {
        let name = job.name_any();
        let ns = job.namespace().unwrap_or_else(|| "default".into());
        let client = ClientBuilder::new()
            .with_resource::<StreamJob>()
            .with_status_subresource::<status_subresource::StreamJob>()
            .with_object(job)
            .with_interceptor_funcs(funcs)
            .build()
            .await
            .expect("a fake API server");
        let now = Arc::new(Mutex::new(Utc.timestamp_opt(1_800_000_000, 0).unwrap()));
        let ctx = operator(&client, runtime, &now);
        Cluster {
            client,
            ctx,
            name,
            ns,
            now,
            events_seen: Mutex::new(0),
        }
    }

    /// A new operator process (as after a restart): nothing kept in memory.
    pub fn restart_operator(&mut self, runtime: Arc<dyn RuntimeApi>) {
        self.ctx = operator(&self.client, runtime, &self.now);
    }

    /// A new operator process started with `--control-clients`.
    pub fn restart_operator_admitting(
        &mut self,
        runtime: Arc<dyn RuntimeApi>,
        clients: Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>,
    ) {
        let mut ctx = Context::new(self.client.clone(), runtime);
        ctx.clock = self.ctx.clock.clone();
        ctx.control_clients = Some(clients);
        self.ctx = Arc::new(ctx);
    }

    pub fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap()
    }

    pub fn set_now(&self, now: DateTime<Utc>) {
        *self.now.lock().unwrap() = now;
    }

    pub fn advance(&self, secs: i64) {
        *self.now.lock().unwrap() += chrono::Duration::seconds(secs);
    }

    /// One reconcile of the job as it now stands in the API.
    pub async fn reconcile(&self) -> Result<Action, Error> {
        let job = self.job().await;
        controller::reconcile(Arc::new(job), self.ctx.clone()).await
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn job(&self) -> StreamJob {
        self.api::<StreamJob>()
            .get(&self.name)
            .await
            .expect("the job")
    }

    pub async fn job_exists(&self) -> bool {
        self.api::<StreamJob>()
            .get_opt(&self.name)
            .await
            .unwrap()
            .is_some()
    }

    pub async fn status(&self) -> StreamJobStatus {
        self.job().await.status.expect("a status")
    }

    pub async fn stateful_set(&self) -> StatefulSet {
        self.api::<StatefulSet>()
            .get(&self.name)
            .await
            .expect("the StatefulSet")
    }

    pub async fn stateful_set_exists(&self) -> bool {
        self.api::<StatefulSet>()
            .get_opt(&self.name)
            .await
            .unwrap()
            .is_some()
    }

    pub async fn service(&self) -> Service {
        self.api::<Service>()
            .get(&self.name)
            .await
            .expect("the Service")
    }

    pub async fn config_map(&self) -> ConfigMap {
        self.api::<ConfigMap>()
            .get(&format!("{}-job", self.name))
            .await
            .expect("the ConfigMap")
    }

    /// Changes the spec, as `kubectl apply` of an edited manifest does (the
    /// generation goes up).
    pub async fn edit(&self, change: impl FnOnce(&mut StreamJobSpec)) {
        let mut spec = self.job().await.spec;
        change(&mut spec);
        self.api::<StreamJob>()
            .patch(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": spec })),
            )
            .await
            .expect("the edit");
    }

    /// Events recorded since the last call, oldest first.
    pub async fn new_events(&self) -> Vec<Seen> {
        let mut events = self
            .api::<Event>()
            .list(&Default::default())
            .await
            .unwrap()
            .items;
        events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        let mut seen = self.events_seen.lock().unwrap();
        let new = events[*seen..]
            .iter()
            .map(|e| {
                (
                    e.type_.clone().unwrap_or_default(),
                    e.reason.clone().unwrap_or_default(),
                    e.note.clone().unwrap_or_default(),
                )
            })
            .collect();
        *seen = events.len();
        new
    }

    /// The reasons of the events recorded since the last look.
    pub async fn new_reasons(&self) -> Vec<String> {
        self.new_events()
            .await
            .into_iter()
            .map(|(_, reason, _)| reason)
            .collect()
    }

    /// The job's pods there are (not deleted), by index.
    pub async fn pods(&self) -> Vec<u32> {
        let mut indexes: Vec<u32> = self
            .api::<Pod>()
            .list(&Default::default())
            .await
            .unwrap()
            .into_iter()
            .filter_map(|p| p.name_any().rsplit_once('-')?.1.parse().ok())
            .collect();
        indexes.sort();
        indexes
    }

    /// Shows the job's pod (its pod 0) as `state` (the kubelet's part).
    pub async fn set_pod(&self, state: PodState) {
        self.set_pod_at(0, state).await
    }

    /// Shows the job's pod `index` as `state`, made from the StatefulSet's
    /// template as it stands (its rollout annotations).
    pub async fn set_pod_at(&self, index: u32, state: PodState) {
        let annotations = self
            .api::<StatefulSet>()
            .get_opt(&self.name)
            .await
            .unwrap()
            .and_then(|set| set.spec?.template.metadata?.annotations);
        self.show_pod(index, state, annotations).await
    }

    /// Shows the job's pod `index` as `state`, with these annotations (the
    /// template's it was made from).
    pub async fn show_pod(
        &self,
        index: u32,
        state: PodState,
        annotations: Option<std::collections::BTreeMap<String, String>>,
    ) {
        let pods = self.api::<Pod>();
        let name = format!("{}-{index}", self.name);
        if pods.get_opt(&name).await.unwrap().is_some() {
            pods.delete(&name, &Default::default()).await.unwrap();
        }
        if state == PodState::Absent {
            return;
        }
        let mut pod = Pod::default();
        pod.metadata.name = Some(name);
        pod.metadata.namespace = Some(self.ns.clone());
        pod.metadata.labels = Some([(JOB_LABEL.to_string(), self.name.clone())].into());
        pod.metadata.annotations = annotations;
        pod.status = Some(match state {
            PodState::Starting => PodStatus::default(),
            PodState::Ready => PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            _ => PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: "streamjob".into(),
                    restart_count: 4,
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some("CrashLoopBackOff".into()),
                            message: Some("back-off 1m20s restarting failed container".into()),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            },
        });
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
}

fn operator(
    client: &Client,
    runtime: Arc<dyn RuntimeApi>,
    now: &Arc<Mutex<DateTime<Utc>>>,
) -> Arc<Context> {
    let mut ctx = Context::new(client.clone(), runtime);
    let now = now.clone();
    ctx.clock = Arc::new(move || *now.lock().unwrap());
    Arc::new(ctx)
}

/// The container of the StatefulSet's pod template.
pub fn container(set: &StatefulSet) -> &k8s_openapi::api::core::v1::Container {
    &set.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
}

/// The container's arguments after `run JOB --control-address ADDRESS`.
pub fn restore_args(set: &StatefulSet) -> Vec<String> {
    // After the job file, the control address and the token file.
    container(set).args.clone().unwrap()[6..].to_vec()
}

/// The value of the container's environment variable `name`.
pub fn env(set: &StatefulSet, name: &str) -> Option<String> {
    container(set)
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec.as_ref().unwrap().replicas.unwrap()
}
