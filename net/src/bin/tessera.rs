//! `tessera [flags]`: start the server in the foreground. See `--help`.

use std::process::ExitCode;

use tessera_net::ceiling::Ceiling;
use tessera_net::commands::Shard;
use tessera_net::config::{parse_args, Command, USAGE};
use tessera_net::server;

fn main() -> ExitCode {
    // Before any thread exists (see the function's docs): merges then reuse
    // freed memory instead of faulting fresh pages for every output.
    let memory_retained = tessera_engine::retain_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
                // The store makes glommio's IOPOLL probe fail on purpose
                // (see tessera-engine's file layer); that is the only
                // message glommio logs under this target.
                .add_directive("glommio::reactor=off".parse().expect("static directive")),
        )
        .with_target(false)
        .init();
    if !memory_retained {
        tracing::warn!("the allocator is not glibc's: merges will fault in fresh memory");
    }
    let cpus = server::usable_cpus().len().clamp(1, usize::from(u16::MAX)) as u16;
    let config = match parse_args(std::env::args().skip(1), cpus) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("tessera {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("tessera: {error}");
            return ExitCode::from(2);
        }
    };
    // Still before the executors' threads: the whole node's stores grow
    // into this heap (see the flag's docs).
    let prefault_bytes = config.prefault_memory_bytes as usize;
    if prefault_bytes > 0 {
        let started = std::time::Instant::now();
        match tessera_engine::prefault_retained_memory(prefault_bytes) {
            Ok(true) => tracing::info!(
                "prefaulted {} MiB of heap in {} ms",
                prefault_bytes >> 20,
                started.elapsed().as_millis()
            ),
            Ok(false) => tracing::warn!("--prefault-memory ignored: freed memory is not retained"),
            Err(error) => {
                eprintln!("tessera: {error}");
                return ExitCode::from(2);
            }
        }
    }
    let result = if config.ceiling {
        server::run(&config, |_| async { Ok(Ceiling) })
    } else {
        server::run(&config, |shard_config| async move {
            Shard::open(shard_config)
                .await
                .map_err(|error| error.to_string())
        })
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("tessera: {error}");
            ExitCode::FAILURE
        }
    }
}
