//! The objects built for the example StreamJob, field by field.

use super::*;
use crate::crd::StreamJob;

/// The example manifest from examples/, as the API server would hand it
/// over (with a uid, so that owner references can be made).
pub(crate) fn example_job() -> StreamJob {
    let text = include_str!("../../../examples/streamjob-visit-counter.yaml");
    let mut job: StreamJob = serde_yaml::from_str(text).expect("the example parses");
    job.metadata.uid = Some("0e5c2a34-1111-4b7c-9a52-6f1de3b1c0aa".into());
    job.metadata.generation = Some(1);
    job
}

/// The enrichment example's job file is a valid runtime job too (its
/// `enrich` and side outputs pass through the CRD unchanged).
#[test]
fn the_enrichment_example_is_a_runtime_job() {
    let text = include_str!("../../../examples/streamjob-order-enrichment.yaml");
    let mut job: StreamJob = serde_yaml::from_str(text).expect("the example parses");
    job.metadata.uid = Some("5b1f0c1e-2222-4c3d-8e9f-0a1b2c3d4e5f".into());
    let file: streamjob_spec::JobSpec =
        serde_yaml::from_str(&job_file(&job)).expect("the runtime reads it");
    file.validate().expect("valid");
    let names: Vec<&str> = file.enrich.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["user", "item"]);
    assert!(file.side_outputs.unmatched.is_some());
}

fn container(set: &StatefulSet) -> &Container {
    &set.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
}

#[test]
fn the_job_file_is_the_pipeline_with_the_streamjobs_settings() {
    let job = example_job();
    let file: streamjob_spec::JobSpec =
        serde_yaml::from_str(&job_file(&job)).expect("the runtime reads it");
    assert_eq!(file.name, "visit-counter");
    assert_eq!(file.parallelism, 2);
    assert_eq!(file.state.dir.as_deref(), Some(STATE_DIR));
    let checkpoints = file.checkpoints.clone().expect("checkpoints");
    // The namespace's folder of the storage the StreamJob names.
    assert_eq!(
        checkpoints.storage,
        "s3://streamjob-checkpoints/jobs/default"
    );
    assert_eq!(checkpoints.interval.as_millis(), 10_000);
    // The runtime accepts it as it stands.
    file.validate().expect("valid");
}

/// Two StreamJobs of one name in two namespaces, one storage URI: their
/// snapshots go to two folders; a rollout recorded before namespace
/// folders keeps the folder its checkpoints are in.
#[test]
fn snapshots_go_to_the_namespaces_folder_of_the_storage() {
    let storage = |job: &StreamJob| {
        let file: streamjob_spec::JobSpec = serde_yaml::from_str(&job_file(job)).unwrap();
        file.checkpoints.unwrap().storage
    };
    let mut shop = example_job();
    shop.metadata.namespace = Some("shop".into());
    let mut ads = example_job();
    ads.metadata.namespace = Some("ads".into());
    ads.spec.checkpoints.as_mut().unwrap().storage = "s3://streamjob-checkpoints/jobs/".into();
    assert_eq!(storage(&shop), "s3://streamjob-checkpoints/jobs/shop");
    assert_eq!(storage(&ads), "s3://streamjob-checkpoints/jobs/ads");

    shop.status = Some(crate::crd::StreamJobStatus {
        deployment: Some(crate::crd::Deployment {
            restore: RestoreKind::LatestCheckpoint,
            storage_scope: crate::crd::StorageScope::Job,
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(storage(&shop), "s3://streamjob-checkpoints/jobs");
}

#[test]
fn the_pod_runs_the_job_file_restored_as_asked() {
    let job = example_job();
    let args = |restore: &Restore| {
        container(&stateful_set(&job, restore, Scale::Running).unwrap())
            .args
            .clone()
            .unwrap()
    };
    // The API on the pod network, guarded by the job's token.
    let base = [
        "run",
        JOB_FILE,
        "--control-address",
        "0.0.0.0:8081",
        "--control-token-file",
        "/var/run/streamjob/control/token",
    ];
    assert_eq!(args(&Restore::Fresh), base);
    assert_eq!(
        args(&Restore::Savepoint(
            "s3://b/visit-counter/savepoints/sp-7".into()
        ))[6..],
        ["--from-savepoint", "s3://b/visit-counter/savepoints/sp-7"]
    );
    assert_eq!(
        args(&Restore::LatestCheckpoint)[6..],
        ["--from-latest-checkpoint"]
    );
}

#[test]
fn the_stateful_set_is_owned_labelled_and_probed() {
    let job = example_job();
    let set = stateful_set(&job, &Restore::Fresh, Scale::Running).unwrap();
    let owner = &set.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.kind, "StreamJob");
    assert_eq!(owner.name, "visit-counter");
    assert_eq!(owner.controller, Some(true));
    let spec = set.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.service_name.as_deref(), Some("visit-counter"));
    assert_eq!(spec.selector.match_labels, Some(labels(&job)));
    let c = container(&set);
    assert_eq!(
        c.image.as_deref(),
        Some("ghcr.io/streamjob/streamjob:0.1.0")
    );
    let path = |p: &Option<Probe>| p.as_ref().unwrap().http_get.as_ref().unwrap().path.clone();
    assert_eq!(path(&c.readiness_probe).as_deref(), Some("/readyz"));
    assert_eq!(path(&c.liveness_probe).as_deref(), Some("/healthz"));
    let cpu = &c.resources.as_ref().unwrap().requests.as_ref().unwrap()["cpu"];
    assert_eq!(cpu.0, "1");
}

#[test]
fn the_pod_template_merges_into_the_container_by_name() {
    let job = example_job();
    let set = stateful_set(&job, &Restore::Fresh, Scale::Running).unwrap();
    let c = container(&set);
    let env: Vec<(&str, Option<&str>)> = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_deref()))
        .collect();
    assert_eq!(
        env,
        [
            ("STREAMJOB_LOG", Some("info")),
            ("AWS_REGION", Some("us-east-1")),
            ("AWS_ENDPOINT_URL", Some("http://minio.storage.svc:9000")),
        ]
    );
    assert_eq!(
        c.env_from.as_ref().unwrap()[0]
            .secret_ref
            .as_ref()
            .unwrap()
            .name,
        "streamjob-s3-credentials"
    );
    // Still one container, still the operator's args and mounts.
    let pod = set.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.containers.len(), 1);
    assert_eq!(c.args.as_ref().unwrap()[0], "run");
    assert_eq!(c.volume_mounts.as_ref().unwrap().len(), 4);
}

#[test]
fn a_pod_template_cannot_take_the_selector_labels_away() {
    let mut job = example_job();
    job.spec.pod_template = Some(serde_json::json!({
        "metadata": {"labels": {"team": "web", "streamjob.io/job": "other"}}
    }));
    let set = stateful_set(&job, &Restore::Fresh, Scale::Running).unwrap();
    let labels = set.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    assert_eq!(labels["team"], "web");
    assert_eq!(labels[JOB_LABEL], "visit-counter");
}

#[test]
fn the_service_is_headless_on_the_control_port() {
    let job = example_job();
    let spec = service(&job).spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.ports.unwrap()[0].port, CONTROL_PORT);
    assert_eq!(
        control_url(&job),
        "http://visit-counter-0.visit-counter.default.svc:8081"
    );
}

#[test]
fn a_pod_template_that_is_no_pod_template_is_an_error_naming_the_field() {
    let mut job = example_job();
    job.spec.pod_template = Some(serde_json::json!({
        "spec": {"containers": [{"name": "streamjob", "ports": "8081"}]}
    }));
    let error = pod_template_error(&job).expect("rejected");
    assert!(
        error.starts_with("spec.podTemplate.spec.containers[0].ports: invalid type"),
        "{error}"
    );
    assert_eq!(pod_template_error(&example_job()), None);
}

#[test]
fn each_rollout_names_itself_to_the_runtime_and_replaces_the_pod() {
    let mut job = example_job();
    let set = stateful_set(&job, &Restore::Fresh, Scale::Running).unwrap();
    let env = |set: &StatefulSet| {
        container(set)
            .env
            .clone()
            .unwrap()
            .into_iter()
            .filter(|e| e.name.starts_with("STREAMJOB_"))
            .map(|e| (e.name, e.value.unwrap_or_default()))
            .collect::<Vec<_>>()
    };
    // Not deployed yet (the podTemplate check): no rollout to name.
    assert_eq!(env(&set), [("STREAMJOB_LOG".into(), "info".into())]);

    job.status = Some(crate::crd::StreamJobStatus {
        deployment: Some(crate::crd::Deployment {
            generation: 1,
            restore: RestoreKind::None,
            savepoint_path: None,
            started_at: "2026-11-22T06:00:00Z".into(),
            id: "1795413600000-g1".into(),
            storage_scope: crate::crd::StorageScope::Namespace,
        }),
        ..Default::default()
    });
    let set = stateful_set(&job, &Restore::Fresh, Scale::Running).unwrap();
    assert_eq!(
        env(&set),
        [
            ("STREAMJOB_LOG".into(), "info".into()),
            ("STREAMJOB_DEPLOYMENT".into(), "1795413600000-g1".into())
        ]
    );
    let annotations = set.spec.unwrap().template.metadata.unwrap().annotations;
    let annotations = annotations.unwrap();
    assert_eq!(
        annotations["streamjob.io/deployed-at"],
        "2026-11-22T06:00:00Z"
    );
    assert_eq!(annotations["streamjob.io/deployment"], "1795413600000-g1");

    // Pods of another rollout are outdated: by either annotation (one of
    // an operator before the `deployment` annotation by the other); a pod
    // with neither is none of the operator's rollouts.
    let pod = |pairs: &[(&str, &str)]| {
        let mut pod = k8s_openapi::api::core::v1::Pod::default();
        pod.metadata.annotations = Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        pod
    };
    let this = pod(&[
        ("streamjob.io/deployed-at", "2026-11-22T06:00:00Z"),
        ("streamjob.io/deployment", "1795413600000-g1"),
    ]);
    assert!(!outdated(&job, &this));
    let same_second = pod(&[
        ("streamjob.io/deployed-at", "2026-11-22T06:00:00Z"),
        ("streamjob.io/deployment", "1795413600400-g2"),
    ]);
    assert!(outdated(&job, &same_second));
    assert!(outdated(
        &job,
        &pod(&[("streamjob.io/deployed-at", "2026-11-22T05:00:00Z")])
    ));
    assert!(!outdated(
        &job,
        &pod(&[("streamjob.io/deployed-at", "2026-11-22T06:00:00Z")])
    ));
    assert!(!outdated(&job, &pod(&[])));
}

#[test]
fn a_deployment_record_reads_back_as_written_and_nothing_else() {
    for restore in [
        Restore::Fresh,
        Restore::Savepoint("s3://b/visit-counter/savepoints/sp-7".into()),
        Restore::LatestCheckpoint,
    ] {
        let (kind, savepoint_path) = restore.recorded();
        let record = crate::crd::Deployment {
            restore: kind,
            savepoint_path,
            ..Default::default()
        };
        assert_eq!(Restore::of(&record), Ok(restore));
    }
    // A savepoint deployment without its path is never read as "empty".
    let broken = crate::crd::Deployment {
        restore: RestoreKind::Savepoint,
        ..Default::default()
    };
    assert_eq!(
        Restore::of(&broken),
        Err(
            "status.deployment: restore \"savepoint\" with savepointPath None is not a \
             deployment the operator records; not redeploying on a guess"
                .into()
        )
    );
}

/// The runtime pod runs with least privilege unless the StreamJob's
/// `podTemplate` says otherwise, field by field.
#[test]
fn the_pod_is_hardened_by_default_and_a_pod_template_can_relax_it() {
    let mut job = example_job();
    job.spec.resources = None;
    job.spec.pod_template = None;
    let set = stateful_set(&job, &Restore::Fresh, Scale::Running).unwrap();
    let pod = set.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let security = pod.security_context.as_ref().unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.run_as_user, Some(RUNTIME_UID));
    assert_eq!(security.fs_group, Some(RUNTIME_UID));
    assert_eq!(
        security.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    let c = container(&set);
    // A failed run's last log lines reach the operator (see pod_health).
    assert_eq!(
        c.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
    let own = c.security_context.as_ref().unwrap();
    assert_eq!(own.allow_privilege_escalation, Some(false));
    assert_eq!(own.read_only_root_filesystem, Some(true));
    assert_eq!(
        own.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    // Writable places are volumes: state and /tmp.
    let mounts: Vec<&str> = c
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .filter(|m| m.read_only != Some(true))
        .map(|m| m.mount_path.as_str())
        .collect();
    assert_eq!(mounts, [STATE_DIR, "/tmp"]);
    assert_eq!(c.resources, Some(default_resources()));
    let limits = default_resources().limits.unwrap();
    assert_eq!(limits["memory"].0, "2Gi");

    job.spec.pod_template = Some(serde_json::json!({
        "spec": {
            "securityContext": {"runAsUser": 20000},
            "containers": [{"name": "streamjob", "securityContext": {"readOnlyRootFilesystem": false}}]
        }
    }));
    let set = stateful_set(&job, &Restore::Fresh, Scale::Running).unwrap();
    let pod = set.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let security = pod.security_context.as_ref().unwrap();
    assert_eq!(security.run_as_user, Some(20000));
    assert_eq!(security.run_as_non_root, Some(true));
    let own = container(&set).security_context.as_ref().unwrap();
    assert_eq!(own.read_only_root_filesystem, Some(false));
    assert_eq!(own.allow_privilege_escalation, Some(false));
}

/// The example with 4 workers over `pods` pods.
fn over_pods(pods: u32) -> StreamJob {
    let mut job = example_job();
    job.spec.parallelism = 4;
    job.spec.pods = pods;
    job
}

/// Over several pods: one replica each, started together, each told the
/// pod count and every pod's stable exchange address, its index from its
/// ordinal label, and the exchange port open on the pod and the Service.
#[test]
fn a_job_over_pods_is_one_replica_per_pod_that_find_each_other() {
    let job = over_pods(3);
    assert_eq!(undeployable(&job), None);
    let set = stateful_set(&job, &Restore::Fresh, Scale::Running).unwrap();
    let spec = set.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    let c = container(&set);
    assert_eq!(
        c.args.as_ref().unwrap()[6..],
        [
            "--pods",
            "3",
            "--peers",
            "visit-counter-0.visit-counter.default.svc:8082,\
             visit-counter-1.visit-counter.default.svc:8082,\
             visit-counter-2.visit-counter.default.svc:8082"
        ]
    );
    let index = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "STREAMJOB_POD_INDEX")
        .expect("the pod index");
    assert_eq!(
        index
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    let ports: Vec<i32> = c.ports.iter().flatten().map(|p| p.container_port).collect();
    assert_eq!(ports, [CONTROL_PORT, EXCHANGE_PORT]);
    let headless = service(&job).spec.unwrap();
    let ports: Vec<i32> = headless.ports.iter().flatten().map(|p| p.port).collect();
    assert_eq!(ports, [CONTROL_PORT, EXCHANGE_PORT]);
    // The pods look each other up before any is ready.
    assert_eq!(headless.publish_not_ready_addresses, Some(true));
    // The coordinator, pod 0, answers the control API.
    assert_eq!(
        control_url(&job),
        "http://visit-counter-0.visit-counter.default.svc:8081"
    );

    // One pod: no exchange at all.
    let one = over_pods(1);
    let set = stateful_set(&one, &Restore::Fresh, Scale::Running).unwrap();
    let c = container(&set);
    assert_eq!(c.args.as_ref().unwrap().len(), 6);
    assert!(c
        .env
        .iter()
        .flatten()
        .all(|e| e.name != "STREAMJOB_POD_INDEX"));
    assert_eq!(c.ports.as_ref().unwrap().len(), 1);
    assert_eq!(service(&one).spec.unwrap().ports.unwrap().len(), 1);
}

/// The exchange port admits the job's own pods and nobody else; with one
/// pod it is not open at all.
#[test]
fn the_network_policy_opens_the_exchange_to_the_jobs_own_pods_only() {
    let operator = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        ..Default::default()
    };
    let rules = |job: &StreamJob| {
        network_policy(job, std::slice::from_ref(&operator))
            .spec
            .unwrap()
            .ingress
            .unwrap()
    };
    let job = over_pods(2);
    let ingress = rules(&job);
    assert_eq!(ingress.len(), 2);
    let port = |r: &NetworkPolicyIngressRule| r.ports.as_ref().unwrap()[0].port.clone();
    assert_eq!(port(&ingress[0]), Some(IntOrString::Int(CONTROL_PORT)));
    assert_eq!(
        ingress[0].from.as_deref(),
        Some(std::slice::from_ref(&operator))
    );
    assert_eq!(port(&ingress[1]), Some(IntOrString::Int(EXCHANGE_PORT)));
    let from = ingress[1].from.as_ref().unwrap();
    assert_eq!(from.len(), 1);
    assert_eq!(
        from[0].pod_selector.as_ref().unwrap().match_labels,
        Some(labels(&job))
    );
    assert_eq!(from[0].namespace_selector, None, "this namespace only");
    assert_eq!(rules(&over_pods(1)).len(), 1);
}

/// Shapes the runtime would refuse are refused before a rollout, naming
/// `spec.pods`.
#[test]
fn a_job_that_cannot_run_over_its_pods_is_not_deployed() {
    let mut too_many = over_pods(3);
    too_many.spec.parallelism = 2;
    assert_eq!(
        undeployable(&too_many).as_deref(),
        Some(
            "spec.pods: 3 pods need at least 3 workers, and parallelism is 2: raise parallelism \
             or use fewer pods"
        )
    );
    // Exactly-once Kafka output (the example's) over pods: pod 0 writes it.
    assert_eq!(undeployable(&over_pods(2)), None);
}

/// A spec recorded before `pods` existed reads as one pod, and one pod is
/// recorded as before: upgrading the operator upgrades no job.
#[test]
fn one_pod_is_the_spec_without_pods() {
    let job = example_job();
    assert_eq!(job.spec.pods, 1);
    let recorded = serde_json::to_value(&job.spec).unwrap();
    assert!(recorded.get("pods").is_none(), "{recorded}");
    assert_eq!(serde_json::to_value(&over_pods(2).spec).unwrap()["pods"], 2);
}
