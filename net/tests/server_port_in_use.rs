//! A second server on ports another one holds refuses to start and names the
//! port (we bind without SO_REUSEPORT, so the kernel refuses the bind).

mod support;

use std::time::Duration;
use support::{run_to_exit, server_command, temp_dir, Client, Server};

#[test]
fn second_server_on_same_ports_fails_naming_the_port() {
    let server = Server::start(17200, "port-in-use-a", &[]);
    let data_dir = temp_dir("port-in-use-b");
    let output = run_to_exit(
        server_command(17200, &data_dir, &[]),
        Duration::from_secs(20),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "second server started: {stderr}");
    assert!(
        stderr.contains("port 17200 is already in use"),
        "stderr: {stderr}"
    );

    // The first one is unaffected.
    assert_eq!(Client::connect(17200).ping(), b"+PONG\r\n");
    assert_eq!(Client::connect(17201).ping(), b"+PONG\r\n");
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[test]
fn a_port_held_by_anything_else_is_refused_too() {
    // Held by a plain listener on the second core's port.
    let _held = std::net::TcpListener::bind(("127.0.0.1", 17206)).unwrap();
    let data_dir = temp_dir("port-in-use-c");
    let output = run_to_exit(
        server_command(17205, &data_dir, &[]),
        Duration::from_secs(20),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("port 17206"), "stderr: {stderr}");
    let _ = std::fs::remove_dir_all(&data_dir);
}
