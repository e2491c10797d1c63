//! Every request is bounded in time: a seed that accepts but never answers
//! fails bootstrap with a typed timeout, and a node that stops answering
//! (CLIENT PAUSE) fails the request with `Timeout` naming that node, after
//! the configured number of retries, well within the retries' time budget.

mod peers;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use peers::{addr, redis_cli, run_glommio, RedisCluster};
use tessera_net::client::{Client, ClientConfig, ClientError};
use tessera_net::cluster::key_slot;

const PORTS: [u16; 3] = [18031, 18032, 18033];
const SILENT_PORT: u16 = 18034;
const REQUEST_TIMEOUT: Duration = Duration::from_millis(200);

fn config(retries_max: usize) -> ClientConfig {
    ClientConfig {
        request_timeout: REQUEST_TIMEOUT,
        connect_timeout: REQUEST_TIMEOUT,
        tend_interval: Duration::from_secs(3600),
        retries_max,
    }
}

#[test]
fn silent_seed_and_paused_node_time_out() {
    // A listener that accepts connections (the kernel does) but never reads.
    let silent = TcpListener::bind(addr(SILENT_PORT)).expect("binding the silent port");
    let started = Instant::now();
    let error =
        run_glommio(|| async { Client::connect(&[addr(SILENT_PORT)], config(0)).await.err() })
            .expect("bootstrap from a silent seed fails");
    match error {
        ClientError::NoSeedReachable { tried: 1, last } => {
            assert!(
                matches!(*last, ClientError::Timeout { node, .. } if node == addr(SILENT_PORT)),
                "{last}"
            )
        }
        other => panic!("expected NoSeedReachable(Timeout), got {other}"),
    }
    assert!(
        started.elapsed() < 10 * REQUEST_TIMEOUT,
        "bootstrap gave up promptly"
    );
    drop(silent);

    let cluster = RedisCluster::start(PORTS);
    let key = b"timeout:key";
    let owner = cluster.owner_port(key_slot(key));
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (paused_tx, paused_rx) = std::sync::mpsc::channel::<()>();
    let client_thread = std::thread::spawn(move || {
        run_glommio(move || async move {
            let client = Client::connect(&[addr(PORTS[0])], config(1))
                .await
                .expect("bootstrap");
            client.set(key, b"v").await.expect("SET before the pause");
            tx.send(()).expect("ready");
            glommio::executor()
                .spawn_blocking(move || paused_rx.recv().expect("paused"))
                .await;
            let started = Instant::now();
            let error = client
                .get(key)
                .await
                .expect_err("a paused node cannot answer");
            let elapsed = started.elapsed();
            assert!(
                matches!(error, ClientError::Timeout { node, .. } if node == addr(owner)),
                "{error}"
            );
            // One try plus one retry, each bounded by the request timeout
            // (plus a refresh between them, also bounded).
            assert!(elapsed >= REQUEST_TIMEOUT, "{elapsed:?}");
            assert!(elapsed < 8 * REQUEST_TIMEOUT, "{elapsed:?}");
        })
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("client ready");
    assert_eq!(redis_cli(owner, &["CLIENT", "PAUSE", "3000", "ALL"]), "OK");
    paused_tx.send(()).expect("paused");
    client_thread.join().expect("client thread");
    assert_eq!(redis_cli(owner, &["CLIENT", "UNPAUSE"]), "OK");
}
