//! The operator reads the runtime's storage layout and `/status` the way the
//! runtime writes them.

use streamjob_operator::crd::SnapshotRef;
use streamjob_operator::runtime_api::{dispose_savepoint, find_latest, runtime_status};
use streamjob_storage::SnapshotStore;

#[test]
fn the_latest_snapshot_is_the_newest_complete_one_savepoints_included() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("file://{}", dir.path().display());
    let storage = SnapshotStore::from_uri(&uri, std::path::Path::new("/")).unwrap();
    assert_eq!(find_latest(&storage, "visit-counter").unwrap(), None);
    let job = dir.path().join("visit-counter");
    for (folder, complete) in [
        ("checkpoints/chk-3", true),
        ("checkpoints/chk-4", true),
        ("savepoints/sp-2", true),
        // Incomplete: never restored.
        ("checkpoints/chk-7", false),
    ] {
        std::fs::create_dir_all(job.join(folder)).unwrap();
        let file = if complete {
            "_metadata"
        } else {
            "worker-0.snapshot"
        };
        std::fs::write(job.join(folder).join(file), b"{}").unwrap();
    }
    let latest = find_latest(&storage, "visit-counter").unwrap().unwrap();
    assert_eq!(latest.id, 4);
    assert!(
        latest.path.ends_with("visit-counter/checkpoints/chk-4"),
        "{}",
        latest.path
    );
    // A savepoint after the newest checkpoint is what a restore starts from.
    std::fs::create_dir_all(job.join("savepoints/sp-5")).unwrap();
    std::fs::write(job.join("savepoints/sp-5/_metadata"), b"{}").unwrap();
    let latest = find_latest(&storage, "visit-counter").unwrap().unwrap();
    assert_eq!(latest.id, 5);
    assert!(
        latest.path.ends_with("visit-counter/savepoints/sp-5"),
        "{}",
        latest.path
    );
}

#[test]
fn runtime_status_reads_the_control_apis_answer() {
    let json = serde_json::json!({
        "job": "visit-counter",
        "state": "running",
        "error": null,
        "lastCheckpoint": {"id": 12, "path": "s3://b/visit-counter/checkpoints/chk-12", "time": "2026-11-22T10:00:00Z"},
        "watermark": "2026-11-22T09:59:00Z",
        "recordsIn": 10,
    });
    let status = runtime_status(&json).unwrap();
    assert_eq!(status.state, streamjob_api::JobState::Running);
    let last = status.last_checkpoint.unwrap();
    assert_eq!(
        (last.id, last.time.as_deref()),
        (12, Some("2026-11-22T10:00:00Z"))
    );
    assert_eq!(runtime_status(&serde_json::json!({"job": "x"})), None);
    // A runtime's answer without the counters (an older runtime) still reads.
    let status =
        runtime_status(&serde_json::json!({"state": "failed", "error": "boom"})).expect("a state");
    assert_eq!(status.state, streamjob_api::JobState::Failed);
    assert_eq!(status.last_checkpoint, None);
}

#[test]
fn a_disposed_savepoint_is_gone_and_only_this_jobs_savepoint_folder_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("file://{}", dir.path().display());
    let storage = SnapshotStore::from_uri(&uri, std::path::Path::new("/")).unwrap();
    let folder = dir.path().join("visit-counter/savepoints/sp-4");
    std::fs::create_dir_all(folder.join("worker-0")).unwrap();
    std::fs::write(folder.join("worker-0.snapshot"), b"{}").unwrap();
    std::fs::write(folder.join("_metadata"), b"{}").unwrap();
    let latest = find_latest(&storage, "visit-counter").unwrap().unwrap();

    // A path that is not this job's savepoint 4 here is refused.
    let elsewhere = SnapshotRef {
        path: "s3://other/visit-counter/savepoints/sp-4".into(),
        ..latest.clone()
    };
    let error = dispose_savepoint(&storage, "visit-counter", &elsewhere).unwrap_err();
    assert!(
        error.contains("is not where savepoint 4 of job visit-counter is kept"),
        "{error}"
    );
    assert!(folder.join("_metadata").is_file());

    dispose_savepoint(&storage, "visit-counter", &latest).unwrap();
    assert!(!folder.exists());
    assert_eq!(find_latest(&storage, "visit-counter").unwrap(), None);
}
