//! `tessera-bench` flags. They are a stable interface: scripts rely on them,
//! so names and meanings only ever gain entries.

use std::fmt;
use std::time::Duration;

/// Threads (one io_uring ring each) a run may start.
pub const THREADS_MAX: usize = 256;
/// Connections per thread (per target port in cluster mode).
pub const CONNECTIONS_MAX: usize = 4096;
/// Commands in flight per connection.
pub const PIPELINE_MAX: usize = 1024;
/// Distinct keys; bounds the per-port key pools built at start.
pub const KEYSPACE_MAX: u64 = 100_000_000;
/// Largest value written by `SET`.
pub const DATA_SIZE_MAX: usize = 1024 * 1024;
/// Longest run, so a typo can't occupy a shared machine for days.
pub const DURATION_MAX_S: u64 = 24 * 3600;
/// Longest `--congestion` name: the kernel's `TCP_CA_NAME_MAX` (16) less its NUL.
pub const CONGESTION_NAME_LEN_MAX: usize = 15;

pub const DEFAULT_PORT: u16 = 7379;

/// Where keys fall within the keyspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPattern {
    Uniform,
    /// Zipfian with exponent 0.99 (YCSB's default): a few keys are hot.
    Zipf,
    /// Each connection walks its keys in order, wrapping around.
    Sequential,
}

/// How the target is addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Ask `CLUSTER SLOTS` and send every key to the port that owns it.
    Cluster,
    /// Everything to `--host:--port` (any RESP server, e.g. redis-server).
    Single,
}

/// When the run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    After(Duration),
    Requests(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub threads: usize,
    pub connections: usize,
    pub pipeline: usize,
    /// `--ratio SET:GET`.
    pub set_weight: u32,
    pub get_weight: u32,
    pub keyspace: u64,
    pub key_pattern: KeyPattern,
    pub data_size_min: usize,
    pub data_size_max: usize,
    pub stop: Stop,
    pub warmup: Duration,
    /// Fixed offered load in ops/s over all threads; `None` = as fast as possible.
    pub rate: Option<u64>,
    pub mode: Mode,
    pub json: bool,
    pub plot: Option<String>,
    /// Suppress the live progress line.
    pub quiet: bool,
    /// TCP congestion control of the client's sockets (`TCP_CONGESTION`);
    /// `None` keeps the system's default. It runs in the *server's* context
    /// too (on every reply and ACK the server's CPU delivers to us), so it
    /// is part of what a load generator costs the server.
    pub congestion: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: DEFAULT_PORT,
            threads: 1,
            connections: 50,
            pipeline: 1,
            set_weight: 1,
            get_weight: 1,
            keyspace: 100_000,
            key_pattern: KeyPattern::Uniform,
            data_size_min: 32,
            data_size_max: 32,
            stop: Stop::After(Duration::from_secs(10)),
            warmup: Duration::ZERO,
            rate: None,
            mode: Mode::Cluster,
            json: false,
            plot: None,
            quiet: false,
            congestion: None,
        }
    }
}

pub const USAGE: &str = "\
tessera-bench: io_uring load generator for Tessera and any RESP server

  --host HOST             target address (default 127.0.0.1)
  --port PORT             seed port (cluster) or the port (single) (default 7379)
  --threads N             threads, one pinned io_uring ring each (default 1)
  --connections N         connections per thread, per target port (default 50)
  --pipeline N            commands in flight per connection (default 1)
  --ratio SET:GET         command mix (default 1:1)
  --keyspace N            distinct keys key:000000000000.. (default 100000)
  --key-pattern P         uniform | zipf | sequential (default uniform)
  --data-size N|MIN-MAX   SET value bytes (default 32)
  --duration SECONDS      run time (default 10), or
  --requests N            total requests to send
  --warmup SECONDS        run this long first without recording (default 0)
  --rate OPS              fixed offered load (ops/s over all threads)
  --mode cluster|single   cluster-aware routing (default) or one port
  --json                  print one JSON object instead of the text report
  --plot FILE             write an SVG of throughput/latency over time
  --quiet                 no live progress line
  --congestion NAME       TCP congestion control of the client's sockets,
                          e.g. reno (default: the system's)
  --help
";

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    UnknownFlag {
        flag: String,
    },
    MissingValue {
        flag: String,
    },
    BadValue {
        flag: String,
        value: String,
        expected: &'static str,
    },
    OutOfRange {
        flag: String,
        value: u64,
        min: u64,
        max: u64,
    },
    HelpRequested,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownFlag { flag } => write!(f, "unknown flag {flag}"),
            Self::MissingValue { flag } => write!(f, "{flag} needs a value"),
            Self::BadValue {
                flag,
                value,
                expected,
            } => {
                write!(f, "{flag} {value}: expected {expected}")
            }
            Self::OutOfRange {
                flag,
                value,
                min,
                max,
            } => {
                write!(f, "{flag} {value}: must be within {min}..={max}")
            }
            Self::HelpRequested => write!(f, "help requested"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parse `args` (without the program name). `--flag value` and
    /// `--flag=value` are both accepted.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
                None => (arg, None),
            };
            let mut value = |flag: &str| -> Result<String, ConfigError> {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| ConfigError::MissingValue { flag: flag.into() })
            };
            match flag.as_str() {
                "--host" => config.host = value(&flag)?,
                "--port" => {
                    config.port = number(&flag, &value(&flag)?, 1, u64::from(u16::MAX))? as u16
                }
                "--threads" => {
                    config.threads = number(&flag, &value(&flag)?, 1, THREADS_MAX as u64)? as usize
                }
                "--connections" => {
                    config.connections =
                        number(&flag, &value(&flag)?, 1, CONNECTIONS_MAX as u64)? as usize
                }
                "--pipeline" => {
                    config.pipeline =
                        number(&flag, &value(&flag)?, 1, PIPELINE_MAX as u64)? as usize
                }
                "--ratio" => {
                    let text = value(&flag)?;
                    let bad = || ConfigError::BadValue {
                        flag: flag.clone(),
                        value: text.clone(),
                        expected: "SET:GET weights, e.g. 1:10",
                    };
                    let (set, get) = text.split_once(':').ok_or_else(bad)?;
                    config.set_weight = set.parse().map_err(|_| bad())?;
                    config.get_weight = get.parse().map_err(|_| bad())?;
                    if config.set_weight == 0 && config.get_weight == 0
                        || config.set_weight > 1_000_000
                        || config.get_weight > 1_000_000
                    {
                        return Err(bad());
                    }
                }
                "--keyspace" => config.keyspace = number(&flag, &value(&flag)?, 1, KEYSPACE_MAX)?,
                "--key-pattern" => {
                    let text = value(&flag)?;
                    config.key_pattern = match text.as_str() {
                        "uniform" => KeyPattern::Uniform,
                        "zipf" => KeyPattern::Zipf,
                        "sequential" => KeyPattern::Sequential,
                        _ => {
                            return Err(ConfigError::BadValue {
                                flag,
                                value: text,
                                expected: "uniform, zipf or sequential",
                            })
                        }
                    }
                }
                "--data-size" => {
                    let text = value(&flag)?;
                    let (min, max) = match text.split_once('-') {
                        Some((min, max)) => (min.to_string(), max.to_string()),
                        None => (text.clone(), text.clone()),
                    };
                    config.data_size_min = number(&flag, &min, 0, DATA_SIZE_MAX as u64)? as usize;
                    config.data_size_max = number(
                        &flag,
                        &max,
                        config.data_size_min as u64,
                        DATA_SIZE_MAX as u64,
                    )? as usize;
                }
                "--duration" => {
                    config.stop = Stop::After(Duration::from_secs(number(
                        &flag,
                        &value(&flag)?,
                        1,
                        DURATION_MAX_S,
                    )?))
                }
                "--requests" => {
                    config.stop = Stop::Requests(number(&flag, &value(&flag)?, 1, u64::MAX / 2)?)
                }
                "--warmup" => {
                    config.warmup =
                        Duration::from_secs(number(&flag, &value(&flag)?, 0, DURATION_MAX_S)?)
                }
                "--rate" => config.rate = Some(number(&flag, &value(&flag)?, 1, 1_000_000_000)?),
                "--mode" => {
                    let text = value(&flag)?;
                    config.mode = match text.as_str() {
                        "cluster" => Mode::Cluster,
                        "single" => Mode::Single,
                        _ => {
                            return Err(ConfigError::BadValue {
                                flag,
                                value: text,
                                expected: "cluster or single",
                            })
                        }
                    }
                }
                "--json" => config.json = true,
                "--plot" => config.plot = Some(value(&flag)?),
                "--quiet" => config.quiet = true,
                "--congestion" => {
                    let text = value(&flag)?;
                    let valid = !text.is_empty()
                        && text.len() <= CONGESTION_NAME_LEN_MAX
                        && text
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if !valid {
                        return Err(ConfigError::BadValue {
                            flag,
                            value: text,
                            expected:
                                "a congestion control name of at most 15 characters, e.g. reno",
                        });
                    }
                    config.congestion = Some(text);
                }
                "--help" | "-h" => return Err(ConfigError::HelpRequested),
                _ => return Err(ConfigError::UnknownFlag { flag }),
            }
        }
        Ok(config)
    }
}

fn number(flag: &str, text: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let value: u64 = text.parse().map_err(|_| ConfigError::BadValue {
        flag: flag.into(),
        value: text.into(),
        expected: "a non-negative integer",
    })?;
    if value < min || value > max {
        return Err(ConfigError::OutOfRange {
            flag: flag.into(),
            value,
            min,
            max,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        Config::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_every_flag() {
        let config = parse(&[
            "--host",
            "10.0.0.1",
            "--port=6379",
            "--threads",
            "2",
            "--connections",
            "8",
            "--pipeline",
            "16",
            "--ratio",
            "1:10",
            "--keyspace",
            "1000",
            "--key-pattern",
            "zipf",
            "--data-size",
            "10-100",
            "--requests",
            "5000",
            "--warmup",
            "1",
            "--rate",
            "20000",
            "--mode",
            "single",
            "--json",
            "--plot",
            "out.svg",
            "--congestion",
            "reno",
        ])
        .unwrap();
        assert_eq!(config.host, "10.0.0.1");
        assert_eq!(config.port, 6379);
        assert_eq!(
            (config.threads, config.connections, config.pipeline),
            (2, 8, 16)
        );
        assert_eq!((config.set_weight, config.get_weight), (1, 10));
        assert_eq!(config.key_pattern, KeyPattern::Zipf);
        assert_eq!((config.data_size_min, config.data_size_max), (10, 100));
        assert_eq!(config.stop, Stop::Requests(5000));
        assert_eq!(config.rate, Some(20000));
        assert_eq!(config.mode, Mode::Single);
        assert!(config.json);
        assert_eq!(config.plot.as_deref(), Some("out.svg"));
        assert_eq!(config.congestion.as_deref(), Some("reno"));
        assert_eq!(parse(&[]).unwrap().congestion, None);
    }

    #[test]
    fn rejects_bad_input_clearly() {
        assert_eq!(
            parse(&["--pipline", "2"]),
            Err(ConfigError::UnknownFlag {
                flag: "--pipline".into()
            })
        );
        assert_eq!(
            parse(&["--threads"]),
            Err(ConfigError::MissingValue {
                flag: "--threads".into()
            })
        );
        assert!(matches!(
            parse(&["--threads", "0"]),
            Err(ConfigError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse(&["--ratio", "1"]),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(
            parse(&["--ratio", "0:0"]),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(
            parse(&["--data-size", "100-10"]),
            Err(ConfigError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse(&["--mode", "both"]),
            Err(ConfigError::BadValue { .. })
        ));
        for name in ["", "a_name_longer_than_15", "re no", "reno\0"] {
            assert!(
                matches!(
                    parse(&["--congestion", name]),
                    Err(ConfigError::BadValue { .. })
                ),
                "{name:?}"
            );
        }
    }
}
