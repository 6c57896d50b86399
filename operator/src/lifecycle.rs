//! The job's lifecycle as a pure decision: from the StreamJob (spec and last
//! status) and what was observed (pod, runtime, storage), the next status,
//! the one action to take and the events to record. The controller writes
//! the status *before* it acts, so an operator restarted half-way through an
//! upgrade reads where it was and carries on; the decision never depends on
//! anything but these inputs, which is what makes every path testable.

use chrono::{DateTime, Utc};

use crate::crd::{
    DesiredState, Phase, SnapshotRef, StorageScope, StreamJob, StreamJobSpec, StreamJobStatus,
    UpgradeMode, UpgradeStatus, UpgradeStep,
};
use crate::resources::Restore;
use streamjob_api::{JobState, JobStatus};

/// What the controller saw of the job's pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodHealth {
    /// No pod (not deployed, or scaled to zero).
    Absent,
    /// Created, not ready yet.
    Starting,
    Ready,
    /// Crash-looping, or its container ended with an error.
    Failing {
        reason: String,
    },
}

impl PodHealth {
    /// The job's health from each of its pods' (named): failing when one
    /// is (naming it when there are several), ready when all are, absent
    /// when none is there.
    pub fn of_pods(pods: Vec<(String, PodHealth)>) -> PodHealth {
        let several = pods.len() > 1;
        let mut all_ready = true;
        let mut all_absent = true;
        for (name, health) in pods {
            match health {
                PodHealth::Failing { reason } if several => {
                    return PodHealth::Failing {
                        reason: format!("pod {name}: {reason}"),
                    };
                }
                PodHealth::Failing { reason } => return PodHealth::Failing { reason },
                PodHealth::Ready => all_absent = false,
                PodHealth::Starting => {
                    all_ready = false;
                    all_absent = false;
                }
                PodHealth::Absent => all_ready = false,
            }
        }
        match (all_absent, all_ready) {
            (true, _) => PodHealth::Absent,
            (false, true) => PodHealth::Ready,
            (false, false) => PodHealth::Starting,
        }
    }
}

/// The runtime's `/status`, as far as the operator uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeStatus {
    pub state: JobState,
    pub last_checkpoint: Option<SnapshotRef>,
    /// The newest savepoint this run took (a stopped job's is the one it
    /// stopped with).
    pub last_savepoint: Option<SnapshotRef>,
}

impl From<JobStatus> for RuntimeStatus {
    fn from(status: JobStatus) -> Self {
        RuntimeStatus {
            state: status.state,
            last_checkpoint: status.last_checkpoint,
            last_savepoint: status.last_savepoint,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub now: DateTime<Utc>,
    /// Replicas of the StatefulSet; `None` when there is none.
    pub replicas: Option<i32>,
    pub pod: PodHealth,
    /// `None` when the control API does not answer.
    pub runtime: Option<RuntimeStatus>,
    /// The newest completed snapshot in the job's storage: its newest
    /// checkpoint, or a savepoint taken after it (what
    /// `--from-latest-checkpoint` restores).
    pub latest_checkpoint: Option<SnapshotRef>,
}

/// The one thing to do after the status is written. The objects always
/// follow `status.deployment` (the controller applies them at every
/// reconcile), so `Deploy` and `Undeploy` say what the new status means
/// rather than ask for a separate step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    /// A new deployment is recorded: ConfigMap, Service and StatefulSet (one
    /// replica), the pod starting as given; the pod is replaced.
    Deploy(Restore),
    /// Suspended: the StatefulSet scales to zero.
    Undeploy,
    /// `POST /stop {"savepoint": true}`; its outcome goes to `stopped`.
    StopWithSavepoint,
    /// `POST /savepoints` and wait; its outcome goes to `savepoint_taken`.
    TriggerSavepoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventType,
    pub reason: &'static str,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub status: StreamJobStatus,
    pub action: Action,
    pub events: Vec<Event>,
    /// When to look again (sooner if something changes).
    pub requeue: std::time::Duration,
    /// Savepoints the operator took that left the history (beyond
    /// `savepoints.retained`): deleted from storage once the status is
    /// written.
    pub dispose: Vec<SnapshotRef>,
}

const POLL: std::time::Duration = std::time::Duration::from_secs(10);
const SAVEPOINT_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// The spec as far as the pods go. Nonces and `state` are handled on their
/// own, and the operator's own settings (how to upgrade, savepoint and
/// restart policies, the first deployment's savepoint) change nothing in a
/// pod: changing any of them is not an upgrade.
pub fn deployable_spec(spec: &StreamJobSpec) -> String {
    let mut spec = spec.clone();
    spec.savepoint_trigger_nonce = None;
    spec.restart_nonce = None;
    spec.state = DesiredState::Running;
    spec.upgrade_mode = UpgradeMode::default();
    spec.savepoints = Default::default();
    spec.restart_policy = Default::default();
    spec.initial_savepoint_path = None;
    serde_json::to_string(&spec).expect("a spec serializes")
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

struct Decision<'a> {
    job: &'a StreamJob,
    obs: &'a Observed,
    status: StreamJobStatus,
    events: Vec<Event>,
    dispose: Vec<SnapshotRef>,
}

impl<'a> Decision<'a> {
    fn new(job: &'a StreamJob, obs: &'a Observed) -> Self {
        Decision {
            job,
            obs,
            status: job.status.clone().unwrap_or_default(),
            events: Vec::new(),
            dispose: Vec::new(),
        }
    }

    fn event(&mut self, kind: EventType, reason: &'static str, note: impl Into<String>) {
        self.events.push(Event {
            kind,
            reason,
            note: note.into(),
        });
    }

    fn plan(self, action: Action, requeue: std::time::Duration) -> Plan {
        Plan {
            status: self.status,
            action,
            events: self.events,
            requeue,
            dispose: self.dispose,
        }
    }

    fn generation(&self) -> i64 {
        self.job.metadata.generation.unwrap_or(0)
    }

    /// Rolls the current spec out: records it as deployed and returns the
    /// action.
    fn deploy(&mut self, restore: Restore, phase: Phase) -> Action {
        self.status.last_reconciled_spec = Some(deployable_spec(&self.job.spec));
        // A new spec or a restart asked for: the restart budget is whole,
        // and a restart asked for at the same time is this rollout.
        self.status.restarts = 0;
        self.status.next_recovery_at = None;
        self.status.restart_nonce = self.job.spec.restart_nonce;
        let generation = self.generation();
        self.record_deployment(restore, phase, generation)
    }

    /// Starts the deployed spec again (a recovery): a spec change waiting
    /// for its savepoint stays waiting, the controller deploys
    /// `lastReconciledSpec`.
    fn redeploy(&mut self, restore: Restore, phase: Phase) -> Action {
        let generation = self.status.deployment.as_ref().map_or(0, |d| d.generation);
        self.record_deployment(restore, phase, generation)
    }

    fn record_deployment(&mut self, restore: Restore, phase: Phase, generation: i64) -> Action {
        self.status.phase = phase;
        let (kind, savepoint_path) = restore.recorded();
        // A restore from the latest checkpoint reads it where the rollout
        // before wrote it; any other start moves to the namespace's folder.
        let storage_scope = match (&restore, &self.status.deployment) {
            (Restore::LatestCheckpoint, Some(before)) => before.storage_scope,
            _ => StorageScope::Namespace,
        };
        self.status.deployment = Some(crate::crd::Deployment {
            generation,
            restore: kind,
            savepoint_path,
            started_at: rfc3339(self.obs.now),
            id: format!("{}-g{generation}", self.obs.now.timestamp_millis()),
            storage_scope,
        });
        self.status.upgrade = None;
        self.status.error = None;
        Action::Deploy(restore)
    }

    /// Where a redeploy from "the latest checkpoint" really starts.
    fn describe_latest(&self) -> String {
        match &self.obs.latest_checkpoint {
            Some(c) => format!("checkpoint {} ({})", c.id, c.path),
            None => "no completed checkpoint yet: the job starts with empty state".into(),
        }
    }

    /// Checkpoints this job completed are gone from storage: restoring
    /// "the latest" would silently start from scratch.
    fn checkpoints_lost(&self) -> bool {
        self.obs.latest_checkpoint.is_none() && self.status.last_checkpoint.is_some()
    }

    fn running(&self) -> bool {
        self.obs.pod == PodHealth::Ready
            && self
                .obs
                .runtime
                .as_ref()
                .is_some_and(|r| r.state == JobState::Running)
    }
}

/// Decides the next step for `job` given what was observed.
pub fn decide(job: &StreamJob, obs: &Observed) -> Plan {
    let mut d = Decision::new(job, obs);
    d.status.observed_generation = job.metadata.generation;
    if let Some(c) = obs.runtime.as_ref().and_then(|r| r.last_checkpoint.clone()) {
        d.status.last_checkpoint = Some(c);
    } else if d.status.last_checkpoint.is_none() {
        d.status.last_checkpoint = obs.latest_checkpoint.clone();
    }
    let spec = &job.spec;

    // A spec that cannot be deployed is never rolled out; the deployed one
    // keeps running (and recovering).
    if let Some(error) = crate::resources::undeployable(job) {
        return invalid_spec(d, error);
    }

    // An upgrade or suspension under way goes on first.
    if let Some(upgrade) = d.status.upgrade.clone() {
        return continue_upgrade(d, upgrade);
    }

    // Never deployed: the first deployment.
    if d.status.deployment.is_none() {
        if spec.state == DesiredState::Suspended {
            d.status.phase = Phase::Suspended;
            return d.plan(Action::None, POLL);
        }
        let restore = match &spec.initial_savepoint_path {
            Some(path) => Restore::Savepoint(path.clone()),
            None => Restore::Fresh,
        };
        let note = match &restore {
            Restore::Savepoint(path) => format!("deploying from savepoint {path}"),
            _ => "deploying with empty state".into(),
        };
        d.event(EventType::Normal, "Deploying", note);
        d.status.savepoint_trigger_nonce = spec.savepoint_trigger_nonce;
        let action = d.deploy(restore, Phase::Deploying);
        return d.plan(action, POLL);
    }

    let deployed = d.obs.replicas.unwrap_or(0) > 0;

    // Suspend and resume.
    if spec.state == DesiredState::Suspended {
        if !deployed {
            d.status.phase = Phase::Suspended;
            return d.plan(Action::None, POLL);
        }
        if spec.upgrade_mode == UpgradeMode::Savepoint && d.running() {
            d.status.phase = Phase::Upgrading;
            d.status.upgrade = Some(UpgradeStatus {
                target_generation: d.generation(),
                step: UpgradeStep::Suspending,
                requested_at: Some(rfc3339(obs.now)),
                savepoint_path: None,
            });
            d.event(
                EventType::Normal,
                "Suspending",
                "stopping the job with a savepoint",
            );
            return d.plan(Action::StopWithSavepoint, POLL);
        }
        d.status.phase = Phase::Suspended;
        d.event(
            EventType::Normal,
            "Suspended",
            format!("pods removed; resuming starts from {}", d.describe_latest()),
        );
        return d.plan(Action::Undeploy, POLL);
    }
    if !deployed && d.status.phase == Phase::Suspended {
        // The savepoint the job was suspended with is the newest snapshot in
        // storage (ids count checkpoints and savepoints together); an older
        // one (a suspension without a savepoint came after it) is not.
        let newest = d.obs.latest_checkpoint.as_ref().map_or(0, |c| c.id);
        let restore = match (&spec.upgrade_mode, &d.status.last_savepoint) {
            (UpgradeMode::Savepoint, Some(sp)) if sp.id >= newest => {
                Restore::Savepoint(sp.path.clone())
            }
            (UpgradeMode::Stateless, _) => Restore::Fresh,
            _ => Restore::LatestCheckpoint,
        };
        d.event(EventType::Normal, "Resuming", describe(&restore, &d));
        let action = d.deploy(restore, Phase::Deploying);
        return d.plan(action, POLL);
    }

    // A spec change: an upgrade, by the upgrade mode.
    if d.status.last_reconciled_spec.as_deref() != Some(deployable_spec(spec).as_str()) {
        return start_upgrade(d);
    }

    // A restart asked for.
    if spec.restart_nonce != d.status.restart_nonce {
        d.status.restart_nonce = spec.restart_nonce;
        if d.checkpoints_lost() {
            return refuse_lost_checkpoints(d);
        }
        d.event(
            EventType::Normal,
            "Restarting",
            format!("restart requested; restoring {}", d.describe_latest()),
        );
        let action = d.deploy(Restore::LatestCheckpoint, Phase::Deploying);
        return d.plan(action, POLL);
    }

    health(d)
}

fn describe(restore: &Restore, d: &Decision) -> String {
    match restore {
        Restore::Fresh => "starting with empty state (upgradeMode stateless)".into(),
        Restore::Savepoint(path) => format!("starting from savepoint {path}"),
        Restore::LatestCheckpoint => format!("starting from {}", d.describe_latest()),
    }
}

fn invalid_spec(mut d: Decision, error: String) -> Plan {
    if d.status.error.as_deref() != Some(error.as_str()) {
        d.event(
            EventType::Warning,
            "InvalidSpec",
            format!("{error}; the deployed spec keeps running until this is fixed"),
        );
    }
    let mut plan = health_only(d);
    plan.status.error = Some(error);
    plan
}

fn refuse_lost_checkpoints(mut d: Decision) -> Plan {
    let last = d.status.last_checkpoint.clone().unwrap_or_default();
    let error = format!(
        "no completed checkpoint found in storage, though checkpoint {} ({}) completed before: \
         not starting without state. Restore it, or set initialSavepointPath, or upgradeMode: stateless",
        last.id, last.path
    );
    d.event(EventType::Warning, "CheckpointsMissing", error.clone());
    d.status.error = Some(error);
    d.plan(Action::None, SAVEPOINT_RETRY)
}

fn start_upgrade(mut d: Decision) -> Plan {
    let spec = &d.job.spec;
    match spec.upgrade_mode {
        UpgradeMode::Savepoint => {
            if !d.running() {
                // Never a silent stateless start: wait, and say how to go on.
                let error = "the spec changed but the job is not running, so no savepoint can be \
                             taken: the upgrade waits. To redeploy from the latest checkpoint \
                             instead, set upgradeMode: last-state"
                    .to_string();
                if d.status.error.as_deref() != Some(error.as_str()) {
                    d.event(EventType::Warning, "UpgradeWaiting", error.clone());
                }
                d.status.error = Some(error);
                d.status.phase = Phase::Upgrading;
                // A failing job still recovers (with the deployed spec).
                return health_only(d);
            }
            d.status.phase = Phase::Upgrading;
            d.status.upgrade = Some(UpgradeStatus {
                target_generation: d.generation(),
                step: UpgradeStep::Stopping,
                requested_at: Some(rfc3339(d.obs.now)),
                savepoint_path: None,
            });
            d.event(
                EventType::Normal,
                "UpgradeStarted",
                format!(
                    "spec generation {} changed: stopping the job with a savepoint",
                    d.generation()
                ),
            );
            d.plan(Action::StopWithSavepoint, POLL)
        }
        UpgradeMode::LastState => {
            if d.checkpoints_lost() {
                return refuse_lost_checkpoints(d);
            }
            d.event(
                EventType::Normal,
                "Upgrading",
                format!(
                    "spec generation {} changed: redeploying from {}",
                    d.generation(),
                    d.describe_latest()
                ),
            );
            let action = d.deploy(Restore::LatestCheckpoint, Phase::Upgrading);
            d.plan(action, POLL)
        }
        UpgradeMode::Stateless => {
            d.event(
                EventType::Normal,
                "Upgrading",
                format!(
                    "spec generation {} changed: redeploying with empty state (upgradeMode stateless)",
                    d.generation()
                ),
            );
            let action = d.deploy(Restore::Fresh, Phase::Upgrading);
            d.plan(action, POLL)
        }
    }
}

fn continue_upgrade(mut d: Decision, upgrade: UpgradeStatus) -> Plan {
    // The path is recorded: redeploy (or scale down) from it.
    if let Some(path) = upgrade.savepoint_path.clone() {
        if upgrade.step == UpgradeStep::Suspending {
            d.status.upgrade = None;
            d.status.phase = Phase::Suspended;
            d.event(
                EventType::Normal,
                "Suspended",
                format!("pods removed; resuming starts from savepoint {path}"),
            );
            return d.plan(Action::Undeploy, POLL);
        }
        d.event(
            EventType::Normal,
            "Redeploying",
            format!(
                "deploying spec generation {} from savepoint {path}",
                d.generation()
            ),
        );
        let action = d.deploy(Restore::Savepoint(path), Phase::Deploying);
        return d.plan(action, POLL);
    }
    // The user changed course: another mode, or suspended while upgrading.
    let suspending = upgrade.step == UpgradeStep::Suspending;
    if d.job.spec.upgrade_mode != UpgradeMode::Savepoint
        || (suspending && d.job.spec.state == DesiredState::Running)
    {
        d.status.upgrade = None;
        d.status.error = None;
        return decide_again(d);
    }
    let requested = parse_time(upgrade.requested_at.as_deref()).unwrap_or(d.obs.now);
    if upgrade.step == UpgradeStep::SavepointFailed {
        let retry_at = requested + chrono::Duration::from_std(SAVEPOINT_RETRY).unwrap();
        if d.obs.now < retry_at || !d.running() {
            return d.plan(Action::None, SAVEPOINT_RETRY);
        }
        let mut upgrade = upgrade;
        upgrade.step = UpgradeStep::Stopping;
        upgrade.requested_at = Some(rfc3339(d.obs.now));
        upgrade.target_generation = d.generation();
        d.status.upgrade = Some(upgrade);
        d.event(
            EventType::Normal,
            "UpgradeRetrying",
            "trying the savepoint again",
        );
        return d.plan(Action::StopWithSavepoint, POLL);
    }
    // Stopping, and no path recorded: the operator may have restarted in the
    // middle of the request. A job that has stopped with a savepoint since
    // says which; a running one is asked again.
    if let Some(savepoint) = stopped_with_savepoint_since(d.obs, requested) {
        let note = format!(
            "the job stopped with savepoint {} at {} (found after the operator restarted)",
            savepoint.id, savepoint.path
        );
        return record_stop_savepoint(d, upgrade, savepoint, note);
    }
    let timeout = chrono::Duration::from_std(d.job.spec.savepoints.timeout.as_std()).unwrap();
    if d.obs.now > requested + timeout {
        return savepoint_failed(d, upgrade, "timed out".into());
    }
    if !d.running() {
        return savepoint_failed(d, upgrade, "the job is not running".into());
    }
    d.plan(Action::StopWithSavepoint, POLL)
}

/// A decision as if no upgrade had been under way.
fn decide_again(d: Decision) -> Plan {
    let mut job = d.job.clone();
    job.status = Some(d.status);
    let mut plan = decide(&job, d.obs);
    let mut events = d.events;
    events.append(&mut plan.events);
    plan.events = events;
    plan
}

fn savepoint_failed(mut d: Decision, mut upgrade: UpgradeStatus, reason: String) -> Plan {
    let error = format!(
        "savepoint for spec generation {} failed: {reason}. The job keeps running the old spec; \
         the savepoint is tried again in {} s (set upgradeMode: last-state to redeploy from the \
         latest checkpoint instead)",
        upgrade.target_generation,
        SAVEPOINT_RETRY.as_secs()
    );
    d.event(EventType::Warning, "SavepointFailed", error.clone());
    d.status.error = Some(error);
    upgrade.step = UpgradeStep::SavepointFailed;
    upgrade.requested_at = Some(rfc3339(d.obs.now));
    d.status.upgrade = Some(upgrade);
    d.status.phase = if d.running() {
        Phase::Upgrading
    } else {
        Phase::Failed
    };
    d.plan(Action::None, SAVEPOINT_RETRY)
}

/// The outcome of `Action::StopWithSavepoint`: the path is recorded in the
/// status (which is written before anything is redeployed), or the failure.
pub fn stopped(job: &StreamJob, obs: &Observed, outcome: Result<SnapshotRef, String>) -> Plan {
    let d = Decision::new(job, obs);
    let Some(upgrade) = d.status.upgrade.clone() else {
        return decide(job, obs);
    };
    match outcome {
        Ok(savepoint) => {
            let note = format!("savepoint {} at {}", savepoint.id, savepoint.path);
            record_stop_savepoint(d, upgrade, savepoint, note)
        }
        Err(reason) => savepoint_failed(d, upgrade, reason),
    }
}

/// The savepoint a stopped job reports, when it was taken after `since`.
fn stopped_with_savepoint_since(obs: &Observed, since: DateTime<Utc>) -> Option<SnapshotRef> {
    let runtime = obs
        .runtime
        .as_ref()
        .filter(|r| r.state == JobState::Finished)?;
    let savepoint = runtime.last_savepoint.clone()?;
    let taken = parse_time(savepoint.time.as_deref())?;
    // `since` is recorded to the second.
    (taken >= since).then_some(savepoint)
}

/// Records the savepoint the job stopped with; the next decision redeploys
/// (or scales down) from it.
fn record_stop_savepoint(
    mut d: Decision,
    mut upgrade: UpgradeStatus,
    savepoint: SnapshotRef,
    note: String,
) -> Plan {
    upgrade.savepoint_path = Some(savepoint.path.clone());
    d.status.upgrade = Some(upgrade);
    d.record_savepoint(savepoint);
    d.event(EventType::Normal, "SavepointCompleted", note);
    d.plan(Action::None, std::time::Duration::ZERO)
}

/// The outcome of `Action::TriggerSavepoint` (a manual savepoint).
pub fn savepoint_taken(
    job: &StreamJob,
    obs: &Observed,
    outcome: Result<SnapshotRef, String>,
) -> Plan {
    let mut d = Decision::new(job, obs);
    match outcome {
        Ok(savepoint) => {
            let note = format!("savepoint {} at {}", savepoint.id, savepoint.path);
            d.record_savepoint(savepoint);
            d.event(EventType::Normal, "SavepointCompleted", note);
        }
        Err(reason) => d.event(
            EventType::Warning,
            "SavepointFailed",
            format!("the savepoint asked for by savepointTriggerNonce failed: {reason}"),
        ),
    }
    d.plan(Action::None, POLL)
}

impl Decision<'_> {
    /// Adds a savepoint to the history; the oldest beyond
    /// `savepoints.retained` leave it and are disposed of, except one the
    /// deployment started from (a restarted container may still need it).
    fn record_savepoint(&mut self, savepoint: SnapshotRef) {
        let status = &mut self.status;
        status.last_savepoint = Some(savepoint.clone());
        status.savepoint_history.push(savepoint);
        let retained = self.job.spec.savepoints.retained.max(1) as usize;
        let excess = status.savepoint_history.len().saturating_sub(retained);
        let in_use = status
            .deployment
            .as_ref()
            .and_then(|d| d.savepoint_path.clone());
        self.dispose.extend(
            status
                .savepoint_history
                .drain(..excess)
                .filter(|sp| Some(&sp.path) != in_use.as_ref()),
        );
    }
}

/// Health of a deployed job with nothing else to do: running, failing
/// (recovered from the latest checkpoint with backoff and a budget), and a
/// manual savepoint when asked for.
fn health(mut d: Decision) -> Plan {
    if d.running() && d.job.spec.savepoint_trigger_nonce != d.status.savepoint_trigger_nonce {
        d.status.savepoint_trigger_nonce = d.job.spec.savepoint_trigger_nonce;
        d.status.phase = Phase::Running;
        d.event(
            EventType::Normal,
            "SavepointTriggered",
            "taking a savepoint",
        );
        return d.plan(Action::TriggerSavepoint, POLL);
    }
    health_only(d)
}

fn health_only(mut d: Decision) -> Plan {
    // An upgrade still under way (waiting for its savepoint) keeps its
    // phase; one whose new pods were deployed is over once they run.
    let upgrading = d.status.upgrade.is_some();
    match d.obs.pod.clone() {
        PodHealth::Ready if d.running() => {
            if !upgrading {
                d.status.phase = Phase::Running;
                d.status.error = None;
            }
            d.status.next_recovery_at = None;
            let started = d
                .status
                .deployment
                .as_ref()
                .and_then(|dep| parse_time(Some(&dep.started_at)));
            let stable_after =
                chrono::Duration::from_std(d.job.spec.restart_policy.stable_after.as_std())
                    .unwrap();
            if started.is_some_and(|s| d.obs.now >= s + stable_after) {
                d.status.restarts = 0;
                d.status.last_stable_spec = d.status.last_reconciled_spec.clone();
            }
            d.plan(Action::None, POLL)
        }
        PodHealth::Failing { reason } => recover(d, reason),
        _ if d
            .obs
            .runtime
            .as_ref()
            .is_some_and(|r| r.state == JobState::Failed) =>
        {
            recover(d, "the job failed".into())
        }
        _ => d.plan(Action::None, POLL),
    }
}

fn recover(mut d: Decision, reason: String) -> Plan {
    let policy = &d.job.spec.restart_policy;
    if d.status.restarts >= policy.attempts {
        // Said once: the stored phase, not this decision's (an upgrade
        // waiting for its savepoint set it to Upgrading), tells.
        let failed_before = d.job.status.as_ref().map(|s| s.phase) == Some(Phase::Failed);
        if !failed_before {
            d.event(
                EventType::Warning,
                "RestartBudgetExhausted",
                format!(
                    "{reason}; {} recoveries did not help: the job stays Failed until \
                     restartNonce changes (or the spec, with upgradeMode last-state or stateless)",
                    policy.attempts
                ),
            );
        }
        // An upgrade's own error (why it waits) stays: it is the one to act on.
        if d.status.phase != Phase::Upgrading {
            d.status.error = Some(reason);
        }
        d.status.phase = Phase::Failed;
        return d.plan(Action::None, POLL);
    }
    let Some(at) = parse_time(d.status.next_recovery_at.as_deref()) else {
        // First sight of this failure: wait the backoff, doubling each time.
        let backoff = policy.backoff.as_std() * 2u32.saturating_pow(d.status.restarts);
        let backoff = backoff.min(policy.max_backoff.as_std());
        let at = d.obs.now + chrono::Duration::from_std(backoff).unwrap();
        d.status.next_recovery_at = Some(rfc3339(at));
        d.status.phase = Phase::Recovering;
        d.status.error = Some(reason.clone());
        d.event(
            EventType::Warning,
            "JobFailed",
            format!(
                "{reason}; recovering from the latest checkpoint in {} s (attempt {} of {})",
                backoff.as_secs(),
                d.status.restarts + 1,
                policy.attempts
            ),
        );
        return d.plan(Action::None, backoff);
    };
    if d.obs.now < at {
        let wait = (at - d.obs.now).to_std().unwrap_or_default();
        return d.plan(Action::None, wait);
    }
    if d.checkpoints_lost() {
        return refuse_lost_checkpoints(d);
    }
    d.status.restarts += 1;
    d.status.next_recovery_at = None;
    let note = format!(
        "redeploying from {} (attempt {} of {})",
        d.describe_latest(),
        d.status.restarts,
        policy.attempts
    );
    d.event(EventType::Normal, "Recovering", note);
    // Recovery keeps the spec deployed before: a spec change still goes
    // through its upgrade path.
    let action = d.redeploy(Restore::LatestCheckpoint, Phase::Recovering);
    d.status.error = Some(reason);
    d.plan(action, POLL)
}

#[cfg(test)]
mod tests;
