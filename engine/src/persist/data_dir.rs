//! The node's data directory: a manifest at the root and one directory per
//! core (`core-<n>/`).
//!
//! The manifest pins the number of cores because keys are sharded to cores
//! by slot: reopening with a different count would route keys to stores that
//! do not hold them. The check runs once, synchronously, before any executor
//! starts, and a mismatch changes nothing on disk. The manifest is a short
//! text file (operators read it) guarded by an xxh3 line.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64;

use super::error::PersistError;
use super::format::FORMAT_VERSION;

pub const MANIFEST_NAME: &str = "MANIFEST";
const MANIFEST_TITLE: &str = "tessera-data-dir";
/// Far above any core count we run; bounds what a damaged manifest can ask for.
pub const CORES_MAX: u32 = 4096;
/// A valid manifest is under 100 bytes; anything bigger is not ours.
const MANIFEST_BYTES_MAX: u64 = 4096;

/// A checked data directory: the manifest matches and every core directory exists.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
    cores: u32,
}

impl DataDir {
    /// Creates the data directory (manifest + core directories) or opens an
    /// existing one, failing with [`PersistError::CoreCountMismatch`] when it
    /// was created for a different number of cores.
    pub fn open_or_create(root: impl AsRef<Path>, cores: u32) -> Result<DataDir, PersistError> {
        let root = root.as_ref().to_path_buf();
        if !(1..=CORES_MAX).contains(&cores) {
            return Err(PersistError::CoreCountInvalid {
                requested: cores,
                max: CORES_MAX,
            });
        }
        let manifest = root.join(MANIFEST_NAME);
        if manifest.exists() {
            let found = read_manifest(&manifest)?;
            if found != cores {
                return Err(PersistError::CoreCountMismatch {
                    manifest: found,
                    requested: cores,
                });
            }
        } else {
            fs::create_dir_all(&root).map_err(|e| PersistError::io("mkdir", &root, e))?;
            write_manifest(&root, cores)?;
        }
        let dir = DataDir { root, cores };
        for core in 0..cores {
            let path = dir.core_dir(core);
            fs::create_dir_all(&path).map_err(|e| PersistError::io("mkdir", &path, e))?;
        }
        sync_dir(&dir.root)?;
        Ok(dir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn cores(&self) -> u32 {
        self.cores
    }

    pub fn core_dir(&self, core: u32) -> PathBuf {
        assert!(core < self.cores, "core {core} of {}", self.cores);
        self.root.join(format!("core-{core}"))
    }
}

fn manifest_body(cores: u32) -> String {
    format!("{MANIFEST_TITLE}\nformat_version {FORMAT_VERSION}\ncores {cores}\n")
}

fn write_manifest(root: &Path, cores: u32) -> Result<(), PersistError> {
    let body = manifest_body(cores);
    let text = format!("{body}xxh3 {:016x}\n", xxh3_64(body.as_bytes()));
    let tmp = root.join(format!("{MANIFEST_NAME}.tmp"));
    let path = root.join(MANIFEST_NAME);
    let mut file = fs::File::create(&tmp).map_err(|e| PersistError::io("create", &tmp, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| PersistError::io("write", &tmp, e))?;
    file.sync_all()
        .map_err(|e| PersistError::io("fsync", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| PersistError::io("rename", &path, e))?;
    sync_dir(root)
}

fn read_manifest(path: &Path) -> Result<u32, PersistError> {
    let invalid = |reason: String| PersistError::ManifestInvalid {
        path: path.to_path_buf(),
        reason,
    };
    let len = fs::metadata(path)
        .map_err(|e| PersistError::io("stat", path, e))?
        .len();
    if len > MANIFEST_BYTES_MAX {
        return Err(invalid(format!(
            "{len} bytes, at most {MANIFEST_BYTES_MAX}"
        )));
    }
    let text = fs::read_to_string(path).map_err(|e| PersistError::io("read", path, e))?;
    let lines: Vec<&str> = text.lines().collect();
    let [title, version, cores, checksum] = lines[..] else {
        return Err(invalid(format!("{} lines, expected 4", lines.len())));
    };
    if title != MANIFEST_TITLE {
        return Err(invalid(format!("first line {title:?}")));
    }
    let field = |line: &str, name: &str| -> Result<u64, PersistError> {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|value| {
                if name == "xxh3" {
                    u64::from_str_radix(value, 16).ok()
                } else {
                    value.parse().ok()
                }
            })
            .ok_or_else(|| invalid(format!("bad {name} line {line:?}")))
    };
    let version = field(version, "format_version")?;
    let cores = field(cores, "cores")?;
    let checksum = field(checksum, "xxh3")?;
    let body_len = text.len() - checksum_line_len(&text);
    let got = xxh3_64(&text.as_bytes()[..body_len]);
    if got != checksum {
        return Err(PersistError::ChecksumMismatch {
            file: path.to_path_buf(),
            offset: 0,
            what: "manifest",
            expected: checksum,
            got,
        });
    }
    if version != u64::from(FORMAT_VERSION) {
        return Err(PersistError::UnsupportedVersion {
            file: path.to_path_buf(),
            found: version as u32,
            supported: FORMAT_VERSION,
        });
    }
    if cores == 0 || cores > u64::from(CORES_MAX) {
        return Err(invalid(format!("cores {cores} out of 1..={CORES_MAX}")));
    }
    Ok(cores as u32)
}

fn checksum_line_len(text: &str) -> usize {
    let trimmed = text.strip_suffix('\n').unwrap_or(text);
    text.len() - trimmed.rfind('\n').map_or(0, |i| i + 1)
}

/// fsync of a directory with std: the manifest check runs before any executor.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), PersistError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| PersistError::io("fsync dir", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_root(name: &str) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("tessera-datadir-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        root
    }

    #[test]
    fn creates_then_reopens_with_same_count() {
        let root = temp_root("same");
        let dir = DataDir::open_or_create(&root, 3).unwrap();
        assert!(dir.core_dir(2).is_dir());
        let again = DataDir::open_or_create(&root, 3).unwrap();
        assert_eq!(again.cores(), 3);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn different_count_fails_naming_both_and_touches_nothing() {
        let root = temp_root("mismatch");
        DataDir::open_or_create(&root, 2).unwrap();
        let before = fs::read(root.join(MANIFEST_NAME)).unwrap();
        let err = DataDir::open_or_create(&root, 4).unwrap_err();
        assert!(matches!(
            err,
            PersistError::CoreCountMismatch {
                manifest: 2,
                requested: 4
            }
        ));
        let text = err.to_string();
        assert!(text.contains('2') && text.contains('4'), "{text}");
        assert!(!root.join("core-2").exists());
        assert_eq!(fs::read(root.join(MANIFEST_NAME)).unwrap(), before);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn damaged_manifest_is_refused() {
        let root = temp_root("damaged");
        DataDir::open_or_create(&root, 2).unwrap();
        let path = root.join(MANIFEST_NAME);
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("cores 2", "cores 8");
        fs::write(&path, text).unwrap();
        let err = DataDir::open_or_create(&root, 8).unwrap_err();
        assert!(
            matches!(err, PersistError::ChecksumMismatch { .. }),
            "{err}"
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
