//! The keyed exchange: what one worker sends another, and the ways to
//! another worker. A worker in this process is an in-memory channel away; a
//! worker in another pod of the job is reached over that pod's connection
//! (`links`), which carries every channel between the two pods.
//!
//! Nothing here blocks a sender: channels are unbounded, and a worker pauses
//! its source while any peer's backlog is long (see `worker.rs`). For a peer
//! in another pod the backlog is the messages it has not yet taken from its
//! inbox: each one it takes returns a credit to the sender. So the receiving
//! pod never stops reading its connection for one slow worker, and what is
//! buffered stays bounded by the credit window.

mod links;
mod wire;

use std::sync::atomic::Ordering;

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};

use crate::control::ControlToken;
use crate::record::Event;
use crate::spec::JobSpec;
use crate::time::SourceStatus;

pub(crate) use links::{Exchange, OutputRelay, PodControl};

/// What travels from one worker to another, in order.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Item {
    Record(Event),
    /// Events the sender dealt out of a part of its split (see
    /// `routing::DealtPart`), with its status changes among them.
    Events(EventBlock),
    Status(SourceStatus),
    /// Checkpoint barrier: everything before it belongs to the checkpoint.
    Barrier(u64),
}

impl Item {
    /// The events it holds.
    pub fn events(&self) -> usize {
        match self {
            Item::Record(_) => 1,
            Item::Events(block) => block.events.len(),
            Item::Status(_) | Item::Barrier(_) => 0,
        }
    }
}

/// Events in the order read, and the sender's status where it changed
/// between them: the same as each event sent as a `Record` with a `Status`
/// before it where the status changed, in less room.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct EventBlock {
    pub events: Vec<Event>,
    /// `(i, status)`: the sender's status became `status` before
    /// `events[i]`; `i` rises.
    pub statuses: Vec<(u32, SourceStatus)>,
}

/// A batch of items from worker `from`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Message {
    pub from: usize,
    pub items: Vec<Item>,
}

pub(crate) fn channel() -> (Sender<Message>, Receiver<Message>) {
    crossbeam_channel::unbounded()
}

/// The way from a worker to one other worker.
#[derive(Clone)]
pub(crate) enum Peer {
    /// A worker in this process.
    Local(Sender<Message>),
    /// A worker in another pod.
    Remote(links::RemotePeer),
}

impl Peer {
    /// Sends without blocking. A closed inbox means that worker has stopped,
    /// and the job is ending (or failing, which the exchange reports).
    pub fn send(&self, message: Message) {
        match self {
            Peer::Local(inbox) => {
                let _ = inbox.send(message);
            }
            Peer::Remote(remote) => remote.send(message),
        }
    }

    /// Messages from worker `from` the peer has not taken yet.
    pub fn backlog(&self, from: usize) -> usize {
        match self {
            Peer::Local(inbox) => inbox.len(),
            Peer::Remote(remote) => remote.in_flight(from).load(Ordering::Relaxed),
        }
    }

    /// Worker `by` took a message this peer sent it: for a peer in another
    /// pod, that returns its credit.
    pub fn taken(&self, by: usize) {
        match self {
            Peer::Local(_) => {}
            Peer::Remote(remote) => remote.credit(by),
        }
    }
}

/// This process's place in a job that runs over several processes (the
/// pods of its StatefulSet, or processes on one machine).
#[derive(Clone)]
pub struct Pods {
    /// Every pod's exchange address (`host:port`), pod 0 first. This pod
    /// listens on its own: on that IP, or on every interface at its port
    /// when it is a name (a pod's stable DNS name).
    pub peers: Vec<String>,
    /// This process's pod.
    pub index: usize,
    /// The job's token: pods prove to each other that they hold it.
    pub token: ControlToken,
}

impl std::fmt::Debug for Pods {
    // Leaves the token out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pods")
            .field("peers", &self.peers)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl Pods {
    pub fn count(&self) -> usize {
        self.peers.len()
    }

    /// The workers pod `pod` runs: a contiguous share of `parallelism`, so
    /// that its key groups are contiguous too.
    pub fn workers_of(&self, pod: usize, parallelism: usize) -> std::ops::Range<usize> {
        let pods = self.count();
        pod * parallelism / pods..(pod + 1) * parallelism / pods
    }

    /// The pod that runs worker `worker`.
    pub fn pod_of(&self, worker: usize, parallelism: usize) -> usize {
        (0..self.count())
            .find(|&pod| self.workers_of(pod, parallelism).contains(&worker))
            .expect("every worker has a pod")
    }

    /// The job as this pod runs it: each pod writes its own workers' output,
    /// so a file sink's `out.jsonl` is `out.pod-<index>.jsonl` in pod
    /// `index` (pods on one machine would otherwise share the file).
    pub fn own_outputs(&self, spec: &JobSpec) -> JobSpec {
        let mut spec = spec.clone();
        let index = self.index;
        let sinks = std::iter::once(&mut spec.sink).chain(
            [
                &mut spec.side_outputs.late,
                &mut spec.side_outputs.malformed,
                &mut spec.side_outputs.unmatched,
            ]
            .into_iter()
            .flatten(),
        );
        for file in sinks.filter_map(|sink| sink.file.as_mut()) {
            let path = std::path::Path::new(&file.path);
            let stem = path.file_stem().unwrap_or_default().to_string_lossy();
            let name = match path.extension() {
                Some(ext) => format!("{stem}.pod-{index}.{}", ext.to_string_lossy()),
                None => format!("{stem}.pod-{index}"),
            };
            file.path = path.with_file_name(name).to_string_lossy().into_owned();
        }
        spec
    }

    /// Checks that this pod is one of the pods (the job's shape is
    /// `JobSpec::pods_problem`'s to check).
    pub fn check(&self) -> Result<(), String> {
        let pods = self.count();
        if pods == 0 {
            return Err("--peers: give every pod's address, pod 0 first".into());
        }
        if self.index >= pods {
            return Err(format!(
                "--pod-index {} is not one of the {pods} pods in --peers (0 to {})",
                self.index,
                pods - 1
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
