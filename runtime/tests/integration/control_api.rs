//! The control API of a running `streamjob`: health, readiness, status,
//! metrics, checkpoints, savepoints, and stop-with-savepoint followed by a
//! restore from that savepoint.

use crate::common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::http::{http, http_as, http_with_token};
use common::wait_until;
use serde_json::Value;

/// Waits (up to 10 s) for `/readyz` to answer 200.
fn wait_ready(api: &str) {
    assert!(
        wait_until(Duration::from_secs(10), || http(
            api, "GET", "/readyz", None
        )
        .0 == 200),
        "{api} never became ready"
    );
}

/// `POST /stop {"savepoint": true}`, answered 200; the savepoint `{id, path}`.
fn stop_with_savepoint(api: &str) -> Value {
    let (code, body) = http(api, "POST", "/stop", Some(r#"{"savepoint": true}"#));
    assert_eq!(code, 200, "{body}");
    json(&body)["savepoint"].clone()
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{body:?}: {e}"))
}

/// A job process that is killed if the test ends without waiting for it
/// (a failed assertion must not leave a job running).
struct Job(Child);

impl Job {
    fn wait(&mut self) -> std::process::ExitStatus {
        self.0.wait().unwrap()
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `streamjob run` with the control API on a free port; returns the
/// process and the API's address.
fn start(job: &Path, extra: &[&str]) -> (Job, String, BufReader<std::process::ChildStderr>) {
    let mut child = Job(Command::new(env!("CARGO_BIN_EXE_streamjob"))
        .arg("run")
        .arg(job)
        .args(["--control-address", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap());
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!(
                "the job exited ({:?}) before its control API was up",
                child.0.try_wait()
            );
        }
        if let Some(address) = line
            .trim()
            .strip_prefix("streamjob: control API on http://")
        {
            return (child, address.to_string(), stderr);
        }
    }
}

/// An unbounded, paced generator job with checkpoints.
fn write_job(dir: &Path) -> std::path::PathBuf {
    let job = dir.join("job.yaml");
    std::fs::write(
        &job,
        "name: api\nparallelism: 2\nsource: {generator: {keys: 20, eventsPerMs: 1, rate: 20000}}\nkey: key\n\
         window: {tumbling: {size: 1s}}\naggregates: [{name: n, function: count}]\n\
         sink: {file: {path: out.jsonl}}\n\
         checkpoints: {interval: 100ms, storage: file://checkpoints}\n",
    )
    .unwrap();
    job
}

#[test]
fn control_api_from_health_to_stop_with_savepoint() {
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(dir.path());
    let (mut child, api, mut stderr) = start(&job, &[]);

    std::thread::sleep(Duration::from_millis(300));
    if let Ok(Some(status)) = child.0.try_wait() {
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).unwrap();
        panic!("exited {status}: {rest}");
    }
    assert_eq!(http(&api, "GET", "/healthz", None), (200, "ok".to_string()));
    wait_ready(&api);

    // Status: running, records flowing, a checkpoint completed.
    assert!(wait_until(Duration::from_secs(20), || {
        let status = json(&http(&api, "GET", "/status", None).1);
        status["lastCheckpoint"]["id"].as_u64().is_some() && status["recordsIn"].as_u64() > Some(0)
    }));
    let status = json(&http(&api, "GET", "/status", None).1);
    assert_eq!(status["job"], "api");
    assert_eq!(status["state"], "running");
    // The answer is the shared wire type the operator reads.
    let typed: streamjob_api::JobStatus = serde_json::from_value(status.clone()).unwrap();
    assert_eq!(typed.state, streamjob_api::JobState::Running);
    // Its shape and start, for the dashboard: one process, two workers.
    assert_eq!((typed.parallelism, typed.pod), (2, None));
    let started = typed.started_at.expect("startedAt");
    assert!(started.ends_with('Z') && started.len() >= 20, "{started}");
    assert!(typed.last_checkpoint.is_some_and(|c| c.time.is_some()));
    let checkpoint_path = status["lastCheckpoint"]["path"].as_str().unwrap();
    assert!(
        Path::new(checkpoint_path).join("_metadata").is_file(),
        "{status}"
    );
    assert_eq!(typed.restored_from, None, "a fresh start");

    // Each worker's last second and its generator partition, once both
    // workers have published one.
    assert!(wait_until(Duration::from_secs(10), || {
        json(&http(&api, "GET", "/status", None).1)["workers"]
            .as_array()
            .is_some_and(|w| w.len() == 2)
    }));
    let typed: streamjob_api::JobStatus =
        serde_json::from_str(&http(&api, "GET", "/status", None).1).unwrap();
    for (index, worker) in typed.workers.iter().enumerate() {
        assert_eq!(worker.index, index as u32);
        let t = worker.time;
        let total =
            t.busy + t.idle + t.blocked_on_exchange + t.blocked_on_sink + t.blocked_on_decode;
        assert!((total - 1.0).abs() < 1e-9, "{worker:?}");
        // 20,000 records a second keep a worker mostly waiting for more.
        assert!(t.idle > 0.5, "{worker:?}");
        // Its busy time by stage: each worker windows some of the other's
        // keys.
        let s = worker.stages;
        assert!(
            s.read + s.decode + s.route + s.window <= t.busy + 1e-9,
            "{worker:?}"
        );
        assert!(
            s.read > 0.0 && s.route > 0.0 && s.window > 0.0,
            "{worker:?}"
        );
        let [partition] = worker.partitions.as_slice() else {
            panic!("one generator partition per worker: {worker:?}");
        };
        assert_eq!(partition.state, streamjob_api::PartitionState::Active);
        assert!(partition.records > 0 && partition.watermark.is_some());
        assert_eq!(partition.lag, None, "no Kafka");
    }
    let ids: Vec<_> = typed.workers.iter().map(|w| &w.partitions[0].id).collect();
    assert_ne!(ids[0], ids[1], "{ids:?}");
    // Where the checkpoints' time went.
    let history: Vec<streamjob_api::SnapshotRecord> =
        serde_json::from_str(&http(&api, "GET", "/checkpoints", None).1).unwrap();
    let phases = history[0].phases.expect("phases");
    for phase in [
        phases.alignment_ms,
        phases.sync_ms,
        phases.upload_ms,
        phases.commit_ms,
    ] {
        assert!(phase <= history[0].duration_ms, "{:?}", history[0]);
    }

    let (code, metrics) = http(&api, "GET", "/metrics", None);
    assert_eq!(code, 200);
    for name in [
        "streamjob_records_in_total",
        "streamjob_results_total",
        "streamjob_checkpoints_completed_total",
        "streamjob_last_checkpoint_id",
        "streamjob_last_checkpoint_size_bytes",
        "streamjob_watermark_milliseconds",
        "streamjob_worker_time_seconds_total{worker=\"1\",activity=\"busy\"}",
        "streamjob_worker_time_seconds_total{worker=\"0\",activity=\"idle\"}",
        "streamjob_worker_time_seconds_total{worker=\"0\",activity=\"blocked_on_exchange\"}",
        "streamjob_worker_time_seconds_total{worker=\"0\",activity=\"blocked_on_sink\"}",
        "streamjob_worker_time_seconds_total{worker=\"0\",activity=\"blocked_on_decode\"}",
        &format!(
            "streamjob_partition_watermark_milliseconds{{partition=\"{}\"}}",
            ids[0]
        ),
        "streamjob_last_checkpoint_phase_milliseconds{phase=\"upload\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    let history = json(&http(&api, "GET", "/checkpoints", None).1);
    assert!(!history.as_array().unwrap().is_empty());

    // A savepoint on demand.
    let (code, body) = http(&api, "POST", "/savepoints", None);
    assert_eq!(code, 202, "{body}");
    let id = json(&body)["id"].as_u64().unwrap();
    assert!(wait_until(Duration::from_secs(20), || {
        json(&http(&api, "GET", &format!("/savepoints/{id}"), None).1)["state"] == "completed"
    }));
    let sp = json(&http(&api, "GET", &format!("/savepoints/{id}"), None).1);
    let sp_path = sp["path"].as_str().unwrap().to_string();
    assert!(sp_path.contains(&format!("savepoints/sp-{id}")), "{sp}");
    assert!(Path::new(&sp_path).join("_metadata").is_file());
    // The last checkpoint is never a savepoint, even under a storage folder
    // named `checkpoints`; the history says which is which.
    let status = json(&http(&api, "GET", "/status", None).1);
    let last = status["lastCheckpoint"]["path"].as_str().unwrap();
    assert!(last.contains("/checkpoints/chk-"), "{status}");
    let history = json(&http(&api, "GET", "/checkpoints", None).1);
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "savepoint" && c["id"] == id),
        "{history}"
    );
    let (code, body) = http(&api, "GET", "/savepoints/999999", None);
    assert_eq!(code, 404, "{body}");

    // Stop with a savepoint: answers with its path, exits 0.
    let stop_path = stop_with_savepoint(&api)["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(Path::new(&stop_path).join("_metadata").is_file());
    let status = child.wait();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{rest}");

    // The job resumes from that savepoint, and says so.
    let (mut child, api, _stderr) = start(&job, &["--from-savepoint", &stop_path]);
    wait_ready(&api);
    let status = json(&http(&api, "GET", "/status", None).1);
    assert_eq!(status["restoredFrom"], stop_path.as_str(), "{status}");
    assert!(wait_until(Duration::from_secs(10), || {
        json(&http(&api, "GET", "/status", None).1)["recordsIn"].as_u64() > Some(0)
    }));
    let (code, _) = http(&api, "POST", "/stop", Some(r#"{"savepoint": false}"#));
    assert_eq!(code, 200);
    assert!(child.wait().success());
}

/// A POST must be a JSON object sent as JSON: a form post from a web page
/// (which a browser sends to any origin) or a JSON array stops nothing.
/// Once a stop is under way or done, another one gets 409, never an answer
/// that says the job keeps running.
#[test]
fn posts_must_be_json_objects_and_a_second_stop_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(dir.path());
    // A deployment's process stays up after the job stops, still answering.
    let (_child, api, _stderr) = start(&job, &["--deployment", "d1"]);
    wait_ready(&api);

    let (code, body) = http_as(
        &api,
        "POST",
        "/stop",
        "application/x-www-form-urlencoded",
        "",
    );
    assert_eq!(code, 415, "{body}");
    assert_eq!(
        json(&body)["error"],
        "send Content-Type: application/json (a POST from a web form is refused)"
    );
    let (code, body) = http_as(&api, "POST", "/savepoints", "text/plain", "{}");
    assert_eq!(code, 415, "{body}");
    let (code, body) = http(&api, "POST", "/stop", Some("[]"));
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        json(&body)["error"],
        "expected {\"savepoint\": true|false}: not a JSON object: []"
    );
    let (code, body) = http(&api, "POST", "/savepoints", Some(r#"{"now": true}"#));
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        json(&http(&api, "GET", "/status", None).1)["state"],
        "running"
    );

    let (code, body) = http(&api, "POST", "/stop", Some("{}"));
    assert_eq!(code, 200, "{body}");
    let (code, body) = http(&api, "POST", "/stop", Some(r#"{"savepoint": true}"#));
    assert_eq!(code, 409, "{body}");
    assert!(
        wait_until(Duration::from_secs(20), || {
            json(&http(&api, "GET", "/status", None).1)["state"] == "finished"
        }),
        "the stopped job never finished"
    );
    let (code, body) = http(&api, "POST", "/stop", None);
    assert_eq!(code, 409, "{body}");
    assert_eq!(
        json(&body)["error"],
        "the job is not running: it has finished"
    );
}

/// With `--control-token-file`, requests that change the job need the
/// token; reading stays open for probes and scrapers.
#[test]
fn a_control_token_guards_stop_and_savepoints() {
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(dir.path());
    let token = "k3J9x2mQ7vL0pR5tZ8wB";
    std::fs::write(dir.path().join("token"), format!("{token}\n")).unwrap();
    let token_file = dir.path().join("token");
    let (mut child, api, _stderr) = start(
        &job,
        &["--control-token-file", token_file.to_str().unwrap()],
    );
    wait_ready(&api);

    for (path, body) in [("/stop", "{}"), ("/savepoints", "")] {
        let (code, answer) = http(&api, "POST", path, Some(body));
        assert_eq!(code, 401, "{path}: {answer}");
        assert_eq!(
            json(&answer)["error"],
            "this request changes the job: send Authorization: Bearer <the token of --control-token-file>"
        );
        let (code, _) = http_with_token(&api, "POST", path, "k3J9x2mQ7vL0pR5tZ8wC", body);
        assert_eq!(code, 401, "{path} with another token");
    }
    for path in ["/healthz", "/readyz", "/metrics", "/status", "/checkpoints"] {
        assert_eq!(http(&api, "GET", path, None).0, 200, "{path}");
    }
    assert_eq!(
        json(&http(&api, "GET", "/status", None).1)["state"],
        "running"
    );

    let (code, answer) = http_with_token(&api, "POST", "/savepoints", token, "");
    assert_eq!(code, 202, "{answer}");
    let (code, answer) = http_with_token(&api, "POST", "/stop", token, "{}");
    assert_eq!(code, 200, "{answer}");
    assert!(child.wait().success());
}

/// A token file that is missing or too short to be a secret stops the job
/// before it runs, instead of leaving the API open.
#[test]
fn a_bad_control_token_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(dir.path());
    std::fs::write(dir.path().join("short"), "secret\n").unwrap();
    for (file, expected) in [
        ("short", "is 6 characters long; use at least 16 random ones"),
        ("missing", "cannot read the control token"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_streamjob"))
            .arg("run")
            .arg(&job)
            .args(["--control-address", "127.0.0.1:0", "--control-token-file"])
            .arg(dir.path().join(file))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("streamjob: --control-token-file: ") && stderr.contains(expected),
            "{stderr}"
        );
    }
}

#[test]
fn savepoints_need_checkpoint_storage() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.yaml");
    std::fs::write(
        &job,
        "name: nock\nsource: {generator: {keys: 5, rate: 1000}}\nkey: key\nwindow: {tumbling: {size: 1s}}\n\
         aggregates: [{name: n, function: count}]\nsink: {discard: {}}\n",
    )
    .unwrap();
    let (mut child, api, _stderr) = start(&job, &[]);
    let (code, body) = http(&api, "POST", "/savepoints", None);
    assert_eq!(code, 409);
    assert_eq!(
        json(&body)["error"],
        "the job has no checkpoints.storage; savepoints need one"
    );
    let (code, body) = http(&api, "POST", "/stop", Some(r#"{"savepoint": true}"#));
    assert_eq!(code, 409, "{body}");
    let (code, _) = http(&api, "POST", "/stop", None);
    assert_eq!(code, 200);
    assert!(child.wait().success());
}

/// Reads the job's stderr until a line contains `needle`; returns that line.
fn read_until(stderr: &mut BufReader<std::process::ChildStderr>, needle: &str) -> String {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("no line with {needle:?} in:\n{seen}");
        }
        if line.contains(needle) {
            return line;
        }
        seen.push_str(&line);
    }
}

/// Under a supervisor (`--deployment`), a restarted process never rewinds
/// to the savepoint its deployment started from, and a stopped job's process
/// stays up, answering `finished`, instead of exiting to be started again.
#[test]
fn a_deployment_resumes_from_its_own_checkpoints_and_stays_up_after_stop() {
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(dir.path());
    let (mut child, api, _stderr) = start(&job, &[]);
    wait_ready(&api);
    let savepoint = stop_with_savepoint(&api);
    let savepoint_path = savepoint["path"].as_str().unwrap().to_string();
    assert!(child.wait().success());

    // The deployment's first process starts from the savepoint, checkpoints
    // past it, and is killed.
    let args = ["--from-savepoint", &savepoint_path, "--deployment", "d1"];
    let (child, api, _stderr) = start(&job, &args);
    assert!(wait_until(Duration::from_secs(20), || {
        json(&http(&api, "GET", "/status", None).1)["lastCheckpoint"]["id"].as_u64()
            > savepoint["id"].as_u64()
    }));
    drop(child); // kill -9

    // Started again with the same arguments, it resumes from the newest
    // checkpoint of the deployment, not from the savepoint.
    let (mut child, api, mut stderr) = start(&job, &args);
    wait_ready(&api);
    let stop_path = stop_with_savepoint(&api)["path"]
        .as_str()
        .unwrap()
        .to_string();
    let restored = read_until(&mut stderr, "restored from");
    assert!(restored.contains("/checkpoints/chk-"), "{restored}");
    read_until(&mut stderr, "deployment d1 done");
    // Still up, the control API saying what happened.
    assert!(matches!(child.0.try_wait(), Ok(None)));
    let status = json(&http(&api, "GET", "/status", None).1);
    assert_eq!(status["state"], "finished", "{status}");
    let from = status["restoredFrom"].as_str().unwrap();
    assert!(restored.trim_end().ends_with(from), "{restored} / {status}");
    assert_eq!(
        status["lastSavepoint"]["path"],
        stop_path.as_str(),
        "{status}"
    );
    assert_eq!(http(&api, "GET", "/readyz", None).0, 503);
    child.0.kill().unwrap();
    child.wait();
}

/// Runs a job of `head` (name, parallelism, source) counting `{"k","t"}`
/// records in 10-second windows, under `--deployment` so that its process
/// stays up once the input is read; returns it with its final `/status`.
/// The job, its control API's address and its status once it has read
/// everything.
fn finished_status(dir: &Path, head: &str) -> (Job, String, streamjob_api::JobStatus) {
    let job = dir.join("job.yaml");
    let rest = "key: k\neventTime: {field: t}\nwindow: {tumbling: {size: 10s}}\n\
                aggregates: [{name: n, function: count}]\nsink: {discard: {}}\n\
                checkpoints: {interval: 1s, storage: file://checkpoints}\n";
    std::fs::write(&job, format!("{head}{rest}")).unwrap();
    let (child, api, mut stderr) = start(&job, &["--deployment", "d1"]);
    read_until(&mut stderr, "deployment d1 done");
    let status = serde_json::from_str(&http(&api, "GET", "/status", None).1).unwrap();
    (child, api, status)
}

/// `/status` keeps the last few malformed records with where they were
/// and why, and says where each file partition got to. The job runs under
/// `--deployment` so that its process stays up once the files are read.
#[test]
fn status_lists_the_last_malformed_records_and_each_partition() {
    let dir = tempfile::tempdir().unwrap();
    let mut good = String::new();
    let mut bad = String::new();
    for i in 0..100 {
        good.push_str(&format!("{{\"k\":\"a\",\"t\":{}}}\n", 1_000 * i));
        match i % 10 {
            // Eight malformed lines: 3, 13, …, 73 (line numbers from 1).
            2 if i < 80 => bad.push_str(&format!("{{\"k\":\"b\",\"t\":\"x{i}\"}}\n")),
            _ => bad.push_str(&format!("{{\"k\":\"b\",\"t\":{}}}\n", 1_000 * i)),
        }
    }
    std::fs::write(dir.path().join("good.jsonl"), good).unwrap();
    std::fs::write(dir.path().join("bad.jsonl"), bad).unwrap();
    let (mut child, _, status) = finished_status(
        dir.path(),
        "name: files\nparallelism: 1\nsource: {file: {paths: [good.jsonl, bad.jsonl]}}\n",
    );
    assert_eq!(status.state, streamjob_api::JobState::Finished);
    assert_eq!((status.records_in, status.malformed), (192, 8));
    let locations: Vec<_> = status
        .recent_malformed
        .iter()
        .map(|m| m.location.as_str())
        .collect();
    assert_eq!(
        locations,
        [
            "bad.jsonl:33",
            "bad.jsonl:43",
            "bad.jsonl:53",
            "bad.jsonl:63",
            "bad.jsonl:73"
        ],
        "the newest five, oldest first"
    );
    let last = &status.recent_malformed[4];
    assert!(
        last.error.contains("t") && last.error.contains("x72"),
        "{last:?}"
    );
    let [worker] = status.workers.as_slice() else {
        panic!("{:?}", status.workers);
    };
    // Its stages over the whole run (it published once, at its end): one
    // worker reads, decodes and routes (to itself), and nothing comes from
    // peers.
    let s = worker.stages;
    assert!(
        s.read > 0.0 && s.decode > 0.0 && s.route > 0.0,
        "{worker:?}"
    );
    assert_eq!(s.window, 0.0, "{worker:?}");
    let partitions: Vec<_> = worker
        .partitions
        .iter()
        .map(|p| (p.id.as_str(), p.state, p.records))
        .collect();
    let ended = streamjob_api::PartitionState::Ended;
    assert_eq!(
        partitions,
        [("good.jsonl", ended, 100), ("bad.jsonl", ended, 100)]
    );
    child.0.kill().unwrap();
    child.wait();
}

/// At parallelism 2 one file is read by one worker; the other, with no
/// source of its own, parses parts of its batches, and says so in its
/// decode stage. Only the reader ever waits for parsing. (The run's totals
/// from `/metrics`: `/status` shows the last second only.)
#[test]
fn a_worker_with_no_source_helps_parse_the_readers_batches() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (0..100_000)
        .map(|i| format!("{{\"k\":\"k{}\",\"t\":{}}}\n", i % 50, 10 * i))
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), lines).unwrap();
    let (mut child, api, status) = finished_status(
        dir.path(),
        "name: one-file\nparallelism: 2\nsource: {file: {path: in.jsonl}}\n",
    );
    assert_eq!(status.records_in, 100_000);
    let partitions = status.workers.iter().map(|w| w.partitions.len());
    assert_eq!(partitions.collect::<Vec<_>>(), [1, 0]);
    let metrics = http(&api, "GET", "/metrics", None).1;
    // A counter's total over the run, e.g. `stage_seconds`, `stage="read"`.
    let total = |worker: usize, series: &str, label: &str| -> f64 {
        let name = format!("streamjob_worker_{series}_total{{worker=\"{worker}\",{label}}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name.as_str())?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from:\n{metrics}"))
    };
    let stage = |worker, stage| total(worker, "stage_seconds", &format!("stage=\"{stage}\""));
    for name in ["read", "decode", "route"] {
        assert!(stage(0, name) > 0.0, "reader's {name}:\n{metrics}");
    }
    assert_eq!(
        (stage(1, "read"), stage(1, "route")),
        (0.0, 0.0),
        "{metrics}"
    );
    assert!(
        stage(1, "decode") > 0.0,
        "the helper parsed nothing:\n{metrics}"
    );
    let blocked = total(1, "time_seconds", "activity=\"blocked_on_decode\"");
    assert_eq!(blocked, 0.0, "{metrics}");
    child.0.kill().unwrap();
    child.wait();
}
