//! Two pods' exchanges in one test process, over 127.0.0.1.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::record::Key;

/// Two addresses on 127.0.0.1, with ports below Linux's ephemeral range:
/// a dial to an ephemeral port nobody listens on yet can connect to itself.
fn addresses() -> Vec<String> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(2654435761);
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() < 2 {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = 20_000 + (seed.wrapping_add(n.wrapping_mul(7919)) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() && !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports.iter().map(|p| format!("127.0.0.1:{p}")).collect()
}

type Pod = (Exchange, Receiver<Message>, Vec<Peer>);

/// Both pods of a job of two, connected.
fn two_pods() -> (Pod, Pod) {
    let peers = addresses();
    let other = {
        let peers = peers.clone();
        std::thread::spawn(move || pod(1, &peers, SECRET).unwrap())
    };
    let zero = pod(0, &peers, SECRET).unwrap();
    (zero, other.join().unwrap())
}

/// Ends both pods' exchanges cleanly.
fn close_both(zero: Exchange, one: Exchange) {
    let closing = std::thread::spawn(move || one.close(true));
    assert_eq!(zero.close(true), Ok(()));
    assert_eq!(closing.join().unwrap(), Ok(()));
}

fn token(text: &str) -> ControlToken {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    ControlToken::from_file(file.path()).unwrap()
}

/// Pod `index` of two, each running one of two workers: its exchange, its
/// worker's inbox, and the ways to both workers.
fn pod(index: usize, peers: &[String], secret: &str) -> Result<Pod, String> {
    pod_of_rollout(index, peers, secret, "rollout-1")
}

fn pod_of_rollout(
    index: usize,
    peers: &[String],
    secret: &str,
    rollout: &str,
) -> Result<Pod, String> {
    let pods = Pods {
        peers: peers.to_vec(),
        index,
        token: token(secret),
    };
    let (inboxes, receivers): (Vec<_>, Vec<_>) = (0..2).map(|_| channel()).unzip();
    let (sink, _) = crossbeam_channel::unbounded();
    let (acks, _) = crossbeam_channel::unbounded();
    let control = PodControl {
        trigger: Default::default(),
        savepoint: Default::default(),
        acks,
        stop: Default::default(),
        sink,
    };
    let exchange = Exchange::connect(
        &pods,
        "job",
        rollout,
        2,
        inboxes.clone(),
        Arc::new(AtomicBool::new(false)),
        control,
    )?;
    let ways = (0..2).map(|w| exchange.peer(w, &inboxes[w])).collect();
    let inbox = receivers.into_iter().nth(index).unwrap();
    Ok((exchange, inbox, ways))
}

fn record(n: i64) -> Item {
    Item::Record(Event {
        key: Key::new([crate::record::KeyPart::Int(n)].into_iter().collect()),
        ts: n,
        values: Default::default(),
        raw: None,
    })
}

fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(5));
    }
}

const SECRET: &str = "a-secret-of-the-test-job";

/// Messages arrive in order; each one counts against the sender's backlog
/// until the receiver takes it and its credit comes back.
#[test]
fn messages_arrive_in_order_and_their_credits_come_back() {
    let ((zero, inbox0, ways0), (one, _inbox1, ways1)) = two_pods();
    assert!(matches!(ways0[0], Peer::Local(_)) && matches!(ways0[1], Peer::Remote(_)));

    // Worker 1 (pod 1) sends worker 0 (pod 0) five messages.
    for n in 0..5 {
        ways1[0].send(Message {
            from: 1,
            items: vec![record(n), Item::Status(SourceStatus::Active(n))],
        });
    }
    assert_eq!(ways1[0].backlog(1), 5);
    let mut got = Vec::new();
    for _ in 0..5 {
        let message = inbox0.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(message.from, 1);
        got.push(message);
    }
    let times: Vec<i64> = got
        .iter()
        .map(|m| match &m.items[..] {
            [Item::Record(e), Item::Status(SourceStatus::Active(w))] if e.ts == *w => e.ts,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(times, vec![0, 1, 2, 3, 4]);
    // Delivered but not taken: the backlog stays.
    assert_eq!(ways1[0].backlog(1), 5);
    for _ in 0..3 {
        ways0[1].taken(0);
    }
    wait_for(|| ways1[0].backlog(1) == 2);
    for _ in 0..2 {
        ways0[1].taken(0);
    }
    wait_for(|| ways1[0].backlog(1) == 0);
    close_both(zero, one);
}

/// A pod whose token differs is refused, and the pod it tried still forms
/// the job with the right one afterwards.
#[test]
fn a_pod_with_another_token_is_refused() {
    let peers = addresses();
    let waiting = {
        let peers = peers.clone();
        std::thread::spawn(move || pod(0, &peers, SECRET).map(|(exchange, ..)| exchange))
    };
    let refused = pod(1, &peers, "the-token-of-another-job").err().unwrap();
    assert!(refused.starts_with("pod 0 at 127.0.0.1:"), "{refused}");
    let (one, ..) = pod(1, &peers, SECRET).unwrap();
    close_both(waiting.join().unwrap().unwrap(), one);
}

/// A pod of another rollout of the same job (an old pod whose container
/// restarted while the new pods start) is refused, and the pod it tried
/// still forms the job with its own rollout's pod.
#[test]
fn a_pod_of_another_rollout_is_refused() {
    let peers = addresses();
    let waiting = {
        let peers = peers.clone();
        std::thread::spawn(move || pod(0, &peers, SECRET).map(|(exchange, ..)| exchange))
    };
    let refused = pod_of_rollout(1, &peers, SECRET, "rollout-0")
        .err()
        .unwrap();
    assert!(
        refused.ends_with("it belongs to rollout \"rollout-1\", this pod to rollout \"rollout-0\""),
        "{refused}"
    );
    let (one, ..) = pod(1, &peers, SECRET).unwrap();
    close_both(waiting.join().unwrap().unwrap(), one);
}

/// The pods start together, each learning which of the other's workers
/// have nothing to read: without it, such a worker holds the others'
/// watermarks back until its first message arrives, however long that is.
#[test]
fn pods_start_together_knowing_every_pods_workers_with_nothing_to_read() {
    let ((zero, ..), (one, ..)) = two_pods();
    let (zero, one) = (Arc::new(zero), Arc::new(one));
    let starting = {
        let one = one.clone();
        std::thread::spawn(move || one.start_together(&[1]))
    };
    assert_eq!(zero.start_together(&[]), Ok(vec![1]));
    assert_eq!(starting.join().unwrap(), Ok(vec![1]));
    let (zero, one) = (
        Arc::into_inner(zero).unwrap(),
        Arc::into_inner(one).unwrap(),
    );
    close_both(zero, one);
}

/// A pod may say only that its own workers have nothing to read.
#[test]
fn a_pod_that_names_another_pods_worker_as_ended_fails_the_start() {
    let ((zero, ..), (one, ..)) = two_pods();
    let one = Arc::new(one);
    let starting = {
        let one = one.clone();
        std::thread::spawn(move || one.start_together(&[0]))
    };
    let failure = zero.start_together(&[]).unwrap_err();
    assert!(
        failure.contains("exchange with pod 1: it named worker 0, not one of its own, as ended"),
        "{failure}"
    );
    drop(zero);
    assert!(starting.join().unwrap().is_err());
}

/// A pod that goes away without saying `Bye` fails the other's run.
#[test]
fn a_pod_gone_without_bye_fails_the_other() {
    let ((zero, ..), (one, ..)) = two_pods();
    assert!(one.close(false).is_ok());
    wait_for(|| zero.failure().is_some());
    let failure = zero.close(true).unwrap_err();
    assert!(
        failure
            .contains("exchange with pod 1: the connection closed before the pod's workers ended"),
        "{failure}"
    );
}

#[test]
fn pods_share_out_workers_in_contiguous_ranges() {
    let pods = Pods {
        peers: vec!["a:1".into(), "b:1".into(), "c:1".into()],
        index: 0,
        token: token(SECRET),
    };
    let shares: Vec<_> = (0..3).map(|p| pods.workers_of(p, 8)).collect();
    assert_eq!(shares, vec![0..2, 2..5, 5..8]);
    assert_eq!(pods.pod_of(4, 8), 1);
    assert_eq!(pods.check(), Ok(()));
    let outside = Pods {
        index: 3,
        ..pods.clone()
    };
    assert!(outside.check().unwrap_err().contains("--pod-index 3"));
}
