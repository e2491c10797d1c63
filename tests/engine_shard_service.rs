//! The README's "Embedding the engine" example, run: a custom shard service
//! with one store per thread (stores are `!Send`: each is created on its own
//! thread), keys routed to shards by hash, writes grouped into one batch per
//! round, and the merger driven between rounds.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;
use tessera_engine::{BatchOp, Error, Store, StoreConfig};

enum Request {
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    Get {
        key: Vec<u8>,
        reply: mpsc::Sender<Option<Vec<u8>>>,
    },
    Len {
        reply: mpsc::Sender<usize>,
    },
}

/// Most ops and bytes one round's batch takes.
const ROUND_OPS_MAX: usize = 1024;
const ROUND_BYTES_MAX: usize = 1 << 20;

/// FNV-1a: any stable hash works, as long as every client routes alike.
fn shard_of(key: &[u8], shards: usize) -> usize {
    let hash = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    (hash % shards as u64) as usize
}

/// One shard's loop: block for a request, take whatever queued behind it as
/// one round, apply the round's writes as one batch, then give the merger a
/// bounded step.
fn run_shard(requests: mpsc::Receiver<Request>) -> Result<(), Error> {
    let mut store = Store::new(StoreConfig::default())?;
    while let Ok(first) = requests.recv() {
        let mut batch = store.new_batch(ROUND_OPS_MAX, ROUND_BYTES_MAX)?;
        let mut next = Some(first);
        while let Some(request) = next.take().or_else(|| requests.try_recv().ok()) {
            match request {
                Request::Set { key, value } => batch.set(&key, &value)?,
                Request::Delete { key } => batch.delete(&key)?,
                Request::Get { key, reply } => {
                    // Read your own writes: the round's batch first, then the store.
                    let value = match batch.get(&key) {
                        Some(BatchOp::Set { value, .. }) => Some(value.to_vec()),
                        Some(BatchOp::Delete) => None,
                        None => store.get(&key).map(<[u8]>::to_vec),
                    };
                    let _ = reply.send(value);
                }
                Request::Len { reply } => {
                    // Counts only applied writes: close the round first.
                    let fresh = store.new_batch(ROUND_OPS_MAX, ROUND_BYTES_MAX)?;
                    store.apply(std::mem::replace(&mut batch, fresh))?;
                    let _ = reply.send(store.len());
                }
            }
            // Leave room for one more op of the largest size this service sends.
            if batch.ops_left() == 0 || batch.bytes_left() < 4096 {
                break;
            }
        }
        store.apply(batch)?;
        if store.merge_needed() {
            store.merge_step(Duration::from_micros(200));
        }
    }
    Ok(())
}

#[test]
fn shards_serve_their_own_keys() {
    let shards = 2;
    let (senders, workers): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| {
            let (sender, receiver) = mpsc::channel();
            (sender, thread::spawn(move || run_shard(receiver)))
        })
        .unzip();
    let route = |key: &[u8]| &senders[shard_of(key, shards)];
    for i in 0..10_000u32 {
        let key = i.to_be_bytes();
        route(&key)
            .send(Request::Set {
                key: key.to_vec(),
                value: vec![i as u8; 32],
            })
            .unwrap();
    }
    for i in (0..10_000u32).step_by(3) {
        let key = i.to_be_bytes();
        route(&key)
            .send(Request::Delete { key: key.to_vec() })
            .unwrap();
    }
    for i in [0u32, 1, 2, 3, 4, 9_999] {
        let key = i.to_be_bytes();
        let (reply, answer) = mpsc::channel();
        route(&key)
            .send(Request::Get {
                key: key.to_vec(),
                reply,
            })
            .unwrap();
        let expected = (i % 3 != 0).then(|| vec![i as u8; 32]);
        assert_eq!(answer.recv().unwrap(), expected, "key {i}");
    }
    let mut total = 0;
    for sender in &senders {
        let (reply, answer) = mpsc::channel();
        sender.send(Request::Len { reply }).unwrap();
        let len = answer.recv().unwrap();
        assert!(len > 0, "keys spread over every shard");
        total += len;
    }
    assert_eq!(total, 10_000 - 3_334);
    drop(senders);
    for worker in workers {
        worker.join().unwrap().unwrap();
    }
}
