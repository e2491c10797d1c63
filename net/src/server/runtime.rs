//! Start-up, signals and shutdown: everything the main thread does.
//!
//! Order matters: check the locked-memory limit, resolve the announced
//! address, create the data directories and bind every port on the main
//! thread first, so any of those failing stops start-up with a clear message
//! before a single executor exists. Then block SIGINT/SIGTERM (the executors
//! inherit the mask, so signals only ever reach the main thread's
//! `sigtimedwait`), start one pinned executor per core, and wait.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

use super::control::Control;
use super::error::ServerError;
use super::event_loop::{build_ring, serve, CoreParams};
use crate::config::Config;
use crate::handler::{Handler, NodeTopology, ShardConfig};
use tessera_engine::DataDir;

/// Listen backlog per port (std's default of 128 drops bursts of connects).
pub const LISTEN_BACKLOG: i32 = 1024;
/// glommio locks about this many times `io_memory` per executor.
pub const IO_MEMORY_LOCK_FACTOR: u64 = 3;
/// How often the main thread looks at the cores while waiting for a signal.
pub const CONTROL_POLL_MS: u64 = 50;

/// Builds one core's command layer on that core's thread.
pub type HandlerResult<H> = Result<H, String>;

/// CPUs this process may run on, in order (the affinity mask, which is what
/// "online" means for us: a CPU we may not use cannot host an executor).
pub fn usable_cpus() -> Vec<usize> {
    // SAFETY: zeroed cpu_set_t is a valid empty set; sched_getaffinity
    // fills it and we check the result.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// RLIMIT_MEMLOCK must cover what the executors lock.
pub fn check_memlock(cores: u16, io_memory_bytes: u64) -> Result<(), ServerError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: fills a live rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return Ok(()); // Cannot tell; glommio will complain itself.
    }
    let needed_bytes = u64::from(cores) * IO_MEMORY_LOCK_FACTOR * io_memory_bytes;
    if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < needed_bytes {
        return Err(ServerError::MemlockTooLow {
            limit_bytes: limit.rlim_cur,
            needed_bytes,
            cores,
            io_memory_bytes,
        });
    }
    Ok(())
}

/// The address clients are told to connect to: `--announce-ip`, else the
/// bind address, else (bound to every interface) the first non-loopback
/// interface address of the same family, else loopback. Never unspecified.
pub fn announce_ip(config: &Config) -> IpAddr {
    if let Some(ip) = config.announce_ip {
        return ip;
    }
    if !config.bind.is_unspecified() {
        return config.bind;
    }
    let want_v4 = config.bind.is_ipv4();
    first_interface_ip(want_v4).unwrap_or(if want_v4 {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    })
}

fn first_interface_ip(want_v4: bool) -> Option<IpAddr> {
    let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we walk read-only and free.
    unsafe {
        if libc::getifaddrs(&mut addrs) != 0 {
            return None;
        }
        let mut found = None;
        let mut cursor = addrs;
        while !cursor.is_null() && found.is_none() {
            let entry = &*cursor;
            cursor = entry.ifa_next;
            let up = entry.ifa_flags & libc::IFF_UP as u32 != 0;
            let loopback = entry.ifa_flags & libc::IFF_LOOPBACK as u32 != 0;
            if entry.ifa_addr.is_null() || !up || loopback {
                continue;
            }
            let family = i32::from((*entry.ifa_addr).sa_family);
            if want_v4 && family == libc::AF_INET {
                let sin = &*(entry.ifa_addr as *const libc::sockaddr_in);
                found = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))));
            } else if !want_v4 && family == libc::AF_INET6 {
                let sin6 = &*(entry.ifa_addr as *const libc::sockaddr_in6);
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                // Link-local addresses need a scope id clients do not have.
                if ip.segments()[0] & 0xffc0 != 0xfe80 {
                    found = Some(IpAddr::V6(ip));
                }
            }
        }
        libc::freeifaddrs(addrs);
        found
    }
}

/// Binds core `i`'s port for every core. std binds with SO_REUSEADDR only,
/// never SO_REUSEPORT, so a port held by another listener fails here.
pub fn bind_listeners(config: &Config) -> Result<Vec<TcpListener>, ServerError> {
    (0..config.cores)
        .map(|core| {
            let addr = SocketAddr::new(config.bind, config.port + core);
            let listener = TcpListener::bind(addr).map_err(|source| {
                if source.kind() == std::io::ErrorKind::AddrInUse {
                    ServerError::PortInUse { addr }
                } else {
                    ServerError::Bind { addr, source }
                }
            })?;
            // SAFETY: re-listening on a bound listener only changes the
            // backlog.
            unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) };
            Ok(listener)
        })
        .collect()
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: initialises a sigset_t we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Waits up to `timeout` for SIGINT/SIGTERM; returns the signal.
fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let spec = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: valid set and timespec; info may be null.
    let signal = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &spec) };
    (signal > 0).then_some(signal)
}

/// Runs the server until a signal stops it. `make_handler` builds each
/// core's command layer on that core's thread, inside its executor (opening
/// a durable store is asynchronous I/O).
pub fn run<H, F, Fut>(config: &Config, make_handler: F) -> Result<(), ServerError>
where
    H: Handler + 'static,
    F: Fn(ShardConfig) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult<H>> + 'static,
{
    check_memlock(config.cores, config.io_memory_bytes)?;
    let cpus = usable_cpus();
    assert!(
        usize::from(config.cores) <= cpus.len(),
        "config validated cores against usable CPUs"
    );
    let topology = NodeTopology {
        announce_ip: announce_ip(config),
        base_port: config.port,
        cores: config.cores,
    };
    assert!(!topology.announce_ip.is_unspecified());
    // Once, here: a core-count mismatch must stop start-up before any core
    // opens (or creates) a store.
    let data_dir = DataDir::open_or_create(&config.data_dir, u32::from(config.cores))
        .map_err(|source| ServerError::Persist { source })?;
    let data_dirs: Vec<PathBuf> = (0..u32::from(config.cores))
        .map(|core| data_dir.core_dir(core))
        .collect();
    let listeners = bind_listeners(config)?;

    let signals = signal_set();
    // SAFETY: blocks two signals for this thread; threads spawned after this
    // inherit the mask.
    let masked = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut()) };
    if masked != 0 {
        return Err(ServerError::Signals {
            source: std::io::Error::from_raw_os_error(masked),
        });
    }

    let control =
        Arc::new(Control::new(config.cores).map_err(|source| ServerError::Signals { source })?);
    let make_handler = Arc::new(make_handler);
    let mut executors = Vec::with_capacity(usize::from(config.cores));
    for (core, (listener, data_dir)) in (0..config.cores).zip(listeners.into_iter().zip(data_dirs))
    {
        let spawned = spawn_core(
            core,
            cpus[usize::from(core)],
            listener,
            data_dir,
            config,
            topology.clone(),
            control.clone(),
            make_handler.clone(),
        );
        match spawned {
            Ok(handle) => executors.push(handle),
            Err(error) => {
                control.state.request_shutdown();
                control.wake_all();
                for handle in executors {
                    handle.join().ok();
                }
                return Err(error);
            }
        }
    }

    // Start-up: every core ready, or one failed.
    while !control.state.all_ready() && !control.state.any_failed() {
        if wait_signal(&signals, Duration::from_millis(CONTROL_POLL_MS)).is_some() {
            control.state.request_shutdown();
            control.wake_all();
        }
    }
    let mut failed = control.state.any_failed();
    if !failed && control.state.start_running() {
        tracing::info!(
            "tessera {} ready: {} cores, {} handler, durability {:?}, data {}, announce {}",
            env!("CARGO_PKG_VERSION"),
            config.cores,
            if config.ceiling {
                "ceiling (+OK)"
            } else {
                "shard"
            },
            config.durability,
            config.data_dir.display(),
            topology.announce_ip,
        );
        for core in 0..config.cores {
            tracing::info!(
                "core {core} (cpu {}): listening on {}:{}",
                cpus[usize::from(core)],
                config.bind,
                config.port + core
            );
        }
    }

    // Running: wait for a signal or a core's failure.
    let mut signalled = false;
    while !control.state.all_stopped() {
        if let Some(signal) = wait_signal(&signals, Duration::from_millis(CONTROL_POLL_MS)) {
            if control.state.request_shutdown() || !signalled {
                signalled = true;
                tracing::info!(
                    signal,
                    "shutting down: finishing in-flight requests, then committing"
                );
                control.wake_all();
            } else {
                tracing::warn!(signal, "second signal: exiting at once");
                std::process::exit(128 + signal);
            }
        }
        if control.state.any_failed() && !control.state.shutdown_requested() {
            failed = true;
            tracing::error!("a core failed; shutting the others down");
            control.state.request_shutdown();
            control.wake_all();
        }
    }

    let mut first_error = None;
    for (core, handle) in (0..config.cores).zip(executors) {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(core, %error, "core stopped with an error");
                first_error.get_or_insert(error);
            }
            Err(error) => {
                tracing::error!(core, %error, "core thread failed");
                first_error.get_or_insert(ServerError::CoreDied { core });
            }
        }
        let stats = &control.stats[usize::from(core)];
        tracing::info!(
            core,
            accepted = stats.accepted.load(Ordering::Relaxed),
            rejected = stats.rejected.load(Ordering::Relaxed),
            rounds = stats.rounds.load(Ordering::Relaxed),
            "core stopped"
        );
    }
    match first_error {
        Some(error) => Err(error),
        None if failed => Err(ServerError::CoreDied { core: 0 }),
        None => {
            tracing::info!("shutdown complete");
            Ok(())
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn spawn_core<H, F, Fut>(
    core: u16,
    cpu: usize,
    listener: TcpListener,
    data_dir: PathBuf,
    config: &Config,
    topology: NodeTopology,
    control: Arc<Control>,
    make_handler: Arc<F>,
) -> Result<glommio::ExecutorJoinHandle<Result<(), ServerError>>, ServerError>
where
    H: Handler + 'static,
    F: Fn(ShardConfig) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult<H>> + 'static,
{
    let requirepass = config.requirepass.clone();
    let memory_limit_bytes =
        usize::try_from(config.memory_limit_per_core_bytes()).unwrap_or(usize::MAX);
    let durability = config.durability;
    let flush_interval_ms = config.flush_interval_ms;
    let tolerant_recovery = config.tolerant_recovery;
    let max_clients = config.max_clients;
    LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .name(&format!("tessera-core-{core}"))
        .io_memory(config.io_memory_bytes as usize)
        .spawn(move || async move {
            // Whatever happens below, panics included, the main thread hears
            // that this core is done.
            let mut acknowledgement = Acknowledgement {
                control: control.clone(),
                sent: false,
            };
            let shard_config = ShardConfig {
                core,
                topology: Rc::new(topology),
                requirepass,
                memory_limit_bytes,
                durability,
                flush_interval_ms,
                tolerant_recovery,
                data_dir,
            };
            let started = make_handler(shard_config)
                .await
                .map_err(|reason| ServerError::Executor { core, reason })
                .and_then(|handler| Ok((handler, build_ring(control.wake_fd(core))?)));
            let (mut handler, (uring, bufs)) = match started {
                Ok(started) => started,
                Err(error) => {
                    tracing::error!(core, %error, "core failed to start");
                    return Err(error);
                }
            };
            control.state.core_ready();
            let params = CoreParams {
                core,
                listener_fd: listener.as_raw_fd(),
                max_clients,
                control: control.clone(),
            };
            let served = serve(&mut handler, params, uring, bufs).await;
            drop(listener);
            match &served {
                Ok(()) => {
                    acknowledgement.sent = true;
                    control.state.core_stopped();
                }
                Err(error) => tracing::error!(core, %error, "core failed"),
            }
            served
        })
        .map_err(|error| ServerError::Executor {
            core,
            reason: error.to_string(),
        })
}

/// Reports a core as failed if it ends without a clean stop.
struct Acknowledgement {
    control: Arc<Control>,
    sent: bool,
}

impl Drop for Acknowledgement {
    fn drop(&mut self) {
        if !self.sent {
            self.control.state.core_failed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announce_never_unspecified() {
        let mut config = Config::defaults(1);
        assert_eq!(announce_ip(&config), IpAddr::V4(Ipv4Addr::LOCALHOST));
        config.bind = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        assert!(!announce_ip(&config).is_unspecified());
        config.announce_ip = Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(announce_ip(&config), IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
    }

    #[test]
    fn second_bind_is_refused_and_named() {
        let mut config = Config::defaults(1);
        config.port = 17990;
        let held = bind_listeners(&config).unwrap();
        let error = bind_listeners(&config).unwrap_err();
        assert!(matches!(error, ServerError::PortInUse { .. }), "{error}");
        assert!(error.to_string().contains("port 17990"), "{error}");
        drop(held);
    }

    #[test]
    fn memlock_message_names_the_fix() {
        let error = check_memlock(2, 1 << 40).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("ulimit -l") && text.contains("LimitMEMLOCK"),
            "{text}"
        );
        check_memlock(1, 64 << 10).unwrap();
    }
}
