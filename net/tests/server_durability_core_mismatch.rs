//! A data directory made for 2 cores refuses to start with 1, naming both
//! counts, and is left untouched.

mod support;

use std::time::Duration;
use support::{run_to_exit, server_command, Server};

const BASE_PORT: u16 = 16040;

#[test]
fn a_different_core_count_is_refused_naming_both() {
    let server = Server::start(BASE_PORT, "durability-mismatch", &[]);
    let (status, data_dir) = server.stop_keeping_data(libc::SIGTERM);
    assert!(status.success());
    let manifest = std::fs::read(data_dir.join("MANIFEST")).unwrap();

    let output = run_to_exit(
        server_command(BASE_PORT, &data_dir, &["--cores", "1"]),
        Duration::from_secs(20),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("created for 2 cores") && stderr.contains("1 were requested"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(data_dir.join("MANIFEST")).unwrap(), manifest);
    std::fs::remove_dir_all(&data_dir).unwrap();
}
