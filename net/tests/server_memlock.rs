//! Too little locked memory for the executors fails start-up with the fix in
//! the message, before anything is bound.

mod support;

use std::process::Command;
use std::time::Duration;
use support::{run_to_exit, temp_dir, tessera_bin};

#[test]
fn low_memlock_limit_names_the_fix() {
    let data_dir = temp_dir("memlock");
    let mut command = Command::new("sh");
    command.arg("-c").arg(format!(
        "ulimit -l 1024 && exec {} --cores 2 --port 17260 --data-dir {} --io-memory 1mb",
        tessera_bin(),
        data_dir.display()
    ));
    let output = run_to_exit(command, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started anyway: {stderr}");
    assert!(stderr.contains("RLIMIT_MEMLOCK"), "stderr: {stderr}");
    assert!(
        stderr.contains("ulimit -l") && stderr.contains("LimitMEMLOCK="),
        "stderr: {stderr}"
    );
    assert!(stderr.contains("--io-memory"), "stderr: {stderr}");
    let _ = std::fs::remove_dir_all(&data_dir);
}
