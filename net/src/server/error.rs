use std::fmt;
use std::io;

/// Why the server could not start or a core stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// Another process holds the port (we bind without SO_REUSEPORT so the
    /// kernel tells us).
    PortInUse {
        addr: std::net::SocketAddr,
    },
    Bind {
        addr: std::net::SocketAddr,
        source: io::Error,
    },
    /// RLIMIT_MEMLOCK is below what the executors lock.
    MemlockTooLow {
        limit_bytes: u64,
        needed_bytes: u64,
        cores: u16,
        io_memory_bytes: u64,
    },
    /// The data directory cannot be opened: unreadable manifest, or made
    /// for a different number of cores (the message names both counts).
    Persist {
        source: tessera_engine::PersistError,
    },
    Executor {
        core: u16,
        reason: String,
    },
    Ring {
        what: &'static str,
        source: io::Error,
    },
    Signals {
        source: io::Error,
    },
    /// A core's thread ended without acknowledging shutdown.
    CoreDied {
        core: u16,
    },
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::PortInUse { addr } => write!(
                f,
                "port {} is already in use (binding {addr}); is another tessera or redis running? \
                 choose another --port",
                addr.port()
            ),
            ServerError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            ServerError::MemlockTooLow {
                limit_bytes,
                needed_bytes,
                cores,
                io_memory_bytes,
            } => {
                write!(
                    f,
                    "locked-memory limit (RLIMIT_MEMLOCK) is {} KiB but {cores} executors with \
                     --io-memory {} KiB need about {} KiB; raise it with `ulimit -l {}` (shell), \
                     `LimitMEMLOCK={}` (systemd) or `--ulimit memlock=...` (docker), or lower \
                     --io-memory / --cores",
                    limit_bytes / 1024,
                    io_memory_bytes / 1024,
                    needed_bytes / 1024,
                    needed_bytes.div_ceil(1024),
                    needed_bytes,
                )
            }
            ServerError::Persist { source } => write!(f, "data directory: {source}"),
            ServerError::Executor { core, reason } => write!(f, "core {core}: {reason}"),
            ServerError::Ring { what, source } => write!(f, "io_uring {what}: {source}"),
            ServerError::Signals { source } => write!(f, "cannot set up signal handling: {source}"),
            ServerError::CoreDied { core } => write!(f, "core {core} stopped unexpectedly"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Bind { source, .. }
            | ServerError::Ring { source, .. }
            | ServerError::Signals { source } => Some(source),
            ServerError::Persist { source } => Some(source),
            _ => None,
        }
    }
}
