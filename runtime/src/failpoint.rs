//! Crash points for tests of the exactly-once protocol: with
//! `STREAMJOB_FAILPOINT=<name>:<checkpoint>` set, the process aborts (as a
//! `kill -9` would stop it: no clean-up, no flushing) when it reaches the
//! named point for that checkpoint. Unset, a failpoint costs one load.

use std::sync::OnceLock;

fn configured() -> &'static Option<(String, u64)> {
    static POINT: OnceLock<Option<(String, u64)>> = OnceLock::new();
    POINT.get_or_init(|| {
        let value = std::env::var("STREAMJOB_FAILPOINT").ok()?;
        let (name, id) = value.split_once(':')?;
        Some((name.to_string(), id.parse().ok()?))
    })
}

/// Whether this is the configured failpoint (for work that only a crash
/// there needs, such as making a partial write durable first).
pub fn armed(name: &str, checkpoint: u64) -> bool {
    matches!(configured(), Some((point, id)) if point == name && *id == checkpoint)
}

/// Whether a named thing (a thread, say `worker-1`) is the configured
/// failpoint: `STREAMJOB_FAILPOINT=<name>:<n>` matches `<name>`'s thing
/// whose name ends in `-<n>`.
pub fn armed_for(name: &str, thing: &str) -> bool {
    matches!(configured(), Some((point, id))
        if point == name && thing.ends_with(&format!("-{id}")))
}

/// Aborts the process here if this is the configured failpoint.
pub fn fail_at(name: &str, checkpoint: u64) {
    if armed(name, checkpoint) {
        crate::notice!("failpoint {name}:{checkpoint} reached, aborting");
        std::process::abort();
    }
}

/// Whether a worker should fail (return an error, as a failing connector
/// would) at this point: for tests of restarts.
pub fn error_at(name: &str, checkpoint: u64) -> bool {
    armed(name, checkpoint)
}

/// Waits here, if this is the configured failpoint, until `released` says
/// so (at most a minute): a stalled upload, for tests of the checkpoint
/// timeout, that ends when its checkpoint is abandoned, however long the
/// timeout is.
pub fn stall_until(name: &str, checkpoint: u64, released: impl Fn() -> bool) {
    if armed(name, checkpoint) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !released() && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
