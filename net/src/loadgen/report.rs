//! The final report: a human table, or one JSON object for scripts.
//!
//! The JSON is written by hand (one flat object with two nested levels);
//! its keys are a stable interface like the flags: `ops_per_sec`,
//! `requests`, `errors`, `latency_us` {`p50`, `p90`, `p99`, `p999`, `max`},
//! plus `bytes_per_sec`, `duration_s`, `client_cpu_us_per_request` and a
//! `commands` object with the same fields per command.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::config::{Config, Mode, Stop};
use super::stats::{percentiles_us, Command, RunStats, Sample};

#[derive(Debug, Clone)]
pub struct Report {
    pub config: Config,
    pub stats: RunStats,
    /// One per second of the measured run.
    pub samples: Vec<Sample>,
    /// Measured wall time (after warmup).
    pub duration: Duration,
    /// CPU time this process spent during the measured window.
    pub client_cpu: Duration,
}

impl Report {
    pub fn new(
        config: &Config,
        stats: RunStats,
        samples: Vec<Sample>,
        duration: Duration,
        client_cpu: Duration,
    ) -> Report {
        Report {
            config: config.clone(),
            stats,
            samples,
            duration,
            client_cpu,
        }
    }

    fn seconds(&self) -> f64 {
        self.duration.as_secs_f64().max(1e-9)
    }

    pub fn ops_per_sec(&self) -> f64 {
        self.stats.requests() as f64 / self.seconds()
    }

    pub fn bytes_per_sec(&self) -> f64 {
        (self.stats.bytes_sent + self.stats.bytes_received) as f64 / self.seconds()
    }

    pub fn client_cpu_us_per_request(&self) -> f64 {
        self.client_cpu.as_secs_f64() * 1e6 / self.stats.requests().max(1) as f64
    }

    pub fn latency_us(&self) -> [f64; 5] {
        percentiles_us(&self.stats.all_latency_ns())
    }

    pub fn all_latency_ns(&self) -> Histogram<u64> {
        self.stats.all_latency_ns()
    }

    pub fn to_json(&self) -> String {
        let mut out = String::new();
        let mode = match self.config.mode {
            Mode::Cluster => "cluster",
            Mode::Single => "single",
        };
        write!(
            out,
            "{{\"ops_per_sec\":{:.1},\"requests\":{},\"errors\":{},\"bytes_per_sec\":{:.1},\"duration_s\":{:.3},\
             \"client_cpu_us_per_request\":{:.3},\"connection_errors\":{},\"latency_us\":{}",
            self.ops_per_sec(),
            self.stats.requests(),
            self.stats.errors(),
            self.bytes_per_sec(),
            self.duration.as_secs_f64(),
            self.client_cpu_us_per_request(),
            self.stats.connection_errors,
            latency_json(self.latency_us()),
        )
        .expect("writing to a String");
        out.push_str(",\"commands\":{");
        let mut first = true;
        for command in Command::ALL {
            let stats = &self.stats.commands[command.index()];
            if stats.requests == 0 && stats.errors == 0 {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            write!(
                out,
                "\"{}\":{{\"requests\":{},\"errors\":{},\"ops_per_sec\":{:.1},\"latency_us\":{}}}",
                command.name(),
                stats.requests,
                stats.errors,
                stats.requests as f64 / self.seconds(),
                latency_json(percentiles_us(&stats.latency_ns)),
            )
            .expect("writing to a String");
        }
        let config = &self.config;
        write!(
            out,
            "}},\"config\":{{\"mode\":\"{mode}\",\"threads\":{},\"connections\":{},\"pipeline\":{},\"ratio\":\"{}:{}\",\
             \"keyspace\":{},\"data_size\":\"{}-{}\",\"rate\":{}}}}}",
            config.threads,
            config.connections,
            config.pipeline,
            config.set_weight,
            config.get_weight,
            config.keyspace,
            config.data_size_min,
            config.data_size_max,
            config.rate.map_or("null".to_string(), |r| r.to_string()),
        )
        .expect("writing to a String");
        out
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let config = &self.config;
        let stop = match config.stop {
            Stop::After(duration) => format!("{}s", duration.as_secs()),
            Stop::Requests(n) => format!("{n} requests"),
        };
        let _ = writeln!(
            out,
            "tessera-bench {:?} mode, {} thread(s) x {} conn(s), pipeline {}, ratio {}:{}, keyspace {}, {}",
            config.mode, config.threads, config.connections, config.pipeline, config.set_weight, config.get_weight,
            config.keyspace, stop
        );
        let _ = writeln!(
            out,
            "{:.0} ops/s, {:.2} MB/s, {} requests, {} errors in {:.2}s; client CPU {:.3} us/request",
            self.ops_per_sec(),
            self.bytes_per_sec() / 1e6,
            self.stats.requests(),
            self.stats.errors(),
            self.duration.as_secs_f64(),
            self.client_cpu_us_per_request()
        );
        let _ = writeln!(
            out,
            "{:<6} {:>12} {:>8} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "cmd",
            "requests",
            "errors",
            "ops/s",
            "p50 us",
            "p90 us",
            "p99 us",
            "p99.9 us",
            "max us"
        );
        let mut row = |name: &str, requests: u64, errors: u64, latency: [f64; 5]| {
            let _ = writeln!(
                out,
                "{:<6} {:>12} {:>8} {:>12.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                name,
                requests,
                errors,
                requests as f64 / self.seconds(),
                latency[0],
                latency[1],
                latency[2],
                latency[3],
                latency[4]
            );
        };
        for command in Command::ALL {
            let stats = &self.stats.commands[command.index()];
            if stats.requests > 0 {
                row(
                    command.name(),
                    stats.requests,
                    stats.errors,
                    percentiles_us(&stats.latency_ns),
                );
            }
        }
        row(
            "ALL",
            self.stats.requests(),
            self.stats.errors(),
            self.latency_us(),
        );
        out
    }
}

fn latency_json(latency: [f64; 5]) -> String {
    format!(
        "{{\"p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\"p999\":{:.1},\"max\":{:.1}}}",
        latency[0], latency[1], latency[2], latency[3], latency[4]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_stable_keys() {
        let mut stats = RunStats::default();
        stats.commands[Command::Get.index()].requests = 10;
        stats.commands[Command::Get.index()]
            .latency_ns
            .record(20_000)
            .unwrap();
        let report = Report::new(
            &Config::default(),
            stats,
            Vec::new(),
            Duration::from_secs(2),
            Duration::from_millis(1),
        );
        let json = report.to_json();
        for key in [
            "\"ops_per_sec\":5.0",
            "\"requests\":10",
            "\"errors\":0",
            "\"latency_us\":{\"p50\":20.0",
            "\"p999\"",
            "\"max\"",
        ] {
            assert!(json.contains(key), "{key} missing from {json}");
        }
        assert!(
            !json.contains("\"SET\""),
            "commands never sent are left out"
        );
        assert_eq!(json.matches('{').count(), json.matches('}').count());
    }
}
