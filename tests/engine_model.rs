//! Model-based test of the engine against a `BTreeMap`: long random
//! sequences of batches (sets, expiring sets, in-place sets, deletes), clock
//! moves, snapshots taken and read later, ranges in both directions, merge
//! steps and full compactions at random points, and `clear`.

use proptest::prelude::*;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::Duration;
use tessera_engine::{Entry, Snapshot, Store, StoreConfig};

/// key -> (value, expire_at_ms). Expired entries stay until overwritten or
/// deleted, like unmerged records in the store.
type Model = BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>;

#[derive(Debug, Clone)]
enum WriteOp {
    Set(Vec<u8>, Vec<u8>),
    SetWithExpiry(Vec<u8>, Vec<u8>, u64),
    AllocSet(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

#[derive(Debug, Clone)]
enum Action {
    Apply(Vec<WriteOp>),
    AdvanceClock(u64),
    Get(Vec<u8>),
    Range(Bound<Vec<u8>>, Bound<Vec<u8>>, bool),
    TakeSnapshot,
    ReadSnapshot(usize, Bound<Vec<u8>>, Bound<Vec<u8>>, bool),
    DropSnapshot(usize),
    MergeStep,
    Compact,
    Clear,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    // A small key space so batches and segments overwrite each other often;
    // lengths 0..=3 exercise prefixes and the empty key.
    prop::collection::vec(prop::sample::select(vec![0u8, 1, 2, 0xff]), 0..=3)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..12)
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        key().prop_map(Bound::Included),
        key().prop_map(Bound::Excluded),
    ]
}

fn write_op() -> impl Strategy<Value = WriteOp> {
    prop_oneof![
        4 => (key(), value()).prop_map(|(k, v)| WriteOp::Set(k, v)),
        2 => (key(), value(), 1u64..40).prop_map(|(k, v, ttl)| WriteOp::SetWithExpiry(k, v, ttl)),
        1 => (key(), value()).prop_map(|(k, v)| WriteOp::AllocSet(k, v)),
        3 => key().prop_map(WriteOp::Delete),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        8 => prop::collection::vec(write_op(), 1..12).prop_map(Action::Apply),
        2 => (0u64..25).prop_map(Action::AdvanceClock),
        4 => key().prop_map(Action::Get),
        3 => (bound(), bound(), any::<bool>()).prop_map(|(s, e, r)| Action::Range(s, e, r)),
        2 => Just(Action::TakeSnapshot),
        3 => (0usize..4, bound(), bound(), any::<bool>())
            .prop_map(|(i, s, e, r)| Action::ReadSnapshot(i, s, e, r)),
        1 => (0usize..4).prop_map(Action::DropSnapshot),
        4 => Just(Action::MergeStep),
        1 => Just(Action::Compact),
        1 => Just(Action::Clear),
    ]
}

fn as_ref(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(key) => Bound::Included(key.as_slice()),
        Bound::Excluded(key) => Bound::Excluded(key.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn is_live(entry: &(Vec<u8>, Option<u64>), now_ms: u64) -> bool {
    entry.1.map_or(true, |at| now_ms < at)
}

fn in_range(key: &[u8], start: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>) -> bool {
    let after_start = match start {
        Bound::Included(s) => key >= s.as_slice(),
        Bound::Excluded(s) => key > s.as_slice(),
        Bound::Unbounded => true,
    };
    let before_end = match end {
        Bound::Included(e) => key <= e.as_slice(),
        Bound::Excluded(e) => key < e.as_slice(),
        Bound::Unbounded => true,
    };
    after_start && before_end
}

type Owned = (Vec<u8>, Vec<u8>, Option<u64>);

fn expected(
    model: &Model,
    now_ms: u64,
    start: &Bound<Vec<u8>>,
    end: &Bound<Vec<u8>>,
    reverse: bool,
) -> Vec<Owned> {
    let mut entries: Vec<Owned> = model
        .iter()
        .filter(|(key, entry)| is_live(entry, now_ms) && in_range(key, start, end))
        .map(|(key, (value, at))| (key.clone(), value.clone(), *at))
        .collect();
    if reverse {
        entries.reverse();
    }
    entries
}

fn owned<'a>(entries: impl Iterator<Item = Entry<'a>>) -> Vec<Owned> {
    entries
        .map(|e| (e.key.to_vec(), e.value.to_vec(), e.expire_at_ms))
        .collect()
}

fn read(
    snapshot: &Snapshot,
    start: &Bound<Vec<u8>>,
    end: &Bound<Vec<u8>>,
    reverse: bool,
) -> Vec<Owned> {
    let bounds = (as_ref(start), as_ref(end));
    if reverse {
        owned(snapshot.range_rev(bounds))
    } else {
        owned(snapshot.range(bounds))
    }
}

fn run(actions: Vec<Action>) -> Result<(), TestCaseError> {
    let mut store = Store::new(StoreConfig {
        memory_quota_bytes: 64 << 20,
        batch_ops_max: 16,
        batch_bytes_max: 16 * 64,
        stack_height_max: 3,
        // The shortest budget: merges advance a few dozen records per step, so
        // batches, snapshots and reads interleave with half-done merges.
        merge_step_budget: Duration::from_micros(1),
    })
    .unwrap();
    store.set_now_ms(1_000);
    let mut model = Model::new();
    let mut snapshots: Vec<(Snapshot, Model)> = Vec::new();
    for action in actions {
        let now_ms = store.now_ms();
        match action {
            Action::Apply(ops) => {
                let mut batch = store.new_batch(16, 16 * 64).unwrap();
                for op in &ops {
                    match op {
                        WriteOp::Set(k, v) => {
                            batch.set(k, v).unwrap();
                            model.insert(k.clone(), (v.clone(), None));
                        }
                        WriteOp::SetWithExpiry(k, v, ttl) => {
                            batch.set_with_expiry(k, v, now_ms + ttl).unwrap();
                            model.insert(k.clone(), (v.clone(), Some(now_ms + ttl)));
                        }
                        WriteOp::AllocSet(k, v) => {
                            batch.alloc_set(k, v.len()).unwrap().copy_from_slice(v);
                            model.insert(k.clone(), (v.clone(), None));
                        }
                        WriteOp::Delete(k) => {
                            batch.delete(k).unwrap();
                            model.remove(k);
                        }
                    }
                }
                store.apply(batch).unwrap();
            }
            Action::AdvanceClock(delta) => store.set_now_ms(now_ms + delta),
            Action::Get(k) => {
                let want = model.get(&k).filter(|e| is_live(e, now_ms));
                let got = store.get_entry(&k);
                prop_assert_eq!(
                    got.map(|e| (e.value.to_vec(), e.expire_at_ms)),
                    want.cloned()
                );
            }
            Action::Range(start, end, reverse) => {
                let snapshot = store.snapshot();
                prop_assert_eq!(
                    read(&snapshot, &start, &end, reverse),
                    expected(&model, now_ms, &start, &end, reverse)
                );
            }
            Action::TakeSnapshot => {
                if snapshots.len() == 4 {
                    snapshots.remove(0);
                }
                snapshots.push((store.snapshot(), model.clone()));
            }
            Action::ReadSnapshot(i, start, end, reverse) => {
                if let Some((snapshot, frozen)) = snapshots.get(i) {
                    let then_ms = snapshot.now_ms();
                    prop_assert_eq!(
                        read(snapshot, &start, &end, reverse),
                        expected(frozen, then_ms, &start, &end, reverse)
                    );
                    for key in frozen.keys() {
                        let want = frozen
                            .get(key)
                            .filter(|e| is_live(e, then_ms))
                            .map(|e| e.0.as_slice());
                        prop_assert_eq!(snapshot.get(key), want);
                    }
                }
            }
            Action::DropSnapshot(i) => {
                if i < snapshots.len() {
                    snapshots.remove(i);
                }
            }
            Action::MergeStep => {
                store.merge_step(Duration::from_millis(100));
            }
            Action::Compact => {
                store.compact();
                let live = model.values().filter(|e| is_live(e, now_ms)).count();
                prop_assert_eq!(store.len(), live, "a full merge drops every expired key");
                prop_assert!(store.stats().height <= 1);
            }
            Action::Clear => {
                store.clear();
                model.clear();
            }
        }
        let now_ms = store.now_ms();
        let live = model.values().filter(|e| is_live(e, now_ms)).count();
        prop_assert!(
            store.len() >= live && store.len() <= model.len(),
            "len {} live {live} held {}",
            store.len(),
            model.len()
        );
        prop_assert!(store.stats().height <= tessera_engine::STACK_HEIGHT_LIMIT);
    }
    // The whole content, both directions, at the end.
    let now_ms = store.now_ms();
    let all = (Bound::Unbounded, Bound::Unbounded);
    prop_assert_eq!(
        read(&store.snapshot(), &all.0, &all.1, false),
        expected(&model, now_ms, &all.0, &all.1, false)
    );
    prop_assert_eq!(
        read(&store.snapshot(), &all.0, &all.1, true),
        expected(&model, now_ms, &all.0, &all.1, true)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_a_btreemap(actions in prop::collection::vec(action(), 1..200)) {
        run(actions)?;
    }
}
