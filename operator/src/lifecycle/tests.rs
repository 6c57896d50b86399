//! Every lifecycle path, as exact statuses, actions and events. Each test
//! feeds the plan's status back in as the next reconcile would, so the
//! sequences are the ones the controller goes through.

use chrono::TimeZone;

use super::*;
use crate::crd::{RestoreKind, StorageScope};
use crate::resources::tests::example_job;
use streamjob_api::JobState;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
}

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

/// A running job, as observed at `secs`.
fn running(secs: i64, last: u64) -> Observed {
    Observed {
        now: at(secs),
        replicas: Some(1),
        pod: PodHealth::Ready,
        runtime: Some(RuntimeStatus {
            state: JobState::Running,
            last_checkpoint: Some(checkpoint(last)),
            last_savepoint: None,
        }),
        latest_checkpoint: Some(checkpoint(last)),
    }
}

fn crashing(secs: i64, last: u64) -> Observed {
    Observed {
        pod: PodHealth::Failing {
            reason: "CrashLoopBackOff: exit code 1".into(),
        },
        runtime: None,
        ..running(secs, last)
    }
}

fn nothing_deployed(secs: i64) -> Observed {
    Observed {
        now: at(secs),
        replicas: None,
        pod: PodHealth::Absent,
        runtime: None,
        latest_checkpoint: None,
    }
}

/// Applies the plan's status to the job, as the controller's status write does.
fn apply(job: &mut StreamJob, plan: &Plan) {
    job.status = Some(plan.status.clone());
}

fn reasons(plan: &Plan) -> Vec<&'static str> {
    plan.events.iter().map(|e| e.reason).collect()
}

/// A job deployed and running, checkpoint 3 complete.
fn deployed_job() -> StreamJob {
    deployed(example_job())
}

/// `job` deployed and running, checkpoint 3 complete.
fn deployed(mut job: StreamJob) -> StreamJob {
    let plan = decide(&job, &nothing_deployed(0));
    apply(&mut job, &plan);
    let plan = decide(&job, &running(30, 3));
    apply(&mut job, &plan);
    job
}

/// A deployed job whose parallelism changed to 4 at 60 s: the stop with a
/// savepoint was asked for (status written), its answer not seen yet.
fn stopping_for_an_upgrade() -> StreamJob {
    let mut job = deployed_job();
    change_parallelism(&mut job, 4);
    let plan = decide(&job, &running(60, 4));
    assert_eq!(plan.action, Action::StopWithSavepoint);
    apply(&mut job, &plan);
    job
}

fn change_parallelism(job: &mut StreamJob, parallelism: u32) {
    job.spec.parallelism = parallelism;
    *job.metadata.generation.as_mut().unwrap() += 1;
}

#[test]
fn create_deploys_fresh_then_runs() {
    let mut job = example_job();
    let plan = decide(&job, &nothing_deployed(0));
    assert_eq!(plan.action, Action::Deploy(Restore::Fresh));
    assert_eq!(plan.status.phase, Phase::Deploying);
    assert_eq!(reasons(&plan), ["Deploying"]);
    assert_eq!(plan.status.observed_generation, Some(1));
    let deployment = plan.status.deployment.clone().unwrap();
    assert_eq!(
        (deployment.generation, deployment.restore),
        (1, RestoreKind::None)
    );
    assert_eq!(deployment.id, format!("{}-g1", at(0).timestamp_millis()));
    apply(&mut job, &plan);

    let starting = Observed {
        pod: PodHealth::Starting,
        runtime: None,
        ..running(10, 0)
    };
    let plan = decide(&job, &starting);
    assert_eq!(plan.action, Action::None);
    assert_eq!(plan.status.phase, Phase::Deploying);

    let plan = decide(&job, &running(30, 3));
    assert_eq!(plan.action, Action::None);
    assert_eq!(plan.status.phase, Phase::Running);
    assert_eq!(plan.status.last_checkpoint, Some(checkpoint(3)));
    assert!(plan.events.is_empty());
}

#[test]
fn an_initial_savepoint_is_restored_on_first_deploy() {
    let mut job = example_job();
    job.spec.initial_savepoint_path = Some(savepoint(9).path);
    let plan = decide(&job, &nothing_deployed(0));
    assert_eq!(
        plan.action,
        Action::Deploy(Restore::Savepoint(savepoint(9).path))
    );
}

#[test]
fn a_spec_change_goes_through_a_savepoint_recorded_before_redeploy() {
    let mut job = deployed_job();
    change_parallelism(&mut job, 4);

    let plan = decide(&job, &running(60, 4));
    assert_eq!(plan.action, Action::StopWithSavepoint);
    assert_eq!(plan.status.phase, Phase::Upgrading);
    assert_eq!(reasons(&plan), ["UpgradeStarted"]);
    let upgrade = plan.status.upgrade.clone().unwrap();
    assert_eq!(
        (upgrade.target_generation, upgrade.step),
        (2, UpgradeStep::Stopping)
    );
    apply(&mut job, &plan);

    // The stop answers with the savepoint: its path is recorded first …
    let plan = stopped(&job, &running(65, 4), Ok(savepoint(5)));
    assert_eq!(plan.action, Action::None);
    assert_eq!(
        plan.status.upgrade.as_ref().unwrap().savepoint_path,
        Some(savepoint(5).path)
    );
    assert_eq!(plan.status.last_savepoint, Some(savepoint(5)));
    assert_eq!(plan.status.savepoint_history, [savepoint(5)]);
    assert_eq!(reasons(&plan), ["SavepointCompleted"]);
    apply(&mut job, &plan);

    // … and the redeploy from it comes next.
    let stopped_pod = Observed {
        runtime: None,
        pod: PodHealth::Starting,
        ..running(66, 4)
    };
    let plan = decide(&job, &stopped_pod);
    assert_eq!(
        plan.action,
        Action::Deploy(Restore::Savepoint(savepoint(5).path))
    );
    assert_eq!(plan.status.phase, Phase::Deploying);
    assert_eq!(plan.status.upgrade, None);
    assert_eq!(plan.status.deployment.as_ref().unwrap().generation, 2);
    assert_eq!(reasons(&plan), ["Redeploying"]);
    apply(&mut job, &plan);

    let plan = decide(&job, &running(90, 6));
    assert_eq!(
        (plan.action.clone(), plan.status.phase),
        (Action::None, Phase::Running)
    );
}

#[test]
fn an_operator_restarted_mid_upgrade_asks_for_the_savepoint_again() {
    let job = stopping_for_an_upgrade();
    // The operator died during the stop request: the status says stopping,
    // with no path. The next reconcile repeats the request.
    let plan = decide(&job, &running(70, 4));
    assert_eq!(plan.action, Action::StopWithSavepoint);
    assert_eq!(plan.status.upgrade.unwrap().step, UpgradeStep::Stopping);
    assert!(plan.events.is_empty());
}

#[test]
fn an_operator_restarted_after_the_stop_redeploys_from_the_savepoint_the_job_reports() {
    let mut job = stopping_for_an_upgrade();
    // The stop completed but the operator died before recording its answer:
    // the stopped job reports the savepoint it stopped with.
    let stopped_at = |secs: i64, savepoint_secs: i64| Observed {
        pod: PodHealth::Starting,
        runtime: Some(RuntimeStatus {
            state: JobState::Finished,
            last_checkpoint: Some(checkpoint(4)),
            last_savepoint: Some(SnapshotRef {
                time: Some(rfc3339(at(savepoint_secs))),
                ..savepoint(5)
            }),
        }),
        ..running(secs, 4)
    };
    // A savepoint older than the request is not the upgrade's.
    let plan = decide(&job, &stopped_at(70, 50));
    assert_eq!(plan.action, Action::None);
    assert_eq!(reasons(&plan), ["SavepointFailed"]);

    let plan = decide(&job, &stopped_at(70, 61));
    assert_eq!(plan.action, Action::None);
    assert_eq!(reasons(&plan), ["SavepointCompleted"]);
    assert_eq!(
        plan.events[0].note,
        format!(
            "the job stopped with savepoint 5 at {} (found after the operator restarted)",
            savepoint(5).path
        )
    );
    assert_eq!(plan.status.last_savepoint.as_ref().unwrap().id, 5);
    apply(&mut job, &plan);
    let plan = decide(&job, &stopped_at(71, 61));
    assert_eq!(
        plan.action,
        Action::Deploy(Restore::Savepoint(savepoint(5).path))
    );
    assert_eq!(reasons(&plan), ["Redeploying"]);
}

#[test]
fn a_failed_savepoint_waits_and_never_starts_stateless() {
    let mut job = stopping_for_an_upgrade();

    let plan = stopped(
        &job,
        &running(65, 4),
        Err("savepoint 5 failed: S3 unreachable".into()),
    );
    assert_eq!(plan.action, Action::None);
    assert_eq!(plan.status.phase, Phase::Upgrading);
    assert_eq!(reasons(&plan), ["SavepointFailed"]);
    assert_eq!(plan.events[0].kind, EventType::Warning);
    assert!(plan
        .status
        .error
        .as_ref()
        .unwrap()
        .contains("S3 unreachable"));
    assert_eq!(
        plan.status.upgrade.as_ref().unwrap().step,
        UpgradeStep::SavepointFailed
    );
    // The old deployment stays.
    assert_eq!(plan.status.deployment.as_ref().unwrap().generation, 1);
    apply(&mut job, &plan);

    // Before the retry delay: nothing.
    let plan = decide(&job, &running(100, 4));
    assert_eq!(plan.action, Action::None);
    // After it: the savepoint is tried again.
    let plan = decide(&job, &running(130, 4));
    assert_eq!(plan.action, Action::StopWithSavepoint);
    assert_eq!(reasons(&plan), ["UpgradeRetrying"]);
}

#[test]
fn a_savepoint_that_takes_too_long_times_out() {
    let job = stopping_for_an_upgrade();
    // Default timeout 5 minutes; the stop never answered.
    let plan = decide(&job, &running(60 + 301, 4));
    assert_eq!(reasons(&plan), ["SavepointFailed"]);
    assert!(plan.status.error.unwrap().contains("timed out"));
}

#[test]
fn switching_to_last_state_mid_upgrade_redeploys_from_the_latest_checkpoint() {
    let mut job = stopping_for_an_upgrade();
    let plan = stopped(&job, &running(65, 4), Err("timed out".into()));
    apply(&mut job, &plan);

    job.spec.upgrade_mode = UpgradeMode::LastState;
    *job.metadata.generation.as_mut().unwrap() += 1;
    let plan = decide(&job, &running(70, 7));
    assert_eq!(plan.action, Action::Deploy(Restore::LatestCheckpoint));
    assert_eq!(plan.status.upgrade, None);
    assert_eq!(plan.status.error, None);
    assert_eq!(plan.status.deployment.as_ref().unwrap().generation, 3);
    assert_eq!(reasons(&plan), ["Upgrading"]);
    assert!(plan.events[0].note.contains("checkpoint 7"));
}

#[test]
fn a_last_state_upgrade_is_running_once_its_pod_is_ready() {
    let mut job = deployed_job();
    job.spec.upgrade_mode = UpgradeMode::LastState;
    change_parallelism(&mut job, 4);
    let plan = decide(&job, &running(60, 4));
    assert_eq!(plan.action, Action::Deploy(Restore::LatestCheckpoint));
    assert_eq!(plan.status.phase, Phase::Upgrading);
    apply(&mut job, &plan);

    // The new pod is up: the upgrade is over (no step of it is pending).
    let plan = decide(&job, &running(90, 5));
    assert_eq!(plan.action, Action::None);
    assert_eq!(plan.status.upgrade, None);
    assert_eq!(plan.status.phase, Phase::Running);
}

#[test]
fn a_spec_change_while_the_job_is_down_waits_for_a_savepoint() {
    let mut job = deployed_job();
    change_parallelism(&mut job, 4);
    let plan = decide(&job, &crashing(60, 4));
    assert_eq!(plan.status.phase, Phase::Recovering);
    assert_eq!(reasons(&plan), ["UpgradeWaiting", "JobFailed"]);
    assert!(
        plan.status
            .error
            .as_ref()
            .unwrap()
            .contains("the job failed")
            || plan
                .status
                .error
                .as_ref()
                .unwrap()
                .contains("CrashLoopBackOff")
    );
    // No redeploy of the new spec, and no stateless start.
    assert_eq!(plan.action, Action::None);
    assert_eq!(plan.status.deployment.as_ref().unwrap().generation, 1);
    apply(&mut job, &plan);
    // The recovery restarts the deployed spec (generation 1), not the new one.
    let deployed_spec = plan.status.last_reconciled_spec.clone();
    let plan = decide(&job, &crashing(70, 4));
    assert_eq!(plan.action, Action::Deploy(Restore::LatestCheckpoint));
    assert_eq!(plan.status.deployment.as_ref().unwrap().generation, 1);
    assert_eq!(plan.status.last_reconciled_spec, deployed_spec);
    apply(&mut job, &plan);
    // Running again: now the savepoint upgrade starts.
    assert_eq!(
        decide(&job, &running(90, 5)).action,
        Action::StopWithSavepoint
    );
}

#[test]
fn resuming_after_a_suspension_without_a_savepoint_uses_the_latest_checkpoint() {
    let mut job = deployed_job();
    job.spec.savepoint_trigger_nonce = Some(1);
    let plan = decide(&job, &running(60, 4));
    assert_eq!(plan.action, Action::TriggerSavepoint);
    apply(&mut job, &plan);
    let plan = savepoint_taken(&job, &running(61, 4), Ok(savepoint(5)));
    apply(&mut job, &plan);
    // Suspended while the job was down: no savepoint could be taken.
    job.spec.state = DesiredState::Suspended;
    let plan = decide(&job, &crashing(200, 9));
    assert_eq!(plan.action, Action::Undeploy);
    apply(&mut job, &plan);
    job.spec.state = DesiredState::Running;
    let scaled_down = Observed {
        replicas: Some(0),
        pod: PodHealth::Absent,
        runtime: None,
        ..running(300, 9)
    };
    // Savepoint 5 is older than checkpoint 9: resuming from it would go back.
    let plan = decide(&job, &scaled_down);
    assert_eq!(plan.action, Action::Deploy(Restore::LatestCheckpoint));
    assert!(plan.events[0].note.contains("checkpoint 9"));
}

#[test]
fn stateless_upgrades_start_fresh() {
    let mut job = deployed_job();
    job.spec.upgrade_mode = UpgradeMode::Stateless;
    change_parallelism(&mut job, 4);
    let plan = decide(&job, &running(60, 4));
    assert_eq!(plan.action, Action::Deploy(Restore::Fresh));
    assert_eq!(plan.status.phase, Phase::Upgrading);
}

#[test]
fn suspend_takes_a_savepoint_and_resume_starts_from_it() {
    let mut job = deployed_job();
    job.spec.state = DesiredState::Suspended;
    let plan = decide(&job, &running(60, 4));
    assert_eq!(plan.action, Action::StopWithSavepoint);
    assert_eq!(reasons(&plan), ["Suspending"]);
    apply(&mut job, &plan);
    let plan = stopped(&job, &running(62, 4), Ok(savepoint(5)));
    apply(&mut job, &plan);
    let plan = decide(&job, &running(63, 4));
    assert_eq!(plan.action, Action::Undeploy);
    assert_eq!(plan.status.phase, Phase::Suspended);
    assert_eq!(reasons(&plan), ["Suspended"]);
    apply(&mut job, &plan);

    let scaled_down = Observed {
        replicas: Some(0),
        pod: PodHealth::Absent,
        runtime: None,
        ..running(70, 4)
    };
    let plan = decide(&job, &scaled_down);
    assert_eq!(
        (plan.action.clone(), plan.status.phase),
        (Action::None, Phase::Suspended)
    );
    assert!(plan.events.is_empty());

    job.spec.state = DesiredState::Running;
    let plan = decide(&job, &scaled_down);
    assert_eq!(
        plan.action,
        Action::Deploy(Restore::Savepoint(savepoint(5).path))
    );
    assert_eq!(reasons(&plan), ["Resuming"]);
}

#[test]
fn a_failed_job_recovers_from_the_latest_checkpoint_with_backoff_and_a_budget() {
    let mut job = example_job();
    job.spec.restart_policy.attempts = 2;
    let mut job = deployed(job);
    // Failure seen: wait 10 s.
    let plan = decide(&job, &crashing(100, 4));
    assert_eq!(plan.action, Action::None);
    assert_eq!(plan.status.phase, Phase::Recovering);
    assert_eq!(plan.requeue, std::time::Duration::from_secs(10));
    assert_eq!(reasons(&plan), ["JobFailed"]);
    assert!(plan.events[0].note.contains("attempt 1 of 2"));
    apply(&mut job, &plan);
    assert_eq!(decide(&job, &crashing(105, 4)).action, Action::None);
    // After the backoff: redeploy from the latest checkpoint.
    let plan = decide(&job, &crashing(110, 4));
    assert_eq!(plan.action, Action::Deploy(Restore::LatestCheckpoint));
    assert_eq!(plan.status.restarts, 1);
    assert_eq!(reasons(&plan), ["Recovering"]);
    assert!(plan.events[0].note.contains("checkpoint 4"));
    apply(&mut job, &plan);
    // Fails again: the backoff doubles.
    let plan = decide(&job, &crashing(120, 4));
    assert_eq!(plan.requeue, std::time::Duration::from_secs(20));
    apply(&mut job, &plan);
    let plan = decide(&job, &crashing(140, 4));
    assert_eq!(plan.action, Action::Deploy(Restore::LatestCheckpoint));
    apply(&mut job, &plan);
    // Budget spent: Failed, once.
    let plan = decide(&job, &crashing(150, 4));
    assert_eq!(plan.action, Action::None);
    assert_eq!(plan.status.phase, Phase::Failed);
    assert_eq!(reasons(&plan), ["RestartBudgetExhausted"]);
    apply(&mut job, &plan);
    assert!(decide(&job, &crashing(160, 4)).events.is_empty());

    // A spec change cannot be rolled out by savepoint while the job is
    // down: said once, not at every reconcile.
    change_parallelism(&mut job, 4);
    let plan = decide(&job, &crashing(170, 4));
    assert_eq!(reasons(&plan), ["UpgradeWaiting"]);
    assert!(plan
        .status
        .error
        .as_deref()
        .unwrap()
        .contains("the upgrade waits"));
    apply(&mut job, &plan);
    assert!(decide(&job, &crashing(180, 4)).events.is_empty());

    // A restart asked for starts with the whole budget again.
    job.spec.upgrade_mode = UpgradeMode::LastState;
    job.spec.restart_nonce = Some(1);
    let plan = decide(&job, &crashing(190, 4));
    assert_eq!(plan.action, Action::Deploy(Restore::LatestCheckpoint));
    assert_eq!(plan.status.restarts, 0);
    apply(&mut job, &plan);
    let plan = decide(&job, &crashing(200, 4));
    assert_eq!(plan.status.phase, Phase::Recovering, "not Failed at once");
    assert!(plan.events[0].note.contains("attempt 1 of 2"));
}

#[test]
fn recovery_refuses_to_start_empty_when_checkpoints_vanished() {
    let mut job = deployed_job();
    let plan = decide(&job, &crashing(100, 4));
    apply(&mut job, &plan);
    let gone = Observed {
        latest_checkpoint: None,
        ..crashing(200, 4)
    };
    let plan = decide(&job, &gone);
    assert_eq!(plan.action, Action::None);
    assert_eq!(reasons(&plan), ["CheckpointsMissing"]);
}

#[test]
fn a_stable_run_restores_the_restart_budget() {
    let mut job = deployed_job();
    let plan = decide(&job, &crashing(100, 4));
    apply(&mut job, &plan);
    let plan = decide(&job, &crashing(110, 4));
    apply(&mut job, &plan);
    assert_eq!(job.status.as_ref().unwrap().restarts, 1);
    // Ten minutes running after the recovery.
    let plan = decide(&job, &running(110 + 600, 9));
    assert_eq!(plan.status.restarts, 0);
    assert_eq!(plan.status.phase, Phase::Running);
    assert_eq!(
        plan.status.last_stable_spec,
        plan.status.last_reconciled_spec
    );
}

#[test]
fn nonces_restart_and_take_savepoints() {
    let mut job = deployed_job();
    job.spec.restart_nonce = Some(1);
    let plan = decide(&job, &running(60, 4));
    assert_eq!(plan.action, Action::Deploy(Restore::LatestCheckpoint));
    assert_eq!(reasons(&plan), ["Restarting"]);
    apply(&mut job, &plan);

    job.spec.savepoint_trigger_nonce = Some(7);
    let plan = decide(&job, &running(90, 5));
    assert_eq!(plan.action, Action::TriggerSavepoint);
    apply(&mut job, &plan);
    let plan = savepoint_taken(&job, &running(95, 5), Ok(savepoint(6)));
    assert_eq!(plan.status.last_savepoint, Some(savepoint(6)));
    apply(&mut job, &plan);
    // Taken once per nonce.
    assert_eq!(decide(&job, &running(100, 5)).action, Action::None);
}

#[test]
fn the_savepoint_history_keeps_the_newest_and_disposes_of_the_rest() {
    let mut job = deployed_job();
    job.spec.savepoints.retained = 3;
    // The pods were started from savepoint 2: it is never deleted.
    let status = job.status.as_mut().unwrap();
    status.deployment.as_mut().unwrap().savepoint_path = Some(savepoint(2).path);
    let mut disposed = Vec::new();
    for id in 1..=7 {
        let plan = savepoint_taken(&job, &running(100, 3), Ok(savepoint(id)));
        disposed.extend(plan.dispose.iter().map(|s| s.id));
        apply(&mut job, &plan);
    }
    let status = job.status.unwrap();
    let kept: Vec<u64> = status.savepoint_history.iter().map(|s| s.id).collect();
    assert_eq!(kept, [5, 6, 7]);
    assert_eq!(disposed, [1, 3, 4]);
    assert_eq!(status.last_savepoint, Some(savepoint(7)));
}

#[test]
fn an_invalid_pod_template_is_reported_and_never_rolled_out() {
    let mut job = deployed_job();
    job.spec.pod_template = Some(serde_json::json!({"spec": {"containers": "streamjob"}}));
    *job.metadata.generation.as_mut().unwrap() += 1;
    let plan = decide(&job, &running(60, 4));
    assert_eq!(plan.action, Action::None);
    assert_eq!(reasons(&plan), ["InvalidSpec"]);
    assert_eq!(plan.events[0].kind, EventType::Warning);
    assert!(plan
        .status
        .error
        .as_ref()
        .unwrap()
        .starts_with("spec.podTemplate.spec.containers: invalid type"));
    assert_eq!(plan.status.deployment.as_ref().unwrap().generation, 1);
    apply(&mut job, &plan);
    // Said once, not at every reconcile.
    assert!(decide(&job, &running(70, 4)).events.is_empty());
}

/// A password written into the pipeline would land in the job's ConfigMap
/// in plain text: the spec is refused with how to reference a Secret, and
/// the deployed one keeps running.
#[test]
fn a_literal_secret_in_the_pipeline_is_refused_with_the_way_out() {
    let mut job = deployed_job();
    let mut sink = streamjob_spec::KafkaSinkSpec {
        bootstrap_servers: "kafka:9092".into(),
        topic: "out".into(),
        ..Default::default()
    };
    sink.properties
        .insert("sasl.password".into(), "hunter2".into());
    job.spec.pipeline.sink = streamjob_spec::SinkSpec {
        kafka: Some(sink.clone()),
        ..Default::default()
    };
    *job.metadata.generation.as_mut().unwrap() += 1;
    let plan = decide(&job, &running(60, 4));
    assert_eq!(plan.action, Action::None);
    assert_eq!(reasons(&plan), ["InvalidSpec"]);
    let error = plan.status.error.clone().unwrap();
    assert!(
        error.starts_with(
            "spec.pipeline.sink.kafka.properties.sasl.password: sasl.password is written in the job, \
             which lands in a ConfigMap in plain text: keep it in a Secret"
        ) && error.contains("write \"${env:SECRET_NAME}\" here"),
        "{error}"
    );
    assert_eq!(plan.status.deployment.as_ref().unwrap().generation, 1);

    // A reference is fine: the runtime resolves it from the pod's environment.
    sink.properties
        .insert("sasl.password".into(), "${env:KAFKA_PASSWORD}".into());
    job.spec.pipeline.sink.kafka = Some(sink);
    let plan = decide(&job, &running(70, 4));
    assert!(plan.status.error.is_none(), "{:?}", plan.status.error);
    assert_ne!(reasons(&plan), ["InvalidSpec"]);
}

#[test]
fn the_operators_own_settings_are_no_upgrade() {
    let mut job = deployed_job();
    job.spec.savepoints.retained = 2;
    job.spec.savepoints.on_delete = true;
    job.spec.restart_policy.attempts = 9;
    job.spec.upgrade_mode = UpgradeMode::LastState;
    job.spec.initial_savepoint_path = Some(savepoint(1).path);
    *job.metadata.generation.as_mut().unwrap() += 1;
    let plan = decide(&job, &running(60, 4));
    assert_eq!(plan.action, Action::None);
    assert!(plan.events.is_empty());
    assert_eq!(plan.status.phase, Phase::Running);
}

/// A rollout recorded before snapshots were kept per namespace (its status
/// has no `storageScope`) recovers from its checkpoints where they are, in
/// the job's folder; its next rollout from a savepoint moves to the
/// namespace's folder, and recoveries stay there.
#[test]
fn a_rollout_from_before_namespace_folders_moves_at_its_next_savepoint() {
    let mut job = deployed_job();
    assert_eq!(
        job.status
            .as_ref()
            .unwrap()
            .deployment
            .as_ref()
            .unwrap()
            .storage_scope,
        StorageScope::Namespace,
        "a first deployment writes to the namespace's folder"
    );
    // As a status written by an older operator reads.
    let mut status = serde_json::to_value(job.status.as_ref().unwrap()).unwrap();
    status["deployment"]
        .as_object_mut()
        .unwrap()
        .remove("storageScope");
    job.status = Some(serde_json::from_value(status).unwrap());
    let scope = |plan: &Plan| plan.status.deployment.as_ref().unwrap().storage_scope;

    let plan = decide(&job, &crashing(100, 4));
    apply(&mut job, &plan);
    let plan = decide(&job, &crashing(110, 4));
    assert_eq!(plan.action, Action::Deploy(Restore::LatestCheckpoint));
    assert_eq!(scope(&plan), StorageScope::Job, "the checkpoints are there");
    apply(&mut job, &plan);
    let plan = decide(&job, &running(140, 5));
    apply(&mut job, &plan);

    change_parallelism(&mut job, 4);
    let plan = decide(&job, &running(200, 6));
    assert_eq!(plan.action, Action::StopWithSavepoint);
    apply(&mut job, &plan);
    let plan = stopped(&job, &running(205, 6), Ok(savepoint(7)));
    apply(&mut job, &plan);
    let stopped_pod = Observed {
        runtime: None,
        pod: PodHealth::Starting,
        ..running(206, 6)
    };
    let plan = decide(&job, &stopped_pod);
    assert_eq!(
        plan.action,
        Action::Deploy(Restore::Savepoint(savepoint(7).path))
    );
    assert_eq!(scope(&plan), StorageScope::Namespace);
    apply(&mut job, &plan);

    let plan = decide(&job, &running(240, 9));
    apply(&mut job, &plan);
    let plan = decide(&job, &crashing(300, 9));
    apply(&mut job, &plan);
    let plan = decide(&job, &crashing(310, 9));
    assert_eq!(plan.action, Action::Deploy(Restore::LatestCheckpoint));
    assert_eq!(scope(&plan), StorageScope::Namespace);
}

/// A job over several pods is as healthy as its least healthy pod: one
/// crash-looping pod fails it (named), one not ready yet keeps it starting.
#[test]
fn the_jobs_health_is_its_least_healthy_pods() {
    use PodHealth::{Absent, Ready, Starting};
    let failing = || PodHealth::Failing {
        reason: "CrashLoopBackOff after 4 restarts".into(),
    };
    let of = |pods: Vec<PodHealth>| {
        PodHealth::of_pods(
            pods.into_iter()
                .enumerate()
                .map(|(i, h)| (format!("counter-{i}"), h))
                .collect(),
        )
    };
    assert_eq!(of(vec![Ready, Ready, Ready]), Ready);
    assert_eq!(of(vec![Ready, Starting, Ready]), Starting);
    assert_eq!(of(vec![Ready, Absent]), Starting);
    assert_eq!(of(vec![Absent, Absent]), Absent);
    assert_eq!(
        of(vec![Ready, Starting, failing()]),
        PodHealth::Failing {
            reason: "pod counter-2: CrashLoopBackOff after 4 restarts".into()
        }
    );
    // One pod: its reason as it stands.
    assert_eq!(of(vec![failing()]), failing());
    assert_eq!(of(vec![Ready]), Ready);
}
