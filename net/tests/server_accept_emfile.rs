//! Running out of file descriptors (accept fails with EMFILE) pauses
//! accepting instead of bringing the core down: connections already open keep
//! working, and once descriptors are free again new clients are served.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{temp_dir, tessera_bin, Client};

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn emfile_pauses_accepting_and_recovers() {
    let data_dir = temp_dir("emfile");
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec {} --cores 1 --port 17270 --data-dir {} --memory-limit 64mb",
            tessera_bin(),
            data_dir.display()
        ))
        .stdout(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Kill(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut first = loop {
        if let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", 17270)) {
            drop(stream);
            break Client::connect(17270);
        }
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(first.ping(), b"+PONG\r\n");

    // Far more connections than the server has descriptors for: the kernel
    // completes them into the backlog, accept then fails with EMFILE.
    let flood: Vec<_> = (0..150)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", 17270)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        first.ping(),
        b"+PONG\r\n",
        "an open connection keeps working"
    );
    drop(flood);

    // Descriptors free up as the flood closes; accepting resumes.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut client = Client::connect(17270);
        client.command(&[b"PING"]);
        let mut reply = [0u8; 7];
        use std::io::Read;
        client
            .stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        if client.stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n" {
            break;
        }
        assert!(Instant::now() < deadline, "accepting never resumed");
    }
    assert_eq!(first.ping(), b"+PONG\r\n");
    let _ = std::fs::remove_dir_all(&data_dir);
}
