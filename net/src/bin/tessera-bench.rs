//! `tessera-bench`: drive a Tessera node (or any RESP server with
//! `--mode single`) and report throughput and latency. See `--help`.

use std::process::ExitCode;

use tessera_net::loadgen::{self, Config, ConfigError, USAGE};

fn main() -> ExitCode {
    let config = match Config::parse(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(ConfigError::HelpRequested) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("tessera-bench: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let report = match loadgen::run(&config) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("tessera-bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    if config.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if let Some(path) = &config.plot {
        if let Err(error) = std::fs::write(path, loadgen::write_svg(&report)) {
            eprintln!("tessera-bench: writing {path}: {error}");
            return ExitCode::FAILURE;
        }
    }
    // A run in which nothing was answered measured nothing: fail loudly.
    if report.stats.requests() == 0 {
        eprintln!("tessera-bench: no request was answered");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
