//! The connections between this pod and the job's other pods: one TCP
//! connection per pair of pods, opened by the pod with the higher index,
//! carrying every worker-to-worker channel between the two in both
//! directions. Each connection has a writer task (frames queued by this
//! pod's workers) and a reader task (frames delivered to this pod's
//! workers' inboxes, credits returned to their senders), on a small tokio
//! runtime of the exchange's own.
//!
//! A connection ends cleanly when each side has said `Bye` after its
//! workers ended. Anything else (a peer gone, an unreadable frame) fails
//! the run: the job is one whole across its pods.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use futures_util::{SinkExt, StreamExt};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use super::wire::{self, Frame, MAX_FRAME, MAX_HANDSHAKE_FRAME};
use super::{Message, Peer, Pods};
use crate::engine::collector::{ask_sink, SinkMsg};
use crate::engine::coordinator::Ack;

/// What other pods may set in motion in this one: checkpoints (pod 0
/// triggers them, collects acknowledgements and has every pod commit) and
/// a stop.
#[derive(Clone)]
pub(crate) struct PodControl {
    /// The newest checkpoint the coordinator asked for.
    pub trigger: Arc<AtomicU64>,
    /// The id of the savepoint under way.
    pub savepoint: Arc<AtomicU64>,
    /// Pod 0's coordinator's acknowledgements.
    pub acks: Sender<Ack>,
    pub stop: Arc<AtomicBool>,
    /// This pod's sink thread, which commits on pod 0's word.
    pub sink: Sender<SinkMsg>,
}

/// How long pods wait for each other at the start: pods of a StatefulSet
/// may start minutes apart (image pulls, scheduling).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a connecting peer has to prove itself.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Every connection carries a heartbeat this often…
const HEARTBEAT: Duration = Duration::from_secs(1);
/// …and a pod not heard from for this long is taken as stalled, which fails
/// the run.
const STALLED: Duration = Duration::from_secs(10);
/// Between attempts to reach a pod that is not listening yet.
const RETRY: Duration = Duration::from_millis(20);

/// What the worker threads and the connections' tasks share.
pub(crate) struct Shared {
    parallelism: usize,
    /// Messages sent to another pod's worker and not yet taken by it, per
    /// pair of workers (`sender · parallelism + receiver`).
    in_flight: Vec<AtomicUsize>,
    failure: Mutex<Option<String>>,
    /// The run's abort flag: a failed connection stops every worker.
    abort: Arc<AtomicBool>,
    /// Other pods' answers to `Commit`.
    commits: (Sender<Committed>, Receiver<Committed>),
    /// Per pod, whether it has said `Bye`: its workers have ended, and it
    /// answers nothing more.
    said_bye: Vec<AtomicBool>,
    /// This pod's workers waiting for pod 0's sink to seal their output,
    /// by worker and checkpoint (see `OutputRelay`).
    seals: Mutex<HashMap<(usize, u64), SealReply>>,
    /// Pod 0: per pod, once its workers are built (`Ready`), those with
    /// nothing to read.
    ready: Mutex<Vec<Option<Vec<u32>>>>,
    /// Once pod 0 said every pod is ready (`Go`): every pod's workers with
    /// nothing to read.
    go: Mutex<Option<Vec<u32>>>,
}

/// A lock whether or not another thread panicked holding it: what the
/// exchange keeps there stays valid between its steps.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a worker waits for pod 0's `Sealed`.
type SealReply = Sender<std::io::Result<()>>;

impl Shared {
    fn fail(&self, error: String) {
        let mut failure = lock(&self.failure);
        if failure.is_none() {
            tracing::error!("{error}");
            *failure = Some(error.clone());
        }
        drop(failure);
        self.abort.store(true, Ordering::SeqCst);
        // No answer comes any more: the waiting workers fail with the run.
        let mut seals = lock(&self.seals);
        for (_, waiting) in seals.drain() {
            let _ = waiting.send(Err(std::io::Error::other(error.clone())));
        }
    }

    /// Answers the worker waiting for `Sealed { worker, checkpoint }`.
    fn sealed(&self, worker: usize, checkpoint: u64, outcome: std::io::Result<()>) {
        let waiting = lock(&self.seals).remove(&(worker, checkpoint));
        if let Some(waiting) = waiting {
            let _ = waiting.send(outcome);
        }
    }

    fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    fn in_flight(&self, from: usize, to: usize) -> &AtomicUsize {
        &self.in_flight[from * self.parallelism + to]
    }
}

/// Pod `pod`'s answer to `Commit { id }`: `error` when it could not.
struct Committed {
    pod: usize,
    id: u64,
    error: Option<String>,
}

enum Outgoing {
    Frame(Bytes),
    /// Say `Bye` and stop writing.
    Close,
}

/// The way to a worker in another pod.
#[derive(Clone)]
pub(crate) struct RemotePeer {
    to: usize,
    link: mpsc::UnboundedSender<Outgoing>,
    shared: Arc<Shared>,
}

impl RemotePeer {
    /// Encodes the message on the sending worker's thread and queues it.
    pub fn send(&self, message: Message) {
        self.shared
            .in_flight(message.from, self.to)
            .fetch_add(1, Ordering::Relaxed);
        let frame = wire::encode(&Frame::Data {
            to: self.to as u32,
            message,
        });
        // A closed link has failed the run already.
        let _ = self.link.send(Outgoing::Frame(frame));
    }

    pub fn in_flight(&self, from: usize) -> &AtomicUsize {
        self.shared.in_flight(from, self.to)
    }

    /// Worker `by` of this pod took a message this peer sent it.
    pub fn credit(&self, by: usize) {
        let frame = wire::encode(&Frame::Credit {
            from: self.to as u32,
            by: by as u32,
        });
        let _ = self.link.send(Outgoing::Frame(frame));
    }
}

/// The sink thread of a pod other than pod 0, in a job whose output only
/// pod 0 writes (a Kafka or PostgreSQL sink under exactly-once checkpoints:
/// one transaction per checkpoint for the whole job, so one commit point,
/// as in one process). It sends what this pod's workers emit to pod 0's
/// sink, in the order they emit it, and passes their barriers on as
/// `Seal`s, each answered once pod 0's sink has sealed that worker's
/// output.
pub(crate) struct OutputRelay {
    link: mpsc::UnboundedSender<Outgoing>,
    shared: Arc<Shared>,
}

impl OutputRelay {
    /// Runs until every sender is gone.
    pub fn run(self, rx: Receiver<SinkMsg>) -> std::io::Result<()> {
        for msg in rx {
            match msg {
                SinkMsg::Lines {
                    worker,
                    target,
                    lines,
                    keys,
                } => self.send(&Frame::Output {
                    worker: worker as u32,
                    target,
                    lines,
                    keys,
                }),
                SinkMsg::Sync {
                    worker,
                    checkpoint,
                    offsets,
                    reply,
                } => {
                    lock(&self.shared.seals).insert((worker, checkpoint), reply);
                    // Failed before the answer was awaited: no answer comes.
                    if let Some(failure) = self.shared.failure() {
                        let failed = Err(std::io::Error::other(failure));
                        self.shared.sealed(worker, checkpoint, failed);
                    }
                    self.send(&Frame::Seal {
                        worker: worker as u32,
                        checkpoint,
                        offsets,
                    });
                }
                // Pod 0 commits the whole job's output.
                SinkMsg::Commit { reply, .. } => {
                    let _ = reply.send(Ok(()));
                }
                // Everything before it is queued, ahead of the pod's `Bye`.
                SinkMsg::Finish { reply, .. } => {
                    let _ = reply.send(Ok(()));
                }
            }
        }
        Ok(())
    }

    fn send(&self, frame: &Frame) {
        // A closed link has failed the run already.
        let _ = self.link.send(Outgoing::Frame(wire::encode(frame)));
    }
}

struct Link {
    out: mpsc::UnboundedSender<Outgoing>,
    tasks: [JoinHandle<()>; 2],
}

/// This pod's connections to the job's other pods.
pub(crate) struct Exchange {
    runtime: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    pods: Pods,
    /// Per pod, the connection to it (none for this pod).
    links: Vec<Option<Link>>,
}

impl Exchange {
    /// Connects to every other pod of the job, and starts delivering what
    /// they send to `inboxes` (every worker's, only this pod's are used).
    pub fn connect(
        pods: &Pods,
        job: &str,
        rollout: &str,
        parallelism: usize,
        inboxes: Vec<Sender<Message>>,
        abort: Arc<AtomicBool>,
        control: PodControl,
    ) -> Result<Exchange, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads((pods.count() - 1).clamp(1, 4))
            .thread_name("exchange")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the exchange's threads: {e}"))?;
        let shared = Arc::new(Shared {
            parallelism,
            in_flight: (0..parallelism * parallelism)
                .map(|_| AtomicUsize::new(0))
                .collect(),
            failure: Mutex::new(None),
            abort,
            commits: crossbeam_channel::unbounded(),
            said_bye: (0..pods.count()).map(|_| AtomicBool::new(false)).collect(),
            seals: Mutex::default(),
            ready: Mutex::new(vec![None; pods.count()]),
            go: Mutex::new(None),
        });
        let handshake = Handshake {
            key: hmac::Key::new(hmac::HMAC_SHA256, pods.token.secret()),
            job: job.to_string(),
            rollout: rollout.to_string(),
            pods: pods.count(),
            me: pods.index,
        };
        let connections = runtime.block_on(async {
            tokio::time::timeout(CONNECT_TIMEOUT, open_all(pods, &handshake))
                .await
                .map_err(|_| {
                    format!(
                        "not every pod of the job connected within {}s ({} pods: {})",
                        CONNECT_TIMEOUT.as_secs(),
                        pods.count(),
                        pods.peers.join(", ")
                    )
                })?
        })?;
        let mut links: Vec<Option<Link>> = (0..pods.count()).map(|_| None).collect();
        for (pod, (reader, writer)) in connections {
            let (out, queue) = mpsc::unbounded_channel();
            let reading = Reading {
                pod,
                me: pods.index,
                senders: pods.workers_of(pod, parallelism),
                receivers: pods.workers_of(pods.index, parallelism),
                inboxes: inboxes.clone(),
                shared: shared.clone(),
                control: control.clone(),
                back: out.clone(),
            };
            let failed = shared.clone();
            let write = runtime.spawn(async move {
                if let Err(e) = write_frames(writer, queue).await {
                    failed.fail(format!("exchange with pod {pod}: {e}"));
                }
            });
            let read = runtime.spawn(async move { reading.run(reader).await });
            links[pod] = Some(Link {
                out,
                tasks: [write, read],
            });
        }
        tracing::info!(
            pods = pods.count(),
            pod = pods.index,
            "connected to every pod of the job"
        );
        Ok(Exchange {
            runtime,
            shared,
            pods: pods.clone(),
            links,
        })
    }

    /// The way to `worker`, in this pod or another.
    pub fn peer(&self, worker: usize, local: &Sender<Message>) -> Peer {
        let pod = self.pods.pod_of(worker, self.shared.parallelism);
        match &self.links[pod] {
            None => Peer::Local(local.clone()),
            Some(link) => Peer::Remote(RemotePeer {
                to: worker,
                link: link.out.clone(),
                shared: self.shared.clone(),
            }),
        }
    }

    /// Sends `frame` to every other pod.
    fn broadcast(&self, frame: &Frame) {
        let bytes = wire::encode(frame);
        for link in self.links.iter().flatten() {
            let _ = link.out.send(Outgoing::Frame(bytes.clone()));
        }
    }

    /// Pod 0: every pod's workers are to start snapshot `id`. Sent before
    /// pod 0's own workers see the trigger, so it arrives before their
    /// barriers (one connection keeps its frames in order).
    pub fn trigger(&self, id: u64, savepoint: bool) {
        self.broadcast(&Frame::Trigger { id, savepoint });
    }

    /// Another pod: a worker's acknowledgement, to pod 0's coordinator.
    pub fn ack(&self, ack: Ack) {
        if let Some(link) = &self.links[0] {
            let _ = link
                .out
                .send(Outgoing::Frame(wire::encode(&Frame::Ack(ack))));
        }
    }

    /// Pod 0: has every other pod commit snapshot `id`'s output, and waits
    /// for all of them, `timeout` at most. A pod that has said `Bye` is not
    /// waited for: its workers have ended, and its sink commits all it holds
    /// when the pod finishes (or, if it dies first, what it sealed for this
    /// snapshot when it is restored to it).
    pub fn commit(&self, id: u64, timeout: Duration) -> Result<(), String> {
        self.broadcast(&Frame::Commit { id });
        let mut waiting: Vec<usize> = (1..self.pods.count()).collect();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            waiting.retain(|pod| !self.shared.said_bye[*pod].load(Ordering::Acquire));
            if waiting.is_empty() {
                return Ok(());
            }
            if let Some(failure) = self.failure() {
                return Err(failure);
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "pods {waiting:?} did not commit within {timeout:?}"
                ));
            }
            // In slices, so that a pod lost meanwhile ends the wait.
            match self
                .shared
                .commits
                .1
                .recv_timeout(Duration::from_millis(20))
            {
                Ok(Committed {
                    pod,
                    id: committed,
                    error,
                }) if committed == id => match error {
                    Some(error) => return Err(format!("pod {pod} could not commit: {error}")),
                    None => waiting.retain(|p| *p != pod),
                },
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err("the exchange has stopped".into())
                }
            }
        }
    }

    /// Waits until every pod's workers are built, so that they all start
    /// together: a pod restoring a large state does not leave the others
    /// reading ahead into their buffers meanwhile. Pod 0 waits for every
    /// `Ready` and answers `Go`; the others say `Ready` and wait for it.
    /// `ended` are this pod's workers whose splits have nothing to read;
    /// returns every pod's, for every worker to start with them as ended
    /// inputs. (In-band, a worker would learn of them only once they run: a
    /// reader can route thousands of records before that, its watermark
    /// held back, and which records are late would depend on scheduling.)
    pub fn start_together(&self, ended: &[usize]) -> Result<Vec<usize>, String> {
        let ended: Vec<u32> = ended.iter().map(|&w| w as u32).collect();
        let all_ended = if self.pods.index == 0 {
            let others = loop {
                let ready = lock(&self.shared.ready);
                if ready[1..].iter().all(Option::is_some) {
                    break ready[1..]
                        .iter()
                        .flatten()
                        .flatten()
                        .copied()
                        .collect::<Vec<_>>();
                }
                drop(ready);
                self.pause()?;
            };
            let all_ended = [ended, others].concat();
            self.broadcast(&Frame::Go {
                ended: all_ended.clone(),
            });
            all_ended
        } else {
            if let Some(link) = &self.links[0] {
                let ready = Frame::Ready { ended };
                let _ = link.out.send(Outgoing::Frame(wire::encode(&ready)));
            }
            loop {
                if let Some(all_ended) = lock(&self.shared.go).clone() {
                    break all_ended;
                }
                self.pause()?;
            }
        };
        Ok(all_ended.into_iter().map(|w| w as usize).collect())
    }

    /// A short wait, unless the exchange failed.
    fn pause(&self) -> Result<(), String> {
        match self.failure() {
            Some(failure) => Err(failure),
            None => {
                std::thread::sleep(Duration::from_millis(1));
                Ok(())
            }
        }
    }

    /// The way to pod 0's sink, from another pod.
    pub fn output_relay(&self) -> Option<OutputRelay> {
        let link = self.links[0].as_ref()?;
        Some(OutputRelay {
            link: link.out.clone(),
            shared: self.shared.clone(),
        })
    }

    /// This pod stops: so does every other.
    pub fn stop(&self) {
        self.broadcast(&Frame::Stop);
    }

    /// Why the exchange failed, if it did.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure()
    }

    /// Ends the connections. `clean`: this pod's workers all ended, so it
    /// says `Bye` and waits for every other pod to say it too (they may
    /// still be working). Otherwise the connections are cut, which fails
    /// the other pods' runs.
    pub fn close(self, clean: bool) -> Result<(), String> {
        if clean && self.pods.index == 0 {
            // Pod 0 says `Bye` last: until every other pod's workers have
            // ended, they may still need its answers (`Sealed`, `Committed`).
            let others_done = || {
                (1..self.pods.count()).all(|pod| self.shared.said_bye[pod].load(Ordering::Acquire))
            };
            while !others_done() && self.failure().is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if clean && self.failure().is_none() {
            let tasks: Vec<_> = self
                .links
                .into_iter()
                .flatten()
                .flat_map(|link| {
                    let _ = link.out.send(Outgoing::Close);
                    link.tasks
                })
                .collect();
            self.runtime.block_on(async {
                for task in tasks {
                    let _ = task.await;
                }
            });
        }
        self.runtime.shutdown_background();
        match self.shared.failure() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The secret, the job and this pod: what a handshake checks.
#[derive(Clone)]
struct Handshake {
    key: hmac::Key,
    job: String,
    rollout: String,
    pods: usize,
    me: usize,
}

type Connection = (
    FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
);

/// Listens for the pods above this one and dials the ones below.
async fn open_all(pods: &Pods, handshake: &Handshake) -> Result<Vec<(usize, Connection)>, String> {
    let own = &pods.peers[pods.index];
    let listen = listen_address(own).await?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen} (this pod's address {own}): {e}"))?;
    let above = pods.count() - pods.index - 1;
    let accepting = accept_all(&listener, handshake, above);
    let dialing = futures_util::future::try_join_all(
        (0..pods.index).map(|pod| dial(pod, &pods.peers[pod], handshake)),
    );
    let (mut accepted, dialed) = tokio::try_join!(accepting, dialing)?;
    accepted.extend(dialed);
    Ok(accepted)
}

/// The address to listen on for peer address `own`: that IP, or every
/// interface at its port for a name.
async fn listen_address(own: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = own.parse::<SocketAddr>() {
        return Ok(address);
    }
    let port = own
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .ok_or_else(|| format!("--peers: {own:?} is not HOST:PORT"))?;
    Ok(SocketAddr::from(([0, 0, 0, 0], port)))
}

/// Accepts until `count` pods above this one have proved themselves. A
/// connection that fails its handshake is refused and logged, and the
/// others go on: no stranger can stop the job from forming.
async fn accept_all(
    listener: &TcpListener,
    handshake: &Handshake,
    count: usize,
) -> Result<Vec<(usize, Connection)>, String> {
    let mut joined: Vec<(usize, Connection)> = Vec::new();
    let mut pending = JoinSet::new();
    let handshake = Arc::new(handshake.clone());
    while joined.len() < count {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, from) = accepted.map_err(|e| format!("accepting a pod: {e}"))?;
                let handshake = handshake.clone();
                pending.spawn(async move {
                    let shaken = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake.run(stream, None))
                        .await
                        .unwrap_or_else(|_| Err("no handshake in time".into()));
                    (from, shaken)
                });
            }
            Some(done) = pending.join_next() => {
                let Ok((from, shaken)) = done else { continue };
                match shaken {
                    Ok((pod, _)) if pod < handshake.me || joined.iter().any(|(p, _)| *p == pod) => {
                        tracing::warn!(%from, pod, "refused a second connection for pod {pod}");
                    }
                    Ok((pod, connection)) => joined.push((pod, connection)),
                    Err(e) => tracing::warn!(%from, "refused a connection to the exchange: {e}"),
                }
            }
        }
    }
    Ok(joined)
}

/// Connects to pod `pod`, retrying while it is not listening yet.
async fn dial(
    pod: usize,
    address: &str,
    handshake: &Handshake,
) -> Result<(usize, Connection), String> {
    loop {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                return handshake
                    .run(stream, Some(pod))
                    .await
                    .map_err(|e| format!("pod {pod} at {address}: {e}"));
            }
            Err(_) => tokio::time::sleep(RETRY).await,
        }
    }
}

impl Handshake {
    /// Both sides say who they are, with a fresh nonce each; the dialing side
    /// (`dialed` is the pod it expects) proves itself first, then the
    /// accepting side. Returns the other pod's index.
    async fn run(
        &self,
        stream: TcpStream,
        dialed: Option<usize>,
    ) -> Result<(usize, Connection), String> {
        let io = |e: std::io::Error| e.to_string();
        stream.set_nodelay(true).map_err(io)?;
        let (read, write) = stream.into_split();
        let mut reader = FramedRead::new(read, codec(MAX_HANDSHAKE_FRAME));
        let mut writer = FramedWrite::new(write, codec(MAX_FRAME));
        let mut nonce = [0u8; 32];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| "no randomness for the handshake".to_string())?;
        let hello = wire::hello(&self.job, &self.rollout, self.pods, self.me, nonce);
        writer.send(wire::encode(&hello)).await.map_err(io)?;
        let Frame::Hello(theirs) = next_frame(&mut reader).await? else {
            return Err("the first frame was not a hello".into());
        };
        if theirs.protocol != wire::PROTOCOL {
            return Err(format!(
                "it speaks {}, this pod {}: run one version of streamjob in every pod",
                theirs.protocol,
                wire::PROTOCOL
            ));
        }
        if theirs.job != self.job || theirs.pods as usize != self.pods {
            return Err(format!(
                "it belongs to job {:?} of {} pods, this pod to job {:?} of {}",
                theirs.job, theirs.pods, self.job, self.pods
            ));
        }
        // A pod of another rollout (an old one still terminating, whose
        // restarted container dials the new pods' stable names) starts from
        // another snapshot: it never joins this one.
        if theirs.rollout != self.rollout {
            return Err(format!(
                "it belongs to rollout {:?}, this pod to rollout {:?}",
                theirs.rollout, self.rollout
            ));
        }
        let pod = theirs.pod as usize;
        if pod >= self.pods || pod == self.me || dialed.is_some_and(|d| d != pod) {
            return Err(format!("it says it is pod {pod}"));
        }
        let mine = || {
            Frame::Proof(wire::proof(
                &self.key,
                &self.job,
                self.me,
                pod,
                &theirs.nonce,
            ))
        };
        if dialed.is_some() {
            writer.send(wire::encode(&mine())).await.map_err(io)?;
        }
        match next_frame(&mut reader).await? {
            Frame::Proof(mac) if wire::verify(&self.key, &self.job, pod, self.me, &nonce, &mac) => {
            }
            _ => return Err(format!("pod {pod} did not prove it holds the job's token")),
        }
        if dialed.is_none() {
            writer.send(wire::encode(&mine())).await.map_err(io)?;
        }
        reader.decoder_mut().set_max_frame_length(MAX_FRAME);
        Ok((pod, (reader, writer)))
    }
}

fn codec(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(max_frame)
        .new_codec()
}

async fn next_frame(
    reader: &mut FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
) -> Result<Frame, String> {
    match reader.next().await {
        Some(Ok(bytes)) => wire::decode(&bytes),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("the connection closed".into()),
    }
}

/// Writes what this pod's workers queue, flushing whenever the queue is
/// empty, until told to close.
async fn write_frames(
    mut writer: FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    // One beat a second whatever else goes out: no timer to move per frame.
    let mut beat = tokio::time::interval(HEARTBEAT);
    loop {
        let out = tokio::select! {
            out = queue.recv() => out,
            _ = beat.tick() => Some(Outgoing::Frame(wire::encode(&Frame::Heartbeat))),
        };
        let Some(out) = out else {
            return Ok(());
        };
        match out {
            Outgoing::Frame(frame) => writer.feed(frame).await.map_err(io)?,
            Outgoing::Close => {
                writer.send(wire::encode(&Frame::Bye)).await.map_err(io)?;
                writer.get_mut().shutdown().await.map_err(io)?;
                return Ok(());
            }
        }
        if queue.is_empty() {
            SinkExt::<Bytes>::flush(&mut writer).await.map_err(io)?;
        }
    }
}

/// Delivers what pod `pod` sends.
struct Reading {
    pod: usize,
    /// This pod.
    me: usize,
    /// The workers of that pod, the only ones it may send from.
    senders: Range<usize>,
    /// This pod's workers, the only ones it may send to.
    receivers: Range<usize>,
    inboxes: Vec<Sender<Message>>,
    shared: Arc<Shared>,
    control: PodControl,
    /// The connection's way back to that pod.
    back: mpsc::UnboundedSender<Outgoing>,
}

impl Reading {
    /// `worker`, if it is one of the sending pod's.
    fn sender(&self, worker: u32) -> Result<usize, String> {
        let worker = worker as usize;
        match self.senders.contains(&worker) {
            true => Ok(worker),
            false => Err(format!("output of worker {worker} cannot come from it")),
        }
    }

    async fn run(self, mut reader: FramedRead<OwnedReadHalf, LengthDelimitedCodec>) {
        if let Err(e) = self.read(&mut reader).await {
            self.shared
                .fail(format!("exchange with pod {}: {e}", self.pod));
        }
    }

    async fn read(
        &self,
        reader: &mut FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    ) -> Result<(), String> {
        let mut said_bye = false;
        loop {
            // A pod that sends nothing, not even its heartbeat, is stalled
            // (stopped, or cut off without a reset); one that said `Bye`
            // may send nothing more.
            let next = match said_bye {
                true => reader.next().await,
                false => tokio::time::timeout(STALLED, reader.next())
                    .await
                    .map_err(|_| {
                        format!("nothing heard from the pod for {}s", STALLED.as_secs())
                    })?,
            };
            let Some(bytes) = next else { break };
            let bytes = bytes.map_err(|e| e.to_string())?;
            match wire::decode(&bytes)? {
                Frame::Data { to, message } => {
                    let to = to as usize;
                    if said_bye
                        || !self.receivers.contains(&to)
                        || !self.senders.contains(&message.from)
                    {
                        return Err(format!(
                            "a message from worker {} to worker {to} cannot come from it",
                            message.from
                        ));
                    }
                    // A worker that has stopped takes nothing more; the run
                    // is ending.
                    let _ = self.inboxes[to].send(message);
                }
                Frame::Credit { from, by } => {
                    let (from, by) = (from as usize, by as usize);
                    if !self.receivers.contains(&from) || !self.senders.contains(&by) {
                        return Err(format!(
                            "a credit for worker {from} from worker {by} cannot come from it"
                        ));
                    }
                    // Saturating: a confused peer must not make the
                    // backlog look endless.
                    let _ = self.shared.in_flight(from, by).fetch_update(
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                        |n| n.checked_sub(1),
                    );
                }
                Frame::Trigger { id, savepoint } if self.pod == 0 => {
                    if savepoint {
                        self.control.savepoint.store(id, Ordering::Release);
                    }
                    self.control.trigger.fetch_max(id, Ordering::AcqRel);
                }
                Frame::Ack(ack) if self.me == 0 => {
                    let _ = self.control.acks.send(ack);
                }
                Frame::Commit { id } if self.pod == 0 => {
                    let (sink, back) = (self.control.sink.clone(), self.back.clone());
                    // The sink thread may take a while: not on this task.
                    tokio::task::spawn_blocking(move || {
                        let outcome = ask_sink(&sink, |reply| SinkMsg::Commit {
                            checkpoint: id,
                            reply,
                        });
                        let error = outcome.err().map(|e| e.to_string());
                        let _ = back.send(Outgoing::Frame(wire::encode(&Frame::Committed {
                            id,
                            error,
                        })));
                    });
                }
                Frame::Committed { id, error } if self.me == 0 => {
                    let _ = self.shared.commits.0.send(Committed {
                        pod: self.pod,
                        id,
                        error,
                    });
                }
                Frame::Output {
                    worker,
                    target,
                    lines,
                    keys,
                } if self.me == 0 => {
                    let worker = self.sender(worker)?;
                    // Unbounded, as for this pod's own workers.
                    let _ = self.control.sink.send(SinkMsg::Lines {
                        worker,
                        target,
                        lines,
                        keys,
                    });
                }
                Frame::Seal {
                    worker,
                    checkpoint,
                    offsets,
                } if self.me == 0 => {
                    let worker = self.sender(worker)?;
                    // Queued now, behind the worker's lines before the
                    // barrier and ahead of those after it; only the wait
                    // for the answer is moved off this task.
                    let (reply, answer) = crossbeam_channel::bounded(1);
                    let _ = self.control.sink.send(SinkMsg::Sync {
                        worker,
                        checkpoint,
                        offsets,
                        reply,
                    });
                    let back = self.back.clone();
                    tokio::task::spawn_blocking(move || {
                        let outcome = answer
                            .recv()
                            .unwrap_or_else(|_| Err(std::io::Error::other("the sink stopped")));
                        let _ = back.send(Outgoing::Frame(wire::encode(&Frame::Sealed {
                            worker: worker as u32,
                            checkpoint,
                            error: outcome.err().map(|e| e.to_string()),
                        })));
                    });
                }
                Frame::Sealed {
                    worker,
                    checkpoint,
                    error,
                } if self.pod == 0 => {
                    let outcome = match error {
                        None => Ok(()),
                        Some(e) => Err(std::io::Error::other(format!("pod 0's sink: {e}"))),
                    };
                    self.shared.sealed(worker as usize, checkpoint, outcome);
                }
                Frame::Ready { ended } if self.me == 0 => {
                    if let Some(w) = ended
                        .iter()
                        .find(|&&w| !self.senders.contains(&(w as usize)))
                    {
                        return Err(format!("it named worker {w}, not one of its own, as ended"));
                    }
                    lock(&self.shared.ready)[self.pod] = Some(ended);
                }
                Frame::Go { ended } if self.pod == 0 => {
                    let workers = self.shared.parallelism;
                    if let Some(w) = ended.iter().find(|&&w| w as usize >= workers) {
                        return Err(format!("it named worker {w} of {workers} as ended"));
                    }
                    *lock(&self.shared.go) = Some(ended);
                }
                Frame::Stop => self.control.stop.store(true, Ordering::SeqCst),
                Frame::Heartbeat => {}
                Frame::Trigger { .. }
                | Frame::Ack(_)
                | Frame::Commit { .. }
                | Frame::Committed { .. }
                | Frame::Output { .. }
                | Frame::Seal { .. }
                | Frame::Sealed { .. }
                | Frame::Ready { .. }
                | Frame::Go { .. } => {
                    return Err("a frame that only goes to or comes from pod 0".into());
                }
                Frame::Bye => {
                    said_bye = true;
                    self.shared.said_bye[self.pod].store(true, Ordering::Release);
                }
                Frame::Hello(_) | Frame::Proof(_) => {
                    return Err("a handshake frame after the handshake".into());
                }
            }
        }
        match said_bye {
            true => Ok(()),
            false => Err("the connection closed before the pod's workers ended".into()),
        }
    }
}
