//! The store against a plain map: whatever mix of updates, removals,
//! evictions and checkpoints, it holds the same keys and values, and a
//! checkpoint's files hold exactly the values at the checkpoint, however
//! late its write runs (it runs on the upload thread in a job).

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const MAX_PARALLELISM: u32 = 8;

#[derive(Debug, Clone)]
enum Op {
    Add(i64, u64),
    Remove(i64),
    /// Takes a checkpoint; its write runs later, at a `Write`.
    Checkpoint,
    /// Runs the oldest checkpoint write not yet run.
    Write,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..40i64, 1..100u64).prop_map(|(k, v)| Op::Add(k, v)),
        2 => (0..40i64).prop_map(Op::Remove),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Write),
    ]
}

/// The integer of a `Key::int` key.
fn int_of(key: &Key) -> i64 {
    key.json_parts()
        .next()
        .and_then(|v| v.as_i64())
        .expect("an int key")
}

/// Everything in a checkpoint's files, for all key groups.
fn read_all(dir: &Path) -> BTreeMap<i64, u64> {
    let mut out = BTreeMap::new();
    read_checkpoint(dir, 0, u16::MAX, |key: Key, value: u64| {
        out.insert(int_of(&key), value);
        Ok(())
    })
    .unwrap();
    out
}

fn contents(store: &mut KeyedStore<u64>) -> BTreeMap<i64, u64> {
    let mut out = BTreeMap::new();
    store
        .for_each(|key, value| {
            assert!(out.insert(int_of(key), *value).is_none(), "key twice");
        })
        .unwrap();
    out
}

/// Takes a checkpoint of `store` into `dir` and runs its write at once.
fn checkpoint(store: &mut KeyedStore<u64>, dir: &Path) -> Vec<PathBuf> {
    let files = store.checkpoint().unwrap().run(dir).unwrap();
    store.wait_for_writes().unwrap();
    files
}

/// A store in `dir/db` holding `value(k)` for each key `k` of `keys`.
fn store_with(
    dir: &Path,
    keys: std::ops::Range<i64>,
    value: impl Fn(i64) -> u64,
) -> KeyedStore<u64> {
    let mut store = KeyedStore::<u64>::create(&dir.join("db"), 1_000_000, MAX_PARALLELISM).unwrap();
    for k in keys {
        *store.get_or_default(&Key::int(k)).unwrap() = value(k);
    }
    store
}

/// Runs the oldest pending checkpoint write and checks its files against
/// the contents at its barrier.
fn run_oldest(
    pending: &mut std::collections::VecDeque<(StateCheckpoint, PathBuf, BTreeMap<i64, u64>)>,
) -> Result<(), TestCaseError> {
    if let Some((write, at, expected)) = pending.pop_front() {
        let files = write.run(&at).unwrap();
        prop_assert!(files.iter().any(|f| f.ends_with("CURRENT")));
        prop_assert_eq!(&read_all(&at), &expected);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]
    #[test]
    fn store_matches_a_map(ops in proptest::collection::vec(op(), 1..200), max_hot in 1usize..12) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = KeyedStore::<u64>::create(&dir.path().join("db"), max_hot, MAX_PARALLELISM).unwrap();
        let mut model = BTreeMap::new();
        let mut pending = std::collections::VecDeque::new();
        let mut checkpoints = 0;
        for op in ops {
            match op {
                Op::Add(k, v) => {
                    *store.get_or_default(&Key::int(k)).unwrap() += v;
                    *model.entry(k).or_insert(0) += v;
                }
                Op::Remove(k) => {
                    store.remove(&Key::int(k)).unwrap();
                    model.remove(&k);
                }
                Op::Checkpoint => {
                    checkpoints += 1;
                    let at = dir.path().join(format!("chk-{checkpoints}"));
                    pending.push_back((store.checkpoint().unwrap(), at, model.clone()));
                }
                Op::Write => run_oldest(&mut pending)?,
            }
            // The upload thread runs the writes while the worker waits for
            // them (it would block here otherwise).
            while store.must_wait_for_writes() && !pending.is_empty() {
                run_oldest(&mut pending)?;
            }
            store.enforce_budget().unwrap();
            prop_assert_eq!(store.len(), model.len() as u64);
            prop_assert_eq!(&contents(&mut store), &model);
        }
        while !pending.is_empty() {
            run_oldest(&mut pending)?;
        }
        store.wait_for_writes().unwrap();
        prop_assert_eq!(&contents(&mut store), &model);
    }
}

#[test]
fn a_checkpoint_reads_back_by_key_group_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = store_with(dir.path(), 0..200, |k| k as u64);
    let at = dir.path().join("chk");
    checkpoint(&mut store, &at);
    let mut seen = 0;
    for group in 0..MAX_PARALLELISM as u16 {
        read_checkpoint(&at, group, group, |key: Key, value: u64| {
            assert_eq!(key.key_group(MAX_PARALLELISM), group);
            assert_eq!(key, Key::int(value as i64));
            seen += 1;
            Ok(())
        })
        .unwrap();
    }
    assert_eq!(seen, 200);
}

#[test]
fn an_unchanged_store_checkpoints_the_same_sst_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = store_with(dir.path(), 0..500, |_| 1);
    let ssts = |files: Vec<PathBuf>| -> Vec<String> {
        files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sst"))
            .collect()
    };
    let first = ssts(checkpoint(&mut store, &dir.path().join("chk-1")));
    // Only reading: nothing changes, so the second checkpoint has no new file.
    let second = ssts(checkpoint(&mut store, &dir.path().join("chk-2")));
    assert!(!first.is_empty());
    assert_eq!(first, second);
    // One change: the old files stay, one new file holds it.
    *store.get_or_default(&Key::int(7)).unwrap() = 2;
    let third = ssts(checkpoint(&mut store, &dir.path().join("chk-3")));
    assert!(
        first.iter().all(|f| third.contains(f)),
        "{first:?} {third:?}"
    );
    assert_eq!(third.len(), first.len() + 1);
}

/// Changes of 10,000 keys and more are ingested as an SST file rather than
/// written through the memtable: the same contents either way.
#[test]
fn large_changes_are_ingested_with_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = store_with(dir.path(), 0..30_000, |k| k as u64);
    let mut model: BTreeMap<i64, u64> = (0..30_000).map(|k| (k, k as u64)).collect();
    checkpoint(&mut store, &dir.path().join("chk-1"));
    assert_eq!(read_all(&dir.path().join("chk-1")), model);
    // Remove two thirds, change the rest, add new keys: 30,000 changes.
    for k in 0..30_000 {
        if k % 3 == 0 {
            *store.get_or_default(&Key::int(k)).unwrap() += 1;
            *model.get_mut(&k).unwrap() += 1;
        } else {
            store.remove(&Key::int(k)).unwrap();
            model.remove(&k);
        }
    }
    for k in 30_000..40_000 {
        *store.get_or_default(&Key::int(k)).unwrap() = 7;
        model.insert(k, 7);
    }
    // A removed key written again before the checkpoint keeps its new value.
    *store.get_or_default(&Key::int(1)).unwrap() = 99;
    model.insert(1, 99);
    checkpoint(&mut store, &dir.path().join("chk-2"));
    assert_eq!(read_all(&dir.path().join("chk-2")), model);
    assert_eq!(contents(&mut store), model);
    assert_eq!(store.len(), model.len() as u64);
}
