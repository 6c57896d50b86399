//! `streamjob-operator render`: the objects the operator would apply for a
//! StreamJob on its first deployment, as YAML, without a cluster (as
//! `helm template` does for a chart): for people who review or GitOps what
//! runs, and to check the pods' hardening and the job file from outside.

use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use kube::ResourceExt;

use crate::crd::StreamJob;
use crate::resources::{self, Restore, Scale};

/// The objects as a YAML stream: ConfigMap, Service, the token Secret
/// (without its token, which the operator makes in the cluster), the
/// NetworkPolicy when `control_clients` are given, and the StatefulSet.
/// A StreamJob the operator would refuse is an error that says why.
pub fn render(
    job: &StreamJob,
    control_clients: Option<&[NetworkPolicyPeer]>,
) -> Result<String, String> {
    let mut job = job.clone();
    if job.namespace().is_none() {
        job.metadata.namespace = Some("default".into());
    }
    if let Some(error) = resources::undeployable(&job) {
        return Err(error);
    }
    streamjob_spec::JobSpec::from_yaml(&resources::job_file(&job))
        .map_err(|e| format!("spec.pipeline is not a valid job: {e}"))?;
    let restore = match &job.spec.initial_savepoint_path {
        Some(path) => Restore::Savepoint(path.clone()),
        None => Restore::Fresh,
    };
    let mut secret = resources::token_secret(&job, "");
    secret.data = None;
    let mut documents = vec![
        yaml(&resources::config_map(&job)),
        yaml(&resources::service(&job)),
        format!(
            "# data.token: 32 random bytes as hex, made once by the operator in the cluster\n{}",
            yaml(&secret)
        ),
    ];
    if let Some(clients) = control_clients {
        documents.push(yaml(&resources::network_policy(&job, clients)));
    }
    documents.push(yaml(&resources::stateful_set(
        &job,
        &restore,
        Scale::Running,
    )?));
    Ok(documents.join("---\n"))
}

/// An object as YAML, with its `apiVersion` and `kind`.
fn yaml<K: k8s_openapi::Resource + serde::Serialize>(object: &K) -> String {
    let mut value = serde_json::to_value(object).expect("an object serializes");
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), K::API_VERSION.into());
        map.insert("kind".into(), K::KIND.into());
    }
    serde_yaml::to_string(&value).expect("JSON is YAML")
}
