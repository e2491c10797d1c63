//! The `tessera` binary's settings: command-line flags and an optional TOML
//! file.
//!
//! Precedence is defaults < `--config FILE` < flags, so a deployment keeps its
//! settings in a file and overrides one of them on the command line. The file
//! uses the flags' own names as keys (`port = 7379`, `memory-limit = "2gb"`),
//! so there is one vocabulary to learn.
//!
//! Flags are parsed by hand: there are a dozen of them, all `--name value` or
//! `--name=value`, and a hand parser keeps the error messages exact and the
//! build small. The TOML file is parsed by the `toml` crate (a real grammar
//! with strings, escapes and comments is not worth rewriting).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::handler::Durability;
pub use tessera_engine::{FLUSH_INTERVAL_MS_DEFAULT, FLUSH_INTERVAL_MS_MAX, PREFAULT_BYTES_MAX};

/// The first core's port unless `--port` says otherwise.
pub const PORT_DEFAULT: u16 = 7379;
/// Connections per core (each core is one cluster node, so this is Redis'
/// `maxclients` per node).
pub const MAX_CLIENTS_DEFAULT: u32 = 10_000;
/// Hard upper bound on `--max-clients`: the per-core connection table and its
/// round queue are sized from it at start-up.
pub const MAX_CLIENTS_MAX: u32 = 1 << 20;
/// The node's memory limit unless `--memory-limit` says otherwise, split
/// evenly over the cores.
pub const MEMORY_LIMIT_DEFAULT_BYTES: u64 = 1 << 30;
/// glommio's per-executor registered I/O memory. Small on purpose: the
/// executors only do DMA file I/O through it (the network path has its own
/// ring), and each one locks about three times this against RLIMIT_MEMLOCK.
pub const IO_MEMORY_DEFAULT_BYTES: u64 = 512 << 10;
/// glommio refuses smaller `io_memory`.
pub const IO_MEMORY_MIN_BYTES: u64 = 64 << 10;
/// Longest `--requirepass` accepted (Redis has no limit; ours is a sanity
/// bound so a mistaken file path as password is caught).
pub const REQUIREPASS_LEN_MAX: usize = 512;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run(Config),
    Help,
    Version,
}

/// Everything the server needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Number of cores (executors, ports, shards).
    pub cores: u16,
    /// Core `i` listens on `port + i`.
    pub port: u16,
    pub bind: IpAddr,
    /// Address put into replies (`CLUSTER SLOTS`, `MOVED`); resolved from
    /// `bind` when absent.
    pub announce_ip: Option<IpAddr>,
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// Async mode: applied writes reach the disk within this interval.
    pub flush_interval_ms: u64,
    /// Open a damaged store by keeping what precedes the damage (reported)
    /// instead of refusing to start.
    pub tolerant_recovery: bool,
    /// Whole node; each core gets `memory_limit_bytes / cores`.
    pub memory_limit_bytes: u64,
    pub requirepass: Option<String>,
    /// Per core.
    pub max_clients: u32,
    /// glommio `io_memory` per executor.
    pub io_memory_bytes: u64,
    /// Heap faulted in at start-up (`tessera_engine::prefault_retained_memory`),
    /// whole node: merge steps then write into pages already backed instead
    /// of stalling on first-touch faults while the stores grow. Off (0) by
    /// default: it costs ~1-3 s of start-up per GiB, and resident memory.
    pub prefault_memory_bytes: u64,
    /// Answer `+OK` to everything (the ceiling responder) instead of running
    /// the command layer.
    pub ceiling: bool,
}

impl Config {
    /// Defaults for a machine with `cpus_online` CPUs.
    pub fn defaults(cpus_online: u16) -> Config {
        assert!(cpus_online > 0);
        Config {
            cores: cpus_online,
            port: PORT_DEFAULT,
            bind: IpAddr::from([127, 0, 0, 1]),
            announce_ip: None,
            data_dir: PathBuf::from("./data"),
            durability: Durability::Sync,
            flush_interval_ms: FLUSH_INTERVAL_MS_DEFAULT,
            tolerant_recovery: false,
            memory_limit_bytes: MEMORY_LIMIT_DEFAULT_BYTES,
            requirepass: None,
            max_clients: MAX_CLIENTS_DEFAULT,
            io_memory_bytes: IO_MEMORY_DEFAULT_BYTES,
            prefault_memory_bytes: 0,
            ceiling: false,
        }
    }

    /// This core's share of the memory limit.
    pub fn memory_limit_per_core_bytes(&self) -> u64 {
        self.memory_limit_bytes / u64::from(self.cores)
    }

    fn validate(&self, cpus_online: u16) -> Result<(), ConfigError> {
        if self.cores == 0 || self.cores > cpus_online {
            return Err(ConfigError::InvalidValue {
                key: "cores".into(),
                value: self.cores.to_string(),
                expected: format!(
                    "1..={cpus_online} (the online CPUs; one executor is pinned per CPU)"
                ),
            });
        }
        let port_last = u32::from(self.port) + u32::from(self.cores) - 1;
        if self.port == 0 || port_last > u32::from(u16::MAX) {
            return Err(ConfigError::InvalidValue {
                key: "port".into(),
                value: self.port.to_string(),
                expected: format!("1..=65535 with room for {} consecutive ports", self.cores),
            });
        }
        if self.max_clients == 0 || self.max_clients > MAX_CLIENTS_MAX {
            return Err(ConfigError::InvalidValue {
                key: "max-clients".into(),
                value: self.max_clients.to_string(),
                expected: format!("1..={MAX_CLIENTS_MAX}"),
            });
        }
        if self.io_memory_bytes < IO_MEMORY_MIN_BYTES {
            return Err(ConfigError::InvalidValue {
                key: "io-memory".into(),
                value: self.io_memory_bytes.to_string(),
                expected: format!("at least {IO_MEMORY_MIN_BYTES} bytes (glommio's minimum)"),
            });
        }
        if self.prefault_memory_bytes > PREFAULT_BYTES_MAX as u64 {
            return Err(ConfigError::InvalidValue {
                key: "prefault-memory".into(),
                value: self.prefault_memory_bytes.to_string(),
                expected: format!("at most {PREFAULT_BYTES_MAX} bytes (1gb)"),
            });
        }
        if !(1..=FLUSH_INTERVAL_MS_MAX).contains(&self.flush_interval_ms) {
            return Err(ConfigError::InvalidValue {
                key: "flush-interval-ms".into(),
                value: self.flush_interval_ms.to_string(),
                expected: format!("1..={FLUSH_INTERVAL_MS_MAX} milliseconds"),
            });
        }
        if self.memory_limit_per_core_bytes() == 0 {
            return Err(ConfigError::InvalidValue {
                key: "memory-limit".into(),
                value: self.memory_limit_bytes.to_string(),
                expected: "at least one byte per core".into(),
            });
        }
        if let Some(ip) = self.announce_ip {
            if ip.is_unspecified() {
                return Err(ConfigError::InvalidValue {
                    key: "announce-ip".into(),
                    value: ip.to_string(),
                    expected: "an address clients can reach (not 0.0.0.0 or ::)".into(),
                });
            }
        }
        if let Some(pass) = &self.requirepass {
            if pass.is_empty() || pass.len() > REQUIREPASS_LEN_MAX {
                return Err(ConfigError::InvalidValue {
                    key: "requirepass".into(),
                    value: format!("<{} bytes>", pass.len()),
                    expected: format!("1..={REQUIREPASS_LEN_MAX} bytes"),
                });
            }
        }
        Ok(())
    }
}

/// Why the settings were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    UnknownFlag {
        flag: String,
    },
    MissingValue {
        flag: String,
    },
    InvalidValue {
        key: String,
        value: String,
        expected: String,
    },
    ConfigFileRead {
        path: PathBuf,
        reason: String,
    },
    ConfigFileSyntax {
        path: PathBuf,
        reason: String,
    },
    UnknownConfigKey {
        path: PathBuf,
        key: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownFlag { flag } => {
                write!(f, "unknown flag `{flag}` (see `tessera --help`)")
            }
            ConfigError::MissingValue { flag } => write!(f, "flag `{flag}` needs a value"),
            ConfigError::InvalidValue {
                key,
                value,
                expected,
            } => {
                write!(f, "invalid {key} `{value}`: expected {expected}")
            }
            ConfigError::ConfigFileRead { path, reason } => {
                write!(f, "cannot read config file {}: {reason}", path.display())
            }
            ConfigError::ConfigFileSyntax { path, reason } => {
                write!(
                    f,
                    "config file {} is not valid TOML: {reason}",
                    path.display()
                )
            }
            ConfigError::UnknownConfigKey { path, key } => {
                write!(f, "config file {}: unknown key `{key}`", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// The `--help` text.
pub const USAGE: &str = "\
tessera: thread-per-core key-value server (one Redis Cluster node per core)

USAGE: tessera [flags]

  --config FILE         TOML file with any of the settings below (flag names as keys)
  --cores N             executors, one pinned per CPU (default: every online CPU)
  --port P              base port; core i listens on P+i (default 7379)
  --bind IP             listen address (default 127.0.0.1)
  --announce-ip IP      address put in cluster replies (default: the bind address;
                        for 0.0.0.0/:: the first non-loopback interface, else loopback)
  --data-dir DIR        data directory; core i uses DIR/core-i (default ./data)
  --durability MODE     sync (default: ack after fdatasync) or async
  --flush-interval-ms N async mode: persist applied writes within N ms (default 10)
  --tolerant-recovery   open a damaged store keeping what precedes the damage
                        (reported) instead of refusing to start
  --memory-limit SIZE   node memory limit, split evenly over cores (default 1gb)
  --requirepass PASS    require AUTH PASS
  --max-clients N       connections per core (default 10000)
  --io-memory SIZE      glommio registered I/O memory per executor (default 512kb)
  --prefault-memory SIZE  heap faulted in at start-up, at most 1gb, so merges that
                        grow the stores never wait on first-touch faults (default 0)
  --ceiling             answer +OK to every request (network ceiling benchmark)
  --help, --version
";

/// Parses the command line (without the program name).
pub fn parse_args<I>(args: I, cpus_online: u16) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = String>,
{
    let mut pairs: Vec<(String, Option<String>)> = Vec::new();
    let mut config_path: Option<PathBuf> = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let Some(body) = arg.strip_prefix("--") else {
            return Err(ConfigError::UnknownFlag { flag: arg });
        };
        let (name, inline_value) = match body.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (body.to_string(), None),
        };
        match name.as_str() {
            "help" => return Ok(Command::Help),
            "version" => return Ok(Command::Version),
            "ceiling" | "tolerant-recovery" => {
                if inline_value.is_some() {
                    return Err(ConfigError::InvalidValue {
                        key: name,
                        value: inline_value.unwrap_or_default(),
                        expected: "no value".into(),
                    });
                }
                pairs.push((name, None));
                continue;
            }
            _ => {}
        }
        if !FLAG_KEYS.contains(&name.as_str()) && name != "config" {
            return Err(ConfigError::UnknownFlag { flag: arg });
        }
        let value = match inline_value {
            Some(value) => value,
            None => args
                .next()
                .ok_or_else(|| ConfigError::MissingValue { flag: arg.clone() })?,
        };
        if name == "config" {
            config_path = Some(PathBuf::from(value));
        } else {
            pairs.push((name, Some(value)));
        }
    }

    let mut config = Config::defaults(cpus_online);
    if let Some(path) = config_path {
        apply_file(&mut config, &path)?;
    }
    for (name, value) in pairs {
        match value {
            Some(value) => apply(&mut config, &name, &value)?,
            None if name == "ceiling" => config.ceiling = true,
            None => config.tolerant_recovery = true,
        }
    }
    config.validate(cpus_online)?;
    Ok(Command::Run(config))
}

/// Keys accepted both as `--flag` and in the config file.
const FLAG_KEYS: &[&str] = &[
    "cores",
    "port",
    "bind",
    "announce-ip",
    "data-dir",
    "durability",
    "flush-interval-ms",
    "memory-limit",
    "requirepass",
    "max-clients",
    "io-memory",
    "prefault-memory",
];

fn apply_file(config: &mut Config, path: &std::path::Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::ConfigFileRead {
        path: path.to_path_buf(),
        reason: error.to_string(),
    })?;
    let table: toml::Table =
        text.parse()
            .map_err(|error: toml::de::Error| ConfigError::ConfigFileSyntax {
                path: path.to_path_buf(),
                reason: error.message().to_string(),
            })?;
    for (key, value) in &table {
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) if key == "ceiling" => {
                config.ceiling = *b;
                continue;
            }
            toml::Value::Boolean(b) if key == "tolerant-recovery" => {
                config.tolerant_recovery = *b;
                continue;
            }
            other => {
                return Err(ConfigError::InvalidValue {
                    key: key.clone(),
                    value: format!("{other:?}"),
                    expected: "a string or an integer".into(),
                })
            }
        };
        if !FLAG_KEYS.contains(&key.as_str()) {
            return Err(ConfigError::UnknownConfigKey {
                path: path.to_path_buf(),
                key: key.clone(),
            });
        }
        apply(config, key, &text)?;
    }
    Ok(())
}

fn apply(config: &mut Config, key: &str, value: &str) -> Result<(), ConfigError> {
    let invalid = |expected: &str| ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
    };
    match key {
        "cores" => config.cores = value.parse().map_err(|_| invalid("a CPU count"))?,
        "port" => config.port = value.parse().map_err(|_| invalid("a port number"))?,
        "bind" => config.bind = value.parse().map_err(|_| invalid("an IP address"))?,
        "announce-ip" => {
            config.announce_ip = Some(value.parse().map_err(|_| invalid("an IP address"))?)
        }
        "data-dir" => config.data_dir = PathBuf::from(value),
        "durability" => {
            config.durability = match value {
                "sync" => Durability::Sync,
                "async" => Durability::Async,
                _ => return Err(invalid("`sync` or `async`")),
            }
        }
        "flush-interval-ms" => {
            config.flush_interval_ms = value
                .parse()
                .map_err(|_| invalid("a number of milliseconds"))?
        }
        "memory-limit" => {
            config.memory_limit_bytes =
                parse_size_bytes(value).ok_or_else(|| invalid("a size such as 2gb or 512mb"))?
        }
        "requirepass" => config.requirepass = Some(value.to_string()),
        "max-clients" => config.max_clients = value.parse().map_err(|_| invalid("a count"))?,
        "io-memory" => {
            config.io_memory_bytes =
                parse_size_bytes(value).ok_or_else(|| invalid("a size such as 512kb or 1mb"))?
        }
        "prefault-memory" => {
            config.prefault_memory_bytes =
                parse_size_bytes(value).ok_or_else(|| invalid("a size such as 512mb or 1gb"))?
        }
        _ => {
            return Err(ConfigError::UnknownFlag {
                flag: format!("--{key}"),
            })
        }
    }
    Ok(())
}

/// `2gb`, `512mb`, `64kb`, `100b` or a plain byte count; binary units
/// (Redis' `mb` is 1024*1024 as well). `None` on junk or overflow.
pub fn parse_size_bytes(text: &str) -> Option<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    if digits_end == 0 {
        return None;
    }
    let number: u64 = lower[..digits_end].parse().ok()?;
    let shift = match lower[digits_end..].trim() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn run(list: &[&str]) -> Result<Config, ConfigError> {
        match parse_args(args(list), 4)? {
            Command::Run(config) => Ok(config),
            other => panic!("expected Run, got {other:?}"),
        }
    }

    #[test]
    fn defaults_use_every_cpu() {
        let config = run(&[]).unwrap();
        assert_eq!(config, Config::defaults(4));
        assert_eq!(config.cores, 4);
        assert_eq!(config.port, 7379);
        assert_eq!(config.memory_limit_per_core_bytes(), (1 << 30) / 4);
    }

    #[test]
    fn flags_both_spellings() {
        let config = run(&[
            "--cores",
            "2",
            "--port=7400",
            "--data-dir",
            "/tmp/x",
            "--durability",
            "async",
            "--memory-limit",
            "2gb",
            "--requirepass",
            "secret",
            "--max-clients",
            "5",
            "--prefault-memory=256mb",
            "--ceiling",
        ])
        .unwrap();
        assert_eq!(config.prefault_memory_bytes, 256 << 20);
        assert_eq!(config.cores, 2);
        assert_eq!(config.port, 7400);
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(config.durability, Durability::Async);
        assert_eq!(config.memory_limit_bytes, 2 << 30);
        assert_eq!(config.memory_limit_per_core_bytes(), 1 << 30);
        assert_eq!(config.requirepass.as_deref(), Some("secret"));
        assert_eq!(config.max_clients, 5);
        assert!(config.ceiling);
    }

    #[test]
    fn bad_flags_are_named() {
        let error = run(&["--prot", "1"]).unwrap_err();
        assert!(error.to_string().contains("--prot"), "{error}");
        let error = run(&["--port"]).unwrap_err();
        assert_eq!(
            error,
            ConfigError::MissingValue {
                flag: "--port".into()
            }
        );
        let error = run(&["--cores", "9"]).unwrap_err();
        assert!(error.to_string().contains("cores"), "{error}");
        let error = run(&["--port", "65535", "--cores", "2"]).unwrap_err();
        assert!(error.to_string().contains("port"), "{error}");
        let error = run(&["--announce-ip", "0.0.0.0"]).unwrap_err();
        assert!(error.to_string().contains("announce-ip"), "{error}");
        let error = run(&["--prefault-memory", "2gb"]).unwrap_err();
        assert!(error.to_string().contains("prefault-memory"), "{error}");
        let error = run(&["--durability", "maybe"]).unwrap_err();
        assert!(error.to_string().contains("sync"), "{error}");
    }

    #[test]
    fn persistence_flags() {
        let config = run(&[]).unwrap();
        assert_eq!(config.flush_interval_ms, FLUSH_INTERVAL_MS_DEFAULT);
        assert!(!config.tolerant_recovery);
        let config = run(&["--flush-interval-ms", "250", "--tolerant-recovery"]).unwrap();
        assert_eq!(config.flush_interval_ms, 250);
        assert!(config.tolerant_recovery);
        let too_long = (FLUSH_INTERVAL_MS_MAX + 1).to_string();
        let error = run(&["--flush-interval-ms", &too_long]).unwrap_err();
        assert!(error.to_string().contains("flush-interval-ms"), "{error}");
        let error = run(&["--flush-interval-ms", "0"]).unwrap_err();
        assert!(error.to_string().contains("flush-interval-ms"), "{error}");
        let error = run(&["--tolerant-recovery=yes"]).unwrap_err();
        assert!(error.to_string().contains("no value"), "{error}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size_bytes("512mb"), Some(512 << 20));
        assert_eq!(parse_size_bytes("2GB"), Some(2 << 30));
        assert_eq!(parse_size_bytes("100"), Some(100));
        assert_eq!(parse_size_bytes("64k"), Some(64 << 10));
        assert_eq!(parse_size_bytes("mb"), None);
        assert_eq!(parse_size_bytes("1xb"), None);
        assert_eq!(parse_size_bytes("99999999999tb"), None);
    }

    #[test]
    fn config_file_then_flags_override() {
        let dir = std::env::temp_dir().join(format!("tessera-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tessera.toml");
        std::fs::write(
            &path,
            "# comment\ncores = 2\nport = 7500\nmemory-limit = \"512mb\"\nbind = \"0.0.0.0\"\n",
        )
        .unwrap();
        let path_text = path.to_str().unwrap();
        let config = run(&["--config", path_text, "--port", "7600"]).unwrap();
        assert_eq!(config.cores, 2);
        assert_eq!(config.port, 7600);
        assert_eq!(config.memory_limit_bytes, 512 << 20);
        assert_eq!(config.bind, IpAddr::from([0, 0, 0, 0]));

        std::fs::write(&path, "colour = \"blue\"\n").unwrap();
        let error = run(&["--config", path_text]).unwrap_err();
        assert!(
            matches!(error, ConfigError::UnknownConfigKey { .. }),
            "{error}"
        );
        std::fs::write(&path, "port = \n").unwrap();
        let error = run(&["--config", path_text]).unwrap_err();
        assert!(
            matches!(error, ConfigError::ConfigFileSyntax { .. }),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse_args(args(&["--help"]), 1).unwrap(), Command::Help);
        assert_eq!(
            parse_args(args(&["--version"]), 1).unwrap(),
            Command::Version
        );
    }
}
