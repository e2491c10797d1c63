//! Against a real two-core Tessera: a request to a server that stops
//! answering (the process is stopped with SIGSTOP, so its sockets stay open
//! and accept bytes, but no core runs) fails with `Timeout` naming the
//! owning core's address, within the retries' time budget; once the process
//! continues (SIGCONT) the same client serves requests again.

mod peers;
mod support;

use std::time::{Duration, Instant};

use peers::{addr, run_glommio};
use support::Server;
use tessera_net::client::{Client, ClientConfig, ClientError};
use tessera_net::cluster::key_slot;

const BASE_PORT: u16 = 18210;
const REQUEST_TIMEOUT: Duration = Duration::from_millis(200);

#[test]
fn stopped_server_times_out_then_recovers() {
    let server = Server::start(BASE_PORT, "client-tessera-timeouts", &[]);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let (stopped_tx, stopped_rx) = std::sync::mpsc::channel::<()>();
    let (timed_out_tx, timed_out_rx) = std::sync::mpsc::channel::<()>();
    let (continued_tx, continued_rx) = std::sync::mpsc::channel::<()>();
    let client_thread = std::thread::spawn(move || {
        run_glommio(move || async move {
            let config = ClientConfig {
                request_timeout: REQUEST_TIMEOUT,
                connect_timeout: REQUEST_TIMEOUT,
                tend_interval: Duration::from_secs(3600),
                retries_max: 1,
            };
            let client = Client::connect(&[addr(BASE_PORT)], config)
                .await
                .expect("bootstrap");
            let key = b"timeout:key";
            let owner = client.slot_map().owner(key_slot(key)).expect("owned");
            client.set(key, b"v").await.expect("SET before the stop");
            ready_tx.send(()).expect("ready");
            glommio::executor()
                .spawn_blocking(move || stopped_rx.recv().expect("stopped"))
                .await;
            let started = Instant::now();
            let error = client
                .get(key)
                .await
                .expect_err("a stopped server can't answer");
            let elapsed = started.elapsed();
            assert!(
                matches!(error, ClientError::Timeout { node, .. } if node == owner),
                "{error}"
            );
            assert!(elapsed >= REQUEST_TIMEOUT, "{elapsed:?}");
            assert!(elapsed < 8 * REQUEST_TIMEOUT, "{elapsed:?}");
            timed_out_tx.send(()).expect("timed out");
            glommio::executor()
                .spawn_blocking(move || continued_rx.recv().expect("continued"))
                .await;
            let value = client.get(key).await.expect("served again after SIGCONT");
            assert_eq!(value.as_deref(), Some(b"v".as_slice()));
        })
    });
    ready_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("client ready");
    server.signal(libc::SIGSTOP);
    wait_all_threads_stopped(server.pid());
    stopped_tx.send(()).expect("stopped");
    let timed_out = timed_out_rx.recv_timeout(Duration::from_secs(20));
    server.signal(libc::SIGCONT);
    timed_out.expect("the request timed out");
    continued_tx.send(()).expect("continued");
    client_thread.join().expect("client thread");
}

/// `kill(SIGSTOP)` returns before the signal has stopped every thread: a
/// thread still on its way back to user space can answer one more request.
/// Waits until every thread of `pid` reports state `T` (stopped).
fn wait_all_threads_stopped(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("proc tasks");
        let all_stopped = tasks.flatten().all(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // The state follows the parenthesised command name.
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
        });
        if all_stopped {
            return;
        }
        assert!(Instant::now() < deadline, "server threads did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
}
