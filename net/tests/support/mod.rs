//! Shared by the black-box server tests: start the real `tessera` binary
//! (cargo builds it for this package's integration tests and tells us where
//! through `CARGO_BIN_EXE_tessera`, so no path guessing), talk RESP to it,
//! and kill it when the test ends however it ends.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

pub fn tessera_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tessera")
}

/// A client binary the test needs; missing means a loud failure, not a skip.
pub fn require_tool(name: &str) -> PathBuf {
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .expect("sh runs");
    let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(
        output.status.success() && !path.is_empty(),
        "`{name}` is required by this test and is not installed (see .ci/run)"
    );
    PathBuf::from(path)
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessera-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running server, killed on drop.
pub struct Server {
    child: Option<Child>,
    pub base_port: u16,
    pub data_dir: PathBuf,
}

pub fn server_command(base_port: u16, data_dir: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(tessera_bin());
    command
        .args(["--cores", "2", "--port", &base_port.to_string()])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--memory-limit", "256mb"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    command
}

impl Server {
    /// Starts two cores on `base_port` and `base_port + 1` and waits until
    /// both accept connections.
    pub fn start(base_port: u16, tag: &str, extra: &[&str]) -> Server {
        Server::start_in(base_port, temp_dir(tag), extra)
    }

    /// [`Server::start`] on an existing data directory (a restart).
    pub fn start_in(base_port: u16, data_dir: PathBuf, extra: &[&str]) -> Server {
        let child = server_command(base_port, &data_dir, extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tessera");
        let mut server = Server {
            child: Some(child),
            base_port,
            data_dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        for port in [base_port, base_port + 1] {
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!("tessera exited during start-up: {status}");
                }
                assert!(
                    Instant::now() < deadline,
                    "tessera did not listen on {port}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        server
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: signals our own child.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "tessera did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Server {
    /// Sends `signal`, waits for the exit and hands the data directory
    /// back, kept on disk for a restart.
    pub fn stop_keeping_data(mut self, signal: i32) -> (ExitStatus, PathBuf) {
        self.signal(signal);
        let status = self.wait_exit(Duration::from_secs(30));
        wait_ports_free(self.base_port, Duration::from_secs(10));
        (status, std::mem::take(&mut self.data_dir))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.data_dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// Waits until both cores' ports can be bound again. The kernel tears an
/// exited process's io_uring down asynchronously, and the listening sockets
/// the ring still references stay in LISTEN for a moment after the process
/// is reaped; a restart on the same ports must wait for that.
pub fn wait_ports_free(base_port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    for port in [base_port, base_port + 1] {
        while std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "port {port} still held {timeout:?} after the server exited"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Runs the binary to completion (for start-up failures), with a timeout.
pub fn run_to_exit(mut command: Command, timeout: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tessera");
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tessera kept running; expected it to refuse to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A plain RESP connection.
pub struct Client {
    pub stream: TcpStream,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client { stream }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Encodes and sends one command.
    pub fn command(&mut self, args: &[&[u8]]) {
        let bytes = encode(args);
        self.send(&bytes);
    }

    /// Reads exactly `len` bytes.
    pub fn read_exact(&mut self, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        self.stream.read_exact(&mut buf).unwrap();
        buf
    }

    /// Reads one line-shaped reply (`+`, `-`, `:`), including CRLF.
    pub fn read_line(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            let n = self.stream.read(&mut byte).unwrap();
            assert_eq!(n, 1, "connection closed mid-reply after {line:?}");
            line.push(byte[0]);
        }
        line
    }

    /// Reads until the server closes the connection.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        match self.stream.read_to_end(&mut all) {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(error) => panic!("read failed: {error}"),
        }
        all
    }

    /// Reads one bulk-string reply; `None` for nil. Panics on anything
    /// else, showing it.
    pub fn read_bulk(&mut self) -> Option<Vec<u8>> {
        let line = self.read_line();
        assert!(
            line.starts_with(b"$"),
            "expected a bulk string, got {}",
            String::from_utf8_lossy(&line)
        );
        let len: i64 = std::str::from_utf8(&line[1..line.len() - 2])
            .unwrap()
            .parse()
            .unwrap();
        if len < 0 {
            return None;
        }
        let mut body = self.read_exact(len as usize + 2);
        body.truncate(len as usize);
        Some(body)
    }

    pub fn ping(&mut self) -> Vec<u8> {
        self.command(&[b"PING"]);
        self.read_line()
    }
}

pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    tessera_net::client::resp::encode_command(&mut out, args);
    out
}

/// The port of the core owning `key` on a node of `cores` cores.
pub fn port_for_key(base_port: u16, cores: u16, key: &[u8]) -> u16 {
    let slot = tessera_net::cluster::key_slot(key);
    base_port + tessera_net::cluster::core_for_slot(slot, cores)
}

/// A tmpfs mounted for the test, unmounted on drop.
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_option` (e.g. `size=2m`) at `path`: a disk
    /// that fills up (needs root, as CI runs).
    pub fn mount(path: &Path, size_option: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", size_option, "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs failed ({status}); this test needs root"
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }
}

/// A small disk for a server's data (see [`Tmpfs`]) with `filler_bytes`
/// of it taken by a file a test deletes to free space again.
pub struct SmallDisk {
    pub data_dir: PathBuf,
    pub filler: PathBuf,
    /// Unmounted last, after the test's server is gone.
    _tmpfs: Tmpfs,
}

impl SmallDisk {
    /// A tmpfs of `size_option` under the temp dir, named after `name`
    /// and this process.
    pub fn mount(name: &str, size_option: &str, filler_bytes: usize) -> SmallDisk {
        let mount_point =
            std::env::temp_dir().join(format!("tessera-{name}-{}", std::process::id()));
        let tmpfs = Tmpfs::mount(&mount_point, size_option);
        let filler = tmpfs.path.join("filler");
        std::fs::write(&filler, vec![0u8; filler_bytes]).unwrap();
        SmallDisk {
            data_dir: tmpfs.path.join("data"),
            filler,
            _tmpfs: tmpfs,
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
