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
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use serde_json::Value;
use streamjob_operator::crd::{Phase, RestoreKind, SnapshotRef, StreamJob};
use streamjob_operator::lifecycle::RuntimeStatus;
use streamjob_operator::resources::{JOB_FILE, TOKEN_DIR, TOKEN_KEY};
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

/// The kubelet's part for the one pod: runs the StatefulSet's container as a
/// process, restarts it when it ends, replaces it when the template changes,
/// and reports the pod's state to the API server.
struct Kubelet {
    dir: PathBuf,
    binary: PathBuf,
    address: Arc<Mutex<Option<String>>>,
    /// The template the pod was made from, and its process.
    pod: Option<(String, Child)>,
    pods_made: u32,
    /// Set by the test: the container is in back-off, not restarted.
    crash_looping: bool,
    /// Every process's stderr file, in start order.
    logs: Vec<PathBuf>,
}

impl Kubelet {
    fn new(dir: &Path, address: Arc<Mutex<Option<String>>>) -> Self {
        Kubelet {
            dir: dir.to_path_buf(),
            binary: streamjob_binary(),
            address,
            pod: None,
            pods_made: 0,
            crash_looping: false,
            logs: Vec::new(),
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
        let template = serde_json::to_string(&spec.template).unwrap();
        if spec.replicas == Some(0) {
            self.delete_pod();
            cluster.set_pod(PodState::Absent).await;
            return;
        }
        if self.pod.as_ref().map(|(t, _)| t) != Some(&template) {
            // A new template: the StatefulSet replaces the pod (and its
            // emptyDir).
            self.delete_pod();
            self.pods_made += 1;
            self.crash_looping = false;
            let process = self.start(cluster, &spec.template).await;
            self.pod = Some((template, process));
        }
        if self.crash_looping {
            cluster.set_pod(PodState::CrashLooping).await;
            return;
        }
        let (_, process) = self.pod.as_mut().unwrap();
        if process.try_wait().unwrap().is_some() {
            // The container ended: restarted in the same pod.
            let template = spec.template.clone();
            let process = self.start(cluster, &template).await;
            self.pod.as_mut().unwrap().1 = process;
        }
        let ready = self.ready();
        cluster
            .set_pod(if ready {
                PodState::Ready
            } else {
                PodState::Starting
            })
            .await;
    }

    fn ready(&self) -> bool {
        let Some(address) = self.address.lock().unwrap().clone() else {
            return false;
        };
        probe::ready(&format!("http://{address}/readyz"))
    }

    /// Starts the container's command: the job file from the ConfigMap, the
    /// pod's emptyDir as the state folder, the control API on a free port.
    async fn start(
        &mut self,
        cluster: &Cluster,
        template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    ) -> Child {
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
        let args: Vec<String> = container
            .args
            .clone()
            .unwrap()
            .into_iter()
            .map(|a| match a.as_str() {
                JOB_FILE => job_file.display().to_string(),
                a if a == mounted_token => token_file.display().to_string(),
                "0.0.0.0:8081" => "127.0.0.1:0".into(),
                _ => a,
            })
            .collect();
        let log = self.dir.join(format!("process-{}.log", self.logs.len()));
        let mut command = Command::new(&self.binary);
        command
            .args(&args)
            .env("STREAMJOB_STATE_DIR", pod_dir.join("state"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for var in container.env.iter().flatten() {
            if let Some(value) = &var.value {
                command.env(&var.name, value);
            }
        }
        let child = command.spawn().unwrap();
        self.logs.push(log.clone());
        *self.address.lock().unwrap() = wait_for_address(&log);
        child
    }

    /// `kill -9` of the container.
    fn kill(&mut self) {
        if let Some((_, process)) = self.pod.as_mut() {
            process.kill().unwrap();
            process.wait().unwrap();
        }
        *self.address.lock().unwrap() = None;
    }

    fn delete_pod(&mut self) {
        if let Some((_, mut process)) = self.pod.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
        *self.address.lock().unwrap() = None;
    }

    fn log(&self, index: usize) -> String {
        let mut text = String::new();
        std::fs::File::open(&self.logs[index])
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.delete_pod();
    }
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

const EVENTS: u64 = 160_000;

/// The StreamJob: generated visits paced at 8000 a second (20 s of input),
/// per-key counts in 1 s windows, written to a file committed with each
/// checkpoint.
fn stream_job(dir: &Path) -> StreamJob {
    let manifest = format!(
        r#"
apiVersion: streamjob.io/v1alpha1
kind: StreamJob
metadata: {{name: counter, namespace: default, finalizers: [streamjob.io/finalizer]}}
spec:
  image: streamjob:v1
  parallelism: 2
  upgradeMode: savepoint
  checkpoints: {{interval: 300ms, storage: "file://{dir}/checkpoints"}}
  restartPolicy: {{backoff: 1s}}
  pipeline:
    source: {{generator: {{events: {EVENTS}, keys: 20, eventsPerMs: 10, rate: 8000}}}}
    key: key
    window: {{tumbling: {{size: 1s}}}}
    aggregates: [{{name: n, function: count}}]
    sink: {{file: {{path: "{dir}/out.jsonl"}}}}
"#,
        dir = dir.display()
    );
    serde_yaml::from_str(&manifest).unwrap()
}

/// The final results of the same job run once, unpaced and uninterrupted.
fn reference_results(dir: &Path) -> Vec<String> {
    let job = dir.join("reference.yaml");
    std::fs::write(
        &job,
        format!(
            "name: counter\nparallelism: 2\n\
             source: {{generator: {{events: {EVENTS}, keys: 20, eventsPerMs: 10}}}}\n\
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
    final_results(&dir.join("reference.jsonl"))
}

/// Final window results (not early ones) without their wall-clock
/// `emit_time`, sorted.
fn final_results(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
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

fn phase(job: &StreamJob) -> Phase {
    job.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

fn last_checkpoint(job: &StreamJob) -> u64 {
    job.status
        .as_ref()
        .and_then(|s| s.last_checkpoint.as_ref())
        .map_or(0, |c| c.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_kill_and_recovery_keep_the_output_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let expected = reference_results(dir.path());
    assert!(expected.len() > 200, "{} windows", expected.len());

    let address = Arc::new(Mutex::new(None));
    let runtime = Arc::new(LocalRuntime {
        http: HttpRuntime::default(),
        address: address.clone(),
    });
    let cluster = Cluster::new(stream_job(dir.path()), runtime).await;
    let mut kubelet = Kubelet::new(dir.path(), address);

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
    run_until(&cluster, &mut kubelet, "the upgrade", |job| {
        let status = job.status.as_ref().unwrap();
        phase(job) == Phase::Running
            && status.deployment.as_ref().unwrap().restore == RestoreKind::Savepoint
    })
    .await;
    assert_eq!(
        cluster.new_reasons().await,
        ["UpgradeStarted", "SavepointCompleted", "Redeploying"]
    );
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
    kubelet.kill();
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
    kubelet.kill();
    kubelet.crash_looping = true;
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
    assert_eq!(final_results(&dir.path().join("out.jsonl")), expected);
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
