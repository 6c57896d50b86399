//! One run of a job: finds what to restore, opens the sinks, builds and
//! starts the workers, coordinates checkpoints while they run, and on a
//! bounded input's end commits the last output.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::build::{build_workers, Wiring};
use super::collector::{ask_sink, SinkMsg};
use super::coordinator::{Ack, Coordinator};
use super::exchange::{channel, Exchange, OutputRelay, Peer, PodControl};
use super::restore::{check_fits, find_restore};
use super::sinks::{self, Sinks};
use super::{panic_message, start_thread, JobError, RunOptions, RunSummary};
use crate::checkpoint::{CheckpointStorage, Layout, SnapshotKind};
use crate::connectors::create_splits;
use crate::spec::JobSpec;

/// Runs the job to its end (a bounded source) or until `opts.stop` is set.
pub fn run(spec: &JobSpec, opts: &RunOptions) -> Result<RunSummary, JobError> {
    let started = Instant::now();
    let pod_spec;
    let spec = match &opts.pods {
        Some(pods) if pods.count() > 1 => {
            pod_spec = pods.own_outputs(spec);
            &pod_spec
        }
        _ => spec,
    };
    // Everything below takes the spec's choices as valid.
    spec.validate()?;
    // This pod's index when the job runs over several.
    let pod = opts.pods.as_ref().filter(|p| p.count() > 1);
    if let Some(pods) = pod {
        pods.check().map_err(JobError::Pods)?;
        if let Some(problem) = spec.pods_problem(pods.count() as u32) {
            return Err(JobError::Pods(problem));
        }
    }
    let base = &opts.base_dir;
    let state_root = opts
        .state_dir
        .clone()
        .unwrap_or_else(|| spec.state_dir(base));

    let storage = match &spec.checkpoints {
        Some(c) => Some(CheckpointStorage::from_uri(&c.storage, base)?),
        None => None,
    };
    let layout = Layout::new(&spec.name);
    // Over several pods, a sink only pod 0 writes is opened there alone
    // (opening Kafka's fences every other producer of the job).
    let relays_output = pod.is_some_and(|p| p.index != 0) && sinks::written_by_pod_0(spec);
    let mut two_phase = match relays_output {
        true => None,
        false => sinks::open_two_phase(spec, base).map_err(JobError::Sink)?,
    };
    let parallelism = spec.parallelism as usize;
    let (sink_tx, sink_rx) = crossbeam_channel::unbounded::<SinkMsg>();
    let trigger = Arc::new(AtomicU64::new(0));
    let savepoint = Arc::new(AtomicU64::new(0));
    let abandoned = Arc::new(AtomicU64::new(0));
    let (ack_tx, ack_rx) = crossbeam_channel::unbounded::<Ack>();
    let abort = Arc::new(AtomicBool::new(false));
    let stop = opts.stop_flag();
    let (inboxes, receivers): (Vec<_>, Vec<_>) = (0..parallelism).map(|_| channel()).unzip();
    // Another pod's workers are reached through the exchange, which waits
    // until every pod of the job has connected.
    let connect = || match pod {
        Some(pods) => Exchange::connect(
            pods,
            &spec.name,
            opts.deployment.as_deref().unwrap_or_default(),
            parallelism,
            inboxes.clone(),
            abort.clone(),
            PodControl {
                trigger: trigger.clone(),
                savepoint: savepoint.clone(),
                acks: ack_tx.clone(),
                stop: stop.clone(),
                sink: sink_tx.clone(),
            },
        )
        .map(Some)
        .map_err(JobError::Pods),
        None => Ok(None),
    };
    // The pods agree on the snapshot they start from: pod 0 decides (and
    // rolls a checkpoint forward if its output was committed) before it
    // connects; the others look only once connected, so after that.
    let coordinates = pod.is_none_or(|p| p.index == 0);
    let mut exchange = match coordinates {
        true => None,
        false => connect()?,
    };
    let restore = match &opts.restore {
        None => None,
        Some(from) => find_restore(
            from,
            base,
            storage.as_ref(),
            &layout,
            two_phase.as_deref_mut(),
        )?,
    };
    match &restore {
        Some(r) => tracing::info!(from = %r.path, "job {} starting from a snapshot", spec.name),
        None => tracing::info!("job {} starting with empty state", spec.name),
    }
    // Only the coordinating pod: another pod's cleanup could remove what
    // a checkpoint under way just uploaded.
    if let Some(storage) = storage.as_ref().filter(|_| coordinates) {
        // Not essential to the run: a failure here only leaves the files.
        match storage.remove_unreferenced_shared_files(&layout) {
            Ok(0) => {}
            Ok(n) => tracing::info!(files = n, "removed state files no checkpoint references"),
            Err(e) => tracing::warn!(%e, "could not clean up unreferenced state files"),
        }
    }
    if coordinates && pod.is_some() {
        exchange = connect()?;
    }
    let mut restore_state = true;
    if let Some(r) = &restore {
        restore_state = check_fits(spec, r, opts.allow_non_restored_state)?;
    }

    let local = match &opts.pods {
        Some(pods) => pods.workers_of(pods.index, parallelism),
        None => 0..parallelism,
    };
    let splits = create_splits(spec, base, local.clone()).map_err(JobError::Source)?;
    let commits_output = two_phase.is_some();
    let relay = exchange.as_ref().and_then(Exchange::output_relay);
    let sink_work = match (relays_output, relay) {
        (true, Some(relay)) => SinkWork::Relay(relay),
        _ => SinkWork::Write(Box::new(
            Sinks::open(
                spec,
                base,
                restore.as_ref().map(|r| r.metadata.id),
                two_phase,
            )
            .map_err(JobError::Sink)?,
        )),
    };
    let (keep, keyed) = sinks::output_targets(spec);
    let peers: Vec<Peer> = inboxes
        .iter()
        .enumerate()
        .map(|(worker, inbox)| match &exchange {
            Some(exchange) => exchange.peer(worker, inbox),
            None => Peer::Local(inbox.clone()),
        })
        .collect();
    let receivers: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .filter(|(index, _)| local.contains(index))
        .map(|(_, receiver)| receiver)
        .collect();
    // Every worker is built (state opened and restored, sources positioned)
    // before any thread starts: a failure here leaves nothing running.
    let workers = build_workers(
        &Wiring {
            spec,
            opts,
            state_root: &state_root,
            storage: storage.as_ref(),
            layout: &layout,
            restore: restore.as_ref(),
            restore_state,
            sink: &sink_tx,
            keep,
            keyed,
            trigger: &trigger,
            savepoint: &savepoint,
            abandoned: &abandoned,
            acks: &ack_tx,
            abort: &abort,
            stop: &stop,
            peers: &peers,
        },
        local,
        splits,
        receivers,
    );
    drop((inboxes, peers));
    let mut workers = match workers {
        Ok(workers) => workers,
        Err(e) => {
            let _ = close_exchange(exchange, false);
            return Err(e);
        }
    };
    // A split with nothing to read (more workers than files or partitions)
    // has ended before it starts. Every worker knows which from the outset,
    // so that none waits for them, however the threads and pods are
    // scheduled; over several pods, the pods tell each other as they start
    // together.
    let ended_here: Vec<usize> = workers
        .iter()
        .filter(|w| w.has_nothing_to_read())
        .map(|w| w.index)
        .collect();
    let all_ended = match exchange.as_ref().map(|x| x.start_together(&ended_here)) {
        None => ended_here,
        Some(Ok(all_ended)) => all_ended,
        Some(Err(e)) => {
            drop(workers);
            let _ = close_exchange(exchange, false);
            return Err(JobError::Pods(e));
        }
    };
    for worker in &mut workers {
        for &ended in &all_ended {
            worker.input_has_nothing_to_read(ended);
        }
    }
    drop(ack_tx);
    let sink_thread = start_thread("sink".into(), spec.parallelism, move || match sink_work {
        SinkWork::Write(sinks) => sinks.run(sink_rx),
        SinkWork::Relay(relay) => relay.run(sink_rx),
    })?;
    let mut handles = Vec::with_capacity(workers.len());
    let mut unstarted = workers.into_iter();
    let failed_start = unstarted.find_map(|worker| {
        let name = format!("worker-{}", worker.index);
        match start_thread(name, spec.parallelism, move || worker.run()) {
            Ok(handle) => {
                handles.push(handle);
                None
            }
            Err(e) => Some(e),
        }
    });
    if let Some(e) = failed_start {
        // The workers not started go (their senders to the sink with them).
        drop(unstarted);
        stop_all(&abort, handles, sink_tx, sink_thread, exchange);
        return Err(e);
    }
    let startup = started.elapsed();
    // Every worker has its share of the snapshot: the whole of it need not
    // stay in memory while the job runs.
    let restored_from = restore.map(|r| r.path);

    let mut final_epoch = 0;
    let mut summary = RunSummary {
        startup,
        restored_from,
        ..Default::default()
    };
    if let Some(control) = &opts.control {
        control.set_savepoints_supported(storage.is_some());
        control.set_restored_from(summary.restored_from.clone());
        control.set_state(crate::control::JobState::Running, None);
    }
    let checkpointing = storage.as_ref().zip(spec.checkpoints.as_ref());
    if let (Some(exchange), Some(_), false) = (&exchange, checkpointing, coordinates) {
        // Pod 0 coordinates: this pod's acknowledgements go there.
        forward_acks(&handles, &ack_rx, exchange, &abort);
        final_epoch = trigger.load(Ordering::Acquire) + 1;
    }
    if let (Some((storage, config)), true) = (checkpointing, coordinates) {
        let first_id = storage.last_id(&layout)? + 1;
        let coordinator = Coordinator {
            spec,
            control: opts.control.as_deref(),
            savepoint: &savepoint,
            sink: &sink_tx,
            storage,
            layout: &layout,
            interval: config.interval.as_std(),
            min_pause: config.min_pause.as_std(),
            tolerable_failures: config.tolerable_failures,
            timeout: config.timeout.as_std(),
            retained: config.retained as usize,
            next_id: first_id,
            trigger: &trigger,
            abandoned: &abandoned,
            failures: 0,
            exchange: exchange.as_ref(),
        };
        match coordinator.run(&handles, &ack_rx, &abort) {
            Ok((n, next_id)) => {
                summary.checkpoints = n;
                final_epoch = next_id;
            }
            Err(e) => {
                stop_all(&abort, handles, sink_tx, sink_thread, exchange);
                return Err(e);
            }
        }
    }
    let mut first_error = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(report)) => {
                summary.records_in += report.records_in;
                summary.results += report.results;
                summary.late += report.late;
                summary.malformed += report.malformed;
                summary.unmatched += report.unmatched;
                summary.keys_spilled += report.keys_spilled;
                summary.captured.extend(report.captured);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(panic) => {
                first_error.get_or_insert(JobError::Panic(panic_message(&*panic)));
            }
        }
    }
    // The input ended and every worker finished: what was written since the
    // last checkpoint is final too. (A stopped or failed job commits
    // nothing more; a restore produces it again.)
    let stopped = stop.load(Ordering::SeqCst);
    if let (Some(exchange), true) = (&exchange, stopped) {
        exchange.stop();
    }
    if relays_output {
        // What the relay holds goes out ahead of this pod's `Bye`, so pod 0
        // has all of it before its final commit.
        if let Err(e) = ask_sink(&sink_tx, |reply| SinkMsg::Finish {
            checkpoint: final_epoch,
            reply,
        }) {
            first_error.get_or_insert(JobError::Sink(e));
        }
    }
    // With other pods: this pod's workers are done, and the others' may not
    // be. The job's output is complete only once every pod's is.
    if let Err(e) = close_exchange(exchange, first_error.is_none()) {
        first_error.get_or_insert(e);
    }
    if first_error.is_none() && !stopped && commits_output {
        // The final epoch gets an id of its own, reserved like a checkpoint's:
        // the Kafka sink's marker names it, and a later run must not reuse it
        // (a two-phase sink implies checkpoints, so there is a coordinator,
        // which reserves it for every pod).
        let id = final_epoch;
        let reserved = match &storage {
            Some(storage) if coordinates => {
                storage.reserve(&layout.snapshot_dir(SnapshotKind::Checkpoint, id))
            }
            _ => Ok(()),
        };
        if let Err(e) = reserved {
            first_error = Some(e.into());
        } else if let Err(e) = ask_sink(&sink_tx, |reply| SinkMsg::Finish {
            checkpoint: id,
            reply,
        }) {
            first_error = Some(JobError::Sink(e));
        }
    }
    drop(sink_tx);
    let sink_result = sink_thread
        .join()
        .map_err(|_| JobError::Panic("sink thread panicked".into()))?;
    if let Some(e) = first_error {
        return Err(e);
    }
    sink_result.map_err(JobError::Sink)?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Sends this pod's workers' acknowledgements to pod 0's coordinator until
/// the workers finish.
fn forward_acks(
    workers: &[std::thread::JoinHandle<Result<super::worker::WorkerReport, JobError>>],
    acks: &crossbeam_channel::Receiver<Ack>,
    exchange: &Exchange,
    abort: &AtomicBool,
) {
    while !workers.iter().all(|w| w.is_finished()) && !abort.load(Ordering::Relaxed) {
        if let Ok(ack) = acks.recv_timeout(std::time::Duration::from_millis(20)) {
            exchange.ack(ack);
        }
    }
    // Uploads acknowledged as the workers finished.
    while let Ok(ack) = acks.try_recv() {
        exchange.ack(ack);
    }
}

/// What the sink thread does: write the job's sinks, or, in a pod other
/// than pod 0 of a job whose output only pod 0 writes, relay this pod's
/// output there.
enum SinkWork {
    Write(Box<Sinks>),
    Relay(OutputRelay),
}

/// Ends the connections to the job's other pods, if it has any (see
/// `Exchange::close`).
fn close_exchange(exchange: Option<Exchange>, clean: bool) -> Result<(), JobError> {
    match exchange {
        Some(exchange) => exchange.close(clean).map_err(JobError::Pods),
        None => Ok(()),
    }
}

/// Stops a run that failed: nothing of it may outlive it (a restart starts
/// the next one, and fences its Kafka producer, at once). The workers stop
/// on `abort`; the sink thread ends once every sender to it is gone.
fn stop_all(
    abort: &AtomicBool,
    workers: Vec<std::thread::JoinHandle<Result<super::worker::WorkerReport, JobError>>>,
    sink_tx: crossbeam_channel::Sender<SinkMsg>,
    sink_thread: std::thread::JoinHandle<std::io::Result<()>>,
    exchange: Option<Exchange>,
) {
    abort.store(true, Ordering::SeqCst);
    let _ = close_exchange(exchange, false);
    for worker in workers {
        let _ = worker.join();
    }
    drop(sink_tx);
    let _ = sink_thread.join();
}
