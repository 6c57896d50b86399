//! What the pods of a job say to each other: length-delimited frames, each
//! one postcard-encoded `Frame`. A connection opens with a handshake in
//! which each side proves it holds the job's token without sending it.

use bytes::Bytes;
use ring::hmac;
use serde::{Deserialize, Serialize};

use super::Message;
use crate::engine::collector::Target;
use crate::engine::coordinator::Ack;

/// Frames larger than this end the connection: a message is at most a
/// send batch of records (their raw text only for late and select output).
pub(super) const MAX_FRAME: usize = 256 << 20;
/// Before the peer has proved itself, frames are small.
pub(super) const MAX_HANDSHAKE_FRAME: usize = 4 << 10;

/// Bumped whenever a frame changes: pods of different versions do not talk.
pub(super) const PROTOCOL: &str = "streamjob-exchange/4";

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Frame {
    /// The first frame each side sends.
    Hello(Hello),
    /// HMAC-SHA256 with the job's token over the other side's nonce and who
    /// the sender is: see `proof`.
    Proof(Vec<u8>),
    /// A message from a worker of the sending pod to worker `to` of the
    /// receiving pod.
    Data { to: u32, message: Message },
    /// Worker `by` of the sending pod took a message worker `from` sent it.
    Credit { from: u32, by: u32 },
    /// Pod 0's coordinator started snapshot `id` (a savepoint when
    /// `savepoint`): the workers inject its barrier.
    Trigger { id: u64, savepoint: bool },
    /// A worker's answer for a snapshot, to pod 0's coordinator.
    Ack(Ack),
    /// Pod 0: snapshot `id` has every worker's state; commit its output.
    Commit { id: u64 },
    /// The answer to `Commit`: `error` when the sink could not commit.
    Committed { id: u64, error: Option<String> },
    /// The job stops (without firing open windows), in every pod.
    Stop,
    /// Lines a worker of the sending pod emitted, for pod 0's sink (a job
    /// whose output only pod 0 writes: see `OutputRelay`).
    Output {
        worker: u32,
        target: Target,
        lines: Vec<String>,
        keys: Vec<String>,
    },
    /// A worker of the sending pod reached the barrier of `checkpoint` with
    /// its Kafka source partitions at `offsets`: pod 0's sink is to seal
    /// what it sent so far, then answer with `Sealed`.
    Seal {
        worker: u32,
        checkpoint: u64,
        offsets: Vec<(String, i32, i64)>,
    },
    /// Pod 0's answer to `Seal`: `error` when its sink could not.
    Sealed {
        worker: u32,
        checkpoint: u64,
        error: Option<String>,
    },
    /// To pod 0: the sending pod's workers are built (state restored,
    /// sources positioned); `ended` are those of them whose splits have
    /// nothing to read.
    Ready { ended: Vec<u32> },
    /// From pod 0: every pod is ready; the workers start, knowing which of
    /// every pod's workers have nothing to read (`ended`).
    Go { ended: Vec<u32> },
    /// The sending pod is alive (sent every second).
    Heartbeat,
    /// The sending pod's workers have ended: it sends nothing more.
    Bye,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Hello {
    pub protocol: String,
    pub job: String,
    /// The rollout the pod belongs to (`RunOptions::deployment`; empty
    /// outside a supervisor).
    pub rollout: String,
    pub pods: u32,
    pub pod: u32,
    pub nonce: [u8; 32],
}

pub(super) fn encode(frame: &Frame) -> Bytes {
    Bytes::from(postcard::to_stdvec(frame).expect("frames always encode"))
}

pub(super) fn decode(bytes: &[u8]) -> Result<Frame, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("unreadable frame: {e}"))
}

pub(super) fn hello(job: &str, rollout: &str, pods: usize, pod: usize, nonce: [u8; 32]) -> Frame {
    Frame::Hello(Hello {
        protocol: PROTOCOL.into(),
        job: job.into(),
        rollout: rollout.into(),
        pods: pods as u32,
        pod: pod as u32,
        nonce,
    })
}

/// What pod `from` signs to prove itself to pod `to`, which chose `nonce`:
/// bound to both ends, so that a proof cannot be replayed to another pod.
fn challenge(job: &str, from: usize, to: usize, nonce: &[u8; 32]) -> Vec<u8> {
    let mut message = Vec::with_capacity(PROTOCOL.len() + job.len() + 50);
    message.extend_from_slice(PROTOCOL.as_bytes());
    message.push(0);
    message.extend_from_slice(job.as_bytes());
    message.push(0);
    message.extend_from_slice(&(from as u64).to_be_bytes());
    message.extend_from_slice(&(to as u64).to_be_bytes());
    message.extend_from_slice(nonce);
    message
}

/// Pod `from`'s answer to pod `to`'s `nonce`.
pub(super) fn proof(
    key: &hmac::Key,
    job: &str,
    from: usize,
    to: usize,
    nonce: &[u8; 32],
) -> Vec<u8> {
    hmac::sign(key, &challenge(job, from, to, nonce))
        .as_ref()
        .to_vec()
}

/// Whether `mac` is pod `from`'s answer to pod `to`'s `nonce`, compared in
/// constant time.
pub(super) fn verify(
    key: &hmac::Key,
    job: &str,
    from: usize,
    to: usize,
    nonce: &[u8; 32],
    mac: &[u8],
) -> bool {
    hmac::verify(key, &challenge(job, from, to, nonce), mac).is_ok()
}
