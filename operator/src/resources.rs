//! The Kubernetes objects a `StreamJob` is reconciled into: a ConfigMap with
//! the job file, a headless Service, and a StatefulSet whose `pods` pods
//! run `streamjob run`, each its share of the `parallelism` workers. Pure
//! functions of the StreamJob and of how the pods must start, so they are
//! tested as values.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    Secret, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, Volume,
    VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use kube::{Resource, ResourceExt};

use streamjob_api::flags;

use crate::crd::{RestoreKind, StorageScope, StreamJob};

/// The control API port of the runtime pods.
pub const CONTROL_PORT: i32 = 8081;
/// The port a job's pods exchange records on (with more than one pod).
pub const EXCHANGE_PORT: i32 = 8082;
/// The label the StatefulSet controller gives each pod: its ordinal
/// (Kubernetes 1.28 and later), which is the pod's index in the job.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Where the job file is mounted in the runtime container.
pub const JOB_FILE: &str = "/etc/streamjob/job.yaml";
/// Where RocksDB keeps the job's local state.
pub const STATE_DIR: &str = "/var/lib/streamjob";
/// The label naming the StreamJob an object belongs to.
pub const JOB_LABEL: &str = "streamjob.io/job";
/// The uid (and gid) the runtime runs as: the runtime image's user.
pub const RUNTIME_UID: i64 = 10001;
/// Where the control token Secret is mounted in the runtime container.
pub const TOKEN_DIR: &str = "/var/run/streamjob/control";
/// The key of the token in the Secret, and so the file name under `TOKEN_DIR`.
pub const TOKEN_KEY: &str = "token";

/// How the runtime pod starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// No state.
    Fresh,
    /// From a savepoint (or any snapshot) at this URI.
    Savepoint(String),
    /// From the latest completed checkpoint in storage (a fresh start when
    /// there is none yet).
    LatestCheckpoint,
}

impl Restore {
    /// As `status.deployment` records it: `restore` and `savepointPath`.
    pub fn recorded(&self) -> (RestoreKind, Option<String>) {
        match self {
            Restore::Fresh => (RestoreKind::None, None),
            Restore::Savepoint(path) => (RestoreKind::Savepoint, Some(path.clone())),
            Restore::LatestCheckpoint => (RestoreKind::LatestCheckpoint, None),
        }
    }

    /// How a recorded deployment started; a record the operator never
    /// writes is an error, never read as "start empty".
    pub fn of(deployment: &crate::crd::Deployment) -> Result<Restore, String> {
        match (deployment.restore, &deployment.savepoint_path) {
            (RestoreKind::None, None) => Ok(Restore::Fresh),
            (RestoreKind::Savepoint, Some(path)) => Ok(Restore::Savepoint(path.clone())),
            (RestoreKind::LatestCheckpoint, None) => Ok(Restore::LatestCheckpoint),
            (restore, path) => Err(format!(
                // The wire name, as the user sees it in the status.
                "status.deployment: restore {:?} with savepointPath {path:?} is not a \
                 deployment the operator records; not redeploying on a guess",
                restore.as_str()
            )),
        }
    }
}

/// The labels of every object of the job (and the pod selector).
pub fn labels(job: &StreamJob) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "streamjob".into()),
        (
            "app.kubernetes.io/managed-by".into(),
            "streamjob-operator".into(),
        ),
        (JOB_LABEL.into(), job.name_any()),
    ])
}

fn metadata(job: &StreamJob, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: job.namespace(),
        labels: Some(labels(job)),
        owner_references: owner_reference(job).map(|o| vec![o]),
        ..Default::default()
    }
}

/// Owned objects are deleted with the StreamJob (garbage collection).
fn owner_reference(job: &StreamJob) -> Option<OwnerReference> {
    job.controller_owner_ref(&())
}

/// The job file the runtime runs (see `runtime_job`).
pub fn job_file(job: &StreamJob) -> String {
    serde_yaml::to_string(&runtime_job(job)).expect("a job spec serializes")
}

/// The job the runtime runs: the pipeline, with the name, parallelism and
/// checkpoints the StreamJob sets.
fn runtime_job(job: &StreamJob) -> streamjob_spec::JobSpec {
    let mut pipeline = job.spec.pipeline.clone();
    pipeline.name = job.name_any();
    pipeline.parallelism = job.spec.parallelism;
    pipeline.checkpoints = job.spec.checkpoints.clone().map(|mut checkpoints| {
        checkpoints.storage = scoped_storage(&checkpoints.storage, job, deployed_scope(job));
        checkpoints
    });
    pipeline.state.dir = Some(STATE_DIR.into());
    pipeline
}

/// The storage URI a job's snapshots go under in `scope`, from the
/// `storage` its spec names: the runtime keeps them in `<uri>/<job>/`, so a
/// namespace scope appends the namespace (StreamJobs of one name in two
/// namespaces never share a folder).
pub fn scoped_storage(storage: &str, job: &StreamJob, scope: StorageScope) -> String {
    let uri = storage.trim_end_matches('/');
    match scope {
        StorageScope::Job => uri.to_string(),
        StorageScope::Namespace => {
            // As kubectl places a StreamJob that names none.
            let namespace = job.namespace().unwrap_or_else(|| "default".into());
            format!("{uri}/{namespace}")
        }
    }
}

/// The storage scope of the deployment recorded in the status; a first
/// deployment's scope before one is.
pub fn deployed_scope(job: &StreamJob) -> StorageScope {
    deployment(job).map_or(StorageScope::Namespace, |d| d.storage_scope)
}

pub fn config_map(job: &StreamJob) -> ConfigMap {
    ConfigMap {
        metadata: metadata(job, config_map_name(job)),
        data: Some(BTreeMap::from([("job.yaml".into(), job_file(job))])),
        ..Default::default()
    }
}

pub fn config_map_name(job: &StreamJob) -> String {
    format!("{}-job", job.name_any())
}

/// The Secret holding the job's control token: made once per StreamJob
/// (see the controller), owned by it, mounted into its pods, and read by the
/// operator for its own calls.
pub fn token_secret(job: &StreamJob, token: &str) -> Secret {
    Secret {
        metadata: metadata(job, control_name(job)),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            TOKEN_KEY.into(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Default::default()
    }
}

/// The name of the job's control objects: its token Secret and its
/// NetworkPolicy.
pub fn control_name(job: &StreamJob) -> String {
    format!("{}-control", job.name_any())
}

/// Headless: it gives each pod a stable DNS name, for the control API and
/// for the other pods. The names resolve before the pods are ready, since
/// a job over several pods is ready only once its pods have found each
/// other.
pub fn service(job: &StreamJob) -> Service {
    let port = |name: &str, port: i32| ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        ..Default::default()
    };
    let mut ports = vec![port("control", CONTROL_PORT)];
    if job.spec.pods > 1 {
        ports.push(port("exchange", EXCHANGE_PORT));
    }
    Service {
        metadata: metadata(job, job.name_any()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(labels(job)),
            ports: Some(ports),
            publish_not_ready_addresses: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Admits connections to the job's pods only on the control port and only
/// from `clients` (the operator, and whatever the chart adds, such as a
/// metrics scraper), and, with several pods, on the exchange port from the
/// job's own pods: the pods serve nothing else, and the API's reads are
/// open (its changes need the token).
pub fn network_policy(job: &StreamJob, clients: &[NetworkPolicyPeer]) -> NetworkPolicy {
    let rule = |from: Vec<NetworkPolicyPeer>, port: i32| NetworkPolicyIngressRule {
        from: Some(from),
        ports: Some(vec![NetworkPolicyPort {
            port: Some(IntOrString::Int(port)),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    };
    let mut ingress = vec![rule(clients.to_vec(), CONTROL_PORT)];
    if job.spec.pods > 1 {
        let own_pods = NetworkPolicyPeer {
            pod_selector: Some(LabelSelector {
                match_labels: Some(labels(job)),
                ..Default::default()
            }),
            ..Default::default()
        };
        ingress.push(rule(vec![own_pods], EXCHANGE_PORT));
    }
    NetworkPolicy {
        metadata: metadata(job, control_name(job)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(labels(job)),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(ingress),
            ..Default::default()
        }),
    }
}

/// The control API of the job's pod 0 (its coordinator), through the
/// headless Service.
pub fn control_url(job: &StreamJob) -> String {
    format!("http://{}:{CONTROL_PORT}", pod_host(job, 0))
}

/// Pod `index`'s stable DNS name under the headless Service.
fn pod_host(job: &StreamJob, index: u32) -> String {
    format!(
        "{name}-{index}.{name}.{ns}.svc",
        name = job.name_any(),
        ns = job.namespace().unwrap_or_else(|| "default".into()),
    )
}

/// Every pod's exchange address, pod 0 first (`--peers`).
pub fn peers(job: &StreamJob) -> String {
    (0..job.spec.pods)
        .map(|index| format!("{}:{EXCHANGE_PORT}", pod_host(job, index)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether the job's pods run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// `spec.pods` replicas.
    Running,
    /// No pods: suspended.
    Stopped,
}

/// The StatefulSet, scaled as asked. Fails when `podTemplate` does not make
/// a pod template (see `pod_template_error`).
pub fn stateful_set(
    job: &StreamJob,
    restore: &Restore,
    scale: Scale,
) -> Result<StatefulSet, String> {
    let replicas = match scale {
        Scale::Running => job.spec.pods as i32,
        Scale::Stopped => 0,
    };
    let mut args = vec![
        "run".to_string(),
        JOB_FILE.into(),
        flags::CONTROL_ADDRESS.into(),
        format!("0.0.0.0:{CONTROL_PORT}"),
        // The API listens on the pod network: only holders of the job's
        // token may stop it or take savepoints.
        flags::CONTROL_TOKEN_FILE.into(),
        format!("{TOKEN_DIR}/{TOKEN_KEY}"),
    ];
    match restore {
        Restore::Fresh => {}
        Restore::Savepoint(path) => {
            args.push(flags::FROM_SAVEPOINT.into());
            args.push(path.clone());
        }
        Restore::LatestCheckpoint => args.push(flags::FROM_LATEST_CHECKPOINT.into()),
    }
    if job.spec.allow_non_restored_state && *restore != Restore::Fresh {
        args.push(flags::ALLOW_NON_RESTORED_STATE.into());
    }
    let mut ports = vec![ContainerPort {
        name: Some("control".into()),
        container_port: CONTROL_PORT,
        ..Default::default()
    }];
    if job.spec.pods > 1 {
        // The index comes from the pod's ordinal (see `env`).
        args.extend([
            flags::PODS.into(),
            job.spec.pods.to_string(),
            flags::PEERS.into(),
            peers(job),
        ]);
        ports.push(ContainerPort {
            name: Some("exchange".into()),
            container_port: EXCHANGE_PORT,
            ..Default::default()
        });
    }
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(CONTROL_PORT),
            ..Default::default()
        }),
        period_seconds: Some(period),
        ..Default::default()
    };
    let container = Container {
        name: "streamjob".into(),
        image: Some(job.spec.image.clone()),
        args: Some(args),
        env: Some(env(job)),
        ports: Some(ports),
        readiness_probe: Some(probe("/readyz", 5)),
        liveness_probe: Some(Probe {
            failure_threshold: Some(6),
            ..probe("/healthz", 10)
        }),
        resources: Some(job.spec.resources.clone().unwrap_or_else(default_resources)),
        // The end of the log becomes the termination message of a failed
        // run: the operator's status and events say why it ended.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "job".into(),
                mount_path: "/etc/streamjob".into(),
                read_only: Some(true),
                ..Default::default()
            },
            VolumeMount {
                name: "state".into(),
                mount_path: STATE_DIR.into(),
                ..Default::default()
            },
            // The root filesystem is read-only: temporary files go here.
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..Default::default()
            },
            VolumeMount {
                name: "control-token".into(),
                mount_path: TOKEN_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
        ]),
        ..Default::default()
    };
    let pod = PodSpec {
        containers: vec![container],
        volumes: Some(vec![
            Volume {
                name: "job".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: config_map_name(job),
                    ..Default::default()
                }),
                ..Default::default()
            },
            // State is rebuilt from the checkpoint on every start: local
            // disk only has to outlive the process, not the pod.
            Volume {
                name: "state".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
            Volume {
                name: "tmp".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
            // Readable by the runtime's group only.
            Volume {
                name: "control-token".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(control_name(job)),
                    default_mode: Some(0o440),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]),
        // A stop-with-savepoint drains and exits: give it time.
        termination_grace_period_seconds: Some(120),
        // Least privilege (each overridable through `podTemplate`): no
        // root, the runtime's default seccomp profile, and no API token:
        // the runtime never calls the Kubernetes API.
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUNTIME_UID),
            run_as_group: Some(RUNTIME_UID),
            fs_group: Some(RUNTIME_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    let annotations = rollout_annotations(job);
    let mut template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(job)),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..Default::default()
        }),
        spec: Some(pod),
    };
    if let Some(overlay) = &job.spec.pod_template {
        template = merge_pod_template(template, overlay)?;
    }
    Ok(StatefulSet {
        metadata: metadata(job, job.name_any()),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(job.name_any()),
            selector: LabelSelector {
                match_labels: Some(labels(job)),
                ..Default::default()
            },
            template,
            // A job's pods start together: each waits for the others, so
            // none may wait for another to be ready first.
            pod_management_policy: Some(POD_MANAGEMENT.into()),
            // A rolling update replaces one pod at a time and waits for it
            // to be ready, which a pod of a new rollout never is beside
            // the old rollout's pods. The operator deletes a rollout's old
            // pods all at once instead (`outdated`).
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..Default::default()
            }),
            volume_claim_templates: None::<Vec<PersistentVolumeClaim>>,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The StatefulSet's pod management: immutable once the StatefulSet exists,
/// so one made with another is replaced (see the controller).
pub const POD_MANAGEMENT: &str = "Parallel";

/// The annotations naming the rollout a pod belongs to: each rollout
/// changes the template, even with the same arguments (a recovery from the
/// latest checkpoint), and tells its pods from the ones before.
fn rollout_annotations(job: &StreamJob) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::new();
    if let Some(d) = deployment(job) {
        annotations.insert(DEPLOYED_AT.to_string(), d.started_at.clone());
        if !d.id.is_empty() {
            annotations.insert(DEPLOYMENT_ANNOTATION.to_string(), d.id.clone());
        }
    }
    annotations
}

const DEPLOYED_AT: &str = "streamjob.io/deployed-at";
const DEPLOYMENT_ANNOTATION: &str = "streamjob.io/deployment";

/// Whether `pod` belongs to a rollout before the one the status records:
/// one of its rollout annotations differs (a pod made before the operator
/// wrote one of them is judged by the others; a pod with none is not the
/// operator's to judge).
pub fn outdated(job: &StreamJob, pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    let Some(have) = &pod.metadata.annotations else {
        return false;
    };
    rollout_annotations(job)
        .iter()
        .any(|(key, want)| have.get(key).is_some_and(|value| value != want))
}

/// Requests and limits when the StreamJob sets none: a pod without them is
/// the first evicted, and one without a memory limit can starve its node.
/// No CPU limit: throttling a stream job only adds latency.
pub fn default_resources() -> ResourceRequirements {
    let quantity = |q: &str| Quantity(q.into());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), quantity("500m")),
            ("memory".into(), quantity("1Gi")),
        ])),
        limits: Some(BTreeMap::from([("memory".into(), quantity("2Gi"))])),
        ..Default::default()
    }
}

fn deployment(job: &StreamJob) -> Option<&crate::crd::Deployment> {
    job.status.as_ref()?.deployment.as_ref()
}

/// The container's environment: the log level, the rollout it belongs to
/// (see `Deployment::id`) and, with several pods, the pod's index, from its
/// ordinal label.
fn env(job: &StreamJob) -> Vec<EnvVar> {
    let var = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    };
    let mut env = vec![var(flags::LOG_ENV, "info")];
    if let Some(d) = deployment(job).filter(|d| !d.id.is_empty()) {
        env.push(var(flags::DEPLOYMENT_ENV, &d.id));
    }
    if job.spec.pods > 1 {
        env.push(EnvVar {
            name: flags::POD_INDEX_ENV.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: format!("metadata.labels['{POD_INDEX_LABEL}']"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    env
}

/// Why the StreamJob's `podTemplate` cannot be used, naming the field
/// (checked before a spec is rolled out, so a bad edit never replaces a
/// running pod).
pub fn pod_template_error(job: &StreamJob) -> Option<String> {
    stateful_set(job, &Restore::Fresh, Scale::Running).err()
}

/// Why the StreamJob's spec is never rolled out, naming the field: a
/// `podTemplate` that makes no pod template, a secret written into the
/// pipeline (it would land in a ConfigMap in plain text), or a job that
/// cannot run over `pods` pods.
pub fn undeployable(job: &StreamJob) -> Option<String> {
    pod_template_error(job)
        .or_else(|| {
            let secret = job.spec.pipeline.literal_secrets().into_iter().next()?;
            Some(format!("spec.pipeline.{}: {}", secret.path, secret.message))
        })
        .or_else(|| {
            let problem = runtime_job(job).pods_problem(job.spec.pods)?;
            Some(format!("spec.pods: {problem}"))
        })
}

/// Merges the user's pod template into the operator's: maps merge key by
/// key, the user's values win, except that containers and volumes are
/// merged by name and the operator's labels stay (the selector needs them).
fn merge_pod_template(
    base: PodTemplateSpec,
    overlay: &serde_json::Value,
) -> Result<PodTemplateSpec, String> {
    let mut merged = serde_json::to_value(&base).expect("a pod template serializes");
    merge_json(&mut merged, overlay);
    let mut template: PodTemplateSpec = serde_path_to_error::deserialize(merged)
        .map_err(|e| format!("spec.podTemplate.{}: {}", e.path(), e.inner()))?;
    if let Some(meta) = &mut template.metadata {
        let labels = meta.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in base.metadata.and_then(|m| m.labels).unwrap_or_default() {
            labels.insert(k, v);
        }
    }
    Ok(template)
}

fn merge_json(base: &mut serde_json::Value, overlay: &serde_json::Value) {
    use serde_json::Value;
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                merge_json(base.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (Value::Array(base), Value::Array(overlay)) if is_named_list(base, overlay) => {
            for item in overlay {
                let name = &item["name"];
                match base.iter_mut().find(|b| &b["name"] == name) {
                    Some(existing) => merge_json(existing, item),
                    None => base.push(item.clone()),
                }
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

/// Lists of objects with a `name` (containers, volumes, env) merge by name.
fn is_named_list(base: &[serde_json::Value], overlay: &[serde_json::Value]) -> bool {
    base.iter()
        .chain(overlay)
        .all(|v| v.get("name").is_some_and(|n| n.is_string()))
}

#[cfg(test)]
pub(crate) mod tests;
