//! The `StreamJob` custom resource: what users apply (spec) and what the
//! operator reports (status). The pipeline is the runtime's own spec type,
//! so a job the operator accepts is a job the runtime accepts.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
pub use streamjob_api::SnapshotRef;
use streamjob_spec::{CheckpointSpec, Duration, JobSpec};

/// A keyed, event-time windowed stream job, run and upgraded by the operator.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "streamjob.io",
    version = "v1alpha1",
    kind = "StreamJob",
    namespaced,
    shortname = "sj",
    status = "StreamJobStatus",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Parallelism", type_ = "integer", json_path = ".spec.parallelism"),
    printcolumn(name = "Pods", type_ = "integer", json_path = ".spec.pods"),
    printcolumn(name = "Last checkpoint", type_ = "integer", json_path = ".status.lastCheckpoint.id"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Last savepoint", type_ = "string", json_path = ".status.lastSavepoint.path", priority = 1),
    validation = Rule::new("self.spec.upgradeMode == 'stateless' || has(self.spec.checkpoints)")
        .message("spec.checkpoints is required unless upgradeMode is stateless: savepoints and recovery need checkpoint storage"),
    validation = Rule::new("!has(self.spec.pods) || self.spec.pods <= self.spec.parallelism")
        .message("spec.pods must not exceed spec.parallelism: every pod runs at least one worker"),
    validation = Rule::new("!has(self.spec.pipeline.checkpoints)")
        .message("set checkpoints at spec.checkpoints, not spec.pipeline.checkpoints"),
    validation = Rule::new("!has(self.spec.checkpoints) || self.spec.checkpoints.storage.startsWith('s3://') || self.spec.checkpoints.storage.startsWith('file:///')")
        .message("spec.checkpoints.storage must be s3://bucket[/prefix] (or file:///absolute/dir on a shared volume)"),
)]
#[serde(rename_all = "camelCase")]
pub struct StreamJobSpec {
    /// The runtime image (it runs `streamjob run`).
    pub image: String,
    /// Number of workers the keyed work is spread over.
    #[schemars(range(min = 1))]
    pub parallelism: u32,
    /// Pods the workers are spread over (at most `parallelism`): pod `i` of
    /// the StatefulSet runs its share of the workers, and records cross
    /// between pods on their exchange port. Changing it is an upgrade.
    // Left out at 1: a spec recorded before the field existed reads the
    // same, so upgrading the operator upgrades no job.
    #[serde(default = "one_pod", skip_serializing_if = "is_one_pod")]
    #[schemars(range(min = 1), extend("default" = 1))]
    pub pods: u32,
    /// `running`, or `suspended` (stopped with a savepoint, no pods).
    #[serde(default)]
    pub state: DesiredState,
    /// How a spec change is rolled out.
    #[serde(default)]
    pub upgrade_mode: UpgradeMode,
    /// Checkpoint interval and storage; savepoints go to the same storage.
    pub checkpoints: Option<CheckpointSpec>,
    /// The job: source, key, window, aggregates, sink. Its `name`,
    /// `parallelism` and `checkpoints` are set from the StreamJob.
    pub pipeline: JobSpec,
    /// Change it to restart the job (from the latest checkpoint).
    pub restart_nonce: Option<i64>,
    /// Change it to take a savepoint now.
    pub savepoint_trigger_nonce: Option<i64>,
    /// A savepoint to start the job from the first time it is deployed.
    pub initial_savepoint_path: Option<String>,
    /// Let a savepoint restore even if some of its state has no place in the
    /// job any more (Flink's allowNonRestoredState).
    #[serde(default)]
    pub allow_non_restored_state: bool,
    /// Savepoints taken by the operator: how long to wait and how many to keep.
    #[serde(default)]
    pub savepoints: SavepointPolicy,
    /// Recovery after failures.
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Resources of the runtime container (default: requests cpu 500m and
    /// memory 1Gi, limit memory 2Gi).
    pub resources: Option<ResourceRequirements>,
    /// A pod template merged into the runtime pods (labels, annotations,
    /// node selection, extra env, volumes …).
    #[schemars(schema_with = "preserve_unknown_object")]
    pub pod_template: Option<serde_json::Value>,
}

fn one_pod() -> u32 {
    1
}

fn is_one_pod(pods: &u32) -> bool {
    *pods == 1
}

fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DesiredState {
    #[default]
    Running,
    Suspended,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeMode {
    /// Stop with a savepoint, redeploy from it (waits if none can be taken).
    #[default]
    Savepoint,
    /// Redeploy from the latest completed checkpoint.
    LastState,
    /// Redeploy with no state.
    Stateless,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavepointPolicy {
    /// A savepoint not completed in this time has failed.
    #[serde(default = "default_savepoint_timeout")]
    pub timeout: Duration,
    /// Savepoints the operator took kept in the status history; older ones
    /// are deleted from storage once the history drops them (never the one
    /// the running pods started from).
    #[serde(default = "default_savepoints_retained")]
    #[schemars(range(min = 1))]
    pub retained: u32,
    /// Take a savepoint before the StreamJob is deleted.
    #[serde(default)]
    pub on_delete: bool,
}

impl Default for SavepointPolicy {
    fn default() -> Self {
        SavepointPolicy {
            timeout: default_savepoint_timeout(),
            retained: default_savepoints_retained(),
            on_delete: false,
        }
    }
}

fn default_savepoint_timeout() -> Duration {
    Duration::from_millis(5 * 60_000)
}

fn default_savepoints_retained() -> u32 {
    5
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestartPolicy {
    /// Recoveries allowed before the job is left Failed (reset once the job
    /// has run stably for `stableAfter`).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wait before the first recovery; doubled each time, up to `maxBackoff`.
    #[serde(default = "default_backoff")]
    pub backoff: Duration,
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// A job running this long counts as recovered: the budget is whole again.
    #[serde(default = "default_stable_after")]
    pub stable_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            attempts: default_attempts(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
            stable_after: default_stable_after(),
        }
    }
}

fn default_attempts() -> u32 {
    5
}
fn default_backoff() -> Duration {
    Duration::from_millis(10_000)
}
fn default_max_backoff() -> Duration {
    Duration::from_millis(5 * 60_000)
}
fn default_stable_after() -> Duration {
    Duration::from_millis(10 * 60_000)
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    #[default]
    Created,
    Deploying,
    Running,
    Upgrading,
    Suspended,
    Failed,
    Recovering,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// How the pods now deployed were started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// The spec generation deployed.
    pub generation: i64,
    /// What the pods restored from.
    pub restore: RestoreKind,
    /// The savepoint restored from, if any.
    pub savepoint_path: Option<String>,
    /// RFC 3339.
    pub started_at: String,
    /// Names this rollout for the runtime (`STREAMJOB_DEPLOYMENT`): a
    /// restarted container or a recreated pod of the same rollout resumes
    /// from the rollout's own newest checkpoint instead of starting over
    /// from its savepoint.
    #[serde(default)]
    pub id: String,
    /// Which folder of `spec.checkpoints.storage` the pods keep their
    /// snapshots in.
    #[serde(default)]
    pub storage_scope: StorageScope,
}

/// Which folder of the checkpoint storage a deployment's snapshots go to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StorageScope {
    /// `<storage>/<job>/`: where rollouts recorded before snapshots were
    /// kept per namespace write (and so the scope of a status without the
    /// field). Two StreamJobs of one name in two namespaces would share it,
    /// so only recoveries of such a rollout stay in it; its next rollout
    /// from a savepoint or with empty state moves to `namespace`.
    #[default]
    Job,
    /// `<storage>/<namespace>/<job>/`.
    Namespace,
}

/// What a deployment's pods restored from (`savepointPath` names the
/// savepoint).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestoreKind {
    /// Empty state.
    #[default]
    None,
    /// A savepoint (or any snapshot), at `savepointPath`.
    Savepoint,
    /// The newest completed checkpoint in storage at the time of the start.
    LatestCheckpoint,
}

impl RestoreKind {
    /// The name in the status.
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreKind::None => "none",
            RestoreKind::Savepoint => "savepoint",
            RestoreKind::LatestCheckpoint => "latest-checkpoint",
        }
    }
}

/// A step of an upgrade or suspension.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeStep {
    /// Stop-with-savepoint requested; its path is not known yet.
    #[default]
    Stopping,
    /// The savepoint failed or timed out; the old spec keeps running and the
    /// savepoint is tried again.
    SavepointFailed,
    /// Stopping (with a savepoint) to suspend.
    Suspending,
}

impl UpgradeStep {
    /// The name in the status.
    pub fn as_str(self) -> &'static str {
        match self {
            UpgradeStep::Stopping => "stopping",
            UpgradeStep::SavepointFailed => "savepoint-failed",
            UpgradeStep::Suspending => "suspending",
        }
    }
}

impl std::fmt::Display for UpgradeStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for RestoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An upgrade or suspension in progress (written before each step, so an
/// operator restarted half-way finishes it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStatus {
    /// The generation being rolled out.
    pub target_generation: i64,
    pub step: UpgradeStep,
    /// RFC 3339: when the savepoint was requested.
    pub requested_at: Option<String>,
    /// The savepoint taken for it, once known.
    pub savepoint_path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamJobStatus {
    #[serde(default)]
    pub phase: Phase,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    pub observed_generation: Option<i64>,
    pub last_checkpoint: Option<SnapshotRef>,
    pub last_savepoint: Option<SnapshotRef>,
    #[serde(default)]
    pub savepoint_history: Vec<SnapshotRef>,
    pub upgrade: Option<UpgradeStatus>,
    /// The nonce of the last manual savepoint taken (or attempted).
    pub savepoint_trigger_nonce: Option<i64>,
    pub restart_nonce: Option<i64>,
    pub deployment: Option<Deployment>,
    /// The spec last deployed (JSON).
    pub last_reconciled_spec: Option<String>,
    /// The spec last seen running stably (JSON).
    pub last_stable_spec: Option<String>,
    /// Recoveries since the job last ran stably.
    #[serde(default)]
    pub restarts: u32,
    /// RFC 3339: no recovery before this time (backoff).
    pub next_recovery_at: Option<String>,
    pub error: Option<String>,
}

/// The CRD as checked in at crds/streamjob.yaml.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    format!(
        "# Generated by `crdgen` (scripts/crdgen.sh): do not edit.\n{}",
        serde_yaml::to_string(&StreamJob::crd()).expect("the CRD serializes")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_enums_print_their_wire_names() {
        for kind in [
            RestoreKind::None,
            RestoreKind::Savepoint,
            RestoreKind::LatestCheckpoint,
        ] {
            let wire = serde_json::to_value(kind).unwrap();
            assert_eq!(wire, kind.as_str());
        }
        for step in [
            UpgradeStep::Stopping,
            UpgradeStep::SavepointFailed,
            UpgradeStep::Suspending,
        ] {
            let wire = serde_json::to_value(step).unwrap();
            assert_eq!(wire, step.to_string());
        }
    }
}
