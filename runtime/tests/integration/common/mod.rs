//! Helpers shared by the integration tests: reading a job's output and
//! checking it against expected windows.

// Each test binary uses some of these.
#![allow(dead_code)]

pub mod http;
pub mod json;
pub mod kafka;
pub mod nisshi;
pub mod postgres;
pub mod s3;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use streamjob_runtime::RunOptions;

/// The repository's root. Read when the test runs (cargo sets
/// `CARGO_MANIFEST_DIR` then too): a test binary built in another checkout
/// still reads this one's files.
pub fn repo_root() -> PathBuf {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo");
    Path::new(&manifest_dir).join("..")
}

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

/// Keys of `write_input`'s records.
const WRITE_INPUT_KEYS: u64 = 40;

/// In-order-enough input (`in.jsonl`: key `k`, time `t`, amount `a`): times move 1 ms a record, jittered back by up to
/// 200 ms, under a 500 ms out-of-orderness bound, so nothing is late.
pub fn write_input(dir: &Path, records: u64) -> Windows {
    let mut lines = String::new();
    let mut expected = Windows::new();
    let mut x: u64 = 1;
    for i in 0..records {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let key = format!("k{}", (x >> 33) % WRITE_INPUT_KEYS);
        let ts = i as i64 - ((x >> 20) % 200) as i64;
        let amount = ((x >> 40) % 10) as i64;
        lines.push_str(&format!(
            "{{\"k\": \"{key}\", \"t\": {ts}, \"a\": {amount}}}\n"
        ));
        let e = expected
            .entry((key, ts.div_euclid(1000) * 1000))
            .or_default();
        e.0 += 1;
        e.1 += amount;
    }
    std::fs::write(dir.join("in.jsonl"), lines).unwrap();
    expected
}

/// Kills per kill test: 20 in CI; `scripts/soak.sh` sets
/// `STREAMJOB_SOAK_KILLS` for long runs by hand (with input to match).
pub fn kills() -> u32 {
    std::env::var("STREAMJOB_SOAK_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20)
}

/// Input records for the kill tests: enough that the job outlives its kills.
pub fn kill_test_records() -> u64 {
    400_000.max(u64::from(kills()) * 20_000)
}

/// Runs `kill_test` (given its try's number and input size) until one try
/// gets all its kills in. A machine that reads the input before the kills
/// are done gets a fresh try with twice the input, so that every kill lands
/// in a run with input left; at most four tries.
pub fn with_input_that_outlasts_the_kills(mut kill_test: impl FnMut(u32, u64) -> Kills) {
    let mut records = kill_test_records();
    for attempt in 0.. {
        match kill_test(attempt, records) {
            Kills::Done => return,
            Kills::FinishedAfter(kills) => {
                assert!(
                    attempt < 3,
                    "the job outran its kills ({kills} of {}) with {records} records",
                    self::kills()
                );
                records *= 2;
            }
        }
    }
}

/// How a run of a kill test ended.
#[derive(Debug, PartialEq)]
pub enum Kills {
    /// The job was killed `kills()` times, then run to its end.
    Done,
    /// A run reached the end of the input after this many kills: the
    /// machine read the input faster than the kills came.
    FinishedAfter(u32),
}

/// Runs the job and kills it (`kill -9`) `kills()` times at pseudo-random
/// moments (`min + [0, spread)` ms after its start), each run restoring from
/// the latest checkpoint; then runs it to its end. Stops early where a run
/// finishes first: its restarts would replay only the input's tail, faster
/// than any kill, so the caller decides (more input, or enough kills).
pub fn kill_repeatedly(job: &Path, env: &[(&str, String)], (min, spread): (u64, u64)) -> Kills {
    let target = kills();
    let mut x: u64 = 12345;
    let mut restore = false;
    let mut kills = 0;
    let mut restored_kills = 0;
    let mut attempts = 0;
    // Grows while runs die before the job's first checkpoint, until one
    // completes: a machine slower than the delays assume (under load, S3 on
    // moto) gets a longer first run instead of kills that all land before
    // any checkpoint. Back to 1 once runs restore.
    let mut scale = 1;
    while kills < target {
        attempts += 1;
        assert!(
            attempts < target * 10,
            "could not kill the job {target} times"
        );
        let args: &[&str] = if restore {
            &["--from-latest-checkpoint"]
        } else {
            &[]
        };
        let mut child = spawn_run(job, args, env);
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis((min + (x >> 33) % spread) * scale));
        match child.try_wait().unwrap() {
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
                // A restoring run that was still alive had found a checkpoint.
                restored_kills += u32::from(restore);
                if restore {
                    scale = 1;
                }
                restore = true;
            }
            Some(status) => {
                let mut stderr = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
                if !stderr.contains("no completed checkpoint") {
                    assert!(status.success(), "{stderr}");
                    eprintln!("the job finished after {kills} kills");
                    return Kills::FinishedAfter(kills);
                }
                restore = false; // killed before its first checkpoint
                scale = (scale * 2).min(8);
            }
        }
    }
    eprintln!("{restored_kills} of {target} kills hit a run restored from a checkpoint");
    // Most kills must hit a run that resumed from a checkpoint, or the
    // test proves little (checkpoints slower than the kill delays).
    assert!(
        restored_kills * 5 >= target * 3,
        "only {restored_kills} of {target} kills hit a run restored from a checkpoint"
    );
    let (mut ok, mut stderr) = run_to_end(job, &["--from-latest-checkpoint"], env);
    if stderr.contains("no completed checkpoint") {
        // The last run was a fresh start killed before its first checkpoint.
        (ok, stderr) = run_to_end(job, &[], env);
    }
    assert!(ok, "{stderr}");
    Kills::Done
}

/// Kills the job `kills` times, each time 0–150 ms after its run completed
/// a checkpoint of its own (so that every kill hits a run that made
/// progress, however slow the machine), each run restoring from the latest
/// checkpoint; then runs it to its end. Timed kills would not do here: the
/// job is fast and its input small (the mock broker keeps ~5 MB a
/// partition), so most would land before a first checkpoint or after the end.
pub fn kill_after_checkpoints(job: &Path, checkpoints: &Path, kills: u32) {
    let mut x: u64 = 12345;
    for kill in 0..kills {
        let newest = checkpoint_ids(checkpoints, true).last().copied();
        let args: &[&str] = if kill == 0 {
            &[]
        } else {
            &["--from-latest-checkpoint"]
        };
        let mut child = spawn_run(job, args, &[]);
        let progressed = wait_until(std::time::Duration::from_secs(60), || {
            checkpoint_ids(checkpoints, true).last().copied() > newest
        });
        assert!(progressed, "run {kill} completed no checkpoint");
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(std::time::Duration::from_millis((x >> 33) % 150));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job finished after {kill} kills: give it more input"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let (ok, stderr) = run_to_end(job, &["--from-latest-checkpoint"], &[]);
    assert!(ok, "{stderr}");
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
