//! `streamjob`: run a job, run the demo, or run the benchmark.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod bench;
mod demo;
mod logging;

use clap::{Parser, Subcommand};
use streamjob_api::flags;
use streamjob_runtime::control::{serve, ControlToken, JobControl, JobState};

use bench::{bench, BenchBroker, BenchConfig, BenchWindow, KafkaBench};
use streamjob_runtime::{run_with_restarts, JobSpec, Pods, RestoreFrom, RunOptions, RunSummary};

#[derive(Parser)]
#[command(
    name = "streamjob",
    version,
    about = "Keyed event-time windowed stream jobs, declared in YAML"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job until its input ends (or the process is stopped).
    Run {
        /// The job file (YAML).
        job: PathBuf,
        /// Number of workers; overrides the job's `parallelism`.
        #[arg(long, env = flags::PARALLELISM_ENV)]
        parallelism: Option<u32>,
        /// Folder for RocksDB state; overrides the job's `state.dir`.
        #[arg(long, env = flags::STATE_DIR_ENV)]
        state_dir: Option<PathBuf>,
        /// Start from a checkpoint or savepoint: a folder (relative to the
        /// working directory) or its `file://` / `s3://` URI.
        #[arg(
            long,
            env = flags::FROM_SAVEPOINT_ENV,
            conflicts_with = "from_latest_checkpoint"
        )]
        from_savepoint: Option<PathBuf>,
        /// Start from the newest completed checkpoint in the job's
        /// checkpoint storage.
        #[arg(long, env = flags::FROM_LATEST_CHECKPOINT_ENV)]
        from_latest_checkpoint: bool,
        /// Restore a snapshot whose window state does not fit the job (other
        /// window or aggregates): drop that state, keep the source positions.
        #[arg(long, env = flags::ALLOW_NON_RESTORED_STATE_ENV)]
        allow_non_restored_state: bool,
        /// Where the control API listens (`off` for none); port 0 picks a
        /// free port.
        #[arg(
            long,
            env = flags::CONTROL_ADDRESS_ENV,
            default_value = "127.0.0.1:8081"
        )]
        control_address: String,
        /// A file holding the token (16 characters or more) that requests
        /// changing the job (`POST /savepoints`, `POST /stop`) must present
        /// as `Authorization: Bearer <token>`. Without one, anyone who can
        /// reach the address can stop the job.
        #[arg(long, env = flags::CONTROL_TOKEN_FILE_ENV)]
        control_token_file: Option<PathBuf>,
        /// The deployment this process belongs to, for a supervisor that
        /// restarts processes (the operator sets one per rollout). A later
        /// process of the same deployment resumes from the newest snapshot
        /// the deployment completed instead of starting over from
        /// `--from-savepoint`; and once the job stops or finishes, the
        /// process stays up (control API answering, state `finished`)
        /// instead of exiting, so a pod's restart policy does not start the
        /// job again. A failed job still exits non-zero.
        #[arg(long, env = flags::DEPLOYMENT_ENV, value_parser = deployment_name)]
        deployment: Option<String>,
        /// Run the job over this many processes (pods), each running its
        /// share of the `parallelism` workers; records for another pod's
        /// workers go over one connection per pair of pods. Needs
        /// --pod-index, --peers and --control-token-file (the pods prove to
        /// each other that they hold the token).
        #[arg(long, env = flags::PODS_ENV, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        pods: u32,
        /// This process's pod: 0 to --pods − 1.
        #[arg(long, env = flags::POD_INDEX_ENV, default_value_t = 0)]
        pod_index: u32,
        /// Every pod's address for the exchange, HOST:PORT, comma-separated,
        /// pod 0 first. This process listens on its own.
        #[arg(long, env = flags::PEERS_ENV, value_delimiter = ',', value_name = "HOST:PORT,...")]
        peers: Vec<String>,
    },
    /// Run the visit-counter scenario end to end, with no set-up.
    Demo {
        /// Folder for the demo's input, output and state (default: a new
        /// temporary folder).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Then keep the visit counter running on a stream of new visits,
        /// with its dashboard, until Ctrl-C.
        #[arg(long)]
        ui: bool,
        /// Where the dashboard listens with --ui (a busy port: a free one).
        #[arg(
            long,
            default_value = "127.0.0.1:8081",
            value_name = "HOST:PORT",
            requires = "ui"
        )]
        ui_address: String,
    },
    /// Measure throughput: generated events, keyed windowed COUNT, results
    /// discarded. Prints `events_per_second=N` last.
    Bench {
        #[arg(long, default_value_t = 20_000_000)]
        events: u64,
        #[arg(long, default_value_t = 10_000)]
        keys: u64,
        #[arg(long, default_value_t = 10)]
        events_per_ms: u32,
        #[arg(long, default_value_t = 1)]
        parallelism: u32,
        #[arg(long, value_enum, default_value_t = BenchWindow::Tumbling)]
        window: BenchWindow,
        /// Take checkpoints at this interval (e.g. 10s) to a local folder.
        #[arg(long)]
        checkpoint_interval: Option<streamjob_runtime::spec::Duration>,
        /// Then restore from the latest checkpoint and report the time to
        /// recover (needs --checkpoint-interval).
        #[arg(long, requires = "checkpoint_interval")]
        recover: bool,
        /// End to end through Kafka with exactly-once output (librdkafka's
        /// in-process mock cluster): events are produced to a topic first
        /// (untimed), results go to a topic in transactions; tumbling
        /// windows, checkpoints every --checkpoint-interval (default 10s).
        #[arg(long, conflicts_with_all = ["recover", "window"])]
        kafka: bool,
        /// With --kafka: use the broker at this address (host:port), in its
        /// own process, instead of the in-process mock cluster.
        #[arg(long, requires = "kafka", value_name = "HOST:PORT")]
        kafka_broker: Option<String>,
        /// With --kafka: a librdkafka setting for the job's transactional
        /// producer (e.g. compression.type=lz4); repeatable.
        #[arg(long, requires = "kafka", value_name = "KEY=VALUE", value_parser = key_value)]
        sink_property: Vec<(String, String)>,
    },
}

/// A `KEY=VALUE` flag's value.
fn key_value(flag: &str) -> Result<(String, String), String> {
    match flag.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{flag:?} is not KEY=VALUE")),
    }
}

fn main() -> ExitCode {
    logging::init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run {
            job,
            parallelism,
            state_dir,
            from_savepoint,
            from_latest_checkpoint,
            allow_non_restored_state,
            control_address,
            control_token_file,
            deployment,
            pods,
            pod_index,
            peers,
        } => {
            let restore = match (from_savepoint, from_latest_checkpoint) {
                // A path on the command line is relative to where the
                // command runs (a URI is left as it is).
                (Some(path), _) if !path.to_string_lossy().contains("://") => {
                    match std::path::absolute(&path) {
                        Ok(path) => Some(RestoreFrom::Path(path)),
                        Err(e) => {
                            eprintln!("streamjob: --from-savepoint {}: {e}", path.display());
                            return ExitCode::from(2);
                        }
                    }
                }
                (Some(uri), _) => Some(RestoreFrom::Path(uri)),
                (None, true) => Some(RestoreFrom::LatestCheckpoint),
                (None, false) => None,
            };
            let restore = restore.map(|from| (from, allow_non_restored_state));
            // A job told to guard its API never runs with it open.
            let token = match control_token_file.as_deref().map(ControlToken::from_file) {
                None => None,
                Some(Ok(token)) => Some(token),
                Some(Err(e)) => {
                    eprintln!("streamjob: --control-token-file: {e}");
                    return ExitCode::from(2);
                }
            };
            let pods = match placement(pods, pod_index, peers, token.clone()) {
                Ok(pods) => pods,
                Err(e) => {
                    eprintln!("streamjob: {e}");
                    return ExitCode::from(2);
                }
            };
            run_job(
                &job,
                parallelism,
                state_dir,
                restore,
                Some((&control_address, token)),
                deployment,
                pods,
            )
        }
        Command::Demo {
            dir,
            ui,
            ui_address,
        } => demo::demo(dir, ui.then_some(ui_address.as_str())),
        Command::Bench {
            events,
            keys,
            events_per_ms,
            parallelism,
            window,
            checkpoint_interval,
            recover,
            kafka,
            kafka_broker,
            sink_property,
        } => bench(
            BenchConfig {
                events,
                keys,
                events_per_ms,
                parallelism,
                window,
                state_dir: std::env::temp_dir()
                    .join(format!("streamjob-bench-{}", std::process::id())),
                checkpoint_interval,
            },
            recover,
            kafka.then_some(KafkaBench {
                broker: match kafka_broker {
                    Some(bootstrap) => BenchBroker::External(bootstrap),
                    None => BenchBroker::InProcess,
                },
                sink_properties: sink_property.into_iter().collect(),
            }),
        ),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("streamjob: {message}");
            ExitCode::FAILURE
        }
    }
}

fn load_job(path: &Path, parallelism: Option<u32>) -> Result<JobSpec, String> {
    let mut spec = JobSpec::from_file(path).map_err(|e| {
        let lines: Vec<String> = e.to_string().lines().map(|l| format!("  {l}")).collect();
        format!(
            "{} is not a valid job:\n{}",
            path.display(),
            lines.join("\n")
        )
    })?;
    if let Some(p) = parallelism {
        spec.parallelism = p;
        spec.validate()
            .map_err(|e| format!("--parallelism {p}: {e}"))?;
    }
    Ok(spec)
}

fn summary_line(spec: &JobSpec, s: &RunSummary) -> String {
    let mut line = format!(
        "job {} finished in {:.2}s: {} records in, {} results out, {} late, {} malformed",
        spec.name,
        s.elapsed.as_secs_f64(),
        s.records_in,
        s.results,
        s.late,
        s.malformed
    );
    if !spec.enrich.is_empty() {
        line.push_str(&format!(", {} unmatched", s.unmatched));
    }
    if spec.checkpoints.is_some() {
        line.push_str(&format!(", {} checkpoints", s.checkpoints));
    }
    if s.restarts > 0 {
        line.push_str(&format!(", {} restarts", s.restarts));
    }
    line
}

/// Where this process stands in a job over several pods (none for one).
fn placement(
    pods: u32,
    index: u32,
    peers: Vec<String>,
    token: Option<ControlToken>,
) -> Result<Option<Pods>, String> {
    if pods == 1 {
        // Said for one pod, they would be ignored: a forgotten --pods.
        return match (peers.len(), index) {
            (0, 0) => Ok(None),
            _ => Err(format!(
                "{} and {} place a job over several pods: give {} N too",
                flags::PEERS,
                flags::POD_INDEX,
                flags::PODS
            )),
        };
    }
    if peers.len() != pods as usize {
        return Err(format!(
            "{} {pods} needs {} with {pods} addresses, pod 0 first; it has {}",
            flags::PODS,
            flags::PEERS,
            peers.len()
        ));
    }
    if index >= pods {
        return Err(format!(
            "{} {index}: the pods are 0 to {} ({} {pods})",
            flags::POD_INDEX,
            pods - 1,
            flags::PODS
        ));
    }
    let Some(token) = token else {
        return Err(format!(
            "{} {pods} needs {}: the job's pods prove to each other that they hold that token",
            flags::PODS,
            flags::CONTROL_TOKEN_FILE
        ));
    };
    Ok(Some(Pods {
        peers,
        index: index as usize,
        token,
    }))
}

fn run_job(
    path: &Path,
    parallelism: Option<u32>,
    state_dir: Option<PathBuf>,
    restore: Option<(RestoreFrom, bool)>,
    control_api: Option<(&str, Option<ControlToken>)>,
    deployment: Option<String>,
    pods: Option<Pods>,
) -> Result<(), String> {
    let spec = load_job(path, parallelism)?;
    let control = JobControl::new(&spec.name, spec.parallelism as usize);
    if let Some(pods) = &pods {
        control.set_pod(pods.index as u32, pods.count() as u32);
    }
    let mut server = None;
    if let Some((address, token)) = control_api.filter(|(a, _)| *a != "off") {
        let guarded = token.is_some();
        // A busy port must not stop a local run: say so and go on.
        match serve(address, control.clone(), token) {
            Ok(s) => {
                eprintln!("streamjob: control API on http://{}", s.address);
                if !guarded && !s.address.ip().is_loopback() {
                    eprintln!(
                        "streamjob: anyone who can reach {} can stop the job or take savepoints: set --control-token-file",
                        s.address
                    );
                }
                server = Some(s);
            }
            Err(e) => eprintln!("streamjob: control API not started on {address}: {e}"),
        }
    }
    let opts = RunOptions {
        base_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        state_dir,
        allow_non_restored_state: restore.as_ref().is_some_and(|r| r.1),
        restore: restore.map(|r| r.0),
        control: Some(control.clone()),
        deployment: deployment.clone(),
        pods,
        ..Default::default()
    };
    let outcome = run_with_restarts(&spec, &opts);
    match &outcome {
        Ok(_) => control.set_state(JobState::Finished, None),
        Err(e) => control.set_state(JobState::Failed, Some(e.to_string())),
    }
    if let Ok(summary) = &outcome {
        if let Some(from) = &summary.restored_from {
            eprintln!("streamjob: job {} restored from {from}", spec.name);
        }
        let mut line = summary_line(&spec, summary);
        if let Some(pods) = &opts.pods {
            // Each pod counts its own workers only.
            line.push_str(&format!(" (pod {} of {})", pods.index, pods.count()));
        }
        eprintln!("streamjob: {line}");
        if let Some(deployment) = deployment {
            // Exiting would have the pod's container started again, and
            // the job with it: stay up, answering `finished`, until
            // terminated.
            eprintln!("streamjob: deployment {deployment} done; waiting to be terminated");
            loop {
                std::thread::park();
            }
        }
    }
    if let Some(server) = server {
        server.shutdown(std::time::Duration::from_secs(5));
    }
    outcome
        .map(drop)
        .map_err(|e| format!("job {} failed: {e}", spec.name))
}

/// `--deployment`: it names a file in the job's checkpoint storage, so it
/// is a name, never a path.
fn deployment_name(name: &str) -> Result<String, String> {
    let valid = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    match valid {
        true => Ok(name.to_string()),
        false => Err(format!(
            "{name:?}: a deployment is a name of letters, digits, '-', '_' and '.', starting with a letter or digit"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_value_flag_splits_at_its_first_equals_sign() {
        assert_eq!(
            key_value("sasl.jaas.config=a=b"),
            Ok(("sasl.jaas.config".into(), "a=b".into()))
        );
        assert_eq!(key_value("linger.ms="), Ok(("linger.ms".into(), "".into())));
        assert!(key_value("=5").unwrap_err().contains("KEY=VALUE"));
        assert!(key_value("linger.ms").unwrap_err().contains("KEY=VALUE"));
    }

    /// Placement flags are checked together, with the flag to fix named.
    #[test]
    fn a_placement_names_what_is_missing() {
        let peers = || vec!["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string()];
        let missing = |r: Result<Option<Pods>, String>| r.expect_err("refused");
        assert!(missing(placement(1, 0, peers(), None)).contains("give --pods N too"));
        assert!(missing(placement(1, 1, vec![], None)).contains("give --pods N too"));
        assert!(missing(placement(3, 0, peers(), None)).contains("needs --peers with 3 addresses"));
        assert!(
            missing(placement(2, 2, peers(), None)).contains("--pod-index 2: the pods are 0 to 1")
        );
        assert!(missing(placement(2, 1, peers(), None)).contains("needs --control-token-file"));
        assert!(matches!(placement(1, 0, vec![], None), Ok(None)));
    }

    /// A deployment names a file in the checkpoint storage: `../` would
    /// reach outside the job's folder.
    #[test]
    fn a_deployment_is_a_name_not_a_path() {
        for bad in ["../../x", "a/b", ".hidden", "", "a b"] {
            let err = Cli::try_parse_from(["streamjob", "run", "job.yaml", "--deployment", bad])
                .err()
                .unwrap_or_else(|| panic!("{bad:?} was accepted"))
                .to_string();
            assert!(
                err.contains("letters, digits, '-', '_' and '.', starting with a letter or digit"),
                "{bad:?}: {err}"
            );
        }
        let cli = Cli::try_parse_from([
            "streamjob",
            "run",
            "job.yaml",
            "--deployment",
            "1764690000000-g3",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Run { deployment: Some(d), .. } if d == "1764690000000-g3"
        ));
    }

    /// The operator builds pod commands from `streamjob_api::flags`: each of
    /// those flags must be one `streamjob run` takes.
    #[test]
    fn the_flags_a_supervisor_passes_are_the_ones_run_takes() {
        let cli = Cli::try_parse_from([
            "streamjob",
            "run",
            "job.yaml",
            flags::CONTROL_ADDRESS,
            "0.0.0.0:8081",
            flags::FROM_SAVEPOINT,
            "s3://bucket/job/savepoints/sp-4",
            flags::ALLOW_NON_RESTORED_STATE,
        ])
        .unwrap();
        let Command::Run {
            control_address,
            from_savepoint,
            allow_non_restored_state,
            ..
        } = cli.command
        else {
            panic!("not a run command");
        };
        assert_eq!(control_address, "0.0.0.0:8081");
        assert_eq!(
            from_savepoint,
            Some(PathBuf::from("s3://bucket/job/savepoints/sp-4"))
        );
        assert!(allow_non_restored_state);

        let cli = Cli::try_parse_from([
            "streamjob",
            "run",
            "job.yaml",
            flags::FROM_LATEST_CHECKPOINT,
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Run {
                from_latest_checkpoint: true,
                ..
            }
        ));
    }
}
