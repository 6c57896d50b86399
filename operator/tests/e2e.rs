//! End to end: the operator against the in-memory API server, and the
//! StatefulSet's pod played by real `streamjob` processes on 127.0.0.1 (the
//! `Kubelet` below starts, restarts and kills them as the applied objects
//! say). A spec change goes through stop-with-savepoint and a redeploy from
//! it; a container killed with `kill -9` and restarted resumes from its
//! rollout's checkpoint; a crash-looping pod is redeployed by the operator
//! from the latest checkpoint. The job's output, committed with its
//! checkpoints, must hold every window exactly once.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, PodState};
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec, Secret};
use kube::api::Api;
use serde_json::Value;
use streamjob_operator::crd::{Phase, RestoreKind, SnapshotRef, StreamJob};
use streamjob_operator::lifecycle::RuntimeStatus;
use streamjob_operator::resources::{JOB_FILE, POD_INDEX_LABEL, TOKEN_DIR, TOKEN_KEY};
use streamjob_operator::runtime_api::{Endpoint, HttpRuntime, RuntimeApi};

/// The `streamjob` binary the workspace build puts beside the test binaries.
fn streamjob_binary() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let binary = deps.parent().unwrap().parent().unwrap().join("streamjob");
    assert!(
        binary.is_file(),
        "{} is missing: run the tests of the whole workspace (scripts/test.sh), which builds it",
        binary.display()
    );
    binary
}

/// The runtime's control API at the address the current process listens on
/// (the pod's DNS name means nothing on 127.0.0.1).
struct LocalRuntime {
    http: HttpRuntime,
    address: Arc<Mutex<Option<String>>>,
}

impl LocalRuntime {
    /// The endpoint with the process's address, and the operator's token.
    fn local(&self, endpoint: &Endpoint) -> Endpoint {
        Endpoint {
            url: self.url(),
            token: endpoint.token.clone(),
        }
    }

    fn url(&self) -> String {
        match self.address.lock().unwrap().as_ref() {
            Some(address) => format!("http://{address}"),
            None => "http://127.0.0.1:9".into(), // nothing listens there
        }
    }
}

impl RuntimeApi for LocalRuntime {
    fn status<'a>(&'a self, _url: &'a str) -> BoxFuture<'a, Option<RuntimeStatus>> {
        Box::pin(async move { self.http.status(&self.url()).await })
    }

    fn stop_with_savepoint<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<SnapshotRef, String>> {
        Box::pin(async move {
            let local = self.local(endpoint);
            self.http.stop_with_savepoint(&local, timeout).await
        })
    }

    fn savepoint<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<SnapshotRef, String>> {
        Box::pin(async move {
            let local = self.local(endpoint);
            self.http.savepoint(&local, timeout).await
        })
    }

    fn latest_checkpoint<'a>(
        &'a self,
        uri: &'a str,
        job: &'a str,
    ) -> BoxFuture<'a, Result<Option<SnapshotRef>, String>> {
        self.http.latest_checkpoint(uri, job)
    }

    fn dispose_savepoint<'a>(
        &'a self,
        uri: &'a str,
        job: &'a str,
        savepoint: &'a SnapshotRef,
    ) -> BoxFuture<'a, Result<(), String>> {
        self.http.dispose_savepoint(uri, job, savepoint)
    }
}

/// The StatefulSet controller's and the kubelet's parts for the job's pods:
/// makes the pods the StatefulSet asks for from its template, runs each
/// pod's container as a process, restarts a container that ended, makes a
/// pod again when the operator deleted it (the StatefulSet updates
/// `OnDelete`), and reports the pods' states to the API server. The pods'
/// stable names are played by fixed ports on 127.0.0.1.
struct Kubelet {
    dir: PathBuf,
    binary: PathBuf,
    /// Pod 0's control API address: the operator's endpoint.
    address: Arc<Mutex<Option<String>>>,
    /// Each pod's exchange address (its stable name), by index.
    exchange: Vec<String>,
    /// The pods by index: `None` where there is none.
    pods: Vec<Option<PodProcess>>,
    pods_made: u32,
    /// Every process's stderr file, in start order.
    logs: Vec<PathBuf>,
    /// The index in `logs` of each pod's current process.
    current_log: Vec<usize>,
}

/// A pod as the kubelet runs it.
struct PodProcess {
    /// The template it was made from.
    template: PodTemplateSpec,
    process: Child,
    /// Its control API address, once the process said it.
    address: Option<String>,
    /// Set by the test: the container is in back-off, not restarted.
    crash_looping: bool,
}

impl Kubelet {
    fn new(dir: &Path, address: Arc<Mutex<Option<String>>>) -> Self {
        Kubelet {
            dir: dir.to_path_buf(),
            binary: streamjob_binary(),
            address,
            exchange: exchange_addresses(4),
            pods: Vec::new(),
            pods_made: 0,
            logs: Vec::new(),
            current_log: Vec::new(),
        }
    }

    async fn sync(&mut self, cluster: &Cluster) {
        let set = Api::<StatefulSet>::namespaced(cluster.client.clone(), &cluster.ns)
            .get_opt(&cluster.name)
            .await
            .unwrap();
        let Some(spec) = set.and_then(|s| s.spec) else {
            return;
        };
        let replicas = spec.replicas.unwrap_or(1) as usize;
        let present = cluster.pods().await;
        let count = self.pods.len().max(replicas);
        self.pods.resize_with(count, || None);
        self.current_log.resize(count, usize::MAX);
        for index in 0..count {
            let deleted = !present.contains(&(index as u32));
            if self.pods[index].is_some() && (index >= replicas || deleted) {
                // Scaled away, or deleted by the operator for a new
                // rollout (and made again below, from the template as it
                // stands, with a new emptyDir).
                self.delete_pod(index);
            }
            if index >= replicas {
                cluster.show_pod(index as u32, PodState::Absent, None).await;
                continue;
            }
            if self.pods[index].is_none() {
                self.pods_made += 1;
                let template = spec.template.clone();
                let (process, address) = self.start(cluster, index, &template).await;
                self.pods[index] = Some(PodProcess {
                    template,
                    process,
                    address,
                    crash_looping: false,
                });
            }
            let pod = self.pods[index].as_mut().unwrap();
            let annotations = pod
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.clone());
            if pod.crash_looping {
                cluster
                    .show_pod(index as u32, PodState::CrashLooping, annotations)
                    .await;
                continue;
            }
            if pod.process.try_wait().unwrap().is_some() {
                // The container ended: restarted in the same pod.
                let template = pod.template.clone();
                let (process, address) = self.start(cluster, index, &template).await;
                let pod = self.pods[index].as_mut().unwrap();
                pod.process = process;
                pod.address = address;
            }
            let state = match self.ready(index) {
                true => PodState::Ready,
                false => PodState::Starting,
            };
            cluster.show_pod(index as u32, state, annotations).await;
        }
        let pod0 = self.pods.first().and_then(|p| p.as_ref()?.address.clone());
        *self.address.lock().unwrap() = pod0;
    }

    fn ready(&self, index: usize) -> bool {
        let Some(address) = self.pods[index].as_ref().and_then(|p| p.address.clone()) else {
            return false;
        };
        probe::ready(&format!("http://{address}/readyz"))
    }

    /// Starts pod `index`'s container command: the job file from the
    /// ConfigMap, the pod's emptyDir as the state folder, the control API
    /// on a free port, the pods' stable names as local addresses, the pod's
    /// index from its ordinal label. Returns the process and its control
    /// API address.
    async fn start(
        &mut self,
        cluster: &Cluster,
        index: usize,
        template: &PodTemplateSpec,
    ) -> (Child, Option<String>) {
        let pod_dir = self.dir.join(format!("pod-{}", self.pods_made));
        std::fs::create_dir_all(&pod_dir).unwrap();
        let config = Api::<ConfigMap>::namespaced(cluster.client.clone(), &cluster.ns)
            .get(&format!("{}-job", cluster.name))
            .await
            .unwrap();
        let job_file = pod_dir.join("job.yaml");
        std::fs::write(&job_file, &config.data.unwrap()["job.yaml"]).unwrap();
        // The Secret volume: the token the operator made for the job.
        let secret = Api::<Secret>::namespaced(cluster.client.clone(), &cluster.ns)
            .get(&format!("{}-control", cluster.name))
            .await
            .unwrap();
        let token_file = pod_dir.join("token");
        std::fs::write(&token_file, &secret.data.unwrap()[TOKEN_KEY].0).unwrap();
        let mounted_token = format!("{TOKEN_DIR}/{TOKEN_KEY}");
        let container = &template.spec.as_ref().unwrap().containers[0];
        let mut args: Vec<String> = Vec::new();
        for arg in container.args.clone().unwrap() {
            let local = match arg.as_str() {
                JOB_FILE => job_file.display().to_string(),
                a if a == mounted_token => token_file.display().to_string(),
                "0.0.0.0:8081" => "127.0.0.1:0".into(),
                _ if args.last().map(String::as_str) == Some("--peers") => {
                    let pods = arg.split(',').count();
                    self.exchange[..pods].join(",")
                }
                _ => arg,
            };
            args.push(local);
        }
        let log = self.dir.join(format!("process-{}.log", self.logs.len()));
        let mut command = Command::new(&self.binary);
        command
            .args(&args)
            .env("STREAMJOB_STATE_DIR", pod_dir.join("state"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for var in container.env.iter().flatten() {
            let from_label = var
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .is_some_and(|f| f.field_path.contains(POD_INDEX_LABEL));
            match &var.value {
                Some(value) => command.env(&var.name, value),
                None if from_label => command.env(&var.name, index.to_string()),
                None => panic!("{} comes from nowhere this kubelet knows", var.name),
            };
        }
        let child = command.spawn().unwrap();
        self.current_log[index] = self.logs.len();
        self.logs.push(log.clone());
        (child, wait_for_address(&log))
    }

    /// `kill -9` of pod `index`'s container.
    fn kill(&mut self, index: usize) {
        if let Some(pod) = self.pods[index].as_mut() {
            pod.process.kill().unwrap();
            pod.process.wait().unwrap();
            pod.address = None;
        }
    }

    /// Pod `index`'s container dies and stays in back-off.
    fn crash_loop(&mut self, index: usize) {
        self.kill(index);
        self.pods[index].as_mut().unwrap().crash_looping = true;
    }

    fn delete_pod(&mut self, index: usize) {
        if let Some(mut pod) = self.pods[index].take() {
            let _ = pod.process.kill();
            let _ = pod.process.wait();
        }
    }

    fn log(&self, index: usize) -> String {
        let mut text = String::new();
        std::fs::File::open(&self.logs[index])
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    /// The index in `logs` of the process pod `index` runs now.
    fn log_of_pod(&self, index: usize) -> usize {
        self.current_log[index]
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        for index in 0..self.pods.len() {
            self.delete_pod(index);
        }
    }
}

/// Addresses on 127.0.0.1 for `pods` pods' exchange. The ports are below
/// Linux's ephemeral range (32768 up): a port the OS hands out as free is
/// also one it may give an outgoing connection before the pod binds it.
fn exchange_addresses(pods: usize) -> Vec<String> {
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
    let mut ports: Vec<u16> = Vec::new();
    let mut n: u32 = 0;
    while ports.len() < pods {
        n += 1;
        let port = 20_000 + (seed.wrapping_add(n.wrapping_mul(7919)) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() && !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports.iter().map(|p| format!("127.0.0.1:{p}")).collect()
}

/// The control API address a process prints, once it does.
fn wait_for_address(log: &Path) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find_map(|l| l.strip_prefix("streamjob: control API on http://"))
        {
            return Some(line.trim().to_string());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The readiness probe: a GET answered with 200.
mod probe {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    pub fn ready(url: &str) -> bool {
        let rest = url.strip_prefix("http://").unwrap();
        let (address, path) = rest.split_at(rest.find('/').unwrap());
        let Ok(mut stream) = TcpStream::connect(address) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.starts_with("HTTP/1.1 200")
    }
}

/// The StreamJob's shape: its input and workers.
struct Shape {
    /// Generated events, paced at 8000 a second.
    events: u64,
    parallelism: u32,
    pods: u32,
}

/// One pod, 20 s of input.
const ONE_POD: Shape = Shape {
    events: 160_000,
    parallelism: 2,
    pods: 1,
};

/// The StreamJob: generated visits paced at 8000 a second, per-key counts
/// in 1 s windows, written to a file committed with each checkpoint (one
/// file per pod).
fn stream_job(dir: &Path, shape: &Shape) -> StreamJob {
    let Shape {
        events,
        parallelism,
        pods,
    } = shape;
    let manifest = format!(
        r#"
apiVersion: streamjob.io/v1alpha1
kind: StreamJob
metadata: {{name: counter, namespace: default, finalizers: [streamjob.io/finalizer]}}
spec:
  image: streamjob:v1
  parallelism: {parallelism}
  pods: {pods}
  upgradeMode: savepoint
  checkpoints: {{interval: 300ms, storage: "file://{dir}/checkpoints"}}
  restartPolicy: {{backoff: 1s}}
  pipeline:
    source: {{generator: {{events: {events}, keys: 20, eventsPerMs: 10, rate: 8000}}}}
    key: key
    window: {{tumbling: {{size: 1s}}}}
    aggregates: [{{name: n, function: count}}]
    sink: {{file: {{path: "{dir}/out.jsonl"}}}}
"#,
        dir = dir.display()
    );
    serde_yaml::from_str(&manifest).unwrap()
}

/// The final results of the same job run once, in one process, unpaced and
/// uninterrupted.
fn reference_results(dir: &Path, shape: &Shape) -> Vec<String> {
    let job = dir.join("reference.yaml");
    let Shape {
        events,
        parallelism,
        ..
    } = shape;
    std::fs::write(
        &job,
        format!(
            "name: counter\nparallelism: {parallelism}\n\
             source: {{generator: {{events: {events}, keys: 20, eventsPerMs: 10}}}}\n\
             key: key\nwindow: {{tumbling: {{size: 1s}}}}\naggregates: [{{name: n, function: count}}]\n\
             sink: {{file: {{path: reference.jsonl}}}}\n"
        ),
    )
    .unwrap();
    let output = Command::new(streamjob_binary())
        .args(["run", job.to_str().unwrap(), "--control-address", "off"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    final_results(&[dir.join("reference.jsonl")])
}

/// The job's output files: `out.jsonl` of one pod, `out.pod-<i>.jsonl` of
/// pod `i` of several.
fn outputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_str().unwrap();
            name == "out.jsonl"
                || name
                    .strip_prefix("out.pod-")
                    .and_then(|rest| rest.strip_suffix(".jsonl"))
                    .is_some_and(|index| index.parse::<u32>().is_ok())
        })
        .collect();
    files.sort();
    files
}

/// Final window results (not early ones) of all `files` without their
/// wall-clock `emit_time`, sorted.
fn final_results(files: &[PathBuf]) -> Vec<String> {
    let text: String = files
        .iter()
        .map(|file| std::fs::read_to_string(file).unwrap_or_default())
        .collect();
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["partial"] == Value::Bool(false))
        .map(|mut v| {
            v.as_object_mut().unwrap().remove("emit_time");
            v.to_string()
        })
        .collect();
    lines.sort();
    lines
}

/// Runs the operator and the kubelet, a round every 100 ms, until `done`.
async fn run_until(
    cluster: &Cluster,
    kubelet: &mut Kubelet,
    what: &str,
    mut done: impl FnMut(&StreamJob) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        cluster.set_now(chrono::Utc::now());
        if let Err(e) = cluster.reconcile().await {
            eprintln!("reconcile: {e}");
        }
        kubelet.sync(cluster).await;
        let job = cluster.job().await;
        if done(&job) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited a minute for {what}; status: {:#?}",
            job.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs until a savepoint upgrade has redeployed and runs from its
/// savepoint; its events are the three of a savepoint upgrade.
async fn until_upgraded(cluster: &Cluster, kubelet: &mut Kubelet, what: &str) {
    run_until(cluster, kubelet, what, |job| {
        let status = job.status.as_ref().unwrap();
        phase(job) == Phase::Running
            && status.deployment.as_ref().unwrap().restore == RestoreKind::Savepoint
    })
    .await;
    assert_eq!(
        cluster.new_reasons().await,
        ["UpgradeStarted", "SavepointCompleted", "Redeploying"]
    );
}

fn phase(job: &StreamJob) -> Phase {
    job.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

fn last_checkpoint(job: &StreamJob) -> u64 {
    job.status
        .as_ref()
        .and_then(|s| s.last_checkpoint.as_ref())
        .map_or(0, |c| c.id)
}

/// A folder, the results an uninterrupted run of `shape` gives, the
/// StreamJob of that shape in an API server with the operator, and a
/// kubelet that plays its pods.
async fn set_up(shape: &Shape) -> (tempfile::TempDir, Vec<String>, Cluster, Kubelet) {
    let dir = tempfile::tempdir().unwrap();
    let expected = reference_results(dir.path(), shape);
    let address = Arc::new(Mutex::new(None));
    let runtime = Arc::new(LocalRuntime {
        http: HttpRuntime::default(),
        address: address.clone(),
    });
    let cluster = Cluster::new(stream_job(dir.path(), shape), runtime).await;
    let kubelet = Kubelet::new(dir.path(), address);
    (dir, expected, cluster, kubelet)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_kill_and_recovery_keep_the_output_exactly_once() {
    let (dir, expected, cluster, mut kubelet) = set_up(&ONE_POD).await;
    assert!(expected.len() > 200, "{} windows", expected.len());

    // Deployed, running, checkpointing.
    run_until(&cluster, &mut kubelet, "two checkpoints", |job| {
        phase(job) == Phase::Running && last_checkpoint(job) >= 2
    })
    .await;
    assert_eq!(cluster.new_reasons().await, ["Deploying"]);

    // A new image: stop with a savepoint, redeploy from it.
    cluster
        .edit(|spec| spec.image = "streamjob:v2".into())
        .await;
    until_upgraded(&cluster, &mut kubelet, "the upgrade").await;
    let status = cluster.status().await;
    let savepoint = status.last_savepoint.clone().unwrap();
    assert!(
        savepoint
            .path
            .contains("/checkpoints/default/counter/savepoints/sp-"),
        "{savepoint:?}"
    );
    assert_eq!(
        status.deployment.as_ref().unwrap().savepoint_path.as_ref(),
        Some(&savepoint.path)
    );
    assert_eq!(kubelet.pods_made, 2);
    // The old process stopped with the savepoint and waited to be replaced;
    // the new one started from that savepoint.
    let first = kubelet.log(0);
    assert!(first.contains("done; waiting to be terminated"), "{first}");
    let savepoint_dir = savepoint.path.trim_start_matches("file://");
    wait_for_log(&kubelet, 1, &format!("from={savepoint_dir}")).await;
    let upgraded = kubelet.logs.len() - 1;

    // kill -9 of the container after a checkpoint of the new rollout: the
    // kubelet restarts it with the same arguments (`--from-savepoint`), and
    // it resumes from the rollout's checkpoint instead.
    run_until(
        &cluster,
        &mut kubelet,
        "a checkpoint after the savepoint",
        |job| last_checkpoint(job) > savepoint.id,
    )
    .await;
    kubelet.kill(0);
    run_until(&cluster, &mut kubelet, "the restarted container", |job| {
        phase(job) == Phase::Running
    })
    .await;
    assert_eq!(kubelet.logs.len(), upgraded + 2, "restarted in place");
    wait_for_log(
        &kubelet,
        upgraded + 1,
        "started before: resuming from its newest snapshot",
    )
    .await;
    wait_for_log(&kubelet, upgraded + 1, "/counter/checkpoints/chk-").await;

    // The container dies and stays in back-off: the operator redeploys it
    // from the latest checkpoint after the restart policy's backoff.
    run_until(&cluster, &mut kubelet, "another checkpoint", |job| {
        last_checkpoint(job) > savepoint.id + 1
    })
    .await;
    kubelet.crash_loop(0);
    run_until(&cluster, &mut kubelet, "the recovery", |job| {
        let status = job.status.as_ref().unwrap();
        phase(job) == Phase::Running && status.restarts == 1
    })
    .await;
    assert_eq!(
        cluster.new_reasons().await,
        ["JobFailed", "Recovering"],
        "no events for the container restart, two for the crash loop"
    );
    let status = cluster.status().await;
    assert_eq!(
        status.deployment.unwrap().restore,
        RestoreKind::LatestCheckpoint
    );
    assert_eq!(kubelet.pods_made, 3);
    let recovered = kubelet.logs.len() - 1;
    wait_for_log(&kubelet, recovered, "/counter/checkpoints/chk-").await;

    // To the end of the input: every window exactly once.
    wait_for_log(
        &kubelet,
        kubelet.logs.len() - 1,
        "done; waiting to be terminated",
    )
    .await;
    assert_eq!(outputs(dir.path()), [dir.path().join("out.jsonl")]);
    assert_eq!(final_results(&outputs(dir.path())), expected);
}

/// Two pods, upgraded to three; 30 s of input.
const TWO_PODS: Shape = Shape {
    events: 240_000,
    parallelism: 3,
    pods: 2,
};

/// The same over pods: created over two pods, upgraded to three through a
/// savepoint, the coordinator (pod 0) killed with `kill -9`, which the
/// other pods follow and all three restart in place, then pod 2 left in a
/// crash loop, which the operator recovers by replacing every pod. Every
/// window is in the pods' output files exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_pods_rescales_fails_over_and_recovers_exactly_once() {
    let (dir, expected, cluster, mut kubelet) = set_up(&TWO_PODS).await;
    assert!(expected.len() > 300, "{} windows", expected.len());

    // Two pods form the job and checkpoint.
    run_until(
        &cluster,
        &mut kubelet,
        "two checkpoints over two pods",
        |job| phase(job) == Phase::Running && last_checkpoint(job) >= 2,
    )
    .await;
    assert_eq!(cluster.new_reasons().await, ["Deploying"]);
    // Each pod found its index in its ordinal label (two pods of one index
    // never form a job).
    assert_eq!(kubelet.pods_made, 2);

    // Three pods: stop with a savepoint, all pods replaced at once, the
    // new three restore it (its key groups spread over the new shape).
    cluster.edit(|spec| spec.pods = 3).await;
    until_upgraded(&cluster, &mut kubelet, "the upgrade to three pods").await;
    assert_eq!(kubelet.pods_made, 5);
    for process in 0..2 {
        assert!(
            kubelet
                .log(process)
                .contains("done; waiting to be terminated"),
            "{}",
            kubelet.log(process)
        );
    }
    let savepoint = cluster.status().await.last_savepoint.unwrap();
    let savepoint_dir = savepoint.path.trim_start_matches("file://");
    for pod in 0..3 {
        let log = kubelet.log_of_pod(pod);
        wait_for_log(&kubelet, log, &format!("from={savepoint_dir}")).await;
    }

    // kill -9 of the coordinator after a checkpoint of the new rollout:
    // the other pods fail with it, the kubelet restarts all three in
    // place, and they resume from the rollout's newest checkpoint. The
    // operator has nothing to do.
    run_until(
        &cluster,
        &mut kubelet,
        "a checkpoint over three pods",
        |job| last_checkpoint(job) > savepoint.id,
    )
    .await;
    let before = kubelet.logs.len();
    let killed_at = last_checkpoint(&cluster.job().await);
    kubelet.kill(0);
    run_until(
        &cluster,
        &mut kubelet,
        "a checkpoint after the kill",
        |job| last_checkpoint(job) > killed_at,
    )
    .await;
    assert_eq!(kubelet.pods_made, 5, "restarted in place");
    assert_eq!(kubelet.logs.len(), before + 3, "each pod's container once");
    for pod in 0..3 {
        let log = kubelet.log_of_pod(pod);
        wait_for_log(
            &kubelet,
            log,
            "started before: resuming from its newest snapshot",
        )
        .await;
    }
    assert_eq!(cluster.new_reasons().await, Vec::<String>::new());

    // Pod 2 crash-loops: the operator redeploys every pod from the latest
    // checkpoint after the backoff.
    kubelet.crash_loop(2);
    run_until(&cluster, &mut kubelet, "the recovery", |job| {
        phase(job) == Phase::Running && job.status.as_ref().unwrap().restarts == 1
    })
    .await;
    assert_eq!(cluster.new_reasons().await, ["JobFailed", "Recovering"]);
    let status = cluster.status().await;
    let deployment = status.deployment.unwrap();
    assert_eq!(deployment.restore, RestoreKind::LatestCheckpoint);
    assert_eq!(kubelet.pods_made, 8);
    for pod in 0..3 {
        let log = kubelet.log_of_pod(pod);
        wait_for_log(&kubelet, log, "/counter/checkpoints/chk-").await;
    }

    // To the end of the input: every window exactly once, over the files
    // of all the pods there ever were.
    for pod in 0..3 {
        let log = kubelet.log_of_pod(pod);
        wait_for_log(&kubelet, log, "done; waiting to be terminated").await;
    }
    let files = outputs(dir.path());
    assert_eq!(files.len(), 3, "{files:?}");
    assert_eq!(final_results(&files), expected);
}

/// Waits until process `index`'s log holds `needle`.
async fn wait_for_log(kubelet: &Kubelet, index: usize, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !kubelet.log(index).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in:\n{}",
            kubelet.log(index)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
