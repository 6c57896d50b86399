//! Helpers shared by the integration tests: reading a job's output and
//! checking it against expected windows.

// Each test binary uses some of these.
#![allow(dead_code)]

pub mod kafka;
pub mod nisshi;
pub mod s3;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use streamjob_runtime::RunOptions;

/// Expected final results: (key, window start in ms) → (count, sum).
pub type Windows = BTreeMap<(String, i64), (u64, i64)>;

/// A result's `window_start` in epoch milliseconds.
pub fn window_start(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v["window_start"].as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

/// Checks the final results in `dir/out.jsonl` (key field `k`, aggregates
/// `n` and `s`) against `expected`: each window exactly once, with the right
/// values, none missing.
pub fn check_windows(dir: &Path, expected: &Windows) {
    let text = std::fs::read_to_string(dir.join("out.jsonl")).unwrap();
    let lines: Vec<String> = text.lines().map(String::from).collect();
    check_window_lines(&lines, expected);
}

/// Checks result lines (key field `k`, aggregates `n` and `s`) against
/// `expected`: each final window exactly once, right values, none missing.
pub fn check_window_lines(lines: &[String], expected: &Windows) {
    let mut seen = BTreeSet::new();
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["partial"] != Value::Bool(false) {
            continue;
        }
        let window = (v["k"].as_str().unwrap().to_string(), window_start(&v));
        let got = (v["n"].as_u64().unwrap(), v["s"].as_i64().unwrap());
        assert_eq!(Some(&got), expected.get(&window), "window {window:?}");
        assert!(
            seen.insert(window.clone()),
            "window {window:?} written twice"
        );
    }
    let missing: Vec<_> = expected
        .keys()
        .filter(|w| !seen.contains(*w))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "windows never emitted: {missing:?}");
}

/// The sum of a numeric field over JSON lines.
pub fn sum_field(lines: &[String], field: &str) -> u64 {
    lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()[field]
                .as_u64()
                .unwrap()
        })
        .sum()
}

/// Options for an in-process run in `dir`: relative paths and state there.
pub fn opts(dir: &Path) -> RunOptions {
    RunOptions {
        base_dir: dir.to_path_buf(),
        state_dir: Some(dir.join("state")),
        ..Default::default()
    }
}

/// Completed snapshots (with `_metadata`) in a `checkpoints` or
/// `savepoints` folder.
pub fn completed_checkpoints(folder: &Path) -> usize {
    checkpoint_ids(folder, true).len()
}

/// Ids of the `chk-<id>` folders in `folder` (only those with `_metadata`
/// when `completed`), ascending.
pub fn checkpoint_ids(folder: &Path, completed: bool) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| !completed || e.path().join("_metadata").is_file())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// Polls `check` until it holds or `limit` has passed.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// The records a run read, from the summary line `streamjob run` prints.
pub fn records_in(stderr: &str) -> u64 {
    let at = stderr.find(" records in").expect("a summary line");
    stderr[..at].rsplit(' ').next().unwrap().parse().unwrap()
}

/// `streamjob run JOB ARGS` with the control API off and `env` set.
fn run_command(job: &Path, args: &[&str], env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamjob"));
    cmd.arg("run")
        .arg(job)
        .args(["--control-address", "off"])
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// Starts `streamjob run JOB ARGS` (stdout dropped, stderr piped), for a
/// test that kills it.
pub fn spawn_run(job: &Path, args: &[&str], env: &[(&str, String)]) -> Child {
    run_command(job, args, env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `streamjob run JOB ARGS` to its end: (success, stderr).
pub fn run_to_end(job: &Path, args: &[&str], env: &[(&str, String)]) -> (bool, String) {
    let out = run_command(job, args, env).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
