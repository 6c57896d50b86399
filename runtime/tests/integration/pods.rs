//! One job over several `streamjob run` processes on 127.0.0.1, formed
//! through `--peers`: each process runs its share of the workers, records
//! cross between them over the exchange, and together they write exactly
//! what one process writes.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::postgres::PgServer;
use common::wait_until;
use serde_json::Value;

/// A token file of the job's pods (and its control API).
fn token_file(dir: &Path, token: &str) -> PathBuf {
    let path = dir.join(format!("token-{}", token.len()));
    std::fs::write(&path, token).unwrap();
    path
}

const TOKEN: &str = "0123456789abcdef-pods-test-token";

/// Addresses for `pods` pods. The ports are below Linux's ephemeral range
/// (32768 up): a port the OS hands out as free is also one it may give an
/// outgoing connection of another test before the pod binds it.
fn peers(pods: usize) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
    let mut ports = Vec::new();
    while ports.len() < pods {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = 20_000 + (seed.wrapping_add(n.wrapping_mul(7919)) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() && !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Starts pod `index` of a job over `peers`.
fn start_pod(job: &Path, index: usize, peers: &str, token: &Path) -> Child {
    start_pod_command(job, index, peers, token).spawn().unwrap()
}

/// The command of pod `index` of a job over `peers`.
fn start_pod_command(job: &Path, index: usize, peers: &str, token: &Path) -> Command {
    let pods = peers.split(',').count();
    let state = job.parent().unwrap().join(format!("state-{index}"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_streamjob"));
    command
        .arg("run")
        .arg(job)
        // No control API unless a test sets the variable again.
        .env(streamjob_api::flags::CONTROL_ADDRESS_ENV, "off")
        .args(["--pods", &pods.to_string()])
        .args(["--pod-index", &index.to_string(), "--peers", peers])
        .arg("--control-token-file")
        .arg(token)
        .arg("--state-dir")
        .arg(state)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Waits for pods to end, a minute at most (a job whose pods wait for each
/// other forever fails here instead of hanging the tests, showing what
/// every pod said).
fn finish_all(children: Vec<Child>) -> Vec<std::process::Output> {
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    let waits: Vec<_> = children
        .into_iter()
        .map(|child| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
            rx
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut outputs = Vec::new();
    for rx in &waits {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(out) => outputs.push(out),
            Err(_) => {
                for pid in &pids {
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                }
                let said: Vec<String> = waits
                    .iter()
                    .zip(&pids)
                    .map(|(rx, pid)| {
                        let stderr = rx
                            .recv()
                            .map(|out| String::from_utf8_lossy(&out.stderr).into_owned())
                            .unwrap_or_else(|_| "(ended before)".into());
                        format!("process {pid}:\n{stderr}")
                    })
                    .collect();
                panic!("pods still ran after a minute:\n{}", said.join("\n"));
            }
        }
    }
    outputs
}

/// Waits for one pod to end (see `finish_all`).
fn finish(child: Child) -> std::process::Output {
    finish_all(vec![child]).remove(0)
}

/// Every pod's (stdout, stderr), each pod having succeeded.
fn succeeded(outputs: Vec<std::process::Output>) -> Vec<(String, String)> {
    outputs
        .into_iter()
        .enumerate()
        .map(|(index, out)| {
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "pod {index}: {stderr}");
            (String::from_utf8(out.stdout).unwrap(), stderr)
        })
        .collect()
}

/// Asserts that a pod failed, its stderr saying `reason`.
fn assert_failed(out: &std::process::Output, reason: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(reason), "{stderr}");
}

/// Checks the results of every one of `pods` pods (`out.pod-<i>.jsonl` in
/// `dir`) together: each window exactly once, right values, none missing.
fn check_pod_windows(dir: &Path, pods: usize, expected: &common::Windows) {
    let lines: Vec<String> = file_lines(dir, "out", pods)
        .iter()
        .flat_map(|text| text.lines().map(String::from))
        .collect();
    common::check_window_lines(&lines, expected);
}

/// Starts the job over `pods` processes, with the job's token beside it.
fn start_pods(job: &Path, pods: usize) -> Vec<Child> {
    let token = token_file(job.parent().unwrap(), TOKEN);
    let peers = peers(pods);
    (0..pods)
        .map(|index| start_pod(job, index, &peers, &token))
        .collect()
}

/// Runs the job over `pods` processes to its end; each one's stdout.
fn run_pods(job: &Path, pods: usize) -> Vec<String> {
    succeeded(finish_all(start_pods(job, pods)))
        .into_iter()
        .map(|(stdout, _)| stdout)
        .collect()
}

/// Runs the job in one process to its end; its stdout.
fn run_alone(job: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_streamjob"))
        .arg("run")
        .arg(job)
        .args(["--control-address", "off", "--state-dir"])
        .arg(job.parent().unwrap().join("state-alone"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Lines as JSON, without `emit_time` (wall-clock), sorted: which process
/// writes a line, and when, differs between the runs compared.
fn sorted(texts: &[String]) -> Vec<Value> {
    let mut values: Vec<Value> = texts
        .iter()
        .flat_map(|text| text.lines())
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let mut v: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            if let Some(object) = v.as_object_mut() {
                object.remove("emit_time");
            }
            v
        })
        .collect();
    values.sort_by_key(|v| v.to_string());
    values
}

/// The lines of `stem.jsonl` (one process) or of `stem.pod-<i>.jsonl`
/// (every pod's), in `dir`.
fn file_lines(dir: &Path, stem: &str, pods: usize) -> Vec<String> {
    let names: Vec<String> = match pods {
        1 => vec![format!("{stem}.jsonl")],
        _ => (0..pods).map(|i| format!("{stem}.pod-{i}.jsonl")).collect(),
    };
    names
        .iter()
        .map(|name| {
            std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
        })
        .collect()
}

/// Four files of keyed amounts, with malformed lines among them.
fn write_inputs(dir: &Path) {
    let mut x: u64 = 7;
    for file in 0..4 {
        let mut lines = String::new();
        for i in 0..3_000i64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if i % 311 == 17 {
                lines.push_str(&format!("{{\"k\": \"broken-{file}-{i}\", \n"));
                continue;
            }
            let key = format!("k{}", (x >> 33) % 50);
            let ts = i * 3 - ((x >> 20) % 200) as i64;
            lines.push_str(&format!(
                "{{\"k\": \"{key}\", \"t\": {ts}, \"a\": {}}}\n",
                (x >> 40) % 10
            ));
        }
        std::fs::write(dir.join(format!("in-{file}.jsonl")), lines).unwrap();
    }
}

/// A windowed job over files, tumbling and session windows, in one process
/// and over 2 and 3: the same final windows (every key's records meet at
/// the worker that owns the key, wherever they were read) and the same
/// malformed records.
#[test]
fn a_window_job_over_2_and_3_processes_writes_what_one_process_writes() {
    for window in ["{tumbling: {size: 1s}}", "{session: {gap: 400ms}}"] {
        a_window_job_over_processes(window);
    }
}

fn a_window_job_over_processes(window: &str) {
    // Each run in a folder of its own: a file sink appends.
    let outputs = |pods: usize| {
        let dir = tempfile::tempdir().unwrap();
        write_inputs(dir.path());
        let job = dir.path().join("job.yaml");
        std::fs::write(
            &job,
            format!(
                "name: spread\nparallelism: 3\n\
             source: {{file: {{paths: [in-0.jsonl, in-1.jsonl, in-2.jsonl, in-3.jsonl]}}}}\n\
             eventTime: {{field: t}}\nwatermark: {{outOfOrderness: 500ms}}\n\
             key: k\nwindow: {window}\n\
             aggregates: [{{name: n, function: count}}, {{name: s, function: sum, field: a}}, \
             {{name: m, function: max, field: a}}]\n\
             sink: {{file: {{path: out.jsonl}}}}\n\
             sideOutputs: {{malformed: {{file: {{path: bad.jsonl}}}}}}\n"
            ),
        )
        .unwrap();
        match pods {
            1 => drop(run_alone(&job)),
            _ => drop(run_pods(&job, pods)),
        }
        (
            sorted(&file_lines(dir.path(), "out", pods)),
            sorted(&file_lines(dir.path(), "bad", pods)),
        )
    };
    let alone = outputs(1);
    // 4 files × 3,000 lines, every 311th broken: 10 per file.
    assert_eq!(alone.1.len(), 40);
    let total: u64 = alone.0.iter().map(|v| v["n"].as_u64().unwrap()).sum();
    assert_eq!(total, 4 * 3_000 - 40);
    for pods in [2, 3] {
        assert!(
            outputs(pods) == alone,
            "{window}: {pods} pods wrote other output"
        );
    }
}

/// Generated events and a select job: the same output over 3 processes as
/// in one (here to stdout, which each process writes its share of).
#[test]
fn generated_and_select_jobs_over_3_processes_write_what_one_process_writes() {
    let dir = tempfile::tempdir().unwrap();
    let generated = dir.path().join("generated.yaml");
    std::fs::write(
        &generated,
        "name: generated\nparallelism: 4\n\
         source: {generator: {events: 40000, keys: 300, eventsPerMs: 5, disorder: 20ms}}\n\
         watermark: {outOfOrderness: 50ms}\n\
         key: key\nwindow: {sliding: {size: 2s, slide: 1s}}\n\
         aggregates: [{name: n, function: count}, {name: s, function: sum, field: value}]\n\
         sink: {stdout: {}}\n",
    )
    .unwrap();
    let alone = sorted(&[run_alone(&generated)]);
    assert!(alone.len() > 1_000, "{} results", alone.len());
    assert_eq!(sorted(&run_pods(&generated, 3)), alone);

    write_inputs(dir.path());
    let select = dir.path().join("select.yaml");
    std::fs::write(
        &select,
        "name: picked\nparallelism: 3\n\
         source: {file: {paths: [in-0.jsonl, in-1.jsonl, in-2.jsonl, in-3.jsonl]}}\n\
         select: [k, a]\nsink: {stdout: {}}\n",
    )
    .unwrap();
    let alone = sorted(&[run_alone(&select)]);
    assert_eq!(alone.len(), 4 * 3_000 - 40);
    assert_eq!(sorted(&run_pods(&select, 3)), alone);
}

/// One file of keyed amounts in event-time order, `records` long, with
/// records behind the watermark in its last two thirds: some within the
/// allowed lateness of their (already fired) session, some beyond it.
fn write_late_input(dir: &Path, records: i64) {
    let mut lines = String::with_capacity(records as usize * 40);
    let mut x: u64 = 11;
    for i in 0..records {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let behind = match i {
            i if i < records / 3 => 0,
            i if i % 97 == 0 => 560,
            i if i % 89 == 0 => 800,
            _ => 0,
        };
        lines.push_str(&format!(
            "{{\"k\": \"k{}\", \"t\": {}, \"a\": {}}}\n",
            (x >> 33) % 50,
            i * 3 - behind,
            (x >> 40) % 10
        ));
    }
    std::fs::write(dir.join("in.jsonl"), lines).unwrap();
}

/// Session windows with allowed lateness, early results on event time and
/// a late side output: over 2 and 3 processes, the final results and late
/// records one process writes.
///
/// Which records are late depends on the watermark a worker has when it
/// gets them: the minimum over its inputs, where a peer not heard from yet
/// holds it back (as in Flink). The pods start their workers together, and
/// this job reads one file (the other workers have no input: their status
/// settles as they start), with the late records after its first third;
/// the early results, which follow the watermark from the first record on,
/// are only counted.
#[test]
fn lateness_over_2_and_3_processes_is_what_one_process_has() {
    const RECORDS: i64 = 21_000;
    let sessions = |pods: usize| {
        let dir = tempfile::tempdir().unwrap();
        write_late_input(dir.path(), RECORDS);
        let job = dir.path().join("job.yaml");
        std::fs::write(
            &job,
            "name: sessions\nparallelism: 3\nsource: {file: {path: in.jsonl}}\n\
             eventTime: {field: t}\nwatermark: {outOfOrderness: 500ms}\n\
             key: k\nwindow: {session: {gap: 40ms}}\nallowedLateness: 100ms\n\
             trigger: {early: {everyEventTime: 50ms}}\n\
             aggregates: [{name: n, function: count}, {name: s, function: sum, field: a}]\n\
             sink: {file: {path: out.jsonl}}\n\
             sideOutputs: {late: {file: {path: late.jsonl}}}\n",
        )
        .unwrap();
        match pods {
            1 => drop(run_alone(&job)),
            _ => drop(run_pods(&job, pods)),
        }
        let (early, last): (Vec<Value>, Vec<Value>) = sorted(&file_lines(dir.path(), "out", pods))
            .into_iter()
            .partition(|v| v["partial"] == true);
        (
            early.len(),
            last,
            sorted(&file_lines(dir.path(), "late", pods)),
        )
    };
    let (early, last, late) = sessions(1);
    assert!(early > 100, "{early} early results");
    // Every 89th record of the last two thirds, less those also 97th.
    let beyond = (RECORDS / 3..RECORDS)
        .filter(|i| i % 89 == 0 && i % 97 != 0)
        .count();
    assert_eq!(late.len(), beyond, "late records");
    // Sessions fired again with a record within the allowed lateness.
    let updated = last.iter().filter(|v| v["n"].as_u64() > Some(1)).count();
    assert!(updated > 50, "{updated} sessions of more than one record");
    for pods in [2, 3] {
        let (early_over_pods, last_over_pods, late_over_pods) = sessions(pods);
        assert!(
            early_over_pods > 100,
            "{pods} pods: {early_over_pods} early results"
        );
        assert!(last_over_pods == last, "{pods} pods: other final results");
        assert!(late_over_pods == late, "{pods} pods: other late records");
    }
}

/// The order-enrichment example (lookups from changelog files, unmatched
/// orders with their reason) over 2 processes: what one process writes.
#[test]
fn an_enrichment_job_over_2_processes_writes_what_one_process_writes() {
    let enrichment = |pods: usize| {
        let dir = tempfile::tempdir().unwrap();
        let examples = common::repo_root().join("examples");
        std::fs::create_dir(dir.path().join("orders")).unwrap();
        for file in ["orders.jsonl", "users.jsonl", "items.jsonl"] {
            std::fs::copy(
                examples.join("orders").join(file),
                dir.path().join("orders").join(file),
            )
            .unwrap();
        }
        let job = dir.path().join("order-enrichment.yaml");
        let text = std::fs::read_to_string(examples.join("order-enrichment.yaml")).unwrap();
        std::fs::write(&job, format!("{text}parallelism: 3\n")).unwrap();
        let stdout = match pods {
            1 => vec![run_alone(&job)],
            _ => run_pods(&job, pods),
        };
        (
            sorted(&stdout),
            sorted(&file_lines(dir.path(), "orders-unmatched", pods)),
        )
    };
    let alone = enrichment(1);
    assert!(!alone.0.is_empty() && !alone.1.is_empty(), "{alone:?}");
    assert!(enrichment(2) == alone, "2 pods wrote other output");
}

/// A process without the job's token cannot join it: it is refused, says
/// why, and the job still forms with the right pod and runs to its end.
#[test]
fn a_process_without_the_token_cannot_join_the_job() {
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path());
    let job = dir.path().join("job.yaml");
    std::fs::write(
        &job,
        "name: guarded\nparallelism: 2\n\
         source: {file: {paths: [in-0.jsonl, in-1.jsonl]}}\n\
         select: [k]\nsink: {stdout: {}}\n",
    )
    .unwrap();
    let peers = peers(2);
    let right = token_file(dir.path(), TOKEN);
    let wrong = token_file(dir.path(), "a-different-token-of-the-wrong-job");
    let pod0 = start_pod(&job, 0, &peers, &right);
    let stranger = finish(start_pod(&job, 1, &peers, &wrong));
    assert_failed(&stranger, "pod 0 at 127.0.0.1:");
    assert_failed(&stranger, "the connection closed");
    let pod1 = start_pod(&job, 1, &peers, &right);
    let outputs: Vec<String> = succeeded(finish_all(vec![pod0, pod1]))
        .into_iter()
        .map(|(stdout, _)| stdout)
        .collect();
    assert_eq!(sorted(&outputs).len(), 2 * 3_000 - 20);
}

/// Starts an endless job over two pods and lets it run a moment.
fn endless_pods(dir: &Path) -> Vec<Child> {
    let job = dir.join("job.yaml");
    std::fs::write(
        &job,
        "name: endless\nparallelism: 2\n\
         source: {generator: {keys: 100, rate: 20000}}\n\
         key: key\nwindow: {tumbling: {size: 1s}}\n\
         aggregates: [{name: n, function: count}]\nsink: {discard: {}}\n",
    )
    .unwrap();
    let mut pods = start_pods(&job, 2);
    std::thread::sleep(Duration::from_secs(2));
    assert!(pods[1].try_wait().unwrap().is_none(), "pod 1 ended early");
    pods
}

/// A pod killed mid-run fails the others, which say which pod they lost,
/// instead of waiting for it forever.
#[test]
fn losing_a_pod_fails_the_others_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut pods = endless_pods(dir.path());
    pods[1].kill().unwrap();
    pods[1].wait().unwrap();
    assert_failed(&finish(pods.remove(0)), "across pods: exchange with pod 1:");
}

/// A pod that stalls (stopped with SIGSTOP: its connection stays open, and
/// silent) is detected by its heartbeats missing, and fails the others.
#[test]
fn a_stalled_pod_fails_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut pods = endless_pods(dir.path());
    let stalled = pods[1].id().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &stalled])
        .status()
        .unwrap()
        .success());
    let out = finish(pods.remove(0));
    pods[0].kill().unwrap();
    pods[0].wait().unwrap();
    assert_failed(
        &out,
        "across pods: exchange with pod 1: nothing heard from the pod for 10s",
    );
}

/// CPU time process `pid` has used so far, in clock ticks (user + system).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Stops (SIGSTOP) process `pid` for 3 s and returns the CPU ticks
/// `watched` used in the last 1.5 s of it; `look` runs at the end of the
/// stop.
fn stop_for_a_while(pid: u32, watched: u32, look: impl FnOnce()) -> u64 {
    let signal = |name: &str| {
        assert!(Command::new("kill")
            .args([name, &pid.to_string()])
            .status()
            .unwrap()
            .success());
    };
    signal("-STOP");
    std::thread::sleep(Duration::from_millis(1_500));
    let ticks = cpu_ticks(watched);
    std::thread::sleep(Duration::from_millis(1_500));
    let used = cpu_ticks(watched) - ticks;
    look();
    signal("-CONT");
    used
}

/// Back-pressure across pods, with pod 1 stopped (SIGSTOP) for 3 s at a
/// time. Without checkpoints: pod 0's sends to it pile up only to the
/// credit limit, then pod 0 pauses its source, so in the last 1.5 s of the
/// stop it uses almost no CPU (reading on into memory, it would use all of
/// it), and its control API says its worker is blocked on the exchange.
/// With checkpoints every 30 ms, stopped three times: once pod 1 goes
/// on, checkpoints complete again. Both runs' output is exact.
#[test]
fn a_stopped_pod_holds_the_job_back_without_a_deadlock() {
    const TICKS_PER_SECOND: u64 = 100; // USER_HZ on Linux
    for checkpointed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        // Enough that pod 0 cannot read all of its file during one stop.
        let expected = common::write_input(dir.path(), 3 * common::kill_test_records());
        split_input(dir.path());
        let checkpoints = if checkpointed { CHECKPOINTED } else { "" };
        let job = kill_test_job(dir.path(), "{file: {path: out.jsonl}}", checkpoints);
        let checkpoints = dir.path().join("ckpt/killed/checkpoints");
        let (token, peers) = (token_file(dir.path(), TOKEN), peers(2));
        let control = common::free_port().to_string();
        let mut pods: Vec<Child> = (0..2)
            .map(|index| {
                let mut pod = start_pod_command(&job, index, &peers, &token);
                if index == 0 {
                    let address = format!("127.0.0.1:{control}");
                    pod.env(streamjob_api::flags::CONTROL_ADDRESS_ENV, address);
                }
                pod.spawn().unwrap()
            })
            .collect();
        let (pod0, pod1) = (pods[0].id(), pods[1].id());
        if !checkpointed {
            std::thread::sleep(Duration::from_millis(500));
            let look = || {
                let api = format!("127.0.0.1:{control}");
                let status = common::http::http(&api, "GET", "/status", None).1;
                let status: streamjob_api::JobStatus = serde_json::from_str(&status).unwrap();
                let [worker] = status.workers.as_slice() else {
                    panic!("pod 0 runs worker 0 alone: {status:?}");
                };
                assert!(
                    worker.time.blocked_on_exchange > 0.9,
                    "pod 0's worker in the last second of the stop: {worker:?}"
                );
            };
            let used = stop_for_a_while(pod1, pod0, look);
            assert!(
                used * 2 < TICKS_PER_SECOND,
                "pod 0 used {used} ticks of CPU in the 1.5 s it should have waited"
            );
        }
        for round in (0..3).filter(|_| checkpointed) {
            let before = common::checkpoint_ids(&checkpoints, true).last().copied();
            let progressed = wait_until(Duration::from_secs(60), || {
                common::checkpoint_ids(&checkpoints, true).last().copied() > before
            });
            assert!(progressed, "round {round}: no checkpoint completed");
            stop_for_a_while(pod1, pod0, || {});
        }
        assert!(
            pods[0].try_wait().unwrap().is_none(),
            "the job ended: give it more input"
        );
        succeeded(finish_all(pods));
        check_pod_windows(dir.path(), 2, &expected);
    }
}

/// `write_input`'s records as two files, so that both pods read: odd and
/// even lines (each still in order within the out-of-orderness bound).
fn split_input(dir: &Path) {
    let text = std::fs::read_to_string(dir.join("in.jsonl")).unwrap();
    let (mut even, mut odd) = (String::new(), String::new());
    for (i, line) in text.lines().enumerate() {
        let half = if i % 2 == 0 { &mut even } else { &mut odd };
        half.push_str(line);
        half.push('\n');
    }
    std::fs::write(dir.join("in-0.jsonl"), even).unwrap();
    std::fs::write(dir.join("in-1.jsonl"), odd).unwrap();
}

/// Checkpoints every 30 ms, to a folder beside the job.
const CHECKPOINTED: &str = "checkpoints: {interval: 30ms, storage: file://ckpt, retained: 3}\n";

/// The kill tests' job over the split input, writing to `sink`, with
/// `checkpoints` (a line of the job file, or none).
fn kill_test_job(dir: &Path, sink: &str, checkpoints: &str) -> PathBuf {
    let job = dir.join("job.yaml");
    std::fs::write(
        &job,
        format!(
            "name: killed\nparallelism: 2\n\
             source: {{file: {{paths: [in-0.jsonl, in-1.jsonl]}}}}\n\
             eventTime: {{field: t}}\nwatermark: {{outOfOrderness: 500ms}}\n\
             key: k\nwindow: {{tumbling: {{size: 1s}}}}\n\
             aggregates: [{{name: n, function: count}}, {{name: s, function: sum, field: a}}]\n\
             sink: {sink}\n{checkpoints}"
        ),
    )
    .unwrap();
    job
}

/// Runs `job` over 2 processes and kills a random pod (pod 0 included)
/// with `kill -9` shortly after a checkpoint, `common::kills()` times; the
/// other pod must fail at once, and both start again from the latest
/// checkpoint. Then both run to the end. Stops early where the pods finish
/// the input first.
fn kill_either_pod_repeatedly(job: &Path) -> common::Kills {
    let dir = job.parent().unwrap();
    let token = token_file(dir, TOKEN);
    let checkpoints = dir.join("ckpt/killed/checkpoints");
    let start = |restore: bool| -> Vec<Child> {
        let peers = peers(2);
        (0..2)
            .map(|index| {
                let mut pod = start_pod_command(job, index, &peers, &token);
                if restore {
                    pod.arg("--from-latest-checkpoint");
                }
                pod.spawn().unwrap()
            })
            .collect()
    };
    let mut x: u64 = 4242;
    for kill in 0..common::kills() {
        // Any checkpoint started so far, completed or not: pod 0's restore
        // may roll a pending one forward, which is no progress of this round.
        let newest = common::checkpoint_ids(&checkpoints, false).last().copied();
        let mut pods = start(kill > 0);
        let checkpointed = || common::checkpoint_ids(&checkpoints, true).last().copied() > newest;
        let ended =
            |pods: &mut Vec<Child>| pods.iter_mut().all(|p| p.try_wait().unwrap().is_some());
        let progressed = wait_until(Duration::from_secs(60), || {
            checkpointed() || ended(&mut pods)
        });
        assert!(progressed, "round {kill} completed no checkpoint");
        // A quick machine may read the rest of the input before the round's
        // first checkpoint: the pods then end, and must have succeeded.
        if !checkpointed() && ended(&mut pods) {
            succeeded(finish_all(pods));
            return common::Kills::FinishedAfter(kill);
        }
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis((x >> 33) % 100));
        let victim = ((x >> 40) % 2) as usize;
        if pods[victim].try_wait().unwrap().is_some() {
            finish_all(pods);
            return common::Kills::FinishedAfter(kill);
        }
        pods[victim].kill().unwrap();
        pods[victim].wait().unwrap();
        // The other pod notices and fails by itself.
        let survivor = finish(pods.remove(1 - victim));
        assert_failed(&survivor, &format!("exchange with pod {victim}: "));
    }
    succeeded(finish_all(start(true)));
    common::Kills::Done
}

/// A checkpointed job over 2 processes, exactly-once file sink: a random
/// pod (pod 0 included) is killed with `kill -9` shortly after a
/// checkpoint, 20 times; the other pod fails at once, and both start again
/// from the latest checkpoint. At the end every window is in the pods'
/// output exactly once.
#[test]
fn exactly_once_output_across_kills_of_either_pod() {
    common::with_input_that_outlasts_the_kills(|_, records| {
        let dir = tempfile::tempdir().unwrap();
        let expected = common::write_input(dir.path(), records);
        split_input(dir.path());
        let job = kill_test_job(dir.path(), "{file: {path: out.jsonl}}", CHECKPOINTED);
        let kills = kill_either_pod_repeatedly(&job);
        if kills == common::Kills::Done {
            check_pod_windows(dir.path(), 2, &expected);
        }
        kills
    });
}

/// The same with exactly-once PostgreSQL output: pod 0 alone writes the
/// table, one transaction per checkpoint for the whole job, and pod 1
/// relays its workers' rows to it. After 20 kills of either pod, the table
/// holds every window's final row exactly once.
#[test]
fn exactly_once_rows_across_kills_of_either_pod() {
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    // A finished run is final (the table cannot take rows back): the input
    // must outlast the kills, as in the one-process PostgreSQL test.
    let expected = common::write_input(dir.path(), 3 * common::kill_test_records());
    split_input(dir.path());
    let sink = format!(
        "{{postgres: {{url: \"{}\", table: windows, createTable: true}}}}",
        pg.url()
    );
    let job = kill_test_job(dir.path(), &sink, CHECKPOINTED);
    assert_eq!(
        kill_either_pod_repeatedly(&job),
        common::Kills::Done,
        "the job finished before its kills: give it more input"
    );
    pg.check_window_rows(&expected);
}

/// Rescaling across pods: a job over 2 pods is killed after a checkpoint
/// and restored over 3 pods at parallelism 3 (key groups move between
/// workers and pods); every window is in the pods' output exactly once.
#[test]
fn a_checkpoint_of_2_pods_restores_over_3() {
    let dir = tempfile::tempdir().unwrap();
    let expected = common::write_input(dir.path(), 200_000);
    let job = dir.path().join("job.yaml");
    std::fs::write(
        &job,
        "name: rescaled\nparallelism: 2\nsource: {file: {path: in.jsonl}}\n\
         eventTime: {field: t}\nwatermark: {outOfOrderness: 500ms}\n\
         key: k\nwindow: {tumbling: {size: 1s}}\n\
         aggregates: [{name: n, function: count}, {name: s, function: sum, field: a}]\n\
         sink: {file: {path: out.jsonl}}\n\
         checkpoints: {interval: 30ms, storage: file://ckpt}\n",
    )
    .unwrap();
    let checkpoints = dir.path().join("ckpt/rescaled/checkpoints");
    let mut pods = start_pods(&job, 2);
    assert!(
        wait_until(Duration::from_secs(60), || common::checkpoint_ids(
            &checkpoints,
            true
        )
        .len()
            >= 2),
        "no checkpoint completed"
    );
    for pod in &mut pods {
        pod.kill().unwrap();
        pod.wait().unwrap();
    }
    let peers = self::peers(3);
    let token = token_file(dir.path(), TOKEN);
    let restored: Vec<Child> = (0..3)
        .map(|index| {
            let mut pod = start_pod_command(&job, index, &peers, &token);
            pod.args(["--parallelism", "3", "--from-latest-checkpoint"]);
            pod.spawn().unwrap()
        })
        .collect();
    for (index, (_, stderr)) in succeeded(finish_all(restored)).into_iter().enumerate() {
        assert!(stderr.contains("restored from"), "{stderr}");
        assert!(stderr.contains(&format!("(pod {index} of 3)")), "{stderr}");
    }
    check_pod_windows(dir.path(), 3, &expected);
}

/// Exactly-once Kafka output over 2 processes, from a Kafka source of 3
/// partitions (librdkafka's mock cluster, reached by both processes over
/// 127.0.0.1): pod 0 alone writes the output topic, in one transaction per
/// checkpoint, with pod 1's workers' results relayed to it. Every window
/// is in the topic once, each record keyed by its key.
#[test]
fn exactly_once_kafka_output_over_2_processes_is_written_by_pod_0() {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("events", 3, 1).unwrap();
    cluster.create_topic("out", 2, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let expected = common::kafka::produce_events(&bootstrap, "events", 3, 60_000);
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.yaml");
    std::fs::write(
        &job,
        format!(
            "name: kafka-pods\nparallelism: 2\n\
             source: {{kafka: {{bootstrapServers: \"{bootstrap}\", topics: [events], bounded: true}}}}\n\
             eventTime: {{field: t}}\nkey: k\nwindow: {{tumbling: {{size: 1s}}}}\n\
             aggregates: [{{name: n, function: count}}, {{name: s, function: sum, field: a}}]\n\
             sink: {{kafka: {{bootstrapServers: \"{bootstrap}\", topic: out}}}}\n\
             checkpoints: {{interval: 20ms, storage: file://ckpt}}\n"
        ),
    )
    .unwrap();
    run_pods(&job, 2);
    let checkpoints = common::checkpoint_ids(&dir.path().join("ckpt/kafka-pods/checkpoints"), true);
    assert!(!checkpoints.is_empty(), "no checkpoint completed");
    let lines: Vec<String> = common::kafka::read_topic(&bootstrap, "out")
        .into_iter()
        .map(|(key, payload)| {
            let v: Value = serde_json::from_str(&payload).unwrap();
            assert_eq!(key.as_deref(), v["k"].as_str(), "record key of {payload}");
            payload
        })
        .collect();
    common::check_window_lines(&lines, &expected);
}
